"""Exponential integrators of the PF-ODE in log-SNR time (Ch. 9): DPM-Solver, DPM-Solver++, DEIS, EDM.

Step convention (shared by every solver in `samplers.SOLVERS`):

    step(model, x, s, t, *, state=None, generator=None, **opts) -> (x_t, state)

moves x from the NOISIER time s to the CLEANER time t < s (the book's s -> t).  `state` is a
plain dict that the step reads and returns: `state["x0"]` holds the data prediction the step
used at s, and multistep methods keep their history in `state["hist"]` as a list of
(lambda_j, value_j), newest first.  Nothing is hidden in globals.

With lambda = log(alpha/sigma) and h = lambda_t - lambda_s, the PF-ODE solution has two exact
"variation of constants" forms (§9.4.1, §9.5):

    noise form:  x_t = (alpha_t/alpha_s) x_s - sigma_t int_0^h e^{h-u} eps(lambda_s + u) du
    data form:   x_t = (sigma_t/sigma_s) x_s + alpha_t int_0^h e^{-(h-u)} x0(lambda_s + u) du

Every solver here approximates eps or x0 by a polynomial in lambda and integrates the kernel
exactly.  Coefficients are Python floats (float64); x keeps its dtype and device.
"""
from __future__ import annotations

import math

import torch

from .param import to_x0_eps

__all__ = ["coefficients", "x0_eps", "phi_int", "taylor_from_history", "dpm_solver_1_step",
           "dpm_solver_2_step", "dpm_solver_3_step", "deis_step", "dpmpp_2s_step", "dpmpp_2m_step",
           "dpmpp_3m_step", "edm_step"]


# -- shared helpers ---------------------------------------------------------------------------
ALPHA_ZERO = 1e-12  # alpha below this is the exact zero it approximates (cos(pi/2) = 6e-17 in float64)


def coefficients(schedule, t: float) -> tuple[float, float, float]:
    """(alpha_t, sigma_t, lambda_t) as float64 Python floats; lambda = -inf where alpha_t = 0.

    alpha_t < 1e-12 counts as 0: dividing by cos(pi/2) ~ 6e-17 would wipe out every digit.
    """
    tt = torch.tensor(float(t), dtype=torch.float64)
    a, s = float(schedule.alpha(tt)), float(schedule.sigma(tt))
    if a < ALPHA_ZERO:
        a = 0.0
        return a, s, -math.inf
    return a, s, (math.inf if s == 0 else math.log(a) - math.log(s))


def need(cond: bool, what: str, method: str) -> None:
    """Raise a ValueError explaining which end point of the schedule a method cannot handle."""
    if not cond:
        raise ValueError(f"{method} needs {what}; start below t = 1 where alpha_1 = 0 (or use a "
                         f"data-prediction / velocity solver) and end at t > 0 (grids end at schedule.t_eps)")


def new_state(state: dict | None) -> dict:
    """The explicit solver state: a dict with 'x0' (last data prediction) and 'hist' (history)."""
    return {"x0": None, "hist": []} if state is None else state


def x0_eps(model, x: torch.Tensor, t: float, state: dict | None = None):
    """One model call -> (x0_hat, eps_hat) at (x, t) (§6.3.1); stores x0_hat in state['x0'].

    Where alpha_t = 0 (t = 1 for flow/cosine/trig) x_t carries no data, so the model is asked
    for x0 directly (exact models can answer; an eps-network raises a clear error).
    """
    kind = getattr(model, "kind", "eps")
    if kind in ("eps", "score") and coefficients(model.schedule, t)[0] == 0:
        kind = "x0"
    value = model.predict(x, float(t), kind)
    x0, eps = to_x0_eps(model.schedule, x, float(t), value, kind)
    if state is not None:
        state["x0"] = x0
    return x0, eps


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
        return -math.expm1(-h)  # 1 - e^{-h}; equals 1 when h = +inf (start at alpha = 0)
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


def _mid(schedule, lam: float) -> float:
    return float(schedule.inv_lam(torch.tensor(lam, dtype=torch.float64)))


# -- DPM-Solver (noise form, singlestep, §9.4) -------------------------------------------------
def dpm_solver_1_step(model, x, s, t, *, state=None, generator=None):
    """DPM-Solver-1 (= DDIM): x_t = (alpha_t/alpha_s) x_s - sigma_t (e^h - 1) eps(x_s, s) (§9.4.3)."""
    state = new_state(state)
    a_s, _, lam_s = coefficients(model.schedule, s)
    a_t, sig_t, lam_t = coefficients(model.schedule, t)
    need(a_s > 0 and sig_t > 0, "alpha_s > 0 and sigma_t > 0", "dpm_solver_1")
    _, eps = x0_eps(model, x, s, state)
    return a_t / a_s * x - sig_t * math.expm1(lam_t - lam_s) * eps, state


