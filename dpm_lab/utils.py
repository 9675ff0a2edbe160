"""Small shared helpers: device choice, seeding, time broadcasting, argument checks."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

Time = float | torch.Tensor


def device() -> torch.device:
    """Return CUDA when it is available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed(n: int) -> torch.Generator:
    """Seed Python, NumPy and torch's global RNGs (for notebooks) and return a fresh generator."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"seed: n must be a non-negative int, got {n!r}")
    random.seed(n)
    np.random.seed(n % 2**32)
    torch.manual_seed(n)
    return torch.Generator().manual_seed(n)


def _draw_device(generator: torch.Generator | None, device) -> torch.device:
    """Where a draw happens: on the generator's device (a CPU generator cannot fill a CUDA tensor)."""
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def randn(shape, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
          device: torch.device | str | None = None) -> torch.Tensor:
    """Standard normal draws of `shape`, made with the caller's generator on its device, then moved to `device`.

    The one noise helper of the package: the same seed gives the same numbers whether the result
    lives on the CPU or on a GPU.
    """
    z = torch.randn(tuple(shape), generator=generator, dtype=dtype, device=_draw_device(generator, device))
    return z if device is None else z.to(device)


def randn_like(x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """randn with x's shape, dtype and device (drawn on the generator's device)."""
    return randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def rand(shape, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
         device: torch.device | str | None = None) -> torch.Tensor:
    """Uniform draws on [0, 1) with the caller's generator on its device, moved to `device`."""
    u = torch.rand(tuple(shape), generator=generator, dtype=dtype, device=_draw_device(generator, device))
    return u if device is None else u.to(device)


def randint(low: int, high: int, shape, *, generator: torch.Generator | None = None,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Integers in [low, high) with the caller's generator on its device, moved to `device`."""
    k = torch.randint(low, high, tuple(shape), generator=generator, device=_draw_device(generator, device))
    return k if device is None else k.to(device)


def multinomial(weights: torch.Tensor, n: int, *, generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """n indices drawn with replacement, P(i) proportional to weights[i], on the generator's device, moved to `device`."""
    dev = _draw_device(generator, None)
    k = torch.multinomial(weights.to(dev), n, replacement=True, generator=generator)
    return k if device is None else k.to(device)


def as_time(t: Time, *, like: torch.Tensor | None = None, name: str = "t",
            check_range: bool = True) -> torch.Tensor:
    """Turn a float, 0-d tensor or (B,) tensor into a float tensor and check 0 <= t <= 1.

    The dtype is float64 unless `like` is given (then `like`'s dtype and device).
    """
    if isinstance(t, bool) or not isinstance(t, (int, float, torch.Tensor, np.floating, np.ndarray)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(t).__name__}")
    dtype = like.dtype if like is not None and like.is_floating_point() else torch.float64
    dev = like.device if like is not None else None
    out = torch.as_tensor(t, dtype=dtype, device=dev)
    if out.dim() > 1:
        raise ValueError(f"{name} must be a scalar or a 1-d tensor of shape (B,), got shape {tuple(out.shape)}")
    if torch.isnan(out).any():
        raise ValueError(f"{name} contains NaN")
    if check_range and ((out < 0).any() or (out > 1).any()):
        bad = out[(out < 0) | (out > 1)].flatten()[0].item()
        raise ValueError(f"{name} must lie in [0, 1] (t = 0 is data, t = 1 is noise), got {bad}")
    return out


def expand_t(c: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-time coefficient (scalar or (B,)) against x of shape (B, *D).

    The one broadcasting helper of the package: a (B,) coefficient becomes (B, 1, ..., 1).
    """
    c = torch.as_tensor(c, device=x.device)
    if c.dim() == 0:
        return c.to(x.dtype) if c.is_floating_point() else c
    if c.dim() != 1 or c.shape[0] != x.shape[0]:
        raise ValueError(f"a time tensor of shape {tuple(c.shape)} does not match x of shape "
                         f"{tuple(x.shape)}: use a scalar t or one of shape ({x.shape[0]},)")
    return c.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def check_x(x: Any, name: str = "x", dim: int | None = None) -> torch.Tensor:
    """Check that x is a floating tensor of shape (B, *D) (and (B, dim) when dim is given)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (B, *D) with a batch dimension, got {tuple(x.shape)}")
    if dim is not None and (x.dim() != 2 or x.shape[1] != dim):
        raise ValueError(f"{name} must have shape (B, {dim}), got {tuple(x.shape)}")
    return x


def check_choice(value: str, allowed, name: str) -> str:
    """Raise a ValueError naming `name` unless value is one of `allowed`."""
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(sorted(map(str, allowed)))}")
    return value


def check_finite(value: torch.Tensor, t: torch.Tensor, what: str, why: str) -> torch.Tensor:
    """Return value, or raise a ValueError naming `what`, the first time t where it is not finite, and `why`.

    Args: value of t's shape (or broadcastable to it); t the times it was computed at.
    """
    bad = ~torch.isfinite(value)
    if bad.any():
        t_bad = t.expand_as(value)[bad].flatten()[0].item() if t.dim() else t.item()
        raise ValueError(f"{what} is not defined at t = {t_bad:g} ({why}); use a t strictly inside the range")
    return value
