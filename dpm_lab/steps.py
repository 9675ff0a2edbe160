"""The sampling socket: the contract every sampler step shares, and the Solver object the driver runs (Ch. 2, 4, 9).

Every method of the sampling layer is one function with one signature,

    x_t, state = step(model, x_s, s, t, *, state=None, generator=None, **opts)

that moves x (B, *D) from the noisier time s to the cleaner time t < s (floats in [0, 1]; t = 0 is
data, t = 1 noise).  What every step does the same way lives here:

  * times:        `check_times(s, t, method)`: floats in [0, 1] with s > t (every step runs backward,
                  from the noisier s to the cleaner t; a pair in the wrong order raises);
  * coefficients: `coeffs(schedule, t)` = schedule.coeffs(t).floats(), float64 Python floats with
                  extended-real limits at the end points (lam = -inf where alpha = 0, +inf where
                  sigma = 0); `begin(...)` does the time check, both reads and the state at once;
  * the model:    `x0_eps(model, x, t, state)` is ONE model call giving (x0_hat, eps_hat) (§6.3.1),
                  `velocity(model, x, t, state)` one call giving the PF-ODE drift; both record the
                  data prediction in state["x0"];
  * noise:        `noise(x, generator)` = utils.randn_like: drawn on the generator's device, then
                  moved, so a CPU generator gives the same numbers for CPU and CUDA tensors;
  * state:        an explicit dict {"x0": last data prediction, "hist": multistep history} that the
                  step reads and returns (`new_state`); nothing is hidden in globals;
  * errors:       `need(cond, what, method)` raises a ValueError naming the method and the end point
                  of the schedule it cannot handle.

`Solver` packs a step function with what the driver (`samplers.sample`) needs to know: its
order, its NFE per step, whether it is stochastic or multistep, and optionally a per-step
option plan (lower-order final steps, order schedules).  Any later chapter's sampler (a one-step
distilled student, a flow map Psi(x, s, t), annealed Langevin, predictor-corrector) is a Solver
and runs through the same driver.

This module sits at the bottom of the sampling layer: it imports only the math core.
"""
from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from .param import convert, to_x0_eps
from .schedules import Coeffs, Schedule
from .utils import randn_like

__all__ = ["FieldModel", "StepFn", "Solver", "as_solver", "check_times", "coeffs", "begin", "need", "new_state",
           "x0_eps", "velocity", "noise", "time_at_lam"]

StepFn = Callable[..., "tuple[torch.Tensor, dict]"]
PlanFn = Callable[[int, dict], "list[dict]"]
CostFn = Callable[[dict], int]


@runtime_checkable
class FieldModel(Protocol):
    """What a step needs from a model: its schedule and predict(x_t, t, kind) for kind in param.KINDS."""

    schedule: Schedule

    def predict(self, x_t: torch.Tensor, t: Any, kind: str = "eps", c: Any = None) -> torch.Tensor: ...


# -- times and coefficients -----------------------------------------------------------------------------
def _scalar_time(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a float time in [0, 1], got a bool")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"a step takes scalar times; {name} has shape {tuple(value.shape)}")
        value = value.item()
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float time in [0, 1], got {type(value).__name__}")
    out = float(value)
    if not 0.0 <= out <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1] (t = 0 is data, t = 1 is noise), got {out}")
    return out


def check_times(s: Any, t: Any, method: str) -> tuple[float, float]:
    """Validate a step's time pair "from s to t" and return it as floats: both in [0, 1], s > t.

    A sampler step runs backward, from the noisier s to the cleaner t (encoding forward in time is
    dynamics.pf_ode_solve, not a step).
    """
    s, t = _scalar_time(s, "s"), _scalar_time(t, "t")
    if not s > t:
        raise ValueError(f"{method} runs from the noisier time s to a cleaner t < s; got s={s}, t={t}")
    return s, t


_CACHE_SIZE = 4096   # scalar times remembered per schedule (schedules are not changed after construction)


