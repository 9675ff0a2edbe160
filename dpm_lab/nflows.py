"""Normalizing flows and continuous normalizing flows (Ch. 5, §5.1): planar and coupling flows, the change of variables.

A flow here runs in the *normalizing* direction, data x -> latent z, one invertible layer at a time:

    z = g_K o ... o g_1 (x),   log p(x) = log p_prior(z) + sum_k log |det dg_k / dx_k|      (§5.1.1, stacks)

(the book writes the same stack in the generative direction f_k = g_k^{-1}, where each term enters with a
minus sign, log|det df_k/dx_k|^{-1}).  Each layer's `forward(x)` returns (z, log|det dz/dx|) and its
`inverse(z)` returns x, so `Flow.log_prob` is the stacked change of variables and `Flow.sample` runs the
stack backwards.

    PlanarLayer     g(x) = x + u h(w^T x + b), |det| = |1 + u^T h'(w^T x + b) w|   (matrix determinant lemma)
    AffineCoupling  z_b = x_b exp(s(x_a)) + t(x_a), z_a = x_a, log|det| = sum s(x_a)   (RealNVP)
    autograd_logdet the reference: log|det| of the autograd Jacobian, for checks
    logdet_series   log det(I + J) = sum_k (-1)^{k+1} tr(J^k) / k, the residual flow's power series (§5.1.1)
    cnf_log_prob    a CNF's log p_0(x) by a differentiable RK4 solve of the augmented ODE (§5.1.2)

Time convention of the course: t = 0 data, t = 1 noise.  A CNF dx/dt = v(x, t) carries data (t = 0) to the
prior (t = 1), and log p_0(x_0) = log p_1(x_1) + int_0^1 div v(x(t), t) dt (the instantaneous change of
variables, d/dt log p_t(x(t)) = -div v).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .utils import check_x, randn

__all__ = ["PlanarLayer", "AffineCoupling", "Flow", "planar_flow", "coupling_flow", "standard_normal_log_prob",
           "autograd_logdet", "logdet_series", "nll_loss", "cnf_log_prob"]


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) per sample, shape (B,)."""
    d = z[0].numel()
    return -0.5 * (z.flatten(1) ** 2).sum(1) - 0.5 * d * math.log(2 * math.pi)


class PlanarLayer(nn.Module):
    """Planar layer g(x) = x + u_hat tanh(w^T x + b) (§5.1.1, Rezende and Mohamed).

    u_hat = u + (m(w^T u) - w^T u) w / ||w||^2 with m(a) = -1 + softplus(a) keeps w^T u_hat > -1, so g is
    invertible; log|det dg/dx| = log|1 + u_hat^T h'(w^T x + b) w| (matrix determinant lemma).
    """

    def __init__(self, dim: int = 2, *, generator: torch.Generator | None = None):
        super().__init__()
        dim = _positive_int(dim, "dim")
        self.u = nn.Parameter(0.1 * randn((dim,), generator=generator))
        self.w = nn.Parameter(0.5 * randn((dim,), generator=generator))
        self.b = nn.Parameter(torch.zeros(()))

    def u_hat(self) -> torch.Tensor:
        wu = self.w @ self.u
        return self.u + (nn.functional.softplus(wu) - 1 - wu) * self.w / (self.w @ self.w + 1e-12)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.u_hat()
        a = x @ self.w + self.b
        z = x + u * torch.tanh(a)[:, None]
        dh = 1 - torch.tanh(a) ** 2
        return z, torch.log(torch.abs(1 + dh * (u @ self.w)) + 1e-12)

    @torch.no_grad()
    def inverse(self, z: torch.Tensor, iters: int = 60) -> torch.Tensor:
        """x with g(x) = z: the scalar a = w^T x solves w^T z = a + (w^T u_hat) tanh(a + b), increasing in a,
        found by bisection; then x = z - u_hat tanh(a + b)."""
        u, w, b = self.u_hat(), self.w, self.b
        target, wu = z @ w, w @ u
        lo, hi = target - abs(wu) - 1, target + abs(wu) + 1      # |wu tanh| < |wu| brackets the root
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            above = mid + wu * torch.tanh(mid + b) > target
            hi, lo = torch.where(above, mid, hi), torch.where(above, lo, mid)
        return z - u * torch.tanh(0.5 * (lo + hi) + b)[:, None]


