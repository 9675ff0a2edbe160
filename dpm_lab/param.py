"""The four predictions (x0, eps, score, velocity) and v-prediction, and conversions among them.

For x_t = alpha_t x0 + sigma_t eps (book §6.3.1, Eq. predictions-equivalence):

    eps   = -sigma_t * score
    x0    = (x_t + sigma_t^2 score) / alpha_t
    velocity = alpha_t' x0 + sigma_t' eps = f(t) x_t - g^2(t)/2 * score      (the PF-ODE drift)
    v     = alpha_t eps - sigma_t x0                                         (Salimans & Ho)

Every conversion goes through the pair (x0, eps), which any one prediction fixes.
"""
from __future__ import annotations

import torch

from .schedules import Schedule
from .utils import Time, as_time, check_choice, expand_t

KINDS = ("x0", "eps", "score", "velocity", "v")
__all__ = ["KINDS", "Model", "to_x0_eps", "convert", "all_predictions", "pf_ode_drift", "error_scale", "target_coefficients"]


def _coeffs(schedule: Schedule, t: Time, x: torch.Tensor):
    t = as_time(t)
    return t, expand_t(schedule.alpha(t), x), expand_t(schedule.sigma(t), x)


def _need_positive(value: torch.Tensor, what: str, src: str, dst: str):
    if (value == 0).any():
        raise ValueError(f"cannot convert {src} -> {dst} where {what} = 0 (an end point of the schedule); "
                         f"use t strictly inside (0, 1)")


def to_x0_eps(schedule: Schedule, x_t: torch.Tensor, t: Time, value: torch.Tensor, kind: str):
    """Return the pair (x0, eps) fixed by one prediction `value` of type `kind` at (x_t, t)."""
    check_choice(kind, KINDS, "prediction kind")
    if value.shape != x_t.shape:
        raise ValueError(f"value has shape {tuple(value.shape)} but x_t has shape {tuple(x_t.shape)}")
    t, a, s = _coeffs(schedule, t, x_t)
    if kind == "x0":
        _need_positive(s, "sigma_t", kind, "eps")
        return value, (x_t - a * value) / s
    if kind == "eps":
        _need_positive(a, "alpha_t", kind, "x0")
        return (x_t - s * value) / a, value
    if kind == "score":
        _need_positive(a, "alpha_t", kind, "x0")
        return (x_t + s ** 2 * value) / a, -s * value
    if kind == "v":
        r2 = a ** 2 + s ** 2
        return (a * x_t - s * value) / r2, (s * x_t + a * value) / r2
    # velocity: solve [[a, s], [a', s']] [x0, eps] = [x_t, velocity]
    da, ds = expand_t(schedule.d_alpha(t), x_t), expand_t(schedule.d_sigma(t), x_t)
    det = a * ds - s * da
    _need_positive(det, "alpha_t sigma_t' - sigma_t alpha_t'", kind, "x0")
    return (ds * x_t - s * value) / det, (a * value - da * x_t) / det


def _from_x0_eps(schedule, x_t, t, x0, eps, kind):
    t, a, s = _coeffs(schedule, t, x_t)
    if kind == "x0":
        return x0
    if kind == "eps":
        return eps
    if kind == "score":  # score = -eps / sigma_t (Eq. predictions-equivalence)
        _need_positive(s, "sigma_t", "eps", "score")
        return -eps / s
    if kind == "v":
        return a * eps - s * x0
    return expand_t(schedule.d_alpha(t), x_t) * x0 + expand_t(schedule.d_sigma(t), x_t) * eps


def convert(schedule: Schedule, x_t: torch.Tensor, t: Time, value: torch.Tensor, src: str, dst: str) -> torch.Tensor:
    """Convert a prediction of kind `src` into kind `dst` (§6.3.1). Kinds: x0, eps, score, velocity, v."""
    check_choice(dst, KINDS, "prediction kind")
    if src == dst:
        check_choice(src, KINDS, "prediction kind")
        return value
    x0, eps = to_x0_eps(schedule, x_t, t, value, src)
    return _from_x0_eps(schedule, x_t, t, x0, eps, dst)


def all_predictions(schedule: Schedule, x_t: torch.Tensor, t: Time, value: torch.Tensor, kind: str) -> dict:
    """All five views {x0, eps, score, velocity, v} of one prediction (entries that are undefined
    at an end point of the schedule are left out)."""
    x0, eps = to_x0_eps(schedule, x_t, t, value, kind)
    out = {}
    for dst in KINDS:
        try:
            out[dst] = value if dst == kind else _from_x0_eps(schedule, x_t, t, x0, eps, dst)
        except ValueError:
            pass
    return out


