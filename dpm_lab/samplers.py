"""Samplers: one step signature for every method, a registry, and one driver (Ch. 2, 4, 9).

    x_t, state = step(model, x_s, s, t, *, state=None, generator=None, **opts)

moves x (B, *D) from the NOISIER time s to the CLEANER time t < s (floats in [0, 1]; t = 0 data,
t = 1 noise).  `state` is an explicit dict ({"x0": last data prediction, "hist": multistep
history}); pass back what a step returned.  Each method is registered in SOLVERS:

    name            order  NFE/step  book                 name            order  NFE/step  book
    ddpm (SDE)        1       1      §2.2.6, §4.5.3       dpm_solver_1      1       1      §9.4
    euler_maruyama    1       1      §4.2                 dpm_solver_2      2       2      §9.4
    gamma_sde         1       1      §6.4                 dpm_solver_3      3       3      §9.4
    euler             1       1      §4.2                 deis (order=1-3)  3       1      §9.3
    heun              2       2      §9.4.5               dpmpp_2s          2       2      §9.5
    rk4               4       4      -                    dpmpp_2m          2       1      §9.5
    ddim (eta)        1       1      §9.2                 dpmpp_3m          3       1      §9.5
    edm (churn)       2       2      Karras Alg. 2        dop853 (reference) 8   adaptive

    for rec in sample(model, x_T, grid, method="dpmpp_2m"):   # StepRecord(i, t, x, x0_pred, nfe)
        ...
    xs = trajectory(model, x_T, grid, method="ddim", eta=0.5, generator=g)   # (n+1, B, *D)
    x0 = solve(model, x_T, time_grid(model.schedule, 10, "lambda"), method="dpm_solver_2")

`model` is any param.Model (or MixtureModel): samplers only call model.predict(x, t, kind)
and read model.schedule.  Coefficients are float64; x keeps its dtype and device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from . import fast_solvers as fs
from .dynamics import gamma_sde_step
from .fast_solvers import coefficients, new_state, x0_eps
from .grids import time_grid
from .param import convert
from .utils import check_choice, check_x

__all__ = ["Solver", "StepRecord", "SOLVERS", "ddpm_step", "euler_maruyama_step", "euler_step", "heun_step",
           "rk4_step", "ddim_step", "reference_step", "sample", "trajectory", "solve", "check_grid",
           "steps_for_nfe"]


def _randn(x, generator):
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


# -- stochastic samplers ------------------------------------------------------------------------------
def ddpm_step(model, x, s, t, *, state=None, generator=None):
    """Ancestral DDPM step for any schedule: sample the posterior with x0 replaced by x0_hat (§2.2.6, §4.5.3).

    x_t = (alpha_{s|t} sigma_t^2/sigma_s^2) x_s + (alpha_t sigma_{s|t}^2/sigma_s^2) x0_hat
          + (sigma_{s|t} sigma_t/sigma_s) z,   with schedule.posterior(s, t) (from s to t).
    """
    state = new_state(state)
    c_s, c_0, std = (float(v) for v in model.schedule.posterior(float(s), float(t)))
    x0, _ = x0_eps(model, x, s, state)
    return c_s * x + c_0 * x0 + std * _randn(x, generator), state


def euler_maruyama_step(model, x, s, t, *, state=None, generator=None):
    """Euler-Maruyama on Anderson's reverse SDE: x_t = x_s - [f x - g^2 s*](s - t) + g sqrt(s - t) z (§4.2)."""
    return gamma_sde_step(model, x, s, t, state=state, generator=generator, gamma="g")


def ddim_step(model, x, s, t, *, state=None, generator=None, eta: float = 0.0):
    """DDIM with stochasticity eta, in its variational form (§9.2.1, §9.2.3).

    x_t = alpha_t x0_hat + sqrt(sigma_t^2 - c^2) eps_hat + c z,   c = eta sigma_{s|t} sigma_t / sigma_s.
    eta = 0: deterministic DDIM (= DPM-Solver-1); eta = 1: c is the posterior std, i.e. ancestral DDPM.
    Substituting x0_hat = (x_s - sigma_s eps_hat)/alpha_s gives the book's form
    x_t = (alpha_t/alpha_s) x_s + (sqrt(sigma_t^2 - c^2) - alpha_t sigma_s/alpha_s) eps_hat + c z;
    the form above also works from alpha_s = 0.  (The book's c = eta (sigma_s/sigma_t) sigma_{t|s}
    mixes up indices, see the study map's gotcha 4; this is the safe form.)
    """
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    state = new_state(state)
    a_t, sig_t, _ = coefficients(model.schedule, t)
    x0, eps = x0_eps(model, x, s, state)
    c = eta * float(model.schedule.posterior(float(s), float(t))[2]) if eta > 0 else 0.0
    x_t = a_t * x0 + math.sqrt(max(sig_t ** 2 - c ** 2, 0.0)) * eps
    return (x_t + c * _randn(x, generator) if c > 0 else x_t), state


