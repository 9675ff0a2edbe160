"""Chapter 11 (flow maps): the checks of §11.2-11.5 and the package's versions later cells fall back on.

Course convention: t = 0 data, t = 1 noise, the linear path x_t = (1 - t) x0 + t eps (alpha_t = 1 - t,
sigma_t = t), flow maps G(x, s, t) jump from s to t <= s.

Kinds: implement-and-reuse (ct_target, cm_coeffs, gamma_sampling_step: later cells call the learner's function through
`use`), a prediction (multistep_cm), derivations checked numerically (meanflow_identity, ctm_from_meanflow) and
a find-the-bug (meanflow_one_step, the sign printed in §11.5.2).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..datasets import eight_gaussians_mixture
from ..flowmaps import cm_boundary_coeffs, ct_ddim_target, oracle_average_velocity
from ..schedules import RectifiedFlow
from ..utils import randn
from ._base import WrongAnswer, as_array, call, checker, close, example_pair, fmt, make_use

__all__ = ["check_ct_target", "check_cm_coeffs", "check_gamma_sampling_step", "check_multistep_cm",
           "check_meanflow_identity", "check_ctm_from_meanflow", "check_meanflow_one_step", "use"]

_FLOW = RectifiedFlow()


def _same_shape(got: Any, want: torch.Tensor, what: str) -> None:
    a = as_array(got)
    if a.shape != tuple(want.shape):
        raise WrongAnswer(f"{what} should have shape {tuple(want.shape)}, yours has shape {a.shape}")


# -- 1. the CT target as a DDIM step (implement-and-reuse) ---------------------------------------------------------
def _ct_target(x_s: torch.Tensor, eps: torch.Tensor, s: torch.Tensor, s_prev: torch.Tensor) -> torch.Tensor:
    """One DDIM step s -> s' whose model predicts the noise eps that made x_s (the one-point estimate)."""
    a_s, sg_s = (1 - s)[:, None], s[:, None]
    x0_hat = (x_s - sg_s * eps) / a_s
    return ct_ddim_target(x0_hat, eps, s_prev, _FLOW)


@checker("ct_target", "11")
def check_ct_target(fn: Any) -> tuple[bool, str]:
    """fn(x_s (B, D), eps (B, D), s (B,), s_prev (B,)) -> (B, D): one DDIM step from s down to s_prev < s whose
    model predicts the noise eps that made x_s (consistency training's one-point estimate), on the linear path."""
    x0, eps = example_pair(111, (5, 3))
    s = torch.tensor([0.3, 0.5, 0.6, 0.8, 0.95], dtype=torch.float64)
    sp = torch.tensor([0.0, 0.2, 0.45, 0.7, 0.5], dtype=torch.float64)
    x_s = (1 - s)[:, None] * x0 + s[:, None] * eps
    try:
        got = call(fn, x_s, eps, s, sp)
    except RuntimeError as err:
        if "must match the size" not in str(err):
            raise
        # times of shape (B,) against points of shape (B, D): B = 5 and D = 3 do not broadcast
        return False, ("the times s and s' have shape (B,) = (5,) but the points have shape (B, D) = (5, 3), so "
                       "PyTorch cannot multiply them (it lines up the last axes); make each time a column first, "
                       "s[:, None] (shape (B, 1)), so it scales every coordinate of its own row.")
    want = _ct_target(x_s, eps, s, sp)
    if close(got, want):
        return True, ("the clean estimate is exactly x0, so the step lands on (1 - s') x0 + s' eps, the same pair's "
                      "point one notch less noisy.")
    _same_shape(got, want, "the step's result")
    a, S, SP = as_array(got), s[:, None], sp[:, None]
    if close(a, x_s):
        return False, "you returned x_s unchanged: the step must move the point from time s to time s'."
    if close(a, (1 - SP) * (x_s - S * eps) + SP * eps):
        return False, ("the clean estimate x_s - s eps is not yet x0: on the linear path the data in x_s are also "
                       "scaled by alpha_s = 1 - s; undo that scaling before re-noising.")
    x0_hat = (x_s - S * eps) / (1 - S)
    if close(a, (1 - SP) * x0_hat):
        return False, ("the noise term is missing: DDIM keeps the predicted noise (here the same eps) and puts it back "
                       "at level sigma_{s'} = s'.")
    if close(a, SP * x0_hat + (1 - SP) * eps):
        return False, "x0 and eps are swapped when you re-noise: in the course's time the data carry 1 - s' at s'."
    if close(a, x0_hat + SP * eps):
        return False, ("that re-noises on the VE/EDM path x0 + s' eps; on the course's linear path the data are also "
                       "scaled down, by alpha_{s'} = 1 - s'.")
    if close(a, (1 - SP) * x0_hat + S * eps):
        return False, "the noise is put back at the old level s; at time s' it enters with sigma_{s'} = s'."
    if close(a, x0_hat):
        return False, ("you returned the clean estimate itself (the point at time 0): the target is one notch less "
                       "noisy, at time s', so put the noise back at that level.")
    if close(a, (1 - SP) * (x_s - S * eps / (1 - S)) + SP * eps):
        return False, ("a precedence slip: only the noise term was divided by alpha_s = 1 - s. Subtract the noise "
                       "first and divide the whole difference x_s - s eps by 1 - s (brackets around the difference).")
    return False, f"expected {fmt(want)}, got {fmt(got)}."