def coeffs(schedule: Schedule, t: float) -> Coeffs:
    """Every schedule coefficient at the scalar time t as float64 Python floats: schedule.coeffs(t).floats().

    alpha, sigma, d_alpha, d_sigma2, d_sigma, lam = log(alpha/sigma), d_lam, f, g2; at the end points
    the diverging ones hold their extended-real limits (lam = -inf where alpha = 0, +inf where sigma = 0).
    """
    t = float(t)
    cache = schedule.__dict__.setdefault("_step_coeffs", {})   # a grid's times repeat across steps and runs
    if t not in cache:
        if len(cache) >= _CACHE_SIZE:
            cache.clear()
        cache[t] = schedule.coeffs(t).floats()
    return cache[t]


def begin(model: FieldModel, s: Any, t: Any, state: dict | None, method: str) -> tuple[Coeffs, Coeffs, dict]:
    """The start of every step: check the times, read the coefficients at s and t, open the state.

    Returns (coefficients at s, coefficients at t, state).
    """
    s, t = check_times(s, t, method)
    return coeffs(model.schedule, s), coeffs(model.schedule, t), new_state(state)


def time_at_lam(schedule: Schedule, lam: float) -> float:
    """The time t with lambda_t = lam (schedule.inv_lam), as a float: midpoints of steps in log-SNR (§9.4)."""
    return float(schedule.inv_lam(torch.tensor(float(lam), dtype=torch.float64)))


def need(cond: bool, what: str, method: str, hint: str | None = None) -> None:
    """Raise a ValueError saying which end point of the schedule `method` cannot handle.

    The default hint covers the two end points: alpha_1 = 0 (flow, cosine, trig at t = 1) defeats
    noise-form updates, sigma_0 = 0 defeats updates that divide by sigma.
    """
    if not cond:
        hint = hint or ("start below t = 1 where alpha_1 = 0 (or use a data-prediction or velocity solver "
                        "such as dpmpp_2m, ddim or euler) and end at t > 0 (grids end at schedule.t_eps)")
        raise ValueError(f"{method} needs {what}; {hint}")


def new_state(state: dict | None) -> dict:
    """The explicit solver state: {'x0': the last data prediction (or None), 'hist': multistep history}.

    A step returns the state it was given (or a fresh one for state=None); pass it to the next step.
    """
    if state is None:
        return {"x0": None, "hist": []}
    if not isinstance(state, dict):
        raise TypeError(f"state must be None or the dict a previous step returned, got {type(state).__name__}")
    state.setdefault("x0", None)
    state.setdefault("hist", [])
    return state


