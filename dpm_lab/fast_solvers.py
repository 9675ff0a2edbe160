"""Exponential integrators of the PF-ODE in log-SNR time (Ch. 9): DPM-Solver, DPM-Solver++, DEIS, EDM.

Every step follows the contract of `steps`:

    step(model, x, s, t, *, state=None, generator=None, **opts) -> (x_t, state)

from the noisier time s to the cleaner time t < s.  Multistep methods keep their history in state["hist"] as a list of
(lambda_j, value_j), newest first.

With lambda = log(alpha/sigma) and h = lambda_t - lambda_s, the PF-ODE solution has two exact
"variation of constants" forms (§9.4.1, §9.5):

    noise form:  x_t = (alpha_t/alpha_s) x_s - sigma_t int_0^h e^{h-u} eps(lambda_s + u) du
    data form:   x_t = (sigma_t/sigma_s) x_s + alpha_t int_0^h e^{-(h-u)} x0(lambda_s + u) du

Every solver here approximates eps or x0 by a polynomial in lambda and integrates the kernel
exactly.  Coefficients are Python floats (float64); x keeps its dtype and device.

Order policies (measured in benchmarks/solvers.py; they matter at small NFE):
  * multistep methods (deis, dpmpp_2m, dpmpp_3m) take `order` per step; their plan lowers it in
    the final steps of runs shorter than LOWER_ORDER_FINAL_BELOW steps (last step order 1, the
    one before at most 2: `lower_order_final=True`, as in diffusers), and each step drops to
    order 1 where its log-SNR step is more than `max_step_ratio` (2) times the previous one, so
    the polynomial is never extrapolated far beyond the points it was fitted to (this is what
    keeps dpmpp_3m stable on a uniform-t grid, whose last step is many times the others); the
    third-order term is used only on steps of at most `max_h_order3` (1) in lambda;
  * single-step DPM-Solver-k takes `order` per step; its plan uses [k, ..., k, 1] (order 2 while
    the run has at most 3 steps), so dpm_solver_3 at NFE 5 runs orders [2, 2, 1], not one
    third-order step; `orders=[...]` sets the schedule by hand.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch

from .steps import FieldModel, Solver, begin, coeffs, need, noise, time_at_lam, x0_eps

__all__ = ["LOWER_ORDER_FINAL_BELOW", "MAX_STEP_RATIO", "MAX_H_ORDER3", "FAST_SOLVERS", "phi_int", "psi_int",
           "taylor_from_history",
           "dpm_solver_1_step", "dpm_solver_2_step", "dpm_solver_3_step", "dpm_solver_step", "deis_step",
           "dpmpp_2s_step", "dpmpp_2m_step", "dpmpp_3m_step", "edm_step", "multistep_plan", "singlestep_plan",
           "PicardResult", "paradigms", "euler_path", "fitted_order"]

LOWER_ORDER_FINAL_BELOW = 15   # runs with fewer steps lower the order of their final steps (diffusers' rule)
MAX_STEP_RATIO = 2.0           # a multistep step longer than this many previous steps (in lambda) uses order 1
MAX_H_ORDER3 = 1.0             # third-order multistep terms only on steps of at most this length in lambda


# -- measuring an order ---------------------------------------------------------------------------------
def fitted_order(nfes, errors) -> float:
    """The measured order p: minus the least-squares slope of log(error) against log(NFE).

    Fit it in the asymptotic window, where the leading error term C NFE^-p dominates (§9.6).
    Args: nfes, errors: equal-length sequences of positive numbers (at least two).
    """
    nfes, errors = [float(v) for v in nfes], [float(v) for v in errors]
    if len(nfes) != len(errors) or len(nfes) < 2 or min(nfes + errors) <= 0:
        raise ValueError(f"fitted_order needs >= 2 positive (nfe, error) pairs of equal length, got {nfes} and {errors}")
    lx, ly = [math.log(v) for v in nfes], [math.log(v) for v in errors]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return -sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


# -- the exact kernel integrals and the history polynomial ---------------------------------------------
def phi_int(k: int, h: float) -> float:
    """int_0^h e^{h-u} u^k / k! du = e^h - sum_{j<=k} h^j/j! = h^{k+1} phi_{k+1}(h) (§9.4.2).

    Summed as the tail series sum_{j>k} h^j/j! for |h| < 1, so there is no cancellation.
    """
    if abs(h) < 1:
        return math.fsum(h ** j / math.factorial(j) for j in range(k + 1, k + 30))
    return math.exp(h) - math.fsum(h ** j / math.factorial(j) for j in range(k + 1))


def psi_int(k: int, h: float) -> float:
    """int_0^h e^{-(h-u)} u^k / k! du = (-1)^{k+1} phi_int(k, -h): the data-form kernel (§9.5)."""
    if k == 0:
        return -math.expm1(-h)  # 1 - e^{-h}; equals 1 when h = +inf (start at alpha = 0 or end at sigma = 0)
    return (-1) ** (k + 1) * phi_int(k, -h)


def taylor_from_history(hist: list, order: int) -> list:
    """Derivatives [y, y', y''] at lambda_0 of the polynomial through the newest `order` points.

    hist is [(lambda_0, y_0), (lambda_1, y_1), ...] newest first; points with infinite lambda
    are skipped (the order drops there).  Newton divided differences; exact for polynomials,
    so integrating the Taylor terms exactly integrates the Lagrange polynomial exactly (§9.3).
    """
    pts = [(lam, y) for lam, y in hist if math.isfinite(lam)][:order]
    lams, c = [p[0] for p in pts], [p[1] for p in pts]
    for j in range(1, len(c)):
        for i in range(len(c) - 1, j - 1, -1):
            c[i] = (c[i] - c[i - 1]) / (lams[i] - lams[i - j])
    # p(l) = c0 + c1 (l - l0) + c2 (l - l0)(l - l1)  ->  p'(l0) = c1 + c2 (l0 - l1), p'' = 2 c2
    out = [c[0]]
    if len(c) > 1:
        out.append(c[1] + c[2] * (lams[0] - lams[1]) if len(c) > 2 else c[1])
    if len(c) > 2:
        out.append(2 * c[2])
    return out


def _check_order(order: int, allowed: tuple[int, ...], method: str) -> None:
    if isinstance(order, bool) or order not in allowed:
        raise ValueError(f"{method}: order must be one of {', '.join(map(str, allowed))}, got {order!r}")


def _effective_order(hist: list, lam_s: float, h: float, order: int, max_step_ratio: float | None,
                     max_h_order3: float | None = None) -> int:
    """The order a multistep step can afford: 1 if this step is more than max_step_ratio times the last
    one (in lambda), at most 2 if it is longer than max_h_order3 (x0 and eps change over O(1) in lambda,
    so a cubic extrapolated over a longer step only adds error)."""
    if order > 1 and max_step_ratio is not None and hist and math.isfinite(h) and math.isfinite(hist[0][0]):
        h_prev = lam_s - hist[0][0]
        if h_prev != 0 and h / h_prev > max_step_ratio:
            return 1
    if order == 3 and max_h_order3 is not None and abs(h) > max_h_order3:
        return 2
    return order


# -- DPM-Solver (noise form, single-step, §9.4) -------------------------------------------------------
def dpm_solver_1_step(model: FieldModel, x: torch.Tensor, s: float, t: float, *, state: dict | None = None,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """DPM-Solver-1 (= DDIM): x_t = (alpha_t/alpha_s) x_s - sigma_t (e^h - 1) eps(x_s, s) (§9.4.3).

    Args:
        model: a FieldModel.  x: (B, *D) at time s.  s, t: floats, from s to t.
    """
    cs, ct, state = begin(model, s, t, state, "dpm_solver_1")
    need(cs.alpha > 0 and ct.sigma > 0, "alpha_s > 0 and sigma_t > 0", "dpm_solver_1")
    _, eps = x0_eps(model, x, cs.t, state)
    return ct.alpha / cs.alpha * x - ct.sigma * math.expm1(ct.lam - cs.lam) * eps, state


def dpm_solver_2_step(model: FieldModel, x: torch.Tensor, s: float, t: float, *, state: dict | None = None,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """DPM-Solver-2: a half step in lambda, then the full step with eps at the midpoint (§9.4, algorithm box).

    u = (alpha_m/alpha_s) x_s - sigma_m (e^{h/2} - 1) eps(x_s, s);
    x_t = (alpha_t/alpha_s) x_s - sigma_t (e^h - 1) eps(u, m),  lambda_m = lambda_s + h/2.
    """
    cs, ct, state = begin(model, s, t, state, "dpm_solver_2")
    need(cs.alpha > 0 and ct.sigma > 0, "alpha_s > 0 and sigma_t > 0", "dpm_solver_2")
    h = ct.lam - cs.lam
    cm = coeffs(model.schedule, time_at_lam(model.schedule, cs.lam + h / 2))
    _, eps = x0_eps(model, x, cs.t, state)
    u = cm.alpha / cs.alpha * x - cm.sigma * math.expm1(h / 2) * eps
    _, eps_m = x0_eps(model, u, cm.t)
    return ct.alpha / cs.alpha * x - ct.sigma * math.expm1(h) * eps_m, state


def dpm_solver_3_step(model: FieldModel, x: torch.Tensor, s: float, t: float, *, state: dict | None = None,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """DPM-Solver-3 (Lu et al. 2022, r1 = 1/3, r2 = 2/3): third-order exponential Runge-Kutta (§9.4).

    u1 = (a_1/a_s) x - s_1 (e^{h/3}-1) eps_s;  D1 = eps(u1) - eps_s
    u2 = (a_2/a_s) x - s_2 (e^{2h/3}-1) eps_s - s_2 (r2/r1) ((e^{r2 h}-1)/(r2 h) - 1) D1;  D2 = eps(u2) - eps_s
    x_t = (a_t/a_s) x - s_t (e^h-1) eps_s - (s_t/r2) ((e^h-1)/h - 1) D2
    """
    cs, ct, state = begin(model, s, t, state, "dpm_solver_3")
    need(cs.alpha > 0 and ct.sigma > 0, "alpha_s > 0 and sigma_t > 0", "dpm_solver_3")
    sch, h, r1, r2 = model.schedule, ct.lam - cs.lam, 1 / 3, 2 / 3
    c1 = coeffs(sch, time_at_lam(sch, cs.lam + r1 * h))
    c2 = coeffs(sch, time_at_lam(sch, cs.lam + r2 * h))
    _, eps = x0_eps(model, x, cs.t, state)
    u1 = c1.alpha / cs.alpha * x - c1.sigma * math.expm1(r1 * h) * eps
    d1 = x0_eps(model, u1, c1.t)[1] - eps
    u2 = (c2.alpha / cs.alpha * x - c2.sigma * math.expm1(r2 * h) * eps
          - c2.sigma * r2 / r1 * (phi_int(1, r2 * h) / (r2 * h)) * d1)      # (e^{r h}-1)/(r h) - 1
    d2 = x0_eps(model, u2, c2.t)[1] - eps
    x_t = ct.alpha / cs.alpha * x - ct.sigma * math.expm1(h) * eps - ct.sigma / r2 * (phi_int(1, h) / h) * d2
    return x_t, state


_DPM_SOLVER = {1: dpm_solver_1_step, 2: dpm_solver_2_step, 3: dpm_solver_3_step}


def dpm_solver_step(model: FieldModel, x: torch.Tensor, s: float, t: float, *, state: dict | None = None,
                    generator: torch.Generator | None = None, order: int = 3) -> tuple[torch.Tensor, dict]:
    """Single-step DPM-Solver of order 1, 2 or 3 (§9.4): the step of dpm_solver_1/2/3, `order` evaluations."""
    _check_order(order, (1, 2, 3), "dpm_solver")
    return _DPM_SOLVER[order](model, x, s, t, state=state, generator=generator)


# -- DEIS (noise form, multistep, §9.3) -----------------------------------------------------------------
def deis_step(model: FieldModel, x: torch.Tensor, s: float, t: float, *, state: dict | None = None,
              generator: torch.Generator | None = None, order: int = 3, max_step_ratio: float | None = MAX_STEP_RATIO,
              max_h_order3: float | None = MAX_H_ORDER3) -> tuple[torch.Tensor, dict]:
    """DEIS (exponential Adams-Bashforth in lambda): integrate the Lagrange polynomial of past eps exactly.

    x_t = (alpha_t/alpha_s) x_s - sigma_t sum_k h^{k+1} phi_{k+1}(h) eps^{(k)}(lambda_s)   (§9.3, §9.4.2)
    with eps^{(k)} the derivatives of the polynomial through the last `order` eps values
    (warm-up: lower order while the history is short; order 1 where the step is more than
    max_step_ratio times the previous one, at most 2 where h > max_h_order3).  order = 1 is DDIM.
    """
    _check_order(order, (1, 2, 3), "deis")
    cs, ct, state = begin(model, s, t, state, "deis")
    need(cs.alpha > 0 and ct.sigma > 0, "alpha_s > 0 and sigma_t > 0", "deis")
    _, eps = x0_eps(model, x, cs.t, state)
    h = ct.lam - cs.lam
    order = _effective_order(state["hist"], cs.lam, h, order, max_step_ratio, max_h_order3)
    state["hist"] = [(cs.lam, eps)] + state["hist"][:2]
    d = taylor_from_history(state["hist"], order)
    return ct.alpha / cs.alpha * x - ct.sigma * sum(phi_int(k, h) * dk for k, dk in enumerate(d)), state


# -- DPM-Solver++ (data form, §9.5) -----------------------------------------------------------------------
def dpmpp_2s_step(model: FieldModel, x: torch.Tensor, s: float, t: float, *, state: dict | None = None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """DPM-Solver++(2S): midpoint in lambda on the data prediction (§9.5, algorithm box).

    u = (sigma_m/sigma_s) x_s + alpha_m (1 - e^{-h/2}) x0(x_s, s);
    x_t = (sigma_t/sigma_s) x_s + alpha_t (1 - e^{-h}) x0(u, m).
    From alpha_s = 0 (lambda_s = -inf) the midpoint is taken in e^lambda = alpha/sigma instead
    (lambda_m = lambda_t - log 2), where the data-form integral is finite.
    """
    cs, ct, state = begin(model, s, t, state, "dpmpp_2s")
    h = ct.lam - cs.lam
    lam_m = ct.lam - math.log(2) if math.isinf(cs.lam) else cs.lam + h / 2
    need(math.isfinite(lam_m), "a finite log-SNR at the cleaner time t (sigma_t > 0)", "dpmpp_2s")
    cm = coeffs(model.schedule, time_at_lam(model.schedule, lam_m))
    x0, _ = x0_eps(model, x, cs.t, state)
    u = cm.sigma / cs.sigma * x + cm.alpha * psi_int(0, lam_m - cs.lam) * x0
    x0_m, _ = x0_eps(model, u, cm.t)
    return ct.sigma / cs.sigma * x + ct.alpha * psi_int(0, h) * x0_m, state


def dpmpp_2m_step(model: FieldModel, x: torch.Tensor, s: float, t: float, *, state: dict | None = None,
                  generator: torch.Generator | None = None, order: int = 2,
                  max_step_ratio: float | None = MAX_STEP_RATIO) -> tuple[torch.Tensor, dict]:
    """DPM-Solver++(2M): x_t = (sigma_t/sigma_s) x_s + alpha_t (1 - e^{-h}) D (§9.5, algorithm box).

    D = (1 + r/2) x0_s - (r/2) x0_prev with r = h / h_prev.  D = x0_s (order 1, DDIM in data form)
    on the first step, with order=1, and where r > max_step_ratio (None: never).
    Args:
        model: a FieldModel.  x: (B, *D) at time s.  s, t: floats, from s to t.
        state: the previous step's state (its 'hist' holds the last (lambda, x0_hat)).
    """
    _check_order(order, (1, 2), "dpmpp_2m")
    cs, ct, state = begin(model, s, t, state, "dpmpp_2m")
    need(cs.sigma > 0, "sigma_s > 0 at the noisier time s", "dpmpp_2m")
    x0, _ = x0_eps(model, x, cs.t, state)
    h = ct.lam - cs.lam
    order = _effective_order(state["hist"], cs.lam, h, order, max_step_ratio)
    prev = state["hist"][:1]
    state["hist"] = [(cs.lam, x0)]
    d = x0
    if order == 2 and prev and math.isfinite(prev[0][0]) and math.isfinite(h):
        r = h / (cs.lam - prev[0][0])
        d = (1 + r / 2) * x0 - (r / 2) * prev[0][1]
    return ct.sigma / cs.sigma * x + ct.alpha * psi_int(0, h) * d, state


def dpmpp_3m_step(model: FieldModel, x: torch.Tensor, s: float, t: float, *, state: dict | None = None,
                  generator: torch.Generator | None = None, order: int = 3,
                  max_step_ratio: float | None = MAX_STEP_RATIO, max_h_order3: float | None = MAX_H_ORDER3
                  ) -> tuple[torch.Tensor, dict]:
    """DPM-Solver++(3M): exponential Adams-Bashforth on x0 in lambda, Lagrange polynomial integrated exactly.

    x_t = (sigma_t/sigma_s) x_s + alpha_t sum_k psi_k(h) x0^{(k)}(lambda_s),
    psi_k(h) = int_0^h e^{-(h-u)} u^k/k! du  (§9.5; DEIS in the data form, §9.6.2); order 1 where the
    step is more than max_step_ratio times the previous one, at most 2 where h > max_h_order3.
    """
    _check_order(order, (1, 2, 3), "dpmpp_3m")
    cs, ct, state = begin(model, s, t, state, "dpmpp_3m")
    need(cs.sigma > 0, "sigma_s > 0 at the noisier time s", "dpmpp_3m")
    x0, _ = x0_eps(model, x, cs.t, state)
    h = ct.lam - cs.lam
    order = _effective_order(state["hist"], cs.lam, h, order, max_step_ratio, max_h_order3)
    state["hist"] = [(cs.lam, x0)] + state["hist"][:2]
    d = taylor_from_history(state["hist"], order) if math.isfinite(h) else [x0]
    return ct.sigma / cs.sigma * x + ct.alpha * sum(psi_int(k, h) * dk for k, dk in enumerate(d)), state


# -- EDM (Karras et al. 2022, Alg. 2) on a general schedule -------------------------------------------------
def edm_step(model: FieldModel, x: torch.Tensor, s: float, t: float, *, state: dict | None = None,
             generator: torch.Generator | None = None, churn: float = 0.0, s_tmin: float = 0.0,
             s_tmax: float = math.inf, s_noise: float = 1.0) -> tuple[torch.Tensor, dict]:
    """EDM's stochastic Heun step ("churn") written for any schedule in scaled variables.

    With y = x/alpha and r = sigma/alpha = e^{-lambda} the PF-ODE reads dy/dr = eps(x, t)
    (EDM's dx/dsigma = (x - D(x))/sigma).  Churn raises the noise to r_hat = (1 + gamma) r_s by
    adding sqrt(r_hat^2 - r_s^2) s_noise z, then a Heun step in r goes from r_hat to r_t (Euler
    where r_t = 0).
    Args:
        churn: the per-step gamma (Karras: gamma_i = min(S_churn / n, sqrt(2) - 1)); 0 gives EDM's
            deterministic second-order sampler (Alg. 1).  Applied only where s_tmin <= r_s <= s_tmax.
    """
    if not churn >= 0:
        raise ValueError(f"edm: churn must be >= 0, got {churn}")
    cs, ct, state = begin(model, s, t, state, "edm")
    need(cs.alpha > 0 and ct.alpha > 0, "alpha > 0 at both ends of the step", "edm")
    sch = model.schedule
    r_s, r_t, y = cs.sigma / cs.alpha, ct.sigma / ct.alpha, x / cs.alpha
    gamma = min(churn, math.sqrt(2) - 1) if s_tmin <= r_s <= s_tmax else 0.0
    s_hat, r_hat = cs.t, r_s
    if gamma > 0:
        r_hat = min(r_s * (1 + gamma), math.exp(-coeffs(sch, 1.0).lam))    # stay inside [0, 1]
        y = y + math.sqrt(max(r_hat ** 2 - r_s ** 2, 0.0)) * s_noise * noise(x, generator)
        s_hat = time_at_lam(sch, -math.log(r_hat))
    a_hat = coeffs(sch, s_hat).alpha
    d = x0_eps(model, a_hat * y, s_hat, state)[1]                      # dy/dr = eps
    y_next = y + (r_t - r_hat) * d                                       # Euler predictor
    if r_t > 0:
        d2 = x0_eps(model, ct.alpha * y_next, ct.t)[1]
        y_next = y + (r_t - r_hat) * 0.5 * (d + d2)                      # Heun corrector
    return ct.alpha * y_next, state


# -- order policies (Solver plans) --------------------------------------------------------------------------
def multistep_plan(default_order: int) -> Callable[[int, dict], list[dict]]:
    """The plan of a multistep solver: `order` on every step, lowered in the final steps of short runs.

    With lower_order_final (default True) and n < LOWER_ORDER_FINAL_BELOW steps, step i of n uses
    order min(order, n - i): the last step is first order, the one before at most second order.
    """
    def plan(n: int, opts: dict) -> list[dict]:
        opts = dict(opts)
        lower_final = opts.pop("lower_order_final", True)
        order = opts.pop("order", default_order)
        short = lower_final and n < LOWER_ORDER_FINAL_BELOW
        return [{**opts, "order": min(order, n - i) if short else order} for i in range(n)]
    return plan


def singlestep_plan(default_order: int) -> Callable[[int, dict], list[dict]]:
    """The plan of single-step DPM-Solver-k: an order per step that spends a small NFE budget well.

    orders = [k, ..., k, 1] with lower_order_final (default) and n < LOWER_ORDER_FINAL_BELOW, where
    k is lowered to 2 while n <= 3 (measured: at NFE 5, [2, 2, 1] beats [3, 2] and [3, 1, 1]);
    orders = [k] * n otherwise; `orders=[...]` (n entries in 1..3) sets it by hand.
    """
    def plan(n: int, opts: dict) -> list[dict]:
        opts = dict(opts)
        orders = opts.pop("orders", None)
        lower_final = opts.pop("lower_order_final", True)
        order = opts.pop("order", default_order)
        if orders is not None:
            orders = list(orders)
            if len(orders) != n:
                raise ValueError(f"orders has {len(orders)} entries for a run of {n} steps")
        elif lower_final and n < LOWER_ORDER_FINAL_BELOW:
            top = min(order, 2) if n <= 3 else order
            orders = [top] * (n - 1) + [1]
        else:
            orders = [order] * n
        return [{**opts, "order": o} for o in orders]
    return plan


# -- ParaDiGMS: Picard iterations in a sliding window (time-parallel, §9.7) -------------------------------
@dataclass
class PicardResult:
    """What `paradigms` returns.

    x: (B, *D) the state at the last grid time.  path: (n+1, B, *D) the converged states on the grid.
    sweeps: Picard sweeps (rounds of parallel model calls: the sequential latency).
    evaluations: model evaluations per sample, summed over sweeps (the total work).
    window_sizes: the number of drifts evaluated in parallel at each sweep.
    """

    x: torch.Tensor
    path: torch.Tensor
    sweeps: int
    evaluations: int
    window_sizes: list


def _drifts(model: FieldModel, xs: torch.Tensor, ts: list) -> torch.Tensor:
    """v(x_j, t_j) for every j in ONE batched model call: xs (p, B, *D) -> (p, B, *D)."""
    p, b = xs.shape[0], xs.shape[1]
    t = torch.tensor(ts, dtype=torch.float64, device=xs.device).repeat_interleave(b)
    return model.predict(xs.reshape(p * b, *xs.shape[2:]), t, "velocity").reshape(xs.shape)


def euler_path(model: FieldModel, x_T: torch.Tensor, grid) -> torch.Tensor:
    """The sequential Euler solution on `grid` (n+1 descending times), (n+1, B, *D): ParaDiGMS's fixed point."""
    ts = [float(t) for t in grid]
    out = [x_T]
    for s, t in zip(ts[:-1], ts[1:]):
        out.append(out[-1] + (t - s) * model.predict(out[-1], s, "velocity"))     # Eq. 4.2.6
    return torch.stack(out)


def paradigms(model: FieldModel, x_T: torch.Tensor, grid, *, window: int | None = None, tol: float = 1e-6,
              max_sweeps: int | None = None) -> PicardResult:
    """ParaDiGMS (Shih et al. 2023): Picard iteration of the Euler discretization in a sliding window (§9.7).

    On the grid t_0 > t_1 > ... > t_n with dt_i = t_{i+1} - t_i (< 0), a sweep over the window l..l+p
    evaluates the p drifts v(x_{l+i}, t_{l+i}) in ONE batched call and replaces

        x_{l+j+1} <- x_l + sum_{i <= j} dt_{l+i} v(x_{l+i}, t_{l+i}),   j = 0..p-1    (the discrete Picard map)

    (a cumulative sum: the integral form x(t) = x(t_l) + int v dt with a left Riemann sum).  The window
    then slides past every point whose update moved it by at most `tol` (RMS over batch and
    coordinates, the first point that moved more stays in the window), and new points enter at
    the window's end initialised with its last value.  The fixed point is the sequential Euler
    solution (`euler_path`): after k sweeps at least the first k points of the window are exact,
    so a window of n converges in at most n sweeps; smooth drifts converge in far fewer.

    Args:
        model: a FieldModel whose predict accepts a (B,) time tensor.  x_T: (B, *D) at grid[0].
        grid: n+1 descending times.  window: p, the drifts evaluated in parallel (default n).
        tol: RMS tolerance of a point's change to leave the window.  max_sweeps: a safety bound (default 2n).
    """
    ts = [float(t) for t in torch.as_tensor(grid, dtype=torch.float64)]
    n = len(ts) - 1
    if n < 1 or any(b >= a for a, b in zip(ts[:-1], ts[1:])):
        raise ValueError("grid must be at least 2 strictly descending times (from noise to data)")
    p = n if window is None else window
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise ValueError(f"window must be a positive int (the drifts evaluated in parallel), got {window!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    max_sweeps = 2 * n if max_sweeps is None else max_sweeps
    xs = x_T.unsqueeze(0).repeat(n + 1, *([1] * x_T.dim()))       # initial guess: x_T everywhere
    l, sweeps, evals, sizes = 0, 0, 0, []
    while l < n:
        if sweeps >= max_sweeps:
            raise RuntimeError(f"paradigms: no convergence in {max_sweeps} sweeps (tol {tol}); raise tol or max_sweeps")
        q = min(p, n - l)
        v = _drifts(model, xs[l:l + q], ts[l:l + q])
        dt = torch.tensor([b - a for a, b in zip(ts[l:l + q], ts[l + 1:l + q + 1])], dtype=xs.dtype,
                          device=xs.device).reshape(q, *([1] * x_T.dim()))
        new = xs[l] + torch.cumsum(dt * v, dim=0)                 # x_{l+j+1}, j = 0..q-1
        err = (new - xs[l + 1:l + q + 1]).pow(2).flatten(1).mean(1).sqrt()
        xs[l + 1:l + q + 1] = new
        sweeps, evals = sweeps + 1, evals + q
        sizes.append(q)
        moved = (err > tol).nonzero()
        stride = q if len(moved) == 0 else max(int(moved[0]), 1)  # the first point still moving stays (>= 1 step)
        end, l = l + q, l + stride
        xs[end + 1:] = xs[end]                                    # points entering the window start from its last value
    return PicardResult(xs[-1], xs, sweeps, evals, sizes)


def _order_cost(opts: dict) -> int:
    return int(opts.get("order", 1))


FAST_SOLVERS: tuple[Solver, ...] = (
    Solver("dpm_solver_1", dpm_solver_1_step, 1, 1, book="§9.4"),
    Solver("dpm_solver_2", partial(dpm_solver_step, order=2), 2, 2, book="§9.4", plan=singlestep_plan(2),
           cost=_order_cost),
    Solver("dpm_solver_3", partial(dpm_solver_step, order=3), 3, 3, book="§9.4", plan=singlestep_plan(3),
           cost=_order_cost),
    Solver("deis", deis_step, 3, 1, multistep=True, book="§9.3", plan=multistep_plan(3)),
    Solver("dpmpp_2s", dpmpp_2s_step, 2, 2, book="§9.5"),
    Solver("dpmpp_2m", dpmpp_2m_step, 2, 1, multistep=True, book="§9.5", plan=multistep_plan(2)),
    Solver("dpmpp_3m", dpmpp_3m_step, 3, 1, multistep=True, book="§9.5, §9.6.2", plan=multistep_plan(3)),
    Solver("edm", edm_step, 2, 2, book="Karras et al. 2022, Alg. 2"),
)
