"""Optimal transport (Ch. 7, and Ch. 5's reference): exact, entropic, Gaussian and Schroedinger-bridge couplings.

Exact discrete OT (§7.2.1).  For two clouds of n points with equal weights the quadratic-cost plan is a
permutation (Birkhoff), found by the Hungarian algorithm (scipy's linear_sum_assignment, O(n^3)):

    ot_permutation(x, y), ot_coupling(x, y), transport_cost(x, y)

For unequal weights or sizes, `exact_ot` solves the Kantorovich linear program min <C, P> over plans with
marginals a and b.  The solver is scipy's HiGHS (scipy.optimize.linprog, method="highs"): a maintained exact LP
solver in a core dependency (POT, whose network simplex is faster on large problems, is only a test dependency
here; tests hold the two against each other).  Equal weights and sizes go to the Hungarian algorithm.

Entropic OT (§7.2.2).  `sinkhorn` minimises <C, P> + eps KL(P || a b^T) by log-domain Sinkhorn on dual potentials
f, g (plan P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps)); batched over a leading dimension, on the inputs'
device, stable for small eps because it only ever takes logsumexp.

Gaussians (§7.2, §7.3).  `gaussian_w2` (the Bures-Wasserstein formula), `gaussian_ot_map` (the linear Brenier map),
`gaussian_eot` (the closed-form entropic plan = the static Schroedinger bridge with a Brownian reference),
`gaussian_bridge_marginal` and `gaussian_bridge_drift` (the dynamic bridge: its marginals and its SDE's drift),
`gaussian_flow_map` (the linear flow map of the independent-coupling linear-path velocity between two Gaussians,
the Ch. 5 rectified-flow map; §7.5).

Minibatch OT for flow matching (OT-CFM): `minibatch_ot_pairs(x_target, x_source)` re-pairs a batch by its exact OT
plan.  Course convention for transport: x_t = (1 - t) x_target + t x_source (source at t = 1), as in dl.reflow.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .utils import check_x, randn

__all__ = ["ot_permutation", "ot_coupling", "transport_cost", "cost_matrix", "exact_ot", "sinkhorn", "SinkhornResult",
           "minibatch_ot_pairs", "gaussian_w2", "gaussian_ot_map", "gaussian_eot", "gaussian_bridge_marginal",
           "gaussian_bridge_drift", "gaussian_flow_map", "sqrtm_psd", "bridge_sde"]


# -- checks ------------------------------------------------------------------------------------------------------
def _finite(x: torch.Tensor, name: str) -> torch.Tensor:
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return x


def _pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = check_x(x, "x"), check_x(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape (n, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("x and y must be finite (no NaN or inf)")
    return x.flatten(1), y.flatten(1)


def _clouds(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two clouds (..., n, D) and (..., m, D) with the same leading shape and dimension D, finite."""
    for v, name in ((x, "x"), (y, "y")):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
        if v.ndim < 2:
            raise ValueError(f"{name} must have shape (n, D) or (B, n, D), got {tuple(v.shape)}")
        _finite(v, name)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must have the same dimension D, got x (..., {x.shape[-1]}) and y (..., {y.shape[-1]})")
    if x.shape[:-2] != y.shape[:-2]:
        raise ValueError(f"x and y must have the same batch shape, got {tuple(x.shape[:-2])} and {tuple(y.shape[:-2])}")
    return x, y


def _weights(w, n: int, like: torch.Tensor, name: str) -> torch.Tensor:
    """Validated probability weights (..., n) on like's device and dtype; None: uniform 1/n."""
    if w is None:
        return torch.full(like.shape[:-2] + (n,), 1.0 / n, dtype=like.dtype, device=like.device)
    w = torch.as_tensor(w, dtype=like.dtype, device=like.device)
    if w.shape[-1:] != (n,):
        raise ValueError(f"{name} must have {n} entries (one per point), got shape {tuple(w.shape)}")
    _finite(w, name)
    if (w < 0).any():
        raise ValueError(f"{name} must be non-negative weights, got a minimum of {float(w.min()):.3g}")
    total = w.sum(-1)
    if not torch.allclose(total, torch.ones_like(total), atol=1e-6):
        raise ValueError(f"{name} must sum to one, got {float(total.flatten()[0]):.6g}")
    return w


def _positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


