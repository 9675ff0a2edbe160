"""Alignment of diffusion models with preferences (book §8.5): Bradley-Terry reward models, DPO and
Diffusion-DPO, held against the exact KL-regularised target pi_ref e^{r/beta} / Z.

    Bradley-Terry:  P(x_w preferred to x_l) = sigmoid(r(x_w) - r(x_l)),
                    loss -log sigmoid(Delta r), d loss / d Delta r = sigmoid(Delta r) - 1 (y = 1 for "first wins")
    KL target:      argmax_pi E_pi[r] - beta KL(pi || pi_ref) = pi_ref e^{r/beta} / Z           (kl_target)
    DPO:            -log sigmoid(beta [log pi/pi_ref (x_w) - log pi/pi_ref (x_l)]); the implicit reward
                    beta log pi/pi_ref = r - beta log Z, and log Z cancels in the difference       (dpo_loss)
    Diffusion-DPO:  -log sigmoid(-beta_t [dMSE(x_t^w) - dMSE(x_t^l)]),
                    dMSE = ||eps_theta - eps||^2 - ||eps_ref - eps||^2 at the same (x_t, t, eps)  (diffusion_dpo_loss)

`MixturePolicy` is a diffusion model whose only parameters are the logits of a mixture's component weights:
its eps-prediction is the exact mixture's, so Diffusion-DPO can be run and its result compared with the exact
target re-weighting of the components.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .gmm import GaussianMixture
from .param import Label, Model
from .schedules import Schedule
from .utils import Time

__all__ = ["bradley_terry_loss", "bradley_terry_grad", "kl_target", "dpo_loss", "implicit_reward",
           "MixturePolicy", "diffusion_dpo_loss"]


def bradley_terry_loss(r_w: torch.Tensor, r_l: torch.Tensor) -> torch.Tensor:
    """Per-pair Bradley-Terry loss -log sigmoid(r_w - r_l) (the reward model's loss, §8.5), shape like r_w."""
    return -F.logsigmoid(r_w - r_l)


def bradley_terry_grad(delta: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d/d Delta of the cross-entropy -[y log sigmoid(Delta) + (1 - y) log sigmoid(-Delta)]: sigmoid(Delta) - y."""
    return torch.sigmoid(delta) - y


def kl_target(log_pi_ref: torch.Tensor, reward: torch.Tensor, beta: float) -> torch.Tensor:
    """The maximiser of E_pi[r] - beta KL(pi || pi_ref) over a finite set: softmax(log pi_ref + r / beta)."""
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    return torch.softmax(log_pi_ref + reward / beta, -1)


def implicit_reward(log_pi: torch.Tensor, log_pi_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's implicit reward beta log(pi / pi_ref); for pi = kl_target it equals r - beta log Z."""
    return beta * (log_pi - log_pi_ref)


def dpo_loss(log_pi_w, log_pi_l, log_ref_w, log_ref_l, beta: float) -> torch.Tensor:
    """Per-pair DPO loss -log sigmoid(beta [(log pi_w - log ref_w) - (log pi_l - log ref_l)]) (§8.5)."""
    return -F.logsigmoid(implicit_reward(log_pi_w, log_ref_w, beta) - implicit_reward(log_pi_l, log_ref_l, beta))


class MixturePolicy(torch.nn.Module, Model):
    """A diffusion model on a mixture's components with learnable weights: softmax(logits) replaces w_k.

    predict/raw give the exact eps of the re-weighted mixture under `schedule` (differentiable in the logits),
    so it trains like a network.  Args: mixture (its components and initial weights); schedule.
    """

    def __init__(self, mixture: GaussianMixture, schedule: Schedule):
        torch.nn.Module.__init__(self)
        self.mixture, self.schedule, self.kind = mixture, schedule, "eps"
        self.logits = torch.nn.Parameter(torch.log(mixture.weights.clone()))

    def forward(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        return self.raw(x_t, t, c)

    def weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, 0)

    def current(self) -> GaussianMixture:
        """The mixture with the current weights (detached), labels kept."""
        m = self.mixture
        return GaussianMixture(self.weights().detach(), m.means, m.covs, labels=m.labels)

    def raw(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        # the mixture's fields are built from log w: swap in the learnable weights (differentiable)
        m = self.mixture
        saved = m.weights
        m.weights = self.weights()
        try:
            return m.eps(x_t, t, self.schedule)
        finally:
            m.weights = saved


def diffusion_dpo_loss(model: Model, ref: Model, x_w: torch.Tensor, x_l: torch.Tensor, t: torch.Tensor,
                       eps_w: torch.Tensor, eps_l: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-pair Diffusion-DPO surrogate (§8.5): -log sigmoid(-beta [dMSE_w - dMSE_l]), with
    dMSE = ||eps_theta(x_t) - eps||^2 - ||eps_ref(x_t) - eps||^2 and x_t = alpha_t x + sigma_t eps (one t per pair).

    Args: model, ref (Models, same schedule); x_w, x_l (B, D) preferred and rejected samples; t (B,);
    eps_w, eps_l (B, D) the noises; beta > 0 (the book's weight w(t) folded into one constant).
    """
    co = model.schedule.coeffs(t)
    a, s = co.alpha.to(x_w.dtype)[:, None], co.sigma.to(x_w.dtype)[:, None]

    def dmse(x, eps):
        x_t = a * x + s * eps
        with torch.no_grad():
            e_ref = ref.predict(x_t, t, "eps")
        return ((model.predict(x_t, t, "eps") - eps) ** 2).sum(-1) - ((e_ref - eps) ** 2).sum(-1)
    return -F.logsigmoid(-beta * (dmse(x_w, eps_w) - dmse(x_l, eps_l)))
