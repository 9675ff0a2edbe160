"""Chapter 12 (discrete-state diffusion): the checks of §12 and the package's versions later cells fall back on.

Kinds: implement-and-reuse (master_rhs: the notebook integrates the forward chain with it; reverse_rates: the
notebook runs the reverse master equation with it; unmask_probability: the notebook's inline sampler uses it on
the schedule alpha_t = 1 - t), a derivation entered as a function (tc_copies: the one-step KL for L copied bits), a
prediction (temperature_prediction) and a find-the-bug (bayes_step: a reverse step written with the transition
matrix's indices swapped).  `use(name, answer)` returns the learner's function when it answers, else the
package's version with a note, so a student copy runs from top to bottom.

Conventions (dl.discrete): distributions are rows, p_t = p_s P with P[i, j] = Pr(j | i); a rate matrix Q has
rows summing to zero.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ..discrete import CTMC, masked_rates, uniform_rates
from ._base import WrongAnswer, as_array, as_scalar, call, checker, close, fmt, make_use

__all__ = ["check_master_rhs", "check_reverse_rates", "check_unmask_probability", "check_tc_copies",
           "check_temperature_prediction", "check_bayes_step", "use", "bayes_step_buggy"]

_GENERAL = torch.tensor([[-1.0, 0.7, 0.3], [0.2, -0.5, 0.3], [0.0, 1.0, -1.0]], dtype=torch.float64)


def _rows(seed: int, B: int, K: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(B, K, generator=g, dtype=torch.float64), -1)


# -- 1. the master equation (implement-and-reuse) ----------------------------------------------------------------
def _master_rhs(p: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """dp/dt = p Q for row distributions p (B, K): inflow sum_i p_i Q_ij minus outflow p_j sum_{i != j} Q_ji."""
    return p @ Q


@checker("master_rhs", "12")
def check_master_rhs(fn: Any) -> tuple[bool, str]:
    """fn(p (B, K), Q (K, K)) -> dp/dt (B, K), the master equation for a batch of row distributions (§12)."""
    for Q in (_GENERAL, masked_rates(4) * 1.5, uniform_rates(5)):
        K = Q.shape[0]
        p = _rows(K, 2, K)                                   # 2 rows, never K: a (K, B) answer shows its shape
        got = call(fn, p.clone(), Q.clone())
        want = _master_rhs(p, Q)
        if close(got, want, rtol=1e-8, atol=1e-12):
            continue
        g = as_array(got)
        off = Q - torch.diag(torch.diag(Q))
        hint = ""
        eye = torch.eye(K, dtype=torch.float64)
        if g.shape == (K, p.shape[0]) and K != p.shape[0]:
            hint = (" You returned one column per distribution (the book's column form, Q^T p). Here p holds one "
                    f"distribution per row: return shape {tuple(want.shape)}.")
        elif g.shape != tuple(want.shape):
            hint = f" Return one rate of change per state for each row of p: shape {tuple(want.shape)}, not {g.shape}."
        elif close(got, p @ (Q + eye)):
            hint = (" That is the law after one step of I + Q (a transition with dt = 1), not its rate of change: "
                    "the identity part is p itself, which does not belong in dp/dt.")
        elif close(got, p * torch.diag(Q)):
            hint = " That is the outflow only: each state also gains p_i Q[i, j] from every other state i."
        elif close(got * p.shape[0], want) or close(got, want.sum(0, keepdim=True).expand_as(want)):
            hint = " Each row of p is its own distribution: compute its change row by row, with no mean or sum over the batch."
        elif close(got, p @ Q.T):
            hint = (" You used Q's transpose. With rows, Q[i, j] is the rate i -> j and the change of state j "
                    "collects p_i Q[i, j] over i: the book's Q^T p is for column vectors.")
        elif close(got, p @ off):
            hint = " That is the inflow only: each state also loses p_j times its total rate out, -Q[j, j] >= 0."
        elif close(got, -want):
            hint = " The sign is reversed: mass flows along the positive rates, so a state with only inflow grows."
        elif abs(g.sum(-1)).max() > 1e-9:
            hint = " The changes of one row must sum to zero (probability is conserved); yours do not."
        return False, f"for K = {K} your first row is {fmt(g[0])} but should be {fmt(want[0])}.{hint}"
    return True, "dp/dt = p Q: inflow along the positive rates minus the outflow on the diagonal; the row sums stay zero."


# -- 2. reverse rates (implement-and-reuse) ----------------------------------------------------------------------
def _reverse_rates(p: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
    """R[j, i] = Q[i, j] p(i) / p(j) off the diagonal, rows summing to zero (p > 0 everywhere)."""
    R = (Q * p[:, None]).T / p[:, None]
    R = R - torch.diag(torch.diag(R))
    return R - torch.diag(R.sum(1))


def _fix_diag(R: torch.Tensor) -> torch.Tensor:
    R = R - torch.diag(torch.diag(R))
    return R - torch.diag(R.sum(1))


@checker("reverse_rates", "12")
def check_reverse_rates(fn: Any) -> tuple[bool, str]:
    """fn(p (K,), Q (K, K)) -> the reverse-time rate matrix R (K, K), R[j, i] the rate of a jump j -> i (§12)."""
    for Q in (_GENERAL, uniform_rates(4) * 2.0):
        K = Q.shape[0]
        p = _rows(10 + K, 1, K)[0]
        got = call(fn, p.clone(), Q.clone())
        want = _reverse_rates(p, Q)
        if close(got, want, rtol=1e-8, atol=1e-12):
            continue
        g = torch.as_tensor(as_array(got))
        hint = ""
        if tuple(g.shape) != (K, K):
            hint = f" Return a (K, K) matrix, here ({K}, {K}), not {tuple(g.shape)}."
        elif close(got, _fix_diag(Q * p[None, :] / p[:, None])):
            hint = (" You kept Q[j, i]; the reverse jump j -> i retraces a forward jump i -> j, so it uses Q[i, j] "
                    "(the transpose).")
        elif close(got, _fix_diag(Q.T * p[:, None] / p[None, :])):
            hint = " The ratio is upside down: R[j, i] = Q[i, j] p(i) / p(j), the forward flux i -> j divided by p(j)."
        elif close(got - torch.diag(torch.diag(g)), want - torch.diag(torch.diag(want))):
            hint = " The off-diagonal rates are right; set the diagonal so every row sums to zero (a rate matrix)."
        elif close(got, want.T):
            hint = (" Transposed: row j must hold the reverse jumps out of j (R[j, i] for j -> i), so the rows, "
                    "not the columns, sum to zero.")
        elif close(got, Q.T):
            hint = (" Q transposed alone forgets the law: the reverse rate of j -> i is the forward current i -> j, "
                    "p(i) Q[i, j], per unit of probability at j, so it carries the ratio p(i) / p(j).")
        elif close(got, _fix_diag((Q * p[:, None]).T)) or close(got, _fix_diag(Q * p[:, None])):
            hint = (" That is the forward current p(i) Q[i, j] itself; a rate is current per unit of probability "
                    "at the state the jump leaves, so divide by p(j).")
        elif not close(g.sum(1), torch.zeros(K, dtype=torch.float64)):
            hint = " The rows of a rate matrix sum to zero (the diagonal is minus the total rate out); yours do not."
        return False, f"for K = {K} your first row is {fmt(g[0])} but should be {fmt(want[0])}.{hint}"
    return True, ("R[j, i] p(j) = Q[i, j] p(i): the reverse chain carries the same probability current backwards, so "
                  "it retraces the forward marginals (checked below with your function).")


# -- 3. derivation: how many masked tokens a step reveals (implement-and-reuse) ---------------------------------
def _unmask_probability(alpha_s: float, alpha_t: float) -> float:
    """Pr(x_t shows its token | x_s masked), s > t: (alpha_t - alpha_s) / (1 - alpha_s)."""
    return (alpha_t - alpha_s) / (1 - alpha_s)


@checker("unmask_probability", "12")
def check_unmask_probability(fn: Any) -> tuple[bool, str]:
    """fn(alpha_s, alpha_t) -> the probability that a token masked at time s shows its data value at t < s."""
    for a_s, a_t in ((0.2, 0.5), (0.0, 0.3), (0.6, 0.9), (0.45, 0.45)):
        got = as_scalar(call(fn, a_s, a_t))
        want = _unmask_probability(a_s, a_t)
        if abs(got - want) < 1e-9:
            continue
        hint = ""
        if abs(got - (a_t - a_s)) < 1e-9:
            hint = (" alpha_t - alpha_s is the unconditional chance; condition on the token being masked at s, "
                    "which has probability 1 - alpha_s.")
        elif abs(got - a_t) < 1e-9 or abs(got - (1 - a_t)) < 1e-9:
            hint = " The step depends on both times: nothing is revealed when alpha_t = alpha_s."
        elif abs(got - (a_t - a_s) / a_t) < 1e-9 or abs(got - (a_t - a_s) / (1 - a_t)) < 1e-9:
            hint = " Divide by Pr(masked at s) = 1 - alpha_s, the event you condition on."
        elif got < 0 or got > 1:
            hint = (" A probability lies in [0, 1]. Since t < s, alpha_t >= alpha_s (less noise earlier): "
                    "check the order of the two alphas.")
        elif a_s > 0 and abs(got - (a_s - a_t) / a_s) < 1e-9:
            hint = " That is the linear schedule's (s - t)/s with the roles of alpha and t mixed; write it with alpha_s, alpha_t."
        return False, f"for alpha_s = {a_s}, alpha_t = {a_t} you return {fmt(got)} but it should be {fmt(want)}.{hint}"
    return True, ("(alpha_t - alpha_s) / (1 - alpha_s): Bayes on 'masked at s' (masks only accumulate, so a token "
                  "visible at t is visible at every earlier time). For alpha_t = 1 - t it is (s - t) / s.")


# -- 4. derivation: the one-step KL of copied bits ----------------------------------------------------------------
@checker("tc_copies", "12")
def check_tc_copies(fn: Any) -> tuple[bool, str]:
    """fn(L) -> KL(data || one-step sampler) in nats for L copies of one fair bit, with the exact denoiser."""
    for L in (2, 3, 5, 8):
        got = as_scalar(call(fn, L))
        want = (L - 1) * math.log(2)
        if abs(got - want) < 1e-9:
            continue
        hint = ""
        if abs(got - L * math.log(2)) < 1e-9:
            hint = " The data itself has one bit of entropy (all copies agree): subtract H(x) = ln 2 from the L token entropies."
        elif abs(got - (L - 1)) < 1e-9 or abs(got - L) < 1e-9:
            hint = " That is in bits; the course measures KL in nats (natural logarithm)."
        elif got < 0:
            hint = " A KL divergence is never negative: KL(data || sampler) = sum data * log(data / sampler), data first."
        elif abs(got - math.log(2)) < 1e-9:
            hint = " ln 2 is the answer for L = 2 only: the sampler draws L independent fair bits, 2^L equally likely strings."
        return False, f"for L = {L} you return {fmt(got)} nats but it should be {fmt(want)}.{hint}"
    return True, ("one step draws every token independently from its marginal: the product of L fair bits, whose KL "
                  "from the data is the total correlation L ln 2 - ln 2 = (L - 1) ln 2.")


# -- 5. prediction: does a colder sampler help at few steps? -----------------------------------------------------
@checker("temperature_prediction", "12")
def check_temperature_prediction(answer: Any, kl_cold: float | None = None, kl_one: float | None = None) -> tuple[bool, str]:
    """answer: 'lower', 'same' or 'higher': the 4-step KL at temperature 0.8 compared with temperature 1."""
    answer = call(answer)
    if not isinstance(answer, str) or answer.strip().lower() not in ("lower", "same", "higher"):
        raise WrongAnswer("answer with one of the strings 'lower', 'same' or 'higher'")
    a = answer.strip().lower()
    shown = "" if kl_cold is None else f" (measured: {kl_cold:.4f} nats at 0.8 against {kl_one:.4f} at 1)"
    why = (" Tokens revealed in the same step are drawn independently, so a few steps produce too many "
           "disagreeing combinations; a colder denoiser makes each token pick its likelier value, which restores "
           "some of the lost agreement. With many steps the same cooling only distorts the marginals, and "
           "temperature 1 wins again.")
    if a == "lower":
        return True, "lower: at 4 steps the colder sampler is closer to the data" + shown + "." + why
    return False, f"you predicted {a!r}; the answer is 'lower'" + shown + "." + why


# -- 6. find-the-bug: a Bayes reverse step with its indices swapped -----------------------------------------------
def bayes_step_buggy(P: torch.Tensor, p_s: torch.Tensor) -> torch.Tensor:
    """Pr(x_s = i | x_t = j) as a matrix R[j, i] from the forward transition P (K, K) and p_s (K,) (has a bug)."""
    p_t = p_s @ P
    return P * p_s[None, :] / p_t[:, None]


def _bayes_step(P: torch.Tensor, p_s: torch.Tensor) -> torch.Tensor:
    p_t = p_s @ P
    return P.T * p_s[None, :] / p_t[:, None]


@checker("bayes_step", "12")
def check_bayes_step(fn: Any) -> tuple[bool, str]:
    """fn(P (K, K), p_s (K,)) -> R (K, K) with R[j, i] = Pr(x_s = i | x_t = j), the exact reverse step (§12)."""
    for chain, s, t in ((CTMC.masked(4), 0.2, 0.6), (CTMC(_GENERAL, beta=0.8), 0.1, 0.5)):
        K = chain.K
        p_s = _rows(20 + K, 1, K)[0]
        P = chain.transition(s, t)
        got = call(fn, P.clone(), p_s.clone())
        want = _bayes_step(P, p_s)
        if close(got, want, rtol=1e-8, atol=1e-12):
            continue
        g = torch.as_tensor(as_array(got))
        hint = ""
        if close(got, bayes_step_buggy(P, p_s)):
            hint = (" This is still the original: its rows do not sum to one for the masked chain. P[i, j] is "
                    "Pr(j | i), so the forward probability of reaching j from i must be read as P[i, j], i.e. P.T[j, i].")
        elif close(got, want.T):
            hint = (" You returned R transposed: the row index is the later state j (what you condition on), so "
                    "each row, not each column, is a distribution.")
        elif close(got, torch.linalg.inv(P)):
            hint = (" Inverting P does not run the noise backwards: the inverse has negative entries, so it is not "
                    "a probability at all. The reverse step is Bayes' rule, a new stochastic matrix built from P "
                    "and the prior p_s.")
        elif close(got, P.T):
            hint = (" P.T[j, i] = Pr(j | i) is the likelihood of the later state, not a distribution over the "
                    "earlier one: weight it by the prior p_s(i) and divide by the evidence p_t(j).")
        elif close(got, P.T * p_s[None, :] / p_s[:, None]):
            hint = (" Divide by the evidence of the state you condition on, p_t(j) = sum_i p_s(i) P[i, j], "
                    "not by p_s(j).")
        elif tuple(g.shape) == (K, K) and not close(g.sum(1), torch.ones(K, dtype=torch.float64)):
            hint = " Each row j is a distribution over the earlier state i: it must sum to one."
        return False, f"for K = {K} your first row is {fmt(g[0])} but should be {fmt(want[0])}.{hint}"
    return True, "R[j, i] = P[i, j] p_s(i) / p_t(j): forward probability times prior, normalised by the evidence p_t(j)."


use = make_use({"master_rhs": _master_rhs, "reverse_rates": _reverse_rates, "unmask_probability": _unmask_probability})
