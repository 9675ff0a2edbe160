"""Chapter 05 (flow matching): the checks of §5.1-5.4 and the package's versions later cells fall back on.

Course convention throughout: t = 0 data, t = 1 noise, x_t = (1 - t) x0 + t eps, velocity dx/dt = eps - x0.
(The book's Ch. 5 puts the source/noise at t = 0: tau = 1 - t and its velocity is minus ours.)

Kinds: implement-and-reuse (cfm_loss, marginal_velocity, heun_step: later cells call the learner's function
through `use`), derivations checked numerically (planar_logdet, marginal_slope_1d), a prediction
(euler_point_mass) and a find-the-bug (training_pair, a port from the noise-at-0 convention).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..gmm import GaussianMixture, PointSet
from ..losses import cfm
from ..nflows import autograd_logdet
from ..schedules import RectifiedFlow
from ..utils import randn
from ._base import CPU, WrongAnswer, as_array, call, checker, close, example_pair, fmt, make_use

__all__ = ["check_planar_logdet", "check_cfm_loss", "check_marginal_velocity", "check_heun_step",
           "check_marginal_slope_1d", "check_euler_point_mass", "check_training_pair", "use"]

_FLOW = RectifiedFlow()
_MIX3 = GaussianMixture([0.5, 0.3, 0.2], [[1.0, -0.5, 0.3], [-1.2, 0.4, 0.8], [0.2, 1.1, -1.0]], stds=[0.3, 0.5, 0.2])
_POINTS = PointSet([[1.0, -0.5, 0.3], [-1.2, 0.4, 0.8], [0.2, 1.1, -1.0], [0.5, 0.5, 0.5]], [0.4, 0.3, 0.2, 0.1])


def _same_shape(got: Any, want: torch.Tensor, what: str) -> None:
    a = as_array(got)
    if a.shape != tuple(want.shape):
        raise WrongAnswer(f"{what} should have shape {tuple(want.shape)}, yours has shape {a.shape}"
                          + (" (one value per sample: do not sum or average over the batch)" if a.size < want.numel()
                             else ""))


# -- 1. the planar log-determinant (derivation, matrix determinant lemma) -----------------------------------------
def _planar_logdet(z: torch.Tensor, u: torch.Tensor, w: torch.Tensor, b: float) -> torch.Tensor:
    h1 = 1 - torch.tanh(z @ w + b) ** 2
    return torch.log(torch.abs(1 + h1 * (u @ w)))


def _planar_cases():
    g = torch.Generator().manual_seed(51)
    out = []
    for d in (2, 3):
        z = randn((5, d), generator=g, dtype=torch.float64)
        u, w = randn((d,), generator=g, dtype=torch.float64), randn((d,), generator=g, dtype=torch.float64)
        out.append((z, u, w, 0.3))
    return out


@checker("planar_logdet", "05")
def check_planar_logdet(fn: Any) -> tuple[bool, str]:
    """fn(z (B, D), u (D,), w (D,), b) -> (B,) log|det d g/d z| of the planar layer g(z) = z + u tanh(w^T z + b)."""
    for z, u, w, b in _planar_cases():
        got = call(fn, z, u, w, b)
        want = autograd_logdet(lambda y, u=u, w=w, b=b: y + u * torch.tanh(y @ w + b)[:, None], z)
        if close(got, want, 1e-6, 1e-8):
            continue
        _same_shape(got, want, "the log-determinant")
        a, h1 = as_array(got), 1 - torch.tanh(z @ w + b) ** 2
        if close(a, want.exp(), 1e-6, 1e-8) or close(a, 1 + h1 * (u @ w), 1e-6, 1e-8):
            return False, "you returned the determinant itself; the flow's density needs log |det|."
        if close(a, torch.log(torch.abs(1 + torch.tanh(z @ w + b) * (u @ w))), 1e-6, 1e-8):
            return False, "you used h(w^T z + b) where the Jacobian has the derivative h' = 1 - tanh^2."
        if close(a, torch.log(torch.abs(1 + (1 - torch.tanh(z @ w) ** 2) * (u @ w))), 1e-6, 1e-8):
            return False, "the bias b is missing inside h'(w^T z + b)."
        if torch.isnan(torch.as_tensor(a)).any() and close(torch.as_tensor(a).nan_to_num(0.0),
                                                          torch.where(1 + h1 * (u @ w) > 0, want, 0.0), 1e-6, 1e-8):
            return False, ("you got NaN where 1 + h' u^T w is negative: the density needs log |det|, so take the "
                           "absolute value before the log.")
        if close(a, torch.log(torch.abs(h1 * (u @ w))), 1e-6, 1e-8):
            return False, ("the identity is missing: g(z) = z + ..., so its Jacobian is the identity PLUS a rank-one "
                           "matrix; apply the determinant lemma to that sum.")
        return False, (f"for D = {z.shape[1]}: expected {fmt(want)}, got {fmt(got)}. Write the Jacobian of g as the "
                       "identity plus an outer product a b^T and use det(I + a b^T) = 1 + b^T a.")
    return True, "log|1 + h'(w^T z + b) u^T w| matches the autograd Jacobian in 2-D and 3-D."


# -- 2. the CFM loss (implement-and-reuse) -------------------------------------------------------------------------
def _cfm_loss(model, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return cfm()(model, x0, eps=eps, t=t)


@checker("cfm_loss", "05")
def check_cfm_loss(fn: Any) -> tuple[bool, str]:
    """fn(model, x0 (B, D), eps (B, D), t (B,)) -> (B,) ||v(x_t, t) - (eps - x0)||^2 averaged over dimensions."""
    model = _MIX3.model(_FLOW)
    g = torch.Generator().manual_seed(52)
    x0, eps = example_pair(53, (6, 3))
    t = 0.05 + 0.9 * torch.rand(6, generator=g, dtype=torch.float64)
    got = call(fn, model, x0, eps, t)
    want = _cfm_loss(model, x0, eps, t)
    if close(got, want):
        return True, "the CFM loss matches dl.losses.cfm on the exact 3-D mixture, per sample."
    _same_shape(got, want, "the loss")
    a, v = as_array(got), lambda x: model.predict(x, t, "velocity")
    tt = t[:, None]
    x_t = (1 - tt) * x0 + tt * eps
    if close(a, ((v(x_t) - (x0 - eps)) ** 2).mean(1)):
        return False, ("the target has the wrong sign: with data at t = 0 and noise at t = 1 the path moves from x0 to "
                       "eps, so its velocity is eps - x0 (x0 - eps is the book's noise-at-0 convention).")
    if close(a, ((v(tt * x0 + (1 - tt) * eps) - (x0 - eps)) ** 2).mean(1)):
        return False, ("this is the book's Ch. 5 convention throughout (noise at t = 0: x_t = t x0 + (1 - t) eps, "
                       "target x0 - eps). It is consistent in itself, but the course's model is asked at t = 1 for "
                       "noise: map tau = 1 - t once, as in Exercise 2, and reuse your training pair.")
    if close(a, ((v(tt * x0 + (1 - tt) * eps) - (eps - x0)) ** 2).mean(1)):
        return False, "x_t is built in the noise-at-0 convention; the course's path is x_t = (1 - t) x0 + t eps."
    if close(a, ((v(x_t) - eps) ** 2).mean(1)):
        return False, ("the target is eps alone, the noise-prediction target; the velocity of the path "
                       "x_t = (1 - t) x0 + t eps is its time derivative, eps - x0.")
    if close(a, ((v(x_t) - (eps - x0)) ** 2).sum(1)):
        return False, "you summed over the 3 dimensions; the package's loss averages over them (reduce='mean')."
    return False, f"expected {fmt(want)}, got {fmt(got)}."


# -- 3. the marginal velocity as a posterior average (implement-and-reuse) -----------------------------------------
def _marginal_velocity(x: torch.Tensor, t: float, points: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    d2 = ((x[:, None, :] - (1 - t) * points[None]) ** 2).sum(-1)          # (B, N)
    post = torch.softmax(torch.log(weights)[None] - d2 / (2 * t ** 2), dim=1)
    cond = (x[:, None, :] - points[None]) / t                              # v(x | x0_n) = (x - x0_n) / t
    return (post[..., None] * cond).sum(1)


@checker("marginal_velocity", "05")
def check_marginal_velocity(fn: Any) -> tuple[bool, str]:
    """fn(x (B, D), t, points (N, D), weights (N,)) -> (B, D) the marginal velocity of the linear path for data
    made of weighted points: the posterior average of the conditional velocities (x - x0_n) / t."""
    pts, w = _POINTS.means.to(CPU), _POINTS.weights.to(CPU)
    x, _ = example_pair(54, (5, 3))
    for t in (0.3, 0.7):
        got = call(fn, x, t, pts, w)
        want = _POINTS.velocity(x, t, _FLOW)
        if close(got, want, 1e-5, 1e-7):
            continue
        _same_shape(got, want, "the velocity")
        a = as_array(got)
        cond = (x[:, None, :] - pts[None]) / t
        if close(a, (w[None, :, None] * cond).sum(1), 1e-5, 1e-7):
            return False, ("you averaged with the prior weights; the average is over the posterior p(x0_n | x_t), "
                           "proportional to weight_n N(x_t; (1 - t) x0_n, t^2 I).")
        d2 = ((x[:, None, :] - pts[None]) ** 2).sum(-1)
        post = torch.softmax(torch.log(w)[None] - d2 / (2 * t ** 2), dim=1)
        if close(a, (post[..., None] * cond).sum(1), 1e-5, 1e-7):
            return False, "the posterior uses N(x_t; x0_n, t^2 I); on the path the mean is (1 - t) x0_n."
        post_t = torch.softmax(torch.log(w)[None] - ((x[:, None, :] - (1 - t) * pts[None]) ** 2).sum(-1) / (2 * t),
                               dim=1)
        if close(a, (post_t[..., None] * cond).sum(1), 1e-5, 1e-7):
            return False, "the posterior divides by 2 t; the path's noise has std t, so its variance is t^2."
        post_nw = torch.softmax(-((x[:, None, :] - (1 - t) * pts[None]) ** 2).sum(-1) / (2 * t ** 2), dim=1)
        if close(a, (post_nw[..., None] * cond).sum(1), 1e-5, 1e-7):
            return False, ("the data weights are missing from the posterior: p(x0_n | x_t) is proportional to "
                           "weight_n N(x_t; (1 - t) x0_n, t^2 I), so add log(weights) to the logits.")
        if close(a, -want, 1e-5, 1e-7):
            return False, "the sign is flipped: the conditional velocity is (x - x0_n)/t = eps - x0_n, away from the data."
        s = 1 - t                                                           # the book's Ch. 5 time tau = t
        post_b = torch.softmax(torch.log(w)[None] - ((x[:, None, :] - t * pts[None]) ** 2).sum(-1) / (2 * s ** 2), dim=1)
        if close(a, (post_b[..., None] * (pts[None] - x[:, None, :]) / s).sum(1), 1e-5, 1e-7):
            return False, (f"at t = {t} this is the book's Ch. 5 convention (data at t = 1: mean t x0_n, std 1 - t, "
                           "velocity (x0_n - x)/(1 - t)). The course puts the data at t = 0: map tau = 1 - t once "
                           "(velocities change sign).")
        return False, f"at t = {t}: expected {fmt(want)}, got {fmt(got)}."
    return True, "the posterior average matches the exact marginal velocity of dl.PointSet at t = 0.3 and 0.7."


# -- 4. one Heun step (implement-and-reuse) ------------------------------------------------------------------------
def _heun_step(velocity: Callable, x: torch.Tensor, s: float, t: float) -> torch.Tensor:
    dt = t - s
    v1 = velocity(x, s)
    return x + 0.5 * dt * (v1 + velocity(x + dt * v1, t))


@checker("heun_step", "05")
def check_heun_step(fn: Any) -> tuple[bool, str]:
    """fn(velocity, x (B, D), s, t) -> x at t after one Heun step from s (t < s: the course samples backward)."""
    model = _MIX3.model(_FLOW)
    vel = lambda y, tt: model.predict(y, tt, "velocity")              # noqa: E731
    x, _ = example_pair(55, (5, 3))
    s, t = 0.8, 0.5
    got = call(fn, vel, x, s, t)
    want = _heun_step(vel, x, s, t)
    if close(got, want):
        return True, "one Heun step from s = 0.8 to t = 0.5 matches on the exact 3-D mixture."
    _same_shape(got, want, "the new state")
    a, dt = as_array(got), t - s
    if close(a, x + dt * vel(x, s)):
        return False, "that is an Euler step; Heun adds a corrector: average v at the start and at the Euler guess."
    if close(a, _heun_step(vel, x, t, s)) or close(a, x - 0.5 * dt * (vel(x, s) + vel(x - dt * vel(x, s), t))):
        return False, "the step runs the wrong way: from s to t the step is dt = t - s, negative when sampling."
    v1 = vel(x, s)
    if close(a, x + 0.5 * dt * (v1 + vel(x + dt * v1, s))):
        return False, "the corrector's velocity is evaluated at s; it belongs to the end time t."
    if close(a, x + dt * (v1 + vel(x + dt * v1, t))):
        return False, "the factor 1/2 is missing: Heun steps with the AVERAGE of the two velocities."
    if close(a, x + dt * vel(x + 0.5 * dt * v1, 0.5 * (s + t))):
        return False, ("that is the midpoint rule (also second order); Heun evaluates v at the start and at the "
                       "Euler guess for the end, and averages the two.")
    return False, f"expected {fmt(want)}, got {fmt(got)}."


# -- 5. the 1-D straightness counterexample (derivation) -----------------------------------------------------------
def _slope(t: float, sigma0: float, sigma1: float) -> float:
    V = (1 - t) ** 2 * sigma0 ** 2 + t ** 2 * sigma1 ** 2
    dV = -2 * (1 - t) * sigma0 ** 2 + 2 * t * sigma1 ** 2
    return dV / (2 * V)


@checker("marginal_slope_1d", "05")
def check_marginal_slope_1d(fn: Any) -> tuple[bool, str]:
    """fn(t, sigma0, sigma1) -> k(t) with v*(x, t) = k(t) x for x0 ~ N(0, sigma0^2) (data, t = 0) and an
    independent x1 ~ N(0, sigma1^2) (t = 1) on the path (1 - t) x0 + t x1."""
    cases = [(0.25, 2.0, 3.0), (0.5, 1.0, 1.0), (0.8, 2.0, 3.0), (0.6, 1.5, 0.5)]
    got = [call(fn, *c) for c in cases]
    want = [_slope(*c) for c in cases]
    a = as_array(got)
    if a.shape != (4,):
        raise WrongAnswer("return one number k(t) for each (t, sigma0, sigma1)")
    if close(a, want, 1e-6, 1e-9):
        return True, ("k(t) = V'(t) / (2 V(t)), V(t) = (1 - t)^2 sigma0^2 + t^2 sigma1^2: the marginal velocity "
                      "is linear in x but its slope changes with t, so the paths bend.")
    if close(a, [2 * w for w in want], 1e-6, 1e-9):
        return False, "you returned V'/V; the standard deviation sqrt(V) grows at V'/(2V), which is the slope."
    if close(a, [_slope(t, s1, s0) for t, s0, s1 in cases], 1e-6, 1e-9):
        return False, ("sigma0 and sigma1 are swapped, which is also what the book's Ch. 5 convention gives read at "
                       "tau = t: in the course's convention the data (sigma0) sit at t = 0.")
    if close(a, [-w for w in want], 1e-6, 1e-9):
        return False, ("the sign is flipped: that is the slope in the book's Ch. 5 time (data at tau = 1), "
                       "d/dtau at tau = 1 - t; in the course's time d/dt = -d/dtau, and the spread grows toward t = 1.")
    lin = [(s1 - s0) / ((1 - t) * s0 + t * s1) for t, s0, s1 in cases]
    if close(a, lin, 1e-6, 1e-9):
        return False, ("you added standard deviations as if x0 and x1 moved together; they are independent, so "
                       "the variances add: V(t) = (1 - t)^2 sigma0^2 + t^2 sigma1^2.")
    return False, f"for (t, sigma0, sigma1) = (0.25, 2, 3) expected {want[0]:.4f}, got {a[0]:.4f}."


# -- 6. Euler on a point mass (predict-then-run) -------------------------------------------------------------------
_WHY6 = ("For data made of ONE point x0, every conditional path ends at x0, the posterior is certain and the "
         "marginal velocity (x - x0)/t is exactly the straight line's velocity: constant along each path. Euler is "
         "exact for constant velocities, so one step lands on x0 (up to rounding). That is why an order study needs "
         "data with spread.")


@checker("euler_point_mass", "05")
def check_euler_point_mass(answer: Any) -> tuple[bool, str]:
    """answer: 'a' (zero, up to rounding), 'b' (small, shrinking like the step) or 'c' (large): the error of one
    Euler step from t = 1 to t = 0 on the exact marginal velocity when the data are a single point."""
    got = call(answer)
    key = str(got).strip().strip("()").strip().lower() if isinstance(got, str) else None
    if key not in ("a", "b", "c"):
        raise WrongAnswer(f"answer with one of the letters 'a', 'b' or 'c' (you gave {got!r})")
    if key == "a":
        return True, "right: zero. " + _WHY6
    return False, f"recorded {key!r}; the next cell shows one step landing on the point to rounding (error below 1e-12). " + _WHY6


# -- 7. a port from the noise-at-0 convention (find-the-bug) -------------------------------------------------------
def _training_pair(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    tt = t[:, None]
    return (1 - tt) * x0 + tt * eps, eps - x0


@checker("training_pair", "05")
def check_training_pair(fn: Any) -> tuple[bool, str]:
    """fn(x0 (B, D), eps (B, D), t (B,)) -> (x_t, target): the regression input and the velocity target of CFM
    in the course's convention (data at t = 0)."""
    x0, eps = example_pair(56, (5, 2))
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    got = call(fn, x0, eps, t)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise WrongAnswer("return the pair (x_t, target)")
    x_t, target = got
    want_x, want_v = _training_pair(x0, eps, t)
    ok_x, ok_v = close(x_t, want_x), close(target, want_v)
    if ok_x and ok_v:
        return True, "x_t = (1 - t) x0 + t eps with target eps - x0: the book's tau = 1 - t mapped once."
    tt = t[:, None]
    fm_x = close(x_t, tt * x0 + (1 - tt) * eps)
    if fm_x and close(target, x0 - eps):
        return False, ("this is still the book's Ch. 5 convention (noise at t = 0, data at t = 1). It is consistent, "
                       "but the course's samplers start at t = 1 from noise: put tau = 1 - t.")
    if ok_x and close(target, x0 - eps):
        return False, ("x_t is right; the target kept the old sign. With tau = 1 - t, d/dt = -d/dtau, so the "
                       "velocity x0 - eps becomes eps - x0.")
    if ok_v and fm_x:
        return False, "the target is right but x_t still weighs x0 by t: the course's path is (1 - t) x0 + t eps."
    if ok_x:
        return False, (f"x_t is right; the target should be the path's velocity d x_t / dt = eps - x0: expected "
                       f"{fmt(want_v)}, got {fmt(target)}.")
    return False, f"expected x_t = {fmt(want_x)} and target {fmt(want_v)}."


_REFERENCES: dict[str, Callable] = {"cfm_loss": _cfm_loss, "marginal_velocity": _marginal_velocity,
                                    "heun_step": _heun_step, "planar_logdet": _planar_logdet}


use = make_use(_REFERENCES)   # use(name, answer): the learner's function, or the package's while a stub

