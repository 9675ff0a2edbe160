"""Continuous-time dynamics: forward SDE, reverse SDE, PF-ODE, the gamma-family, Langevin (Ch. 3, 4, 6).

For x_t = alpha_t x0 + sigma_t eps the forward SDE is dx = f(t) x dt + g(t) dw with
f = (log alpha)' and g^2 = (sigma^2)' - 2 f sigma^2 (§4.5.2).  Every reverse-time process
below shares the marginals p_t (§6.4, Eq. general-reverse-sde):

    dx = [v*(x, t) - gamma(t)^2/2 s*(x, t)] dt + gamma(t) dw_bar      (run from t = 1 down to 0)

gamma = 0 is the PF-ODE dx/dt = v* = f x - g^2/2 s*, and gamma = g is Anderson's reverse SDE
with drift f x - g^2 s* (§4.1.3).  Time convention: t = 0 data, t = 1 noise; a step goes from
the noisier time s to the cleaner time t < s.  Every stochastic function takes `generator=`.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .fast_solvers import new_state, x0_eps
from .utils import as_time, check_x

__all__ = ["forward_sde", "reverse_drift", "pf_ode_velocity", "gamma_drift", "gamma_sde_step",
           "langevin", "annealed_langevin", "predictor_corrector"]


def _randn(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _times(times, name="times", descending=False) -> list[float]:
    ts = as_time(torch.as_tensor(times, dtype=torch.float64), name=name).flatten()
    if ts.numel() < 2:
        raise ValueError(f"{name} needs at least 2 times, got {ts.numel()}")
    d = ts[1:] - ts[:-1]
    if not ((d < 0).all() if descending else (d > 0).all()):
        raise ValueError(f"{name} must be strictly {'descending' if descending else 'ascending'}")
    return ts.tolist()


def forward_sde(x0: torch.Tensor, times, schedule, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Simulate the forward SDE dx = f(t) x dt + g(t) dw by Euler-Maruyama (§4.1.2, §4.5.2).

    x_{k+1} = x_k + f(t_k) x_k dt + sqrt(g^2(t_k) dt) z_k.
    Args:
        x0: (B, *D) data at times[0].  times: ascending sequence of n+1 times in [0, 1)
            (f and g blow up where alpha_t = 0).
    Returns:
        the trajectory (n+1, B, *D).
    """
    check_x(x0, "x0")
    ts, path, x = _times(times), [x0], x0
    for a, b in zip(ts[:-1], ts[1:]):
        dt = b - a
        f, g2 = float(schedule.f(a)), float(schedule.g2(a))
        x = x + f * x * dt + math.sqrt(max(g2, 0.0) * dt) * _randn(x, generator)
        path.append(x)
    return torch.stack(path)


def _v_and_score(model, x, t, state=None):
    """One model call -> (velocity, score) at (x, t): v = alpha' x0 + sigma' eps, s = -eps/sigma (§6.3.1)."""
    tt = torch.tensor(float(t), dtype=torch.float64)
    x0, eps = x0_eps(model, x, t, state)
    sch = model.schedule
    v = float(sch.d_alpha(tt)) * x0 + float(sch.d_sigma(tt)) * eps
    return v, -eps / float(sch.sigma(tt))


def reverse_drift(model, x: torch.Tensor, t: float) -> torch.Tensor:
    """Drift of Anderson's reverse SDE, f(t) x - g^2(t) s*(x, t) (dt < 0 direction; §4.1.3)."""
    score = model.predict(x, float(t), "score")
    return float(model.schedule.f(t)) * x - float(model.schedule.g2(t)) * score


def pf_ode_velocity(model, x: torch.Tensor, t: float) -> torch.Tensor:
    """PF-ODE drift dx/dt = v*(x, t) = f x - g^2/2 s* (§4.1.4)."""
    return model.predict(x, float(t), "velocity")


def _gamma_value(gamma, schedule, t: float) -> float:
    if isinstance(gamma, str):
        if gamma != "g":
            raise ValueError(f"gamma must be a float >= 0, a callable t -> gamma(t), or 'g'; got {gamma!r}")
        return math.sqrt(max(float(schedule.g2(t)), 0.0))
    value = float(gamma(t)) if callable(gamma) else float(gamma)
    if not value >= 0:
        raise ValueError(f"gamma must be >= 0, got {value}")
    return value


def gamma_drift(model, x: torch.Tensor, t: float, gamma=0.0) -> torch.Tensor:
    """Drift of the gamma-family reverse SDE, v* - gamma(t)^2/2 s* (§6.4, Eq. general-reverse-sde)."""
    v, score = _v_and_score(model, x, t)
    return v - 0.5 * _gamma_value(gamma, model.schedule, t) ** 2 * score


