"""Exact ground truth: Gaussian mixtures and finite point sets under any schedule (§6.1, §3.3.4).

If x0 ~ sum_k w_k N(mu_k, Sigma_k) and x_t = alpha_t x0 + sigma_t eps, then
x_t ~ sum_k w_k N(alpha_t mu_k, C_k) with C_k = alpha_t^2 Sigma_k + sigma_t^2 I, and with the
posterior responsibilities r_k(x_t) proportional to w_k N(x_t; alpha_t mu_k, C_k):

    score*(x_t) = -sum_k r_k C_k^{-1} (x_t - alpha_t mu_k)
    x0*(x_t)    =  sum_k r_k [mu_k + alpha_t Sigma_k C_k^{-1} (x_t - alpha_t mu_k)]   (Gaussian conditioning)
    eps*(x_t)   = -sigma_t score*                                                    (Tweedie, §3.3.4)
    velocity*   =  alpha_t' x0* + sigma_t' eps*                                       (§6.3.1)

Each Sigma_k is stored as U diag(l) U^T so that C_k^{-1} costs nothing extra at any t.
A point set is the limit Sigma_k = 0, whose posterior is the softmax of §6.1.

With labels, a class c picks its components: p(x0 | c) is the mixture of those components and
p(c | x_t) is the sum of their responsibilities (`class_posterior`, §8.1).  `model(schedule)`
wraps the exact fields as a param.Model whose label n_classes is the null label ("no
condition"), as for the networks, so classifier-free guidance runs on the exact mixture (§8.3).
Fields are computed in float64 on x_t's device and returned in x_t's dtype.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .param import KINDS, Label, Model
from .schedules import Coeffs, Schedule
from .utils import Time, as_time, check_choice, expand_t, multinomial, randn

__all__ = ["GaussianMixture", "PointSet", "MixtureModel"]


def _validate_weights(weights, K: int, device: torch.device) -> torch.Tensor:
    w = torch.as_tensor(weights, dtype=torch.float64, device=device).flatten()
    if w.numel() != K:
        raise ValueError(f"weights has {w.numel()} entries but means has {K} components")
    if torch.isnan(w).any() or (w < 0).any():
        raise ValueError("weights must be non-negative (and sum to 1)")
    if abs(w.sum().item() - 1) > 1e-6:
        raise ValueError(f"weights must sum to 1, they sum to {w.sum().item():.6g}")
    return w / w.sum()


def _validate_labels(labels, K: int, device: torch.device) -> torch.Tensor | None:
    if labels is None:
        return None
    lab = torch.as_tensor(labels, device=device).long().flatten()
    if lab.numel() != K or (lab < 0).any():
        raise ValueError(f"labels must hold {K} non-negative class indices")
    return lab


class GaussianMixture:
    """A mixture sum_k w_k N(mu_k, Sigma_k) in any dimension, with exact noised fields.

    Args:
        weights: (K,) non-negative, summing to 1.
        means:   (K, D).
        covs:    (K, D, D) symmetric positive definite, or None with `stds` for isotropic components.
        stds:    a float or (K,) standard deviations of isotropic components.
        labels:  optional (K,) class of each component, for class-conditional fields.
    Field methods read (x_t, t, schedule, c): x_t (B, D), t a float, 0-d or (B,) tensor in [0, 1],
    c an optional class (int, or (B,) long tensor for one class per sample).
    """

    def __init__(self, weights, means, covs=None, *, stds=None, labels=None):
        mu = torch.as_tensor(means, dtype=torch.float64)
        if mu.dim() != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(mu.shape)}")
        K, D = mu.shape
        dev = mu.device                                   # every parameter lives with the means
        self.means, self.weights = mu, _validate_weights(weights, K, dev)
        self.isotropic = covs is None
        if covs is None:
            if stds is None:
                raise ValueError("give covs (K, D, D) or stds (a float or (K,))")
            sd = torch.as_tensor(stds, dtype=torch.float64, device=dev).flatten()
            sd = sd.expand(K) if sd.numel() == 1 else sd
            if sd.numel() != K:
                raise ValueError(f"stds must be a float or have {K} entries, got {sd.numel()}")
            self._check_var(sd ** 2, "stds")
            self._evals = (sd ** 2)[:, None].expand(K, D).clone()
            self._evecs = torch.eye(D, dtype=torch.float64, device=dev).expand(K, D, D).clone()
        else:
            if stds is not None:
                raise ValueError("give either covs or stds, not both")
            S = torch.as_tensor(covs, dtype=torch.float64, device=dev)
            if S.shape != (K, D, D):
                raise ValueError(f"covs must have shape ({K}, {D}, {D}), got {tuple(S.shape)}")
            if not torch.allclose(S, S.transpose(1, 2), atol=1e-10):
                raise ValueError("covs must be symmetric")
            self._evals, self._evecs = torch.linalg.eigh(S)
            self._check_var(self._evals, "covs")
        self.labels = _validate_labels(labels, K, dev)

    def _check_var(self, var: torch.Tensor, name: str) -> None:
        if torch.isnan(var).any() or (var <= 0).any():
            raise ValueError(f"{name} must be positive definite (all variances > 0)")

    # -- basic facts -------------------------------------------------------------------------
    @property
    def dim(self) -> int: return self.means.shape[1]

    @property
    def n_components(self) -> int: return self.means.shape[0]

    @property
    def n_classes(self) -> int: return 0 if self.labels is None else int(self.labels.max()) + 1

    @property
    def covs(self) -> torch.Tensor:
        """(K, D, D) component covariances."""
        return self._evecs @ torch.diag_embed(self._evals) @ self._evecs.transpose(1, 2)

    def mean(self) -> torch.Tensor:
        """Mean of the mixture, (D,)."""
        return self.weights @ self.means

    def cov(self) -> torch.Tensor:
        """Covariance of the mixture, (D, D): sum_k w_k (Sigma_k + mu_k mu_k^T) - m m^T."""
        m = self.mean()
        second = torch.einsum("k,kij->ij", self.weights, self.covs + self.means[:, :, None] * self.means[:, None, :])
        return second - torch.outer(m, m)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(K={self.n_components}, D={self.dim})"

    # -- sampling ----------------------------------------------------------------------------
    def sample(self, n: int, *, generator: torch.Generator | None = None, c: int | None = None,
               dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
               return_labels: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Draw n points x0 ~ sum_k w_k N(mu_k, Sigma_k), shape (n, D); with c, only from class c's components.

        Drawn on the generator's device (component k ~ w, then mu_k + U_k diag(l_k)^(1/2) z), moved to
        `device`.  return_labels=True also returns the class (without labels: the component) of each point.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if c is not None and torch.as_tensor(c).dim() != 0:
            raise ValueError("sample(c=...) takes one class (an int)")
        w = self.weights if c is None else self.weights * self._class_mask(c).double()
        comp = multinomial(w / w.sum(), n, generator=generator)
        z = randn((n, self.dim), generator=generator, dtype=torch.float64)
        dev = comp.device
        evecs, evals = self._evecs.to(dev)[comp], self._evals.to(dev)[comp]
        x = self.means.to(dev)[comp] + torch.einsum("nij,nj->ni", evecs, z * evals.sqrt())
        lab = comp if self.labels is None else self.labels.to(dev)[comp]
        x = x.to(device=device if device is not None else dev, dtype=dtype)
        return (x, lab.to(x.device)) if return_labels else x

    def sample_marginal(self, n: int, t: Time, schedule: Schedule, *, generator: torch.Generator | None = None,
                        c: int | None = None, dtype: torch.dtype = torch.float32,
                        device: torch.device | str | None = None) -> torch.Tensor:
        """Draw x_t = alpha_t x0 + sigma_t eps with x0 from the mixture (or class c), shape (n, D).

        t is a float or an (n,) tensor; drawn on the generator's device (x0 first, then eps), moved to `device`.
        """
        x0 = self.sample(n, generator=generator, c=c, dtype=torch.float64)
        eps = randn(x0.shape, generator=generator, dtype=torch.float64)
        co = schedule.coeffs(t)
        x_t = expand_t(co.alpha, x0) * x0 + expand_t(co.sigma, x0) * eps
        return x_t.to(device=device if device is not None else x0.device, dtype=dtype)

    def marginal(self, t: float, schedule: Schedule) -> GaussianMixture:
        """The noised marginal p_t as a mixture: means alpha_t mu_k, covs alpha_t^2 Sigma_k + sigma_t^2 I (scalar t)."""
        if isinstance(t, Schedule):
            raise TypeError("marginal(t, schedule): the time comes first, then the schedule")
        co = self._scalar_coeffs(t, schedule)
        covs = co.alpha ** 2 * self.covs + co.sigma ** 2 * torch.eye(self.dim, dtype=torch.float64,
                                                                     device=self.means.device)
        return GaussianMixture(self.weights, co.alpha * self.means, covs, labels=self.labels)

    def conditional(self, c: int) -> GaussianMixture:
        """The mixture of class c alone (weights renormalised)."""
        mask = self._class_mask(c)
        w = self.weights[mask]
        return GaussianMixture(w / w.sum(), self.means[mask], self.covs[mask])

    # -- exact fields ------------------------------------------------------------------------
    @staticmethod
    def _scalar_coeffs(t: Time, schedule: Schedule) -> Coeffs:
        co = schedule.coeffs(t)
        if co.t.dim():
            raise ValueError("marginal(t, schedule) needs a scalar t")
        return co

    def _class_mask(self, c: Label) -> torch.Tensor:
        """(K,) for one class, (B, K) for per-sample classes: which components belong to c."""
        if self.labels is None:
            raise ValueError("this mixture has no labels; pass labels=... to use a class c")
        c = torch.as_tensor(c, device=self.labels.device).long()
        if (c < 0).any() or (c >= self.n_classes).any():
            raise ValueError(f"class c must lie in 0..{self.n_classes - 1}")
        return self.labels == c if c.dim() == 0 else self.labels[None, :] == c[:, None]

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("x_t must be a floating torch.Tensor")
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x_t must have shape (B, {self.dim}), got {tuple(x.shape)}")

    @staticmethod
    def _check_finite(x_t, method: str) -> None:
        if isinstance(x_t, torch.Tensor) and not torch.isfinite(x_t).all():
            raise ValueError(f"x_t contains NaN or inf; {method} needs finite points")

    def _stats(self, x_t, t, schedule, c=None):
        """Per-component quantities at (x_t, t): logits log w_k N(x_t; a mu_k, C_k) (B, K), whitened
        residual z = U^T (x - a mu) (B, K, D), C's eigenvalues (B or 1, K, D) and the coefficients."""
        self._check_input(x_t)
        co = schedule.coeffs(as_time(t).to(x_t.device))
        x = x_t.double()
        self._to(x.device)
        a = expand_t(co.alpha, x)[..., None]                 # (B,1,1) or ()
        s = expand_t(co.sigma, x)[..., None]
        denom = a ** 2 * self._evals + s ** 2                # eigenvalues of C_k
        if (denom <= 0).any():
            raise ValueError(f"{type(self).__name__}: the noised density is singular at t = 0 "
                             "(sigma_t = 0 with point masses); use t > 0")
        y = x[:, None, :] - a * self.means                   # (B, K, D)
        z = y if self.isotropic else torch.einsum("kid,bki->bkd", self._evecs, y)
        logn = -0.5 * ((z ** 2 / denom).sum(-1) + torch.log(denom).sum(-1) + self.dim * math.log(2 * math.pi))
        logits = torch.log(self.weights) + logn
        if c is not None:
            logits = logits.masked_fill(~self._class_mask(c), -math.inf)
        return logits, z, denom, a, co

    def _to(self, dev: torch.device) -> None:
        """Keep the parameters on the device of the input (moved once, then cached)."""
        if self.means.device != dev:
            self.means, self.weights = self.means.to(dev), self.weights.to(dev)
            self._evals, self._evecs = self._evals.to(dev), self._evecs.to(dev)
            if self.labels is not None:
                self.labels = self.labels.to(dev)

    def _back(self, w):  # U w, (B, K, D)
        return w if self.isotropic else torch.einsum("kid,bkd->bki", self._evecs, w)

    def log_prob_t(self, x_t: torch.Tensor, t: Time, schedule: Schedule, c: Label = None) -> torch.Tensor:
        """log p_t(x_t) = log sum_k w_k N(x_t; alpha_t mu_k, C_k) (or log p_t(x_t | c)), shape (B,)."""
        logits = self._stats(x_t, t, schedule, c)[0]
        out = torch.logsumexp(logits, -1)
        if c is not None:
            out = out - torch.log((self.weights * self._class_mask(c).double()).sum(-1))
        return out.to(x_t.dtype)

    def responsibilities(self, x_t: torch.Tensor, t: Time, schedule: Schedule, c: Label = None) -> torch.Tensor:
        """Responsibilities r_k = p(k | x_t) (or p(k | x_t, c)), shape (B, K)."""
        return torch.softmax(self._stats(x_t, t, schedule, c)[0], -1).to(x_t.dtype)

    def class_posterior(self, x_t: torch.Tensor, t: Time, schedule: Schedule) -> torch.Tensor:
        """Exact p(c | x_t) = sum of the responsibilities of class c's components (§8.1), shape (B, n_classes)."""
        if self.labels is None:
            raise ValueError("this mixture has no labels")
        r = torch.softmax(self._stats(x_t, t, schedule)[0], -1)
        out = torch.zeros(r.shape[0], self.n_classes, dtype=r.dtype, device=r.device)
        return out.index_add(1, self.labels, r).to(x_t.dtype)

    def _fields(self, x_t, t, schedule, c=None):
        """(score, x0, sum_k r_k C_k^{-1}(x - a mu_k), coeffs) in float64."""
        logits, z, denom, a, co = self._stats(x_t, t, schedule, c)
        r = torch.softmax(logits, -1)[..., None]                         # (B, K, 1)
        cinv_y = (r * self._back(z / denom)).sum(1)                      # sum_k r_k C_k^{-1} (x - a mu_k)
        x0 = (r * (self.means + self._back(a * self._evals * z / denom))).sum(1)
        return -cinv_y, x0, cinv_y, co

    def score(self, x_t: torch.Tensor, t: Time, schedule: Schedule, c: Label = None) -> torch.Tensor:
        """Exact score nabla log p_t(x_t) = -sum_k r_k C_k^{-1} (x_t - alpha_t mu_k) (or of p_t(x_t | c)), (B, D)."""
        return self._fields(x_t, t, schedule, c)[0].to(x_t.dtype)

    def x0(self, x_t: torch.Tensor, t: Time, schedule: Schedule, c: Label = None) -> torch.Tensor:
        """Exact denoiser E[x0 | x_t] = sum_k r_k [mu_k + alpha_t Sigma_k C_k^{-1} (x_t - alpha_t mu_k)], (B, D)."""
        return self._fields(x_t, t, schedule, c)[1].to(x_t.dtype)

    def eps(self, x_t: torch.Tensor, t: Time, schedule: Schedule, c: Label = None) -> torch.Tensor:
        """Exact noise prediction E[eps | x_t] = -sigma_t score*, shape (B, D)."""
        score, _, _, co = self._fields(x_t, t, schedule, c)
        return (-expand_t(co.sigma, score) * score).to(x_t.dtype)

    def velocity(self, x_t: torch.Tensor, t: Time, schedule: Schedule, c: Label = None) -> torch.Tensor:
        """Exact PF-ODE velocity alpha' x0* + sigma' eps*, shape (B, D).

        Written as alpha' x0* + (sigma^2)'/2 sum_k r_k C_k^{-1}(x - alpha mu_k), which stays
        finite at t = 0 even where sigma_t' does not (VP, VE).
        """
        _, x0, cinv, co = self._fields(x_t, t, schedule, c)
        v = expand_t(co.d_alpha, x0) * x0 + 0.5 * expand_t(co.d_sigma2, x0) * cinv
        return v.to(x_t.dtype)

    def v(self, x_t: torch.Tensor, t: Time, schedule: Schedule, c: Label = None) -> torch.Tensor:
        """Exact Salimans-Ho v-prediction alpha_t eps* - sigma_t x0* = -alpha_t sigma_t score* - sigma_t x0*, (B, D)."""
        score, x0, _, co = self._fields(x_t, t, schedule, c)
        a, s = expand_t(co.alpha, x0), expand_t(co.sigma, x0)
        return (-a * s * score - s * x0).to(x_t.dtype)

    def _matrices(self, denom: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """C_k^{-1} and Sigma_k C_k^{-1} as full (B or 1, K, D, D) matrices from C's eigenvalues `denom`."""
        U, lam = self._evecs, self._evals
        denom = denom if denom.dim() == 3 else denom[None]
        cinv = torch.einsum("kij,bkj,klj->bkil", U, 1 / denom, U)
        sig_cinv = torch.einsum("kij,bkj,klj->bkil", U, lam / denom, U)
        return cinv, sig_cinv

    def score_hessian(self, x_t: torch.Tensor, t: Time, schedule: Schedule) -> torch.Tensor:
        """Exact Hessian of log p_t at x_t, (B, D, D) (§3.3.4):

            sum_k r_k (g_k g_k^T - C_k^{-1}) - s s^T,   g_k = -C_k^{-1} (x_t - alpha_t mu_k),  s = sum_k r_k g_k.
        """
        self._check_finite(x_t, "score_hessian")
        logits, z, denom, a, co = self._stats(x_t, t, schedule)
        r = torch.softmax(logits, -1)                                    # (B, K)
        g = -self._back(z / denom)                                       # (B, K, D)
        cinv, _ = self._matrices(denom, a)
        s = (r[..., None] * g).sum(1)
        H = torch.einsum("bk,bki,bkj->bij", r, g, g) - torch.einsum("bk,bkij->bij", r, cinv.expand(r.shape[0], -1, -1, -1))
        return (H - s[:, :, None] * s[:, None, :]).to(x_t.dtype)

    def posterior_cov(self, x_t: torch.Tensor, t: Time, schedule: Schedule) -> torch.Tensor:
        """Exact Cov[x0 | x_t], (B, D, D), by Gaussian conditioning in each component (§3.3.4):

            sum_k r_k (P_k + m_k m_k^T) - m m^T,  m_k = mu_k + alpha Sigma_k C_k^{-1} (x_t - alpha mu_k),
            P_k = Sigma_k - alpha^2 Sigma_k C_k^{-1} Sigma_k,  m = x0*(x_t).
        Second-order Tweedie: it equals (sigma_t^2 I + sigma_t^4 Hessian log p_t) / alpha_t^2 (score_hessian).
        """
        self._check_finite(x_t, "posterior_cov")
        logits, z, denom, a, co = self._stats(x_t, t, schedule)
        r = torch.softmax(logits, -1)
        m_k = self.means + self._back(a * self._evals * z / denom)      # (B, K, D)
        _, sig_cinv = self._matrices(denom, a)
        P = self.covs - a[..., None] ** 2 * sig_cinv @ self.covs        # (B or 1, K, D, D)
        m = (r[..., None] * m_k).sum(1)
        second = torch.einsum("bk,bkij->bij", r, P.expand(r.shape[0], -1, -1, -1)) + \
            torch.einsum("bk,bki,bkj->bij", r, m_k, m_k)
        return (second - m[:, :, None] * m[:, None, :]).to(x_t.dtype)

    def predict(self, x_t: torch.Tensor, t: Time, schedule: Schedule, kind: str = "eps",
                c: Label = None) -> torch.Tensor:
        """One exact prediction by name: x0, eps, score, velocity or v, shape (B, D)."""
        check_choice(kind, KINDS, "prediction kind")
        return getattr(self, kind)(x_t, t, schedule, c)

    # -- the data density (t = 0) -----------------------------------------------------------
    def log_prob(self, x: torch.Tensor, c: Label = None) -> torch.Tensor:
        """log p_data(x), shape (B,)."""
        return self.log_prob_t(x, 0.0, _DATA, c)

    def data_posterior(self, x: torch.Tensor) -> torch.Tensor:
        """Responsibilities p(k | x) under the data density itself, shape (B, K)."""
        return self.responsibilities(x, 0.0, _DATA)

    def data_score(self, x: torch.Tensor, c: Label = None) -> torch.Tensor:
        """nabla log p_data(x), shape (B, D)."""
        return self.score(x, 0.0, _DATA, c)

    # -- the exact PF-ODE flow map ----------------------------------------------------------
    def flow(self, x: torch.Tensor, times: Sequence[float] | torch.Tensor, schedule: Schedule, *,
             c: Label = None, rtol: float = 1e-10, atol: float = 1e-10) -> torch.Tensor:
        """Integrate the PF-ODE dx/dt = velocity*(x, t) through `times` with scipy's DOP853 (§4.1.4).

        Args:
            x: (B, D) points at times[0].  times: a monotone sequence of n+1 times in [0, 1].
            c: an optional class (int or (B,)).
        Returns:
            the trajectory (n+1, B, D) in x's dtype and device (computed in float64 on the CPU).
        """
        from scipy.integrate import solve_ivp

        self._check_input(x)
        ts = as_time(torch.as_tensor(times, dtype=torch.float64), name="times").flatten()
        if ts.numel() < 2:
            return x[None].clone()
        diffs = ts[1:] - ts[:-1]
        if not ((diffs > 0).all() or (diffs < 0).all()):
            raise ValueError("times must be strictly monotone")
        shape = x.shape
        c = c.cpu() if isinstance(c, torch.Tensor) else c

        def rhs(t, y):
            xt = torch.from_numpy(y).reshape(shape)
            return self.velocity(xt, float(t), schedule, c).numpy().ravel()

        sol = solve_ivp(rhs, (float(ts[0]), float(ts[-1])), x.detach().double().cpu().numpy().ravel(),
                        method="DOP853", t_eval=ts.numpy(), rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"reference ODE solve failed: {sol.message}")
        return torch.from_numpy(sol.y.T.copy()).reshape(len(ts), *shape).to(device=x.device, dtype=x.dtype)

    def flow_map(self, x: torch.Tensor, s: float, t: float, schedule: Schedule, **kw) -> torch.Tensor:
        """The exact flow map Psi_{s->t}(x) of the PF-ODE, from s to t (§4.1.4, §11.1), shape (B, D)."""
        return self.flow(x, [float(s), float(t)], schedule, **kw)[-1]

    # -- exact posteriors of a linear measurement y = A x0 + sigma_y z (§8.4) ---------------
    def _measurement(self, A, y, sigma_y) -> tuple[torch.Tensor, torch.Tensor, float]:
        """A as (M, D), y as (M,) float64 on the means' device; clear errors naming the argument."""
        if isinstance(self, PointSet):
            raise TypeError("a point set has no Gaussian posterior of a measurement; use a GaussianMixture")
        A = torch.as_tensor(A, dtype=torch.float64, device=self.means.device)
        A = A[None] if A.dim() == 1 else A
        if A.dim() != 2 or A.shape[1] != self.dim:
            raise ValueError(f"A (the measurement operator) must have shape (M, {self.dim}), got {tuple(A.shape)}")
        y = torch.as_tensor(y, dtype=torch.float64, device=self.means.device).flatten()
        if y.numel() != A.shape[0]:
            raise ValueError(f"y must have {A.shape[0]} entries (one per row of A), got {y.numel()}")
        if not (isinstance(sigma_y, (int, float)) and math.isfinite(sigma_y) and sigma_y > 0):
            raise ValueError(f"sigma_y (the measurement noise std) must be a finite float > 0, got {sigma_y!r}")
        return A, y, float(sigma_y)

    def _conditioned(self, A, y, sigma_y):
        """Per component: log evidence log N(y; A mu_k, G_k) (K,), posterior means (K, D), covariances (K, D, D)."""
        A, y, sy = self._measurement(A, y, sigma_y)
        S = self.covs
        G = A @ S @ A.T + sy ** 2 * torch.eye(A.shape[0], dtype=torch.float64, device=A.device)   # G_k = A S_k A^T + sy^2 I
        K = torch.linalg.solve(G, A @ S).transpose(1, 2)                   # gain S_k A^T G_k^{-1}, (K, D, M)
        r = y - self.means @ A.T                                           # y - A mu_k
        post_m = self.means + (K @ r[..., None])[..., 0]
        post_S = S - K @ A @ S
        L = torch.linalg.cholesky(G)
        z = torch.linalg.solve_triangular(L, r[..., None], upper=False)[..., 0]
        log_ev = -0.5 * (z ** 2).sum(-1) - torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(-1) \
            - 0.5 * A.shape[0] * math.log(2 * math.pi)
        return log_ev, post_m, 0.5 * (post_S + post_S.transpose(1, 2))

    def log_evidence(self, A, y, sigma_y: float) -> float:
        """log p(y) = log sum_k w_k N(y; A mu_k, A Sigma_k A^T + sigma_y^2 I) for y = A x0 + sigma_y z."""
        return float(torch.logsumexp(torch.log(self.weights) + self._conditioned(A, y, sigma_y)[0], 0))

    def posterior(self, A, y, sigma_y: float) -> GaussianMixture:
        """The exact posterior p(x0 | y) for y = A x0 + sigma_y z, z ~ N(0, I): again a Gaussian mixture (§8.4).

        Each component is conditioned on y (Gaussian conditioning with gain K_k = Sigma_k A^T G_k^{-1},
        G_k = A Sigma_k A^T + sigma_y^2 I: mean mu_k + K_k (y - A mu_k), covariance Sigma_k - K_k A Sigma_k)
        and re-weighted by its evidence: w_k' proportional to w_k N(y; A mu_k, G_k).  Labels are kept.
        Because the forward noise is independent of y, p_t(x_t | y) is this posterior noised by the
        schedule, so `posterior(...).score(x_t, t, schedule)` is the exact grad log p_t(x_t | y).
        Args: A (M, D) or (D,) for one row; y (M,); sigma_y > 0.
        """
        log_ev, m, S = self._conditioned(A, y, sigma_y)
        w = torch.softmax(torch.log(self.weights) + log_ev, 0)
        return GaussianMixture(w, m, S, labels=self.labels)

    def likelihood_score(self, x_t: torch.Tensor, t: Time, schedule: Schedule, A, y, sigma_y: float) -> torch.Tensor:
        """Exact grad_x log p_t(y | x_t) = grad log p_t(x_t | y) - grad log p_t(x_t) (Bayes, §8.4), shape (B, D)."""
        return self.posterior(A, y, sigma_y).score(x_t, t, schedule) - self.score(x_t, t, schedule)

    def model(self, schedule: Schedule, c: Label = None, *, null_label: int | None = None) -> MixtureModel:
        """This mixture's exact fields as a sampler-ready Model under `schedule` (label null_label = no condition)."""
        return MixtureModel(self, schedule, c, null_label=null_label)


class PointSet(GaussianMixture):
    """Empirical data (1/N) sum_i delta(x^(i)) (optionally weighted): the mixture with Sigma_k = 0.

    The posterior over points is the softmax of §6.1; x0* is the posterior-weighted mean of
    the points.  Fields need sigma_t > 0 (at t = 0 a point set has no density); `sample`
    draws points with replacement.

    Args: points (N, D); weights (N,) or None for uniform; labels (N,) optional classes.
    """

    def __init__(self, points, weights=None, *, labels=None):
        pts = torch.as_tensor(points, dtype=torch.float64)
        if pts.dim() != 2:
            raise ValueError(f"points must have shape (N, D), got {tuple(pts.shape)}")
        N, D = pts.shape
        if weights is None:
            weights = torch.full((N,), 1.0 / N, dtype=torch.float64)
        dev = pts.device
        self.means, self.weights, self.isotropic = pts, _validate_weights(weights, N, dev), True
        self._evals = torch.zeros(N, D, dtype=torch.float64, device=dev)
        self._evecs = torch.eye(D, dtype=torch.float64, device=dev).expand(N, D, D)
        self.labels = _validate_labels(labels, N, dev)

    def conditional(self, c: int) -> PointSet:
        """The points of class c alone (weights renormalised)."""
        mask = self._class_mask(c)
        w = self.weights[mask]
        return PointSet(self.means[mask], w / w.sum())

    def marginal(self, t: float, schedule: Schedule) -> GaussianMixture:
        """p_t of the point set: isotropic components N(alpha_t x^(i), sigma_t^2 I) (needs sigma_t > 0)."""
        if isinstance(t, Schedule):
            raise TypeError("marginal(t, schedule): the time comes first, then the schedule")
        co = self._scalar_coeffs(t, schedule)
        if co.sigma == 0:
            raise ValueError(f"a point set has no density at sigma_t = 0 (t = {float(co.t):g})")
        return GaussianMixture(self.weights, co.alpha * self.means, stds=co.sigma.expand(self.n_components),
                               labels=self.labels)


class MixtureModel(Model):
    """The exact (Bayes-optimal) model of a mixture under a schedule: every prediction is the closed
    form, so samplers run on it measure discretisation error alone.

    Labels follow the networks' convention (§8.3): c in 0..n_classes-1 conditions on that class,
    and c = null_label (n_classes by default) means no condition, the full mixture, so
    guidance.CFG(mixture.model(schedule), omega, null_label=mixture.n_classes) is exact CFG.

    Args:
        mixture: a GaussianMixture or PointSet.  schedule: the forward schedule.
        c: a fixed class used when predict gets none (int or (B,)).  null_label: the "no condition" label.
    """

    def __init__(self, mixture: GaussianMixture, schedule: Schedule, c: Label = None, *,
                 null_label: int | None = None):
        self.mixture, self.schedule, self.kind, self.c = mixture, schedule, "eps", c
        self.null_label = mixture.n_classes if null_label is None else int(null_label)
        if self.null_label < mixture.n_classes:
            raise ValueError(f"null_label must not be a class of the mixture: need >= {mixture.n_classes}, "
                             f"got {self.null_label}")

    def raw(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        return self.predict(x_t, t, "eps", c)

    def predict(self, x_t: torch.Tensor, t: Time, kind: str = "eps", c: Label = None) -> torch.Tensor:
        """The exact prediction of `kind` at (x_t, t), conditioned on c per sample (null label: unconditional)."""
        check_choice(kind, KINDS, "prediction kind")
        c = self.c if c is None else c
        if c is None or self.mixture.labels is None:         # an unlabelled mixture rejects any c itself
            return self.mixture.predict(x_t, t, self.schedule, kind, c)
        c = torch.as_tensor(c, device=x_t.device).long()
        if c.dim() == 0:
            return self.mixture.predict(x_t, t, self.schedule, kind, None if c == self.null_label else c)
        if c.shape != (x_t.shape[0],):
            raise ValueError(f"c must be an int or have shape ({x_t.shape[0]},), got {tuple(c.shape)}")
        null = c == self.null_label
        if not null.any():
            return self.mixture.predict(x_t, t, self.schedule, kind, c)
        out = self.mixture.predict(x_t, t, self.schedule, kind)
        keep = ~null
        if keep.any():
            tt = as_time(t)
            tt = tt[keep.to(tt.device)] if tt.dim() else tt
            out[keep] = self.mixture.predict(x_t[keep], tt, self.schedule, kind, c[keep])
        return out


class _DataTime(Schedule):
    """alpha = 1, sigma = 0 at every t: lets log_prob and data_score reuse the t-machinery."""

    name = "data"
    def _alpha(self, t): return torch.ones_like(t)
    def _sigma(self, t): return torch.zeros_like(t)
    def _d_alpha(self, t): return torch.zeros_like(t)
    def _d_sigma2(self, t): return torch.zeros_like(t)


_DATA = _DataTime()