# -- 2. the consistency boundary coefficients (implement-and-reuse) -----------------------------------------------
def _cm_coeffs(s: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, torch.Tensor]:
    return cm_boundary_coeffs(_FLOW, s, sigma_data)


@checker("cm_coeffs", "11")
def check_cm_coeffs(fn: Any) -> tuple[bool, str]:
    """fn(s (B,), sigma_data) -> (c_skip (B,), c_out (B,)) of f = c_skip x + c_out F on the linear path, in the
    EDM scaling of the noise level r = sigma_s / alpha_s (finite at s = 1)."""
    s = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    for sd in (1.0, 0.5):
        got = call(fn, s, sd)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise WrongAnswer("return the pair (c_skip, c_out)")
        want = _cm_coeffs(s, sd)
        if close(got[0], want[0]) and close(got[1], want[1]):
            continue
        cs, co = as_array(got[0]), as_array(got[1])
        if abs(cs[0] - 1) > 1e-9 or abs(co[0]) > 1e-9:
            return False, (f"at s = 0 you give c_skip = {cs[0]:.3g}, c_out = {co[0]:.3g}: f(x, 0) = x for every "
                           "network output needs c_skip(0) = 1 and c_out(0) = 0.")
        r = s[1:4] / (1 - s[1:4])
        if close(cs[1:4], sd ** 2 / (r ** 2 + sd ** 2)):
            return False, ("c_skip is EDM's sigma_d^2 / (r^2 + sigma_d^2) for x / alpha_s; the network sees x itself, "
                           "so divide c_skip by alpha_s = 1 - s (and write it so that s = 1 stays finite).")
        if close(cs[1:4], sd ** 2 / (s[1:4] ** 2 + sd ** 2)):
            return False, ("you used s as the noise level (EDM's sigma = s); on the linear path the noise-to-signal "
                           "ratio is r = s / (1 - s).")
        if not (math.isfinite(cs[-1]) and math.isfinite(co[-1])):
            return False, "at s = 1 (alpha = 0) your coefficients are not finite: multiply through by alpha_s."
        if close(cs, want[0]) and close(co[1:4], (sd * s * (1 - s) / torch.sqrt(s ** 2 + sd ** 2 * (1 - s) ** 2))[1:4]):
            return False, ("c_skip is right; c_out still carries a factor alpha_s = 1 - s. EDM's c_out multiplies the "
                           "network output, which is not divided by alpha_s: only the x / alpha_s in c_skip changes.")
        if close(cs, want[0]) and close(co[1:4], (sd * s / (s ** 2 + sd ** 2 * (1 - s) ** 2))[1:4]):
            return False, ("c_skip is right; c_out is missing a square root: EDM's out is sigma_d r / sqrt(r^2 + sigma_d^2), "
                           "so after multiplying through by alpha_s the denominator is a square root.")
        return False, (f"for sigma_data = {sd}: expected c_skip {fmt(want[0])}, c_out {fmt(want[1])}; got "
                       f"{fmt(got[0])}, {fmt(got[1])}.")
    return True, "c_skip, c_out match at sigma_data = 1 and 0.5, with f(x, 0) = x and finite values at s = 1."