def gamma_sde_step(model, x, s, t, *, state=None, generator=None, gamma="g"):
    """One Euler-Maruyama step of the gamma-family reverse SDE from s down to t < s (§6.4, §4.2).

    x_t = x_s - (s - t) [v*(x_s, s) - gamma(s)^2/2 s*(x_s, s)] + gamma(s) sqrt(s - t) z.
    Args:
        gamma: a float >= 0, a callable t -> gamma(t), or 'g' for Anderson's SDE (gamma = g(t)).
    """
    state = new_state(state)
    v, score = _v_and_score(model, x, s, state)
    gam, dt = _gamma_value(gamma, model.schedule, s), s - t
    x_t = x - dt * (v - 0.5 * gam ** 2 * score)
    if gam > 0:
        x_t = x_t + gam * math.sqrt(dt) * _randn(x, generator)
    return x_t, state


def langevin(score_fn: Callable, x: torch.Tensor, n_steps: int, step_size: float, *,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Unadjusted Langevin dynamics x <- x + eta s(x) + sqrt(2 eta) z (§3.1.4).

    Its stationary law tends to p as eta -> 0, but it mixes badly between separated modes (§3.4.1).
    Args:
        score_fn: x (B, *D) -> score (B, *D).  x: (B, *D) starting points.
    """
    check_x(x)
    if n_steps < 1 or not step_size > 0:
        raise ValueError(f"need n_steps >= 1 and step_size > 0, got {n_steps}, {step_size}")
    for _ in range(n_steps):
        x = x + step_size * score_fn(x) + math.sqrt(2 * step_size) * _randn(x, generator)
    return x


def annealed_langevin(model, x: torch.Tensor, times, *, n_steps: int = 20, delta: float = 2e-5,
                      generator: torch.Generator | None = None, denoise: bool = False) -> torch.Tensor:
    """Annealed Langevin dynamics of NCSN (§3.4.3, Algorithm: Annealed Langevin Dynamics).

    For levels t_L > ... > t_1 (noise sigma_l = sigma(t_l)), run n_steps Langevin steps on p_{t_l}
    with eta_l = delta sigma_l^2 / sigma_1^2 (sigma_1 = the smallest level), so eta_1 = delta:
    pick delta around 0.1-0.2 sigma_1^2 (the default 2e-5 is NCSN's choice for sigma_1 = 0.01).
    Args:
        x: (B, *D) start, e.g. N(0, sigma_L^2 I).  times: descending noise levels in (0, 1].
        denoise: return x0*(x, t_1) at the end (Tweedie, §3.3.4).
    """
    check_x(x)
    ts = _times(times, descending=True)
    sig_min = float(model.schedule.sigma(ts[-1]))
    if not sig_min > 0:
        raise ValueError("the smallest level needs sigma > 0")
    for t in ts:
        eta = delta * float(model.schedule.sigma(t)) ** 2 / sig_min ** 2
        x = langevin(lambda y, t=t: model.predict(y, t, "score"), x, n_steps, eta, generator=generator)
    return model.predict(x, ts[-1], "x0") if denoise else x


def predictor_corrector(model, x_T: torch.Tensor, grid, *, predictor: str = "euler_maruyama",
                        corrector_steps: int = 1, snr: float = 0.16, generator=None, **opts) -> torch.Tensor:
    """Predictor-corrector sampler (§4.2, Song et al. 2021): a solver step, then Langevin at the new time.

    Corrector: x <- x + eta s + sqrt(2 eta) z with eta = 2 (snr mean||z|| / mean||s||)^2 (batch means).
    Args:
        predictor: any name in samplers.SOLVERS.  grid: descending times (n+1,).
    """
    from .samplers import SOLVERS, check_grid
    from .utils import check_choice

    check_choice(predictor, SOLVERS, "predictor")
    ts, solver, state, x = check_grid(grid), SOLVERS[predictor], None, check_x(x_T, "x_T")
    for s, t in zip(ts[:-1], ts[1:]):
        x, state = solver.step(model, x, s, t, state=state, generator=generator, **opts)
        for _ in range(corrector_steps):
            score, z = model.predict(x, t, "score"), _randn(x, generator)
            ratio = z.flatten(1).norm(dim=1).mean() / score.flatten(1).norm(dim=1).mean().clamp_min(1e-30)
            eta = 2 * (snr * ratio.item()) ** 2   # batch-mean norms: a per-sample eta would bias the chain
            x = x + eta * score + math.sqrt(2 * eta) * z
    return x
