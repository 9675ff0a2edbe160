"""Continuous-time dynamics: forward SDE, reverse SDE, PF-ODE, the gamma-family, Langevin (Ch. 3, 4, 6).

For x_t = alpha_t x0 + sigma_t eps the forward SDE is dx = f(t) x dt + g(t) dw with
f = (log alpha)' and g^2 = (sigma^2)' - 2 f sigma^2 (§4.5.2).  Every reverse-time process
below shares the marginals p_t (§6.4, Eq. general-reverse-sde):

    dx = [v*(x, t) - gamma(t)^2/2 s*(x, t)] dt + gamma(t) dw_bar      (run from t = 1 down to 0)

gamma = 0 is the PF-ODE dx/dt = v* = f x - g^2/2 s*, and gamma = g is Anderson's reverse SDE
with drift f x - g^2 s* (§4.1.3).  Time convention: t = 0 data, t = 1 noise; a step goes from
the noisier time s to the cleaner time t < s.  Every stochastic function takes `generator=` and
draws through utils.randn_like (on the generator's device).

The samplers here are steps of the `steps` contract and Solver objects for the driver
(`samplers.sample`): gamma_sde, euler_maruyama, annealed_langevin (DYNAMICS_SOLVERS), and
`predictor_corrector(predictor)`, which wraps any Solver with Langevin corrector steps.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch

from .param import _convert as convert  # no finiteness check on the sampling path
from .schedules import Schedule
from .steps import FieldModel, Solver, as_solver, begin, check_times, coeffs, need, new_state, noise, x0_eps
from .utils import as_time, check_choice, check_x

__all__ = ["DYNAMICS_SOLVERS", "forward_sde", "reverse_drift", "pf_ode_velocity", "pf_ode_solve", "gamma_drift",
           "gamma_sde_step",
           "euler_maruyama_step", "langevin", "annealed_langevin", "annealed_langevin_step",
           "predictor_corrector_step", "predictor_corrector", "sde_solve", "ode_solve", "ODE_METHODS"]


def _times(times, name="times", descending=False) -> list[float]:
    ts = as_time(torch.as_tensor(times, dtype=torch.float64), name=name).flatten()
    if ts.numel() < 2:
        raise ValueError(f"{name} needs at least 2 times, got {ts.numel()}")
    d = ts[1:] - ts[:-1]
    if not ((d < 0).all() if descending else (d > 0).all()):
        raise ValueError(f"{name} must be strictly {'descending' if descending else 'ascending'}")
    return ts.tolist()


def forward_sde(x0: torch.Tensor, times: Sequence[float] | torch.Tensor, schedule: Schedule, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
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
        x = x + f * x * dt + math.sqrt(max(g2, 0.0) * dt) * noise(x, generator)
        path.append(x)
    return torch.stack(path)


def _v_and_score(model: FieldModel, x, t, state=None):
    """One model call -> (velocity, score) at (x, t): v = alpha' x0 + sigma' eps, s = -eps/sigma (§6.3.1)."""
    c = coeffs(model.schedule, t)
    need(c.sigma > 0, "sigma_t > 0 (the score -eps/sigma_t)", "the reverse SDE")
    x0, eps = x0_eps(model, x, t, state)
    return c.d_alpha * x0 + c.d_sigma * eps, -eps / c.sigma


def reverse_drift(model: FieldModel, x: torch.Tensor, t: float) -> torch.Tensor:
    """Drift of Anderson's reverse SDE, f(t) x - g^2(t) s*(x, t) (dt < 0 direction; §4.1.3), (B, *D)."""
    score = model.predict(x, float(t), "score")
    return float(model.schedule.f(t)) * x - float(model.schedule.g2(t)) * score


def pf_ode_velocity(model: FieldModel, x: torch.Tensor, t: float) -> torch.Tensor:
    """PF-ODE drift dx/dt = v*(x, t) = f x - g^2/2 s* (§4.1.4), (B, *D)."""
    return model.predict(x, float(t), "velocity")