# -- PF-ODE on the velocity (classical Runge-Kutta in t) ------------------------------------------------
def _velocity(model, x, t, state=None):
    v = model.predict(x, float(t), "velocity")
    if state is not None:
        try:
            state["x0"] = convert(model.schedule, x, float(t), v, "velocity", "x0")
        except ValueError:
            state["x0"] = None
    return v


def euler_step(model, x, s, t, *, state=None, generator=None):
    """Euler on the PF-ODE: x_t = x_s + (t - s) v*(x_s, s) (§4.2, Eq. 4.2.6)."""
    state = new_state(state)
    return x + (t - s) * _velocity(model, x, s, state), state


def heun_step(model, x, s, t, *, state=None, generator=None):
    """Heun (explicit trapezoid) on the PF-ODE: predictor x' = x + dt v(x, s), then dt (v(x, s) + v(x', t))/2."""
    state, dt = new_state(state), t - s
    v1 = _velocity(model, x, s, state)
    v2 = _velocity(model, x + dt * v1, t)
    return x + 0.5 * dt * (v1 + v2), state


def rk4_step(model, x, s, t, *, state=None, generator=None):
    """Classical fourth-order Runge-Kutta on the PF-ODE dx/dt = v*(x, t)."""
    state, dt = new_state(state), t - s
    k1 = _velocity(model, x, s, state)
    k2 = _velocity(model, x + 0.5 * dt * k1, s + 0.5 * dt)
    k3 = _velocity(model, x + 0.5 * dt * k2, s + 0.5 * dt)
    k4 = _velocity(model, x + dt * k3, t)
    return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4), state


def reference_step(model, x, s, t, *, state=None, generator=None, rtol: float = 1e-10, atol: float = 1e-10):
    """Adaptive high-accuracy PF-ODE solve from s to t with scipy's DOP853 (order 8): the reference.

    Works in either direction (t > s encodes).  The model sees x's dtype; scipy works in float64.
    """
    from scipy.integrate import solve_ivp

    state, shape = new_state(state), x.shape

    def rhs(tau, y):
        xt = torch.from_numpy(y).reshape(shape).to(device=x.device, dtype=x.dtype)
        return model.predict(xt, float(tau), "velocity").detach().double().cpu().numpy().ravel()

    sol = solve_ivp(rhs, (float(s), float(t)), x.detach().double().cpu().numpy().ravel(), method="DOP853",
                    rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"reference PF-ODE solve failed: {sol.message}")
    state["x0"] = None
    return torch.from_numpy(sol.y[:, -1].copy()).reshape(shape).to(device=x.device, dtype=x.dtype), state


# -- registry ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Solver:
    """A registered method: its step function, global order, NFE per step (None: adaptive)."""

    name: str
    step: Callable
    order: int
    nfe_per_step: int | None
    stochastic: bool = False
    multistep: bool = False
    book: str = ""


SOLVERS: dict[str, Solver] = {s.name: s for s in [
    Solver("ddpm", ddpm_step, 1, 1, stochastic=True, book="§2.2.6, §4.5.3"),
    Solver("euler_maruyama", euler_maruyama_step, 1, 1, stochastic=True, book="§4.2"),
    Solver("gamma_sde", gamma_sde_step, 1, 1, stochastic=True, book="§6.4"),
    Solver("euler", euler_step, 1, 1, book="§4.2"),
    Solver("heun", heun_step, 2, 2, book="§9.4.5"),
    Solver("rk4", rk4_step, 4, 4),
    Solver("ddim", ddim_step, 1, 1, book="§9.2"),
    Solver("dpm_solver_1", fs.dpm_solver_1_step, 1, 1, book="§9.4"),
    Solver("dpm_solver_2", fs.dpm_solver_2_step, 2, 2, book="§9.4"),
    Solver("dpm_solver_3", fs.dpm_solver_3_step, 3, 3, book="§9.4"),
    Solver("deis", fs.deis_step, 3, 1, multistep=True, book="§9.3"),
    Solver("dpmpp_2s", fs.dpmpp_2s_step, 2, 2, book="§9.5"),
    Solver("dpmpp_2m", fs.dpmpp_2m_step, 2, 1, multistep=True, book="§9.5"),
    Solver("dpmpp_3m", fs.dpmpp_3m_step, 3, 1, multistep=True, book="§9.5, §9.6.2"),
    Solver("edm", fs.edm_step, 2, 2, book="Karras et al. 2022, Alg. 2"),
    Solver("dop853", reference_step, 8, None, book="reference"),
]}


