"""2D toy datasets: one API, tensors out, `generator=` in.

    x = dl.datasets.sample_2d("moons", 1000, generator=g)        # (1000, 2) float32
    x0, x1 = dl.datasets.ring_pair(1000, generator=g)            # source / target rings (§5.4)

Eight Gaussians also exists as an exact GaussianMixture (`eight_gaussians_mixture()`).
"""
from __future__ import annotations

import math

import torch

from .gmm import GaussianMixture
from .utils import check_choice, rand, randint, randn

__all__ = ["TOY_SETS", "sample_2d", "eight_gaussians_mixture", "ring_pair", "ring_mixture"]


def _randn(n, g, d=2):
    return randn((n, d), generator=g, dtype=torch.float64)


def _rand(n, g, d=1):
    return rand((n, d), generator=g, dtype=torch.float64)


def eight_gaussians_mixture(radius: float = 2.0, std: float = 0.2) -> GaussianMixture:
    """Eight equal isotropic Gaussians on a circle, as an exact mixture (labels = component)."""
    ang = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = radius * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    return GaussianMixture(torch.full((8,), 1 / 8), means, stds=std, labels=torch.arange(8))


def ring_mixture(n_modes: int = 8, radius: float = 4.0, std: float = 0.16, phase: float = 0.0) -> GaussianMixture:
    """n_modes isotropic Gaussians evenly spaced on a circle (the rings of the reflow demos)."""
    ang = phase + torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    means = radius * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    return GaussianMixture(torch.full((n_modes,), 1 / n_modes), means, stds=std, labels=torch.arange(n_modes))


def _eight_gaussians(n, g):
    return eight_gaussians_mixture().sample(n, generator=g, dtype=torch.float64)


def _moons(n, g):
    # two interleaved half circles, scaled by 2 and shifted down by 0.5, with noise 0.1
    upper = _rand(n, g)[:, 0] < 0.5
    th = math.pi * _rand(n, g)[:, 0]
    x = torch.where(upper, torch.cos(th), 1 - torch.cos(th))
    y = torch.where(upper, torch.sin(th), 0.5 - torch.sin(th))
    pts = torch.stack([x - 0.5, y - 0.25], 1) * 2 + 0.1 * _randn(n, g)
    return pts


def _swiss_roll(n, g):
    u = 1.5 * math.pi * (1 + 2 * _rand(n, g)[:, 0])
    pts = torch.stack([u * torch.cos(u), u * torch.sin(u)], 1) / 5.0
    return pts + 0.1 * _randn(n, g)


def _checkerboard(n, g):
    # uniform on the 8 black squares of a 4x4 board spanning [-2, 2]^2
    cell = randint(0, 8, (n,), generator=g)
    row = cell // 2
    col = 2 * (cell % 2) + (row % 2)
    return torch.stack([col, row], 1).double() - 2 + _rand(n, g, 2)


def _rings(n, g):
    ring = randint(0, 4, (n,), generator=g)
    radius = torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=torch.float64, device=ring.device)[ring]
    th = 2 * math.pi * _rand(n, g)[:, 0]
    return radius[:, None] * torch.stack([torch.cos(th), torch.sin(th)], 1) + 0.05 * _randn(n, g)


def _spirals(n, g):
    arm = (_rand(n, g)[:, 0] < 0.5).double()
    r = torch.sqrt(_rand(n, g)[:, 0]) * 3 * math.pi
    th = r + math.pi * arm
    pts = torch.stack([r * torch.cos(th), r * torch.sin(th)], 1) / 4.0
    return pts + 0.08 * _randn(n, g)


_MAKERS = {"eight_gaussians": _eight_gaussians, "moons": _moons, "swiss_roll": _swiss_roll,
           "checkerboard": _checkerboard, "rings": _rings, "spirals": _spirals}
TOY_SETS = tuple(_MAKERS)


def sample_2d(name: str, n: int, *, generator: torch.Generator | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Draw n points (n, 2) from a named 2D toy set: eight_gaussians, moons, swiss_roll,
    checkerboard, rings (concentric), spirals."""
    check_choice(name, _MAKERS, "toy dataset")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return _MAKERS[name](n, generator).to(dtype)


def ring_pair(n: int, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32):
    """Source and target of the ring-to-ring transport demo (§5.4, §7): 8 modes on a circle of
    radius 4 (std 0.16) and 8 modes on a circle of radius 1.1 (std 0.11) rotated by half a mode.

    Returns (x_source, x_target), each (n, 2), drawn independently.
    """
    src = ring_mixture(8, 4.0, 0.16).sample(n, generator=generator, dtype=dtype)
    tgt = ring_mixture(8, 1.1, 0.11, phase=math.pi / 8).sample(n, generator=generator, dtype=dtype)
    return src, tgt