# -- 3. one gamma-sampling step (implement-and-reuse) --------------------------------------------------------------
def _tilde(t: float, gamma: float) -> float:
    k = math.sqrt(max(1 - gamma ** 2, 0.0))
    return k * t / (1 - t + k * t)


def _gamma_step(G: Callable, x: torch.Tensor, s: float, t: float, gamma: float, z: torch.Tensor) -> torch.Tensor:
    tt = _tilde(t, gamma)
    return (1 - t) / (1 - tt) * G(x, s, tt) + gamma * t * z


def _demo_map(x: torch.Tensor, s: float, t: float) -> torch.Tensor:
    """A smooth stand-in flow map with G(x, s, s) = x, for checks."""
    return x * (1 + 0.3 * (t - s)) + (t - s) * torch.tanh(x).flip(-1)


@checker("gamma_sampling_step", "11")
def check_gamma_sampling_step(fn: Any) -> tuple[bool, str]:
    """fn(G, x (B, D), s, t, gamma, z (B, D)) -> (B, D): one gamma-sampling step from s to t < s on the linear
    path, with z the standard normal noise to re-noise with (gamma = 0: deterministic, gamma = 1: CM multistep)."""
    x, z = example_pair(113, (6, 2))
    for s, t, gamma in ((0.9, 0.5, 0.0), (0.8, 0.4, 0.6), (0.9, 0.5, 1.0), (0.7, 0.3, 0.3)):
        got = call(fn, _demo_map, x, s, t, gamma, z)
        want = _gamma_step(_demo_map, x, s, t, gamma, z)
        if close(got, want, 1e-5, 1e-7):
            continue
        _same_shape(got, want, "the new state")
        a, k = as_array(got), math.sqrt(1 - gamma ** 2)
        if close(a, _demo_map(x, s, k * t) + gamma * t * z, 1e-5, 1e-7):
            return False, (f"at gamma = {gamma}: you jumped to sqrt(1 - gamma^2) t and added gamma t z: that is the "
                           "VE form of §11.4.4. On the linear path the data are scaled by 1 - t: jump to the time whose "
                           "noise-to-signal ratio t/(1 - t) is sqrt(1 - gamma^2) times that of t, and scale by "
                           "alpha_t / alpha_t~ before adding noise.")
        if 0 < gamma < 1 and close(a, (1 - t) / (1 - k * t) * _demo_map(x, s, k * t) + gamma * t * z, 1e-5, 1e-7):
            return False, (f"at gamma = {gamma}: the scaling is right but you jumped to t~ = sqrt(1 - gamma^2) t, the VE "
                           "rule: on the linear path it is the ratio t~/(1 - t~), not t~ itself, that shrinks by "
                           "sqrt(1 - gamma^2).")
        tt = _tilde(t, gamma)
        if 0 < gamma < 1 and close(a, (1 - t) / (1 - tt) * _demo_map(x, s, tt) + gamma * tt * z, 1e-5, 1e-7):
            return False, (f"at gamma = {gamma}: the noise is scaled to the intermediate time t~; the kernel from t~ to t "
                           "must bring the noise up to the level of t: work out sigma_t^2 - (alpha_t/alpha_t~)^2 sigma_t~^2.")
        if close(a, _demo_map(x, s, tt) + gamma * t * z, 1e-5, 1e-7):
            return False, (f"at gamma = {gamma}: the jump time is right but the re-noise forgets the signal scale: "
                           "the forward kernel from t~ to t multiplies by alpha_t / alpha_t~ = (1 - t)/(1 - t~).")
        if close(a, (1 - t) / (1 - tt) * _demo_map(x, s, tt) + gamma * z, 1e-5, 1e-7):
            return False, f"at gamma = {gamma}: the noise must be scaled to the level of time t: gamma sigma_t z = gamma t z."
        if close(a, (1 - t) / (1 - tt) * _demo_map(x, s, tt) + math.sqrt(1 - gamma ** 2) * t * z, 1e-5, 1e-7):
            return False, (f"at gamma = {gamma}: the noise you add has std sqrt(1 - gamma^2) t; the jump kept that "
                           "much, the rest, gamma t, is re-noised.")
        return False, f"at (s, t, gamma) = ({s}, {t}, {gamma}): expected {fmt(want)}, got {fmt(got)}."
    return True, "one step matches at gamma = 0, 0.3, 0.6 and 1 (gamma = 1 jumps to data and re-noises: CM multistep)."


