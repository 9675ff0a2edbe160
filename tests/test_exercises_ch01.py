"""Chapter 01's checks (dpm_lab/exercises/ch01.py): the right answer passes, and each typical wrong
answer fails with its specific hint."""
import math

import numpy as np
import pytest

import dpm_lab as dl

NO, OK = "\u274c", "\u2705"


def kl(p, q, dx):
    return np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0)) * dx


def js(p, q, dx):
    return 0.5 * kl(p, (p + q) / 2, dx) + 0.5 * kl(q, (p + q) / 2, dx)


def nll(x, mu, s):
    return (0.5 * ((x - mu) / s) ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi)).mean()


def moments(w, m, s):
    mean = np.dot(w, m)
    return mean, math.sqrt(np.dot(w, np.square(s) + np.square(m)) - mean ** 2)


SOLUTIONS = {
    "gaussian_nll": nll,
    "kl_grid": kl,
    "js_grid": js,
    "tv_grid": lambda p, q, dx: 0.5 * np.abs(p - q).sum() * dx,
    "gaussian_score": lambda x, mu, s: -(x - mu) / s ** 2,
    "forward_kl_fit": moments,
}

# (check, wrong answer, words its message must contain)
WRONG = [
    ("gaussian_nll", lambda x, mu, s: (0.5 * ((x - mu) / s) ** 2 + math.log(s)).mean(), ["log(2 pi) / 2"]),
    ("gaussian_nll", lambda x, mu, s: (0.5 * ((x - mu) / s) ** 2 + 0.5 * math.log(2 * math.pi)).mean(),
     ["for mu=1.0, sigma=0.5", "log sigma term"]),        # right at sigma = 1, where log sigma = 0
    ("gaussian_nll", lambda x, mu, s: -nll(x, mu, s), ["NEGATIVE log-likelihood"]),
    ("gaussian_nll", lambda x, mu, s: len(x) * nll(x, mu, s), ["mean over the data, not the sum"]),
    ("gaussian_nll", lambda x, mu, s: 0.5 * ((x - mu) / s) ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi),
     ["return one number, the mean over the data; you returned 5 numbers"]),
    ("kl_grid", lambda p, q, dx: kl(q, p, dx), ["on (p, q)", "That is KL(q || p)"]),
    ("kl_grid", lambda p, q, dx: kl(p, q, dx) / dx, ["Multiply the sum by dx"]),
    ("kl_grid", lambda p, q, dx: kl(p, q, dx) - kl(q, p, dx), ["on (p, q) your value is"]),
    ("kl_grid", lambda p, q, dx: -kl(p, q, dx), ["KL is never negative"]),
    ("kl_grid", lambda p, q, dx: p * np.log(p / q) * dx, ["one number, the integral over the grid"]),
    ("js_grid", lambda p, q, dx: 2 * js(p, q, dx), ["factor 1/2 in front of each KL"]),
    ("js_grid", lambda p, q, dx: 0.5 * kl(p, q, dx) + 0.5 * kl(q, p, dx), ["never exceed log 2"]),
    ("js_grid", lambda p, q, dx: kl(p, (p + q) / 2, dx), ["on (p, q) your value is"]),
    ("js_grid", lambda p, q, dx: js(p, q, dx) / np.log(2), ["in bits (log base 2)"]),
    ("tv_grid", lambda p, q, dx: np.abs(p - q).sum() * dx, ["factor 1/2 (TV lies in [0, 1])"]),
    ("tv_grid", lambda p, q, dx: 0.5 * np.abs(p - q).sum(), ["Multiply the sum by dx"]),
    ("tv_grid", lambda p, q, dx: 0.5 * (p - q).sum() * dx, ["Take the absolute value |p - q|"]),
    ("tv_grid", lambda p, q, dx: 0.5 * ((p - q) ** 2).sum() * dx, ["on (p, q) your value is"]),
    ("gaussian_score", lambda x, mu, s: (x - mu) / s ** 2, ["sign is flipped"]),
    ("gaussian_score", lambda x, mu, s: -(x - mu) / s, ["for mu=1.0, sigma=0.5", "variance sigma^2, not by sigma"]),
    ("gaussian_score", lambda x, mu, s: -(x - mu), ["for mu=1.0, sigma=0.5", "a narrower Gaussian has a steeper"]),
    ("gaussian_score", lambda x, mu, s: -(x - mu).sum() / s ** 2, ["you gave"]),
    ("forward_kl_fit", lambda w, m, s: (moments(w, m, s)[0], moments(w, m, s)[1] ** 2), ["take its square root"]),
    ("forward_kl_fit", lambda w, m, s: (np.dot(w, m), math.sqrt(np.dot(w, np.square(s)))),
     ["The spread of the means counts too"]),
    ("forward_kl_fit", lambda w, m, s: (m[int(np.argmax(w))], s[int(np.argmax(w))]), ["That is one component"]),
    ("forward_kl_fit", lambda w, m, s: (1.0, 2.0, 3.0), ["return a pair (mean, std); you returned 3 numbers"]),
]


def _run(name, answer, capsys):
    ok = dl.exercises.EXERCISES[name][1](answer)
    return ok, capsys.readouterr().out


def test_every_chapter_check_has_a_solution_and_a_wrong_answer():
    mine = {n for n, (ch, _) in dl.exercises.EXERCISES.items() if ch == "01"}
    assert set(SOLUTIONS) == mine
    assert {name for name, _, _ in WRONG} == mine


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_correct_answer_passes(name, capsys):
    ok, out = _run(name, SOLUTIONS[name], capsys)
    assert ok is True and out.startswith(OK)


@pytest.mark.parametrize("name, answer, words", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_wrong_answer_gets_its_hint(name, answer, words, capsys):
    ok, out = _run(name, answer, capsys)
    assert ok is False and out.startswith(NO)
    for w in words:
        assert w in out, f"{name}: {w!r} not in {out!r}"


def test_grid_checks_cover_the_reversed_and_equal_pairs(capsys):
    # symmetric in its arguments but not zero on (p, p): caught on the third pair only
    assert not dl.exercises.check_tv_grid(lambda p, q, dx: 0.5 * np.abs(p - q).sum() * dx + 1e-3 * (p is q))
    assert "on (p, p)" in capsys.readouterr().out


def test_forward_kl_fit_uses_the_learners_mixture(capsys):
    w, m, s = (0.2, 0.8), (0.0, 1.0), (0.3, 0.3)
    assert dl.exercises.check_forward_kl_fit(moments, weights=w, means=m, stds=s) is True
    capsys.readouterr()
