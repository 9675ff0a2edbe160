"""Chapter 06 (a unified lens): the checks of §6.1-6.4 and the package's versions that later cells fall back on.

Kinds: implement-and-reuse (posterior_weights, convert, gamma_step: later cells call the learner's function
through `use`), a find-the-bug that is reused too (flow_time: the map to flow-matching time written in the
noise-at-0 convention of Ch. 5), derivations checked numerically (velocity_error_scale, kinetic_energy), and a
prediction (gamma_prediction).  `use(name, answer)` returns the learner's function when it answers, else the
package's version with a note, so a student copy runs from top to bottom.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..gmm import GaussianMixture, PointSet
from ..param import Model, convert
from ..schedules import Cosine, RectifiedFlow, Schedule, Trig, VPLinear, flow_time
from ..utils import randn
from ._base import WrongAnswer, as_array, as_scalar, call, checker, close, fmt, make_use

__all__ = ["check_posterior_weights", "check_convert", "check_velocity_error_scale", "check_flow_time",
           "check_gamma_step", "check_gamma_prediction", "check_kinetic_energy"]

KINDS4 = ("x0", "eps", "score", "velocity")
# a small 3-D mixture whose exact fields answer the model calls of the checks (D = 3, B = 5: no accidental broadcast)
_MIX3 = GaussianMixture([0.5, 0.3, 0.2], [[1.0, -0.5, 0.3], [-1.2, 0.4, 0.8], [0.2, 1.1, -1.0]], stds=[0.3, 0.5, 0.2])


def _draws(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- 1. the point-set posterior (implement-and-reuse, §6.1) ---------------------------------------------------
def _posterior_weights(x_t: torch.Tensor, t: float, points: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """w_i(x_t) = N(x_t; alpha_t x^(i), sigma_t^2 I) / sum_j N(x_t; alpha_t x^(j), sigma_t^2 I), shape (B, N)."""
    return PointSet(points).responsibilities(x_t, t, schedule)


def _softmax_of(x_t, points, a, s, axis=-1, scale=2.0):
    d2 = ((x_t[:, None, :] - a * points[None]) ** 2).sum(-1)
    return torch.softmax(-d2 / (scale * s ** 2), dim=axis)


@checker("posterior_weights", "06")
def check_posterior_weights(fn: Any) -> tuple[bool, str]:
    """fn(x_t (B, D), t, points (N, D), schedule) -> (B, N) posterior weights of the training points (§6.1)."""
    sched, points = VPLinear(), _draws(1, (4, 3))
    x_t = _draws(2, (5, 3))
    for t in (0.3, 0.7, 0.002):             # 0.002: sigma_t = 0.014, so exp(-d^2 / 2 sigma^2) underflows to 0
        got = call(fn, x_t.clone(), t, points.clone(), sched)
        want = _posterior_weights(x_t, t, points, sched)
        if close(got, want, rtol=1e-6, atol=1e-9):
            continue
        a, s = float(sched.alpha(t)), float(sched.sigma(t))
        g = as_array(got)
        hint = ""
        if t < 0.01 and g.shape == tuple(want.shape) and not np.isfinite(g).all():
            hint = (f" At t = {t} sigma_t = {s:.3f}: every exp(-||x_t - alpha_t x^(i)||^2 / (2 sigma_t^2)) underflows "
                    "to 0 and 0/0 gives NaN. Normalise in the log domain (torch.softmax of the exponents, or "
                    "subtract the largest exponent first).")
        elif g.shape != tuple(want.shape):
            hint = f" Return one weight per (noisy point, training point): shape (5, 4), not {g.shape}."
        elif close(got, _softmax_of(x_t, points, 1.0, s)):
            hint = (" The kernel centres are alpha_t x^(i), not x^(i): p_t(x_t | x0) = N(alpha_t x0, sigma_t^2 I); "
                    f"at t = {t} alpha_t = {a:.2f}, far from 1.")
        elif close(got, _softmax_of(x_t, points, a, s, axis=0)):
            hint = " You normalised over the batch; each noisy point's weights must sum to one over the training points (dim -1)."
        elif close(got, _softmax_of(x_t, points, a, s, scale=2.0 / s)) or close(got, _softmax_of(x_t, points, a, s, scale=1.0)):
            hint = " The Gaussian's exponent is -||x_t - alpha_t x^(i)||^2 / (2 sigma_t^2): check the variance and the 2."
        elif abs(g.sum(-1) - 1).max() > 1e-6:
            hint = " The weights must sum to one over the training points (a softmax): divide by the sum over j."
        return False, f"at t = {t} your weights for the first noisy point are {fmt(g[0])} but should be {fmt(want[0])}.{hint}"
    return True, ("w_i is a softmax of -||x_t - alpha_t x^(i)||^2 / (2 sigma_t^2): each oracle (x*, s*, v*) is a "
                  "w-weighted average of the per-point targets.")


# -- 2. the conversions among the four kinds (implement-and-reuse, §6.3.1) ------------------------------------
_AB = {"x0": lambda c: (1.0, 0.0), "eps": lambda c: (0.0, 1.0), "score": lambda c: (0.0, -1 / c.sigma),
       "velocity": lambda c: (c.d_alpha, c.d_sigma)}


def _convert_with(ab: dict, schedule: Schedule, x_t, t, value, src, dst):
    """Convert through (x0, eps) with a given table of (A_t, B_t) (a slipped one for the hints)."""
    c = schedule.coeffs(t).floats()
    A, B = ab[src](c)
    det = c.alpha * B - c.sigma * A
    x0, eps = (B * x_t - c.sigma * value) / det, (c.alpha * value - A * x_t) / det
    A2, B2 = ab[dst](c)
    return A2 * x0 + B2 * eps


_SLIPS = {
    "score_sign": ({**_AB, "score": lambda c: (0.0, 1 / c.sigma)},
                   " The score of p_t(x_t | x0) is -(x_t - alpha_t x0) / sigma_t^2 = -eps / sigma_t: mind the minus sign."),
    "score_var": ({**_AB, "score": lambda c: (0.0, -1 / c.sigma ** 2)},
                  " score = -eps / sigma_t (one power of sigma_t: x_t - alpha_t x0 = sigma_t eps)."),
    "velocity_ab": ({**_AB, "velocity": lambda c: (c.alpha, c.sigma)},
                    " The velocity is d x_t / dt = alpha_t' x0 + sigma_t' eps: the time derivatives of the coefficients."),
    "velocity_swap": ({**_AB, "velocity": lambda c: (c.d_sigma, c.d_alpha)},
                      " velocity = alpha_t' x0 + sigma_t' eps: alpha_t' goes with x0, sigma_t' with eps."),
}


@checker("convert", "06")
def check_convert(fn: Any) -> tuple[bool, str]:
    """fn(schedule, x_t (B, D), t, value (B, D), src, dst) -> the dst prediction equivalent to the src one (§6.3.1)."""
    x_t, value = _draws(3, (5, 3)), _draws(4, (5, 3))
    for sched in (VPLinear(), RectifiedFlow()):
        for src in KINDS4:
            for dst in KINDS4:
                got = call(fn, sched, x_t.clone(), 0.4, value.clone(), src, dst)
                want = convert(sched, x_t, 0.4, value, src, dst)
                if close(got, want, rtol=1e-6, atol=1e-9):
                    continue
                hint = next((h for ab, h in _SLIPS.values() if close(got, _convert_with(ab, sched, x_t, 0.4, value, src, dst),
                                                                       rtol=1e-6, atol=1e-9)), "")
                if not hint and as_array(got).shape != tuple(want.shape):
                    hint = f" Return a tensor shaped like x_t, (5, 3), not {as_array(got).shape}."
                if not hint:
                    hint = (" Solve alpha_t x0 + sigma_t eps = x_t together with A_t x0 + B_t eps = value (the src row), "
                            "then form A'_t x0 + B'_t eps (the dst row).")
                return False, (f"{src} -> {dst} under {sched.name} at t = 0.4: your first row is {fmt(as_array(got)[0])} "
                               f"but should be {fmt(want[0])}.{hint}")
    return True, ("every kind is A_t x0 + B_t eps, so any one prediction fixes (x0, eps) with x_t, and with them "
                  "every other kind.")


# -- 3. derivation: the loss scale between score and velocity (Eq. s-e-x-v-equi) ---------------------------------
def _velocity_scale(alpha, sigma, d_alpha, d_sigma):
    return alpha / (sigma * (d_alpha * sigma - alpha * d_sigma).abs())


@checker("velocity_error_scale", "06")
def check_velocity_error_scale(fn: Any) -> tuple[bool, str]:
    """fn(alpha, sigma, d_alpha, d_sigma) (tensors) -> c_t with ||s_phi - s*|| = c_t ||v_phi - v*|| at a fixed x_t."""
    t = torch.tensor([0.1, 0.4, 0.8], dtype=torch.float64)
    for sched in (VPLinear(), RectifiedFlow(), Trig()):
        c = sched.coeffs(t)
        args = (c.alpha, c.sigma, c.d_alpha, c.d_sigma)
        got = call(fn, *(a.clone() for a in args))
        want = _velocity_scale(*args)
        if close(got, want, rtol=1e-6):
            continue
        det = c.d_alpha * c.sigma - c.alpha * c.d_sigma
        hint = ""
        if close(got, -want) or close(got, c.alpha / (c.sigma * det)):
            hint = " A scale between two norms is positive: alpha_t' sigma_t - alpha_t sigma_t' < 0 here, take its absolute value."
        elif close(got, want ** 2):
            hint = " That is the factor between the squared errors (the loss weight); the norms scale by its square root."
        elif close(got, 1 / want) or close(got, 1 / want ** 2):
            hint = " The other way round: ||s err|| = c_t ||v err||, so c_t converts a velocity error into a score error."
        elif close(got, 1 / c.sigma) or close(got, c.alpha / c.sigma ** 2):
            hint = (" That is the scale of the eps-error (1/sigma_t) or of the x0-error (alpha_t/sigma_t^2); the velocity's "
                    "error is a third multiple of the eps-error: v err = alpha_t' x0 err + sigma_t' eps err.")
        elif close(got, c.alpha / (c.sigma ** 2 * det.abs())) or close(got, 1 / (c.sigma * det.abs())):
            hint = (" At a fixed x_t, v err = alpha_t' x0 err + sigma_t' eps err with x0 err = -(sigma_t / alpha_t) eps err, "
                    "and s err = -eps err / sigma_t: divide the two.")
        return False, f"for {sched.name} at t = 0.1, 0.4, 0.8 you gave {fmt(got)} but it should be {fmt(want)}.{hint}"
    return True, ("c_t = alpha_t / (sigma_t |alpha_t' sigma_t - alpha_t sigma_t'|); with the eps- and x0-scales 1/sigma_t "
                  "and alpha_t / sigma_t^2 it makes the four losses one loss, reweighted (Eq. s-e-x-v-equi).")


# -- 4. find the bug: the map to flow-matching time (§6.3.3) -----------------------------------------------------
def _flow_time(alpha: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, tau) with x_t = c x^FM_tau, x^FM_tau = (1 - tau) x0 + tau eps."""
    return alpha + sigma, sigma / (alpha + sigma)