def pf_ode_solve(model: FieldModel, x: torch.Tensor, s: float, t: float, *, rtol: float = 1e-10,
                 atol: float = 1e-10) -> torch.Tensor:
    """Integrate the PF-ODE dx/dt = v*(x, t) from s to t with scipy's DOP853 (order 8, adaptive), (B, *D).

    Either direction: t < s decodes (samples), t > s encodes (§4.1.4).  The model sees x's dtype and
    device; scipy works in float64 on the CPU.
    """
    from scipy.integrate import solve_ivp

    check_x(x)
    s, t = (float(as_time(v, name=n)) for v, n in ((s, "s"), (t, "t")))
    shape = x.shape

    def rhs(tau, y):
        xt = torch.from_numpy(y).reshape(shape).to(device=x.device, dtype=x.dtype)
        return model.predict(xt, float(tau), "velocity").detach().double().cpu().numpy().ravel()

    sol = solve_ivp(rhs, (s, t), x.detach().double().cpu().numpy().ravel(), method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"PF-ODE solve failed: {sol.message}")
    return torch.from_numpy(sol.y[:, -1].copy()).reshape(shape).to(device=x.device, dtype=x.dtype)


def _gamma_value(gamma, schedule, t: float) -> float:
    if isinstance(gamma, str):
        if gamma != "g":
            raise ValueError(f"gamma must be a float >= 0, a callable t -> gamma(t), or 'g'; got {gamma!r}")
        return math.sqrt(max(float(schedule.g2(t)), 0.0))
    value = float(gamma(t)) if callable(gamma) else float(gamma)
    if not value >= 0:
        raise ValueError(f"gamma must be >= 0, got {value}")
    return value


def gamma_drift(model: FieldModel, x: torch.Tensor, t: float, gamma: float | str | Callable = 0.0) -> torch.Tensor:
    """Drift of the gamma-family reverse SDE, v* - gamma(t)^2/2 s* (§6.4, Eq. general-reverse-sde), (B, *D)."""
    v, score = _v_and_score(model, x, t)
    return v - 0.5 * _gamma_value(gamma, model.schedule, t) ** 2 * score


def gamma_sde_step(model: FieldModel, x: torch.Tensor, s: float, t: float, *, state: dict | None = None,
                   generator: torch.Generator | None = None, gamma: float | str | Callable = "g"
                   ) -> tuple[torch.Tensor, dict]:
    """One Euler-Maruyama step of the gamma-family reverse SDE from s down to t < s (§6.4, §4.2).

    x_t = x_s - (s - t) [v*(x_s, s) - gamma(s)^2/2 s*(x_s, s)] + gamma(s) sqrt(s - t) z.
    Args:
        x: (B, *D) at time s.  gamma: a float >= 0, a callable t -> gamma(t), or 'g' for Anderson's
            SDE (gamma = g(t)).  gamma = 0 is Euler on the PF-ODE.
    """
    cs, _, state = begin(model, s, t, state, "gamma_sde")
    if not torch.isfinite(x).all():
        raise ValueError(f"x contains NaN or inf at s = {float(s):g}: gamma_sde_step needs a finite state "
                         "(a bad input, or an earlier step diverged: try more steps)")
    s, t, gam = cs.t, float(t), _gamma_value(gamma, model.schedule, cs.t)
    v, score = _v_and_score(model, x, s, state)
    dt = s - t
    x_t = x - dt * (v - 0.5 * gam ** 2 * score)              # drift of Eq. general-reverse-sde
    if gam > 0:
        x_t = x_t + gam * math.sqrt(dt) * noise(x, generator)
    return x_t, state


