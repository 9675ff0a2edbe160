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
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .param import KINDS, Label, Model
from .utils import Time, check_choice, expand_t

__all__ = ["CFG", "ClassifierGuidance"]


def _labels(c: Label, x: torch.Tensor) -> torch.Tensor:
    """c as (B,) long labels on x's device; a clear error when missing or of the wrong length."""
    if c is None:
        raise ValueError("guidance needs a class label c (an int or a (B,) tensor)")
    c = torch.as_tensor(c, device=x.device).long()
    c = c.expand(x.shape[0]) if c.dim() == 0 else c
    if c.shape != (x.shape[0],):
        raise ValueError(f"c must be an int or have shape ({x.shape[0]},), got {tuple(c.shape)}")
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
        self.model, self.omega, self.null_label, self.c = model, float(omega), int(null_label), c
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
        c = _labels(self.c if c is None else c, x_t)
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
        self.model, self.classifier, self.omega, self.c = model, classifier, float(omega), c
        self.schedule, self.kind = model.schedule, "score"

    def raw(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        """The guided score, shape like x_t (the gradient by autograd through the classifier)."""
        c = _labels(self.c if c is None else c, x_t)
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            logp = torch.log_softmax(self.classifier(x, t), -1).gather(1, c[:, None]).sum()
            grad, = torch.autograd.grad(logp, x)
        return self.model.predict(x_t, t, "score") + self.omega * grad
