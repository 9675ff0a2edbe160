"""Guidance as a combination of fields (§8.2, §8.3), wrapped as a Model so every sampler can use it.

Classifier-free guidance (§8.3, the book's omega convention):
    s_cfg(x_t, c) = omega * s(x_t, t, c) + (1 - omega) * s(x_t, t, null)
omega = 1 is the plain conditional model and omega = 0 the unconditional one.  Every prediction
kind is affine in the score with a c-independent offset (param.TABLE), and the weights sum to 1,
so the same combination applies to x0, eps, v or velocity outputs directly.

Guidance in a limited interval (Kynkaenniemi et al. 2024; an outside extension, not in the
book): omega applies only where lambda_t lies in `lam_interval`, and omega = 1 elsewhere.  Strong
guidance at the noisiest times collapses the diversity within a class; limiting it keeps most of
the class fidelity and much of the diversity.

Classifier guidance (§8.2):  s_cg(x_t, c) = s(x_t, t) + omega * grad_x log p(c | x_t, t).
With the exact p(c | x_t) and omega = 1 this is the exact conditional score (Bayes, §8.1).

Both run on the exact mixture: `gmm.GaussianMixture.model(schedule)` treats the label n_classes
as "no condition", like the networks, and `class_posterior` is the exact classifier.

Inverse problems (§8.4), y = A x0 + sigma_y z with a linear operator A (`LinearOperator`): the
posterior score is the prior score plus grad log p_t(y | x_t), which each method approximates:
    ScoreSDEProjection  A^T (alpha_t y - A x_t) / gamma_t          (Song et al.)
    ILVRProjection      A^+ (alpha_t y - A x_t) / gamma_t          (Choi et al.)
    DPS                 grad_{x_t} -||y - A x0_hat(x_t)||^2 / (2 sigma_y^2)   (Chung et al.)
    PiGDM               the same with the covariance r_t^2 A A^T + sigma_y^2 I  (Song et al. 2023)
with gamma_t = sigma_t^2 + alpha_t^2 sigma_y^2.  Training-free guidance with any differentiable
loss (`LossGuidance`) works in noise space (with or without back-propagating through the
denoiser) or in data space (x0_hat moved down the loss gradient).  Every method is a Model whose
prediction is the guided score (or x0), so any sampler runs it.  InDI (`indi_restore`) is the
Euler PF-ODE of the VE schedule sigma_t = t sigma (EDM(sigma)) started at the measurement.
gmm.GaussianMixture.posterior gives the exact answer to hold all of them against.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .param import KINDS, Label, Model
from .utils import Time, as_time, check_choice, expand_t

__all__ = ["CFG", "ClassifierGuidance", "LinearOperator", "matrix_operator", "mask_operator",
           "downsample_operator", "identity_operator", "ScoreSDEProjection", "ILVRProjection", "LossGuidance",
           "DPS", "PiGDM", "indi_restore"]


def _check_omega(omega: float) -> float:
    if isinstance(omega, bool) or not isinstance(omega, (int, float)) or not math.isfinite(omega):
        raise ValueError(f"omega (the guidance weight) must be a finite number, got {omega!r}")
    return float(omega)


def _labels(c: Label, x: torch.Tensor, n_classes: int | None = None) -> torch.Tensor:
    """c as (B,) long labels on x's device; a clear error when missing or of the wrong length."""
    if c is None:
        raise ValueError("guidance needs a class label c (an int or a (B,) tensor)")
    c = torch.as_tensor(c, device=x.device).long()
    c = c.expand(x.shape[0]) if c.dim() == 0 else c
    if c.shape != (x.shape[0],):
        raise ValueError(f"c must be an int or have shape ({x.shape[0]},), got {tuple(c.shape)}")
    if n_classes is not None and ((c < 0) | (c >= n_classes)).any():
        raise ValueError(f"class label c must lie in 0..{n_classes - 1}, got {c.unique().tolist()}")
    return c


