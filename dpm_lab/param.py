"""The prediction kinds as one table: every kind is y = A_t x0 + B_t eps (book §6.2.2, §6.3.1).

With x_t = alpha_t x0 + sigma_t eps, each quantity a network (or an exact field) can predict
at (x_t, t) is a fixed linear combination of the two hidden variables x0 and eps:

    kind       A_t        B_t           what it is
    x0         1          0             the clean data (the denoiser)
    eps        0          1             the noise
    score      0          -1/sigma_t    grad log p_t(x_t | x0) = -eps / sigma_t
    velocity   alpha_t'   sigma_t'      d x_t / dt (its posterior mean is the PF-ODE drift)
    v          -sigma_t   alpha_t       Salimans & Ho's v = alpha_t eps - sigma_t x0

So every conversion is a 2x2 solve and a product (Eq. predictions-equivalence):

    [ alpha_t  sigma_t ] [ x0  ]   [ x_t ]      x0  = (B_t x_t - sigma_t y) / det
    [ A_t      B_t     ] [ eps ] = [ y   ],     eps = (alpha_t y - A_t x_t) / det,   det = alpha_t B_t - sigma_t A_t,

then y' = A'_t x0 + B'_t eps for the wanted kind.  The system is singular where det = 0 (at
alpha_t = 0 an eps prediction says nothing about x0; at sigma_t = 0 an x0 prediction says
nothing about eps) and undefined where a coefficient is infinite (the score at sigma_t = 0;
sigma_t' at the start of VP and VE, where sigma_t grows like sqrt(t)).  There every function
here raises a ValueError naming the kind, the time and the reason.

At a fixed x_t each kind moves with eps alone: y = (A_t / alpha_t) x_t + g_t eps with the
eps-gain g_t = det / alpha_t = B_t - sigma_t A_t / alpha_t.  Errors therefore scale as
||y_err|| = |g_t| ||eps_err||, which is the loss equivalence of Eq. s-e-x-v-equi (error_scale).

    dl.param.TABLE["velocity"]                # Prediction(kind='velocity', A="alpha_t'", B="sigma_t'", ...)
    A, B = dl.param.coefficients(sched, t, "velocity")
    eps = dl.convert(sched, x_t, t, velocity, "velocity", "eps")
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .schedules import Coeffs, Schedule, time_map
from .utils import Time, check_choice, check_finite, expand_t

Label = int | torch.Tensor | None

__all__ = ["Prediction", "TABLE", "KINDS", "Label", "Model", "coefficients", "target_coefficients", "to_x0_eps",
           "convert", "all_predictions", "pf_ode_drift", "error_scale", "TimeMappedModel"]


@dataclass(frozen=True)
class Prediction:
    """One row of the table: the kind y = A_t x0 + B_t eps (§6.2.2, Table of (A_t, B_t)).

    Args:
        kind: its name.  A, B: the coefficients as the book writes them.  meaning: what it is.
        a_of, b_of: Coeffs -> A_t, B_t.  undefined: where A_t or B_t is infinite ("" if nowhere).
    The methods read one `Coeffs` (schedule.coeffs(t)), so a caller validates t once.
    """

    kind: str
    A: str
    B: str
    meaning: str
    a_of: Callable[[Coeffs], torch.Tensor] = field(repr=False, compare=False)
    b_of: Callable[[Coeffs], torch.Tensor] = field(repr=False, compare=False)
    undefined: str = ""

    def coefficients(self, c: Coeffs) -> tuple[torch.Tensor, torch.Tensor]:
        """(A_t, B_t), each shaped like t; a ValueError where one is infinite."""
        what = f"the {self.kind} prediction (A_t, B_t) = ({self.A}, {self.B})"
        return (check_finite(self.a_of(c), c.t, what, self.undefined),
                check_finite(self.b_of(c), c.t, what, self.undefined))

    def det(self, c: Coeffs) -> torch.Tensor:
        """det = alpha_t B_t - sigma_t A_t of the system [[alpha, sigma], [A, B]]; a ValueError where it is 0."""
        return self._det(c, *self.coefficients(c))

    def _det(self, c: Coeffs, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        det = c.alpha * B - c.sigma * A
        if (det == 0).any():
            i = (det == 0).flatten().nonzero()[0, 0]
            t, a, s = (v.expand_as(det).flatten()[i].item() for v in (c.t, c.alpha, c.sigma))
            why = ("alpha_t = 0 there: x_t = sigma_t eps carries no trace of x0" if a == 0 else
                   "sigma_t = 0 there: x_t = alpha_t x0 carries no trace of eps" if s == 0 else
                   "the prediction is parallel to x_t there")
            raise ValueError(f"cannot recover (x0, eps) from a {self.kind} prediction at t = {t:g}: "
                             f"det = alpha_t B_t - sigma_t A_t = 0 ({why}); use a t strictly inside the range")
        return det

    def gain(self, c: Coeffs) -> torch.Tensor:
        """The eps-gain g_t = B_t - sigma_t A_t / alpha_t = det / alpha_t: dy = g_t d eps at a fixed x_t.

        Finite at alpha_t = 0 for kinds with A_t = 0 (eps, score); +-inf there for the others.
        """
        A, B = self.coefficients(c)
        return B - torch.where(A == 0, torch.zeros_like(A), c.sigma * A / c.alpha)

    def error_scale(self, c: Coeffs) -> torch.Tensor:
        """c_t with ||score_err|| = c_t ||y_err|| (Eq. s-e-x-v-equi): c_t = |g_score / g_t| = 1 / (sigma_t |g_t|)."""
        return (TABLE["score"].gain(c) / self.gain(c)).abs()

    def solve(self, c: Coeffs, x_t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair (x0, eps) with alpha x0 + sigma eps = x_t and A x0 + B eps = y (Cramer's rule).

        Args: x_t and y of shape (B, *D); c at a scalar t or at (B,) times.
        """
        A, B = self.coefficients(c)
        det = self._det(c, A, B)
        a, s, A, B, det = (expand_t(v, x_t) for v in (c.alpha, c.sigma, A, B, det))
        return (B * x_t - s * y) / det, (a * y - A * x_t) / det

    def form(self, c: Coeffs, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """This kind from the pair: y = A_t x0 + B_t eps, shape like x0."""
        A, B = self.coefficients(c)
        return expand_t(A, x0) * x0 + expand_t(B, x0) * eps


def _ones(c: Coeffs) -> torch.Tensor: return torch.ones_like(c.alpha)
def _zeros(c: Coeffs) -> torch.Tensor: return torch.zeros_like(c.alpha)


_SQRT_START = "sigma_t' is infinite where sigma_t = 0 and sigma_t grows like sqrt(t), as at the start of VP and VE"
TABLE: dict[str, Prediction] = {p.kind: p for p in (
    Prediction("x0", "1", "0", "the clean data (denoiser)", _ones, _zeros),
    Prediction("eps", "0", "1", "the noise", _zeros, _ones),
    Prediction("score", "0", "-1/sigma_t", "grad log p_t(x_t | x0) = -eps / sigma_t", _zeros, lambda c: -1 / c.sigma,
               "B_t = -1/sigma_t is infinite where sigma_t = 0"),
    Prediction("velocity", "alpha_t'", "sigma_t'", "d x_t / dt; its posterior mean is the PF-ODE drift",
               lambda c: c.d_alpha, lambda c: c.d_sigma, _SQRT_START),
    Prediction("v", "-sigma_t", "alpha_t", "Salimans & Ho's v = alpha_t eps - sigma_t x0",
               lambda c: -c.sigma, lambda c: c.alpha),
)}
KINDS = tuple(TABLE)


def _row(kind: str) -> Prediction:
    return TABLE[check_choice(kind, KINDS, "prediction kind")]


def _check_value(value: torch.Tensor, x_t: torch.Tensor) -> None:
    if value.shape != x_t.shape:
        raise ValueError(f"value has shape {tuple(value.shape)} but x_t has shape {tuple(x_t.shape)}")


def coefficients(schedule: Schedule, t: Time, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A_t, B_t) of a kind: y = A_t x0 + B_t eps (§6.2.2 table; the regression target of the loss template).

    x0: (1, 0); eps: (0, 1); score: (0, -1/sigma_t); velocity: (alpha_t', sigma_t'); v: (-sigma_t, alpha_t).
    Args: t a float, 0-d or (B,) tensor in [0, 1].  Returns two tensors shaped like t (float64).
    """
    return _row(kind).coefficients(schedule.coeffs(t))


target_coefficients = coefficients    # the name of the loss template (§6.2.2): regression target A_t x0 + B_t eps


def to_x0_eps(schedule: Schedule, x_t: torch.Tensor, t: Time, value: torch.Tensor,
              kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair (x0, eps) fixed by one prediction: solve alpha x0 + sigma eps = x_t, A x0 + B eps = value (§6.3.1).

    Args: x_t, value (B, *D); t a float, 0-d or (B,) tensor; kind one of KINDS.  Returns two (B, *D) tensors.
    """
    row = _row(kind)
    _check_value(value, x_t)
    return row.solve(schedule.coeffs(t), x_t, value)


def convert(schedule: Schedule, x_t: torch.Tensor, t: Time, value: torch.Tensor, src: str, dst: str) -> torch.Tensor:
    """Convert a prediction of kind `src` into kind `dst` (§6.3.1, Eq. predictions-equivalence).

    (x0, eps) = solve(src row, x_t, value), then A_dst x0 + B_dst eps.
    Args: x_t, value (B, *D), finite; t a float, 0-d or (B,) tensor.  Returns (B, *D).
    """
    _row(src), _row(dst)
    _check_value(value, x_t)
    for v, name in ((x_t, "x_t"), (value, "value")):
        if not torch.isfinite(v).all():
            raise ValueError(f"{name} contains NaN or inf; convert needs finite inputs")
    return _convert(schedule, x_t, t, value, src, dst)


def _convert(schedule: Schedule, x_t: torch.Tensor, t: Time, value: torch.Tensor, src: str, dst: str) -> torch.Tensor:
    """`convert` without the finiteness check: the models' hot path (a diverged sampler's NaN passes through)."""
    src_row, dst_row = _row(src), _row(dst)
    if src == dst:
        return value
    _check_value(value, x_t)
    c = schedule.coeffs(t)
    return dst_row.form(c, *src_row.solve(c, x_t, value))


def all_predictions(schedule: Schedule, x_t: torch.Tensor, t: Time, value: torch.Tensor,
                    kind: str) -> dict[str, torch.Tensor]:
    """All five views {x0, eps, score, velocity, v} of one prediction (§6.3.1).

    Views whose coefficients are undefined at t (the score at sigma_t = 0, ...) are left out.
    Args: x_t, value (B, *D).  Returns a dict kind -> (B, *D).
    """
    row = _row(kind)
    _check_value(value, x_t)
    c = schedule.coeffs(t)
    x0, eps = row.solve(c, x_t, value)
    out = {}
    for dst, dst_row in TABLE.items():
        try:
            out[dst] = value if dst == kind else dst_row.form(c, x0, eps)
        except ValueError:
            pass
    return out


def pf_ode_drift(schedule: Schedule, x_t: torch.Tensor, t: Time, value: torch.Tensor, kind: str) -> torch.Tensor:
    """PF-ODE drift dx/dt = alpha_t' x0* + sigma_t' eps* from any prediction (§6.3.2, Eq. clean_pf_ode).

    Written out per kind, with lambda_t' = alpha'/alpha - sigma'/sigma:
        eps:   (alpha'/alpha) x - sigma lambda' eps
        x0:    (sigma'/sigma) x + alpha lambda' x0
        score: (alpha'/alpha) x + sigma^2 lambda' score   (= f x - g^2/2 score)
    Computed as the conversion to the velocity row.  Args: x_t, value (B, *D).  Returns (B, *D).
    """
    return _convert(schedule, x_t, t, value, kind, "velocity")


def error_scale(schedule: Schedule, t: Time, kind: str) -> torch.Tensor:
    """c_t with ||score_err|| = c_t ||kind_err|| at a fixed x_t (§6.3.1, Eq. s-e-x-v-equi).

    c_t = 1 / (sigma_t |g_t|) with the eps-gain g_t = B_t - sigma_t A_t / alpha_t:
    eps: 1/sigma;  x0: alpha/sigma^2;  score: 1;  velocity: alpha / (sigma |alpha' sigma - alpha sigma'|);
    v: alpha / (sigma (alpha^2 + sigma^2)).  Returns a tensor shaped like t.
    """
    return _row(kind).error_scale(schedule.coeffs(t))


class Model:
    """Anything that predicts one kind at (x_t, t): the edge where conversion happens once.

    Subclasses set `self.schedule` and `self.kind` (what the network outputs) and implement
    `raw(x_t, t, c=None)`, returning that prediction.  `predict(x_t, t, kind)` converts to any
    other kind (§6.3.1), so samplers call `model.predict(x, t, "eps")` and never branch on what
    the network was trained for.

    Args (of every method): x_t (B, *D); t a float, 0-d or (B,) tensor; c an optional class label
    (int or (B,) long tensor; guidance uses it).
    """

    schedule: Schedule
    kind: str = "eps"

    def raw(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        """The model's own prediction, of kind `self.kind`, shape like x_t."""
        raise NotImplementedError

    def predict(self, x_t: torch.Tensor, t: Time, kind: str = "eps", c: Label = None) -> torch.Tensor:
        """The prediction of kind `kind` (x0, eps, score, velocity or v), shape like x_t."""
        check_choice(kind, KINDS, "prediction kind")
        return _convert(self.schedule, x_t, t, self.raw(x_t, t, c), self.kind, kind)

    def x0(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        """The clean-data prediction (the denoiser), shape like x_t."""
        return self.predict(x_t, t, "x0", c)

    def eps(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        """The noise prediction, shape like x_t."""
        return self.predict(x_t, t, "eps", c)

    def score(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        """The score prediction grad log p_t(x_t), shape like x_t."""
        return self.predict(x_t, t, "score", c)

    def velocity(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        """The PF-ODE velocity dx/dt, shape like x_t."""
        return self.predict(x_t, t, "velocity", c)

    def v(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        """Salimans & Ho's v = alpha_t eps - sigma_t x0, shape like x_t."""
        return self.predict(x_t, t, "v", c)

    def __call__(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        """The raw prediction (of `self.kind`)."""
        return self.raw(x_t, t, c)


class TimeMappedModel(Model):
    """A model of one schedule used under another with the same range of SNR (§6.3.3, all affine flows are equivalent).

    With (tau, k) = time_map(schedule, inner.schedule, t), x^inner_tau = k x_t carries the same (x0, eps), so
    x0*(x_t, t) = inner's x0*(k x_t, tau); every other kind follows from this schedule's table.  No training:
    a VP network answers for the flow-matching path, the trigonometric one, ...

    Args: inner a Model (its `schedule` and `predict`); schedule the schedule to answer under.
    Times whose lambda lies outside the inner schedule's range raise a ValueError (time_map).
    """

    kind = "x0"

    def __init__(self, inner: Model, schedule: Schedule):
        if not hasattr(inner, "predict") or not isinstance(getattr(inner, "schedule", None), Schedule):
            raise TypeError(f"inner must be a Model with a schedule, got {type(inner).__name__}")
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a Schedule, got {type(schedule).__name__}")
        self.inner, self.schedule = inner, schedule

    def raw(self, x_t: torch.Tensor, t: Time, c: Label = None) -> torch.Tensor:
        """inner's x0 prediction at (k x_t, tau), shape like x_t."""
        tau, k = time_map(self.schedule, self.inner.schedule, t)
        tau = tau.to(x_t.dtype) if tau.dim() else float(tau)
        return self.inner.predict(x_t * expand_t(k, x_t), tau, "x0", c)
