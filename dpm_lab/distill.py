"""Distillation (book Ch. 10): knowledge distillation, progressive distillation, score distillation.

Two levels (§10.1).  *Flow-map level*: a student G_theta(x_s, s, t) imitates the teacher's PF-ODE map
Psi_{s->t}; every such method is the oracle loss (Eq. general-cm-loss)

    L_oracle = E_{s,t} E_{x_s ~ p_s} [ w(s, t) d(G_theta(x_s, s, t), Psi_{s->t}(x_s)) ]

at some choice of (s, t): knowledge distillation (KD) at (T, 0) with Psi from a full teacher solve,
progressive distillation (PD) at (s, s - 2 ds) with Psi replaced by two teacher DDIM steps.
*Distribution level*: a one-step generator G_theta(z) whose law p^theta matches the teacher's
(VSD/DMD, §10.2), with SDS its Dirac special case.

Every student is something `dl.samplers.sample` runs:
  * a PD or KD student is a Model (a copy of the teacher's network) run with "ddim" on its own grid
    (`pd_grid`, nested in the teacher's grid; KD is the one-step grid [T, t_end]);
  * a one-step generator is a Model (`OneStepGenerator`) whose data prediction is G(x_T), run with
    "ddim" on the grid [1, 0] (one evaluation, the output is G(x_T) exactly);
  * the guided-PD student (`GuidedStudent.at(omega)`) is a Model evaluated ONCE per step where
    classifier-free guidance evaluates the teacher twice.
Guidance convention: the package's omega (omega = 1 plain conditional); the book's guided PD
(§10.3.4) writes (1 + w) x(c) - w x(null), so w_book = omega - 1.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from . import nets
from .grids import default_spacing, time_grid
from .guidance import CFG
from .param import KINDS, Model, to_x0_eps
from .schedules import Schedule
from .utils import as_time, check_choice, expand_t, randn

__all__ = ["pd_grid", "check_teacher", "ddim_jump", "pd_target", "pd_teacher_target", "pd_loss", "kd_loss",
           "map_error", "oracle_loss", "OneStepGenerator", "GuidedStudent", "GuidedUNetStudent", "guided_target", "vsd_direction",
           "sds_direction", "distribution_matching_loss", "gaussian_kl", "gaussian_vsd_gradient",
           "gaussian_score_term"]


# -- grids and compatibility ----------------------------------------------------------------------------
def pd_grid(schedule: Schedule, n_teacher: int, n: int, spacing: str | None = None) -> list[float]:
    """The n-step student grid nested in the teacher's n_teacher-step grid: every (n_teacher/n)-th time.

    The teacher grid is grids.time_grid(schedule, n_teacher, spacing) (default spacing of the schedule),
    from t = 1 to schedule.t_eps; PD halves it round after round (§10.3.2), so n must divide n_teacher.
    """
    for name, v in (("n_teacher", n_teacher), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1 (a number of steps), got {v!r}")
    if n_teacher % n:
        raise ValueError(f"a student of n = {n} steps must divide the teacher's n_teacher = {n_teacher} steps "
                         f"(PD halves the grid: n in {[d for d in range(1, n_teacher + 1) if n_teacher % d == 0]})")
    full = time_grid(schedule, n_teacher, spacing or default_spacing(schedule)).tolist()
    return full[:: n_teacher // n]


def check_teacher(student: Model, teacher: Model, shape: tuple | None = None) -> None:
    """Raise a ValueError unless student and teacher share the schedule (and, if given, the data shape).

    A DDIM step of the student is only comparable with the teacher's when both use the same alpha_t, sigma_t.
    """
    a, b = getattr(student, "schedule", None), getattr(teacher, "schedule", None)
    if a is None or b is None:
        raise TypeError("student and teacher must be Models with a .schedule")
    if type(a) is not type(b) or a.config() != b.config():
        raise ValueError(f"the teacher's schedule {b!r} differs from the student's {a!r}: distil a teacher of the "
                         "same schedule (the PD target and a DDIM step are defined by alpha_t, sigma_t)")
    if shape is not None:
        want = getattr(teacher, "shape", None)
        if want is not None and tuple(want) != tuple(shape):
            raise ValueError(f"the teacher's samples have shape {tuple(want)}, the student's data {tuple(shape)}")


# -- DDIM with per-sample times, and the PD target ---------------------------------------------------------
def _co(schedule: Schedule, t: Any, x: torch.Tensor):
    t = as_time(t)
    co = schedule.coeffs(t)
    return t, expand_t(co.alpha, x).to(x.dtype), expand_t(co.sigma, x).to(x.dtype)


def ddim_jump(model: Model, x_s: torch.Tensor, s: Any, t: Any, c: Any = None) -> torch.Tensor:
    """One deterministic DDIM step from s to t with per-sample times (§9.2.1): x_t = alpha_t x0_hat + sigma_t eps_hat.

    (x0_hat, eps_hat) come from ONE model call at (x_s, s).  Equals samplers.ddim_step for scalar times.
    Args: x_s (B, *D); s, t floats or (B,) tensors with s > t.
    """
    s_, a_s, _ = _co(model.schedule, s, x_s)
    _, a_t, s_t = _co(model.schedule, t, x_s)
    kind = getattr(model, "kind", "eps")
    if kind in ("eps", "score") and bool((a_s == 0).any()):   # x_s carries no x0 there: ask for x0 (steps.x0_eps)
        kind = "x0"
    x0, eps = to_x0_eps(model.schedule, x_s, s_, model.predict(x_s, s_, kind, c), kind)
    return a_t * x0 + s_t * eps


def pd_target(schedule: Schedule, x_s: torch.Tensor, s: Any, t: Any, x_t: torch.Tensor) -> torch.Tensor:
    """The data target x~ of progressive distillation (§10.3.1): the x0-prediction that makes ONE DDIM step
    s -> t land on x_t (two teacher steps' output):

        x~ = (sigma_s x_t - sigma_t x_s) / (alpha_t sigma_s - alpha_s sigma_t).
    """
    _, a_s, s_s = _co(schedule, s, x_s)
    _, a_t, s_t = _co(schedule, t, x_s)
    return (s_s * x_t - s_t * x_s) / (a_t * s_s - a_s * s_t)


def pd_teacher_target(teacher: Model, x_s: torch.Tensor, s: Any, u: Any, t: Any, c: Any = None) -> torch.Tensor:
    """Two teacher DDIM steps s -> u -> t, then pd_target: the regression target of a PD round (§10.3.1)."""
    with torch.no_grad():
        x_t = ddim_jump(teacher, ddim_jump(teacher, x_s, s, u, c), u, t, c)
    return pd_target(teacher.schedule, x_s, s, t, x_t)


def pd_loss(student: Model, teacher: Model, x_s: torch.Tensor, s: Any, u: Any, t: Any, c: Any = None) -> torch.Tensor:
    """Per-sample PD loss ||x0_theta(x_s, s) - x~||^2 w(s, t), summed over dimensions, (B,).

    The weight w = ((alpha_t sigma_s - alpha_s sigma_t) / sigma_s)^2 makes the loss the squared distance
    between the student's one-step landing point and the teacher's two-step one (a "landing" weight, one
    choice of the book's w(lambda_s)); it stays finite where alpha_s = 0 (t = 1 on the flow path).
    """
    check_teacher(student, teacher)
    target = pd_teacher_target(teacher, x_s, s, u, t, c)
    s_, a_s, s_s = _co(student.schedule, s, x_s)
    _, a_t, s_t = _co(student.schedule, t, x_s)
    x0 = student.predict(x_s, s_, "x0", c)
    w = ((a_t * s_s - a_s * s_t) / s_s) ** 2
    return (w * (x0 - target) ** 2).flatten(1).sum(1)


# -- knowledge distillation and the oracle loss ----------------------------------------------------------
def map_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pointwise distance ||x_i - y_i|| between two maps' outputs on the same inputs, (B,)."""
    if x.shape != y.shape:
        raise ValueError(f"map_error needs outputs of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    return (x - y).flatten(1).norm(dim=1)


def kd_loss(student_map: Any, x_T: torch.Tensor, x_end: torch.Tensor) -> torch.Tensor:
    """Knowledge distillation (Luhman & Luhman; §10.1.2): mean over the batch of ||G(x_T) - Solver_{T->0}(x_T)||^2.

    student_map(x_T) -> (B, *D); x_end: the teacher's PF-ODE endpoints for the same x_T.  A scalar.
    """
    return (map_error(student_map(x_T), x_end) ** 2).mean()


def oracle_loss(student_map: Any, flow_map: Any, x_s: torch.Tensor, s: float, t: float, weight: float = 1.0
                ) -> torch.Tensor:
    """The unified oracle loss (Eq. general-cm-loss) at one (s, t): w E ||G(x_s, s, t) - Psi_{s->t}(x_s)||^2.

    student_map(x_s, s, t) and flow_map(x_s, s, t) -> (B, *D).  KD is (s, t) = (T, 0) with Psi from a solver.
    """
    return weight * (map_error(student_map(x_s, s, t), flow_map(x_s, s, t)) ** 2).mean()


# -- one-step generators as models ---------------------------------------------------------------------
class OneStepGenerator(nn.Module, Model):
    """A one-step generator G_theta(z) as a Model: its data prediction at any (x, t) is G(x) (§10.2.1).

    `dl.samplers.solve(gen, z, [1.0, 0.0], "ddim")` returns G(z) with one evaluation (DDIM to t = 0 lands
    on x0_hat).  Args: dim, hidden, depth of the MLP z -> x; schedule: the teacher's (for x_t^theta).
    """

    kind = "x0"

    def __init__(self, schedule: Schedule, dim: int = 2, hidden: int = 128, depth: int = 3):
        nn.Module.__init__(self)
        layers, width = [], dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.body = nn.Sequential(*layers, nn.Linear(width, dim))
        self.schedule, self.dim = schedule, dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)

    def raw(self, x_t: torch.Tensor, t: Any, c: Any = None) -> torch.Tensor:
        return self.body(x_t)

    __call__ = nn.Module.__call__


# -- guided PD, stage 1 ----------------------------------------------------------------------------------
def guided_target(teacher: Model, x_t: torch.Tensor, t: Any, c: Any, omega: Any, null_label: int,
                  kind: str | None = None) -> torch.Tensor:
    """The CFG-combined teacher prediction omega x(c) + (1 - omega) x(null) (§10.3.4, stage 1) in `kind`.

    omega: a float or (B,) tensor (package convention, omega = 1 conditional; the book's w = omega - 1).
    """
    kind = kind or teacher.kind
    om = torch.as_tensor(omega, dtype=x_t.dtype)
    if om.dim() == 0:
        return CFG(teacher, float(om), null_label).predict(x_t, t, kind, c)
    cond = teacher.predict(x_t, t, kind, c)
    uncond = teacher.predict(x_t, t, kind, torch.full_like(torch.as_tensor(c), null_label).expand(x_t.shape[0]))
    om = om.reshape(-1, *[1] * (x_t.dim() - 1))
    return om * cond + (1 - om) * uncond


class _OmegaConditioned:
    """What every guided-PD student shares: a trained omega range, its check, and `at(omega)` (a Model)."""

    omega_range: tuple[float, float]

    def check_omega(self, omega: Any) -> torch.Tensor:
        om = torch.as_tensor(omega, dtype=torch.float64)
        lo, hi = self.omega_range
        if not torch.isfinite(om).all() or (om < lo - 1e-9).any() or (om > hi + 1e-9).any():
            raise ValueError(f"omega must lie in the student's trained range [{lo:g}, {hi:g}] (package convention, "
                             f"1 = conditional), got {om.tolist()}; train a student on a wider range for it")
        return om

    def _batch_omega(self, omega: Any, x_t: torch.Tensor) -> torch.Tensor:
        om = self.check_omega(omega).to(x_t.dtype).to(x_t.device)
        return om.expand(x_t.shape[0]) if om.dim() == 0 else om

    def at(self, omega: float) -> Model:
        """The student at a fixed omega, as a Model (one network evaluation per predict)."""
        self.check_omega(omega)
        return _AtOmega(self, float(omega))


def _check_range(omega_range) -> tuple[float, float]:
    lo, hi = (float(v) for v in omega_range)
    if not lo < hi:
        raise ValueError(f"omega_range must be (lo, hi) with lo < hi, got {omega_range}")
    return lo, hi


class GuidedStudent(_OmegaConditioned, nn.Module):
    """An omega-conditioned student x_theta(x_t, t, c, omega) that reproduces CFG in ONE evaluation (§10.3.4).

    The network is nets.MLP on [x, omega]; `from_teacher` copies a 2-D MLP teacher's weights with a zero
    column for omega, so training starts at the plain conditional model.  `at(omega)` gives the Model a
    sampler runs; omega outside [omega_min, omega_max] (the trained range) raises.
    """

    def __init__(self, schedule: Schedule, kind: str, n_classes: int, omega_range: tuple[float, float],
                 dim: int = 2, hidden: int = 128, depth: int = 3):
        nn.Module.__init__(self)
        check_choice(kind, KINDS, "prediction kind")
        self.net = nets.MLP(dim + 1, hidden, depth, n_classes=n_classes, out_dim=dim)
        self.schedule, self.kind, self.n_classes, self.dim = schedule, kind, n_classes, dim
        self.omega_range = _check_range(omega_range)

    def forward(self, x_t: torch.Tensor, t: Any, c: Any, omega: Any) -> torch.Tensor:
        om = self._batch_omega(omega, x_t)
        return self.net(torch.cat([x_t, om[:, None]], 1), t, c)

    def copy_teacher(self, teacher_net: nets.MLP) -> GuidedStudent:
        """Load a teacher MLP's weights (same hidden, depth, classes) with a zero input column for omega."""
        state = {k: v.clone() for k, v in teacher_net.state_dict().items()}
        w = state["body.0.weight"]
        state["body.0.weight"] = torch.cat([w[:, :self.dim], torch.zeros_like(w[:, :1]), w[:, self.dim:]], 1)
        self.net.load_state_dict(state)
        return self


class _AtOmega(Model):
    def __init__(self, student: GuidedStudent, omega: float):
        self.student, self.omega, self.schedule, self.kind = student, omega, student.schedule, student.kind

    def raw(self, x_t: torch.Tensor, t: Any, c: Any = None) -> torch.Tensor:
        if c is None:
            raise ValueError("the guided student needs a class label c")
        return self.student(x_t, t, c, self.omega)


class GuidedUNetStudent(_OmegaConditioned, nn.Module):
    """Guided PD stage 1 for images (§10.3.4): a U-Net x_theta(x_t, t, c, omega), ONE evaluation per step.

    The network is nets.UNet.grow(teacher_unet, 1): the teacher's weights plus one extra scalar condition,
    u = (omega - omega_min) / (omega_max - omega_min) in [0, 1], whose embedding starts at zero effect, so the
    untrained student is the plain conditional teacher.  Its raw output is of the teacher's `kind`.
    """

    def __init__(self, net: nets.UNet, schedule: Schedule, kind: str, n_classes: int,
                 omega_range: tuple[float, float]):
        nn.Module.__init__(self)
        check_choice(kind, KINDS, "prediction kind")
        if not isinstance(net, nets.UNet) or net.config.get("extra") != 1:
            raise ValueError("net must be a nets.UNet with extra = 1 (nets.UNet.grow(teacher_unet, 1))")
        self.net, self.schedule, self.kind, self.n_classes = net, schedule, kind, n_classes
        self.omega_range = _check_range(omega_range)

    @classmethod
    def from_teacher(cls, teacher: Model, omega_range: tuple[float, float]) -> GuidedUNetStudent:
        """A student that starts as `teacher` (a nets.Predictor around a class-conditional UNet)."""
        net = getattr(teacher, "net", None)
        if not isinstance(net, nets.UNet) or not net.config["n_classes"]:
            raise TypeError("the teacher must be a nets.Predictor around a class-conditional nets.UNet")
        return cls(nets.UNet.grow(net, 1), teacher.schedule, teacher.kind, net.config["n_classes"], omega_range)

    def forward(self, x_t: torch.Tensor, t: Any, c: Any, omega: Any) -> torch.Tensor:
        lo, hi = self.omega_range
        u = (self._batch_omega(omega, x_t) - lo) / (hi - lo)                # omega -> [0, 1]
        return self.net(x_t, as_time(t).to(x_t.dtype), c, u[:, None])


# -- score distillation (VSD / DMD, SDS) ----------------------------------------------------------------
def vsd_direction(fake: Model, real: Model, x_t: torch.Tensor, t: Any, weight: str = "x0", c: Any = None
                  ) -> torch.Tensor:
    """The VSD gradient direction w(t) alpha_t (s_fake(x_t) - s_real(x_t)) per sample (§10.2.1, Prop.), (B, *D).

    The generator's gradient is E[direction^T dG/dtheta].  The weight w(t) is a choice:
      "x0":  w = sigma_t^2/alpha_t^2, the direction becomes x0_fake(x_t) - x0_real(x_t) (DMD's form; large
             noise levels, where both denoisers return their distribution's mean, weigh the most);
      "eps": w = sigma_t/alpha_t, the direction becomes eps_real(x_t) - eps_fake(x_t) (ProlificDreamer's and
             DreamFusion's form with weight 1; low noise levels weigh the most).
    c: labels passed to both scores (a label-conditional generator matches each class's distribution).
    """
    check_choice(weight, ("x0", "eps"), "weight")
    t_ = as_time(t)
    with torch.no_grad():
        if weight == "x0":
            return fake.predict(x_t, t_, "x0", c) - real.predict(x_t, t_, "x0", c)
        return real.predict(x_t, t_, "eps", c) - fake.predict(x_t, t_, "eps", c)


def sds_direction(real: Model, x_t: torch.Tensor, t: Any, eps: torch.Tensor, weight: str = "eps") -> torch.Tensor:
    """SDS (DreamFusion): VSD with a Dirac generator, whose score at x_t = alpha G + sigma eps is -eps/sigma_t:

        w(t) alpha_t (-eps/sigma_t - s_real(x_t)) = eps_real(x_t) - eps   ("eps", DreamFusion's weight 1)
                                                  = G - x0_real(x_t)       ("x0").
    """
    check_choice(weight, ("x0", "eps"), "weight")
    t_, a, s = _co(real.schedule, t, x_t)
    with torch.no_grad():
        if weight == "eps":
            return real.predict(x_t, t_, "eps") - eps
        return (x_t - s * eps) / a - real.predict(x_t, t_, "x0")


def distribution_matching_loss(x_gen: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """A scalar whose gradient in x_gen is direction / B: mean_i <direction_i, x_gen_i> with direction held fixed.

    Backpropagating it through x_gen = G_theta(z) gives the VSD/DMD generator gradient E[direction^T dG/dtheta].
    """
    if direction.requires_grad:
        direction = direction.detach()
    return (direction * x_gen).flatten(1).sum(1).mean()


# -- the Gaussian case, in closed form (for the checks of §10.2.1) --------------------------------------
def gaussian_kl(mean_a: torch.Tensor, var_a: torch.Tensor, mean_b: torch.Tensor, var_b: torch.Tensor) -> torch.Tensor:
    """KL(N(mean_a, var_a I) || N(mean_b, var_b I)) in D = mean_a.numel() dimensions (scalar variances)."""
    d = mean_a.numel()
    return 0.5 * (d * var_a / var_b - d + ((mean_a - mean_b) ** 2).sum() / var_b + d * torch.log(var_b / var_a))


def _gauss_marginals(mu, scale, m, v, alpha, sigma):
    return alpha * mu, alpha ** 2 * scale ** 2 + sigma ** 2, alpha * m, alpha ** 2 * v + sigma ** 2


def gaussian_vsd_gradient(mu: torch.Tensor, scale: torch.Tensor, m: torch.Tensor, v: float, alpha: float, sigma: float,
                          n: int, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Monte-Carlo VSD gradient for G(z) = mu + scale z (z ~ N(0, I)) and data N(m, v I) at one time (w = 1):

        grad = E[alpha (s^theta_t(x_t) - s_t(x_t))^T dG/dtheta],   x_t = alpha G(z) + sigma eps,

    with the closed-form scores of p^theta_t = N(alpha mu, (alpha^2 scale^2 + sigma^2) I) and
    p_t = N(alpha m, (alpha^2 v + sigma^2) I).  Returns (grad_mu (D,), grad_scale (), standard errors).
    It equals the gradient of KL(p^theta_t || p_t) (the score-function term has zero mean).
    """
    D = mu.numel()
    z = randn((n, D), generator=generator, dtype=torch.float64)
    eps = randn((n, D), generator=generator, dtype=torch.float64)
    a_g, var_g, a_d, var_d = _gauss_marginals(mu, scale, m, v, alpha, sigma)
    x_t = alpha * (mu + scale * z) + sigma * eps
    diff = alpha * (-(x_t - a_g) / var_g + (x_t - a_d) / var_d)            # alpha (s_theta - s_data), (n, D)
    per_mu, per_scale = diff, (diff * z).sum(1)                            # dG/dmu = I, dG/dscale = z
    se = {"mu": per_mu.std(0) / math.sqrt(n), "scale": per_scale.std() / math.sqrt(n)}
    return per_mu.mean(0), per_scale.mean(), se


def gaussian_score_term(mu: torch.Tensor, scale: torch.Tensor, alpha: float, sigma: float, n: int, *,
                        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The term dropped from the VSD gradient: E_{x ~ p^theta_t}[d/dtheta log p^theta_t(x)] at fixed x,
    for theta = (mu, scale), by Monte Carlo.  Returns (mean (D + 1,), standard error (D + 1,)); the mean is 0."""
    D = mu.numel()
    var = alpha ** 2 * scale ** 2 + sigma ** 2
    x = alpha * mu + var.sqrt() * randn((n, D), generator=generator, dtype=torch.float64)
    r = x - alpha * mu
    d_mu = alpha * r / var                                                  # d/dmu log N(x; alpha mu, var I)
    d_var = 0.5 * (r ** 2).sum(1) / var ** 2 - 0.5 * D / var
    d_scale = d_var * 2 * alpha ** 2 * scale
    g = torch.cat([d_mu, d_scale[:, None]], 1)
    return g.mean(0), g.std(0) / math.sqrt(n)

