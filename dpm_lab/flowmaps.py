"""Flow maps (book Ch. 11): the oracle flow map Psi_{s->t}, consistency models, CTM and MeanFlow, the three
characterizations of §11.6 as diagnostics, and gamma-sampling as a solver object for `dl.sample`.

A flow map jumps along the PF-ODE:  Psi_{s->t}(x_s) = x_s + int_s^t v*(x_u, u) du  (§11.1), t <= s.
Every learned model here is a `FlowMap`: G(x, s, t) ~ Psi_{s->t}(x) in one of four parameterizations

    'cm'      f(x, s) = c_skip(s) x + c_out(s) F(x, s)           consistency function, t = 0 only (§11.2)
    'ctm_g'   G = (t/s) x + (1 - t/s) g(x, s, t),  g = F          CTM's g-parameterization (§11.4.1)
    'ctm_v'   G = x + (t - s) F(x, s, t)                          CTM's v-parameterization = MeanFlow's h (§11.5)

    oracle  = dl.flowmaps.oracle_map(mixture, schedule)          # G*(x, s, t), exact (DOP853)
    dl.flowmaps.semigroup_violation(oracle, x, s, u, t)          # ~1e-9
    x0 = dl.solve(student, x_T, [1.0, 0.5, 0.0], dl.flowmaps.gamma_solver(1.0))   # CM multistep

Time runs as everywhere in the package: t = 0 is data, t = 1 is noise, x_t = alpha_t x0 + sigma_t eps.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .gmm import GaussianMixture
from .nets import SinusoidalEmbedding
from .param import Model
from .schedules import Schedule
from .steps import Solver
from .utils import check_choice, check_x, rand, randint, randn_like

__all__ = ["oracle_map", "gaussian_flow_map", "oracle_average_velocity", "semigroup_violation",
           "lagrangian_residual", "eulerian_residual", "meanflow_identity_residual", "cm_boundary_coeffs",
           "FlowMap", "ImageFlowMap", "PARAMS", "one_point_model", "ct_ddim_target", "CDLoss", "TwoTimeCDLoss", "CTLoss", "ContinuousCTLoss",
           "CTMLoss", "MeanFlowLoss", "ctm_mf_scaling", "gamma_step", "gamma_solver", "gamma_sample",
           "meanflow_one_step", "book_meanflow_one_step", "ctm_boundary_g", "book_ctm_boundary_g"]

PARAMS = ("cm", "ctm_g", "ctm_v")
Map = Callable[[torch.Tensor, float, float], torch.Tensor]


# -- the oracle ------------------------------------------------------------------------------------------------
def oracle_map(mixture: GaussianMixture, schedule: Schedule, **kw) -> Map:
    """G*(x, s, t) = Psi_{s->t}(x), the exact PF-ODE flow map of a mixture (§11.1), as a function of (x, s, t).

    Uses GaussianMixture.flow_map (DOP853, rtol 1e-10); Psi_{s->s} = identity.  Works in float64."""
    def G(x: torch.Tensor, s: float, t: float) -> torch.Tensor:
        if float(s) == float(t):
            return x.clone()
        return mixture.flow_map(x, float(s), float(t), schedule, **kw)
    return G


def gaussian_flow_map(mean: torch.Tensor, cov: torch.Tensor, x: torch.Tensor, s: float, t: float,
                      schedule: Schedule) -> torch.Tensor:
    """The flow map of Gaussian data N(m, C) in closed form: affine in x (§11.1 with the Gaussian fields of Ch. 4).

    With A_t = (alpha_t^2 C + sigma_t^2 I)^(1/2) (all A_t commute: one eigenbasis U of C),
        Psi_{s->t}(x) = alpha_t m + A_t A_s^{-1} (x - alpha_s m).
    Args: mean (D,), cov (D, D) symmetric PSD, x (B, D), times s, t in [0, 1].
    """
    x = check_x(x, "x", 2)
    lam, U = torch.linalg.eigh(cov.to(torch.float64))
    a_s, sg_s = float(schedule.alpha(float(s))), float(schedule.sigma(float(s)))
    a_t, sg_t = float(schedule.alpha(float(t))), float(schedule.sigma(float(t)))
    gain = torch.sqrt(a_t ** 2 * lam + sg_t ** 2) / torch.sqrt(a_s ** 2 * lam + sg_s ** 2)   # eigenvalues of A_t A_s^-1
    m = mean.to(torch.float64)
    y = ((x.double() - a_s * m) @ U) * gain @ U.T + a_t * m
    return y.to(x.dtype)


def oracle_average_velocity(mixture: GaussianMixture, schedule: Schedule, x: torch.Tensor, s: float, t: float,
                            n_nodes: int = 65) -> torch.Tensor:
    """MeanFlow's h*(x, s, t) = 1/(t - s) int_s^t v*(x_u, u) du by Simpson quadrature of the exact
    velocity along the exact trajectory (§11.5.1); n_nodes odd.  At s = t it is v*(x, s)."""
    if n_nodes < 3 or n_nodes % 2 == 0:
        raise ValueError(f"n_nodes must be an odd int >= 3, got {n_nodes}")
    if float(s) == float(t):
        return mixture.velocity(x, float(s), schedule)
    us = torch.linspace(float(s), float(t), n_nodes, dtype=torch.float64)
    traj = mixture.flow(x.double(), us, schedule)
    v = torch.stack([mixture.velocity(traj[i], float(u), schedule) for i, u in enumerate(us)])
    w = torch.ones(n_nodes, dtype=torch.float64)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0                     # Simpson weights 1 4 2 4 ... 4 1
    integral = (w[:, None, None] * v).sum(0) * (float(t) - float(s)) / (3 * (n_nodes - 1))
    return (integral / (float(t) - float(s))).to(x.dtype)


# -- the three characterizations of §11.6 as residuals -------------------------------------------------------
def semigroup_violation(G: Map, x: torch.Tensor, s: float, u: float, t: float) -> torch.Tensor:
    """Per-point ||G(G(x, s, u), u, t) - G(x, s, t)|| (Eq. semi-group: Psi_{u->t} o Psi_{s->u} = Psi_{s->t}), (B,)."""
    if not float(s) >= float(u) >= float(t):
        raise ValueError(f"need s >= u >= t, got s={s}, u={u}, t={t}")
    return (G(G(x, s, u), u, t) - G(x, s, t)).norm(dim=-1)


def lagrangian_residual(G: Map, velocity: Callable, x: torch.Tensor, s: float, t: float, dt: float = 1e-3
                        ) -> torch.Tensor:
    """Per-point ||d/dt Psi_{s->t}(x) - v*(Psi_{s->t}(x), t)|| with a central difference in t (§11.6), (B,).

    velocity(x, t) -> (B, D).  The difference is one-sided (forward or backward) at the ends of [0, 1]."""
    lo, hi = max(float(t) - dt, 0.0), min(float(t) + dt, 1.0)
    dG = (G(x, s, hi) - G(x, s, lo)) / (hi - lo)
    return (dG - velocity(G(x, s, t), float(t))).norm(dim=-1)


def eulerian_residual(G: Map, velocity: Callable, x: torch.Tensor, s: float, t: float, ds: float = 1e-3
                      ) -> torch.Tensor:
    """Per-point ||d_s Psi_{s->t}(x) + (d_x Psi_{s->t}) v*(x, s)|| (§11.6), (B,).

    The sum is the derivative of G along the trajectory through (x, s); a central difference
    (G(x + h v, s + h, t) - G(x - h v, s - h, t)) / 2h has error O(h^2)."""
    v = velocity(x, float(s))
    d = (G(x + ds * v, float(s) + ds, t) - G(x - ds * v, float(s) - ds, t)) / (2 * ds)
    return d.norm(dim=-1)


def meanflow_identity_residual(mixture: GaussianMixture, schedule: Schedule, x: torch.Tensor, s: float, t: float,
                               ds: float = 1e-3, n_nodes: int = 65) -> torch.Tensor:
    """Per-point ||h* - [v*(x, s) - (s - t) d/ds h*]|| with h* by quadrature (Eq. mf-identity, §11.5.1), (B,).

    d/ds h* is the derivative along the trajectory (d_s h + (d_x h) v*), by a central difference."""
    v = mixture.velocity(x, float(s), schedule)
    h = oracle_average_velocity(mixture, schedule, x, s, t, n_nodes)
    hp = oracle_average_velocity(mixture, schedule, x + ds * v, float(s) + ds, t, n_nodes)
    hm = oracle_average_velocity(mixture, schedule, x - ds * v, float(s) - ds, t, n_nodes)
    return (h - (v - (float(s) - float(t)) * (hp - hm) / (2 * ds))).norm(dim=-1)


# -- parameterizations ---------------------------------------------------------------------------------------
def _coef(fn, t, x):
    """fn(t) for times t (B,), shaped to broadcast against x (B, ...) in x's dtype."""
    return fn(t.double()).reshape(-1, *([1] * (x.dim() - 1))).to(x)


