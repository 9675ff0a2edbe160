"""The Fokker-Planck equation in 1D (Ch. 4, §4.1.4, App. B): a finite-difference solver for dp/dt = -d(f p)/dx + g^2/2 d2p/dx2.

For the SDE dx = f(x, t) dt + g(t) dw the density obeys (Thm 4.1.1, App. B.2)

    dp/dt = -d/dx J,    J = f p - (g^2 / 2) dp/dx,

a conservation law: the probability flux J is an advective part f p plus a spreading part.  The
solver works on cell centres x_i with the flux J on the faces between them and no flux through
the two ends, so the discrete mass sum_i p_i dx is conserved to rounding error.  Advection is
central (second order; it needs the cell Peclet number |f| dx / (g^2/2) <= 2, else the grid is
too coarse and the solution oscillates) or upwind (first order, any Peclet number); time steps
are Heun's (second order) below the explicit stability limit dt <= dx^2 / (g^2 + |f| dx).

Also here, the small SDE tools of Ch. 4 and App. A-C: `ConstantSDE` (dx = -theta x dt + g dw
as a Schedule, so gmm.GaussianMixture gives its exact marginals and scores), the named drifts
of the explorer, the moment ODEs m' = f m, P' = 2 f P + g^2 (§4.1.2), and Girsanov's path-space
KL between two SDEs with the same diffusion (App. C).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .schedules import Schedule
from .utils import check_choice

__all__ = ["ConstantSDE", "DRIFTS", "drift_fn", "fp_solve", "fp_step", "stable_dt", "mass", "moment_odes",
           "girsanov_kl", "path_log_ratio"]


class ConstantSDE(Schedule):
    """dx = -theta x dt + g dw as a schedule: alpha_t = e^{-theta t}, sigma_t^2 = g^2 (1 - e^{-2 theta t}) / (2 theta).

    theta = 0 is pure diffusion (sigma_t^2 = g^2 t).  So f = -theta and g^2 are constant, and
    `GaussianMixture.marginal(t, ConstantSDE(...))` is the exact marginal of the SDE (§4.1.2).
    """

    name = "constant_sde"

    def __init__(self, theta: float = 1.0, g: float = 1.0):
        if not (isinstance(theta, (int, float)) and math.isfinite(theta) and theta >= 0):
            raise ValueError(f"theta must be a finite number >= 0, got {theta!r}")
        if not (isinstance(g, (int, float)) and math.isfinite(g) and g > 0):
            raise ValueError(f"g must be a finite number > 0, got {g!r}")
        self.theta, self.g = float(theta), float(g)

    def _alpha(self, t): return torch.exp(-self.theta * t)

    def _var(self, t):
        if self.theta == 0:
            return self.g ** 2 * t
        return self.g ** 2 * -torch.expm1(-2 * self.theta * t) / (2 * self.theta)

    def _sigma(self, t): return torch.sqrt(self._var(t))
    def _d_alpha(self, t): return -self.theta * self._alpha(t)
    def _d_sigma2(self, t): return self.g ** 2 * torch.exp(-2 * self.theta * t)
    def config(self) -> dict: return {"name": self.name, "theta": self.theta, "g": self.g}


# named drifts f(x, t) of the explorer; each works on NumPy arrays and torch tensors alike
DRIFTS: dict[str, Callable] = {
    "none": lambda x, t: 0 * x,                      # pure diffusion (VE-like)
    "ou": lambda x, t: -x,                            # Ornstein-Uhlenbeck, theta = 1 (VP-like)
    "double_well": lambda x, t: x - x ** 3,           # -U'(x) with U = x^4/4 - x^2/2: two wells at +-1
}


def drift_fn(drift: str | Callable | Schedule) -> Callable:
    """The drift f(x, t) for a name in DRIFTS, a callable (returned as is) or a Schedule (f(t) x)."""
    if isinstance(drift, Schedule):
        return lambda x, t: float(drift.f(t)) * x
    if callable(drift):
        return drift
    if isinstance(drift, str):
        return DRIFTS[check_choice(drift, DRIFTS, "drift")]
    raise TypeError(f"drift must be a name ({', '.join(DRIFTS)}), a callable f(x, t) or a Schedule, "
                    f"got {type(drift).__name__}")


def _g2_fn(g2, drift) -> Callable[[float], float]:
    if g2 is None:
        if not isinstance(drift, Schedule):
            raise ValueError("g2 is needed (a number >= 0 or a callable t -> g^2(t)) unless drift is a Schedule")
        return lambda t: float(drift.g2(t))
    if isinstance(drift, Schedule):
        raise ValueError("drift is a Schedule, which sets g^2 itself: leave g2=None")
    if callable(g2):
        return lambda t: float(g2(t))
    if isinstance(g2, bool) or not isinstance(g2, (int, float)) or not math.isfinite(g2) or g2 < 0:
        raise ValueError(f"g2 must be a finite number >= 0 or a callable t -> g^2(t), got {g2!r}")
    return lambda t: float(g2)


def _check_grid(grid) -> tuple[np.ndarray, float]:
    x = np.asarray(grid, dtype=np.float64)
    if x.ndim != 1 or x.size < 3:
        raise ValueError(f"grid must be a 1-d array of at least 3 cell centres, got shape {x.shape}")
    d = np.diff(x)
    dx = float(d.mean())
    if not dx > 0 or np.abs(d - dx).max() > 1e-6 * dx:
        raise ValueError("grid must be uniform and strictly ascending (cell centres x_i = x_0 + i dx)")
    return x, dx


def _faces(x: np.ndarray, dx: float) -> np.ndarray:
    return x[:-1] + 0.5 * dx


def fp_step(p: np.ndarray, x: np.ndarray, t: float, dt: float, f: Callable, g2: float, *,
            scheme: str = "central") -> np.ndarray:
    """One explicit (forward Euler) step of the conservative scheme; the change of p, dt * dp/dt (Thm 4.1.1).

    Faces x_{i+1/2} carry J = f p_face - (g^2/2)(p_{i+1} - p_i)/dx (no flux through the ends);
    dp_i/dt = -(J_{i+1/2} - J_{i-1/2}) / dx.  p_face is the mean of the two cells (central) or the
    upwind cell's value (upwind).
    """
    dx = x[1] - x[0]
    fa = np.asarray(f(_faces(x, dx), t), dtype=np.float64) * np.ones(x.size - 1)
    if scheme == "central":
        adv = fa * 0.5 * (p[:-1] + p[1:])
    else:
        adv = np.maximum(fa, 0) * p[:-1] + np.minimum(fa, 0) * p[1:]
    J = adv - 0.5 * g2 * (p[1:] - p[:-1]) / dx
    dp = np.zeros_like(p)
    dp[:-1] -= J
    dp[1:] += J
    return dt / dx * dp


def stable_dt(grid, drift, g2=None, t0: float = 0.0, t1: float = 1.0, *, scheme: str = "central") -> float:
    """The largest stable time step dx^2 / (g^2 + |f| dx) over [t0, t1] (max over 33 times and the faces).

    Raises a ValueError when the grid is too coarse for the central scheme: a cell Peclet number
    |f| dx / (g^2/2) above 2 (refine the grid, or use scheme='upwind').
    """
    check_choice(scheme, ("central", "upwind"), "scheme")
    x, dx = _check_grid(grid)
    f, g2f = drift_fn(drift), _g2_fn(g2, drift)
    faces, worst = _faces(x, dx), math.inf
    for t in np.linspace(t0, t1, 33):
        fmax, D = float(np.max(np.abs(np.asarray(f(faces, float(t)), dtype=np.float64)))), 0.5 * g2f(float(t))
        if scheme == "central" and fmax * dx > 2 * D:
            need = 2 * D / fmax if fmax > 0 else 0.0
            raise ValueError(f"grid too coarse for the central scheme at t = {t:.3g}: the cell Peclet number "
                             f"|f| dx / (g^2/2) = {fmax * dx / max(D, 1e-300):.3g} exceeds 2 (dx = {dx:.3g}); "
                             f"use dx <= {need:.3g} or scheme='upwind'")
        denom = 2 * D + fmax * dx
        worst = min(worst, dx ** 2 / denom if denom > 0 else math.inf)
    return worst


def fp_solve(p0, grid, times: Sequence[float], drift, g2=None, *, dt: float | None = None,
             scheme: str = "central", safety: float = 0.9) -> np.ndarray:
    """Solve dp/dt = -d(f p)/dx + (g^2/2) d2p/dx2 on a uniform grid with no-flux ends (Thm 4.1.1, App. B).

    Heun's method (second order) on the conservative scheme of `fp_step`; between two output times
    it takes equal steps no larger than dt (default: safety * stable_dt).
    Args:
        p0: (N,) density at times[0] on the cell centres `grid` (N,), uniform and ascending.
        times: ascending output times.
        drift: a name in DRIFTS ('none', 'ou', 'double_well'), a callable f(x, t) on NumPy arrays,
            or a Schedule (f(t) x, and g^2 from the schedule: leave g2=None).
        g2: g^2 as a number >= 0 or a callable t -> g^2(t).
        dt: the largest time step; a dt above the stable limit raises, naming that limit.
        scheme: 'central' (second order in dx; needs a fine enough grid) or 'upwind' (first order).
    Returns:
        (len(times), N) densities; the mass sum p dx equals that of p0 up to rounding.
    """
    x, dx = _check_grid(grid)
    p = np.asarray(p0, dtype=np.float64).copy()
    if p.shape != x.shape:
        raise ValueError(f"p0 must have the grid's shape {x.shape}, got {p.shape}")
    if not np.all(np.isfinite(p)) or (p < 0).any():
        raise ValueError("p0 must be finite and >= 0 (a density on the grid)")
    ts = np.asarray(times, dtype=np.float64).ravel()
    if ts.size < 1 or not np.all(np.isfinite(ts)) or (np.diff(ts) <= 0).any():
        raise ValueError("times must be a non-empty, finite, strictly ascending sequence")
    if not 0 < safety <= 1:
        raise ValueError(f"safety must lie in (0, 1], got {safety}")
    f, g2f = drift_fn(drift), _g2_fn(g2, drift)
    limit = stable_dt(x, drift, g2, float(ts[0]), float(ts[-1]), scheme=scheme) if ts.size > 1 else math.inf
    if dt is None:
        dt = safety * limit
    elif isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0:
        raise ValueError(f"dt must be a number > 0, got {dt!r}")
    elif dt > limit:
        raise ValueError(f"dt = {dt:.3g} is above the stable limit {limit:.3g} of this grid (dx = {dx:.3g}): "
                         "the explicit scheme would blow up; take a smaller dt (or a coarser grid)")
    out = [p.copy()]
    for a, b in zip(ts[:-1], ts[1:]):
        n = max(1, math.ceil((b - a) / dt - 1e-9))
        h = (b - a) / n
        for k in range(n):
            t = a + k * h
            k1 = fp_step(p, x, t, h, f, g2f(t), scheme=scheme)
            k2 = fp_step(p + k1, x, t + h, h, f, g2f(t + h), scheme=scheme)
            p = p + 0.5 * (k1 + k2)                                   # Heun
        if not np.all(np.isfinite(p)):
            raise RuntimeError(f"the Fokker-Planck solution is not finite at t = {b:.3g}")
        out.append(p.copy())
    return np.stack(out)


def mass(p, grid) -> np.ndarray:
    """Total probability sum_i p_i dx of each row of p (the conserved quantity)."""
    _, dx = _check_grid(grid)
    return np.asarray(p, dtype=np.float64).sum(-1) * dx


def moment_odes(schedule: Schedule, times: Sequence[float], *, rtol: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Integrate m' = f m, P' = 2 f P + g^2 from m(0) = 1, P(0) = 0 (§4.1.2, Eq. 4.1.4) with DOP853.

    For x0 a point, m(t) x0 is the kernel's mean and P(t) its variance, so m = alpha_t and
    P = sigma_t^2 when f and g come from the lemma of §4.5.2.  times: ascending, in [0, 1) (f
    diverges where alpha_t = 0).  Returns (m, P) at the times.
    """
    from scipy.integrate import solve_ivp

    ts = np.asarray(times, dtype=np.float64).ravel()
    if ts.size < 1 or (np.diff(ts) <= 0).any() or ts[0] < 0 or ts[-1] >= 1:
        raise ValueError("times must be strictly ascending in [0, 1) (f diverges where alpha_t = 0)")

    def rhs(t, y):
        f, g2 = float(schedule.f(t)), float(schedule.g2(t))          # the lemma of §4.5.2
        return [f * y[0], 2 * f * y[1] + g2]

    sol = solve_ivp(rhs, (0.0, float(ts[-1])), [1.0, 0.0], method="DOP853", t_eval=ts, rtol=rtol, atol=1e-12)
    if not sol.success:
        raise RuntimeError(f"moment ODE solve failed: {sol.message}")
    return sol.y[0], sol.y[1]


