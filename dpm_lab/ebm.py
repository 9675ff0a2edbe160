"""Energy-based models and the score toolbox of Ch. 3 (§3.1-3.4).

    p_phi(x) = exp(-E_phi(x)) / Z_phi        (§3.1.1, the energy sign of Ch. 3)
    s_phi(x) = grad_x log p_phi(x) = -grad_x E_phi(x)      (no Z: §3.1.2)

- `Energy`: a small MLP energy E_phi(x) (B, D) -> (B,), with `score(x)` = -grad E.
- `score_of(energy, x)`: -grad_x E by autograd, for any energy function.
- `log_ratio(score_fn, x, x_ref)`: log p(x) - log p(x_ref) as the line integral of the score (§3.1.2),
  by Gauss-Legendre quadrature.
- `short_run_langevin`: the negatives of contrastive divergence (a few Langevin steps on -E).
- `ContrastiveDivergence`: the CD loss E(x_data) - E(x_neg) (+ an energy-size penalty), a per-sample loss
  that train.fit can drive (§3.1.3: the gradient of log Z is replaced by a Monte Carlo average over negatives).
- `NoiseLadder`: NCSN's geometric ladder sigma_1 < ... < sigma_L (§3.4) and its training-time sampler.
- `sure(denoiser, x_noisy, sigma)`: Stein's unbiased risk estimate of a denoiser's MSE (§3.3.5).
- `shrinkage(c)`: the linear shrinkage denoiser D(x) = c x.

This module is in the learning layer: it never imports the samplers (dl.dynamics.langevin is the
sampler for a score; short_run_langevin here is the training-time inner loop of CD).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .gmm import GaussianMixture
from .losses import jacobian_trace
from .utils import check_x, rand, randint, randn

__all__ = ["two_mode_mixture", "Energy", "score_of", "log_ratio", "short_run_langevin", "ContrastiveDivergence", "NoiseLadder",
           "geometric_sigmas", "sure", "shrinkage"]


def two_mode_mixture(a: float = 5.0, weights: tuple[float, float] = (0.2, 0.8), std: float = 1.0) -> GaussianMixture:
    """w_1 N((-a, -a), std^2 I) + w_2 N((a, a), std^2 I): two separated modes of unequal weight, the classic
    toy on which Langevin dynamics gets the mode weights wrong (§3.4.1; Song & Ermon's example)."""
    a = _positive(a, "a")
    return GaussianMixture(list(weights), [[-a, -a], [a, a]], stds=_positive(std, "std"))


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_2d(x, name: str) -> torch.Tensor:
    check_x(x, name)
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (B, D), got {tuple(x.shape)}")
    return x


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class Energy(nn.Module):
    """An MLP energy E_phi: R^D -> R (§3.1.1); the density is exp(-E)/Z, the score -grad E.

    Args: dim D, hidden width, depth (hidden layers); SiLU activations (smooth, so the score is too).
    """

    def __init__(self, dim: int = 2, hidden: int = 64, depth: int = 3):
        super().__init__()
        _positive_int(dim, "dim")
        _positive_int(hidden, "hidden")
        _positive_int(depth, "depth")
        layers, width = [], dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.dim, self.body = dim, nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """E_phi(x), shape (B,) for x (B, D)."""
        _check_2d(x, "x")
        if x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        return self.body(x).squeeze(-1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """s_phi(x) = -grad_x E_phi(x), shape (B, D), detached (for samplers and plots)."""
        return score_of(self, x)


def score_of(energy: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *,
             create_graph: bool = False) -> torch.Tensor:
    """The score -grad_x E(x) of an energy by autograd (§3.1.2: log Z does not depend on x).

    Args: energy: x (B, D) -> (B,); x (B, D).  create_graph=True keeps the graph (for a loss on the score).
    Returns (B, D); detached unless create_graph.
    """
    check_x(x, "x")
    with torch.enable_grad():
        y = x.detach().requires_grad_(True)
        e = energy(y)
        if e.shape != (x.shape[0],):
            raise ValueError(f"energy must return one value per sample, shape ({x.shape[0]},), got {tuple(e.shape)}")
        g = torch.autograd.grad(e.sum(), y, create_graph=create_graph)[0]
    return -g if create_graph else -g.detach()


def log_ratio(score_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, x_ref: torch.Tensor, *,
              n_nodes: int = 32) -> torch.Tensor:
    """log p(x) - log p(x_ref) = int_0^1 s(x_ref + u (x - x_ref))^T (x - x_ref) du  (§3.1.2).

    The score determines log p up to a constant; the integral is taken along the straight segment by
    Gauss-Legendre quadrature with n_nodes nodes (exact for polynomial integrands of degree < 2 n_nodes).
    Args: score_fn: (N, D) -> (N, D); x (B, D); x_ref (D,) or (B, D).  Returns (B,).
    """
    _check_2d(x, "x")
    _positive_int(n_nodes, "n_nodes")
    ref = torch.as_tensor(x_ref, dtype=x.dtype, device=x.device)
    ref = ref.expand_as(x) if ref.shape == x.shape[1:] else ref
    if ref.shape != x.shape:
        raise ValueError(f"x_ref must have shape ({x.shape[1]},) or {tuple(x.shape)}, got {tuple(ref.shape)}")
    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
    u = torch.as_tensor((nodes + 1) / 2, dtype=x.dtype, device=x.device)      # nodes on [0, 1]
    w = torch.as_tensor(weights / 2, dtype=x.dtype, device=x.device)
    d = x - ref                                                                 # (B, D)
    pts = ref[None] + u[:, None, None] * d[None]                                # (n, B, D)
    s = score_fn(pts.reshape(-1, x.shape[1])).reshape(pts.shape)
    return torch.einsum("n,nbd,bd->b", w, s.to(x.dtype), d)


def short_run_langevin(energy: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n_steps: int,
                       step_size: float, *, noise_scale: float = 1.0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """A few Langevin steps x <- x - eta grad E(x) + noise_scale sqrt(2 eta) z on the energy (§3.1.3-3.1.4).

    The negatives of contrastive divergence: short chains, not mixed; noise_scale < 1 is the usual
    "short-run" shortcut (a colder chain).  Returns (B, D), detached.
    """
    check_x(x, "x")
    _positive_int(n_steps, "n_steps")
    _positive(step_size, "step_size")
    if not (isinstance(noise_scale, (int, float)) and noise_scale >= 0):
        raise ValueError(f"noise_scale must be a number >= 0, got {noise_scale!r}")
    x = x.detach()
    for _ in range(n_steps):
        z = randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = x + step_size * score_of(energy, x) + noise_scale * math.sqrt(2 * step_size) * z
    return x.detach()


@dataclass
class ContrastiveDivergence:
    """Contrastive divergence with short-run Langevin negatives (§3.1.3), a per-sample loss for train.fit.

    The maximum-likelihood gradient is grad E(x_data) - E_{p_phi}[grad E(x)]; the second term (from log Z)
    is estimated with negatives x_neg from `n_steps` Langevin steps on -E, started from uniform noise on
    [-box, box]^D.  Per sample:  E(x_data) - E(x_neg) + reg (E(x_data)^2 + E(x_neg)^2)  (the penalty keeps
    energies from drifting, as Z is unknown).
    """

    n_steps: int = 20
    step_size: float = 0.01
    noise_scale: float = 1.0
    box: float = 3.0
    reg: float = 0.1

    def __post_init__(self):
        _positive_int(self.n_steps, "n_steps")
        _positive(self.step_size, "step_size")
        _positive(self.box, "box")
        if not self.reg >= 0:
            raise ValueError(f"reg must be >= 0, got {self.reg!r}")

    def negatives(self, energy, n: int, dim: int, *, generator=None, dtype=torch.float32, device=None):
        """n negatives: uniform starts on the box, then the short Langevin run.  (n, dim)."""
        x = (2 * rand((n, dim), generator=generator, dtype=dtype) - 1) * self.box
        x = x.to(device) if device is not None else x
        return short_run_langevin(energy, x, self.n_steps, self.step_size, noise_scale=self.noise_scale,
                                  generator=generator)

    def __call__(self, energy, x0: torch.Tensor, c=None, *, generator: torch.Generator | None = None) -> torch.Tensor:
        _check_2d(x0, "x0")
        neg = self.negatives(energy, x0.shape[0], x0.shape[1], generator=generator, dtype=x0.dtype, device=x0.device)
        e_pos, e_neg = energy(x0), energy(neg)
        return e_pos - e_neg + self.reg * (e_pos ** 2 + e_neg ** 2)


def geometric_sigmas(sigma_min: float, sigma_max: float, L: int) -> torch.Tensor:
    """NCSN's geometric ladder sigma_1 < ... < sigma_L from sigma_min to sigma_max (§3.4.2), float64 (L,)."""
    _positive(sigma_min, "sigma_min")
    _positive(sigma_max, "sigma_max")
    _positive_int(L, "L", 2)
    if not sigma_min < sigma_max:
        raise ValueError(f"sigma_min must be < sigma_max, got {sigma_min} and {sigma_max}")
    s = torch.logspace(math.log10(sigma_min), math.log10(sigma_max), L, dtype=torch.float64)
    s[0], s[-1] = sigma_min, sigma_max                 # the ends exactly (no rounding past sigma_max)
    return s


class NoiseLadder:
    """The noise levels sigma_1 < ... < sigma_L of NCSN (§3.4) as times of an EDM-type schedule
    (alpha = 1, sigma_t = sigma_max t), so t_l = sigma_l / sigma_max.

    Called as a time distribution, ladder(n, generator=g) draws n training times: a level uniform on
    1..L (discrete=True, the book's sum over levels with lambda(sigma) = sigma^2), or log sigma uniform
    on [log sigma_1, log sigma_L] (discrete=False: the limit of a fine ladder, so any sub-ladder works
    at sampling time).
    Args: sigmas: a strictly increasing sequence of positive noise levels; sigma_max: the schedule's (>= sigma_L).
    """

    def __init__(self, sigmas, sigma_max: float | None = None, *, discrete: bool = True):
        s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
        if s.numel() < 1 or not torch.isfinite(s).all() or (s <= 0).any():
            raise ValueError("sigmas must be a non-empty sequence of finite positive noise levels")
        if s.numel() > 1 and not (s[1:] > s[:-1]).all():
            raise ValueError(f"sigmas must be strictly increasing (sigma_1 < ... < sigma_L), got {s.tolist()}")
        self.sigmas = s
        self.sigma_max = float(s[-1]) if sigma_max is None else _positive(sigma_max, "sigma_max")
        if self.sigma_max < float(s[-1]) - 1e-12:
            raise ValueError(f"sigma_max must be >= the largest level {float(s[-1])}, got {self.sigma_max}")
        self.discrete = bool(discrete)

    @property
    def L(self) -> int:
        return self.sigmas.numel()

    def times(self) -> torch.Tensor:
        """t_l = sigma_l / sigma_max, increasing, float64 (L,)."""
        return (self.sigmas / self.sigma_max).clamp(max=1.0)

    def __call__(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        _positive_int(n, "n")
        if self.discrete:
            return self.times()[randint(0, self.L, (n,), generator=generator).cpu()]
        lo, hi = math.log(float(self.sigmas[0])), math.log(float(self.sigmas[-1]))
        u = rand((n,), generator=generator, dtype=torch.float64).cpu()
        return (torch.exp(lo + (hi - lo) * u) / self.sigma_max).clamp(max=1.0)


def sure(denoiser: Callable[[torch.Tensor], torch.Tensor], x_noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    """Stein's unbiased risk estimate of E||D(x_noisy) - x||^2 for x_noisy = x + sigma eps (§3.3.5):

        SURE(D; x~) = ||D(x~) - x~||^2 + 2 sigma^2 div D(x~) - D sigma^2,

    with the exact divergence (one backward pass per dimension).  Needs no clean x.
    Args: denoiser (B, D) -> (B, D); x_noisy (B, D); sigma > 0.  Returns (B,).
    """
    _check_2d(x_noisy, "x_noisy")
    _positive(sigma, "sigma")
    with torch.enable_grad():
        x = x_noisy.detach().requires_grad_(True)
        out = denoiser(x)
        if out.shape != x.shape:
            raise ValueError(f"denoiser must return the shape of its input {tuple(x.shape)}, got {tuple(out.shape)}")
        div = jacobian_trace(out, x)
    D = x.shape[1]
    return (((out - x) ** 2).sum(1) + 2 * sigma ** 2 * div - D * sigma ** 2).detach()


def shrinkage(c: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The linear shrinkage denoiser D(x~) = c x~ (c = s^2 / (s^2 + sigma^2) is optimal for N(0, s^2 I) data)."""
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c):
        raise ValueError(f"c must be a finite number, got {c!r}")
    return lambda x: c * x
