"""Likelihoods: the PF-ODE log-density (exact or Hutchinson divergence), the DDPM ELBO, bits/dim, encoding.

Along a PF-ODE path dx/dt = v(x, t) the density obeys d/dt log p_t(x(t)) = -div v (the
instantaneous change of variables, §4.3.2, §5.1.2), hence

    log p_0(x_0) = log p_T(x_T) + int_0^T div v(x(t), t) dt.

Sign warning: §4.3.2 of the book writes d delta/dt = -div v with delta(0) = 0 *and*
log p_0 = log p_prior(x_T) + delta(T); those two lines disagree.  The formula above is the
correct one (it is the one in §5.1.2 for normalizing flows).

Which time's density: `log_likelihood(model, x)` returns log p_0(x), the data density, wherever the
PF-ODE field is finite at t = 0, which holds for the exact models of gmm.GaussianMixture under
every schedule (their velocity is written through (sigma^2)' and stays finite).  A network's eps-
or x0-field makes v diverge at t = 0 on schedules whose sigma_t grows like sqrt(t) (VP, VE,
cosine, discrete DDPM: sigma_t' = infinity there; a point set has no density at 0 either); there
the integral starts at schedule.t_eps (1e-3) and the result is log p_{t_eps}(x).
`data_time(model, x)` tells which, and `details=True` returns the time with the value.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .dynamics import pf_ode_solve
from .steps import FieldModel, x0_eps
from .utils import check_choice, check_x, randint, randn_like

__all__ = ["Likelihood", "data_time", "divergence", "gaussian_log_prob", "log_likelihood", "encode", "decode",
           "ddpm_elbo", "bits_per_dim", "hutchinson_variance"]


def divergence(fn: Callable, x: torch.Tensor, *, method: str = "exact", probes: torch.Tensor | None = None,
               create_graph: bool = False, with_value: bool = False):
    """div fn(x) = tr(d fn / d x) per sample, shape (B,) (and fn(x) too when with_value).

    exact:      sum_i d fn_i / d x_i, one autograd pass per dimension (for low dimension).
    hutchinson: u^T (d fn/d x) u averaged over probes u with E[u u^T] = I (§3.2.2), one
                vector-Jacobian product per probe; `probes` has shape (P, B, *D).
    """
    check_choice(method, ("exact", "hutchinson"), "divergence method")
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = fn(x)
        if method == "exact":
            flat, div = out.flatten(1), torch.zeros(x.shape[0], dtype=out.dtype, device=x.device)
            for i in range(flat.shape[1]):
                grad = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True, create_graph=create_graph)[0]
                div = div + grad.flatten(1)[:, i]
            return (div, out.detach()) if with_value else div
        if probes is None:
            raise ValueError("the hutchinson divergence needs probes of shape (P, B, *D)")
        total = 0.0
        for u in probes:
            vjp = torch.autograd.grad(out, x, grad_outputs=u, retain_graph=True, create_graph=create_graph)[0]
            total = total + (vjp * u).flatten(1).sum(1)
        div = total / probes.shape[0]
        return (div, out.detach()) if with_value else div


def hutchinson_variance(jacobian: torch.Tensor, n_probes: int = 1, *, probe: str = "rademacher") -> torch.Tensor:
    """Exact variance of the Hutchinson estimate (1/P) sum_p u_p^T A u_p of tr A (§4.3.2, §3.2.2).

    One probe: Rademacher u gives ||A||_F^2 + tr(A^2) - 2 sum_i A_ii^2 (the diagonal is free);
    Gaussian u gives ||A||_F^2 + tr(A^2).  P independent probes divide it by P.
    Args:
        jacobian: (D, D) or (B, D, D) matrices A.  n_probes: P >= 1.  probe: 'rademacher' or 'gaussian'.
    Returns:
        the variance, () or (B,).
    """
    check_choice(probe, ("rademacher", "gaussian"), "probe")
    if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
        raise ValueError(f"n_probes must be an int >= 1, got {n_probes!r}")
    A = torch.as_tensor(jacobian)
    if A.dim() not in (2, 3) or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"jacobian must be square, shape (D, D) or (B, D, D), got {tuple(A.shape)}")
    var = (A ** 2).sum((-2, -1)) + torch.diagonal(A @ A, dim1=-2, dim2=-1).sum(-1)
    if probe == "rademacher":
        var = var - 2 * (torch.diagonal(A, dim1=-2, dim2=-1) ** 2).sum(-1)
    return var / n_probes


def gaussian_log_prob(x: torch.Tensor, std: float) -> torch.Tensor:
    """log N(x; 0, std^2 I) per sample, shape (B,)."""
    d = x[0].numel()
    return -0.5 * (x.flatten(1) ** 2).sum(1) / std ** 2 - d * math.log(std) - 0.5 * d * math.log(2 * math.pi)


def _check_points(x: torch.Tensor, name: str) -> torch.Tensor:
    """check_x, plus at least one point and only finite values (a likelihood of NaN is no answer)."""
    check_x(x, name)
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch, shape {tuple(x.shape)}: pass at least one point")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf: the likelihood is defined at finite points only")
    return x


def data_time(model: FieldModel, x: torch.Tensor) -> float:
    """The earliest time the PF-ODE can be integrated from at x: 0.0 where v(x, 0) is finite, else schedule.t_eps.

    One model call.  v(x, 0) is infinite (or undefined) for eps/x0 networks on schedules with
    sigma_t ~ sqrt(t) (VP, VE, cosine, discrete) and for point sets; finite for exact mixtures and
    for schedules with sigma_t linear near 0 (EDM, rectified flow, trig).
    """
    try:
        v = model.predict(x, 0.0, "velocity")
    except ValueError:
        return float(model.schedule.t_eps)
    return 0.0 if bool(torch.isfinite(v).all()) else float(model.schedule.t_eps)


@dataclass(frozen=True)
class Likelihood:
    """What log_likelihood(..., details=True) returns: log p_{t_min}(x) (B,), the times and the end point x_T."""

    logp: torch.Tensor
    t_min: float
    t_max: float
    x_T: torch.Tensor


def log_likelihood(model: FieldModel, x0: torch.Tensor, *, t_min: float | None = None, t_max: float = 1.0,
                   prior: Callable | None = None, method: str = "exact", n_probes: int = 1,
                   generator: torch.Generator | None = None, rtol: float = 1e-8, atol: float = 1e-8,
                   details: bool = False):
    """PF-ODE log-likelihood log p_{t_min}(x0) = log p_T(x_T) + int_{t_min}^{T} div v dt (§4.3.2, sign corrected).

    By default t_min = data_time(model, x0): 0, so the result is the data density log p_0(x0), wherever
    the field is finite at t = 0 (every exact mixture model); else schedule.t_eps (networks on VP, VE,
    cosine, discrete schedules), giving log p_{t_eps}(x0).  Integrates the augmented ODE
    d/dt [x, delta] = [v(x, t), div v(x, t)] from t_min up to t_max with DOP853 (float64).  With
    method='hutchinson' the n_probes Rademacher probes are drawn once (from `generator`) and held
    fixed along the path, which keeps the estimate unbiased.
    Args:
        model: a Model.  x0: (B, *D) points.  t_min: start time (None: data_time(model, x0)).
        t_max: end time.  prior: x_T -> log p_T(x_T) (B,); default N(0, sigma_{t_max}^2 I), which
            ignores alpha_{t_max} x0 (exact where alpha_{t_max} = 0).
        details: return a Likelihood (logp, t_min, t_max, x_T) instead of the tensor.
    Returns:
        log-likelihoods (B,) in nats (or a Likelihood).
    """
    from scipy.integrate import solve_ivp

    _check_points(x0, "x0")
    check_choice(method, ("exact", "hutchinson"), "method")
    sch = model.schedule
    t_min = data_time(model, x0) if t_min is None else float(t_min)
    if not 0 <= t_min < t_max <= 1:
        raise ValueError(f"need 0 <= t_min < t_max <= 1, got t_min={t_min}, t_max={t_max}")
    shape, B, n = x0.shape, x0.shape[0], x0.numel()
    probes = None
    if method == "hutchinson":
        if isinstance(n_probes, bool) or not isinstance(n_probes, int) or n_probes < 1:
            raise ValueError(f"n_probes must be an int >= 1, got {n_probes}")
        probes = randint(0, 2, (n_probes, *shape), generator=generator, device=x0.device).to(x0.dtype) * 2 - 1

    def rhs(t, y):
        x = torch.from_numpy(y[:n]).reshape(shape).to(x0)
        div, v = divergence(lambda z: model.predict(z, float(t), "velocity"), x, method=method, probes=probes,
                            with_value=True)
        return torch.cat([v.detach().flatten(), div.detach()]).double().cpu().numpy()

    y0 = torch.cat([x0.detach().flatten(), torch.zeros(B, dtype=x0.dtype, device=x0.device)]).double().cpu().numpy()
    sol = solve_ivp(rhs, (t_min, t_max), y0, method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"likelihood ODE solve failed: {sol.message}")
    y = torch.from_numpy(sol.y[:, -1].copy())
    x_T, delta = y[:n].reshape(shape).to(x0), y[n:].to(x0)
    log_prior = prior(x_T) if prior is not None else gaussian_log_prob(x_T, float(sch.sigma(t_max)))
    logp = log_prior.to(x0) + delta                      # log p_0 = log p_T(x_T) + int div v dt
    return Likelihood(logp, t_min, float(t_max), x_T) if details else logp


def encode(model: FieldModel, x0: torch.Tensor, *, t_min: float | None = None, t_max: float = 1.0, rtol: float = 1e-10,
           atol: float = 1e-10) -> torch.Tensor:
    """PF-ODE encoding x0 -> x_T: integrate dx/dt = v* forward from t_min to t_max (§4.1.4), (B, *D).

    t_min defaults to data_time(model, x0): 0 where the field is finite there, else schedule.t_eps.
    """
    t_min = data_time(model, check_x(x0, "x0")) if t_min is None else float(t_min)
    return pf_ode_solve(model, x0, t_min, t_max, rtol=rtol, atol=atol)


def decode(model: FieldModel, x_T: torch.Tensor, *, t_min: float | None = None, t_max: float = 1.0, rtol: float = 1e-10,
           atol: float = 1e-10) -> torch.Tensor:
    """PF-ODE decoding x_T -> x0: integrate dx/dt = v* backward from t_max to t_min, (B, *D).

    t_min defaults to data_time(model, x_T): 0 where the field is finite there, else schedule.t_eps.
    """
    t_min = data_time(model, check_x(x_T, "x_T")) if t_min is None else float(t_min)
    return pf_ode_solve(model, x_T, t_max, t_min, rtol=rtol, atol=atol)


def ddpm_elbo(model: FieldModel, x0: torch.Tensor, *, steps: int | None = None, decoder_std: float | None = None,
              generator: torch.Generator | None = None) -> dict:
    """Discrete DDPM variational bound -log p(x0) <= L_prior + L_recon + L_diffusion (§2.2.5, Eq. 2.2.13).

    On the chain t_i = i/L (i = 0..L) of model.schedule (a DiscreteSchedule's own knots):
      L_prior     = KL(N(alpha_L x0, sigma_L^2 I) || N(0, sigma_L^2 I))
      L_diffusion = sum_{i=2}^{L} 1/2 (SNR(t_{i-1}) - SNR(t_i)) ||x0 - x0_hat(x_i, t_i)||^2  (§4.5.3),
                    each term with one draw x_i ~ q(x_i | x0)
      L_recon     = -log N(x0; x0_hat(x_1, t_1), decoder_std^2 I), default decoder_std = sigma_1/alpha_1
                    (a continuous Gaussian decoder; Ho et al. discretise it for 8-bit images).
    Args:
        x0: (B, *D) data.  steps: L (default schedule.L for a DiscreteSchedule, else 1000).
    Returns:
        dict of (B,) tensors in nats: prior, recon, diffusion, nll (their sum, an upper bound on -log p).
    """
    _check_points(x0, "x0")
    sch = model.schedule
    L = steps if steps is not None else getattr(sch, "L", 1000)
    if isinstance(L, bool) or not isinstance(L, int) or L < 1:
        raise ValueError(f"steps must be an int >= 1, got {L!r}")
    ts = torch.arange(L + 1, dtype=torch.float64) / L
    alpha, sigma = sch.alpha(ts), sch.sigma(ts)
    snr = (alpha / sigma) ** 2
    d, flat = x0[0].numel(), x0.flatten(1)

    def noised(i):
        return float(alpha[i]) * x0 + float(sigma[i]) * randn_like(x0, generator=generator)

    a_L, s_L, s_p = float(alpha[L]), float(sigma[L]), float(sch.sigma(1.0))
    prior = 0.5 * (((s_L ** 2 + a_L ** 2 * flat ** 2) / s_p ** 2).sum(1) - d - 2 * d * math.log(s_L / s_p))
    diffusion = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
    for i in range(2, L + 1):
        err = (flat - x0_eps(model, noised(i), float(ts[i]))[0].flatten(1)) ** 2
        diffusion = diffusion + 0.5 * float(snr[i - 1] - snr[i]) * err.sum(1)
    std = decoder_std if decoder_std is not None else float(sigma[1] / alpha[1])
    err = ((flat - x0_eps(model, noised(1), float(ts[1]))[0].flatten(1)) ** 2).sum(1)
    recon = 0.5 * err / std ** 2 + d * math.log(std) + 0.5 * d * math.log(2 * math.pi)
    return {"prior": prior, "recon": recon, "diffusion": diffusion, "nll": prior + recon + diffusion}


def bits_per_dim(nll: torch.Tensor, dim: int, *, bin_width: float | None = None) -> torch.Tensor:
    """Bits per dimension nll / (dim ln 2).

    For data that were 8-bit integers rescaled so one integer step has width `bin_width`
    (2/255 for [-1, 1]), the density's nll is turned into a discrete one by adding
    -dim log(bin_width) first (uniform dequantisation).
    """
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an int >= 1, got {dim!r}")
    if bin_width is not None:
        if not bin_width > 0:
            raise ValueError(f"bin_width must be > 0, got {bin_width}")
        nll = nll - dim * math.log(bin_width)
    return nll / (dim * math.log(2))