class AffineCoupling(nn.Module):
    """Affine coupling layer (RealNVP): z_a = x_a, z_b = x_b exp(s(x_a)) + t(x_a), log|det| = sum s(x_a).

    `mask` (D,) of 0/1 marks the conditioning coordinates a; s is bounded by tanh for stable training.
    """

    def __init__(self, mask, hidden: int = 64):
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.float32)
        if mask.ndim != 1 or not ((mask == 0) | (mask == 1)).all() or mask.sum() in (0, mask.numel()):
            raise ValueError(f"mask must be a 1-D 0/1 vector with both values, got {mask.tolist()}")
        self.register_buffer("mask", mask)
        d, hidden = mask.numel(), _positive_int(hidden, "hidden")
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2 * d))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)                 # starts as the identity

    def _st(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(x_a).chunk(2, dim=-1)
        free = 1 - self.mask
        return torch.tanh(s) * free, t * free

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._st(x * self.mask)
        return x * self.mask + (1 - self.mask) * (x * torch.exp(s) + t), s.sum(-1)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        s, t = self._st(z * self.mask)
        return z * self.mask + (1 - self.mask) * (z - t) * torch.exp(-s)


class Flow(nn.Module):
    """A stack of invertible layers, data -> latent, with a standard-normal prior.

    log_prob(x) = log N(g(x); 0, I) + sum_k log|det dg_k/dx_k| (the stacked change of variables, §5.1.1);
    sample(n) draws z ~ N(0, I) and inverts the layers in reverse order.
    """

    def __init__(self, layers: list[nn.Module], dim: int = 2, scale: float = 1.0):
        super().__init__()
        if not layers:
            raise ValueError("layers must be a non-empty list of flow layers")
        self.layers = nn.ModuleList(layers)
        self.dim = _positive_int(dim, "dim")
        self.scale = float(scale)          # data are divided by scale first (a fixed first layer)

    def to_latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, sum of log-determinants) for data x (B, D)."""
        x = check_x(x, "x", self.dim)
        z = x / self.scale
        total = torch.full((x.shape[0],), -self.dim * math.log(self.scale), dtype=x.dtype, device=x.device)
        for layer in self.layers:
            z, ld = layer(z)
            total = total + ld
        return z, total

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per sample, shape (B,)."""
        z, total = self.to_latent(x)
        return standard_normal_log_prob(z) + total

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z * self.scale

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n samples (n, D) from the flow: z ~ N(0, I) through the inverse stack."""
        p = next(self.parameters())
        return self.inverse(randn((_positive_int(n, "n"), self.dim), generator=generator, dtype=p.dtype,
                                  device=p.device))


def planar_flow(n_layers: int = 16, dim: int = 2, *, scale: float = 1.0, seed: int = 0) -> Flow:
    """A stack of n_layers planar layers with seeded initial weights."""
    g = torch.Generator().manual_seed(seed)
    return Flow([PlanarLayer(dim, generator=g) for _ in range(_positive_int(n_layers, "n_layers"))], dim, scale)


def coupling_flow(n_layers: int = 6, dim: int = 2, hidden: int = 64, *, scale: float = 1.0) -> Flow:
    """A stack of affine couplings whose masks alternate between the coordinates."""
    n_layers = _positive_int(n_layers, "n_layers")
    masks = [[float((i + k) % 2) for i in range(dim)] for k in range(n_layers)]
    return Flow([AffineCoupling(m, hidden) for m in masks], dim, scale)


def nll_loss(model: Flow, x0: torch.Tensor, c=None, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample negative log-likelihood -log p(x0), shape (B,): the MLE loss, in train.fit's loss signature."""
    return -model.log_prob(x0)


def autograd_logdet(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """log|det d fn / d x| per sample from the full autograd Jacobian (the reference for every layer), (B,)."""
    x = check_x(x, "x")
    jac = torch.stack([torch.autograd.functional.jacobian(fn, xi[None])[0, :, 0] for xi in x])   # (B, D, D)
    return torch.linalg.slogdet(jac)[1]


def logdet_series(jac: torch.Tensor, n_terms: int) -> torch.Tensor:
    """log det(I + J) = sum_{k=1}^{n} (-1)^{k+1} tr(J^k)/k (residual flow, §5.1.1), for J (B, D, D);
    converges when the spectral radius of J is below 1."""
    n_terms = _positive_int(n_terms, "n_terms")
    if jac.ndim != 3 or jac.shape[1] != jac.shape[2]:
        raise ValueError(f"jac must have shape (B, D, D), got {tuple(jac.shape)}")
    power, total = jac, torch.zeros(jac.shape[0], dtype=jac.dtype, device=jac.device)
    for k in range(1, n_terms + 1):
        total = total + (-1) ** (k + 1) * torch.diagonal(power, dim1=1, dim2=2).sum(-1) / k
        power = power @ jac
    return total


def _div_and_value(field: Callable, x: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """field(x, t) and its exact divergence (one autograd pass per dimension, differentiable)."""
    with torch.enable_grad():
        v = field(x, t)
        div = sum(torch.autograd.grad(v[:, i].sum(), x, create_graph=True)[0][:, i] for i in range(x.shape[1]))
    return v, div


def cnf_log_prob(field: Callable[[torch.Tensor, float], torch.Tensor], x0: torch.Tensor, *, n_steps: int = 8,
                 prior: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """log p_0(x0) = log p_1(x_1) + int_0^1 div v(x(t), t) dt for a CNF dx/dt = field(x, t) (§5.1.2).

    Integrates the augmented ODE d/dt [x, delta] = [v, div v] from t = 0 (data) to t = 1 (prior) with
    n_steps classical RK4 steps in torch, so the result is differentiable in the field's parameters (MLE
    training).  prior(x_1) -> (B,) defaults to the standard normal.  Args: x0 (B, D).  Returns (B,).
    """
    x = check_x(x0, "x0")
    if x.ndim != 2:
        raise ValueError(f"x0 must have shape (B, D), got {tuple(x.shape)}")
    h = 1.0 / _positive_int(n_steps, "n_steps")
    if not x.requires_grad:
        x = x.clone().requires_grad_(True)          # the divergence needs d/dx; the caller's tensor is left alone
    delta = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(n_steps):
        t = i * h
        k1, d1 = _div_and_value(field, x, t)
        k2, d2 = _div_and_value(field, x + 0.5 * h * k1, t + 0.5 * h)
        k3, d3 = _div_and_value(field, x + 0.5 * h * k2, t + 0.5 * h)
        k4, d4 = _div_and_value(field, x + h * k3, t + h)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        delta = delta + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
    log_prior = standard_normal_log_prob(x) if prior is None else prior(x)
    return log_prior + delta
