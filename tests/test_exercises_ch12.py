"""Chapter 12's checks (dpm_lab/exercises/ch12.py): the right answer passes, each typical wrong answer fails with its
specific hint, a stub is "not attempted yet", and `use` falls back on the package's version only for a stub.
The solutions are written out by hand from §12's formulas, not taken from the package."""
import math

import pytest
import torch
from exercise_suite import chapter_suite

import dpm_lab as dl
from dpm_lab.exercises import ch12


def master(p, Q):
    inflow = torch.einsum("bi,ij->bj", p, Q - torch.diag(torch.diag(Q)))
    return inflow + p * torch.diag(Q)                       # -Q_jj is the total rate out of j


def reverse(p, Q, *, transpose=True, upside=False, diag=True):
    K = len(p)
    R = torch.zeros(K, K, dtype=torch.float64)
    for j in range(K):
        for i in range(K):
            if i != j:
                q = Q[i, j] if transpose else Q[j, i]
                R[j, i] = q * (p[j] / p[i] if upside else p[i] / p[j])
        if diag:
            R[j, j] = -R[j].sum()
    return R


def bayes(P, p_s):
    joint = p_s[:, None] * P                                # Pr(x_s = i, x_t = j)
    return (joint / joint.sum(0, keepdim=True)).T


SOLUTIONS = {
    "master_rhs": master,
    "reverse_rates": reverse,
    "unmask_probability": lambda a_s, a_t: (a_t - a_s) / (1 - a_s),
    "tc_copies": lambda L: (L - 1) * math.log(2),
    "temperature_prediction": "lower",
    "bayes_step": bayes,
}

WRONG = [
    ("master_rhs", lambda p, Q: p @ Q.T, ["transpose"]),
    ("master_rhs", lambda p, Q: p @ (Q - torch.diag(torch.diag(Q))), ["inflow only"]),
    ("master_rhs", lambda p, Q: -master(p, Q), ["sign is reversed"]),
    ("master_rhs", lambda p, Q: master(p, Q)[:, :2], ["shape"]),
    ("reverse_rates", lambda p, Q: reverse(p, Q, transpose=False), ["transpose"]),
    ("reverse_rates", lambda p, Q: reverse(p, Q, upside=True), ["upside down"]),
    ("reverse_rates", lambda p, Q: reverse(p, Q, diag=False), ["diagonal"]),
    ("reverse_rates", lambda p, Q: reverse(p, Q)[:2], ["(K, K)"]),
    ("unmask_probability", lambda a_s, a_t: a_t - a_s, ["condition on the token being masked"]),
    ("unmask_probability", lambda a_s, a_t: a_t, ["both times"]),
    ("unmask_probability", lambda a_s, a_t: (a_t - a_s) / (1 - a_t), ["1 - alpha_s"]),
    ("unmask_probability", lambda a_s, a_t: [a_s, a_t], ["one number"]),
    ("tc_copies", lambda L: L * math.log(2), ["subtract H(x)"]),
    ("tc_copies", lambda L: L - 1, ["bits"]),
    ("tc_copies", lambda L: math.log(2), ["L = 2 only"]),
    ("temperature_prediction", "higher", ["'lower'", "independently"]),
    ("temperature_prediction", "same", ["'lower'"]),
    ("temperature_prediction", "maybe", ["one of the strings"]),
    ("bayes_step", ch12.bayes_step_buggy, ["still the original"]),
    ("bayes_step", lambda P, p: bayes(P, p).T, ["transposed"]),
    ("bayes_step", lambda P, p: P.T * p[None, :], ["sum to one"]),
    ("bayes_step", lambda P, p: torch.linalg.inv(P), ["Inverting P", "negative entries"]),
    ("bayes_step", lambda P, p: P.T, ["likelihood", "prior"]),
    ("bayes_step", lambda P, p: P.T * p[None, :] / p[:, None], ["evidence", "not by p_s"]),
    # a reader's wrong answers (outside reading of chapter 12)
    ("master_rhs", lambda p, Q: Q @ p.T, ["column form", "shape (2,"]),
    ("master_rhs", lambda p, Q: p @ (Q + torch.eye(len(Q), dtype=Q.dtype)), ["I + Q", "rate of change"]),
    ("master_rhs", lambda p, Q: p * torch.diag(Q), ["outflow only"]),
    ("master_rhs", lambda p, Q: master(p, Q) / len(p), ["no mean or sum"]),
    ("reverse_rates", lambda p, Q: Q.T, ["forgets the law", "p(i) / p(j)"]),
    ("reverse_rates", lambda p, Q: reverse(p, Q).T, ["Transposed", "rows"]),
    ("reverse_rates", lambda p, Q: reverse(p, Q) * p[:, None], ["forward current", "divide by p(j)"]),
    ("unmask_probability", lambda a_s, a_t: (a_s - a_t) / (1 - a_s), ["[0, 1]", "order of the two alphas"]),
    ("tc_copies", lambda L: -(L - 1) * math.log(2), ["never negative"]),
]

globals().update(chapter_suite("12", SOLUTIONS, WRONG, None))


def test_references_agree_with_the_package():
    chain = dl.discrete.CTMC.uniform(4, beta=1.3)
    p = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    torch.testing.assert_close(ch12._reverse_rates(p, chain.Q_at(0.4)), chain.reverse_rates(p, 0.4))
    torch.testing.assert_close(ch12._master_rhs(p[None], chain.Q_at(0.4))[0],
                               chain.flux(p, 0.4).sum(0) - chain.flux(p, 0.4).sum(1))
    m = dl.discrete.CTMC.masked(4, schedule="linear")
    p_s = torch.tensor([0.5, 0.3, 0.2, 0.0], dtype=torch.float64)
    torch.testing.assert_close(ch12._bayes_step(m.transition(0.3, 0.7), p_s), m.bayes_reverse(p_s, 0.3, 0.7))
    assert ch12._unmask_probability(1 - 0.8, 1 - 0.5) == pytest.approx(dl.discrete._unmask_prob(0.8, 0.5))


def test_the_find_the_bug_original_really_fails_on_the_masked_chain():
    m = dl.discrete.CTMC.masked(4)
    P, p_s = m.transition(0.2, 0.6), torch.tensor([0.5, 0.3, 0.2, 0.0], dtype=torch.float64)
    rows = ch12.bayes_step_buggy(P, p_s).sum(1)
    assert (rows - 1).abs().max() > 0.1


def test_use_falls_back_only_for_a_stub(capsys):
    f = ch12.use("unmask_probability", lambda a, b: None)
    assert f(0.2, 0.5) == pytest.approx(0.375)
    assert "not attempted yet" in capsys.readouterr().out
    wrong = ch12.use("unmask_probability", lambda a, b: 0.0)
    assert wrong(0.2, 0.5) == 0.0
