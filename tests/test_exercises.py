"""Tests of dpm_lab.exercises: right answers pass, stubs and bugs get a message, nothing raises."""
import math

import numpy as np
import pytest
import torch

from dpm_lab import exercises as ex


def _a(b):
    return torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(torch.sqrt(1 - b ** 2), 0)])


SOLUTIONS = {
    "vp_alpha": lambda t: math.exp(-0.5 * (0.1 * t + 0.5 * 19.9 * t ** 2)),
    "forward_noise": lambda x0, eps, t, s: s.alpha(t) * x0 + s.sigma(t) * eps,
    "eps_from_x0": lambda x_t, t, x0, s: (x_t - s.alpha(t) * x0) / s.sigma(t),
    "score_from_eps": lambda eps, t, s: -eps / s.sigma(t),
    "gaussian_nll": lambda x, mu, s: (0.5 * ((x - mu) / s) ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi)).mean(),
    "kl_grid": lambda p, q, dx: np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0)) * dx,
    "js_grid": lambda p, q, dx: 0.5 * SOLUTIONS["kl_grid"](p, (p + q) / 2, dx) + 0.5 * SOLUTIONS["kl_grid"](q, (p + q) / 2, dx),
    "tv_grid": lambda p, q, dx: 0.5 * np.abs(p - q).sum() * dx,
    "gaussian_score": lambda x, mu, s: -(x - mu) / s ** 2,
    "forward_kl_fit": lambda w, m, s: (np.dot(w, m), math.sqrt(np.dot(w, np.square(s) + np.square(m)) - np.dot(w, m) ** 2)),
    "alpha_bar": lambda b: torch.cumprod(torch.sqrt(1 - b ** 2), 0),
    "ddpm_posterior": lambda x_i, x0, i, b: (
        _a(b)[i - 1] * b[i - 1] ** 2 / (1 - _a(b)[i] ** 2) * x0
        + (1 - _a(b)[i - 1] ** 2) * torch.sqrt(1 - b[i - 1] ** 2) / (1 - _a(b)[i] ** 2) * x_i,
        (1 - _a(b)[i - 1] ** 2) / (1 - _a(b)[i] ** 2) * b[i - 1] ** 2),
    "eps_mean": lambda x_i, eps, i, b: (x_i - b[i - 1] ** 2 / torch.sqrt(1 - _a(b)[i] ** 2) * eps) / torch.sqrt(1 - b[i - 1] ** 2),
    "gaussian_kl": lambda m1, m2, var: ((m1 - m2) ** 2).sum() / (2 * var),
    "vae_kl": lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - lv).sum(-1),
}


def test_every_exercise_has_a_solution_here():
    assert set(SOLUTIONS) == set(ex.EXERCISES)


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_correct_answer_passes(name, capsys):
    check = ex.EXERCISES[name][1]
    assert check(SOLUTIONS[name]) is True
    assert "\u2705" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
@pytest.mark.parametrize("stub", [None, lambda *a: None])
def test_stub_is_not_attempted(name, stub, capsys):
    assert ex.EXERCISES[name][1](stub) is False
    assert "not attempted yet" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_crashing_answer_is_reported(name, capsys):
    def boom(*args):
        raise KeyError("oops")
    assert ex.EXERCISES[name][1](boom) is False
    assert "raised KeyError" in capsys.readouterr().out


def test_specific_hints(capsys):
    assert not ex.check_vp_alpha(lambda t: math.exp(-(0.1 * t + 0.5 * 19.9 * t ** 2)))
    out = capsys.readouterr().out
    assert "at t=0.1 your alpha is 0.8963 but should be 0.9467" in out and "square root" in out
    assert not ex.check_alpha_bar(lambda b: torch.cumprod(1 - b, 0))
    assert "Ho et al." in capsys.readouterr().out
    assert not ex.check_tv_grid(lambda p, q, dx: np.abs(p - q).sum() * dx)
    assert "factor 1/2" in capsys.readouterr().out
    assert not ex.check_score_from_eps(lambda e, t, s: e / s.sigma(t))
    assert "sign" in capsys.readouterr().out.lower()
    assert not ex.check_kl_grid(lambda p, q, dx: SOLUTIONS["kl_grid"](q, p, dx))
    assert "KL(q || p)" in capsys.readouterr().out
    assert not ex.check_gaussian_nll(lambda x, mu, s: (0.5 * ((x - mu) / s) ** 2 + math.log(s)).mean())
    assert "log(2 pi)" in capsys.readouterr().out
    assert not ex.check_vae_kl(lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - lv).sum())
    assert "one KL per example" in capsys.readouterr().out


def test_wrong_shape_or_type_does_not_raise(capsys):
    assert ex.check_ddpm_posterior(lambda *a: 3.0) is False
    assert ex.check_forward_kl_fit(lambda *a: (1.0, 2.0, 3.0)) is False
    assert ex.check_forward_noise(lambda *a: "x") is False
    capsys.readouterr()


def test_chapters_are_tagged():
    chapters = {ch for ch, _ in ex.EXERCISES.values()}
    assert {"00", "01", "02"} <= chapters
    assert all(sum(ch == c for c, _ in ex.EXERCISES.values()) >= 4 for ch in ("00", "01", "02"))