class CFG(Model):
    """Classifier-free guidance around a model trained with label dropout (§8.3).

    prediction = omega * model(x_t, t, c) + (1 - omega) * model(x_t, t, null_label), in any kind.

    Args:
        model: a conditional Model whose label `null_label` means "no condition".
        omega: guidance weight (book convention: 1 = conditional, 0 = unconditional).
        null_label: the null class index (nets and MixtureModel use n_classes for it).
        c: a fixed class (or pass c to predict / to the sampler).
        lam_interval: optional (lam_lo, lam_hi); guidance acts only where lam_lo <= lambda_t <= lam_hi.
    """

    def __init__(self, model: Model, omega: float, null_label: int, c: Label = None,
                 lam_interval: tuple[float, float] | None = None):
        self.model, self.omega, self.null_label, self.c = model, _check_omega(omega), int(null_label), c
        self.schedule, self.kind = model.schedule, model.kind
        if lam_interval is not None and not lam_interval[0] < lam_interval[1]:
            raise ValueError(f"lam_interval must be (lo, hi) with lo < hi, got {lam_interval}")
        self.lam_interval = lam_interval

    def _omega(self, t: Time, x_t: torch.Tensor) -> torch.Tensor:
        """The guidance weight at t: omega inside the interval, 1 outside; shape () or (B, 1, ...)."""
        omega = torch.full_like(torch.as_tensor(t, dtype=torch.float64), self.omega)
        if self.lam_interval is not None:
            lam = self.schedule.lam(t)
            inside = (lam >= self.lam_interval[0]) & (lam <= self.lam_interval[1])
            omega = torch.where(inside, omega, torch.ones_like(omega))
        return expand_t(omega, x_t)

    def raw(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        return self.predict(x_t, t, self.kind, c)

    def predict(self, x_t: torch.Tensor, t: Time, kind: str = "eps", c: Label = None) -> torch.Tensor:
        """The guided prediction of `kind` at (x_t, t) for class c (int or (B,)), shape like x_t."""
        check_choice(kind, KINDS, "prediction kind")
        c = _labels(self.c if c is None else c, x_t, self.null_label)
        omega = self._omega(t, x_t)
        if bool((omega == 1.0).all()):
            return self.model.predict(x_t, t, kind, c)
        null = torch.full_like(c, self.null_label)
        # one batched call for both branches (the time may be per-sample)
        tt = torch.as_tensor(t, dtype=torch.float64)
        tt = torch.cat([tt, tt]) if tt.dim() else tt
        cond, uncond = self.model.predict(torch.cat([x_t, x_t]), tt, kind, torch.cat([c, null])).chunk(2)
        return omega * cond + (1 - omega) * uncond


class ClassifierGuidance(Model):
    """Classifier guidance (§8.2): score(x_t, t) + omega * grad_x log p_psi(c | x_t, t).

    Args:
        model: an unconditional Model; classifier: (x_t, t) -> logits (B, C) (a noise-aware network,
        or the log of an exact class posterior); omega: guidance weight; c: a fixed class (or pass c).
    raw() is the guided score; predict(x_t, t, kind, c) converts it like any Model (§6.3.1).
    """

    def __init__(self, model: Model, classifier: Callable[[torch.Tensor, Time], torch.Tensor], omega: float,
                 c: Label = None):
        self.model, self.classifier, self.omega, self.c = model, classifier, _check_omega(omega), c
        self.schedule, self.kind = model.schedule, "score"

    def raw(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        """The guided score, shape like x_t (the gradient by autograd through the classifier)."""
        c = _labels(self.c if c is None else c, x_t)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            logits = self.classifier(x, t)
            _labels(c, x_t, logits.shape[-1])
            logp = torch.log_softmax(logits, -1).gather(1, c[:, None]).sum()
            grad, = torch.autograd.grad(logp, x)
        return self.model.predict(x_t, t, "score") + self.omega * grad


# -- inverse problems y = A x0 + sigma_y z (§8.4) ---------------------------------------------------
class LinearOperator:
    """A linear measurement operator A with its adjoint A^T and Gram matrix A A^T.

    Args:
        forward: x (B, *D) -> A x (B, *M).  adjoint: y (B, *M) -> A^T y (B, *D).
        gram: A A^T as a float g (A A^T = g I on the measured entries) or an (M, M) matrix.
        check: x -> None, raising a ValueError naming `x` when its shape does not fit A.
        name: a label for tables.
    pinv(y) = A^T (A A^T)^{-1} y is the pseudo-inverse A^+ (ILVR's projection).
    """

    def __init__(self, forward, adjoint, gram, check, name: str = "A"):
        self._fwd, self._adj, self.gram, self._check, self.name = forward, adjoint, gram, check, name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self._fwd(x)

    def T(self, y: torch.Tensor) -> torch.Tensor:
        return self._adj(y)

    def gram_solve(self, y: torch.Tensor, r2: float = 1.0, s2: float = 0.0) -> torch.Tensor:
        """(r2 A A^T + s2 I)^{-1} y, batched over y's first axis."""
        if isinstance(self.gram, float):
            return y / (r2 * self.gram + s2)
        G = r2 * self.gram.to(y) + s2 * torch.eye(self.gram.shape[0], dtype=y.dtype, device=y.device)
        return torch.linalg.solve(G, y.T).T

    def pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.T(self.gram_solve(y))

    def __repr__(self) -> str:
        return f"LinearOperator({self.name})"


def matrix_operator(A) -> LinearOperator:
    """A as an (M, D) matrix acting on points x (B, D): y = x A^T."""
    A = torch.as_tensor(A, dtype=torch.float64)
    A = A[None] if A.dim() == 1 else A
    if A.dim() != 2:
        raise ValueError(f"A must be an (M, D) matrix, got shape {tuple(A.shape)}")

    def check(x):
        if x.dim() != 2 or x.shape[1] != A.shape[1]:
            raise ValueError(f"x must have shape (B, {A.shape[1]}) for this A (the measurement operator), "
                             f"got {tuple(x.shape)}")
    return LinearOperator(lambda x: x @ A.to(x).T, lambda y: y @ A.to(y), A @ A.T, check, f"matrix {tuple(A.shape)}")


def mask_operator(mask: torch.Tensor) -> LinearOperator:
    """Inpainting: y = m * x with a 0/1 mask m of shape D (y lives in x's space, zeros where unseen)."""
    m = torch.as_tensor(mask, dtype=torch.float32)
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("mask must hold only 0 and 1")

    def check(x):
        if tuple(x.shape[1:]) != tuple(m.shape):
            raise ValueError(f"x must have shape (B, {', '.join(map(str, m.shape))}) for this mask (the "
                             f"measurement operator A), got {tuple(x.shape)}")
    return LinearOperator(lambda x: m.to(x) * x, lambda y: m.to(y) * y, 1.0, check, "mask")


def downsample_operator(factor: int = 2) -> LinearOperator:
    """Super-resolution: y = average over factor x factor blocks of images (B, C, H, W); A A^T = I / factor^2."""
    f = int(factor)
    if f < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}")

    def check(x):
        if x.dim() != 4 or x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"x must be images (B, C, H, W) with H and W divisible by {f} for the measurement "
                             f"operator A, got {tuple(x.shape)}")
    fwd = lambda x: torch.nn.functional.avg_pool2d(x, f)                                   # noqa: E731
    adj = lambda y: y.repeat_interleave(f, -1).repeat_interleave(f, -2) / f ** 2            # noqa: E731
    return LinearOperator(fwd, adj, 1.0 / f ** 2, check, f"downsample x{f}")