def _times(t, x: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.expand(x.shape[0]) if t.dim() == 0 else t


def cm_boundary_coeffs(schedule: Schedule, s, sigma_data: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """c_skip(s), c_out(s) of f = c_skip x + c_out F with f(x, 0) = x (§11.2, Song et al. 2023, EDM scaling).

    In the EDM noise level r = sigma_s / alpha_s of x_s / alpha_s = x0 + r eps:
        c_skip = sigma_d^2 / (r^2 + sigma_d^2) / alpha_s = sigma_d^2 alpha_s / (sigma_s^2 + sigma_d^2 alpha_s^2),
        c_out  = sigma_d r / sqrt(r^2 + sigma_d^2)     = sigma_d sigma_s / sqrt(sigma_s^2 + sigma_d^2 alpha_s^2),
    finite at alpha_s = 0; c_skip(0) = 1 and c_out(0) = 0.  s: float or (B,) tensor."""
    s = torch.as_tensor(s, dtype=torch.float64)
    a, sg = schedule.alpha(s), schedule.sigma(s)
    den = sg ** 2 + sigma_data ** 2 * a ** 2
    return sigma_data ** 2 * a / den, sigma_data * sg / den.sqrt()


class _TwoTimeMLP(nn.Module):
    """MLP on [x, s, t, emb(s), emb(t)] -> (B, dim) (sinusoidal embeddings of both times)."""

    def __init__(self, dim: int, hidden: int, depth: int, t_dim: int, t_scale: float):
        super().__init__()
        self.emb = SinusoidalEmbedding(t_dim, scale=t_scale, max_period=1000.0)
        width, layers = dim + 2 + 2 * t_dim, []
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([x, s[:, None], t[:, None], self.emb(s), self.emb(t)], -1))


class FlowMap(nn.Module):
    """A learned flow map G_theta(x, s, t) ~ Psi_{s->t}(x) (§11.1): an MLP on [x, s, t, emb(s), emb(t)].

    Args:
        schedule: the path x_t = alpha_t x0 + sigma_t eps it lives on.
        param: 'cm' (consistency function, t = 0 only), 'ctm_g' or 'ctm_v' (module docstring).
        dim, hidden, depth, t_dim: the MLP.  t_scale: the highest time frequency of the embedding (20, not
            DDPM's 1000: a JVP in s differentiates the embedding, and fast features make d/ds huge).  sigma_data: the data scale of the 'cm' boundary coefficients.
    A flow map plugs into `dl.sample` through `gamma_solver` (it has `schedule` like every Model).
    """

    def __init__(self, schedule: Schedule, param: str = "ctm_v", *, dim: int = 2, hidden: int = 128, depth: int = 3,
                 t_dim: int = 16, t_scale: float = 20.0, sigma_data: float = 1.0):
        super().__init__()
        check_choice(param, PARAMS, "param")
        self.schedule, self.param, self.sigma_data, self.dim = schedule, param, float(sigma_data), dim
        self.net = _TwoTimeMLP(dim, hidden, depth, t_dim, t_scale)

    def raw(self, x: torch.Tensor, s, t) -> torch.Tensor:
        """The network output F(x, s, t), shape like x."""
        return self.net(x, _times(s, x), _times(t, x))

    def forward(self, x: torch.Tensor, s, t) -> torch.Tensor:
        """G_theta(x, s, t), the jump from s to t <= s (shape like x)."""
        sb, tb = _times(s, x), _times(t, x)
        if self.param == "cm":
            if (tb != 0).any():
                raise ValueError("a consistency model maps only to t = 0 (f = Psi_{s->0}); sample it with "
                                 "gamma = 1 (re-noise after every jump)")
            c_skip, c_out = cm_boundary_coeffs(self.schedule, sb.double(), self.sigma_data)
            return c_skip.to(x.dtype)[:, None] * x + c_out.to(x.dtype)[:, None] * self.raw(x, sb, tb)
        F = self.raw(x, sb, tb)
        if self.param == "ctm_v":
            return x + (tb - sb)[:, None] * F                                   # G = x + (t - s) h
        ratio = torch.where(sb > 0, tb / sb.clamp_min(1e-12), torch.ones_like(sb))[:, None]
        return ratio * x + (1 - ratio) * F                                      # G = (t/s) x + (1 - t/s) g

    def velocity(self, x: torch.Tensor, s) -> torch.Tensor:
        """The instantaneous velocity d/dt G(x, s, t) at t = s: (x - g(x, s, s)) / s for 'ctm_g', F(x, s, s)
        for 'ctm_v' (CTM's auxiliary DSM/FM head, §11.4.3)."""
        sb = _times(s, x)
        if self.param == "cm":
            raise ValueError("a consistency model has no velocity head; use param 'ctm_g' or 'ctm_v'")
        F = self.raw(x, sb, sb)
        if self.param == "ctm_v":
            return F
        return (x - F) / sb.clamp_min(1e-12)[:, None]


class ImageFlowMap(nn.Module):
    """A flow-map student for images on a VP path, grown from a v-prediction U-Net teacher (§11.2, §11.4).

        'cm'   f(x, s, c) = alpha_s x - sigma_s F(x, s, c): the c_skip/c_out boundary with c_skip = alpha_s,
               c_out = -sigma_s, so f(x, 0) = x (alpha_0 = 1, sigma_0 = 0); with F = the teacher's network,
               f starts as the teacher's denoiser E[x0 | x_s, c].  Maps to t = 0 only.
        'ctm'  G(x, s, t, c) = alpha_t x0_hat + sigma_t (x - alpha_s x0_hat) / sigma_s,
               x0_hat = alpha_s x - sigma_s F(x, s, c, extra=t): a DDIM jump with a t-aware clean estimate
               (CTM's g-parameterization written on a VP path; G(x, s, s) = x); F = UNet.grow(teacher, 1)
               starts as one teacher DDIM step.

    net: a nets.UNet (extra=1 for 'ctm'); schedule: the teacher's (VP).  forward(x, s, t, c) -> like x."""

    def __init__(self, net: nn.Module, schedule: Schedule, param: str = "cm"):
        super().__init__()
        check_choice(param, ("cm", "ctm"), "param")
        self.net, self.schedule, self.param = net, schedule, param

    @classmethod
    def from_teacher(cls, teacher: nn.Module, param: str = "cm") -> ImageFlowMap:
        """A student whose F is a copy of teacher.net (a nets.Predictor predicting v), grown by one extra
        scalar (the second time) for 'ctm'."""
        if getattr(teacher, "kind", None) != "v" or not hasattr(teacher, "net"):
            raise ValueError("the teacher must be a nets.Predictor predicting v (e.g. the zoo's mnist5k_cond)")
        from .nets import UNet
        net = UNet.grow(teacher.net, 1) if param == "ctm" else UNet(**teacher.net.config)
        if param == "cm":
            net.load_state_dict(teacher.net.state_dict())
        return cls(net, teacher.schedule, param)

    def x0_hat(self, x: torch.Tensor, s, t, c=None) -> torch.Tensor:
        """The student's clean estimate alpha_s x - sigma_s F (t enters F only for 'ctm')."""
        sb, tb = _times(s, x), _times(t, x)
        F = self.net(x, sb, c, tb[:, None]) if self.param == "ctm" else self.net(x, sb, c)
        return _coef(self.schedule.alpha, sb, x) * x - _coef(self.schedule.sigma, sb, x) * F

    def forward(self, x: torch.Tensor, s, t, c=None) -> torch.Tensor:
        """G(x, s, t | c), the jump from s to t <= s (f(x, s) for 'cm', which needs t = 0)."""
        sb, tb = _times(s, x), _times(t, x)
        if self.param == "cm" and (tb != 0).any():
            raise ValueError("a consistency model maps only to t = 0; sample it with gamma = 1")
        x0 = self.x0_hat(x, sb, tb, c)
        if self.param == "cm":
            return x0
        a_s, sg_s = _coef(self.schedule.alpha, sb, x), _coef(self.schedule.sigma, sb, x)
        eps = (x - a_s * x0) / sg_s.clamp_min(1e-12)
        return _coef(self.schedule.alpha, tb, x) * x0 + _coef(self.schedule.sigma, tb, x) * eps


def _frozen(model: nn.Module) -> Callable:
    """The same function with stop-gradient weights: theta^- = sg(theta) (as in iCT/ECT and MeanFlow)."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    return lambda *args: torch.func.functional_call(model, {**params, **buffers}, args)


def _frozen_raw(model: FlowMap) -> Callable:
    """The network output F(x, s, t) with stop-gradient weights."""
    params = {k: v.detach() for k, v in model.net.named_parameters()}
    buffers = dict(model.net.named_buffers())
    return lambda x, s, t: torch.func.functional_call(model.net, {**params, **buffers}, (x, s, t))


# -- consistency models (§11.2, §11.3) ------------------------------------------------------------------------
class _OnePoint(Model):
    kind = "eps"

    def __init__(self, eps: torch.Tensor, schedule: Schedule):
        self.eps_, self.schedule = eps, schedule

    def raw(self, x_t, t, c=None):
        return self.eps_


def one_point_model(eps: torch.Tensor, schedule: Schedule) -> Model:
    """The one-point estimate as a model: it predicts the noise `eps` that made x_s, i.e. the score
    estimate -eps / sigma_s of consistency training (§11.2.1).  A DDIM step with it lands on
    alpha_{s'} x0 + sigma_{s'} eps exactly (see `ct_ddim_target`)."""
    return _OnePoint(eps, schedule)


def ct_ddim_target(x0: torch.Tensor, eps: torch.Tensor, s_prev, schedule: Schedule) -> torch.Tensor:
    """CT's point at s' for the pair (x0, eps): alpha_{s'} x0 + sigma_{s'} eps (§11.2.1).  s_prev: float or (B,)."""
    sp = _times(s_prev, x0)
    return _coef(schedule.alpha, sp, x0) * x0 + _coef(schedule.sigma, sp, x0) * eps


def _noise(x0: torch.Tensor, source, generator) -> torch.Tensor:
    """Gaussian noise like x0, or (transport) the source set's points."""
    if source is None:
        return randn_like(x0, generator=generator)
    return source(x0.shape[0], generator=generator).to(x0)


def _distance(diff: torch.Tensor, huber_c: float) -> torch.Tensor:
    """Squared L2 (huber_c = 0) or the pseudo-Huber distance sqrt(||d||^2 + c^2) - c of iCT, per sample."""
    sq = diff.pow(2).flatten(1).sum(-1)
    return sq if huber_c == 0 else (sq + huber_c ** 2).sqrt() - huber_c


class _CMLoss:
    """Discrete-time CM (§11.2.1): s = s_{i+1} = (i+1)/N, s' = s_i = i/N, i uniform on 0..N-1;
    d(f_theta(x_s, s), sg f_theta(x_{s'}, s')) with f(., 0) = identity at s' = 0."""

    def __init__(self, schedule: Schedule, N: int = 40, huber_c: float = 0.0, source=None):
        if N < 1:
            raise ValueError(f"N must be >= 1, got {N}")
        self.schedule, self.N, self.huber_c, self.source = schedule, int(N), float(huber_c), source

    def pair(self, model, x0, eps, s, sp, c=None):  # the point at s' the target network reads
        raise NotImplementedError

    def __call__(self, model: FlowMap, x0: torch.Tensor, c=None, *, generator=None) -> torch.Tensor:
        eps = _noise(x0, self.source, generator)
        i = randint(0, self.N, (x0.shape[0],), generator=generator).to(x0.device)
        s, sp = (i + 1).to(x0.dtype) / self.N, i.to(x0.dtype) / self.N
        x_s = ct_ddim_target(x0, eps, s, self.schedule)
        f = model if c is None else (lambda x, a, b: model(x, a, b, c))      # class-conditional students
        with torch.no_grad():
            target = f(self.pair(model, x0, eps, s, sp, c), sp, torch.zeros_like(sp))
        return _distance(f(x_s, s, torch.zeros_like(s)) - target, self.huber_c)


class CTLoss(_CMLoss):
    """Consistency training (§11.2.1): the target network reads alpha_{s'} x0 + sigma_{s'} eps (same x0, eps)."""

    def pair(self, model, x0, eps, s, sp, c=None):
        return ct_ddim_target(x0, eps, sp, self.schedule)


class CDLoss(_CMLoss):
    """Consistency distillation (§11.2.1): the target network reads one teacher DDIM step x_s -> x_{s'}.

    teacher: a Model on the same schedule (a zoo Predictor, or mixture.model(schedule) for the exact field)."""

    def __init__(self, schedule: Schedule, teacher: Model, N: int = 40, huber_c: float = 0.0, source=None):
        super().__init__(schedule, N, huber_c, source)
        self.teacher = teacher

    def pair(self, model, x0, eps, s, sp, c=None):
        x_s = ct_ddim_target(x0, eps, s, self.schedule)
        return _ddim_batch(self.teacher, x_s, s, sp, self.schedule, c)


class TwoTimeCDLoss(CDLoss):
    """CTM-style distillation with one teacher step (§11.4.2 with u = s'): for grid times t = t_j <= s' = s_i < s =
    s_{i+1} (j uniform on 0..i), d(G_theta(x_s, s, t), sg G_theta(DDIM_teacher(x_s, s -> s'), s', t)).

    At t = s' the target is the teacher's step itself (G(x, s', s') = x), so every destination is anchored to the
    teacher; the book's CTM measures the distance after a further jump to t = 0 (G(., t, 0)), which this loss
    leaves out (one network call less per step)."""

    def __call__(self, model, x0: torch.Tensor, c=None, *, generator=None) -> torch.Tensor:
        eps = _noise(x0, self.source, generator)
        B = x0.shape[0]
        i = randint(0, self.N, (B,), generator=generator).to(x0.device)
        j = (rand((B,), generator=generator).to(x0.device) * (i + 1).to(x0.dtype)).floor().clamp(max=i.to(x0.dtype))
        s, sp, t = (i + 1).to(x0.dtype) / self.N, i.to(x0.dtype) / self.N, j.to(x0.dtype) / self.N
        x_s = ct_ddim_target(x0, eps, s, self.schedule)
        G = model if c is None else (lambda x, a, b: model(x, a, b, c))
        with torch.no_grad():
            target = G(_ddim_batch(self.teacher, x_s, s, sp, self.schedule, c), sp, t)
        return _distance(G(x_s, s, t) - target, self.huber_c)


def _ddim_batch(teacher: Model, x_s, s, sp, schedule: Schedule, c=None) -> torch.Tensor:
    """One DDIM step per sample (times (B,)): x_{s'} = alpha_{s'} x0_hat + sigma_{s'} eps_hat (§9.2.1);
    c: class labels for a conditional (or guided) teacher."""
    x0 = teacher.predict(x_s, s, "x0") if c is None else teacher.predict(x_s, s, "x0", c)
    a_s, sg_s = _coef(schedule.alpha, s, x_s), _coef(schedule.sigma, s, x_s)
    eps = (x_s - a_s * x0) / sg_s.clamp_min(1e-12)
    return _coef(schedule.alpha, sp, x_s) * x0 + _coef(schedule.sigma, sp, x_s) * eps


def _path_velocity(x0, eps, s, schedule: Schedule) -> torch.Tensor:
    """The conditional velocity alpha_s' x0 + sigma_s' eps (CT's and MeanFlow's one-point v)."""
    return _coef(schedule.d_alpha, s, x0) * x0 + _coef(schedule.d_sigma, s, x0) * eps


class ContinuousCTLoss:
    """Continuous-time CT (§11.3.2): the gradient of E[f_theta^T sg(d/ds f_theta-)], with
    d/ds f = d_s f + (d_x f) v by one forward-mode JVP (torch.func.jvp) along (v, 1), v the one-point
    velocity (CT) or the teacher's (CD).  Written as 1/2 ||f_theta - sg(f_theta - w)||^2, whose gradient
    is w^T df_theta, with the sCM tangent normalization w = df/ds / (||df/ds|| + c) (§11.3.3)."""

    def __init__(self, schedule: Schedule, teacher: Model | None = None, s_min: float = 1e-3, c: float = 0.1,
                 source=None):
        self.schedule, self.teacher, self.s_min, self.c, self.source = schedule, teacher, s_min, c, source

    def __call__(self, model: FlowMap, x0: torch.Tensor, c=None, *, generator=None) -> torch.Tensor:
        eps = _noise(x0, self.source, generator)
        s = self.s_min + (1 - self.s_min) * rand((x0.shape[0],), generator=generator).to(x0)
        x_s = ct_ddim_target(x0, eps, s, self.schedule)
        v = self.teacher.velocity(x_s, s).detach() if self.teacher is not None else _path_velocity(x0, eps, s,
                                                                                                  self.schedule)
        f_minus = _frozen(model)
        zero = torch.zeros_like(s)
        _, dfds = torch.func.jvp(lambda x, u: f_minus(x, u, zero), (x_s, s), (v, torch.ones_like(s)))
        w = dfds / (dfds.norm(dim=-1, keepdim=True) + self.c)
        f = model(x_s, s, zero)
        return 0.5 * (f - (f.detach() - w.detach())).pow(2).sum(-1)


# -- CTM (§11.4) and MeanFlow (§11.5) -------------------------------------------------------------------------
class CTMLoss:
    """CTM (§11.4.2-3): soft-semigroup consistency in clean space plus the auxiliary DSM/FM loss.

        x_est    = G-(G_theta(x_s, s, t), t, 0),
        x_target = G-(G-(Solver_{s->u}(x_s), u, t), t, 0),    t <= u < s,
        loss     = ||x_est - x_target||^2 + lambda_dm w(s) ||v_theta(x_s, s) - (alpha_s' x0 + sigma_s' eps)||^2,

    Solver: one teacher DDIM step (teacher given: distillation) or one Euler step of the model's own
    velocity (the self-induced ODE, from scratch).  G- = G with stop-gradient weights.  u = s - r min(s - t, du),
    r ~ U(0, 1]: the solver's step is short.  w(s) = s^2 for 'ctm_g' (v = (x - g)/s: the error of g), else 1."""

    def __init__(self, schedule: Schedule, teacher: Model | None = None, lambda_dm: float = 1.0, du: float = 0.1,
                 s_min: float = 1e-3, source=None):
        self.schedule, self.teacher, self.lambda_dm, self.du = schedule, teacher, float(lambda_dm), float(du)
        self.s_min, self.source = s_min, source

    def __call__(self, model: FlowMap, x0: torch.Tensor, c=None, *, generator=None) -> torch.Tensor:
        B = x0.shape[0]
        eps = _noise(x0, self.source, generator)
        s = self.s_min + (1 - self.s_min) * rand((B,), generator=generator).to(x0)
        t = s * rand((B,), generator=generator).to(x0)
        u = s - rand((B,), generator=generator).to(x0).clamp_min(1e-3) * torch.minimum(s - t, torch.full_like(s,
                                                                                                         self.du))
        x_s = ct_ddim_target(x0, eps, s, self.schedule)
        G_minus, zero = _frozen(model), torch.zeros_like(s)
        with torch.no_grad():
            if self.teacher is not None:
                x_u = _ddim_batch(self.teacher, x_s, s, u, self.schedule)
            else:
                x_u = x_s + (u - s)[:, None] * model.velocity(x_s, s)     # self-induced Euler step
            x_target = G_minus(G_minus(x_u, u, t), t, zero)
        x_est = G_minus(model(x_s, s, t), t, zero)
        loss = (x_est - x_target).pow(2).sum(-1)
        if self.lambda_dm > 0:
            v_target = _path_velocity(x0, eps, s, self.schedule)
            w = s ** 2 if model.param == "ctm_g" else torch.ones_like(s)   # g-param: error of g = x - s v
            loss = loss + self.lambda_dm * w * (model.velocity(x_s, s) - v_target).pow(2).sum(-1)
        return loss


class MeanFlowLoss:
    """MeanFlow (§11.5.1, Eq. mf-practice): ||h_theta(x_s, s, t) - sg(v - (s - t) dh/ds)||^2 with
    dh/ds = (d_x h) v + d_s h by one JVP along (v, 1, 0); v the one-point velocity or the teacher's.

    A fraction p_fm of the pairs has t = s: there the target is v itself (flow matching, the anchor).
    The other pairs are (max, min) of two uniform times, or with min_gap > 0: s ~ U(min_gap, 1),
    t ~ U(0, s - min_gap), so no pair but the p_fm ones comes near the diagonal (an intervention).
    adaptive_p > 0 weights by 1 / (||err||^2 + 1e-3)^p (the MeanFlow paper's adaptive loss)."""

    def __init__(self, schedule: Schedule, teacher: Model | None = None, p_fm: float = 0.25, adaptive_p: float = 0.0,
                 source=None, min_gap: float = 0.0):
        if not 0 <= p_fm <= 1:
            raise ValueError(f"p_fm must lie in [0, 1], got {p_fm}")
        if not 0 <= min_gap < 1:
            raise ValueError(f"min_gap must lie in [0, 1), got {min_gap}")
        self.schedule, self.teacher, self.p_fm, self.adaptive_p, self.source = (schedule, teacher, float(p_fm),
                                                                              float(adaptive_p), source)
        self.min_gap = float(min_gap)

    def __call__(self, model: FlowMap, x0: torch.Tensor, c=None, *, generator=None) -> torch.Tensor:
        if model.param != "ctm_v":
            raise ValueError(f"MeanFlow trains the average velocity h: param 'ctm_v', got {model.param!r}")
        B = x0.shape[0]
        eps = _noise(x0, self.source, generator)
        a, b = rand((B,), generator=generator).to(x0), rand((B,), generator=generator).to(x0)
        if self.min_gap > 0:
            s = self.min_gap + (1 - self.min_gap) * a
            t = (s - self.min_gap) * b
        else:
            s, t = torch.maximum(a, b), torch.minimum(a, b)
        fm = rand((B,), generator=generator).to(x0) < self.p_fm
        t = torch.where(fm, s, t)
        x_s = ct_ddim_target(x0, eps, s, self.schedule)
        v = self.teacher.velocity(x_s, s).detach() if self.teacher is not None else _path_velocity(x0, eps, s,
                                                                                                  self.schedule)
        h_minus = _frozen_raw(model)
        _, dhds = torch.func.jvp(h_minus, (x_s, s, t), (v, torch.ones_like(s), torch.zeros_like(t)))
        target = (v - (s - t)[:, None] * dhds).detach()                       # Eq. mf-identity
        err = (model.raw(x_s, s, t) - target).pow(2).sum(-1)
        if self.adaptive_p > 0:
            err = err / (err.detach() + 1e-3) ** self.adaptive_p
        return err


def ctm_mf_scaling(G: torch.Tensor, Psi: torch.Tensor, x_s: torch.Tensor, s: float, t: float) -> tuple[float, ...]:
    """The CTM <-> MeanFlow identity (§11.5.3) for arbitrary tensors: with g = (s G - t x)/(s - t) (CTM's g)
    and h = (G - x)/(t - s) (MeanFlow's h), and the same for Psi,
        ||G - Psi||^2 = ((s - t)/s)^2 ||g - g*||^2 = (s - t)^2 ||h - h*||^2.
    Returns the three sums (they agree to rounding); 0 <= t < s."""
    if not 0 <= t < s:
        raise ValueError(f"need 0 <= t < s, got s={s}, t={t}")
    g, g_star = (s * G - t * x_s) / (s - t), (s * Psi - t * x_s) / (s - t)
    h, h_star = (G - x_s) / (t - s), (Psi - x_s) / (t - s)
    return (float((G - Psi).pow(2).sum()), float(((s - t) / s) ** 2 * (g - g_star).pow(2).sum()),
            float((s - t) ** 2 * (h - h_star).pow(2).sum()))


# -- sampling: gamma-sampling (§11.4.4) as a solver object ----------------------------------------------------
def _tilde_time(schedule: Schedule, t: float, gamma: float) -> float:
    """The time whose noise-to-signal ratio sigma/alpha is sqrt(1 - gamma^2) that of t (VE: sqrt(1 - gamma^2) t)."""
    if gamma >= 1 or t == 0:
        return 0.0
    if gamma == 0:
        return t
    lam = float(schedule.lam(t)) - 0.5 * math.log(1 - gamma ** 2)
    return float(schedule.inv_lam(lam))


def gamma_step(G: Callable, x: torch.Tensor, s: float, t: float, schedule: Schedule, gamma: float = 0.0,
               generator: torch.Generator | None = None, noise: Callable | None = None) -> torch.Tensor:
    """One step of gamma-sampling (§11.4.4, Algorithm gamma), from s to t < s:

        jump   x~ = G(x, s, t~)   with t~ the time of noise level sqrt(1 - gamma^2) that of t,
        re-noise  x_t = (alpha_t / alpha_t~) x~ + gamma sigma_t z   (the forward kernel t~ -> t).
    gamma = 1: t~ = 0, CM multistep (jump to data, re-noise); gamma = 0: deterministic G(x, s, t).
    noise(x, generator) draws z (default: standard normal like x); a transport student (source points at t = 1)
    re-noises with fresh source points, exact at gamma = 1 (a fresh pair), approximate for 0 < gamma < 1."""
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    tt = _tilde_time(schedule, float(t), float(gamma))
    x_tilde = G(x, float(s), tt)
    if tt == float(t):
        return x_tilde
    scale = float(schedule.alpha(float(t))) / float(schedule.alpha(tt))
    out = scale * x_tilde
    if gamma > 0 and float(t) > 0:
        z = noise(x, generator) if noise is not None else randn_like(x, generator=generator)
        out = out + gamma * float(schedule.sigma(float(t))) * z
    return out


def _solver_step(model, x, s, t, *, state=None, generator=None, gamma: float = 0.0):
    net = getattr(model, "model", model)        # the driver wraps the model to count evaluations
    if hasattr(model, "nfe"):
        model.nfe += 1
    with torch.no_grad():
        x_t = gamma_step(net, x, s, t, net.schedule, gamma, generator)
    return x_t, dict(state or {})


def gamma_solver(gamma: float = 0.0) -> Solver:
    """gamma-sampling as a Solver for dl.sample / dl.solve (one flow-map evaluation per step).

    The model passed to the driver is a FlowMap (or anything with schedule and G(x, s, t))."""
    if not 0 <= gamma <= 1:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    return Solver(f"flowmap_gamma{gamma:g}", lambda *a, **k: _solver_step(*a, **{"gamma": gamma, **k}), 0, 1,
                  stochastic=gamma > 0, book="§11.4.4 (gamma = 1: §11.2.2 CM multistep)")


def gamma_sample(G: Callable, x_T: torch.Tensor, grid, schedule: Schedule, gamma: float = 0.0,
                 generator: torch.Generator | None = None, noise: Callable | None = None) -> torch.Tensor:
    """Run gamma-sampling along a descending grid ending at 0 (len(grid) - 1 evaluations of G); noise as in gamma_step."""
    grid = [float(g) for g in grid]
    if len(grid) < 2 or any(b >= a for a, b in zip(grid[:-1], grid[1:])):
        raise ValueError(f"grid must be a strictly descending sequence of >= 2 times, got {grid}")
    x = x_T
    for s, t in zip(grid[:-1], grid[1:]):
        x = gamma_step(G, x, s, t, schedule, gamma, generator, noise)
    return x


# -- the book's two slips, as functions ----------------------------------------------------------------------
def meanflow_one_step(h: Callable, x_T: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """One MeanFlow step to data: x_0 = x_T - T h(x_T, T, 0), from Psi_{s->t} = x_s + (t - s) h (§11.5.2)."""
    return x_T - T * h(x_T, T, 0.0)


def book_meanflow_one_step(h: Callable, x_T: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """The one-step rule as printed in §11.5.2, x_T + T h(x_T, T, 0): a sign slip (kept to show it)."""
    return x_T + T * h(x_T, T, 0.0)


def ctm_boundary_g(velocity: Callable, x: torch.Tensor, s: float) -> torch.Tensor:
    """CTM's g*(x, s, s) = x - s v*(x, s) (§11.4.1); for EDM/VE (x_s = x0 + s eps) this is E[x0 | x_s]."""
    return x - s * velocity(x, s)


def book_ctm_boundary_g(velocity: Callable, x: torch.Tensor, s: float) -> torch.Tensor:
    """g*(x, s, s) as printed in §11.5.3, x - v*(x, s): the factor s is missing (kept to show it)."""
    return x - velocity(x, s)