def dpm_solver_2_step(model, x, s, t, *, state=None, generator=None):
    """DPM-Solver-2: a half step in lambda, then the full step with eps at the midpoint (§9.4, algorithm box).

    u = (alpha_m/alpha_s) x_s - sigma_m (e^{h/2} - 1) eps(x_s, s);
    x_t = (alpha_t/alpha_s) x_s - sigma_t (e^h - 1) eps(u, m),  lambda_m = lambda_s + h/2.
    """
    state, sch = new_state(state), model.schedule
    a_s, _, lam_s = coefficients(sch, s)
    a_t, sig_t, lam_t = coefficients(sch, t)
    need(a_s > 0 and sig_t > 0, "alpha_s > 0 and sigma_t > 0", "dpm_solver_2")
    h = lam_t - lam_s
    m = _mid(sch, lam_s + h / 2)
    a_m, sig_m, _ = coefficients(sch, m)
    _, eps = x0_eps(model, x, s, state)
    u = a_m / a_s * x - sig_m * math.expm1(h / 2) * eps
    _, eps_m = x0_eps(model, u, m)
    return a_t / a_s * x - sig_t * math.expm1(h) * eps_m, state


def dpm_solver_3_step(model, x, s, t, *, state=None, generator=None):
    """DPM-Solver-3 (Lu et al. 2022, r1 = 1/3, r2 = 2/3): third-order exponential Runge-Kutta (§9.4).

    u1 = (a_1/a_s) x - s_1 (e^{h/3}-1) eps_s;  D1 = eps(u1) - eps_s
    u2 = (a_2/a_s) x - s_2 (e^{2h/3}-1) eps_s - s_2 (r2/r1) ((e^{r2 h}-1)/(r2 h) - 1) D1;  D2 = eps(u2) - eps_s
    x_t = (a_t/a_s) x - s_t (e^h-1) eps_s - (s_t/r2) ((e^h-1)/h - 1) D2
    """
    state, sch = new_state(state), model.schedule
    a_s, _, lam_s = coefficients(sch, s)
    a_t, sig_t, lam_t = coefficients(sch, t)
    need(a_s > 0 and sig_t > 0, "alpha_s > 0 and sigma_t > 0", "dpm_solver_3")
    h, r1, r2 = lam_t - lam_s, 1 / 3, 2 / 3
    t1, t2 = _mid(sch, lam_s + r1 * h), _mid(sch, lam_s + r2 * h)
    (a_1, sig_1, _), (a_2, sig_2, _) = coefficients(sch, t1), coefficients(sch, t2)
    _, eps = x0_eps(model, x, s, state)
    u1 = a_1 / a_s * x - sig_1 * math.expm1(r1 * h) * eps
    d1 = x0_eps(model, u1, t1)[1] - eps
    u2 = (a_2 / a_s * x - sig_2 * math.expm1(r2 * h) * eps
          - sig_2 * r2 / r1 * (phi_int(1, r2 * h) / (r2 * h)) * d1)      # (e^{r h}-1)/(r h) - 1
    d2 = x0_eps(model, u2, t2)[1] - eps
    x_t = a_t / a_s * x - sig_t * math.expm1(h) * eps - sig_t / r2 * (phi_int(1, h) / h) * d2
    return x_t, state