def steps_for_nfe(method: str, nfe: int) -> int:
    """The number of steps that spends at most `nfe` evaluations with `method` (at least 1)."""
    check_choice(method, SOLVERS, "method")
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe must be an int >= 1, got {nfe!r}")
    per = SOLVERS[method].nfe_per_step
    if per is None:
        raise ValueError(f"method {method!r} is adaptive; it has no fixed NFE per step")
    if nfe < per:
        raise ValueError(f"nfe={nfe} is below the {per} evaluations one {method!r} step needs")
    return nfe // per


def check_grid(grid) -> list[float]:
    """Validate a descending time grid (n+1,) in [0, 1] with n >= 1 and return it as floats."""
    g = torch.as_tensor(grid, dtype=torch.float64)
    if g.dim() != 1 or g.numel() < 2:
        raise ValueError(f"grid must be a 1-d sequence of at least 2 times (steps >= 1), got shape {tuple(g.shape)}")
    if not torch.isfinite(g).all() or (g < 0).any() or (g > 1).any():
        raise ValueError("grid times must lie in [0, 1] (t = 0 is data, t = 1 is noise)")
    if not (g[1:] < g[:-1]).all():
        raise ValueError("grid must be strictly descending: t_0 (noisiest) > t_1 > ... > t_n (cleanest)")
    return g.tolist()


class _Counted:
    """Wraps a model to count network evaluations (NFE) and to pass a fixed class label c."""

    def __init__(self, model, c=None):
        self.model, self.schedule, self.c, self.nfe = model, model.schedule, c, 0
        self.kind = getattr(model, "kind", "eps")

    def predict(self, x, t, kind="eps", c=None):
        self.nfe += 1
        return self.model.predict(x, t, kind, self.c if c is None else c)


@dataclass
class StepRecord:
    """One point of a sampling run: step index i, time t, state x (B, *D), the data prediction
    used to leave the previous time (None at i = 0), and the NFE spent so far."""

    i: int
    t: float
    x: torch.Tensor
    x0_pred: torch.Tensor | None
    nfe: int


def sample(model, x_T: torch.Tensor, grid, method: str = "dpmpp_2m", *, denoise: bool = False, c=None,
           generator: torch.Generator | None = None, **opts) -> Iterator[StepRecord]:
    """Run `method` along a descending grid, yielding a StepRecord at every grid time (n+1 records).

    Args:
        model: a Model.  x_T: (B, *D) start at grid[0].  grid: (n+1,) descending times, or an int n
            for time_grid(model.schedule, n) (uniform, ending at schedule.t_eps).
        method: a name in SOLVERS.  denoise: replace the last x by x0_hat(x, t_n) (one more NFE).
        c: optional class label passed to the model.  opts: method options (eta, order, churn, gamma, ...).
    """
    check_choice(method, SOLVERS, "method")
    check_x(x_T, "x_T")
    ts = check_grid(time_grid(model.schedule, grid) if isinstance(grid, int) else grid)
    counted, solver, state, x = _Counted(model, c), SOLVERS[method], None, x_T
    yield StepRecord(0, ts[0], x, None, 0)
    for i, (s, t) in enumerate(zip(ts[:-1], ts[1:]), start=1):
        x, state = solver.step(counted, x, s, t, state=state, generator=generator, **opts)
        if denoise and i == len(ts) - 1:
            x = x0_eps(counted, x, t)[0]
        yield StepRecord(i, t, x, state["x0"], counted.nfe)


def trajectory(model, x_T: torch.Tensor, grid, method: str = "dpmpp_2m", **kw) -> torch.Tensor:
    """All states of a run stacked time-major: (n+1, B, *D)."""
    return torch.stack([rec.x for rec in sample(model, x_T, grid, method, **kw)])


def solve(model, x_T: torch.Tensor, grid, method: str = "dpmpp_2m", **kw) -> torch.Tensor:
    """The final state x_{t_n} of a run, (B, *D)."""
    rec = None
    for rec in sample(model, x_T, grid, method, **kw):
        pass
    return rec.x
