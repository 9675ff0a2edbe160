"""Descending time grids t_0 = t_max > t_1 > ... > t_n = t_min for samplers (§9.4, App. D.6).

Which spacing samples best depends on the schedule (what t means differs between them):
`default_spacing(schedule)` is the measured best for DPM-Solver++(2M) with lower-order final
steps on exact Gaussian-mixture fields at NFE 5-20 (benchmarks/solvers.py): 'quadratic' for
variance-preserving linear-beta schedules (VP, discrete DDPM), 'lambda' for EDM, 'uniform' for
the rest (cosine, VE, rectified flow, trig).
"""
from __future__ import annotations

import torch

from .schedules import Schedule
from .utils import check_choice

GRIDS = ("uniform", "lambda", "edm", "quadratic")
DEFAULT_SPACING = {"vp": "quadratic", "discrete": "quadratic", "edm": "lambda"}
__all__ = ["GRIDS", "DEFAULT_SPACING", "default_spacing", "time_grid"]


def default_spacing(schedule: Schedule) -> str:
    """The grid kind samplers use for `schedule` when none is named.

    A schedule's own `default_spacing` attribute wins; else DEFAULT_SPACING by schedule name; else
    'uniform' (the one kind defined for every schedule, also where alpha_1 = 0).
    """
    kind = getattr(schedule, "default_spacing", None) or DEFAULT_SPACING.get(getattr(schedule, "name", ""), "uniform")
    return check_choice(kind, GRIDS, "time grid")


def time_grid(schedule: Schedule, n: int, kind: str = "uniform", *, t_min: float | None = None,
              t_max: float = 1.0, rho: float = 7.0) -> torch.Tensor:
    """Return n + 1 descending times in float64, shape (n+1,).

    uniform:   equal steps in t: t_i = t_max + (i/n) (t_min - t_max).
    lambda:    equal steps in log-SNR lambda_t = log(alpha_t / sigma_t) (DPM-Solver, §9.4.3):
               lambda_i = lambda_{t_max} + (i/n) (lambda_{t_min} - lambda_{t_max}).
    edm:       Karras et al.'s rho-spacing of the noise-to-signal ratio r_t = sigma_t / alpha_t = exp(-lambda_t):
               r_i = (r_max^(1/rho) + (i/n) (r_min^(1/rho) - r_max^(1/rho)))^rho (for EDM, sigma_i itself).
    quadratic: t_i = t_min + (t_max - t_min) (1 - i/n)^2 (fine steps near the data, as in DDIM).
    Args:
        schedule: the Schedule.  n: number of steps (>= 1).  kind: one of GRIDS.
        t_min: the last time (default schedule.t_eps).  t_max: the first time (default 1).
        rho: the edm grid's exponent.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n (number of steps) must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n (number of steps) must be >= 1, got {n}")
    check_choice(kind, GRIDS, "time grid")
    t_min = schedule.t_eps if t_min is None else float(t_min)
    if not (0 <= t_min < t_max <= 1):
        raise ValueError(f"need 0 <= t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}")
    u = torch.linspace(0, 1, n + 1, dtype=torch.float64)  # 0 .. 1 from noisy to clean
    if kind in ("uniform", "quadratic"):
        t = t_max + u * (t_min - t_max) if kind == "uniform" else t_min + (t_max - t_min) * (1 - u) ** 2
        t[0], t[-1] = t_max, t_min
        return t
    lam_hi, lam_lo = schedule.lam(t_min), schedule.lam(t_max)
    if not (torch.isfinite(lam_hi) and torch.isfinite(lam_lo)):
        raise ValueError(f"the {kind!r} grid needs finite log-SNR at both ends: choose t_min > 0 and "
                         f"t_max where alpha_t > 0 (for schedule {schedule.name!r} try t_max < 1)")
    if kind == "lambda":
        lam = lam_lo + u * (lam_hi - lam_lo)
    else:
        if rho <= 0:
            raise ValueError(f"rho must be > 0, got {rho}")
        r_max, r_min = torch.exp(-lam_lo), torch.exp(-lam_hi)  # noise-to-signal ratios
        r = (r_max ** (1 / rho) + u * (r_min ** (1 / rho) - r_max ** (1 / rho))) ** rho
        lam = -torch.log(r)
    t = schedule.inv_lam(lam)
    t[0], t[-1] = t_max, t_min  # exact end points
    return t