@checker("flow_time", "06")
def check_flow_time(fn: Any) -> tuple[bool, str]:
    """fn(alpha, sigma) (tensors) -> (c, tau) with x_t = alpha x0 + sigma eps = c ((1 - tau) x0 + tau eps)."""
    for sched in (VPLinear(), Cosine()):
        t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
        a, s = sched.alpha(t), sched.sigma(t)
        got = call(fn, a.clone(), s.clone())
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            raise WrongAnswer(f"return the pair (c, tau); you returned {type(got).__name__}")
        want_c, want_tau = flow_time(sched, t)
        if close(got[0], want_c, rtol=1e-9) and close(got[1], want_tau, rtol=1e-9):
            continue
        hint = ""
        if close(got[1], a / (a + s)) or close(got[1], 1 - want_tau):
            hint = (" tau is still read in Chapter 5's convention, where tau = 0 is noise; from Chapter 6 on, "
                    "x^FM_tau = (1 - tau) x0 + tau eps has the data at tau = 0, so tau = sigma_t / (alpha_t + sigma_t).")
        elif close(got[0], 1 / want_c):
            hint = " That is the scale of the map read the other way (x^FM = x_t / c); here x_t = c x^FM, so c = alpha_t + sigma_t."
        elif close(got[0], torch.sqrt(a ** 2 + s ** 2)):
            hint = (" sqrt(alpha^2 + sigma^2) is the radius of the map to the trigonometric path; for (1 - tau, tau) "
                    "the two coefficients must add up to c.")
        elif close(got[1], s):
            hint = " tau = sigma_t only when alpha_t + sigma_t = 1; divide by alpha_t + sigma_t."
        return False, (f"for {sched.name} at t = 0.1, 0.5, 0.9 your (c, tau) = ({fmt(got[0])}, {fmt(got[1])}) but should be "
                       f"({fmt(want_c)}, {fmt(want_tau)}).{hint}")
    return True, ("x_t = (alpha_t + sigma_t) x^FM_tau with tau = sigma_t / (alpha_t + sigma_t): the same (x0, eps), a "
                  "new clock and a scale.")


