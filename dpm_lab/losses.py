"""Training losses: the book's one template (§6.2.2) and its named instances.

    L = E_{x0, eps} E_{t ~ p_time} [ omega(t) || NN(x_t, t) - (A_t x0 + B_t eps) ||^2 ],
    x_t = alpha_t x0 + sigma_t eps,

with four knobs: the schedule (alpha_t, sigma_t), the target kind ((A_t, B_t), a row of
param.TABLE), the weighting omega(t) and the time distribution p_time.
The network may predict any kind: its output is converted once (Model.predict) to the
loss's kind.  Every loss returns per-sample values (B,); take .mean() to train.  Times, noise
and label dropout are drawn with the caller's generator on its device (utils.randn and kin),
so a CPU generator gives the same numbers whether x0 lives on the CPU or on a GPU.

    loss = ddpm_simple(dl.VPLinear())             # ||eps_phi - eps||^2, t ~ U[t_eps, 1]  (§2.2)
    per_sample = loss(model, x0, generator=g)

Score matching without a target (exact Hyvarinen, sliced) lives in ScoreMatching.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .param import KINDS, TABLE, Label, Model
from .schedules import Coeffs, DiscreteSchedule, RectifiedFlow, Schedule, VEGeometric
from .utils import Time, as_time, check_choice, check_finite, check_x, expand_t, rand, randint, randn

__all__ = ["TimeDist", "WEIGHTINGS", "weighting", "matching_weight", "drop_labels", "DiffusionLoss",
           "ScoreMatching", "implied_lambda_weight", "P_TIMES", "ddpm_simple", "elbo_loss", "dsm", "cfm", "x0_loss", "v_loss", "velocity_loss",
           "sliced_score_matching", "exact_score_matching", "classifier_loss",
           "jacobian_trace", "explicit_score_matching"]


@dataclass(frozen=True)
class TimeDist:
    """The time distribution p_time of the template (§6.2.2, knob C).

    uniform:      t ~ U[t_min, t_max].
    logit_normal: t = t_min + (t_max - t_min) sigmoid(loc + scale z), z ~ N(0, 1) (SD3-style).
    discrete:     t = i / L, i uniform in 1..L (DDPM's integer steps, NCSN's noise levels).
    fixed:        t = loc for every sample (one noise level).
    """

    name: str = "uniform"
    t_min: float = 1e-3
    t_max: float = 1.0
    loc: float = 0.0
    scale: float = 1.0
    L: int = 1000

    def __post_init__(self):
        check_choice(self.name, ("uniform", "logit_normal", "discrete", "fixed"), "time distribution")
        if not 0 <= self.t_min < self.t_max <= 1:
            raise ValueError(f"need 0 <= t_min < t_max <= 1, got {self.t_min}, {self.t_max}")
        if self.name == "discrete" and self.L < 1:
            raise ValueError(f"the discrete time distribution needs L >= 1, got {self.L}")
        if self.name == "fixed":
            as_time(self.loc, name="loc")

    def density(self, t: torch.Tensor) -> torch.Tensor:
        """p_time(t) of the continuous distributions (uniform, logit_normal), float64 like t; 0 outside [t_min, t_max]."""
        if self.name not in ("uniform", "logit_normal"):
            raise ValueError(f"the {self.name} time distribution has no density; uniform and logit_normal have one")
        t = torch.as_tensor(t, dtype=torch.float64)
        width = self.t_max - self.t_min
        s = ((t - self.t_min) / width).clamp(1e-300, 1 - 1e-16)      # the sigmoid's value, in (0, 1)
        if self.name == "uniform":
            p = torch.full_like(t, 1 / width)
        else:                                                        # change of variables from z ~ N(0, 1)
            z = ((torch.log(s) - torch.log1p(-s)) - self.loc) / self.scale
            p = torch.exp(-0.5 * z ** 2) / math.sqrt(2 * math.pi) / (self.scale * s * (1 - s) * width)
        return torch.where((t >= self.t_min) & (t <= self.t_max), p, torch.zeros_like(p))

    def __call__(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n times, shape (n,), float64, on the generator's device."""
        if self.name == "fixed":
            return as_time(self.loc).expand(n).clone()
        if self.name == "discrete":
            return randint(1, self.L + 1, (n,), generator=generator).double() / self.L
        if self.name == "uniform":
            u = rand((n,), generator=generator, dtype=torch.float64)
        else:
            u = torch.sigmoid(self.loc + self.scale * randn((n,), generator=generator, dtype=torch.float64))
        return self.t_min + (self.t_max - self.t_min) * u