def euler_maruyama_step(model: FieldModel, x: torch.Tensor, s: float, t: float, *, state: dict | None = None,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """Euler-Maruyama on Anderson's reverse SDE: x_t = x_s - [f x - g^2 s*](s - t) + g sqrt(s - t) z (§4.2)."""
    return gamma_sde_step(model, x, s, t, state=state, generator=generator, gamma="g")


# -- generic SDEs and ODEs (App. A) ----------------------------------------------------------------------
def _monotone_times(times, name: str = "times") -> list[float]:
    ts = [float(t) for t in torch.as_tensor(times, dtype=torch.float64).flatten()]
    if len(ts) < 2 or not all(math.isfinite(t) for t in ts):
        raise ValueError(f"{name} needs at least 2 finite times, got {len(ts)}")
    d = [b - a for a, b in zip(ts[:-1], ts[1:])]
    if not (all(h > 0 for h in d) or all(h < 0 for h in d)):
        raise ValueError(f"{name} must be strictly monotone (every step size nonzero and of one sign)")
    return ts


def sde_solve(x0: torch.Tensor, times: Sequence[float] | torch.Tensor, drift: Callable, diffusion: float | Callable,
              *, generator: torch.Generator | None = None, dW: torch.Tensor | None = None) -> torch.Tensor:
    """Euler-Maruyama for a general SDE dx = b(x, t) dt + g dw (App. A.2, Eq. 4.1.1).

    x_{k+1} = x_k + b(x_k, t_k) h_k + g(x_k, t_k) dW_k with dW_k ~ N(0, h_k I), h_k = t_{k+1} - t_k > 0.
    Args:
        x0: (B, *D) start.  times: strictly ascending (n+1,) times (any range: this is not tied to a schedule).
        drift: (x, t) -> b (B, *D).  diffusion: g >= 0 as a number, a callable of one argument t -> g(t),
            or a callable of two arguments (x, t) -> g (B, *D) for state-dependent (multiplicative) noise.
        dW: optional (n, B, *D) Brownian increments (for strong-error studies, where a coarse path must
            reuse the sums of a fine path's increments); drawn from `generator` when None.
    Returns:
        the path (n+1, B, *D).
    """
    check_x(x0, "x0")
    ts = _monotone_times(times)
    if ts[1] < ts[0]:
        raise ValueError("times must be ascending: sde_solve runs forward in time (step sizes > 0)")
    if dW is not None and tuple(dW.shape) != (len(ts) - 1, *x0.shape):
        raise ValueError(f"dW must have shape {(len(ts) - 1, *x0.shape)}, got {tuple(dW.shape)}")
    state_noise = callable(diffusion) and len(inspect.signature(diffusion).parameters) == 2
    path, x = [x0], x0
    for k, (a, b) in enumerate(zip(ts[:-1], ts[1:])):
        if state_noise:
            g = diffusion(x, a)
        else:
            g = float(diffusion(a)) if callable(diffusion) else float(diffusion)
            if not g >= 0:
                raise ValueError(f"diffusion must be >= 0, got {g} at t = {a}")
        inc = dW[k] if dW is not None else math.sqrt(b - a) * noise(x, generator)
        x = x + drift(x, a) * (b - a) + g * inc
        path.append(x)
    return torch.stack(path)


def _euler(v, x, t, h): return x + h * v(x, t)


def _heun(v, x, t, h):
    k1 = v(x, t)
    k2 = v(x + h * k1, t + h)
    return x + 0.5 * h * (k1 + k2)


def _rk4(v, x, t, h):
    k1 = v(x, t)
    k2 = v(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = v(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = v(x + h * k3, t + h)
    return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


ODE_METHODS: dict[str, tuple[Callable, int]] = {"euler": (_euler, 1), "heun": (_heun, 2), "rk4": (_rk4, 4)}


def ode_solve(velocity: Callable, x0: torch.Tensor, times: Sequence[float] | torch.Tensor, *,
              method: str = "rk4") -> torch.Tensor:
    """Fixed-step Euler (order 1), Heun (2) or RK4 (4) for dx/dt = v(x, t) on a grid (App. A.1).

    The grid may run forward or backward in time (backward solving, App. A.1).  velocity: (x, t) -> dx/dt.
    Returns the path (n+1, *x0.shape).
    """
    check_choice(method, ODE_METHODS, "method")
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a torch.Tensor, got {type(x0).__name__}")
    ts, step = _monotone_times(times), ODE_METHODS[method][0]
    path, x = [x0], x0
    for a, b in zip(ts[:-1], ts[1:]):
        x = step(velocity, x, a, b - a)
        path.append(x)
    return torch.stack(path)


# -- Langevin -------------------------------------------------------------------------------------------
def langevin(score_fn: Callable, x: torch.Tensor, n_steps: int, step_size: float, *,
             generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
    """Unadjusted Langevin dynamics x <- x + eta s(x) + sqrt(2 eta T) z (§3.1.4; T = temperature).

    Its stationary law tends to p^(1/T) (normalised) as eta -> 0: T = 1 targets p itself, T < 1
    sharpens the modes, T > 1 flattens them.  It mixes badly between separated modes (§3.4.1).
    Args:
        score_fn: x (B, *D) -> score (B, *D).  x: (B, *D) starting points.  temperature: T > 0.
    """
    check_x(x)
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"langevin: n_steps must be an integer >= 1, got {n_steps!r}")
    if not step_size > 0:
        raise ValueError(f"langevin: step_size must be > 0, got {step_size!r}")
    if not temperature > 0:
        raise ValueError(f"langevin: temperature must be > 0, got {temperature!r}")
    for _ in range(n_steps):
        x = x + step_size * score_fn(x) + math.sqrt(2 * step_size * temperature) * noise(x, generator)
    return x


def _langevin_level(model: FieldModel, x, t: float, n_steps: int, eta: float, generator, state) -> torch.Tensor:
    """n_steps Langevin steps on p_t; records Tweedie's x0 = (x + sigma^2 s)/alpha of the last score in state."""
    score = None

    def score_fn(y):
        nonlocal score
        score = model.predict(y, t, "score")
        return score

    out = langevin(score_fn, x, n_steps, eta, generator=generator)
    if state is not None:
        state["x0"] = (convert(model.schedule, out, t, score, "score", "x0")
                       if coeffs(model.schedule, t).alpha > 0 else None)
    return out


def annealed_langevin_step(model: FieldModel, x: torch.Tensor, s: float, t: float, *, state: dict | None = None,
                           generator: torch.Generator | None = None, n_steps: int = 20,
                           step_ratio: float = 0.1) -> tuple[torch.Tensor, dict]:
    """One level of annealed Langevin (NCSN, §3.4.3): n_steps Langevin steps on p_t at the new level t < s.

    x <- x + eta s*(x, t) + sqrt(2 eta) z,  eta = step_ratio sigma_t^2 (NCSN's eta_l = delta sigma_l^2 /
    sigma_1^2 with delta = step_ratio sigma_1^2, so no step needs the smallest level).  As a driver
    run on a grid t_0 > t_1 > ... > t_n, levels t_1..t_n are visited; x_T should already be a draw of
    p_{t_0} (the prior).  NFE per step: n_steps.
    Args:
        x: (B, *D) at level s.  n_steps: Langevin steps per level.  step_ratio: eta / sigma_t^2 (0.05-0.2).
    """
    _, ct, state = begin(model, s, t, state, "annealed_langevin")
    need(ct.sigma > 0, "sigma_t > 0 at every level", "annealed_langevin")
    if not step_ratio > 0:
        raise ValueError(f"annealed_langevin: step_ratio must be > 0, got {step_ratio}")
    return _langevin_level(model, x, ct.t, n_steps, step_ratio * ct.sigma ** 2, generator, state), state


def annealed_langevin(model: FieldModel, x: torch.Tensor, times: Sequence[float] | torch.Tensor, *,
                      n_steps: int = 20, delta: float = 2e-5, generator: torch.Generator | None = None,
                      denoise: bool = False) -> torch.Tensor:
    """Annealed Langevin dynamics of NCSN (§3.4.3, Algorithm: Annealed Langevin Dynamics).

    For levels t_L > ... > t_1 (noise sigma_l = sigma(t_l)), run n_steps Langevin steps on p_{t_l}
    with eta_l = delta sigma_l^2 / sigma_1^2 (sigma_1 = the smallest level), so eta_1 = delta:
    pick delta around 0.1-0.2 sigma_1^2 (the default 2e-5 is NCSN's choice for sigma_1 = 0.01).
    Every level is visited, the first included (the driver's 'annealed_langevin' skips the first).
    Args:
        x: (B, *D) start, e.g. N(0, sigma_L^2 I).  times: descending noise levels in (0, 1].
        denoise: return x0*(x, t_1) at the end (Tweedie, §3.3.4).
    Returns:
        (B, *D) samples.
    """
    check_x(x)
    ts = _times(times, descending=True)
    sig_min = coeffs(model.schedule, ts[-1]).sigma
    if not sig_min > 0:
        raise ValueError("the smallest level needs sigma > 0")
    for t in ts:
        x = _langevin_level(model, x, t, n_steps, delta * coeffs(model.schedule, t).sigma ** 2 / sig_min ** 2,
                            generator, None)
    return model.predict(x, ts[-1], "x0") if denoise else x


# -- predictor-corrector ---------------------------------------------------------------------------------
def predictor_corrector_step(model: FieldModel, x: torch.Tensor, s: float, t: float, *, state: dict | None = None,
                             generator: torch.Generator | None = None, predictor: Any,
                             corrector_steps: int = 1, snr: float = 0.16, **opts: Any) -> tuple[torch.Tensor, dict]:
    """Predictor-corrector step (§4.2, Song et al. 2021): a predictor step from s to t, then Langevin at t.

    Corrector: x <- x + eta s*(x, t) + sqrt(2 eta) z with eta = 2 (snr mean||z|| / mean||s||)^2 (batch means).
    Args:
        predictor: a Solver (or Solver-like object); opts go to its step.
        corrector_steps: Langevin steps at t (each one model evaluation).  snr: the signal-to-noise target.
    """
    solver = as_solver(predictor)
    check_times(s, t, "predictor_corrector")
    if isinstance(corrector_steps, bool) or not isinstance(corrector_steps, int) or corrector_steps < 0:
        raise ValueError(f"corrector_steps must be an int >= 0, got {corrector_steps!r}")
    x, state = solver.step(model, x, s, t, state=new_state(state), generator=generator, **opts)
    for _ in range(corrector_steps):
        score, z = model.predict(x, float(t), "score"), noise(x, generator)
        ratio = z.flatten(1).norm(dim=1).mean() / score.flatten(1).norm(dim=1).mean().clamp_min(1e-30)
        eta = 2 * (snr * ratio.item()) ** 2   # batch-mean norms: a per-sample eta would bias the chain
        x = x + eta * score + math.sqrt(2 * eta) * z
    return x, state


def predictor_corrector(predictor: Any, *, corrector_steps: int = 1, snr: float = 0.16) -> Solver:
    """A Solver that runs `predictor` (a Solver) and then `corrector_steps` Langevin corrector steps (§4.2).

    NFE per step: the predictor's plus corrector_steps; the predictor's plan (e.g. lower-order final
    steps) still applies.  samplers' registered 'pc' takes the predictor by name instead.
    """
    pred = as_solver(predictor)

    def plan(n: int, opts: dict) -> list[dict]:
        return pred.step_options(n, **opts)

    def cost(opts: dict) -> int:
        return (int(pred.cost(opts)) if pred.cost else pred.nfe_per_step) + corrector_steps

    return Solver(f"pc({pred.name})", partial(predictor_corrector_step, predictor=pred, corrector_steps=corrector_steps,
                                              snr=snr),
                  pred.order, None if pred.nfe_per_step is None else pred.nfe_per_step + corrector_steps,
                  stochastic=True, multistep=pred.multistep, book="§4.2", plan=plan, cost=cost)


DYNAMICS_SOLVERS: tuple[Solver, ...] = (
    Solver("euler_maruyama", euler_maruyama_step, 1, 1, stochastic=True, book="§4.2"),
    Solver("gamma_sde", gamma_sde_step, 1, 1, stochastic=True, book="§6.4"),
    Solver("annealed_langevin", annealed_langevin_step, 0, 20, stochastic=True, book="§3.4.3",
           cost=lambda opts: int(opts.get("n_steps", 20))),
)