def identity_operator() -> LinearOperator:
    """Denoising: y = x + sigma_y z."""
    return LinearOperator(lambda x: x, lambda y: y, 1.0, lambda x: None, "identity")


def _check_measurement(A, y: torch.Tensor, sigma_y: float) -> None:
    if not isinstance(A, LinearOperator):
        raise TypeError(f"A must be a LinearOperator (matrix_operator, mask_operator, ...), got {type(A).__name__}")
    if not (isinstance(sigma_y, (int, float)) and math.isfinite(sigma_y) and sigma_y > 0):
        raise ValueError(f"sigma_y (the measurement noise std) must be a finite float > 0, got {sigma_y!r}")
    if not isinstance(y, torch.Tensor):
        raise TypeError("y must be a torch.Tensor (one measurement, or one per sample)")


def _x0_and_vjp(model: Model, x_t: torch.Tensor, t: Time, c: Label, backprop: bool = True):
    """x0_hat(x_t) and a function v -> (d x0_hat / d x_t)^T v (autograd through the denoiser)."""
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        x0 = model.predict(x, t, "x0", c)
    def vjp(v):
        return torch.autograd.grad(x0, x, v, retain_graph=True)[0]
    return x0.detach(), vjp


class _Guided(Model):
    """A prior Model plus a guidance term: raw = score(x_t, t, c) + guidance(x_t, t, c) (kind 'score')."""

    kind = "score"

    def __init__(self, model: Model, scale: float = 1.0):
        if not (isinstance(scale, (int, float)) and math.isfinite(scale)):
            raise ValueError(f"scale (the guidance scale) must be a finite number, got {scale!r}")
        self.model, self.schedule, self.scale = model, model.schedule, float(scale)

    def guidance(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        raise NotImplementedError

    def raw(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        return self.model.predict(x_t, t, "score", c) + self.scale * self.guidance(x_t, t, c)


class _Measured(_Guided):
    """Guidance toward a measurement y = A x0 + sigma_y z; y is (*M) for all samples or (B, *M)."""

    def __init__(self, model: Model, A: LinearOperator, y: torch.Tensor, sigma_y: float, scale: float = 1.0):
        super().__init__(model, scale)
        _check_measurement(A, y, sigma_y)
        self.A, self.y, self.sigma_y = A, y, float(sigma_y)

    def _y(self, x_t: torch.Tensor) -> torch.Tensor:
        y = self.y.to(x_t)
        Ax = self.A(x_t)                                   # checks x's shape against A
        return y.expand_as(Ax) if y.shape != Ax.shape else y

    def _gamma(self, t: Time, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        co = self.schedule.coeffs(as_time(t))
        a, s = co.alpha.to(x_t.dtype), co.sigma.to(x_t.dtype)
        return a, s, s ** 2 + a ** 2 * self.sigma_y ** 2


class ScoreSDEProjection(_Measured):
    """Score-SDE-style guidance (§8.4): grad log p_t(y | x_t) ~ A^T (alpha_t y - A x_t) / gamma_t,
    gamma_t = sigma_t^2 + alpha_t^2 sigma_y^2 (the measurement is noised like x_t; its mean alpha_t y is used)."""

    def _project(self, r: torch.Tensor) -> torch.Tensor:
        return self.A.T(r)

    def guidance(self, x_t, t, c=None):
        a, _, gamma = self._gamma(t, x_t)
        y = self._y(x_t)
        return self._project(expand_t(a, y) * y - self.A(x_t)) / expand_t(gamma, x_t)


class ILVRProjection(ScoreSDEProjection):
    """ILVR-style guidance (§8.4): the pseudo-inverse A^+ = A^T (A A^T)^{-1} in place of A^T."""

    def _project(self, r: torch.Tensor) -> torch.Tensor:
        return self.A.pinv(r)


class LossGuidance(_Guided):
    """Training-free guidance with a differentiable loss l(x0) >= 0 per sample (§8.4).

    space='noise', backprop=True:   score - eta grad_{x_t} l(x0_hat(x_t))     (FreeDoM / DPS-like)
    space='noise', backprop=False:  score - eta J_t grad_{x0} l(x0_hat),  J_t = alpha_t / (alpha_t^2 + sigma_t^2):
                                    the denoiser's Jacobian replaced by that of unit-variance Gaussian data
                                    (I / alpha_t at low noise, alpha_t / sigma_t^2 at high noise)
    space='data':                   x0_hat - eta grad_{x0} l(x0_hat)           (MPGD-like; kind 'x0', so a
                                    DDIM step re-derives eps from the moved x0_hat)
    Args: model; loss: x0 (B, *D) -> (B,); eta: the step (scale); space; backprop.
    """

    def __init__(self, model: Model, loss, eta: float = 1.0, *, space: str = "noise", backprop: bool = True):
        super().__init__(model, eta)
        self.loss, self.space, self.backprop = loss, check_choice(space, ("noise", "data"), "space"), bool(backprop)
        self.kind = "x0" if space == "data" else "score"

    def _grad_x0(self, x0: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = x0.detach().requires_grad_(True)
            g, = torch.autograd.grad(self.loss(x).sum(), x)
        return g

    def guidance(self, x_t, t, c=None):
        if self.backprop:
            x0, vjp = _x0_and_vjp(self.model, x_t, t, c)
            return -vjp(self._grad_x0(x0))
        co = self.schedule.coeffs(as_time(t))
        jac = (co.alpha / (co.alpha ** 2 + co.sigma ** 2)).to(x_t.dtype)
        return -self._grad_x0(self.model.predict(x_t, t, "x0", c)) * expand_t(jac, x_t)

    def raw(self, x_t, t, c=None):
        if self.space == "noise":
            return super().raw(x_t, t, c)
        x0 = self.model.predict(x_t, t, "x0", c)
        return x0 - self.scale * self._grad_x0(x0)


class DPS(_Measured):
    """Diffusion posterior sampling (§8.4): p_t(y | x_t) ~ N(y; A x0_hat(x_t), sigma_y^2 I), so

        grad log p_t(y | x_t) ~ (1 / sigma_y^2) (d x0_hat / d x_t)^T A^T (y - A x0_hat)   (autograd through x0_hat).
    normalized=True uses Chung et al.'s step instead: -scale grad_{x_t} ||y - A x0_hat|| (per sample).
    """

    def __init__(self, model, A, y, sigma_y, scale=1.0, *, normalized: bool = False):
        super().__init__(model, A, y, sigma_y, scale)
        self.normalized = bool(normalized)

    def guidance(self, x_t, t, c=None):
        x0, vjp = _x0_and_vjp(self.model, x_t, t, c)
        r = self._y(x_t) - self.A(x0)
        if self.normalized:
            norm = r.flatten(1).norm(dim=1).clamp_min(1e-12)
            return vjp(self.A.T(r / expand_t(norm, r)))
        return vjp(self.A.T(r)) / self.sigma_y ** 2


class PiGDM(_Measured):
    """PiGDM-style guidance (§8.4): p_t(y | x_t) ~ N(y; A x0_hat, r_t^2 A A^T + sigma_y^2 I) with
    r_t^2 = data_var sigma_t^2 / (alpha_t^2 data_var + sigma_t^2) (the posterior variance for Gaussian data):

        grad log p_t(y | x_t) ~ (d x0_hat / d x_t)^T A^T (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat).
    """

    def __init__(self, model, A, y, sigma_y, scale=1.0, *, data_var: float = 1.0):
        super().__init__(model, A, y, sigma_y, scale)
        self.data_var = float(data_var)

    def guidance(self, x_t, t, c=None):
        x0, vjp = _x0_and_vjp(self.model, x_t, t, c)
        co = self.schedule.coeffs(as_time(t))
        if co.t.dim():
            raise ValueError("PiGDM needs one time for the whole batch")
        a, s = float(co.alpha), float(co.sigma)
        r2 = self.data_var * s ** 2 / (a ** 2 * self.data_var + s ** 2)
        res = self._y(x_t) - self.A(x0)
        return vjp(self.A.T(self.A.gram_solve(res.flatten(1), r2, self.sigma_y ** 2).reshape(res.shape)))


def indi_restore(denoiser, y: torch.Tensor, n_steps: int) -> torch.Tensor:
    """InDI's iterative restoration (§8.4): x_1 = y, then x_{t - dt} = (dt / t) F(x_t, t) + (1 - dt / t) x_t
    on a uniform grid down to t = 0, i.e. Euler on dx/dt = (x - F) / t.  For y = x0 + sigma eps and
    F = E[x0 | x_t] this is the PF-ODE of the VE schedule sigma_t = t sigma (EDM(sigma)).

    Args: denoiser: (x (B, *D), t float) -> F(x, t); y: the degraded input (B, *D); n_steps >= 1.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
    x, dt = y, 1.0 / n_steps
    for i in range(n_steps, 0, -1):
        t = i * dt
        x = (dt / t) * denoiser(x, t) + (1 - dt / t) * x
    return x