def pf_ode_drift(schedule: Schedule, x_t: torch.Tensor, t: Time, value: torch.Tensor, kind: str) -> torch.Tensor:
    """PF-ODE drift dx/dt written directly in each parameterization (§6.3.2, Eq. clean_pf_ode).

    eps:   (a'/a) x - sigma (a'/a - s'/s) eps
    x0:    (s'/s) x + alpha (a'/a - s'/s) x0
    score: (a'/a) x + sigma^2 (a'/a - s'/s) score      ( = f x - g^2/2 score )
    velocity: itself;  v: through (x0, eps).
    """
    check_choice(kind, KINDS, "prediction kind")
    if kind == "velocity":
        return value
    t, a, s = _coeffs(schedule, t, x_t)
    if kind == "v":
        x0, eps = to_x0_eps(schedule, x_t, t, value, kind)
        return _from_x0_eps(schedule, x_t, t, x0, eps, "velocity")
    f = expand_t(schedule.f(t), x_t)
    ds = expand_t(schedule.d_sigma(t), x_t)
    _need_positive(s, "sigma_t", kind, "drift")
    gap = f - ds / s  # a'/a - s'/s = -lambda'
    if kind == "eps":
        return f * x_t - s * gap * value
    if kind == "x0":
        return (ds / s) * x_t + a * gap * value
    return f * x_t + s ** 2 * gap * value


def error_scale(schedule: Schedule, t: Time, kind: str) -> torch.Tensor:
    """c_t with ||score_err|| = c_t ||kind_err|| (§6.3.1, Eq. s-e-x-v-equi).

    eps: 1/sigma;  x0: alpha/sigma^2;  score: 1;  velocity: alpha / (sigma |alpha' sigma - alpha sigma'|);
    v: alpha / (sigma (alpha^2 + sigma^2)).
    """
    check_choice(kind, KINDS, "prediction kind")
    t = as_time(t)
    a, s = schedule.alpha(t), schedule.sigma(t)
    if kind == "score":
        return torch.ones_like(t)
    if (s == 0).any():
        raise ValueError("error_scale needs sigma_t > 0")
    if kind == "eps":
        return 1 / s
    if kind == "x0":
        return a / s ** 2
    if kind == "v":
        return a / (s * (a ** 2 + s ** 2))
    return a / (s * (schedule.d_alpha(t) * s - a * schedule.d_sigma(t)).abs())


def target_coefficients(schedule: Schedule, t: Time, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(A_t, B_t) with regression target A_t x0 + B_t eps for each prediction (§6.2.2 table).

    x0: (1, 0); eps: (0, 1); score: (0, -1/sigma); velocity: (alpha', sigma'); v: (-sigma, alpha).
    """
    check_choice(kind, KINDS, "prediction kind")
    t = as_time(t)
    one, zero = torch.ones_like(t), torch.zeros_like(t)
    if kind == "x0":
        return one, zero
    if kind == "eps":
        return zero, one
    if kind == "score":
        s = schedule.sigma(t)
        if (s == 0).any():
            raise ValueError("the score target -eps/sigma_t needs sigma_t > 0")
        return zero, -1 / s
    if kind == "v":
        return -schedule.sigma(t), schedule.alpha(t)
    return schedule.d_alpha(t), schedule.d_sigma(t)


class Model:
    """Anything that predicts one of the four targets at (x_t, t): the edge where conversion happens once.

    Subclasses set `self.schedule` and `self.kind` (what the network outputs) and implement
    `raw(x_t, t, c=None)`, returning that prediction.  `predict(x_t, t, kind)` converts to any
    other kind (§6.3.1), so samplers call `model.predict(x, t, "eps")` and never branch on what
    the network was trained for.  `t` is a float, a 0-d tensor or a (B,) tensor; `c` an optional
    class label (int or (B,) long tensor; guidance code uses it).
    """

    schedule: Schedule
    kind: str = "eps"

    def raw(self, x_t: torch.Tensor, t: Time, c=None) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, x_t: torch.Tensor, t: Time, kind: str = "eps", c=None) -> torch.Tensor:
        """The prediction of type `kind` (x0, eps, score, velocity or v)."""
        check_choice(kind, KINDS, "prediction kind")
        value = self.raw(x_t, t, c)
        return value if kind == self.kind else convert(self.schedule, x_t, t, value, self.kind, kind)

    def x0(self, x_t, t, c=None): return self.predict(x_t, t, "x0", c)
    def eps(self, x_t, t, c=None): return self.predict(x_t, t, "eps", c)
    def score(self, x_t, t, c=None): return self.predict(x_t, t, "score", c)
    def velocity(self, x_t, t, c=None): return self.predict(x_t, t, "velocity", c)

    def __call__(self, x_t, t, c=None):
        return self.raw(x_t, t, c)
