"""Chapter 00's checks (dpm_lab/exercises/ch00.py): the right answer passes, and each typical wrong
answer fails with its specific hint."""
import math

import pytest

import dpm_lab as dl

NO, OK = "\u274c", "\u2705"

SOLUTIONS = {
    "vp_alpha": lambda t: math.exp(-0.5 * (0.1 * t + 0.5 * 19.9 * t ** 2)),
    "forward_noise": lambda x0, eps, t, s: s.alpha(t) * x0 + s.sigma(t) * eps,
    "eps_from_x0": lambda x_t, t, x0, s: (x_t - s.alpha(t) * x0) / s.sigma(t),
    "score_from_eps": lambda eps, t, s: -eps / s.sigma(t),
}

# (check, wrong answer, words its message must contain)
WRONG = [
    ("vp_alpha", lambda t: math.exp(-(0.1 * t + 0.5 * 19.9 * t ** 2)),
     ["at t=0.1 your alpha is 0.8963 but should be 0.9467", "square root"]),
    ("vp_alpha", lambda t: math.sqrt(1 - math.exp(-(0.1 * t + 0.5 * 19.9 * t ** 2))), ["That is sigma_t"]),
    ("vp_alpha", lambda t: math.exp(-(0.1 * t + 19.9 * t * t) / 2), ["Check the integral B(t)"]),
    ("vp_alpha", lambda t: math.exp(-(0.1 * t + 0.5 * 19.9 * t * t) / 4), ["Check the integral B(t)"]),
    ("vp_alpha", lambda t: 1 - t, ["at t=0.1 your alpha is 0.9 but should be 0.9467."]),
    ("vp_alpha", lambda t: [t, 1 - t], ["return one number, alpha_t at t=0.1; you returned 2 numbers"]),
    ("forward_noise", lambda x0, eps, t, s: s.sigma(t) * x0 + s.alpha(t) * eps, ["swapped the roles"]),
    ("forward_noise", lambda x0, eps, t, s: s.alpha(t) * x0 + s.sigma(t) ** 2 * eps, ["do not square it"]),
    ("forward_noise", lambda x0, eps, t, s: s.alpha(t) ** 2 * x0 + s.sigma(t) ** 2 * eps, ["not variances"]),
    ("forward_noise", lambda x0, eps, t, s: (s.alpha(t) * x0 + s.sigma(t) * eps).sum(-1),
     ["at t=0.1 your x_t[0] is", "Return x_t with the shape of x0, (5, 2)"]),
    ("forward_noise", lambda x0, eps, t, s: x0 + s.sigma(t) * eps, ["at t=0.1 your x_t[0] is", "should be"]),
    ("eps_from_x0", lambda x_t, t, x0, s: x_t - s.alpha(t) * x0, ["divide by sigma_t", "Solve x_t"]),
    ("eps_from_x0", lambda x_t, t, x0, s: (s.alpha(t) * x0 - x_t) / s.sigma(t), ["The sign is flipped"]),
    ("eps_from_x0", lambda x_t, t, x0, s: (x_t - s.alpha(t) * x0) / s.sigma(t) ** 2, ["not by its square"]),
    ("eps_from_x0", lambda x_t, t, x0, s: (x_t - x0) / s.sigma(t), ["Scale x0_hat by alpha_t"]),
    ("eps_from_x0", lambda x_t, t, x0, s: x_t / s.sigma(t), ["at t=0.1 your eps[0]", "Solve x_t"]),
    ("score_from_eps", lambda eps, t, s: eps / s.sigma(t), ["The sign is off"]),
    ("score_from_eps", lambda eps, t, s: -eps / s.sigma(t) ** 2, ["power of sigma_t"]),
    ("score_from_eps", lambda eps, t, s: -eps * s.sigma(t), ["power of sigma_t"]),
]


def _run(name, answer, capsys):
    ok = dl.exercises.EXERCISES[name][1](answer)
    return ok, capsys.readouterr().out


def test_every_chapter_check_has_a_solution_and_a_wrong_answer():
    mine = {n for n, (ch, _) in dl.exercises.EXERCISES.items() if ch == "00"}
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


def test_the_public_names():
    assert dl.exercises.check_vp_alpha(SOLUTIONS["vp_alpha"]) is True
    assert dl.exercises.check_score_from_eps.chapter == "00"
