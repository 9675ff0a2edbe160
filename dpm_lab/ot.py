"""Optimal transport (Ch. 7 and Ch. 5's reference): exact discrete couplings between point clouds.

For two clouds of n points each with equal weights, the quadratic-cost OT plan is a permutation
(Birkhoff): pi* = argmin_perm (1/n) sum_i ||x_i - y_perm(i)||^2, found exactly by the Hungarian
algorithm (scipy's linear_sum_assignment, O(n^3): fine up to a few thousand points).  Its straight-line
interpolation x_t = (1 - t) x_i + t y_perm(i) is McCann's displacement interpolation: no two paths meet at
the same time (cyclical monotonicity), which is why its flow is straight (Ch. 7, §7.2).
"""
from __future__ import annotations

import torch

from .utils import check_x

__all__ = ["ot_permutation", "ot_coupling", "transport_cost"]


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = check_x(x, "x"), check_x(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape (n, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("x and y must be finite (no NaN or inf)")
    return x.flatten(1), y.flatten(1)


def ot_permutation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The exact quadratic-cost OT assignment: perm (n,) with (x_i, y_perm[i]) optimal (Hungarian algorithm).

    Args: x (n, *D), y (n, *D), equal sizes and equal weights.  Returns a long tensor on x's device.
    """
    from scipy.optimize import linear_sum_assignment

    a, b = _pair(x, y)
    cost = torch.cdist(a.double().cpu(), b.double().cpu()) ** 2
    rows, cols = linear_sum_assignment(cost.numpy())
    perm = torch.empty(a.shape[0], dtype=torch.long)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return perm.to(x.device)


def ot_coupling(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The OT-coupled pairs (x, y[perm]) of two equal-size clouds (see ot_permutation)."""
    return x, y[ot_permutation(x, y)]


def transport_cost(x: torch.Tensor, y: torch.Tensor) -> float:
    """The cost E||y - x||^2 of the coupling that pairs x_i with y_i, (1/n) sum_i ||y_i - x_i||^2."""
    a, b = _pair(x, y)
    return float(((b - a) ** 2).sum(1).mean())