# -- one model call ---------------------------------------------------------------------------------------
def x0_eps(model: FieldModel, x: torch.Tensor, t: float, state: dict | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """One model call -> (x0_hat, eps_hat) at (x, t), tied by x = alpha_t x0_hat + sigma_t eps_hat (§6.3.1).

    Where alpha_t = 0 (t = 1 for flow, cosine, trig) x_t carries no data and eps = x/sigma_t, so an
    eps- or score-model is asked for x0 directly (exact models can answer; a network says clearly
    that it cannot).  Stores x0_hat in state['x0'] when a state is given.
    Args:
        model: a FieldModel.  x: (B, *D).  t: a float time.
    Returns:
        (x0_hat, eps_hat), each (B, *D).
    """
    kind = getattr(model, "kind", "eps")
    if kind in ("eps", "score") and coeffs(model.schedule, t).alpha == 0:
        kind = "x0"
    value = model.predict(x, float(t), kind)
    x0, eps = to_x0_eps(model.schedule, x, float(t), value, kind)
    if state is not None:
        state["x0"] = x0
    return x0, eps


def velocity(model: FieldModel, x: torch.Tensor, t: float, state: dict | None = None) -> torch.Tensor:
    """One model call -> the PF-ODE drift v(x, t) = alpha_t' x0_hat + sigma_t' eps_hat (§4.1.4, §6.3.1), (B, *D).

    Records x0_hat in state['x0'] where it is defined (None where the conversion is singular).
    """
    v = model.predict(x, float(t), "velocity")
    if state is not None:
        try:
            state["x0"] = convert(model.schedule, x, float(t), v, "velocity", "x0")
        except ValueError:
            state["x0"] = None
    return v


def noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal z like x (shape, dtype, device), drawn on the generator's device (utils.randn_like)."""
    return randn_like(x, generator=generator)


# -- the solver object -------------------------------------------------------------------------------------
def _same_options(n: int, opts: dict) -> list[dict]:
    return [dict(opts) for _ in range(n)]


@dataclass(frozen=True)
class Solver:
    """A sampling method the driver can run: its step function and what the driver needs to know about it.

    Fields:
        name: a short name (the registry key for the built-in ones).
        step: step(model, x, s, t, *, state=None, generator=None, **opts) -> (x_t, state), from s to t.
        order: the global order of accuracy of the scheme on a smooth ODE (0 for samplers that do
            not discretise one: a one-step student, Langevin MCMC).
        nfe_per_step: model evaluations of one step with its default options; None where adaptive.
        stochastic: the step draws noise (from `generator`).
        multistep: the step keeps a history in state['hist'].
        book: where the method is in the book.
        plan: optional (n, opts) -> n option dicts, one per step, so a policy that depends on a
            step's place in the run (lower-order final steps, an order schedule) reaches the step;
            by default every step gets the same opts.
        cost: optional (step opts) -> evaluations of one step, for options that change the count
            (a DPM-Solver step of order k, k Langevin steps); by default nfe_per_step.
    """

    name: str
    step: StepFn
    order: int
    nfe_per_step: int | None
    stochastic: bool = False
    multistep: bool = False
    book: str = ""
    plan: PlanFn | None = None
    cost: CostFn | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Solver.name must be a non-empty str, got {self.name!r}")
        if not callable(self.step):
            raise TypeError(f"Solver.step must be callable step(model, x, s, t, *, state, generator, **opts), "
                            f"got {type(self.step).__name__}")
        if isinstance(self.order, bool) or not isinstance(self.order, int) or self.order < 0:
            raise TypeError(f"Solver.order must be an int >= 0, got {self.order!r}")
        nfe = self.nfe_per_step
        if nfe is not None and (isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1):
            raise TypeError(f"Solver.nfe_per_step must be an int >= 1 or None (adaptive), got {nfe!r}")
        for name in ("plan", "cost"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise TypeError(f"Solver.{name} must be callable or None")

    def step_options(self, n: int, **opts: Any) -> list[dict]:
        """The options each of n steps receives: plan(n, opts), or opts for every step."""
        per_step = (self.plan or _same_options)(n, dict(opts))
        if len(per_step) != n:
            raise ValueError(f"solver {self.name!r}: its plan gave {len(per_step)} option sets for {n} steps")
        return per_step

    def nfe(self, n: int, **opts: Any) -> int | None:
        """Model evaluations of a run of n steps with these options (None for an adaptive method)."""
        if self.nfe_per_step is None:
            return None
        if self.cost is None:
            return n * self.nfe_per_step
        return sum(int(self.cost(o)) for o in self.step_options(n, **opts))


_REQUIRED = ("name", "step", "order", "nfe_per_step")


def as_solver(obj: Any) -> Solver:
    """Accept a Solver, or any object with the Solver fields (name, step, order, nfe_per_step and
    optionally stochastic, multistep, book, plan, cost), and return a Solver; else a clear TypeError."""
    if isinstance(obj, Solver):
        return obj
    if isinstance(obj, str):
        raise TypeError(f"{obj!r} is a solver name: names are looked up by samplers.get_solver; pass a Solver here")
    missing = [a for a in _REQUIRED if not hasattr(obj, a)]
    if missing:
        hint = (" (to run a bare step function, wrap it: Solver('mine', step_fn, order=1, nfe_per_step=1))"
                if callable(obj) else "")
        raise TypeError(f"a solver must be a registered name or an object with {', '.join(_REQUIRED)}; "
                        f"got {type(obj).__name__} without {', '.join(missing)}{hint}")
    return Solver(obj.name, obj.step, obj.order, obj.nfe_per_step, stochastic=bool(getattr(obj, "stochastic", False)),
                  multistep=bool(getattr(obj, "multistep", False)), book=str(getattr(obj, "book", "")),
                  plan=getattr(obj, "plan", None), cost=getattr(obj, "cost", None))
