"""Chapter 04 (score SDE): the checks of §4.1-4.5 and App. A, and the package's versions later cells fall back on.

Kinds: implement-and-reuse (em_step, fp_step, reverse_conditional: later cells call the learner's
function through `use`), derivations checked numerically (sde_coefficients, the lemma of §4.5.2,
also reused by the moment-ODE cell; pf_drift_gaussian, the moment matching of §4.2.2), a
prediction (em_orders), and a find-the-bug (likelihood_sign: the sign slip of §4.3.2).
`use(name, answer)` returns the learner's function when it answers, else the package's version
with a note, so a student copy runs from top to bottom.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..fokker_planck import fp_step
from ..gmm import GaussianMixture
from ..likelihood import divergence, gaussian_log_prob, log_likelihood
from ..schedules import Cosine, RectifiedFlow, Schedule, VEGeometric, VPLinear
from ._base import WrongAnswer, as_array, as_scalar, call, checker, close, example_pair, fmt, make_use

__all__ = ["check_sde_coefficients", "check_em_step", "check_fp_step", "check_pf_drift_gaussian",
           "check_em_orders", "check_likelihood_sign", "check_reverse_conditional", "use",
           "likelihood_as_written"]

_SCHEDULES = {"vp": VPLinear(), "ve": VEGeometric(0.01, 10.0), "flow": RectifiedFlow(), "cosine": Cosine()}
_TIMES = torch.tensor([0.1, 0.4, 0.8], dtype=torch.float64)
_MIX2 = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.2, -0.4]], stds=[0.4, 0.6])


# -- 1. the lemma of §4.5.2 (derivation, reused) ---------------------------------------------------------------
def _sde_coefficients(schedule: Schedule, t: Any) -> tuple[torch.Tensor, torch.Tensor]:
    f = schedule.d_alpha(t) / schedule.alpha(t)                         # (log alpha)'
    return f, schedule.d_sigma2(t) - 2 * f * schedule.sigma(t) ** 2     # g^2 = (sigma^2)' - 2 f sigma^2


@checker("sde_coefficients", "04")
def check_sde_coefficients(fn: Any) -> tuple[bool, str]:
    """fn(schedule, t (3,)) -> (f(t), g^2(t)) of the forward SDE whose kernel is N(alpha_t x0, sigma_t^2 I)."""
    for name, sch in _SCHEDULES.items():
        got = call(fn, sch, _TIMES.clone())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise WrongAnswer("return the pair (f, g2)")
        f, g2 = got
        wf, wg2 = sch.f(_TIMES), sch.g2(_TIMES)
        if close(f, wf, rtol=1e-6) and close(g2, wg2, rtol=1e-6):
            continue
        da, s2, ds2 = sch.d_alpha(_TIMES), sch.sigma(_TIMES) ** 2, sch.d_sigma2(_TIMES)
        hint = ""
        if not close(f, wf, rtol=1e-6):
            if close(f, da, rtol=1e-6):
                hint = " f is the derivative of log alpha_t, alpha_t'/alpha_t: divide by alpha_t."
            elif close(f, -wf, rtol=1e-6):
                hint = " f has the wrong sign: the drift pulls towards 0 when alpha_t decreases, so f = (log alpha_t)' < 0."
        elif close(g2, ds2, rtol=1e-6):
            hint = (" That is (sigma_t^2)' alone, right only when f = 0 (VE). The drift also shrinks the variance "
                    "at rate 2 f, so g^2 = (sigma_t^2)' - 2 f sigma_t^2 (from P' = 2 f P + g^2).")
        elif close(g2, ds2 + 2 * wf * s2, rtol=1e-6):
            hint = " The 2 f sigma_t^2 term enters with a minus sign: P' = 2 f P + g^2 gives g^2 = P' - 2 f P."
        elif close(g2, ds2 - wf * s2, rtol=1e-6):
            hint = " The variance ODE is P' = 2 f P + g^2: the factor is 2 f, not f."
        return False, (f"for the {name} schedule at t = {fmt(_TIMES)}: your (f, g^2) = ({fmt(f)}; {fmt(g2)}), "
                       f"want ({fmt(wf)}; {fmt(wg2)}).{hint}")
    return True, ("f = (log alpha_t)', g^2 = (sigma_t^2)' - 2 f sigma_t^2 = -2 sigma_t^2 lambda_t'. For the flow "
                  "schedule: f = -1/(1 - t) and g^2 = 2t/(1 - t), both infinite at t = 1.")


# -- 2. one Euler-Maruyama step of the forward SDE (implement-and-reuse) ----------------------------------------
def _em_step(x: torch.Tensor, t: float, h: float, f: Callable, g2: Callable, z: torch.Tensor) -> torch.Tensor:
    return x + float(f(t)) * x * h + math.sqrt(float(g2(t)) * h) * z        # Eq. 4.1.1


@checker("em_step", "04")
def check_em_step(fn: Any) -> tuple[bool, str]:
    """fn(x (B, D), t, h, f, g2, z (B, D)) -> x_{t+h} by Eq. 4.1.1 for dx = f(t) x dt + g(t) dw; f, g2 callables of t."""
    x, z = example_pair(4, (5, 3))
    sch = _SCHEDULES["vp"]
    f, g2 = (lambda t: float(sch.f(t))), (lambda t: float(sch.g2(t)))
    for t, h in ((0.3, 0.01), (0.7, 0.04)):
        got = call(fn, x.clone(), t, h, f, g2, z.clone())
        want = _em_step(x, t, h, f, g2, z)
        if close(got, want):
            continue
        F, G2 = f(t), g2(t)
        hint = ""
        if close(got, x + F * x * h + G2 * h * z) or close(got, x + F * x * h + math.sqrt(G2) * h * z):
            hint = (" The noise of one step has variance g^2 h, so its scale is g sqrt(h) = sqrt(g^2 h): Brownian "
                    "increments grow like the square root of time.")
        elif close(got, x + F * x * h + G2 * math.sqrt(h) * z):
            hint = " g2 is g^2: take its square root for the noise scale."
        elif close(got, x + F * h + math.sqrt(G2 * h) * z):
            hint = " The drift is f(t) x (it scales with x), not f(t)."
        elif close(got, x + math.sqrt(G2 * h) * z):
            hint = " You left out the drift f(t) x h."
        elif close(got, x - F * x * h + math.sqrt(G2 * h) * z):
            hint = " Sign slip in the drift: the step moves forward in time, x + f(t) x h."
        elif close(got, x + F * x * h + math.sqrt(G2) * z):
            hint = (" The noise of one step is g sqrt(h) z, not g z: without the sqrt(h) the kick does not shrink "
                    "with the step.")
        return False, f"at t={t}, h={h}: your x[0] = {fmt(as_array(got)[0])}, want {fmt(want[0])}.{hint}"
    return True, "x + f(t) x h + g(t) sqrt(h) z: drift times h, noise times sqrt(h) (Eq. 4.1.1)."


# -- 3. one step of the Fokker-Planck scheme (implement-and-reuse) ---------------------------------------------
def _fp_step(p: np.ndarray, x: np.ndarray, t: float, dt: float, f: Callable, g2: float) -> np.ndarray:
    return p + fp_step(np.asarray(p, dtype=np.float64), np.asarray(x, dtype=np.float64), t, dt, f, g2)


def _fp_step_cell_drift(p, x, t, dt, f, g2):
    """A typical slip: the advective face flux as the mean of f p over the two cells (not f on the face)."""
    dx, fp_ = x[1] - x[0], f(x, t) * p
    J = (fp_[:-1] + fp_[1:]) / 2 - g2 / 2 * (p[1:] - p[:-1]) / dx
    out = p.copy()
    out[:-1] -= dt / dx * J
    out[1:] += dt / dx * J
    return out


@checker("fp_step", "04")
def check_fp_step(fn: Any) -> tuple[bool, str]:
    """fn(p (N,), x (N,), t, dt, f, g2) -> p after one forward-Euler step of the conservative scheme (no-flux ends)."""
    x = np.linspace(-3, 3, 41)
    dx = x[1] - x[0]
    p = np.exp(-0.5 * (x - 0.7) ** 2 / 0.5) + 0.5 * np.exp(-0.5 * (x + 1.5) ** 2 / 0.2)
    p[-3:] += 0.3                                                    # some mass at the end: boundary slips show
    f = lambda y, t: 0.8 - y                                         # noqa: E731 - OU towards 0.8
    dt, g2 = 0.004, 0.9
    got = as_array(call(fn, p.copy(), x.copy(), 0.2, dt, f, g2))
    want = _fp_step(p, x, 0.2, dt, f, g2)
    if close(got, want, rtol=1e-8, atol=1e-10):
        return True, ("a flux difference: J = f p_face - (g^2/2) (p_{i+1} - p_i)/dx on the faces, none through the "
                      "ends, so sum p dx is conserved exactly.")
    if got.shape != want.shape:
        raise WrongAnswer(f"return the new density on the grid, shape {want.shape}; you returned shape {got.shape}")
    hint = ""
    if close(got, _fp_step(p, x, 0.2, dt, f, 2 * g2), rtol=1e-8):
        hint = " The diffusion coefficient is g^2/2, not g^2 (this is where the 1/2 of the PF-ODE comes from)."
    elif close(got, _fp_step(p, x, 0.2, dt, lambda y, t: -f(y, t), g2), rtol=1e-8):
        hint = " Sign slip in the advective flux: dp/dt = -d(f p)/dx, the flux is +f p."
    elif close(got, p, rtol=1e-12):
        hint = " Your step does not change p: multiply the flux difference by dt / dx."
    elif close(got, _fp_step_cell_drift(p, x, 0.2, dt, f, g2), rtol=1e-8):
        hint = (" You took the average of f p over the two cells; the scheme evaluates the drift on the face "
                "itself, f(x_{i+1/2}) (p_i + p_{i+1}) / 2, at x_i + dx/2.")
    elif abs(got.sum() - p.sum()) * dx > 1e-9:
        hint = (f" Your step changes the mass sum p dx by {(got.sum() - p.sum()) * dx:.2e}: write the update as a "
                "difference of face fluxes, with zero flux through the two ends (not f dp/dx + ..., and no "
                "wrap-around).")
    k = int(np.argmax(np.abs(got - want)))
    return False, f"at x = {x[k]:.2f} your new p is {got[k]:.6g}, want {want[k]:.6g}.{hint}"


# -- 4. the PF-ODE drift for Gaussian data (derivation, §4.2.2) --------------------------------------------------
def _pf_drift(x, m, s2, f, g2):
    return (f + g2 / (2 * s2)) * x - g2 / (2 * s2) * m


@checker("pf_drift_gaussian", "04")
def check_pf_drift_gaussian(fn: Any) -> tuple[bool, str]:
    """fn(x (B,), m, s2, f, g2) -> dx/dt of the deterministic linear map that keeps x_t ~ N(m_t, s2_t) (moment matching)."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(6, generator=g, dtype=torch.float64)
    for m, s2, f, g2 in ((0.4, 0.7, -0.5, 1.3), (-1.0, 2.0, 0.0, 0.6)):
        got = call(fn, x.clone(), m, s2, f, g2)
        want = _pf_drift(x, m, s2, f, g2)
        if close(got, want):
            continue
        hint = ""
        if close(got, (f + g2 / s2) * x - g2 / s2 * m):
            hint = (" That is the reverse-SDE drift (the exact Bayes reversal of one Euler step, with noise). Without "
                    "noise the map only has to make the variance shrink at the rate the noise would have added it: "
                    "half of g^2/s2.")
        elif close(got, (f - g2 / (2 * s2)) * x + g2 / (2 * s2) * m):
            hint = (" Sign slip: forward in time the deterministic map must spread x away from m (the variance "
                    "grows), so the coefficient of (x - m) is f + g^2/(2 s2).")
        elif close(got, g2 / (2 * s2) * (x - m)):
            hint = " You left out f x: the mean must still follow m' = f m."
        return False, f"for m={m}, s2={s2}, f={f}, g2={g2}: your drift is {fmt(got)}, want {fmt(want)}.{hint}"
    return True, ("(f + g^2/(2 s_t^2)) x - g^2/(2 s_t^2) m_t = f x - (g^2/2) d/dx log p_t: the PF-ODE. With g^2 instead "
                  "of g^2/2 it is the reverse SDE's drift.")