# -- 4. multistep CM (predict-then-run) ----------------------------------------------------------------------------
_WHY4 = ("CM multistep is not a solver: each step throws away the sample's position, re-noises a data estimate to "
         "the next time and asks the student again. With an exact student every step returns exact samples, so there is "
         "no discretization error for more steps to shrink; with a real student each re-noised level brings its own "
         "error. So the curve stalls (the book reports it degrading for M >= 4 and bounds the TV error by "
         "sqrt(T + tau_1 + ... + tau_M), which grows with M). The next cell measures M = 1, 2, 4, 8 beside the floor.")


@checker("multistep_cm", "11")
def check_multistep_cm(answer: Any) -> tuple[bool, str]:
    """answer: 'a' (W2 falls clearly at every doubling M = 1 -> 2 -> 4 -> 8, as an ODE solver's error would) or
    'b' (it stalls: at least one doubling brings no gain beyond the seed spread), for CM multistep sampling
    (gamma = 1) of the chapter's consistency models."""
    got = call(answer)
    key = str(got).strip().strip("()").strip().lower() if isinstance(got, str) else None
    if key not in ("a", "b"):
        raise WrongAnswer(f"answer with one of the letters 'a' or 'b' (you gave {got!r})")
    if key == "b":
        return True, "right: it stalls. " + _WHY4
    return False, "recorded 'a'. " + _WHY4


# -- 5. the MeanFlow identity (derivation) -------------------------------------------------------------------------
def _mf_identity(v: torch.Tensor, dh_ds: torch.Tensor, s: float, t: float) -> torch.Tensor:
    return v - (s - t) * dh_ds


def _oracle_case():
    mix = eight_gaussians_mixture()
    x = randn((6, 2), generator=torch.Generator().manual_seed(115), dtype=torch.float64)
    s, t, ds = 0.8, 0.3, 1e-3
    v = mix.velocity(x, s, _FLOW)
    h = oracle_average_velocity(mix, _FLOW, x, s, t)
    dh = (oracle_average_velocity(mix, _FLOW, x + ds * v, s + ds, t)
          - oracle_average_velocity(mix, _FLOW, x - ds * v, s - ds, t)) / (2 * ds)
    return v, dh, s, t, h


@checker("meanflow_identity", "11")
def check_meanflow_identity(fn: Any) -> tuple[bool, str]:
    """fn(v (B, D), dh_ds (B, D), s, t) -> (B, D): the average velocity h(x_s, s, t) written with the
    instantaneous velocity v = v*(x_s, s) and the derivative dh_ds of h along the trajectory through (x_s, s)."""
    v, dh, s, t, h = _oracle_case()
    got = call(fn, v, dh, s, t)
    if close(got, h, 1e-4, 1e-5):
        return True, ("h = v - (s - t) dh/ds holds for the exact eight-Gaussian flow (h by quadrature, dh/ds by "
                      "finite differences): differentiate (t - s) h = int_s^t v du in s.")
    _same_shape(got, h, "h")
    a = as_array(got)
    if close(a, v + (s - t) * dh, 1e-4, 1e-5):
        return False, ("the sign of the correction is flipped: d/ds of int_s^t v du is -v(x_s, s), and d/ds of "
                       "(t - s) h is -h + (t - s) dh/ds; equate the two.")
    if close(a, v - dh, 1e-4, 1e-5):
        return False, "the interval length is missing: the correction is (s - t) dh/ds, not dh/ds."
    if close(a, v, 1e-4, 1e-5):
        return False, "h = v only at t = s (flow matching); for t < s the average differs by a derivative term."
    if close(a, (s - t) * dh, 1e-4, 1e-5) or close(a, -(s - t) * dh, 1e-4, 1e-5):
        return False, "the instantaneous velocity v is missing: h = v at t = s must come out."
    return False, f"expected {fmt(h)}, got {fmt(got)}."


