"""Discrete-state diffusion (book Ch. 12): chains on K states and masked diffusion on short sequences.

Self-contained on purpose: nothing of the continuous code (schedules, fields, samplers) is bent
to fit.  Conventions of this module:

- K states 0..K-1; a distribution is a row vector p (K,) or a batch (B, K); a transition matrix
  P is row-stochastic, P[i, j] = Pr(j | i), so p_t = p_s P_{s->t}.  (The book writes column
  vectors, p_{k+1} = P_k^T p_k: the same thing transposed.)
- A rate matrix Q has non-negative off-diagonal entries and rows that sum to zero; the chain
  runs with Q_t = beta(t) Q, so with B(t) = int_0^t beta, P_{s->t} = exp((B(t) - B(s)) Q).
- Master equation (§12): dp_t/dt = p_t Q_t, inflow minus outflow.
- Masked (absorbing) corruption: the last state K-1 is the mask; [Q]_{i,mask} = 1, [Q]_{ii} = -1,
  so Pr(x_t | x_0) = Cat(alpha_t e_{x0} + (1 - alpha_t) e_mask) with alpha_t = exp(-B(t)).
- Uniform corruption: [Q]_{ij} = 1/(K-1) off the diagonal, so
  Pr(x_t | x_0) = Cat(alpha_t e_{x0} + (1 - alpha_t) 1/K) with alpha_t = exp(-K/(K-1) B(t)).
- Reverse rates (§12, the ratio view): [Q~_t]_{ji} = [Q_t]_{ij} p_t(i) / p_t(j), the rate of a
  jump j -> i in reverse time; probability flux J_t(i, j) = p_t(i) [Q_t]_{ij} (the flow view).

Sequences: L tokens from a vocabulary of V symbols, token V is the mask.  `MarkovLaw` is a data
law known exactly (all V^L sequences enumerated), so a masked-diffusion sampler's law can be
computed exactly (`sampler_law`) and compared with the data by KL.
"""
from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable

import torch

from .utils import rand

__all__ = ["check_rate_matrix", "masked_rates", "uniform_rates", "CTMC", "MarkovLaw", "copy_law",
           "mask_tokens", "exact_denoiser", "MaskedDenoiser", "masked_elbo", "sample_masked",
           "sampler_law", "sampler_laws", "tempered", "kl", "total_correlation",
           "uniform_tokens", "exact_uniform_denoiser", "sample_uniform", "uniform_sampler_law", "UniformDenoiser",
           "uniform_cross_entropy"]

_TOL = 1e-9


# -- rate matrices ---------------------------------------------------------------------------------------------
def check_rate_matrix(Q: torch.Tensor, name: str = "Q") -> torch.Tensor:
    """Return Q as float64 after checking it is a rate matrix: square, finite, rates >= 0 off the diagonal,
    rows summing to zero (the CTMC generator of §12)."""
    Q = torch.as_tensor(Q, dtype=torch.float64)
    if Q.dim() != 2 or Q.shape[0] != Q.shape[1] or Q.shape[0] < 2:
        raise ValueError(f"{name} must be a square (K, K) matrix with K >= 2, got shape {tuple(Q.shape)}")
    if not torch.isfinite(Q).all():
        raise ValueError(f"{name} has NaN or infinite entries")
    off = Q - torch.diag(torch.diag(Q))
    if (off < -_TOL).any():
        raise ValueError(f"{name} has negative rates off the diagonal: a rate is a jump intensity, >= 0")
    rows = Q.sum(1)
    if rows.abs().max() > 1e-8 * max(1.0, float(Q.abs().max())):
        raise ValueError(f"the rows of {name} must sum to zero (mass is conserved); largest row sum {float(rows.abs().max()):.3g}")
    return Q


def masked_rates(K: int) -> torch.Tensor:
    """The absorbing kernel's base rate matrix on K states, the last one the mask: Q[i, mask] = 1, Q[i, i] = -1."""
    K = _states(K)
    Q = torch.zeros(K, K, dtype=torch.float64)
    Q[:-1, -1] = 1.0
    Q[torch.arange(K - 1), torch.arange(K - 1)] = -1.0
    return Q


def uniform_rates(K: int) -> torch.Tensor:
    """The uniform kernel's base rate matrix: Q[i, j] = 1/(K-1) for j != i, Q[i, i] = -1."""
    K = _states(K)
    return (torch.ones(K, K, dtype=torch.float64) - K * torch.eye(K, dtype=torch.float64)) / (K - 1)


def _states(K) -> int:
    if not isinstance(K, int) or K < 2:
        raise ValueError(f"K (the number of states) must be an int >= 2, got {K!r}")
    return K