def _check_path(path: torch.Tensor, times) -> list[float]:
    if not isinstance(path, torch.Tensor) or path.dim() < 3:
        raise ValueError("path must be a tensor (n+1, B, *D) (dynamics.sde_solve's output)")
    ts = [float(t) for t in torch.as_tensor(times, dtype=torch.float64).flatten()]
    if len(ts) != path.shape[0]:
        raise ValueError(f"times has {len(ts)} entries but path has {path.shape[0]} time points")
    if any(b <= a for a, b in zip(ts[:-1], ts[1:])):
        raise ValueError("times must be strictly ascending")
    return ts


def _g_value(g, t: float) -> float:
    value = float(g(t)) if callable(g) else float(g)
    if not value > 0:
        raise ValueError(f"the diffusion g must be > 0 (Girsanov needs it), got {value} at t = {t}")
    return value


def girsanov_kl(path: torch.Tensor, times, drift_p: Callable, drift_q: Callable, g) -> torch.Tensor:
    """Girsanov's path-space KL(P || Q) per path: (1/2) int |b_p - b_q|^2 / g^2 dt along paths drawn from P (App. C).

    The left-point sum over the path's grid; its mean over paths drawn from P estimates KL(P || Q)
    for the two SDEs dx = b_p dt + g dw and dx = b_q dt + g dw (same g, same start).
    Args:
        path: (n+1, B, *D) paths of P at `times` (dynamics.sde_solve).  drift_p, drift_q: (x, t) -> b.
        g: the diffusion, a number > 0 or a callable t -> g(t).
    Returns:
        (B,) the integral along each path.
    """
    ts = _check_path(path, times)
    total = torch.zeros(path.shape[1], dtype=path.dtype, device=path.device)
    for k, (a, b) in enumerate(zip(ts[:-1], ts[1:])):
        diff = (drift_p(path[k], a) - drift_q(path[k], a)).flatten(1)
        total = total + 0.5 * (diff ** 2).sum(1) / _g_value(g, a) ** 2 * (b - a)
    return total


def path_log_ratio(path: torch.Tensor, times, drift_p: Callable, drift_q: Callable, g) -> torch.Tensor:
    """log dP/dQ of each discretised path: the sum of the log-ratios of the Euler-Maruyama Gaussian kernels.

    An independent route to Girsanov: its mean over paths from P is the KL between the two Markov
    chains (the noise terms average out), which tends to `girsanov_kl`'s as the grid is refined.
    Returns (B,).
    """
    ts = _check_path(path, times)
    total = torch.zeros(path.shape[1], dtype=path.dtype, device=path.device)
    for k, (a, b) in enumerate(zip(ts[:-1], ts[1:])):
        h, var = b - a, _g_value(g, a) ** 2 * (b - a)
        x, y = path[k], path[k + 1]
        lp = -((y - x - drift_p(x, a) * h) ** 2).flatten(1).sum(1) / (2 * var)
        lq = -((y - x - drift_q(x, a) * h) ** 2).flatten(1).sum(1) / (2 * var)
        total = total + lp - lq
    return total