# -- 6. CTM's g from MeanFlow's h (derivation) ---------------------------------------------------------------------
def _ctm_from_mf(x: torch.Tensor, h: torch.Tensor, s: float, t: float) -> torch.Tensor:
    return x - s * h


@checker("ctm_from_meanflow", "11")
def check_ctm_from_meanflow(fn: Any) -> tuple[bool, str]:
    """fn(x (B, D), h (B, D), s, t) -> g (B, D): the CTM output g with (t/s) x + (1 - t/s) g equal to the
    MeanFlow jump x + (t - s) h, for every t < s."""
    x, h = example_pair(116, (5, 2))
    for s, t in ((0.9, 0.2), (0.6, 0.0), (0.5, 0.45)):
        got = call(fn, x, h, s, t)
        want = _ctm_from_mf(x, h, s, t)
        if close(got, want):
            continue
        _same_shape(got, want, "g")
        a = as_array(got)
        if close(a, x + s * h):
            return False, "the sign is flipped: the jump moves by (t - s) h, toward data when t < s."
        if close(a, x - (s - t) * h):
            return False, (f"at (s, t) = ({s}, {t}): g = x - (s - t) h makes G = x + (t - s)(1 - t/s)... check "
                           "(1 - t/s) g: the factor (s - t) comes from 1 - t/s = (s - t)/s, so g carries s, not s - t.")
        if close(a, x - h):
            return False, "the factor s is missing (the slip printed in §11.5.3 for g at t = s): g = x - s h."
        return False, f"at (s, t) = ({s}, {t}): expected {fmt(want)}, got {fmt(got)}."
    return True, "g = x - s h, for every t: the two parameterizations are the same model (§11.5.3)."


# -- 7. the one-step MeanFlow rule (find-the-bug) ------------------------------------------------------------------
def _one_step(h: Callable, x_T: torch.Tensor, T: float) -> torch.Tensor:
    return x_T - T * h(x_T, T, 0.0)


@checker("meanflow_one_step", "11")
def check_meanflow_one_step(fn: Any) -> tuple[bool, str]:
    """fn(h, x_T (B, D), T) -> (B, D): one MeanFlow step from T to data, h(x, s, t) the average velocity."""
    x, _ = example_pair(117, (5, 2))
    h = lambda y, s, t: (0.7 + 0.2 * s - 0.1 * t) * y + torch.sin(y).flip(-1) * (s - 2 * t)  # noqa: E731
    for T in (1.0, 0.6):
        got = call(fn, h, x, T)
        want = _one_step(h, x, T)
        if close(got, want):
            continue
        _same_shape(got, want, "x0")
        a = as_array(got)
        if close(a, x + T * h(x, T, 0.0)):
            return False, ("this is the rule as printed in §11.5.2, x_T + T h: with Psi_{s->t} = x_s + (t - s) h, the "
                           "jump from s = T to t = 0 is x_T + (0 - T) h = x_T - T h.")
        if close(a, x - T * h(x, 0.0, T)):
            return False, "the times are swapped: h(x, s, t) starts at s = T and ends at t = 0, so call h(x_T, T, 0)."
        if close(a, x - h(x, T, 0.0)):
            return False, f"at T = {T}: h is an average velocity, so the jump is the interval length T times h."
        return False, f"at T = {T}: expected {fmt(want)}, got {fmt(got)}."
    return True, "x0 = x_T - T h(x_T, T, 0), at T = 1 and 0.6."


_REFERENCES: dict[str, Callable] = {"ct_target": _ct_target, "cm_coeffs": _cm_coeffs,
                                    "gamma_sampling_step": _gamma_step,
                                    "meanflow_one_step": _one_step}

use = make_use(_REFERENCES)   # use(name, answer): the learner's function, or the package's while a stub
