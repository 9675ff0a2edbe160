"""Chapter 07 (optimal transport and the Schroedinger bridge): the checks of §7.2-7.5 and the package's versions
later cells fall back on.

Kinds: implement-and-reuse (sinkhorn_step, bridge_sample, ot_pairing: later cells call the learner's function
through `use`), derivations checked numerically (w2_1d, gaussian_ot_map), a prediction (large_eps) and a
find-the-bug (ot_pairing: the inverse-permutation bug an OT-CFM library once shipped).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .. import ot
from ..utils import randn
from ._base import WrongAnswer, as_array, as_scalar, call, checker, close, fmt, make_use

__all__ = ["check_sinkhorn_step", "check_w2_1d", "check_gaussian_ot_map", "check_large_eps", "check_bridge_sample",
           "check_ot_pairing", "use"]


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _shape(got: Any, want: torch.Tensor, what: str) -> None:
    a = as_array(got)
    if a.shape != tuple(want.shape):
        raise WrongAnswer(f"{what} should have shape {tuple(want.shape)}, yours has shape {a.shape}")


# -- 1. one log-domain Sinkhorn iteration (implement-and-reuse) ----------------------------------------------------
def _sinkhorn_step(f: torch.Tensor, g: torch.Tensor, C: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                   eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    f = -eps * torch.logsumexp(b.log()[None, :] + (g[None, :] - C) / eps, dim=1)
    g = -eps * torch.logsumexp(a.log()[:, None] + (f[:, None] - C) / eps, dim=0)
    return f, g


def _sinkhorn_cases():
    out = []
    for seed, (n, m), eps, shift in ((71, (5, 4), 0.5, 1.0), (72, (6, 7), 0.002, 2.5)):
        x = randn((n, 2), generator=_g(seed), dtype=torch.float64)
        y = randn((m, 2), generator=_g(seed + 10), dtype=torch.float64) + shift
        a = torch.rand(n, generator=_g(seed + 20), dtype=torch.float64) + 0.2
        b = torch.rand(m, generator=_g(seed + 30), dtype=torch.float64) + 0.2
        f = 0.3 * randn((n,), generator=_g(seed + 40), dtype=torch.float64)
        g = 0.3 * randn((m,), generator=_g(seed + 50), dtype=torch.float64)
        out.append((f, g, ot.cost_matrix(x, y), a / a.sum(), b / b.sum(), eps))
    return out


@checker("sinkhorn_step", "07")
def check_sinkhorn_step(fn: Any) -> tuple[bool, str]:
    """fn(f (n,), g (m,), C (n, m), a (n,), b (m,), eps) -> (f_new, g_new): one Sinkhorn iteration on the dual
    potentials of the plan P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps): first f so the rows sum to a, then g
    (with the new f) so the columns sum to b."""
    for f, g, C, a, b, eps in _sinkhorn_cases():
        got = call(fn, f, g, C, a, b, eps)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise WrongAnswer("return the pair (f_new, g_new)")
        want = _sinkhorn_step(f, g, C, a, b, eps)
        if close(got[0], want[0], 1e-8, 1e-10) and close(got[1], want[1], 1e-8, 1e-10):
            continue
        _shape(got[0], want[0], "f_new")
        _shape(got[1], want[1], "g_new")
        fa, ga = as_array(got[0]), as_array(got[1])
        if not (torch.isfinite(torch.as_tensor(fa)).all() and torch.isfinite(torch.as_tensor(ga)).all()):
            return False, (f"at eps = {eps} your potentials contain inf or NaN: exp(-C / eps) underflows to 0 for small "
                           "eps. Stay in the log domain: torch.logsumexp never forms the small numbers.")
        if close(fa, -want[0], 1e-8, 1e-10):
            return False, "f has the wrong sign: the update is minus eps times a log-sum-exp."
        nw = -eps * torch.logsumexp((g[None, :] - C) / eps, dim=1)
        if close(fa, nw, 1e-8, 1e-10):
            return False, ("the weights b_j are missing inside the sum over j (with unequal weights the rows no longer "
                           "sum to a): add log b to the exponent.")
        if close(fa, -eps * torch.logsumexp(b.log()[None, :] + (g[None, :] - C), dim=1), 1e-8, 1e-10):
            return False, "divide (g_j - C_ij) by eps inside the exponent; the result is then scaled back by eps."
        if close(fa, want[0], 1e-8, 1e-10):
            jac = -eps * torch.logsumexp(a.log()[:, None] + (f[:, None] - C) / eps, dim=0)
            if close(ga, jac, 1e-8, 1e-10):
                return False, ("f is right, but g used the OLD f: Sinkhorn alternates, so g is computed from the f "
                               "just updated (that is what makes the columns exact after each step).")
            return False, f"f is right; g should be {fmt(want[1])}, got {fmt(ga)}."
        return False, f"for n = {C.shape[0]}, m = {C.shape[1]}, eps = {eps}: expected f = {fmt(want[0])}, got {fmt(fa)}."
    return True, "one Sinkhorn iteration matches, with unequal weights and sizes, down to eps = 0.002."


# -- 2. W2 between two 1-D Gaussians (derivation, a number) ------------------------------------------------------
W2_1D = {"m0": 1.0, "s0": 2.0, "m1": -0.5, "s1": 0.5}


@checker("w2_1d", "07")
def check_w2_1d(answer: Any) -> tuple[bool, str]:
    """answer: the squared distance W2^2 between N(1, 2^2) and N(-0.5, 0.5^2) (standard deviations 2 and 0.5)."""
    got = as_scalar(call(answer), "W2^2, one number")
    want = ot.gaussian_w2([W2_1D["m0"]], W2_1D["s0"] ** 2, [W2_1D["m1"]], W2_1D["s1"] ** 2) ** 2
    if abs(got - want) < 1e-6:
        return True, ("W2^2 = (m0 - m1)^2 + (s0 - s1)^2 = 2.25 + 2.25: the monotone map x -> m1 + (s1/s0)(x - m0) "
                      "is the OT map in 1-D.")
    dm2 = (W2_1D["m0"] - W2_1D["m1"]) ** 2
    if abs(got - want ** 0.5) < 1e-6:
        return False, "that is W2 itself; the question asks for its square W2^2."
    if abs(got - (dm2 + (W2_1D["s0"] ** 2 - W2_1D["s1"] ** 2) ** 2)) < 1e-6:
        return False, "you took the difference of the variances; the formula uses the standard deviations (s0 - s1)^2."
    if abs(got - (dm2 + W2_1D["s0"] ** 2 + W2_1D["s1"] ** 2)) < 1e-6:
        return False, ("that is E(X - Y)^2 for INDEPENDENT X and Y: the independent coupling's cost, an upper bound. "
                       "The OT coupling moves each quantile to the same quantile, Y = m1 + (s1/s0)(X - m0).")
    if abs(got - dm2) < 1e-6:
        return False, "only the means moved; the spreads differ too and reshaping costs (s0 - s1)^2."
    return False, (f"{got:.4g} is not W2^2 here. It has two terms: one for moving the mean, one for reshaping the "
                   "spread.")


# -- 3. the OT map between two Gaussians (derivation, a function) ------------------------------------------------
def _ot_map_cases():
    S0 = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)
    S1 = torch.tensor([[0.5, -0.2], [-0.2, 1.5]], dtype=torch.float64)
    return [(torch.tensor([0.0, 1.0], dtype=torch.float64), S0, torch.tensor([2.0, -1.0], dtype=torch.float64), S1),
            (torch.tensor([1.0, 0.0], dtype=torch.float64), torch.diag(torch.tensor([2.0, 0.5], dtype=torch.float64)),
             torch.tensor([0.0, 0.5], dtype=torch.float64), torch.diag(torch.tensor([0.5, 1.0], dtype=torch.float64)))]


@checker("gaussian_ot_map", "07")
def check_gaussian_ot_map(fn: Any) -> tuple[bool, str]:
    """fn(m0 (D,), S0 (D, D), m1 (D,), S1 (D, D)) -> (A (D, D), b (D,)): the OT map T(x) = A x + b from N(m0, S0)
    to N(m1, S1) for the quadratic cost (dl.ot.sqrtm_psd gives symmetric square roots)."""
    for m0, S0, m1, S1 in _ot_map_cases():
        got = call(fn, m0, S0, m1, S1)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise WrongAnswer("return the pair (A, b) with T(x) = A x + b")
        A_want, b_want = ot.gaussian_ot_map(m0, S0, m1, S1)
        A, b = (torch.as_tensor(as_array(v)) for v in got)
        if close(A, A_want, 1e-6, 1e-8) and close(b, b_want, 1e-6, 1e-8):
            continue
        _shape(A, A_want, "A")
        _shape(b, b_want, "b")
        if close(A, A_want, 1e-6, 1e-8):
            if close(b, m1 - m0, 1e-6, 1e-8):
                return False, "A is right; b = m1 - m0 forgets that A moves m0 too: T(m0) must be m1, so b = m1 - A m0."
            return False, f"A is right; b should make T(m0) = m1: expected {fmt(b_want)}, got {fmt(b)}."
        r0 = ot.sqrtm_psd(S0)
        if close(A, ot.sqrtm_psd(S1) @ torch.linalg.inv(r0), 1e-6, 1e-8):
            return False, ("A = S1^(1/2) S0^(-1/2) pushes N(0, S0) to N(0, S1) but is not symmetric: it is not the "
                           "gradient of a convex function (Brenier), so it is a transport map, not the optimal one.")
        if close(A, torch.linalg.inv(A_want), 1e-6, 1e-8) or close(A, ot.gaussian_ot_map(m1, S1, m0, S0)[0], 1e-6, 1e-8):
            return False, "that A maps N(m1, S1) back to N(m0, S0): the direction is reversed."
        if close(A, (S1 / S0).nan_to_num(0.0).sqrt(), 1e-6, 1e-8) or close(A, torch.diag((S1.diag() / S0.diag()).sqrt()),
                                                                           1e-6, 1e-8):
            return False, ("entry-wise square roots of S1 / S0 work only for diagonal covariances; with correlations "
                           "use matrix square roots.")
        return False, f"in D = {S0.shape[0]}: expected A = {fmt(A_want)}, got {fmt(A)}."
    return True, "A = S0^(-1/2) (S0^(1/2) S1 S0^(1/2))^(1/2) S0^(-1/2), b = m1 - A m0: symmetric, and A S0 A = S1."


# -- 4. what entropic OT becomes for large eps (predict-then-run) ------------------------------------------------
_WHY4 = ("As eps grows the KL term dominates the cost: the plan closest to a b^T in KL is a b^T itself, so every "
         "source point spreads its mass over all targets, in proportion to their weights (§7.3.2, the other limit).")


@checker("large_eps", "07")
def check_large_eps(answer: Any) -> tuple[bool, str]:
    """answer: 'a' (the exact OT plan), 'b' (the independent plan a b^T) or 'c' (Sinkhorn breaks down): what the
    entropic plan tends to as eps grows without bound."""
    got = call(answer)
    key = str(got).strip().strip("()").strip().lower() if isinstance(got, str) else None
    if key not in ("a", "b", "c"):
        raise WrongAnswer(f"answer with one of the letters 'a', 'b' or 'c' (you gave {got!r})")
    if key == "b":
        return True, "right: the independent coupling. " + _WHY4
    if key == "a":
        return False, "recorded 'a'; eps -> 0 gives the OT plan; eps -> infinity the opposite end, the independent plan. " + _WHY4
    return False, ("recorded 'c'; large eps is the easy case: exp(-C / eps) is close to 1 and Sinkhorn converges in a "
                   "few iterations (small eps is the hard one). " + _WHY4)


# -- 5. a point on the Brownian bridge (implement-and-reuse) -----------------------------------------------------
def _bridge_sample(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, z: torch.Tensor, sigma2: float) -> torch.Tensor:
    tt = t[:, None]
    return (1 - tt) * x0 + tt * x1 + (sigma2 * tt * (1 - tt)).sqrt() * z


@checker("bridge_sample", "07")
def check_bridge_sample(fn: Any) -> tuple[bool, str]:
    """fn(x0 (B, D), x1 (B, D), t (B,), z (B, D), sigma2) -> (B, D): the point at time t of the Brownian bridge
    (reference sqrt(sigma2) dW) pinned at x0 for t = 0 and at x1 for t = 1, built from the standard normal z."""
    g = _g(75)
    x0, x1, z = (randn((6, 3), generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.tensor([0.05, 0.2, 0.4, 0.5, 0.7, 0.9], dtype=torch.float64)
    sigma2 = 0.7
    got = call(fn, x0, x1, t, z, sigma2)
    want = _bridge_sample(x0, x1, t, z, sigma2)
    if close(got, want):
        return True, "x_t = (1 - t) x0 + t x1 + sqrt(sigma2 t (1 - t)) z: pinned at both ends, widest at t = 1/2."
    _shape(got, want, "x_t")
    a, tt = as_array(got), t[:, None]
    mean = (1 - tt) * x0 + tt * x1
    if close(a, tt * x0 + (1 - tt) * x1 + (sigma2 * tt * (1 - tt)).sqrt() * z):
        return False, "the ends are swapped: at t = 0 the bridge sits at x0, so x0 carries the weight 1 - t."
    if close(a, mean + (sigma2 * tt).sqrt() * z):
        return False, ("the noise grows like sigma2 t, as for free Brownian motion; pinned at t = 1 it must vanish "
                       "there too: the bridge's variance is sigma2 t (1 - t).")
    if close(a, mean + (tt * (1 - tt)).sqrt() * z):
        return False, "the reference's variance sigma2 is missing from the noise: the variance is sigma2 t (1 - t)."
    if close(a, mean + sigma2 * tt * (1 - tt) * z):
        return False, "sigma2 t (1 - t) is the VARIANCE; z needs the standard deviation, its square root."
    return False, f"expected {fmt(want)}, got {fmt(got)}."


# -- 6. the inverse-permutation bug (find-the-bug) ---------------------------------------------------------------
def _ot_pairing(x_target: torch.Tensor, x_source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return ot.minibatch_ot_pairs(x_target, x_source)


def _as_rows(v: Any) -> list[tuple[float, ...]]:
    return sorted(map(tuple, as_array(v).round(10).tolist()))


@checker("ot_pairing", "07")
def check_ot_pairing(fn: Any) -> tuple[bool, str]:
    """fn(x_target (B, D), x_source (B, D)) -> (x_target', x_source'): the batch re-paired so that row i of the two
    outputs is a pair of the batch's exact OT plan (the same points, in pairs)."""
    g = _g(76)
    xt = randn((12, 2), generator=g, dtype=torch.float64)
    xs = randn((12, 2), generator=g, dtype=torch.float64) + torch.tensor([2.0, 0.0], dtype=torch.float64)
    got = call(fn, xt.clone(), xs.clone())
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise WrongAnswer("return the pair (x_target', x_source')")
    a, b = (torch.as_tensor(as_array(v)) for v in got)
    _shape(a, xt, "x_target'")
    _shape(b, xs, "x_source'")
    if _as_rows(a) != _as_rows(xt) or _as_rows(b) != _as_rows(xs):
        return False, "the outputs must hold the same points as the inputs (re-ordered), not new or repeated ones."
    best = ot.transport_cost(*ot.minibatch_ot_pairs(xt, xs))
    cost = ot.transport_cost(a, b)
    if abs(cost - best) < 1e-9:
        return True, (f"the pairs cost {cost:.3f}, the batch's OT cost (independent pairs: "
                      f"{ot.transport_cost(xt, xs):.3f}).")
    perm = ot.ot_permutation(xt, xs)
    if torch.allclose(a, xt) and torch.allclose(b, xs[perm.argsort()]):
        return False, ("this is the inverse permutation: ot_permutation pairs target i with source perm[i], so the "
                       "source batch is indexed by perm itself, x_source[perm]. The inverse pairs at random, "
                       f"cost {cost:.3f} against {best:.3f}.")
    if torch.allclose(b, xs) and torch.allclose(a, xt[perm]):
        return False, ("you re-ordered the targets by perm, which pairs target perm[i] with source i: the inverse "
                       "pairing. Keep the targets and index the sources by perm.")
    if torch.allclose(a, xt) and torch.allclose(b, xs):
        return False, f"the batch is unchanged: independent pairs cost {cost:.3f}, the OT pairs {best:.3f}."
    return False, f"your pairs cost {cost:.3f}, above the batch's OT cost {best:.3f}."


_REFERENCES: dict[str, Callable] = {"sinkhorn_step": _sinkhorn_step, "bridge_sample": _bridge_sample,
                                    "ot_pairing": _ot_pairing}


use = make_use(_REFERENCES)   # use(name, answer): the learner's function, or the package's while a stub