# -- 5. predict then run: weak and strong orders of Euler-Maruyama ---------------------------------------------
_WHY_EM = ("Strong error compares each path with the exact path driven by the same Brownian motion; the "
           "increments' random size sqrt(h) makes EM's pathwise error shrink only like h^(1/2) (when the noise "
           "depends on x). Weak error compares averages E[phi(x_T)], where those fluctuations cancel: order 1. "
           "With additive noise (g depends on t only) EM equals Milstein's scheme and is strong order 1.")


@checker("em_orders", "04")
def check_em_orders(answer: Any) -> tuple[bool, str]:
    """answer: 'a', 'b' or 'c' -- the strong and weak orders of Euler-Maruyama for geometric Brownian motion."""
    got = call(answer)
    key = str(got).strip().strip("()").strip().lower() if isinstance(got, str) else None
    if key not in ("a", "b", "c"):
        raise WrongAnswer(f"answer with one of the letters 'a', 'b' or 'c' (you gave {got!r})")
    if key == "b":
        return True, "right: strong 1/2, weak 1 (the next cell measures slopes near 0.5 and 1). " + _WHY_EM
    if key == "a":
        return False, "recorded 'a'. Euler is order 1 for ODEs, but the strong slope comes out near 0.5. " + _WHY_EM
    return False, "recorded 'c'. It is the other way round: strong 1/2, weak 1. " + _WHY_EM


