"""Rectified flow and reflow (Ch. 5, §5.4): couplings from a model's flow map, straightness, crossings.

Course convention (t = 0 data, t = 1 noise): a transport model's source plays the noise end, so
x_t = (1 - t) x_target + t x_source, and the flow runs from the source at t = 1 to the target at t = 0.
(The book's Ch. 5 puts the source at t = 0; with tau = 1 - t its velocity is minus ours.)

    couple(model, x_source)    the model's coupling (x_source, Phi_{1->0}(x_source)) (Algorithm Rectify)
    paired_cfm(schedule)       the reflow loss ||v(x_t, t) - (x_source - x_target)||^2 on given pairs
    straightness(path)         S = int_0^1 E||(y_end - y_start) - dy/dt||^2 dt (§5.4, property II)
    chord_arc(path)            E[ chord length / arc length ] (1 = straight)
    swappable_pairs(a, b)      the fraction of pairs cheaper swapped (1-D: paths cross); 0 for OT
    crossings(a, b)            its older name

Reflow rounds themselves (train on a coupling, re-couple, repeat) live in dpm_lab.recipes.flows.
"""
from __future__ import annotations

import torch

from .grids import time_grid
from .losses import cfm
from .samplers import trajectory
from .schedules import Schedule
from .utils import check_x

__all__ = ["flow_grid", "flow_path", "couple", "paired_cfm", "straightness", "chord_arc", "swappable_pairs", "crossings"]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def flow_grid(model, n_steps: int) -> list[float]:
    """n_steps + 1 uniform times from 1 (source) down to exactly 0 (target)."""
    return time_grid(model.schedule, _positive_int(n_steps, "n_steps"), "uniform", t_min=0.0).tolist()


def flow_path(model, x_source: torch.Tensor, n_steps: int = 32, method: str = "rk4") -> torch.Tensor:
    """The model's ODE path from the source (t = 1) to the target (t = 0): (n_steps + 1, B, D)."""
    check_x(x_source, "x_source")
    with torch.no_grad():
        return trajectory(model, x_source, flow_grid(model, n_steps), method)


def couple(model, x_source: torch.Tensor, n_steps: int = 32, method: str = "rk4") -> tuple[torch.Tensor, torch.Tensor]:
    """Rectify's coupling (x_source, Phi_{1->0}(x_source)) from the model's flow map (RK4 by default)."""
    return x_source, flow_path(model, x_source, n_steps, method)[-1]


def paired_cfm(schedule: Schedule | None = None):
    """Reflow's loss on a given coupling: loss(model, x_target, x_source, *, generator) -> (B,)
    = ||v(x_t, t) - (x_source - x_target)||^2 with x_t = (1 - t) x_target + t x_source, t ~ U(0, 1).

    The pair rides in train.fit's label slot: fit on the tuple (x_target, x_source)."""
    base = cfm(schedule)

    def loss(model, x0: torch.Tensor, c: torch.Tensor | None = None, *, generator=None) -> torch.Tensor:
        if c is None or c.shape != x0.shape:
            raise ValueError("paired_cfm needs the paired source points (same shape as x0) in the label slot")
        return base(model, x0, eps=c, generator=generator)

    return loss


def _check_path(path: torch.Tensor) -> torch.Tensor:
    if not isinstance(path, torch.Tensor) or path.ndim < 3 or path.shape[0] < 2:
        raise ValueError(f"path must be a tensor (n+1, B, D) with n >= 1 steps, got "
                         f"{tuple(path.shape) if isinstance(path, torch.Tensor) else type(path).__name__}")
    if not torch.isfinite(path).all():
        raise ValueError("path has NaN or inf entries")
    return path.flatten(2)


def straightness(path: torch.Tensor) -> float:
    """The book's straightness S(Y) = int_0^1 E||(y_1 - y_0) - dy_t/dt||^2 dt (§5.4, property II), 0 when straight.

    path: (n+1, B, D) states on a uniform time grid over a unit interval (either direction: S does not
    depend on it); dy/dt on step k is n (y_{k+1} - y_k), so S = (1/n) sum_k E||chord - n (y_{k+1} - y_k)||^2.
    """
    p = _check_path(path)
    n = p.shape[0] - 1
    chord = p[-1] - p[0]
    speed = n * (p[1:] - p[:-1])
    return float(((speed - chord) ** 2).sum(-1).mean())


def chord_arc(path: torch.Tensor) -> float:
    """E[ ||y_1 - y_0|| / sum_k ||y_{k+1} - y_k|| ] over paths with a non-zero arc (1: straight), (n+1, B, D)."""
    p = _check_path(path)
    arc = (p[1:] - p[:-1]).norm(dim=-1).sum(0)
    chord = (p[-1] - p[0]).norm(dim=-1)
    keep = arc > 1e-12
    return float((chord[keep] / arc[keep]).mean()) if keep.any() else 1.0


def swappable_pairs(x_start: torch.Tensor, x_end: torch.Tensor) -> float:
    """The fraction of pairs (i < j) of a coupling that are cheaper swapped: <d_start, d_end> < 0 with
    d = x_i - x_j at the start and at the end.  (`crossings` is the same function under its older name.)

    In 1-D this is exactly "the two paths cross"; in 2-D and above two such paths need not meet at all,
    so the honest name is *swappable pairs*.  In any dimension such a pair would be cheaper swapped
    (||x_i - y_i||^2 + ||x_j - y_j||^2 > ||x_i - y_j||^2 + ||x_j - y_i||^2 is the same inequality), so the
    quadratic-cost OT coupling has none (cyclical monotonicity); independent pairs have about half.  Uses all
    pairs: keep B below a few thousand.  Args: x_start, x_end (B, *D).
    """
    a, b = check_x(x_start, "x_start"), check_x(x_end, "x_end")
    for v, name in ((a, "x_start"), (b, "x_end")):
        if not torch.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or inf: the swappable-pair count needs finite points")
    if a.shape != b.shape:
        raise ValueError(f"x_start and x_end must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2:
        raise ValueError(f"swappable_pairs needs at least two pairs, got {a.shape[0]}")
    a, b = a.flatten(1).double(), b.flatten(1).double()
    i, j = torch.triu_indices(a.shape[0], a.shape[0], 1)
    return float((((a[i] - a[j]) * (b[i] - b[j])).sum(1) < 0).double().mean())


crossings = swappable_pairs          # the older name (exact in 1-D only)