def matching_weight(schedule: Schedule, t: Time, kind: str, ref: str = "eps") -> torch.Tensor:
    """(c_kind / c_ref)^2 with c from Eq. s-e-x-v-equi (§6.3.1), shape like t.

    The weight that turns an unweighted `ref` loss into the same number written as a `kind` loss:
    ||ref err||^2 = w ||kind err||^2 at a fixed x_t.
    """
    co = schedule.coeffs(t)
    return (TABLE[check_choice(kind, KINDS, "prediction kind")].error_scale(co)
            / TABLE[check_choice(ref, KINDS, "prediction kind")].error_scale(co)) ** 2


WEIGHTINGS = ("none", "elbo", "sigma2", "snr", "edm")
_UNDEFINED = {"elbo": "lambda_t' is infinite where sigma_t = 0 or alpha_t = 0",
              "snr": "alpha_t^2 / sigma_t^2 is infinite where sigma_t = 0",
              "edm": "1 / c_out^2 is infinite where sigma_t = 0"}


def _weight(name: str | Callable, schedule: Schedule, co: Coeffs, kind: str, sigma_data: float) -> torch.Tensor:
    """omega(t) from the coefficients of one validated schedule.coeffs(t) call (see `weighting`)."""
    if callable(name):
        return torch.as_tensor(name(schedule, co.t), dtype=torch.float64)
    check_choice(name, WEIGHTINGS, "weighting")
    if name == "none":
        return torch.ones_like(co.t)
    if name == "sigma2":
        return co.sigma ** 2
    what = f"the {name} weighting"
    if name == "elbo":
        d_lam = check_finite(co.d_lam, co.t, what, _UNDEFINED[name])
        return -d_lam * co.sigma ** 2 * TABLE[kind].error_scale(co) ** 2
    if name == "snr":
        w = torch.exp(2 * co.lam)
    else:                                                          # 1 / c_out^2 (App. D.6)
        w = (co.alpha ** 2 * sigma_data ** 2 + co.sigma ** 2) / (co.sigma * sigma_data) ** 2
    return check_finite(w, co.t, what, _UNDEFINED[name])


def weighting(schedule: Schedule, name: str | Callable, t: Time, kind: str = "eps",
              sigma_data: float = 1.0) -> torch.Tensor:
    """omega(t) of the template (§6.2.2, knob D), shape like t (float64).

    none:   1.
    elbo:   -lambda_t' sigma_t^2 c_kind^2: the continuous-time ELBO, i.e. -lambda_t' ||eps err||^2 (§2.2, §6.2.2),
            written for a `kind` loss with c_kind of Eq. s-e-x-v-equi.
    sigma2: sigma_t^2, NCSN's lambda(sigma) = sigma^2 (§3.4); with kind='score' it is ||sigma s + eps||^2.
    snr:    alpha_t^2 / sigma_t^2.
    edm:    1 / c_out^2 = (alpha^2 sigma_d^2 + sigma^2) / (sigma sigma_d)^2 (App. D.6, x0 loss).
    A callable (schedule, t) -> tensor is used as is.  Where a weight is infinite (the end points)
    it raises a ValueError naming the time.

    Args: t a float, 0-d or (B,) tensor; kind the loss's target kind; sigma_data the data std for 'edm'.
    """
    check_choice(kind, KINDS, "prediction kind")
    return _weight(name, schedule, schedule.coeffs(t), kind, sigma_data)


P_TIMES = ("uniform", "logit_normal")   # the time distributions implied_lambda_weight takes by name, on (0, 1)


def implied_lambda_weight(schedule: Schedule, kind: str, weight: str | Callable, t: torch.Tensor,
                          p_time: str | TimeDist = "uniform") -> tuple[torch.Tensor, torch.Tensor]:
    """The weight per unit lambda that a loss puts on the noise MSE: (lambda_t, w(lambda_t)) (§6.2.2).

    A `kind` loss with weighting omega(t) and times t ~ p_time is, at a fixed x_t,
        int p_time(t) omega(t) ||kind err||^2 dt = int w(lambda) ||eps err||^2 dlambda,
        w(lambda) = p_time(t) omega(t) / (|lambda_t'| m_t),   ||eps err||^2 = m_t ||kind err||^2,
    with m_t = matching_weight(schedule, t, kind, 'eps') (Eq. s-e-x-v-equi).  The ELBO weighting gives
    w = p_time(t), so w = 1 for every schedule and kind under uniform times.
    Args: t (N,) times strictly inside (0, 1); p_time a P_TIMES name (on [0, 1]) or a TimeDist.
    Returns two (N,) float64 tensors.
    """
    check_choice(kind, KINDS, "prediction kind")
    if not isinstance(p_time, TimeDist):
        check_choice(p_time, P_TIMES, "p_time")
        p_time = TimeDist(p_time, 0.0, 1.0)
    t = torch.as_tensor(t, dtype=torch.float64)
    if t.dim() != 1 or ((t <= 0) | (t >= 1)).any():
        raise ValueError("t must be a 1-d tensor of times strictly inside (0, 1)")
    c = schedule.coeffs(t)
    w = p_time.density(t) * weighting(schedule, weight, t, kind) / (c.d_lam.abs() * matching_weight(schedule, t, kind))
    return c.lam, w