# -- 6. find the bug: the sign slip of §4.3.2 --------------------------------------------------------------------
def _rk4_augmented(model, x0: torch.Tensor, n_steps: int, sign: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RK4 on d/dt [x, delta] = [v, sign * div v] from t = 0 to 1; returns (x_1, delta_1)."""
    def rhs(x, t):
        div, v = divergence(lambda z: model.predict(z, t, "velocity"), x, with_value=True)
        return v, sign * div

    x, delta, h = x0.detach(), torch.zeros(x0.shape[0], dtype=x0.dtype), 1.0 / n_steps
    for k in range(n_steps):
        t = k * h
        k1 = rhs(x, t)
        k2 = rhs(x + 0.5 * h * k1[0], t + 0.5 * h)
        k3 = rhs(x + 0.5 * h * k2[0], t + 0.5 * h)
        k4 = rhs(x + h * k3[0], t + h)
        x = x + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        delta = delta + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
    return x, delta


def likelihood_as_written(model, x0: torch.Tensor, n_steps: int = 100) -> torch.Tensor:
    """§4.3.2 as printed: d delta/dt = -div v, delta(0) = 0, and log p_0(x0) = log p_prior(x(T)) + delta(T). (Wrong.)"""
    x_T, delta = _rk4_augmented(model, x0, n_steps, -1.0)
    return gaussian_log_prob(x_T, float(model.schedule.sigma(1.0))) + delta


def _likelihood(model, x0: torch.Tensor, n_steps: int = 100) -> torch.Tensor:
    """log p_0(x0) = log p_T(x_T) + int_0^T div v dt (the correct sign)."""
    x_T, delta = _rk4_augmented(model, x0, n_steps, 1.0)
    return gaussian_log_prob(x_T, float(model.schedule.sigma(1.0))) + delta


@checker("likelihood_sign", "04")
def check_likelihood_sign(fn: Any) -> tuple[bool, str]:
    """fn(model, x0 (B, D), n_steps) -> log p_0(x0) (B,) by the augmented PF-ODE, prior N(0, sigma_1^2 I) at t = 1."""
    model = _MIX2.model(VPLinear())
    x0 = torch.tensor([[-1.0, 0.4], [1.3, -0.2], [0.0, 0.0], [2.0, 1.0]], dtype=torch.float64)
    got = call(fn, model, x0.clone(), 60)
    ref = log_likelihood(model, x0, details=True)                 # DOP853, the package's (correct) sign
    want = ref.logp
    if close(got, want, rtol=0, atol=2e-3):
        gap = float((likelihood_as_written(model, x0, 60) - want).abs().max())
        return True, (f"log p_0 = log p_T(x_T) + int_0^T div v dt matches the exact log-density; the formula as printed "
                      f"is off by 2 int div v dt, on the check's four points up to {gap:.2f} nats.")
    a = as_array(got)
    if a.shape != (4,):
        raise WrongAnswer(f"return one log-density per point, shape (4,); you returned shape {a.shape}")
    log_prior = gaussian_log_prob(ref.x_T, float(model.schedule.sigma(1.0)))
    D = want - log_prior                                         # int_0^1 div v dt along each path
    hint = ""
    if close(got, log_prior - D, rtol=0, atol=2e-3):
        hint = (" These are the printed formula's numbers. Either the port is unchanged, or you made BOTH sign changes "
                "(d delta/dt = +div v AND log p_T - delta(T)), and they cancel. Decide from d/dt log p_t(x(t)) = "
                "-div v which ONE sign is wrong, and change only that one.")
    elif close(got, D, rtol=0, atol=2e-3) or close(got, -D, rtol=0, atol=2e-3):
        hint = " You dropped the prior term log p_T(x_T) (evaluated at the end point of the path)."
    elif close(got, log_prior, rtol=0, atol=2e-3):
        hint = " You dropped the divergence integral: the volume change along the path."
    elif close(got, gaussian_log_prob(x0, float(model.schedule.sigma(1.0))) + D, rtol=0, atol=2e-3):
        hint = " The prior is evaluated at the path's end x_T, not at the data point x0."
    elif close(got, want, rtol=0, atol=0.1):
        hint = (" The sign and the terms are right, but the numbers are off by more than the 2e-3 nats RK4 with "
                "n_steps steps gets: use the ported function's RK4 loop (not Euler), with all n_steps steps.")
    return False, f"your log p_0 = {fmt(got)}, exact {fmt(want)}.{hint}"


# -- 7. the reverse conditional of §4.5.3 (implement-and-reuse) ------------------------------------------------
def _reverse_conditional(schedule: Schedule, s: float, t: float) -> tuple[float, float, float]:
    a_st = float(schedule.alpha(s) / schedule.alpha(t))                          # alpha_{s|t}
    sig_s2, sig_t2 = float(schedule.sigma(s)) ** 2, float(schedule.sigma(t)) ** 2
    var_st = sig_s2 - a_st ** 2 * sig_t2                                         # sigma_{s|t}^2
    return (a_st * sig_t2 / sig_s2, float(schedule.alpha(t)) * var_st / sig_s2, var_st * sig_t2 / sig_s2)


@checker("reverse_conditional", "04")
def check_reverse_conditional(fn: Any) -> tuple[bool, str]:
    """fn(schedule, s, t) -> (c_s, c_0, var): p(x_t | x_s, x0) = N(c_s x_s + c_0 x0, var I) for t < s."""
    for name, s, t in (("vp", 0.6, 0.3), ("cosine", 0.9, 0.5), ("ve", 0.7, 0.2)):
        sch = _SCHEDULES[name]
        got = call(fn, sch, s, t)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise WrongAnswer("return the triple (c_s, c_0, var)")
        got = [as_scalar(v, "three numbers (c_s, c_0, var)") for v in got]
        want = _reverse_conditional(sch, s, t)
        if close(got, want, rtol=1e-6):
            continue
        cs, c0, var = want
        hint = ""
        if got[2] < 0:
            hint = (" Your variance is negative: here t < s, so sigma_{s|t}^2 = sigma_s^2 - alpha_{s|t}^2 sigma_t^2 with "
                    "alpha_{s|t} = alpha_s / alpha_t; did you swap s and t?")
        elif close(got[2], math.sqrt(var), rtol=1e-6):
            hint = " The third entry is the variance, not the standard deviation."
        elif close(got[:2], [c0, cs], rtol=1e-6):
            hint = " You swapped the weights: x_s is weighted by alpha_{s|t} sigma_t^2 / sigma_s^2."
        elif close(got[0], float(sch.alpha(s) / sch.alpha(t)), rtol=1e-6):
            hint = (" c_s is not the forward ratio alpha_{s|t} itself: condition x_t on x_s by completing the square "
                    "(it is alpha_{s|t} sigma_t^2 / sigma_s^2).")
        elif close(got[2], float(sch.sigma(s)) ** 2 - float(sch.sigma(t)) ** 2, rtol=1e-6):
            hint = " sigma_{s|t}^2 = sigma_s^2 - alpha_{s|t}^2 sigma_t^2, not sigma_s^2 - sigma_t^2 (unless alpha = 1)."
        return False, f"{name}, s={s}, t={t}: your (c_s, c_0, var) = {fmt(got)}, want {fmt(want)}.{hint}"
    return True, ("the lemma of §4.5.3: (alpha_{s|t} sigma_t^2 x_s + alpha_t sigma_{s|t}^2 x0) / sigma_s^2 with variance "
                  "sigma_{s|t}^2 sigma_t^2 / sigma_s^2, Gaussian conditioning of the pair (x_t, x_s).")


# -- the package's versions the later cells fall back on ----------------------------------------------------------
_REFERENCES: dict[str, Callable] = {"sde_coefficients": _sde_coefficients, "em_step": _em_step, "fp_step": _fp_step,
                                    "pf_drift_gaussian": _pf_drift, "likelihood_sign": _likelihood,
                                    "reverse_conditional": _reverse_conditional}


use = make_use(_REFERENCES)   # use(name, answer): the learner's function, or the package's while a stub