# -- 5. the gamma-family step (implement-and-reuse, §6.4) ---------------------------------------------------------
def _gamma_step(model: Model, x: torch.Tensor, s: float, t: float, gamma: float, z: torch.Tensor) -> torch.Tensor:
    """One Euler-Maruyama step of dx = [v* - gamma^2/2 s*] dt + gamma dw_bar from s down to t < s, noise z."""
    drift = model.predict(x, s, "velocity") - 0.5 * gamma ** 2 * model.predict(x, s, "score")
    return x - (s - t) * drift + gamma * math.sqrt(s - t) * z


@checker("gamma_step", "06")
def check_gamma_step(fn: Any) -> tuple[bool, str]:
    """fn(model, x (B, D), s, t, gamma, z (B, D)) -> x_t, one step of the gamma family from s down to t < s."""
    model = _MIX3.model(VPLinear())
    x, z = _draws(5, (5, 3)), _draws(6, (5, 3))
    s, t = 0.6, 0.55
    for gamma in (0.0, 0.8, 1.7):
        got = call(fn, model, x.clone(), s, t, gamma, z.clone())
        want = _gamma_step(model, x, s, t, gamma, z)
        if close(got, want, rtol=1e-6, atol=1e-9):
            continue
        v, sc, dt = model.predict(x, s, "velocity"), model.predict(x, s, "score"), s - t
        hint = ""
        if close(got, x - dt * (v + 0.5 * gamma ** 2 * sc) + gamma * math.sqrt(dt) * z):
            hint = " The score term enters the drift with a minus sign: v* - gamma^2/2 s* (Eq. general-reverse-sde)."
        elif close(got, x - dt * (v - gamma ** 2 * sc) + gamma * math.sqrt(dt) * z):
            hint = (" v* already holds -g^2/2 s* (v* = f x - g^2/2 s*); the family adds only -gamma^2/2 s*. With gamma^2 s* "
                    "the marginals drift away from p_t.")
        elif close(got, x - dt * (v - 0.5 * gamma ** 2 * sc) + gamma * dt * z):
            hint = " Brownian increments scale like sqrt(dt), not dt."
        elif close(got, x + dt * (v - 0.5 * gamma ** 2 * sc) + gamma * math.sqrt(dt) * z):
            hint = " Time runs backwards (s > t): x_t = x_s - (s - t) drift, not plus."
        elif close(got, x - dt * v + gamma * math.sqrt(dt) * z):
            hint = " Noise alone widens the samples: the drift's -gamma^2/2 s* term pulls them back."
        return False, f"with gamma = {gamma} your x_t[0] is {fmt(as_array(got)[0])} but should be {fmt(want[0])}.{hint}"
    return True, "x_t = x_s - (s - t)(v* - gamma^2/2 s*) + gamma sqrt(s - t) z; gamma = 0 is Euler on the PF-ODE."