def drop_labels(c: torch.Tensor, p_uncond: float, null_label: int, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by the null label with probability p_uncond (CFG training, §8.3).

    Args: c (B,) long labels; the draw is made on the generator's device and moved to c's.
    """
    if not 0 <= p_uncond <= 1:
        raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
    drop = rand(c.shape, generator=generator, device=c.device) < p_uncond
    return torch.where(drop, torch.full_like(c, null_label), c)


def _reduce(err: torch.Tensor, how: str) -> torch.Tensor:
    err = err.flatten(1)
    return err.sum(1) if how == "sum" else err.mean(1)


def _t_and_eps(p_time, x0: torch.Tensor, t, eps, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Check x0, t and eps against each other (clear errors, not broadcasting ones); draw the missing ones."""
    check_x(x0, "x0")
    B = x0.shape[0]
    if eps is not None and (not isinstance(eps, torch.Tensor) or eps.shape != x0.shape):
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(f"eps must be a tensor of x0's shape {tuple(x0.shape)}, got {got}")
    if t is None:
        t = p_time(B, generator=generator)
    else:
        t = as_time(t)
        if t.dim() > 1 or (t.dim() == 1 and t.shape[0] not in (1, B)):
            raise ValueError(f"t must be a float, a 0-d tensor or a tensor of shape ({B},) (one time per row "
                             f"of x0), got shape {tuple(t.shape)}")
        t = t.expand(B)
    eps = randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device) if eps is None else eps
    return t, eps