# -- the chain -------------------------------------------------------------------------------------------------
class CTMC:
    """A continuous-time Markov chain on K states with rates Q_t = beta(t) Q on t in [0, 1].

    Args:
        Q: (K, K) base rate matrix (`masked_rates`, `uniform_rates` or any generator).
        schedule: "constant" (beta(t) = beta, B(t) = beta t) or "linear" (exp(-B(t)) falls linearly
            from 1 to `floor` at t = 1: B(t) = -log(1 - (1 - floor) t)).
        beta: the constant rate of "constant".  floor: exp(-B(1)) of "linear" (> 0).
        kind: "masked", "uniform" or "general" (which closed form `closed_form` may use).
    """

    def __init__(self, Q, *, schedule: str = "constant", beta: float = 1.0, floor: float = 1e-3,
                 kind: str = "general"):
        self.Q = check_rate_matrix(Q)
        if schedule not in ("constant", "linear"):
            raise ValueError(f"schedule must be 'constant' or 'linear', got {schedule!r}")
        if kind not in ("masked", "uniform", "general"):
            raise ValueError(f"kind must be 'masked', 'uniform' or 'general', got {kind!r}")
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a finite rate > 0, got {beta!r}")
        if not 0 < floor < 1:
            raise ValueError(f"floor must lie in (0, 1), got {floor!r}")
        self.schedule, self.beta, self.floor, self.kind = schedule, float(beta), float(floor), kind

    @classmethod
    def masked(cls, K: int, **kw) -> CTMC:
        """The absorbing (masked) chain on K states, mask = K - 1."""
        return cls(masked_rates(K), kind="masked", **kw)

    @classmethod
    def uniform(cls, K: int, **kw) -> CTMC:
        """The uniform chain on K states."""
        return cls(uniform_rates(K), kind="uniform", **kw)

    @property
    def K(self) -> int:
        return self.Q.shape[0]

    # time
    def B(self, t: float) -> float:
        """The integrated rate B(t) = int_0^t beta(u) du."""
        t = _time(t)
        return self.beta * t if self.schedule == "constant" else -math.log1p(-(1 - self.floor) * t)

    def rate(self, t: float) -> float:
        """beta(t) = B'(t)."""
        t = _time(t)
        return self.beta if self.schedule == "constant" else (1 - self.floor) / (1 - (1 - self.floor) * t)

    def Q_at(self, t: float) -> torch.Tensor:
        """Q_t = beta(t) Q."""
        return self.rate(t) * self.Q

    def alpha(self, t: float) -> float:
        """The probability that a token still carries its data value in the closed forms: exp(-B) for the
        masked kernel, exp(-K/(K-1) B) for the uniform one."""
        scale = self.K / (self.K - 1) if self.kind == "uniform" else 1.0
        return math.exp(-scale * self.B(t))

    # transitions
    def transition(self, s: float, t: float) -> torch.Tensor:
        """P_{s->t} = exp((B(t) - B(s)) Q) by the matrix exponential (s <= t), shape (K, K)."""
        if _time(s, "s") > _time(t):
            raise ValueError(f"transition runs forward: need s <= t, got s={s}, t={t}")
        return torch.linalg.matrix_exp((self.B(t) - self.B(s)) * self.Q)

    def closed_form(self, s: float, t: float) -> torch.Tensor:
        """P_{s->t} in closed form for the masked and uniform kernels (§12): with a = alpha_t / alpha_s,
        masked: a I + (1 - a) 1 e_mask^T on the data states (the mask stays); uniform: a I + (1 - a) 11^T / K."""
        if self.kind == "general":
            raise ValueError("closed_form needs kind 'masked' or 'uniform'; use transition() for a general Q")
        if _time(s, "s") > _time(t):
            raise ValueError(f"closed_form runs forward: need s <= t, got s={s}, t={t}")
        a, K = self.alpha(t) / self.alpha(s), self.K
        eye = torch.eye(K, dtype=torch.float64)
        if self.kind == "uniform":
            return a * eye + (1 - a) * torch.full((K, K), 1.0 / K, dtype=torch.float64)
        P = a * eye
        P[:, -1] += 1 - a
        P[-1] = 0.0
        P[-1, -1] = 1.0
        return P

    def marginal(self, p0: torch.Tensor, t: float) -> torch.Tensor:
        """p_t = p_0 P_{0->t}, for p0 of shape (K,) or (B, K)."""
        return _distribution(p0, self.K, "p0") @ self.transition(0.0, t)

    def master_equation(self, p0: torch.Tensor, times, *, substeps: int = 20) -> torch.Tensor:
        """Solve dp/dt = p Q_t (the master equation) by RK4 on the given increasing times; (len(times), K)."""
        p = _distribution(p0, self.K, "p0")
        times = [_time(t) for t in times]
        if any(b < a for a, b in zip(times, times[1:])):
            raise ValueError("times must be increasing")
        out = [p]
        for a, b in zip(times, times[1:]):
            p = _rk4(lambda t, q: q @ self.Q_at(t), p, a, b, substeps)
            out.append(p)
        return torch.stack(out)

    def simulate(self, x0: torch.Tensor, t: float, *, s: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Run the chain from states x0 (n,) at time s to time t >= s by Gillespie's algorithm in the clock B
        (a time change turns beta(t) Q into the homogeneous Q), returning the states at t, shape (n,)."""
        x = _tokens(x0, self.K, "x0").clone()
        if _time(s, "s") > _time(t):
            raise ValueError(f"simulate runs forward: need s <= t, got s={s}, t={t}")
        budget = torch.full(x.shape, self.B(t) - self.B(s), dtype=torch.float64)
        leave = -torch.diag(self.Q)                                  # total jump rate out of each state
        jump = (self.Q - torch.diag(torch.diag(self.Q))) / leave.clamp_min(1e-300)[:, None]
        active = leave[x] > 0
        while active.any():
            idx = active.nonzero().squeeze(1)
            wait = -torch.log1p(-rand((len(idx),), generator=generator, dtype=torch.float64)) / leave[x[idx]]
            budget[idx] -= wait
            moves = idx[budget[idx] > 0]
            if len(moves):
                u = rand((len(moves),), generator=generator, dtype=torch.float64)
                cdf = jump[x[moves]].cumsum(1)
                x[moves] = torch.searchsorted(cdf, u[:, None]).squeeze(1).clamp_max(self.K - 1)
            active = (budget > 0) & (leave[x] > 0)
        return x

    # the reverse process (§12: Bayes, ratio and flow views)
    def bayes_reverse(self, p_s: torch.Tensor, s: float, t: float) -> torch.Tensor:
        """The exact single reverse step R[j, i] = Pr(x_s = i | x_t = j) = P_{s->t}[i, j] p_s(i) / p_t(j), (K, K).
        Rows of states with p_t(j) = 0 are set to 0 (never visited)."""
        p_s = _distribution(p_s, self.K, "p_s")
        P = self.transition(s, t)
        p_t = p_s @ P
        R = (P * p_s[:, None]).T
        return torch.where(p_t[:, None] > 0, R / p_t[:, None].clamp_min(1e-300), torch.zeros_like(R))

    def reverse_rates(self, p_t: torch.Tensor, t: float) -> torch.Tensor:
        """The reverse-time generator R[j, i] = Q_t[i, j] p_t(i) / p_t(j) (i != j), rows summing to zero, (K, K)."""
        p_t = _distribution(p_t, self.K, "p_t")
        Qt = self.Q_at(t)
        R = (Qt * p_t[:, None]).T / p_t[:, None].clamp_min(1e-300)
        R = torch.where(p_t[:, None] > 0, R, torch.zeros_like(R))
        R = R - torch.diag(torch.diag(R))
        return R - torch.diag(R.sum(1))

    def flux(self, p_t: torch.Tensor, t: float) -> torch.Tensor:
        """The probability flux J[i, j] = p_t(i) Q_t[i, j] for i != j (zero diagonal): the flow view;
        dp_t(j)/dt = sum_i J[i, j] - sum_i J[j, i] (inflow minus outflow)."""
        J = _distribution(p_t, self.K, "p_t")[:, None] * self.Q_at(t)
        return J - torch.diag(torch.diag(J))

    def reverse_master(self, p0: torch.Tensor, times, *, substeps: int = 20) -> torch.Tensor:
        """Run the reverse chain from p_T (T = times[0], the largest) down the decreasing `times` with the exact
        reverse rates (built from the forward marginals of p0): dq/dtau = q R_{T - tau}.  Returns (len(times), K);
        it reproduces the forward marginals p_t when the rates are right."""
        times = [_time(t) for t in times]
        if any(b > a for a, b in zip(times, times[1:])):
            raise ValueError("times must be decreasing (the reverse process runs from noise to data)")
        p0 = _distribution(p0, self.K, "p0")
        q = self.marginal(p0, times[0])
        out = [q]
        for a, b in zip(times, times[1:]):
            # in reverse time u = -t: dq/du = q R_t, so dq/dt = -q R_t, integrated from a down to b
            q = _rk4(lambda t, v: -(v @ self.reverse_rates(self.marginal(p0, t), t)), q, a, b, substeps)
            out.append(q)
        return torch.stack(out)


def _rk4(f: Callable, y: torch.Tensor, a: float, b: float, n: int) -> torch.Tensor:
    """n classical Runge-Kutta steps of dy/dt = f(t, y) from t = a to t = b (b may be < a)."""
    h = (b - a) / n
    t = a
    for _ in range(n):
        k1 = f(t, y)
        k2 = f(t + h / 2, y + h / 2 * k1)
        k3 = f(t + h / 2, y + h / 2 * k2)
        k4 = f(t + h, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        t += h
    return y


def _time(t, name: str = "t") -> float:
    t = float(t)
    if not (0.0 <= t <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1] (0 = data, 1 = noise), got {t}")
    return t


def _distribution(p, K: int, name: str) -> torch.Tensor:
    p = torch.as_tensor(p, dtype=torch.float64)
    if p.shape[-1] != K or p.dim() > 2:
        raise ValueError(f"{name} must have shape (K,) or (B, K) with K = {K}, got {tuple(p.shape)}")
    if not torch.isfinite(p).all() or (p < -_TOL).any():
        raise ValueError(f"{name} must hold finite, non-negative probabilities")
    if (p.sum(-1) - 1).abs().max() > 1e-6:
        raise ValueError(f"{name} must sum to one along its last axis")
    return p


def _tokens(x, K: int, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer states (a long tensor), got {x.dtype}")
    x = x.long()
    if x.numel() and (x.min() < 0 or x.max() >= K):
        raise ValueError(f"{name} holds a state outside 0..{K - 1}")
    return x


# -- sequences: a data law known exactly ---------------------------------------------------------------------------
class MarkovLaw:
    """Sequences of L tokens from V symbols drawn by a Markov chain: x^1 ~ init, x^(i+1) ~ trans[x^i].

    Small enough to enumerate (V^L <= 4096), so every probability is exact.
    """

    def __init__(self, init, trans, L: int):
        self.init = _distribution(init, len(torch.as_tensor(init)), "init")
        V = len(self.init)
        self.trans = _distribution(trans, V, "trans")
        if self.trans.shape != (V, V):
            raise ValueError(f"trans must have shape ({V}, {V}), got {tuple(self.trans.shape)}")
        if not isinstance(L, int) or L < 1 or V ** L > 4096:
            raise ValueError(f"L must be an int >= 1 with V^L <= 4096 (here V = {V}), got {L!r}")
        self.V, self.L = V, L
        self.init, self.trans = self.init / self.init.sum(), self.trans / self.trans.sum(1, keepdim=True)
        self.sequences = torch.tensor(list(itertools.product(range(V), repeat=L)), dtype=torch.long)  # (V^L, L)
        self.probs = self.prob(self.sequences)

    @property
    def mask(self) -> int:
        """The mask token's id (one past the vocabulary)."""
        return self.V

    def prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact Pr(x) for sequences x (n, L)."""
        x = _tokens(x, self.V, "x")
        if x.dim() != 2 or x.shape[1] != self.L:
            raise ValueError(f"x must have shape (n, {self.L}), got {tuple(x.shape)}")
        p = self.init[x[:, 0]]
        for i in range(1, self.L):
            p = p * self.trans[x[:, i - 1], x[:, i]]
        return p

    def index(self, x: torch.Tensor) -> torch.Tensor:
        """The row of each sequence in `sequences` (base-V digits)."""
        w = self.V ** torch.arange(self.L - 1, -1, -1)
        return (x.long() * w).sum(1)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n sequences from the law, shape (n, L)."""
        u = rand((n, self.L), generator=generator, dtype=torch.float64)
        x = torch.searchsorted(self.init.cumsum(0), u[:, :1].contiguous()).squeeze(1).clamp_max(self.V - 1)
        out = [x]
        cdf = self.trans.cumsum(1)
        for i in range(1, self.L):
            x = torch.searchsorted(cdf[x], u[:, i:i + 1].contiguous()).squeeze(1).clamp_max(self.V - 1)
            out.append(x)
        return torch.stack(out, 1)

    def token_marginals(self) -> torch.Tensor:
        """Pr(x^i = v), shape (L, V)."""
        return torch.stack([torch.zeros(self.V, dtype=torch.float64).index_add_(0, self.sequences[:, i], self.probs)
                            for i in range(self.L)])

    def histogram(self, x: torch.Tensor) -> torch.Tensor:
        """The empirical law of samples x (n, L) over `sequences`, shape (V^L,)."""
        counts = torch.bincount(self.index(x), minlength=len(self.probs)).double()
        return counts / counts.sum()


def copy_law(L: int = 2) -> MarkovLaw:
    """L copies of one fair bit: x^1 ~ Bernoulli(1/2), x^i = x^1.  Total correlation (L - 1) ln 2."""
    return MarkovLaw([0.5, 0.5], torch.eye(2), L)


def kl(p: torch.Tensor, q: torch.Tensor) -> float:
    """KL(p || q) = sum p log(p / q) in nats over a finite set (inf where q = 0 < p)."""
    p, q = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(q, dtype=torch.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    for name, v in (("p", p), ("q", q)):
        if not torch.isfinite(v).all() or (v < -1e-12).any():
            raise ValueError(f"{name} must hold finite, non-negative probabilities")
    on = p > 0
    if (q[on] <= 0).any():
        return math.inf
    return float((p[on] * (p[on].log() - q[on].log())).sum())


def total_correlation(law: MarkovLaw) -> float:
    """TC = sum_i H(x^i) - H(x): the KL from the law to the product of its token marginals (nats)."""
    m = law.token_marginals()
    h_tokens = float(-(m[m > 0] * m[m > 0].log()).sum())
    p = law.probs[law.probs > 0]
    return h_tokens - float(-(p * p.log()).sum())


# -- masked diffusion on sequences -----------------------------------------------------------------------------------
def _alpha_linear(t: torch.Tensor) -> torch.Tensor:
    """The masked schedule of this module: alpha_t = 1 - t (each token kept with probability 1 - t)."""
    return 1 - t


def mask_tokens(x0: torch.Tensor, t, mask: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Forward masking: each token independently replaced by `mask` with probability 1 - alpha_t = t.
    t a float or (n,) tensor in [0, 1]."""
    x0 = torch.as_tensor(x0)
    if x0.dtype.is_floating_point or x0.dtype == torch.bool:
        raise TypeError(f"x0 must hold integer tokens (a long tensor), got {x0.dtype}")
    x0 = x0.long()
    if x0.numel() and (x0.min() < 0 or x0.max() >= mask):
        raise ValueError(f"x0 must hold tokens in 0..{mask - 1}; the mask id {mask} must not collide with a token")
    t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1) if torch.as_tensor(t).dim() else torch.as_tensor(float(t))
    if ((t < 0) | (t > 1)).any():
        raise ValueError("t must lie in [0, 1]")
    hide = rand(x0.shape, generator=generator, dtype=torch.float64) < 1 - _alpha_linear(t)
    return torch.where(hide, torch.full_like(x0, mask), x0)


def exact_denoiser(law: MarkovLaw) -> Callable[[torch.Tensor], torch.Tensor]:
    """The exact x0-prediction of masked diffusion: Pr(x0^i = v | the visible tokens of x_t), shape (n, L, V).

    It does not depend on t: masking hides tokens independently of their values, so the visible
    tokens are all x_t tells about x0.  Visible positions get a one-hot on their own token.  Parallel
    unmasking can reveal tokens the law never shows together (two copies that disagree); there no
    posterior exists, and the oracle answers with the unconditional token marginals Pr(x0^i = v).
    """
    def denoise(x_t: torch.Tensor) -> torch.Tensor:
        x_t = _tokens(x_t, law.V + 1, "x_t")
        seen = x_t != law.mask                                                   # (n, L)
        agree = (law.sequences[None] == x_t[:, None]) | ~seen[:, None]           # (n, S, L)
        w = law.probs[None] * agree.all(-1)                                      # (n, S)
        impossible = w.sum(1) <= 0
        w = torch.where(impossible[:, None], law.probs[None].expand_as(w), w)   # see the docstring
        w = w / w.sum(1, keepdim=True)
        onehot = torch.nn.functional.one_hot(law.sequences, law.V).double()    # (S, L, V)
        probs = torch.einsum("ns,slv->nlv", w, onehot)
        keep = torch.nn.functional.one_hot(x_t.clamp_max(law.V - 1), law.V).double()
        return torch.where(seen[..., None], keep, probs)
    return denoise


class MaskedDenoiser(torch.nn.Module):
    """An MDLM-style x0-prediction network: one-hot partially masked tokens (L x (V+1)) -> logits (L, V).

    Time-free, like the exact denoiser it learns.  Visible tokens are copied through (their
    prediction is their own token), the "carry-over" of MDLM's parameterization.
    """

    def __init__(self, V: int, L: int, width: int = 128, depth: int = 3):
        super().__init__()
        self.V, self.L = V, L
        layers, d = [], L * (V + 1)
        for _ in range(depth):
            layers += [torch.nn.Linear(d, width), torch.nn.SiLU()]
            d = width
        layers.append(torch.nn.Linear(d, L * V))
        self.net = torch.nn.Sequential(*layers)

    def logits(self, x_t: torch.Tensor) -> torch.Tensor:
        x_t = _tokens(x_t, self.V + 1, "x_t")                                     # tokens 0..V-1 and the mask V
        h = torch.nn.functional.one_hot(x_t, self.V + 1).float().flatten(1)
        return self.net(h).view(-1, self.L, self.V)

    def forward(self, x_t: torch.Tensor) -> torch.Tensor:
        """Probabilities (n, L, V), visible tokens carried over as one-hots."""
        probs = self.logits(x_t).softmax(-1).double()
        seen = x_t != self.V
        keep = torch.nn.functional.one_hot(x_t.clamp_max(self.V - 1).long(), self.V).double()
        return torch.where(seen[..., None], keep, probs)


def masked_elbo(model, x0: torch.Tensor, V: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """The masked-diffusion negative ELBO per sequence (nats), a weighted cross-entropy (MDLM):
    E_t [ -alpha_t' / (1 - alpha_t) * sum_{i masked} -log p_theta(x0^i | x_t) ] with alpha_t = 1 - t,
    so the weight is 1/t.  One t ~ U(0, 1) per sequence; returns the (n,) Monte Carlo terms.

    Args:
        model: a `MaskedDenoiser` (its logits are used) or any callable x_t -> probabilities (n, L, V).
        x0: (n, L) clean tokens in 0..V-1.  V: the vocabulary size (V is the mask id).
    """
    n = x0.shape[0]
    t = rand((n,), generator=generator, dtype=torch.float64).clamp_min(1e-6)
    x_t = mask_tokens(x0, t, V, generator=generator)
    if isinstance(model, MaskedDenoiser):
        logp_all = model.logits(x_t).log_softmax(-1)
    else:
        logp_all = model(x_t).clamp_min(1e-300).log()
    logp = logp_all.gather(-1, x0[..., None].long()).squeeze(-1)                # (n, L)
    hidden = (x_t == V).to(logp.dtype)
    return -(hidden * logp).sum(1) / t.to(logp.dtype)


def tempered(denoiser: Callable, temperature: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The denoiser's token probabilities raised to 1/temperature and renormalised (temperature 1: unchanged;
    below 1 sharper, toward the most likely token; above 1 flatter).  Visible tokens stay one-hots."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")

    def denoise(x_t: torch.Tensor) -> torch.Tensor:
        p = denoiser(x_t).double().clamp_min(1e-300) ** (1.0 / temperature)
        return p / p.sum(-1, keepdim=True)
    return denoise


def _unmask_prob(s: float, t: float) -> float:
    """Pr(a token masked at s is revealed by t < s) = (alpha_t - alpha_s) / (1 - alpha_s) = (s - t) / s."""
    return 1.0 if t == 0 else (s - t) / s


def sample_masked(denoiser: Callable, n: int, L: int, V: int, steps: int, *, fixed: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Ancestral masked-diffusion sampling on the uniform grid 1 = t_0 > ... > t_steps = 0.

    From s to t each masked token is revealed with probability (s - t)/s, its value drawn from the
    denoiser's Pr(x0^i | x_s); tokens revealed in one step are drawn independently of each other.
    `fixed` (L,) holds a token where the position is given (infilling) and -1 where it is free.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    x = torch.full((n, L), V, dtype=torch.long)
    if fixed is not None:
        fixed = torch.as_tensor(fixed).long()
        if fixed.shape != (L,) or (fixed >= V).any() or (fixed < -1).any():
            raise ValueError(f"fixed must have shape ({L},) with tokens in 0..{V - 1} or -1 for free positions")
        x = torch.where(fixed[None] >= 0, fixed[None].expand(n, L), x)
    grid = [1 - k / steps for k in range(steps + 1)]
    for s, t in zip(grid, grid[1:]):
        probs = denoiser(x)                                                       # (n, L, V)
        reveal = (x == V) & (rand((n, L), generator=generator, dtype=torch.float64) < _unmask_prob(s, t))
        u = rand((n, L, 1), generator=generator, dtype=torch.float64)
        value = torch.searchsorted(probs.cumsum(-1), u).squeeze(-1).clamp_max(V - 1)
        x = torch.where(reveal, value, x)
    return x


def sampler_law(denoiser: Callable, law: MarkovLaw, steps: int, *, fixed: torch.Tensor | None = None) -> torch.Tensor:
    """The exact law of `sample_masked`'s output over law.sequences, (V^L,), computed by propagating the
    distribution over all (V+1)^L partially masked sequences through the steps (no sampling).

    The denoiser is called once, on every partially masked sequence: like the sampler, it must not
    depend on time (the exact denoiser and `MaskedDenoiser` do not).
    """
    return sampler_laws(denoiser, law, (steps,), fixed=fixed)[steps]


def sampler_laws(denoiser: Callable, law: MarkovLaw, steps, *, fixed: torch.Tensor | None = None) -> dict:
    """`sampler_law` for several step counts at once, {k: law}, calling the denoiser only once."""
    steps = tuple(steps)
    if not steps or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in steps):
        raise ValueError(f"steps must be ints >= 1, got {steps!r}")
    V, L = law.V, law.L
    states, src, dst = _moves(V, L)
    masked = states == V
    with torch.no_grad():
        probs = denoiser(states).double()                                          # (S, L, V)
    y = states[dst]                                                                   # (P, L)
    hidden = masked[src]
    # position i of x becomes y_i with probability r * probs (revealed), 1 - r (still masked) or 1 (visible)
    revealed = hidden & (y < V)
    p_reveal = torch.where(revealed, probs[src[:, None], torch.arange(L)[None], y.clamp_max(V - 1)], torch.zeros(()))
    kept = (hidden & (y == V)).double()
    visible = (~hidden).double()
    start = torch.full((L,), V, dtype=torch.long)
    if fixed is not None:
        fixed = torch.as_tensor(fixed).long()
        if fixed.shape != (L,) or (fixed >= V).any() or (fixed < -1).any():
            raise ValueError(f"fixed must have shape ({L},) with tokens in 0..{V - 1} or -1 for free positions")
        start = torch.where(fixed >= 0, fixed, start)
    weights = (V + 1) ** torch.arange(L - 1, -1, -1)
    final = ~masked.any(1)
    laws = {}
    for k in steps:
        dist = torch.zeros(len(states), dtype=torch.float64)
        dist[int((start * weights).sum())] = 1.0
        grid = [1 - j / k for j in range(k + 1)]
        for s, t in zip(grid, grid[1:]):
            r = _unmask_prob(s, t)
            w = (r * p_reveal + (1 - r) * kept + visible).prod(-1)                      # (P,)
            dist = torch.zeros_like(dist).index_add_(0, dst, dist[src] * w)
        laws[k] = torch.zeros(len(law.probs), dtype=torch.float64)
        laws[k][law.index(states[final])] = dist[final]
    return laws


@functools.lru_cache(maxsize=8)
def _moves(V: int, L: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every partially masked sequence (S, L), and the moves x -> y the sampler can make (y agrees with x
    wherever x is visible: (2V+1)^L pairs in all) as index pairs (src, dst)."""
    states = torch.tensor(list(itertools.product(range(V + 1), repeat=L)), dtype=torch.long)
    masked = states == V
    src, dst = ((states[None] == states[:, None]) | masked[:, None, :]).all(-1).nonzero(as_tuple=True)
    return states, src, dst


# -- uniform diffusion on sequences (the second kernel of §12.2.2) --------------------------------------------------
def _q_keep(t) -> torch.Tensor:
    """alpha_t of the sequence processes of this module: 1 - t (a token keeps its value with this probability)."""
    return 1 - torch.as_tensor(t, dtype=torch.float64)


def uniform_tokens(x0: torch.Tensor, t, V: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Forward uniform corruption: each token kept with probability alpha_t = 1 - t, else redrawn uniformly from
    all V symbols (itself included), Cat(alpha_t x0 + (1 - alpha_t) 1/V).  t a float or (n,) tensor."""
    x0 = _tokens(x0, V, "x0")
    t = torch.as_tensor(t, dtype=torch.float64)
    t = t.reshape(-1, 1) if t.dim() else t
    if ((t < 0) | (t > 1)).any():
        raise ValueError("t must lie in [0, 1]")
    redraw = rand(x0.shape, generator=generator, dtype=torch.float64) < t
    noise = (rand(x0.shape, generator=generator, dtype=torch.float64) * V).long().clamp_max(V - 1)
    return torch.where(redraw, noise, x0)


def exact_uniform_denoiser(law: MarkovLaw) -> Callable[[torch.Tensor, float], torch.Tensor]:
    """Pr(x0^i = v | x_t) under uniform corruption at time t, shape (n, L, V): unlike masking, it depends on t,
    because a token that shows a value may or may not have been redrawn."""
    def denoise(x_t: torch.Tensor, t: float) -> torch.Tensor:
        x_t = _tokens(x_t, law.V, "x_t")
        a = float(_q_keep(t))
        lik = torch.where(law.sequences[None] == x_t[:, None], a + (1 - a) / law.V, (1 - a) / law.V).prod(-1)
        w = law.probs[None] * lik                                                  # (n, S)
        w = w / w.sum(1, keepdim=True)
        return torch.einsum("ns,slv->nlv", w, torch.nn.functional.one_hot(law.sequences, law.V).double())
    return denoise


def _uniform_reverse_kernel(V: int, s: float, t: float) -> torch.Tensor:
    """K[u, v, w] = Pr(x_t = w | x_s = u, x0 = v) for uniform corruption, t < s (Bayes on the two kernels)."""
    a_s, a_t = float(_q_keep(s)), float(_q_keep(t))
    eye = torch.eye(V, dtype=torch.float64)
    step = (a_s / a_t) * eye + (1 - a_s / a_t) / V if a_t > 0 else torch.full((V, V), 1.0 / V, dtype=torch.float64)
    from_x0 = a_t * eye + (1 - a_t) / V                                            # [v, w] = Pr(x_t = w | x0 = v)
    joint = from_x0[None, :, :] * step.T[:, None, :]                               # [u, v, w]: Pr(x_s=u | x_t=w) Pr(x_t=w | v)
    return joint / joint.sum(-1, keepdim=True)


def sample_uniform(denoiser: Callable, n: int, L: int, V: int, steps: int, *,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Ancestral sampling of uniform diffusion on the grid 1 = t_0 > ... > t_steps = 0: start from uniform tokens;
    each step draws every token independently from sum_v Pr(x0^i = v | x_s) Pr(x_t^i | x_s^i, x0^i = v)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    x = (rand((n, L), generator=generator, dtype=torch.float64) * V).long().clamp_max(V - 1)
    grid = [1 - k / steps for k in range(steps + 1)]
    for s, t in zip(grid, grid[1:]):
        probs = denoiser(x, s)                                                     # (n, L, V)
        kern = _uniform_reverse_kernel(V, s, t)[x]                                 # (n, L, V_x0, V_next)
        nxt = torch.einsum("nlv,nlvw->nlw", probs, kern)
        u = rand((n, L, 1), generator=generator, dtype=torch.float64)
        x = torch.searchsorted(nxt.cumsum(-1), u).squeeze(-1).clamp_max(V - 1)
    return x


def uniform_sampler_law(denoiser: Callable, law: MarkovLaw, steps: int) -> torch.Tensor:
    """The exact law of `sample_uniform`'s output over law.sequences (V^L,), by propagating the law over all V^L
    strings through the steps."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    S, V, L = law.sequences, law.V, law.L
    dist = torch.full((len(S),), 1.0 / len(S), dtype=torch.float64)
    grid = [1 - k / steps for k in range(steps + 1)]
    for s, t in zip(grid, grid[1:]):
        with torch.no_grad():
            probs = denoiser(S, s).double()                                         # (S, L, V)
        nxt = torch.einsum("xlv,xlvw->xlw", probs, _uniform_reverse_kernel(V, s, t)[S])   # (S, L, V)
        T = nxt[:, torch.arange(L)[None, :], S].prod(-1)                             # T[x, y] = prod_i nxt[x, i, y_i]
        dist = dist @ T
    return dist


class UniformDenoiser(torch.nn.Module):
    """An x0-prediction network for uniform diffusion: one-hot tokens (L x V) and t -> Pr(x0^i = v | x_t), (n, L, V).
    Unlike the masked denoiser it needs t: a visible value is trustworthy early and nearly random late."""

    def __init__(self, V: int, L: int, width: int = 128, depth: int = 3):
        super().__init__()
        self.V, self.L = V, L
        layers, d = [], L * V + 1
        for _ in range(depth):
            layers += [torch.nn.Linear(d, width), torch.nn.SiLU()]
            d = width
        layers.append(torch.nn.Linear(d, L * V))
        self.net = torch.nn.Sequential(*layers)

    def logits(self, x_t: torch.Tensor, t) -> torch.Tensor:
        x_t = _tokens(x_t, self.V, "x_t")                                         # no mask in uniform diffusion
        h = torch.nn.functional.one_hot(x_t, self.V).float().flatten(1)
        tt = torch.as_tensor(t, dtype=torch.float32).reshape(-1, 1).expand(len(h), 1)
        return self.net(torch.cat([h, tt], 1)).view(-1, self.L, self.V)

    def forward(self, x_t: torch.Tensor, t) -> torch.Tensor:
        return self.logits(x_t, t).softmax(-1).double()


def uniform_cross_entropy(model: UniformDenoiser, x0: torch.Tensor, V: int, *,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sequence cross-entropy of the x0-prediction at a random t ~ U(0, 1) under uniform corruption, (n,).
    Its minimiser is the exact per-token posterior Pr(x0^i | x_t), which is all the sampler needs."""
    t = rand((x0.shape[0],), generator=generator, dtype=torch.float64)
    x_t = uniform_tokens(x0, t, V, generator=generator)
    logp = model.logits(x_t, t).log_softmax(-1).gather(-1, x0[..., None].long()).squeeze(-1)
    return -logp.sum(1)