# -- exact OT ----------------------------------------------------------------------------------------------------
def cost_matrix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The squared-Euclidean cost C_ij = ||x_i - y_j||^2, (..., n, m), computed without cancellation."""
    x, y = _clouds(x, y)
    return ((x.unsqueeze(-2) - y.unsqueeze(-3)) ** 2).sum(-1)


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


def exact_ot(x: torch.Tensor, y: torch.Tensor, a=None, b=None) -> tuple[torch.Tensor, float]:
    """The exact quadratic-cost OT plan between sum_i a_i delta_{x_i} and sum_j b_j delta_{y_j} (§7.2.1):

        P* = argmin_{P >= 0, P 1 = a, P^T 1 = b} sum_ij P_ij ||x_i - y_j||^2,   OT = <C, P*>.

    Equal sizes with uniform weights: the Hungarian permutation (P = I[perm] / n).  Otherwise scipy's HiGHS
    solves the linear program (n m variables, n + m constraints: fine up to a few hundred points a side).
    Args: x (n, D), y (m, D); a (n,), b (m,) non-negative weights summing to one (None: uniform).
    Returns (plan (n, m) in float64 on x's device, cost).
    """
    x, y = _clouds(x, y)
    if x.ndim != 2:
        raise ValueError(f"exact_ot takes single clouds (n, D), got {tuple(x.shape)}")
    xd, yd = x.detach().double().cpu(), y.detach().double().cpu()
    n, m = xd.shape[0], yd.shape[0]
    a, b = _weights(a, n, xd, "a"), _weights(b, m, yd, "b")
    C = cost_matrix(xd, yd)
    if n == m and bool((a == 1.0 / n).all()) and bool((b == 1.0 / m).all()):
        P = torch.zeros(n, m, dtype=torch.float64)
        P[torch.arange(n), ot_permutation(xd, yd)] = 1.0 / n
    else:
        P = _highs_plan(C.numpy(), a.numpy(), b.numpy())
    return P.to(x.device), float((P * C).sum())


def _highs_plan(C: np.ndarray, a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """Solve the Kantorovich LP with scipy.optimize.linprog(method='highs'); P flattened row-major."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix, vstack

    n, m = C.shape
    idx = np.arange(n * m)
    rows = coo_matrix((np.ones(n * m), (idx // m, idx)), shape=(n, n * m))      # row sums = a
    cols = coo_matrix((np.ones(n * m), (idx % m, idx)), shape=(m, n * m))       # column sums = b
    res = linprog(C.ravel(), A_eq=vstack([rows, cols]).tocsr(), b_eq=np.concatenate([a, b]), bounds=(0, None),
                  method="highs")
    if res.status != 0:
        raise RuntimeError(f"the OT linear program failed: {res.message}")
    return torch.as_tensor(res.x.reshape(n, m)).clamp_min(0.0)


# -- entropic OT: log-domain Sinkhorn ----------------------------------------------------------------------------
@dataclass
class SinkhornResult:
    """What `sinkhorn` returns (tensors with the batch shape of the inputs in front).

    plan (..., n, m); cost <C, P> (...,); objective <C, P> + eps KL(P || a b^T) (...,); f (..., n), g (..., m)
    the dual potentials; n_iter the iterations run; marginal_err max_batch ||P 1 - a||_1 (the column marginal
    is exact after each g-update); converged marginal_err <= tol.
    """

    plan: torch.Tensor
    cost: torch.Tensor
    objective: torch.Tensor
    f: torch.Tensor
    g: torch.Tensor
    n_iter: int
    marginal_err: float
    converged: bool


def sinkhorn(x: torch.Tensor, y: torch.Tensor, eps: float, a=None, b=None, *, tol: float = 1e-6,
             max_iter: int = 10000, check_every: int = 10) -> SinkhornResult:
    """Entropic OT by log-domain Sinkhorn (§7.2.2): min_P <C, P> + eps KL(P || a b^T), C_ij = ||x_i - y_j||^2.

    The plan has the form P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps) (the book's u(x) e^{-c/eps} v(y) p p), and
    the potentials alternate so that each marginal holds in turn:

        f_i <- -eps log sum_j b_j exp((g_j - C_ij) / eps)      (rows sum to a)
        g_j <- -eps log sum_i a_i exp((f_i - C_ij) / eps)      (columns sum to b)

    Only logsumexp is taken, so nothing overflows at small eps.  Stops when ||P 1 - a||_1 <= tol (checked every
    `check_every` iterations) or after max_iter.  Args: x (n, D) or (B, n, D), y (m, D) or (B, m, D); eps > 0;
    a, b weights (None: uniform).  Computes in the inputs' dtype (use float64 for eps below ~1e-2) and device.
    """
    x, y = _clouds(x, y)
    eps = _positive(eps, "eps")
    tol, max_iter = _positive(tol, "tol"), int(_positive(max_iter, "max_iter"))
    C = cost_matrix(x, y)
    log_a = _weights(a, x.shape[-2], x, "a").log()
    log_b = _weights(b, y.shape[-2], y, "b").log()
    K = -C / eps                                   # log of the Gibbs kernel e^{-C/eps}
    u, v = torch.zeros_like(log_a), torch.zeros_like(log_b)       # u = f / eps, v = g / eps
    err, it = float("inf"), 0
    while it < max_iter:
        it += 1
        u = -torch.logsumexp(K + (v + log_b).unsqueeze(-2), dim=-1)    # rows:    sum_j P_ij = a_i
        v = -torch.logsumexp(K + (u + log_a).unsqueeze(-1), dim=-2)    # columns: sum_i P_ij = b_j
        if it % check_every == 0 or it == max_iter:
            err = _row_error(K, u, v, log_a, log_b)
            if err <= tol:
                break
    log_P = K + (u + log_a).unsqueeze(-1) + (v + log_b).unsqueeze(-2)
    P = log_P.exp()
    cost = (P * C).sum((-2, -1))
    kl = (P * (log_P - log_a.unsqueeze(-1) - log_b.unsqueeze(-2))).sum((-2, -1))
    return SinkhornResult(P, cost, cost + eps * kl, eps * u, eps * v, it, err, err <= tol)


def _row_error(K, u, v, log_a, log_b) -> float:
    """max over the batch of ||P 1 - a||_1 (the columns are exact right after a v-update)."""
    rows = torch.logsumexp(K + (v + log_b).unsqueeze(-2), dim=-1) + u + log_a
    return float((rows.exp() - log_a.exp()).abs().sum(-1).max())


# -- minibatch OT coupling for flow matching ---------------------------------------------------------------------
def minibatch_ot_pairs(x_target: torch.Tensor, x_source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OT-CFM's pairing: re-order the source batch by the exact OT plan of the batch, (x_target, x_source[perm]).

    perm is ot_permutation(x_target, x_source): target i is paired with source perm[i] (applying the inverse,
    x_source[argsort(perm)], is a real bug: a random-looking coupling, costlier than independent pairs).
    The pairs' cost (1/B) sum ||x_target_i - x_source_perm(i)||^2 is never above the unpaired batch's.
    """
    return x_target, x_source[ot_permutation(x_target, x_source)]


# -- Gaussians: W2, the OT map, the entropic plan, the bridge --------------------------------------------------
def _spd(S, name: str, dim: int | None = None) -> torch.Tensor:
    S = torch.as_tensor(S, dtype=torch.float64)
    if S.ndim == 0:
        S = S.reshape(1, 1)
    if S.ndim != 2 or S.shape[0] != S.shape[1] or (dim is not None and S.shape[0] != dim):
        raise ValueError(f"{name} must be a square (D, D) covariance" + (f" with D = {dim}" if dim else "")
                         + f", got shape {tuple(S.shape)}")
    _finite(S, name)
    if not torch.allclose(S, S.T, atol=1e-10) or torch.linalg.eigvalsh(S).min() <= 0:
        raise ValueError(f"{name} must be symmetric positive definite")
    return S


def _mean(m, name: str, dim: int) -> torch.Tensor:
    m = torch.as_tensor(m, dtype=torch.float64).reshape(-1)
    if m.shape != (dim,):
        raise ValueError(f"{name} must have {dim} entries (the covariances' dimension), got {tuple(m.shape)}")
    return _finite(m, name)


def _gauss(m0, S0, m1, S1):
    S0 = _spd(S0, "S0")
    S1 = _spd(S1, "S1", S0.shape[0])
    return _mean(m0, "m0", S0.shape[0]), S0, _mean(m1, "m1", S0.shape[0]), S1


def sqrtm_psd(S: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric PSD matrix (eigen-decomposition, float64)."""
    w, U = torch.linalg.eigh(torch.as_tensor(S, dtype=torch.float64))
    return (U * w.clamp_min(0).sqrt()) @ U.T


def gaussian_w2(m0, S0, m1, S1) -> float:
    """W2 between N(m0, S0) and N(m1, S1) in closed form (the Bures-Wasserstein formula, §7.2.1):

        W2^2 = ||m0 - m1||^2 + tr S0 + tr S1 - 2 tr (S0^{1/2} S1 S0^{1/2})^{1/2}.

    In 1-D: W2^2 = (m0 - m1)^2 + (s0 - s1)^2.  Args: means (D,), covariances (D, D) (a number in 1-D).
    """
    m0, S0, m1, S1 = _gauss(m0, S0, m1, S1)
    r0 = sqrtm_psd(S0)
    w2sq = ((m0 - m1) ** 2).sum() + S0.trace() + S1.trace() - 2 * sqrtm_psd(r0 @ S1 @ r0).trace()
    return float(w2sq.clamp_min(0).sqrt())


def gaussian_ot_map(m0, S0, m1, S1) -> tuple[torch.Tensor, torch.Tensor]:
    """The Brenier (OT) map from N(m0, S0) to N(m1, S1): T(x) = m1 + A (x - m0), returned as (A, b = m1 - A m0), with

        A = S0^{-1/2} (S0^{1/2} S1 S0^{1/2})^{1/2} S0^{-1/2},   symmetric positive definite (a convex potential's
        Hessian; it pushes S0 to S1: A S0 A = S1).
    """
    m0, S0, m1, S1 = _gauss(m0, S0, m1, S1)
    r0 = sqrtm_psd(S0)
    r0_inv = torch.linalg.inv(r0)
    A = r0_inv @ sqrtm_psd(r0 @ S1 @ r0) @ r0_inv
    A = 0.5 * (A + A.T)
    return A, m1 - A @ m0


def gaussian_eot(m0, S0, m1, S1, sigma2: float) -> torch.Tensor:
    """The cross-covariance C = Cov(X0, X1) of the optimal entropic plan between N(m0, S0) and N(m1, S1) (§7.3.1).

    The plan minimises E||X0 - X1||^2 + 2 sigma2 KL(pi || N(m0, S0) x N(m1, S1)), which is also the static
    Schroedinger bridge with the Brownian reference sigma dW on [0, 1] (reference transition
    N(x1; x0, sigma2 I), so EOT's eps = 2 sigma2).  The plan is Gaussian with this cross-covariance
    (Janati et al. 2020; Bunne et al. 2023):

        C = 1/2 (S0^{1/2} D S0^{-1/2} - sigma2 I),   D = (4 S0^{1/2} S1 S0^{1/2} + sigma2^2 I)^{1/2}.

    sigma2 -> 0: the OT plan (C = S0 A); sigma2 -> infinity: C -> 0, the independent coupling.
    """
    _, S0, _, S1 = _gauss(m0, S0, m1, S1)
    s2 = _positive(sigma2, "sigma2")
    r0 = sqrtm_psd(S0)
    eye = torch.eye(S0.shape[0], dtype=torch.float64)
    D = sqrtm_psd(4 * r0 @ S1 @ r0 + s2 ** 2 * eye)
    return 0.5 * (r0 @ D @ torch.linalg.inv(r0) - s2 * eye)


def gaussian_bridge_marginal(m0, S0, m1, S1, sigma2: float, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of the Gaussian Schroedinger bridge at time t in [0, 1] (§7.2.3, §7.3.1).

    The bridge is the static plan (gaussian_eot) with Brownian bridges in between:
    X_t = (1 - t) X0 + t X1 + sqrt(sigma2 t (1 - t)) Z, so
        m_t = (1 - t) m0 + t m1,   S_t = (1 - t)^2 S0 + t^2 S1 + t (1 - t) (C + C^T) + sigma2 t (1 - t) I.
    """
    m0, S0, m1, S1 = _gauss(m0, S0, m1, S1)
    t = _unit_time(t)
    C = gaussian_eot(m0, S0, m1, S1, sigma2)
    eye = torch.eye(S0.shape[0], dtype=torch.float64)
    S_t = (1 - t) ** 2 * S0 + t ** 2 * S1 + t * (1 - t) * (C + C.T) + sigma2 * t * (1 - t) * eye
    return (1 - t) * m0 + t * m1, S_t


def gaussian_bridge_drift(m0, S0, m1, S1, sigma2: float, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The drift u_t(x) = K x + k of the bridge's SDE dX = u_t(X) dt + sqrt(sigma2) dW from t = 0 to 1 (§7.2.3).

    The Markov process with the bridge's law follows the Brownian bridge's pull towards the expected end point,
    u_t(x) = (E[X1 | X_t = x] - x) / (1 - t), linear for Gaussians:
        E[X1 | X_t = x] = m1 + ((1 - t) C^T + t S1) S_t^{-1} (x - m_t).
    Returns (K (D, D), k (D,)), for t in [0, 1).
    """
    m0, S0, m1, S1 = _gauss(m0, S0, m1, S1)
    t = _unit_time(t)
    if t >= 1:
        raise ValueError(f"t must be below 1 for the drift (it pins X at t = 1), got {t}")
    C = gaussian_eot(m0, S0, m1, S1, sigma2)
    m_t, S_t = gaussian_bridge_marginal(m0, S0, m1, S1, sigma2, t)
    G = ((1 - t) * C.T + t * S1) @ torch.linalg.inv(S_t)
    eye = torch.eye(S0.shape[0], dtype=torch.float64)
    K = (G - eye) / (1 - t)
    return K, (m1 - G @ m_t) / (1 - t)


def bridge_sde(drift, x_start: torch.Tensor, sigma2: float, n_steps: int = 100, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Euler-Maruyama for dX = u_t(X) dt + sqrt(sigma2) dW from t = 0 to t = 1 (the bridge's controlled SDE, §7.2.3).

    drift(x (B, D), t float) -> (B, D), the bridge's Markov drift (bounded up to t = 1 for a Gaussian bridge).
    Returns the path (n_steps + 1, B, D), time-major.  Noise is drawn through utils.randn on the generator.
    """
    x = check_x(x_start, "x_start")
    s2, h = _positive(sigma2, "sigma2"), 1.0 / int(_positive(n_steps, "n_steps"))
    path = [x]
    for k in range(n_steps):
        x = x + h * drift(x, k * h) + math.sqrt(s2 * h) * randn(x.shape, generator=generator, dtype=x.dtype,
                                                                   device=x.device)
        path.append(x)
    return torch.stack(path)


def _unit_time(t) -> float:
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1], got {t}")
    return t


def gaussian_flow_map(m0, S0, m1, S1, n_steps: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """The flow map source -> target of the linear-path velocity with INDEPENDENT pairs between two Gaussians (§7.5).

    Course convention: target N(m0, S0) at t = 0, source N(m1, S1) at t = 1, x_t = (1 - t) x0 + t x1 with x0, x1
    independent (Ch. 5's rectified flow, round 0).  The marginal velocity is affine,
        v_t(x) = (m1 - m0) + B_t (x - m_t),   B_t = (t S1 - (1 - t) S0) S_t^{-1},  S_t = (1 - t)^2 S0 + t^2 S1,
    so the map x1 -> x0 is x0 = m0 + M (x1 - m1) with dM/dt = B_t M, M(1) = I, integrated from t = 1 to 0 by RK4.
    It pushes S1 to S0; it is the OT map exactly when M is symmetric (Brenier), e.g. when S0 and S1 commute.
    Returns (M (D, D), b = m0 - M m1).
    """
    m0, S0, m1, S1 = _gauss(m0, S0, m1, S1)

    def B(t: float) -> torch.Tensor:
        S_t = (1 - t) ** 2 * S0 + t ** 2 * S1
        return (t * S1 - (1 - t) * S0) @ torch.linalg.inv(S_t)

    M, h = torch.eye(S0.shape[0], dtype=torch.float64), -1.0 / n_steps
    for k in range(n_steps):                       # RK4 on dM/dt = B_t M from t = 1 down to t = 0
        t = 1.0 + k * h
        k1 = B(t) @ M
        k2 = B(t + h / 2) @ (M + h / 2 * k1)
        k3 = B(t + h / 2) @ (M + h / 2 * k2)
        k4 = B(t + h) @ (M + h * k3)
        M = M + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return M, m0 - M @ m1
