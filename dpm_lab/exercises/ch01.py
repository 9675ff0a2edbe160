"""Chapter 01 (generative modeling): likelihoods, divergences on a grid, scores, the forward-KL fit."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ._base import CPU, as_array, as_scalar, call, checker, close, fmt

__all__ = ["check_gaussian_nll", "check_kl_grid", "check_js_grid", "check_tv_grid", "check_gaussian_score",
           "check_forward_kl_fit"]


@checker("gaussian_nll", "01")
def check_gaussian_nll(fn: Any) -> tuple[bool, str]:
    """fn(x (N,), mu, sigma) -> mean negative log-likelihood of N(mu, sigma^2) on the data."""
    x = torch.tensor([-1.0, 0.3, 0.8, 2.0, 2.5], dtype=torch.float64, device=CPU)
    for mu, s in ((0.0, 1.0), (1.0, 0.5), (-0.5, 2.0)):
        got = as_scalar(call(fn, x, mu, s), "one number, the mean over the data")
        want = float((0.5 * ((x - mu) / s) ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi)).mean())
        if not math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-8):
            diff = got - want
            hint = ""
            if math.isclose(diff, -0.5 * math.log(2 * math.pi), abs_tol=1e-6):
                hint = " You are missing the constant log(2 pi) / 2."
            elif math.isclose(diff, -math.log(s), abs_tol=1e-6):
                hint = " You are missing the log sigma term (the normaliser depends on sigma)."
            elif math.isclose(got, -want, rel_tol=1e-5):
                hint = " Sign: the NEGATIVE log-likelihood is a positive-ish loss."
            elif math.isclose(got, want * len(x), rel_tol=1e-5):
                hint = " Take the mean over the data, not the sum."
            return False, f"for mu={mu}, sigma={s} your NLL is {got:.4g} but should be {want:.4g}.{hint}"
    return True, "the mean Gaussian NLL is right: minimising it is MLE, i.e. forward KL."


def _grid_pair() -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """A bimodal p and a broad q on a grid of 601 points over [-6, 6], both normalised."""
    x = np.linspace(-6, 6, 601)
    dx = x[1] - x[0]
    p = 0.5 * np.exp(-0.5 * (x + 1.5) ** 2 / 0.25) + 0.5 * np.exp(-0.5 * (x - 1.5) ** 2 / 0.25)
    q = np.exp(-0.5 * (x - 0.3) ** 2 / 1.5)
    p, q = p / (p.sum() * dx), q / (q.sum() * dx)
    return x, dx, p, q


def _kl(p: np.ndarray, q: np.ndarray, dx: float) -> float:
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q[m])) * dx)


def _js(p: np.ndarray, q: np.ndarray, dx: float) -> float:
    m = 0.5 * (p + q)
    return 0.5 * _kl(p, m, dx) + 0.5 * _kl(q, m, dx)


def _tv(p: np.ndarray, q: np.ndarray, dx: float) -> float:
    return float(0.5 * np.abs(p - q).sum() * dx)


def _grid_check(fn: Any, ref: Callable, hints: Callable) -> tuple[bool, str | None]:
    """Compare fn(a, b, dx) with ref on (p, q), (q, p) and (p, p); hints(got, want, a, b, dx) explains."""
    x, dx, p, q = _grid_pair()
    for label, a, b in (("p, q", p, q), ("q, p", q, p), ("p, p", p, p)):
        got = as_scalar(call(fn, a, b, dx), "one number, the integral over the grid")
        want = ref(a, b, dx)
        if not math.isclose(got, want, rel_tol=1e-3, abs_tol=1e-6):
            return False, f"on ({label}) your value is {got:.4g} but should be {want:.4g}.{hints(got, want, a, b, dx)}"
    return True, None


@checker("kl_grid", "01")
def check_kl_grid(fn: Any) -> tuple[bool, str]:
    """fn(p, q, dx) -> KL(p || q) = sum p log(p / q) dx for densities on a grid."""
    def hints(got, want, a, b, dx):
        if math.isclose(got, _kl(b, a, dx), rel_tol=1e-3):
            return " That is KL(q || p): the first argument is the one you average over."
        if math.isclose(got, want / dx, rel_tol=1e-3):
            return " Multiply the sum by dx to turn it into an integral."
        if math.isclose(got, -want, rel_tol=1e-3):
            return " KL is never negative: average log(p / q), with p on top, over p."
        return ""
    ok, msg = _grid_check(fn, _kl, hints)
    return ok, msg or "KL is right, and KL(p||p) = 0. Note KL(p||q) != KL(q||p)."


@checker("js_grid", "01")
def check_js_grid(fn: Any) -> tuple[bool, str]:
    """fn(p, q, dx) -> Jensen-Shannon divergence (1/2) KL(p||m) + (1/2) KL(q||m), m = (p + q)/2."""
    def hints(got, want, a, b, dx):
        if math.isclose(got, 2 * want, rel_tol=1e-3):
            return " You are missing the factor 1/2 in front of each KL."
        if math.isclose(got, want / math.log(2), rel_tol=1e-3):
            return " That is JS in bits (log base 2); use the natural log, as everywhere in the course."
        if got > math.log(2) + 1e-9:
            return " JS can never exceed log 2: compare each density with the average m, not with the other."
        return ""
    ok, msg = _grid_check(fn, _js, hints)
    return ok, msg or "JS is right, symmetric and below log 2 = 0.693."


@checker("tv_grid", "01")
def check_tv_grid(fn: Any) -> tuple[bool, str]:
    """fn(p, q, dx) -> total variation distance (1/2) int |p - q| dx."""
    def hints(got, want, a, b, dx):
        if math.isclose(got, 2 * want, rel_tol=1e-3):
            return " You are missing the factor 1/2 (TV lies in [0, 1])."
        if abs(got) < 1e-6 < want:
            return " Take the absolute value |p - q|: p - q alone integrates to 0."
        if math.isclose(got, want / dx, rel_tol=1e-3):
            return " Multiply the sum by dx to turn it into an integral."
        return ""
    ok, msg = _grid_check(fn, _tv, hints)
    return ok, msg or "TV is right: symmetric and in [0, 1]."


@checker("gaussian_score", "01")
def check_gaussian_score(fn: Any) -> tuple[bool, str]:
    """fn(x (N,), mu, sigma) -> d/dx log N(x; mu, sigma^2) = -(x - mu) / sigma^2."""
    x = torch.tensor([-1.0, 0.3, 2.0], dtype=torch.float64, device=CPU)
    for mu, s in ((0.0, 1.0), (1.0, 0.5)):
        got = call(fn, x, mu, s)
        want = -(x - mu) / s ** 2
        if not close(got, want):
            hint = ""
            if close(got, -want):
                hint = " The sign is flipped: the score points toward the mean."
            elif close(got, -(x - mu) / s):
                hint = " Divide by the variance sigma^2, not by sigma."
            elif close(got, -(x - mu)):
                hint = " Divide by the variance sigma^2: a narrower Gaussian has a steeper score."
            return False, f"for mu={mu}, sigma={s}, x={fmt(x)} you gave {fmt(got)} but should give {fmt(want)}.{hint}"
    return True, "the Gaussian score is right, and it never needed the normaliser 1/sqrt(2 pi sigma^2)."


@checker("forward_kl_fit", "01")
def check_forward_kl_fit(answer: Any, weights=(0.5, 0.5), means=(-2.0, 2.0), stds=(0.5, 0.5)) -> tuple[bool, str]:
    """answer(weights, means, stds) -> (mean, std) of the Gaussian minimising KL(p || q) for a 1D mixture p.

    The forward-KL (MLE) fit of a Gaussian matches the first two moments of p.
    """
    cases = [(weights, means, stds), ((0.3, 0.7), (-1.0, 3.0), (1.0, 0.5))]
    for w, m, s in cases:
        got = as_array(call(answer, w, m, s)).ravel()
        w_, m_, s_ = map(np.asarray, (w, m, s))
        mean = float((w_ * m_).sum())
        var = float((w_ * (s_ ** 2 + m_ ** 2)).sum() - mean ** 2)
        want = np.array([mean, math.sqrt(var)])
        if got.shape != (2,):
            return False, f"return a pair (mean, std); you returned {got.size} numbers"
        if not np.allclose(got, want, rtol=1e-4, atol=1e-6):
            hint = ""
            if math.isclose(got[1], var, rel_tol=1e-4):
                hint = " You returned the variance: take its square root."
            elif any(np.allclose(got, (mk, sk), rtol=1e-4) for mk, sk in zip(m_, s_)):
                hint = (" That is one component: the forward-KL (MLE) fit must cover every mode, so match the "
                        "mixture's mean and variance.")
            elif math.isclose(got[1] ** 2, float((w_ * s_ ** 2).sum()), rel_tol=1e-3):
                hint = " The spread of the means counts too: Var = E[Var|k] + Var(E|k)."
            return False, f"for weights={w}, means={m}, stds={s} you gave {fmt(got)} but should give {fmt(want)}.{hint}"
    return True, "moment matching: the forward-KL fit covers both modes."
