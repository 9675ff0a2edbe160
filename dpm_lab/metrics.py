"""Sample-quality metrics for low-dimensional samples, each with its floor.

A metric between a model's samples and the target means little alone: two independent draws of
the target itself give a positive value (the *floor*) at any finite sample size, and both the
floor and the model's value move from one draw to the next (W2 at n = 500 by about 20%).  The
honest comparison is two spreads, each over several seeds:

    model = over_seeds(w2_exact, model_sampler, target_sampler, 500, seeds=range(5))
    fl = floor_spread(w2_exact, target_sampler, 500, repeats=5, generator=g)
    print(f"W2 {model} vs floor {fl}; distinguishable: {model.beyond(fl)}")

`over_seeds` and `floor_spread` return a `Spread` (mean, std, per-seed values).  The older
one-number form `floor(...)` (a mean over `repeats` pairs; `return_std=True` adds the std) stays.
Claim a difference only when it is larger than the spread (`Spread.beyond`).

All metrics take x (n, D) and y (m, D) tensors and return a Python float.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from . import ot
from .gmm import GaussianMixture
from .utils import check_choice, randn

__all__ = ["sliced_wasserstein", "mmd", "median_bandwidth", "energy_distance", "w2_exact", "nll",
           "mode_coverage", "off_mode_fraction", "floor", "floor_spread", "over_seeds", "Spread"]


def _dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise Euclidean distances computed directly (exact zeros; no |a|^2 + |b|^2 - 2ab cancellation)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def _as2d(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (n, D), got {tuple(x.shape)}")
    return x.detach().double().cpu()


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, *, n_proj: int = 256, p: int = 2,
                       generator: torch.Generator | None = None) -> float:
    """Sliced Wasserstein SW_p = (E_u W_p^p(u^T x, u^T y))^(1/p), u uniform on the sphere.

    Each 1-D W_p compares sorted projections (equal n; otherwise quantiles at n_q = max(n, m) levels).
    Args: x (n, D), y (m, D); n_proj random directions from `generator` (drawn on its device).
    """
    x, y = _as2d(x, "x"), _as2d(y, "y")
    u = randn((x.shape[1], n_proj), generator=generator, dtype=torch.float64, device="cpu")
    u = u / u.norm(dim=0, keepdim=True)
    px, py = (x @ u).sort(0).values, (y @ u).sort(0).values
    if px.shape[0] != py.shape[0]:
        q = torch.linspace(0, 1, max(px.shape[0], py.shape[0]), dtype=torch.float64)
        px, py = torch.quantile(px, q, dim=0), torch.quantile(py, q, dim=0)
    return float(((px - py).abs() ** p).mean() ** (1 / p))


def median_bandwidth(x: torch.Tensor, y: torch.Tensor) -> float:
    """Median heuristic: the median pairwise distance of the pooled sample [x; y] (at most 2000 points)."""
    z = torch.cat([_as2d(x, "x"), _as2d(y, "y")])[:2000]
    d = _dist(z, z)
    return float(d[torch.triu(torch.ones_like(d, dtype=torch.bool), 1)].median())


def mmd(x: torch.Tensor, y: torch.Tensor, *, bandwidth: float | None = None) -> float:
    """Squared maximum mean discrepancy with an RBF kernel k(a, b) = exp(-||a - b||^2 / (2 h^2)) (unbiased U-statistic).

    MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y).  h defaults to the median heuristic on the pooled
    sample (median_bandwidth).  Can be slightly negative for near-identical distributions.
    """
    x, y = _as2d(x, "x"), _as2d(y, "y")
    h = median_bandwidth(x, y) if bandwidth is None else float(bandwidth)
    k = lambda a, b: torch.exp(-_dist(a, b) ** 2 / (2 * h * h))   # noqa: E731
    kxx, kyy = k(x, x), k(y, y)
    n, m = x.shape[0], y.shape[0]
    return float((kxx.sum() - kxx.trace()) / (n * (n - 1)) + (kyy.sum() - kyy.trace()) / (m * (m - 1))
                 - 2 * k(x, y).mean())


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance 2 E||x - y|| - E||x - x'|| - E||y - y'|| (V-statistic; >= 0, 0 iff equal samples)."""
    x, y = _as2d(x, "x"), _as2d(y, "y")
    return float(2 * _dist(x, y).mean() - _dist(x, x).mean() - _dist(y, y).mean())


def w2_exact(x: torch.Tensor, y: torch.Tensor) -> float:
    """Exact 2-Wasserstein distance between two equal-size point clouds by optimal assignment:

        W2 = ( min_perm (1/n) sum_i ||x_i - y_perm(i)||^2 )^(1/2)   (the plan of `ot.ot_permutation`).

    O(n^3): fine for n up to a few thousand.  Args: x (n, D), y (n, D).
    """
    x, y = _as2d(x, "x"), _as2d(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"w2_exact needs equal-size samples, got {tuple(x.shape)} and {tuple(y.shape)}")
    return math.sqrt(ot.transport_cost(*ot.ot_coupling(x, y)))


def nll(x: torch.Tensor, density: GaussianMixture) -> float:
    """Average negative log-likelihood -(1/n) sum_i log p(x_i) under a known density (nats per sample)."""
    return float(-density.log_prob(_as2d(x, "x")).mean())


