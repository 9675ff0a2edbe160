"""Descending time grids t_0 = t_max > t_1 > ... > t_n = t_min for samplers (§9.4, App. D.6)."""
from __future__ import annotations

import torch

from .schedules import Schedule
from .utils import check_choice

GRIDS = ("uniform", "lambda", "edm", "quadratic")
__all__ = ["GRIDS", "time_grid"]


def time_grid(schedule: Schedule, n: int, kind: str = "uniform", *, t_min: float | None = None,
              t_max: float = 1.0, rho: float = 7.0) -> torch.Tensor:
    """Return n + 1 descending times in float64.

    uniform:   equal steps in t.
    lambda:    equal steps in log-SNR lambda_t = log(alpha_t / sigma_t) (DPM-Solver, §9.4.3).
    edm:       Karras et al.'s rho-spacing of the noise-to-signal ratio sigma_t / alpha_t = exp(-lambda_t)
               (for EDM this is sigma_i = (s_max^(1/rho) + i/n (s_min^(1/rho) - s_max^(1/rho)))^rho).
    quadratic: t_i = t_min + (t_max - t_min) (1 - i/n)^2 (fine steps near the data, as in DDIM).
    Args:
        n: number of steps (>= 1); t_min defaults to schedule.t_eps.
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