# -- 6. predict then run: what the gamma family shares ------------------------------------------------------------
_WHY = ("Every member has the marginals p_t (§6.4), so the histograms of x_0 agree. Each path is another matter: "
        "the ODE maps x_1 to x_0 deterministically and keeps its order (a 1-D flow cannot cross itself), while "
        "Anderson's SDE draws fresh noise all the way and forgets where it started.")


@checker("gamma_prediction", "06")
def check_gamma_prediction(answer: Any) -> tuple[bool, str]:
    """answer: 'a', 'b' or 'c' -- what the PF-ODE and Anderson's SDE share when run from the same x_1."""
    got = call(answer)
    key = str(got).strip().strip("()").strip().lower() if isinstance(got, str) else None
    if key not in ("a", "b", "c"):
        raise WrongAnswer(f"answer with one of the letters 'a', 'b' or 'c' (you gave {got!r})")
    if key == "b":
        return True, "right: the same histogram, different paths (run the next cells). " + _WHY
    if key == "a":
        return False, "recorded 'a'. The next cells show the correlation of x_1 and x_0 near 0.9 for the ODE and near 0 for the SDE. " + _WHY
    return False, ("recorded 'c'. The extra noise is balanced exactly by the -gamma^2/2 s* drift, which pulls towards the "
                   "modes; the next cells show the two histograms on top of each other. " + _WHY)