def mode_coverage(x: torch.Tensor, mixture: GaussianMixture, *, by: str = "nearest", min_frac: float = 0.1) -> dict:
    """Assign samples to mixture components and compare the weight histogram to the true weights.

    by='nearest': nearest component mean; by='posterior': argmax of the responsibility at t = 0.
    A mode is *hit* when it receives at least min_frac * (its true weight) of the samples.
    Returns {'hit': fraction of modes hit, 'weights': (K,) empirical weights, 'true': (K,) weights,
    'tv': total variation 1/2 sum |weights - true|}.
    """
    check_choice(by, ("nearest", "posterior"), "by")
    x = _as2d(x, "x")
    k = _dist(x, mixture.means.cpu()).argmin(1) if by == "nearest" else mixture.data_posterior(x).argmax(1)
    K = mixture.n_components
    w = torch.bincount(k, minlength=K).double() / x.shape[0]
    true = mixture.weights.cpu()
    return {"hit": float((w >= min_frac * true).double().mean()), "weights": w, "true": true,
            "tv": float(0.5 * (w - true).abs().sum())}


def off_mode_fraction(x: torch.Tensor, mixture: GaussianMixture, *, k: float = 3.0) -> float:
    """The fraction of samples farther than k standard deviations from EVERY mode of a mixture.

    Distance to mode j is Mahalanobis, sqrt((x - mu_j)^T Sigma_j^{-1} (x - mu_j)).  A point between two
    modes counts; a point near any mode does not.  W2 can barely see a few percent of such points (they
    move little mass a short way), this count does.  For exact samples of well-separated isotropic 2-D
    modes it is P(chi^2_2 > k^2) = exp(-k^2 / 2), 1.1% at k = 3; compare a model with the target's own value.
    """
    x = _as2d(x, "x")
    if not (isinstance(k, (int, float)) and not isinstance(k, bool) and k > 0):
        raise ValueError(f"k must be a positive number of standard deviations, got {k!r}")
    mu, cov = mixture.means.cpu().double(), mixture.covs.cpu().double()
    diff = x[:, None, :] - mu[None]                                        # (n, K, D)
    m2 = (diff * torch.linalg.solve(cov[None], diff[..., None])[..., 0]).sum(-1)   # (n, K) squared Mahalanobis
    return float((m2.min(1).values > k * k).double().mean())


@dataclass(frozen=True)
class Spread:
    """A metric over several independent draws: mean, sample std (ddof = 1; 0 for one value) and the values.

    str() gives "mean +- std (k draws)".  `beyond(other, k)` says whether the two means differ by
    more than k times the combined std sqrt(std_a^2 + std_b^2): only then is a difference a claim.
    """
    mean: float
    std: float
    values: tuple

    @classmethod
    def of(cls, values) -> Spread:
        v = np.asarray([float(x) for x in values], dtype=float)
        if v.size == 0:
            raise ValueError("a Spread needs at least one value")
        return cls(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, tuple(v.tolist()))

    def __str__(self) -> str:
        return f"{self.mean:.3g} +- {self.std:.2g} ({len(self.values)} draws)"

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def beyond(self, other: Spread, k: float = 2.0) -> bool:
        """True when |mean - other.mean| > k sqrt(std^2 + other.std^2)."""
        return abs(self.mean - other.mean) > k * math.hypot(self.std, other.std)


def _check_count(value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def floor_spread(metric: Callable, sampler: Callable, n: int, *, repeats: int = 5,
                 generator: torch.Generator | None = None, **kwargs) -> Spread:
    """The floor with its spread: metric(x, x') over `repeats` pairs of independent target draws of size n.

    Args: metric(x, y, **kwargs) -> float; sampler(n, generator=...) -> (n, D); repeats >= 2 pairs,
    all drawn from `generator` in turn.  Returns a Spread (mean, std over pairs, values).
    """
    _check_count(n, "n", 2)
    _check_count(repeats, "repeats", 2)
    return Spread.of(metric(sampler(n, generator=generator), sampler(n, generator=generator), **kwargs)
                     for _ in range(repeats))


def over_seeds(metric: Callable, sampler_a: Callable, sampler_b: Callable, n: int, *,
               seeds: Iterable[int] = range(5), **kwargs) -> Spread:
    """A metric between two samplers, once per seed: metric(sampler_a(n, g), sampler_b(n, g)), g seeded by each seed.

    Use it for a model against the target (sampler_a draws the model's samples, sampler_b the target's)
    and compare with `floor_spread` at the same n.  Each seed gets a fresh torch.Generator; sampler_a
    draws first.  Returns a Spread over the seeds (values in the order of `seeds`).
    """
    _check_count(n, "n", 2)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    vals = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        vals.append(metric(sampler_a(n, generator=g), sampler_b(n, generator=g), **kwargs))
    return Spread.of(vals)


def floor(metric: Callable, sampler: Callable, n: int, *, repeats: int = 3,
          generator: torch.Generator | None = None, return_std: bool = False,
          **kwargs) -> float | tuple[float, float]:
    """The metric between two independent target draws of size n, averaged over `repeats` pairs.

    Args: metric(x, y, **kwargs); sampler(n, generator=...) -> (n, D); n the sample size used for the model.
    A model's score is readable as metric / floor (1 = indistinguishable at this n), but only beside
    the floor's spread: return_std=True returns (mean, std over the pairs, ddof = 1); `floor_spread`
    returns the per-pair values too.
    """
    _check_count(repeats, "repeats", 1)
    vals = [metric(sampler(n, generator=generator), sampler(n, generator=generator), **kwargs) for _ in range(repeats)]
    sp = Spread.of(vals)
    return (sp.mean, sp.std) if return_std else sp.mean
