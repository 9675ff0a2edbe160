"""Chapter 09 (fast solvers): the checks of §9.2-9.5 and the package's versions that later cells fall back on.

Kinds: implement-and-reuse (dpm_solver_2: one noise-form step; dpmpp_2m: one data-form multistep step; later
cells run whole samplers with the learner's step and measure its order), derivations checked numerically
(phi_2, the second exponential-integrator weight, and edm_contraction, the DDIM residual factor under EDM),
a prediction (order_prediction: how much DPM-Solver++(2M) gains when the NFE doubles), and a find-the-bug
built from a published Euler-vs-Heun widget that set the velocity at the data end to zero (heun_data_end).
`use(name, answer)` returns the learner's function when it answers, else the package's version with a note.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..fast_solvers import dpm_solver_2_step, dpmpp_2m_step
from ..gmm import GaussianMixture
from ..samplers import heun_step as _pkg_heun
from ..schedules import EDM, RectifiedFlow, VPLinear
from ..steps import coeffs, time_at_lam
from ..utils import randn
from ._base import WrongAnswer, as_array, as_scalar, call, checker, close, fmt, make_use

__all__ = ["check_dpm_solver_2", "check_dpmpp_2m", "check_phi_2", "check_edm_contraction", "check_order_prediction",
           "check_heun_data_end", "run_singlestep", "run_2m", "heun_run"]

# a 3-D mixture (D = 3, B = 5: no accidental broadcast) whose exact fields answer the model calls of the checks
_MIX3 = GaussianMixture([0.5, 0.3, 0.2], [[1.0, -0.5, 0.3], [-1.2, 0.4, 0.8], [0.2, 1.1, -1.0]], stds=[0.3, 0.5, 0.2])


def _draws(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- helpers later cells use with the learner's steps ----------------------------------------------------------
def run_singlestep(step: Callable, model: Any, x_T: torch.Tensor, grid) -> torch.Tensor:
    """x at the last time of `grid` after x <- step(model, x, s, t) over every pair of grid times."""
    ts = [float(t) for t in grid]
    x = x_T
    for s, t in zip(ts[:-1], ts[1:]):
        x = step(model, x, s, t)
    return x


def run_2m(step: Callable, model: Any, x_T: torch.Tensor, grid) -> torch.Tensor:
    """x at the last time of `grid` after x, prev <- step(model, x, s, t, prev) (prev = None at first)."""
    ts = [float(t) for t in grid]
    x, prev = x_T, None
    for s, t in zip(ts[:-1], ts[1:]):
        x, prev = step(model, x, s, t, prev)
    return x


def heun_run(step: Callable, model: Any, x_T: torch.Tensor, n: int) -> torch.Tensor:
    """n uniform steps of `step` from t = 1 to t = 0 exactly (the data end)."""
    return run_singlestep(step, model, x_T, [1 - i / n for i in range(n + 1)])


def _order(errors: list[float], ns: list[int]) -> float:
    """The least-squares slope of log error against log n."""
    return float(-np.polyfit(np.log(ns), np.log(errors), 1)[0])


# -- 1. DPM-Solver-2 (implement-and-reuse, §9.4) -----------------------------------------------------------------
def _dpm_solver_2(model, x, s, t):
    return dpm_solver_2_step(model, x, s, t)[0]


def _dpm2_variant(model, x, s, t, *, mid="lam", final="mid", half=True):
    """Slipped versions of the step for the hints."""
    sch = model.schedule
    cs, ct = coeffs(sch, s), coeffs(sch, t)
    h = ct.lam - cs.lam
    t_m = time_at_lam(sch, cs.lam + h / 2) if mid == "lam" else 0.5 * (s + t)
    cm = coeffs(sch, t_m)
    eps = model.predict(x, s, "eps")
    u = cm.alpha / cs.alpha * x - cm.sigma * math.expm1(cm.lam - cs.lam if half else h) * eps
    e = model.predict(u, t_m, "eps") if final == "mid" else eps
    return ct.alpha / cs.alpha * x - ct.sigma * math.expm1(h) * e


@checker("dpm_solver_2", "09")
def check_dpm_solver_2(fn: Any) -> tuple[bool, str]:
    """fn(model, x (B, D), s, t) -> x_t: one DPM-Solver-2 step from s down to t < s (§9.4, algorithm box)."""
    x = _draws(1, (5, 3))
    for sched in (VPLinear(), EDM()):
        model = _MIX3.model(sched)
        for s, t in ((0.8, 0.5), (0.4, 0.1)):
            got = call(fn, model, x.clone(), s, t)
            want = _dpm_solver_2(model, x, s, t)
            if close(got, want, rtol=1e-6, atol=1e-9):
                continue
            hint = ""
            if as_array(got).shape != tuple(want.shape):
                hint = f" Return x_t shaped like x, (5, 3), not {as_array(got).shape}."
            elif close(got, _dpm2_variant(model, x, s, t, mid="t")):
                hint = (" Your midpoint is halfway in t; DPM-Solver takes it halfway in log-SNR, lambda_m = lambda_s + h/2 "
                        "(the time where the exponential integrator's Taylor expansion is centred). Find its t with "
                        "schedule.inv_lam.")
            elif close(got, _dpm2_variant(model, x, s, t, final="start")):
                hint = (" That is DDIM (DPM-Solver-1): the final update must use the noise prediction at the midpoint "
                        "state u, not at x_s, or the step stays first order.")
            elif close(got, _dpm2_variant(model, x, s, t, half=False)):
                hint = (" The half step to the midpoint integrates over h/2 in log-SNR: its factor is e^{h/2} - 1, "
                        "not e^h - 1.")
            elif close(got, 2 * x - want) or close(got, _flip(model, x, s, t)):
                hint = " Mind the sign: the noise term is subtracted, x_t = (alpha_t/alpha_s) x_s - sigma_t (e^h - 1) eps."
            return False, (f"under {sched.name} from s = {s} to t = {t} your x_t[0] is {fmt(as_array(got)[0])} but "
                           f"should be {fmt(want[0])}.{hint}")
    return True, ("a half step in log-SNR with DDIM, then the full step with eps frozen at the midpoint: the midpoint "
                  "rule of the exponential integrator, second order (its local error is O(h^3)).")


def _flip(model, x, s, t):
    """The step with the noise term added instead of subtracted (a hint's wrong answer)."""
    sch = model.schedule
    cs, ct = coeffs(sch, s), coeffs(sch, t)
    h = ct.lam - cs.lam
    t_m = time_at_lam(sch, cs.lam + h / 2)
    cm = coeffs(sch, t_m)
    eps = model.predict(x, s, "eps")
    u = cm.alpha / cs.alpha * x + cm.sigma * math.expm1(h / 2) * eps
    return ct.alpha / cs.alpha * x + ct.sigma * math.expm1(h) * model.predict(u, t_m, "eps")


# -- 2. DPM-Solver++(2M) (implement-and-reuse, §9.5) -------------------------------------------------------------
def _dpmpp_2m(model, x, s, t, prev):
    state = {"x0": None, "hist": [] if prev is None else [prev]}
    x_t, state = dpmpp_2m_step(model, x, s, t, state=state, max_step_ratio=None)
    return x_t, state["hist"][0]


def _2m_variant(model, x, s, t, prev, *, r_inv=False, half=True, ratio="sigma", sign=1.0):
    sch = model.schedule
    cs, ct = coeffs(sch, s), coeffs(sch, t)
    h = ct.lam - cs.lam
    x0 = model.predict(x, s, "x0")
    d = x0
    if prev is not None:
        r = h / (cs.lam - prev[0])
        r = 1 / r if r_inv else r
        w = r / 2 if half else r
        d = (1 + w) * x0 - w * prev[1]
    lead = ct.sigma / cs.sigma if ratio == "sigma" else ct.alpha / cs.alpha
    return lead * x + sign * ct.alpha * (-math.expm1(-h)) * d, (cs.lam, x0)


@checker("dpmpp_2m", "09")
def check_dpmpp_2m(fn: Any) -> tuple[bool, str]:
    """fn(model, x (B, D), s, t, prev) -> (x_t, (lambda_s, x0_hat_s)); prev is None on the first step, else the
    (lambda, x0_hat) pair the previous step returned (§9.5, algorithm box)."""
    x = _draws(2, (5, 3))
    model = _MIX3.model(VPLinear())
    sch = model.schedule
    lam = lambda t: coeffs(sch, t).lam   # noqa: E731
    cases = [(0.7, 0.5, None), (0.5, 0.35, (lam(0.7), model.predict(x, 0.7, "x0"))),
             (0.3, 0.1, (lam(0.6), model.predict(x, 0.6, "x0")))]          # the last one has r far from 1
    for s, t, prev in cases:
        out = call(fn, model, x.clone(), s, t, prev)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise WrongAnswer(f"return the pair (x_t, (lambda_s, x0_hat_s)); you returned {type(out).__name__}")
        got, mem = out
        want, want_mem = _dpmpp_2m(model, x, s, t, prev)
        if not (isinstance(mem, (tuple, list)) and len(mem) == 2 and math.isclose(as_scalar(mem[0], "lambda_s"),
                                                                                 want_mem[0], rel_tol=1e-9)
                and close(mem[1], want_mem[1], rtol=1e-6, atol=1e-9)):
            return False, (f"from s = {s} the history you pass on should be (lambda_s, x0_hat(x_s, s)) = "
                           f"({want_mem[0]:.4f}, {fmt(want_mem[1][0])} ...): the NEXT step extrapolates from it.")
        if close(got, want, rtol=1e-6, atol=1e-9):
            continue
        hint = ""
        var = lambda s=s, t=t, prev=prev, **kw: _2m_variant(model, x, s, t, prev, **kw)[0]   # noqa: E731
        if prev is not None and close(got, var(r_inv=True)):
            hint = " r is this step over the previous one, r = h_i / h_{i-1} (both in log-SNR), not the inverse."
        elif prev is not None and close(got, var(half=False)):
            hint = (" D = (1 + r/2) x0_hat_s - (r/2) x0_hat_prev: the linear extrapolation is integrated against the "
                    "kernel, which halves the slope term for small h, not (1 + r) and r.")
        elif prev is not None and close(got, _2m_variant(model, x, s, t, None)[0]):
            hint = " You ignored prev: that is DDIM in data form, first order. Use the previous x0_hat to extrapolate."
        elif close(got, var(ratio="alpha")):
            hint = (" In the data form the linear part is sigma_t / sigma_s (the noise form has alpha_t / alpha_s): "
                    "x_t = (sigma_t/sigma_s) x_s + alpha_t (1 - e^{-h}) D.")
        elif close(got, var(sign=-1.0)):
            hint = " Mind the sign: alpha_t (1 - e^{-h}) > 0 for h > 0, the x0 term is added."
        return False, (f"from s = {s} to t = {t} ({'first step' if prev is None else 'with history'}) your x_t[0] is "
                       f"{fmt(as_array(got)[0])} but should be {fmt(want[0])}.{hint}")
    return True, ("x_t = (sigma_t/sigma_s) x_s + alpha_t (1 - e^{-h}) [(1 + r/2) x0_s - (r/2) x0_prev]: one model call "
                  "per step, second order, and the x0 it extrapolates stays bounded under strong guidance.")


# -- 3. derivation: phi_2 (§9.4.2) -------------------------------------------------------------------------------
def _phi_2(h: torch.Tensor) -> torch.Tensor:
    """phi_2(h) = (e^h - 1 - h) / h^2, 1/2 at h = 0, computed without cancellation."""
    h = torch.as_tensor(h, dtype=torch.float64)
    small = h.abs() < 1e-2
    hs = torch.where(small, torch.ones_like(h), h)
    big = (torch.expm1(hs) - hs) / hs ** 2
    series = 0.5 + h / 6 + h ** 2 / 24 + h ** 3 / 120
    return torch.where(small, series, big)


@checker("phi_2", "09")
def check_phi_2(fn: Any) -> tuple[bool, str]:
    """fn(h) (a float64 tensor) -> phi_2(h), the weight of the first derivative in the exponential integrator (§9.4.2)."""
    h = torch.tensor([-3.0, -0.5, 0.3, 1.0, 2.5], dtype=torch.float64)
    got = call(fn, h.clone())
    want = _phi_2(h)
    if not close(got, want, rtol=1e-8, atol=1e-12):
        hint = ""
        g = as_array(got)
        if close(got, torch.expm1(h) / h):
            hint = " That is phi_1 = (e^h - 1)/h, the weight of eps itself; phi_2 weighs its derivative."
        elif close(got, (torch.expm1(h) - h)):
            hint = " You integrated e^{h-u} u du but did not divide by h^2: phi_2 is normalised so that phi_2(0) = 1/2."
        elif close(got, (torch.exp(h) - 1 - h) / h):
            hint = " Divide by h^2, not h: h^2 phi_2(h) = int_0^h e^{h-u} u du."
        elif close(got, torch.full_like(h, 0.5)):
            hint = " 1/2 is only the limit at h = 0 (phi_k(0) = 1/k!); the weight grows with h."
        elif g.shape != tuple(h.shape):
            hint = f" Return one value per h, shape {tuple(h.shape)}."
        return False, f"at h = {fmt(h)} your phi_2 is {fmt(got)} but should be {fmt(want)}.{hint}"
    tiny = torch.tensor([1e-9, -1e-7, 1e-5], dtype=torch.float64)
    got_t = as_array(call(fn, tiny.clone()))
    if not close(got_t, _phi_2(tiny), rtol=1e-6):
        return False, (f"right for moderate h, but at h = {fmt(tiny)} you give {fmt(got_t)} instead of about 0.5: "
                       "e^h - 1 - h cancels catastrophically for tiny h. Use torch.expm1 and, for |h| < 1e-2, the "
                       "series 1/2 + h/6 + h^2/24 + ... (steps near the data end are tiny in lambda).")
    return True, ("phi_2(h) = (e^h - 1 - h)/h^2 -> 1/2 = 1/2! as h -> 0; generally phi_k(0) = 1/k!, so for small steps "
                  "the exponential integrator becomes the ordinary Taylor method in lambda.")


# -- 4. derivation: the EDM contraction (§9.2.2) -------------------------------------------------------------------
@checker("edm_contraction", "09")
def check_edm_contraction(fn: Any) -> tuple[bool, str]:
    """fn(s, t) -> c with x_t - x0_hat = c (x_s - x0_hat) for one DDIM step from s to t < s under EDM (alpha = 1,
    sigma = t), x0_hat the data prediction at (x_s, s)."""
    for s, t in ((2.0, 0.5), (0.8, 0.6), (10.0, 0.1)):
        got = as_scalar(call(fn, s, t), "the factor c, one number")
        want = t / s
        if math.isclose(got, want, rel_tol=1e-9):
            continue
        near = lambda v, got=got: math.isclose(got, v, rel_tol=1e-9)  # noqa: E731
        hint = ""
        if near(s / t):
            hint = " Upside down: the residual shrinks from s to t < s, so c < 1."
        elif near(1 - t / s):
            hint = " 1 - t/s is the weight DDIM puts on x0_hat (x_t = (t/s) x_s + (1 - t/s) x0_hat); you want the residual's."
        elif near(s - t) or near(t - s):
            hint = " s - t is the step in sigma (x_t = x_s - (s - t) eps_hat); write eps_hat = (x_s - x0_hat)/s and collect."
        elif near((t / s) ** 2):
            hint = " sigma_t / sigma_s enters once, not squared: the EDM step is affine in x_s."
        return False, f"for s = {s}, t = {t} your c is {got:.5g} but should be {want:.5g}.{hint}"
    return True, ("c = t/s (= sigma_t/sigma_s): DDIM moves x along the straight line to x0_hat and keeps a fraction "
                  "t/s of the residual, never overshooting; the error comes only from x0_hat changing along the way.")


# -- 5. predict then run: what doubling the NFE buys -------------------------------------------------------------
_WHY_ORDER = ("An order-p method's global error behaves like C h^p: doubling the NFE halves h and divides the error by "
              "2^p, so 2x for DDIM and 4x for DPM-Solver++(2M), once the steps are small enough (the asymptotic "
              "window). The next cells measure it on the exact mixture.")


@checker("order_prediction", "09")
def check_order_prediction(answer: Any) -> tuple[bool, str]:
    """answer: 'a', 'b' or 'c' -- by how much DPM-Solver++(2M)'s error shrinks from NFE 16 to 32 (DDIM's: about 2x)."""
    got = call(answer)
    key = str(got).strip().strip("()").strip().lower() if isinstance(got, str) else None
    if key not in ("a", "b", "c"):
        raise WrongAnswer(f"answer with one of the letters 'a', 'b' or 'c' (you gave {got!r})")
    if key == "b":
        return True, "right: about 4x. " + _WHY_ORDER
    if key == "a":
        return False, ("recorded 'a' (2x). That is DDIM's first order; 2M extrapolates x0 linearly in lambda and "
                       "cancels the first-order error term. " + _WHY_ORDER)
    return False, ("recorded 'c' (8x). That would be third order; 2M uses one past value, a line, so it is second "
                   "order. " + _WHY_ORDER)


# -- 6. find the bug: Heun at the data end ------------------------------------------------------------------------
def _heun_step(model, x, s, t):
    return _pkg_heun(model, x, s, t)[0]


def _heun_widget(model, x, s, t):
    """The published widget's step: the corrector's velocity is set to zero at the data end t = 0."""
    v1 = model.predict(x, s, "velocity")
    v2 = torch.zeros_like(x) if t == 0 else model.predict(x + (t - s) * v1, t, "velocity")
    return x + 0.5 * (t - s) * (v1 + v2)


@checker("heun_data_end", "09")
def check_heun_data_end(fn: Any) -> tuple[bool, str]:
    """fn(model, x (B, D), s, t) -> x_t: one Heun step of the PF-ODE from s down to t < s, t = 0 allowed; a run of
    such steps from t = 1 to t = 0 must be second order."""
    model = _MIX3.model(RectifiedFlow())
    x = _draws(3, (5, 3))
    got = call(fn, model, x.clone(), 0.6, 0.45)
    want = _heun_step(model, x, 0.6, 0.45)
    if not close(got, want, rtol=1e-6, atol=1e-9):
        v1 = model.predict(x, 0.6, "velocity")
        hint = ""
        if close(got, x - 0.15 * v1):
            hint = " That is Euler: Heun averages the slope at x_s with the slope at the Euler guess x' = x_s + dt v(x_s, s)."
        elif close(got, x - 0.15 * 0.5 * (v1 + model.predict(x - 0.15 * v1, 0.6, "velocity"))):
            hint = " The corrector's slope is taken at the END time t (at the Euler guess), not at s."
        elif close(got, x - 0.15 * (v1 + model.predict(x - 0.15 * v1, 0.45, "velocity"))):
            hint = " Average the two slopes: dt (v1 + v2) / 2."
        return False, f"from s = 0.6 to t = 0.45 your x_t[0] is {fmt(as_array(got)[0])} but should be {fmt(want[0])}.{hint}"
    x_T = _draws(4, (6, 3))
    exact = _MIX3.flow_map(x_T, 1.0, 0.0, model.schedule)
    ns = [16, 32, 64]
    errors = [float(np.sqrt(((as_array(heun_run(lambda *a: call(fn, *a), model, x_T, n)) - exact.numpy()) ** 2).mean()))
              for n in ns]
    order = _order(errors, ns)
    if order >= 1.6:
        return True, (f"runs to t = 0 with n = 16, 32, 64 have errors {fmt(errors)}, order {order:.2f}. At the data end "
                      "the velocity is not undefined: under the flow schedule it tends to -x0_hat(x) = -x (eps_hat -> 0), "
                      "and the mixture gives that limit. Setting it to zero (or to anything wrong) puts an O(h) error "
                      "into the last step, which no higher order elsewhere can remove.")
    hint = ""
    bug = [float(((heun_run(_heun_widget, model, x_T, n) - exact) ** 2).mean() ** 0.5) for n in ns]
    if np.allclose(errors, bug, rtol=1e-6):
        hint = (" Your step still sets the corrector's velocity to zero at t = 0, as the widget did: the last step then "
                "moves only half way, an O(h) error. Use the model's velocity at t = 0 (its limit is finite) or an "
                "Euler last step.")
    return False, (f"one step is right, but runs to t = 0 with n = {ns} have errors {fmt(errors)}: order "
                   f"{order:.2f}, not 2.{hint or ' Look at what your step does when t = 0.'}")


# -- the package's versions the later cells fall back on -------------------------------------------------------------
_REFERENCES: dict[str, Callable] = {"dpm_solver_2": _dpm_solver_2, "dpmpp_2m": _dpmpp_2m, "phi_2": _phi_2,
                                    "edm_contraction": lambda s, t: t / s, "heun_data_end": _heun_step}

use = make_use(_REFERENCES)   # use(name, answer): the learner's function, or the package's while a stub