# -- 7. derivation: the kinetic energy of the power paths (§6.3.4) -----------------------------------------------
def _kinetic(p: float, dim: int, second_moment: float) -> float:
    return (dim + second_moment) * p ** 2 / (2 * p - 1)


@checker("kinetic_energy", "06")
def check_kinetic_energy(fn: Any) -> tuple[bool, str]:
    """fn(p, dim, second_moment) -> K of x_t = (1 - t^p) x0 + t^p eps: int_0^1 E||d x_t / dt||^2 dt, for p > 1/2."""
    for p, d, m2 in ((1.0, 2, 4.08), (2.0, 2, 4.08), (1.5, 3, 1.0), (3.0, 1, 0.5)):
        got = as_scalar(call(fn, p, d, m2), "K, one number")
        want = _kinetic(p, d, m2)
        if math.isclose(got, want, rel_tol=1e-6):
            continue
        near = lambda v, got=got: math.isclose(got, v, rel_tol=1e-6)  # noqa: E731
        hint = ""
        if near(d * p ** 2 / (2 * p - 1)):
            hint = " The velocity is rho'(eps - x0): the data's second moment E||x0||^2 adds to the noise's D."
        elif near(m2 * p ** 2 / (2 * p - 1)):
            hint = " E||eps||^2 = D adds to E||x0||^2 (the cross term vanishes: eps is independent of x0 with mean zero)."
        elif near((d + m2) * p ** 2 / (2 * p + 1)) or near((d + m2) / (2 * p - 1)):
            hint = " rho' = p t^(p-1), so int_0^1 rho'^2 dt = p^2 int t^(2p-2) dt = p^2 / (2p - 1)."
        elif near(d + m2):
            hint = (" That is the straight path's K (p = 1); for rho = t^p the speed rho' = p t^(p-1) changes with t, "
                    "so K carries int_0^1 rho'^2 dt.")
        elif near((d + m2) * p / (2 * p - 1)) or near(math.sqrt(d + m2) * p ** 2 / (2 * p - 1)):
            hint = " Square the velocity: K integrates E||v||^2, so rho' enters squared and D + E||x0||^2 enters once."
        return False, f"for p = {p}, D = {d}, E||x0||^2 = {m2} your K is {got:.5g} but should be {want:.5g}.{hint}"
    return True, ("K = (D + E||x0||^2) p^2 / (2p - 1): smallest at p = 1, the straight path (1 - t) x0 + t eps, where "
                  "int rho'^2 >= (int rho')^2 = 1 is an equality.")


# -- the package's versions the later cells fall back on -----------------------------------------------------------
_REFERENCES: dict[str, Callable] = {"posterior_weights": _posterior_weights,
                                    "convert": lambda schedule, x_t, t, value, src, dst: convert(schedule, x_t, t, value, src, dst),
                                    "flow_time": _flow_time, "gamma_step": _gamma_step,
                                    "velocity_error_scale": _velocity_scale, "kinetic_energy": _kinetic}


use = make_use(_REFERENCES)   # use(name, answer): the learner's function, or the package's while a stub