# -- DEIS (noise form, multistep, §9.3) ---------------------------------------------------------
def deis_step(model, x, s, t, *, state=None, generator=None, order: int = 3):
    """DEIS (exponential Adams-Bashforth in lambda): integrate the Lagrange polynomial of past eps exactly.

    x_t = (alpha_t/alpha_s) x_s - sigma_t sum_k h^{k+1} phi_{k+1}(h) eps^{(k)}(lambda_s)   (§9.3, §9.4.2)
    with eps^{(k)} the derivatives of the polynomial through the last `order` eps values
    (warm-up: lower order while the history is short).  order = 1 is DDIM.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    state = new_state(state)
    a_s, _, lam_s = coefficients(model.schedule, s)
    a_t, sig_t, lam_t = coefficients(model.schedule, t)
    need(a_s > 0 and sig_t > 0, "alpha_s > 0 and sigma_t > 0", "deis")
    _, eps = x0_eps(model, x, s, state)
    state["hist"] = [(lam_s, eps)] + state["hist"][:2]
    d = taylor_from_history(state["hist"], order)
    h = lam_t - lam_s
    return a_t / a_s * x - sig_t * sum(phi_int(k, h) * dk for k, dk in enumerate(d)), state


# -- DPM-Solver++ (data form, §9.5) ---------------------------------------------------------------
def dpmpp_2s_step(model, x, s, t, *, state=None, generator=None):
    """DPM-Solver++(2S): midpoint in lambda on the data prediction (§9.5, algorithm box).

    u = (sigma_m/sigma_s) x_s + alpha_m (1 - e^{-h/2}) x0(x_s, s);
    x_t = (sigma_t/sigma_s) x_s + alpha_t (1 - e^{-h}) x0(u, m).
    From alpha_s = 0 (lambda_s = -inf) the midpoint is taken in e^lambda = alpha/sigma instead
    (lambda_m = lambda_t - log 2), where the data-form integral is finite.
    """
    state, sch = new_state(state), model.schedule
    _, sig_s, lam_s = coefficients(sch, s)
    a_t, sig_t, lam_t = coefficients(sch, t)
    h = lam_t - lam_s
    lam_m = lam_t - math.log(2) if math.isinf(lam_s) else lam_s + h / 2
    need(math.isfinite(lam_m), "a finite log-SNR at the cleaner time t", "dpmpp_2s")
    m = _mid(sch, lam_m)
    a_m, sig_m, _ = coefficients(sch, m)
    x0, _ = x0_eps(model, x, s, state)
    u = sig_m / sig_s * x + a_m * psi_int(0, lam_m - lam_s) * x0
    x0_m, _ = x0_eps(model, u, m)
    return sig_t / sig_s * x + a_t * psi_int(0, h) * x0_m, state


def dpmpp_2m_step(model, x, s, t, *, state=None, generator=None):
    """DPM-Solver++(2M): x_t = (sigma_t/sigma_s) x_s + alpha_t (1 - e^{-h}) D (§9.5, algorithm box).

    D = (1 + r/2) x0_s - (r/2) x0_prev with r = h / h_prev; the first step (no history) is DDIM.
    """
    state = new_state(state)
    _, sig_s, lam_s = coefficients(model.schedule, s)
    a_t, sig_t, lam_t = coefficients(model.schedule, t)
    x0, _ = x0_eps(model, x, s, state)
    h = lam_t - lam_s
    prev = state["hist"][:1]
    state["hist"] = [(lam_s, x0)]
    d = x0
    if prev and math.isfinite(prev[0][0]) and math.isfinite(h):
        r = h / (lam_s - prev[0][0])
        d = (1 + r / 2) * x0 - (r / 2) * prev[0][1]
    return sig_t / sig_s * x + a_t * psi_int(0, h) * d, state


def dpmpp_3m_step(model, x, s, t, *, state=None, generator=None, order: int = 3):
    """DPM-Solver++(3M): exponential Adams-Bashforth on x0 in lambda, Lagrange polynomial integrated exactly.

    x_t = (sigma_t/sigma_s) x_s + alpha_t sum_k psi_k(h) x0^{(k)}(lambda_s),
    psi_k(h) = int_0^h e^{-(h-u)} u^k/k! du  (§9.5; DEIS in the data form, §9.6.2).
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    state = new_state(state)
    _, sig_s, lam_s = coefficients(model.schedule, s)
    a_t, sig_t, lam_t = coefficients(model.schedule, t)
    x0, _ = x0_eps(model, x, s, state)
    state["hist"] = [(lam_s, x0)] + state["hist"][:2]
    h = lam_t - lam_s
    d = taylor_from_history(state["hist"], order) if math.isfinite(h) else [x0]
    return sig_t / sig_s * x + a_t * sum(psi_int(k, h) * dk for k, dk in enumerate(d)), state


# -- EDM (Karras et al. 2022, Alg. 2) on a general schedule -------------------------------------------
def edm_step(model, x, s, t, *, state=None, generator=None, churn: float = 0.0, s_tmin: float = 0.0,
             s_tmax: float = math.inf, s_noise: float = 1.0):
    """EDM's stochastic Heun step ("churn") written for any schedule in scaled variables.

    With y = x/alpha and r = sigma/alpha = e^{-lambda} the PF-ODE reads dy/dr = eps(x, t)
    (EDM's dx/dsigma = (x - D(x))/sigma).  Churn raises the noise to r_hat = (1 + gamma) r_s by
    adding sqrt(r_hat^2 - r_s^2) s_noise z, then a Heun step in r goes from r_hat to r_t.
    Args:
        churn: the per-step gamma (Karras: gamma_i = min(S_churn / n, sqrt(2) - 1)); 0 gives EDM's
            deterministic second-order sampler (Alg. 1).  Applied only where s_tmin <= r_s <= s_tmax.
    """
    state, sch = new_state(state), model.schedule
    a_s, sig_s, _ = coefficients(sch, s)
    a_t, sig_t, _ = coefficients(sch, t)
    need(a_s > 0, "alpha_s > 0", "edm")
    r_s, r_t, y = sig_s / a_s, sig_t / a_t, x / a_s
    gamma = min(churn, math.sqrt(2) - 1) if s_tmin <= r_s <= s_tmax else 0.0
    s_hat, r_hat = s, r_s
    if gamma > 0:
        a_1, sig_1, _ = coefficients(sch, 1.0)
        r_hat = min(r_s * (1 + gamma), sig_1 / a_1 if a_1 > 0 else math.inf)  # stay inside [0, 1]
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        y = y + math.sqrt(max(r_hat ** 2 - r_s ** 2, 0.0)) * s_noise * z
        s_hat = _mid(sch, -math.log(r_hat))
    a_hat = coefficients(sch, s_hat)[0]
    d = x0_eps(model, a_hat * y, s_hat, state)[1]                   # dy/dr = eps
    y_next = y + (r_t - r_hat) * d                                    # Euler predictor
    if r_t > 0:
        d2 = x0_eps(model, a_t * y_next, t)[1]
        y_next = y + (r_t - r_hat) * 0.5 * (d + d2)                   # Heun corrector
    return a_t * y_next, state
