"""Chapter 00 (the tour): a schedule's alpha_t, forward noising and the four predictions (§6.3.1)."""
from __future__ import annotations

import math
from typing import Any

from ..schedules import VPLinear
from ._base import as_array, as_scalar, call, checker, close, example_pair, fmt

__all__ = ["check_vp_alpha", "check_forward_noise", "check_eps_from_x0", "check_score_from_eps"]

_TS = (0.1, 0.3, 0.5, 0.8)


@checker("vp_alpha", "00")
def check_vp_alpha(fn: Any) -> tuple[bool, str]:
    """fn(t: float) -> alpha_t of the linear VP schedule (beta_min=0.1, beta_max=20)."""
    sch = VPLinear()
    for t in _TS:
        got, want = as_scalar(call(fn, t), f"one number, alpha_t at t={t}"), float(sch.alpha(t))
        if not math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-7):
            hint = ""
            if math.isclose(got, want ** 2, rel_tol=1e-3):
                hint = " That is alpha_t^2: did you forget the square root (the factor 1/2 in the exponent)?"
            elif math.isclose(got, math.sqrt(1 - want ** 2), rel_tol=1e-3):
                hint = " That is sigma_t, the noise coefficient: alpha_t multiplies the data."
            elif math.isclose(got, math.exp(-(0.1 * t + 0.5 * 19.9 * t * t) / 4), rel_tol=1e-3) or \
                    math.isclose(got, math.exp(-(0.1 * t + 19.9 * t * t) / 2), rel_tol=1e-3):
                hint = " Check the integral B(t) = beta_min t + (beta_max - beta_min) t^2 / 2."
            return False, f"at t={t} your alpha is {got:.4g} but should be {want:.4g}.{hint}"
    return True, "alpha_t matches dl.VPLinear().alpha at t = 0.1, 0.3, 0.5, 0.8. Well done!"


@checker("forward_noise", "00")
def check_forward_noise(fn: Any) -> tuple[bool, str]:
    """fn(x0, eps, t, schedule) -> x_t = alpha_t x0 + sigma_t eps."""
    sch = VPLinear()
    x0, eps = example_pair(0)
    for t in _TS:
        got = call(fn, x0, eps, t, sch)
        want = sch.alpha(t) * x0 + sch.sigma(t) * eps
        if not close(got, want):
            hint = ""
            if close(got, sch.sigma(t) * x0 + sch.alpha(t) * eps):
                hint = " You swapped the roles: alpha_t multiplies the data, sigma_t the noise."
            elif close(got, sch.alpha(t) * x0 + sch.sigma(t) ** 2 * eps):
                hint = " sigma_t is already a standard deviation; do not square it."
            elif close(got, sch.alpha(t) ** 2 * x0 + sch.sigma(t) ** 2 * eps):
                hint = " alpha_t and sigma_t are already the coefficients (not variances); do not square them."
            elif as_array(got).shape != tuple(x0.shape):
                hint = f" Return x_t with the shape of x0, {tuple(x0.shape)}: no sum or mean over dimensions."
            return False, f"at t={t} your x_t[0] is {fmt(as_array(got)[0])} but should be {fmt(want[0])}.{hint}"
    return True, "x_t = alpha_t x0 + sigma_t eps, exactly. Nice."


@checker("eps_from_x0", "00")
def check_eps_from_x0(fn: Any) -> tuple[bool, str]:
    """fn(x_t, t, x0_hat, schedule) -> the eps that goes with a denoiser output x0_hat."""
    sch = VPLinear()
    x0, eps = example_pair(1)
    for t in _TS:
        x_t = sch.alpha(t) * x0 + sch.sigma(t) * eps
        got = call(fn, x_t, t, x0, sch)
        if not close(got, eps):
            hint = ""
            if close(got, x_t - sch.alpha(t) * x0):
                hint = " Almost: divide by sigma_t at the end."
            elif close(got, -eps):
                hint = " The sign is flipped: subtract alpha_t x0_hat from x_t, not the other way round."
            elif close(got, (x_t - sch.alpha(t) * x0) / sch.sigma(t) ** 2):
                hint = " Divide by sigma_t, not by its square."
            elif close(got, (x_t - x0) / sch.sigma(t)):
                hint = " Scale x0_hat by alpha_t before subtracting it: x_t holds alpha_t x0, not x0."
            return False, (f"at t={t} your eps[0] is {fmt(as_array(got)[0])} but should be {fmt(eps[0])}."
                           f"{hint} Solve x_t = alpha_t x0 + sigma_t eps for eps.")
    return True, "eps = (x_t - alpha_t x0) / sigma_t recovers the noise exactly."


@checker("score_from_eps", "00")
def check_score_from_eps(fn: Any) -> tuple[bool, str]:
    """fn(eps_hat, t, schedule) -> the score -eps_hat / sigma_t (Tweedie, §3.3.4, §6.3.1)."""
    sch = VPLinear()
    _, eps = example_pair(2)
    for t in _TS:
        got = call(fn, eps, t, sch)
        want = -eps / sch.sigma(t)
        if not close(got, want):
            hint = ""
            if close(got, eps / sch.sigma(t)):
                hint = " The sign is off: the score points back toward the data, against the noise."
            elif close(got, -eps / sch.sigma(t) ** 2) or close(got, -eps * sch.sigma(t)):
                hint = " Check the power of sigma_t: score = -eps / sigma_t."
            return False, f"at t={t} your score[0] is {fmt(as_array(got)[0])} but should be {fmt(want[0])}.{hint}"
    return True, "score = -eps / sigma_t. The four predictions are one object."