@dataclass
class DiffusionLoss:
    """The template omega(t) ||NN(x_t, t) -> kind  -  (A_t x0 + B_t eps)||^2 with t ~ p_time (§6.2.2).

    Args:
        schedule; kind: the target (x0, eps, score, velocity, v); weighting: a WEIGHTINGS name or callable;
        p_time: a TimeDist; reduce: 'mean' or 'sum' over data dimensions; factor: a constant (1/2 in the ELBO);
        p_uncond / null_label: label dropout for classifier-free guidance; sigma_data: for weighting='edm'.
    Call: loss(model, x0 (B, *D), c=None, *, eps=None, t=None, generator=None) -> (B,).
        `eps` may be any "noise-end" sample: for transport between data sets pass the source points.
        Draws, in this order: t ~ p_time (unless given), eps (unless given), the label dropout.
    """

    schedule: Schedule
    kind: str = "eps"
    weighting: str | Callable = "none"
    p_time: TimeDist = field(default_factory=TimeDist)
    reduce: str = "mean"
    factor: float = 1.0
    p_uncond: float = 0.0
    null_label: int | None = None
    sigma_data: float = 1.0

    def __post_init__(self):
        check_choice(self.kind, KINDS, "prediction kind")
        check_choice(self.reduce, ("mean", "sum"), "reduce")
        if not callable(self.weighting):
            check_choice(self.weighting, WEIGHTINGS, "weighting")
        if self.p_uncond > 0 and self.null_label is None:
            raise ValueError("p_uncond > 0 needs null_label (the network's n_classes)")

    def __call__(self, model: Model, x0: torch.Tensor, c: Label = None, *, eps: torch.Tensor | None = None,
                 t: Time | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        t, eps = _t_and_eps(self.p_time, x0, t, eps, generator)
        if c is not None and self.p_uncond > 0:
            c = drop_labels(c, self.p_uncond, self.null_label, generator=generator)
        co = self.schedule.coeffs(t)                                   # every coefficient, validated once
        x_t = expand_t(co.alpha, x0) * x0 + expand_t(co.sigma, x0) * eps
        target = TABLE[self.kind].form(co, x0, eps)                    # A_t x0 + B_t eps
        pred = model.predict(x_t, t, self.kind, c)
        w = _weight(self.weighting, self.schedule, co, self.kind, self.sigma_data).to(x0.device, x0.dtype)
        return self.factor * w * _reduce((pred - target) ** 2, self.reduce)


def _default_time(schedule: Schedule) -> TimeDist:
    if isinstance(schedule, DiscreteSchedule):
        return TimeDist("discrete", L=schedule.L)
    return TimeDist("uniform", t_min=schedule.t_eps)


def ddpm_simple(schedule: Schedule) -> DiffusionLoss:
    """DDPM's L_simple = ||eps_phi(x_t, t) - eps||^2 (Eq. 2.2.10), t uniform (discrete i/L for a DiscreteSchedule)."""
    return DiffusionLoss(schedule, "eps", "none", _default_time(schedule))


def elbo_loss(schedule: Schedule, t_max: float = 1.0) -> DiffusionLoss:
    """(Was `losses.ddpm_elbo`; renamed so as not to share a name with `likelihood.ddpm_elbo`, the discrete
    bound evaluated on data.)  A training loss: the diffusion term of the ELBO in continuous time: (-lambda_t') ||eps_phi - eps||^2 summed over
    dimensions, t ~ U (§2.2, §6.2.2).  With lambda = log(alpha/sigma) this is VDM's
    -1/2 SNR'(t) ||x0 - x0_phi||^2 (SNR = e^(2 lambda)), the limit of the per-step KL terms: no factor 1/2
    is left.  Needs alpha_t > 0 on [t_eps, t_max]."""
    return DiffusionLoss(schedule, "eps", "elbo", TimeDist("uniform", schedule.t_eps, t_max), "sum")


def dsm(schedule: Schedule | None = None, p_time: TimeDist | None = None) -> DiffusionLoss:
    """Denoising score matching with NCSN's weighting (§3.3, §4.3): 1/2 sigma^2 ||s_phi + eps/sigma||^2.
    Default: the VE schedule with its noise levels sampled uniformly in t."""
    schedule = schedule or VEGeometric()
    return DiffusionLoss(schedule, "score", "sigma2", p_time or TimeDist("uniform", schedule.t_eps), factor=0.5)


def cfm(schedule: Schedule | None = None, p_time: TimeDist | None = None) -> DiffusionLoss:
    """Conditional flow matching (§5.2): ||v_phi(x_t, t) - (eps - x0)||^2 on x_t = (1 - t) x0 + t eps.
    With eps = source points it learns the transport source (t = 1) -> data (t = 0)."""
    return DiffusionLoss(schedule or RectifiedFlow(), "velocity", "none", p_time or TimeDist("uniform", 0.0, 1.0))


def x0_loss(schedule: Schedule, weight: str = "none", sigma_data: float = 1.0) -> DiffusionLoss:
    """Clean-data loss ||x_phi - x0||^2 (§2.2, §6.2.1); weight='edm' gives EDM's loss 1/c_out^2 ||.||^2 (App. D.6)."""
    return DiffusionLoss(schedule, "x0", weight, TimeDist("uniform", schedule.t_eps), sigma_data=sigma_data)


def v_loss(schedule: Schedule) -> DiffusionLoss:
    """Salimans-Ho v-loss ||v_phi - (alpha eps - sigma x0)||^2."""
    return DiffusionLoss(schedule, "v", "none", TimeDist("uniform", schedule.t_eps))


def velocity_loss(schedule: Schedule) -> DiffusionLoss:
    """Velocity loss ||u_phi - (alpha' x0 + sigma' eps)||^2 (§6.2.1)."""
    return DiffusionLoss(schedule, "velocity", "none", TimeDist("uniform", schedule.t_eps))


def sliced_score_matching(score: torch.Tensor, x: torch.Tensor, *, n_proj: int = 1, vr: bool = False,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Sliced score matching with Hutchinson's estimator (§3.3.1):

        u^T (d s / d x) u + 1/2 (u^T s)^2,   u ~ N(0, I)   (vr=True: 1/2 ||s||^2, lower variance).

    Args: score (B, *D) computed from x (B, *D) with x.requires_grad; n_proj probes. Returns (B,).
    """
    out = 0.0
    for _ in range(n_proj):
        u = randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        us = (u * score).flatten(1).sum(1)
        jvp = torch.autograd.grad(us.sum(), x, create_graph=True)[0]      # (ds/dx)^T u
        out = out + (u * jvp).flatten(1).sum(1) + (0.5 * (score ** 2).flatten(1).sum(1) if vr else 0.5 * us ** 2)
    return out / n_proj


def exact_score_matching(score: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Hyvarinen's objective tr(d s / d x) + 1/2 ||s||^2 with the exact Jacobian trace (§3.1.3).

    One backward pass per dimension, so only for small D. Args: score, x of shape (B, D). Returns (B,).
    """
    if x.dim() != 2 or x.shape[1] > 16:
        raise ValueError(f"exact score matching is for x of shape (B, D) with D <= 16, got {tuple(x.shape)}")
    return jacobian_trace(score, x) + 0.5 * (score ** 2).sum(1)


def jacobian_trace(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The exact divergence tr(d out / d x) = sum_d d out_d / d x_d, one backward pass per dimension.

    Args: out (B, D) computed from x (B, D) with x.requires_grad (the graph is kept).  Returns (B,).
    """
    if x.dim() != 2 or out.shape != x.shape:
        raise ValueError(f"jacobian_trace needs out and x of the same shape (B, D), got {tuple(out.shape)} "
                         f"and {tuple(x.shape)}")
    if not x.requires_grad:
        raise ValueError("jacobian_trace: x must require grad (out must be computed from it)")
    return sum(torch.autograd.grad(out[:, d].sum(), x, create_graph=True)[0][:, d] for d in range(x.shape[1]))


def explicit_score_matching(score: torch.Tensor, true_score: torch.Tensor) -> torch.Tensor:
    """The explicit score-matching objective 1/2 ||s_phi(x) - grad log p(x)||^2 per sample (§3.1.3).

    It equals Hyvarinen's tr(d s / d x) + 1/2 ||s||^2 (exact_score_matching) plus the constant
    1/2 E||grad log p||^2, so the two have the same gradients.  Args: (B, *D) each.  Returns (B,).
    """
    if score.shape != true_score.shape:
        raise ValueError(f"score and true_score must have the same shape, got {tuple(score.shape)} "
                         f"and {tuple(true_score.shape)}")
    for v, name in ((score, "score"), (true_score, "true_score")):
        if not torch.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or inf; explicit_score_matching needs finite scores")
    return 0.5 * ((score - true_score) ** 2).flatten(1).sum(1)


@dataclass
class ScoreMatching:
    """Score matching on the noised marginal p_t without a regression target (§3.1.3, §3.3.1).

    x_t = alpha_t x0 + sigma_t eps with t ~ p_time, then method 'exact' (Jacobian trace) or 'sliced'
    (Hutchinson, n_proj probes, vr for the variance-reduced form), weighted by omega(t).
    The minimizer is the score of p_t.  Call like DiffusionLoss: loss(model, x0, c=None, *, t, generator).
    """

    schedule: Schedule
    method: str = "sliced"
    weighting: str | Callable = "sigma2"
    p_time: TimeDist = field(default_factory=lambda: TimeDist("fixed", loc=0.1))
    n_proj: int = 1
    vr: bool = False

    def __post_init__(self):
        check_choice(self.method, ("sliced", "exact"), "score matching method")
        if not callable(self.weighting):
            check_choice(self.weighting, WEIGHTINGS, "weighting")

    def __call__(self, model: Model, x0: torch.Tensor, c: Label = None, *, eps: torch.Tensor | None = None,
                 t: Time | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        t, eps = _t_and_eps(self.p_time, x0, t, eps, generator)
        co = self.schedule.coeffs(t)
        x_t = expand_t(co.alpha, x0) * x0 + expand_t(co.sigma, x0) * eps
        x_t = x_t.detach().requires_grad_(True)
        s = model.predict(x_t, t, "score", c)
        if self.method == "exact":
            per = exact_score_matching(s, x_t)
        else:
            per = sliced_score_matching(s, x_t, n_proj=self.n_proj, vr=self.vr, generator=generator)
        return _weight(self.weighting, self.schedule, co, "score", 1.0).to(x0.device, x0.dtype) * per


def classifier_loss(schedule: Schedule, classifier: Callable, x0: torch.Tensor, c: torch.Tensor, *,
                    p_time: TimeDist | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cross-entropy -log p_psi(c | x_t, t) of a noise-aware classifier on x_t = alpha_t x0 + sigma_t eps (§8.2).

    Args: classifier(x_t, t) -> logits (B, K); x0 (B, *D); c (B,) labels; p_time (default U[0, 1]).
    Draws t, then eps, with the generator.  Returns (B,).
    """
    p_time = p_time or TimeDist("uniform", 0.0, 1.0)
    t = p_time(x0.shape[0], generator=generator)
    eps = randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    co = schedule.coeffs(t)
    x_t = expand_t(co.alpha, x0) * x0 + expand_t(co.sigma, x0) * eps
    logits = classifier(x_t, t.to(x0.device, x0.dtype))
    return torch.nn.functional.cross_entropy(logits, c, reduction="none")
