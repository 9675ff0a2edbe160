"""Chapter 05's checks (dpm_lab/exercises/ch05.py): the right answer passes, each typical wrong answer fails with
its specific hint, a stub is "not attempted yet", and `use` falls back on the package's version only for a stub.
Course convention: t = 0 data, x_t = (1 - t) x0 + t eps; the solutions here are written out by hand."""
import pytest
import torch
from exercise_suite import chapter_suite

from dpm_lab.exercises import ch05


def planar(z, u, w, b, *, deriv=True, log=True, bias=True):
    a = z @ w + (b if bias else 0.0)
    h = 1 - torch.tanh(a) ** 2 if deriv else torch.tanh(a)
    det = 1 + h * (u @ w)
    return torch.log(det.abs()) if log else det


def cfm_loss(model, x0, eps, t, *, sign=1, path="course", reduce="mean", target="velocity"):
    tt = t[:, None]
    x_t = (1 - tt) * x0 + tt * eps if path == "course" else tt * x0 + (1 - tt) * eps
    err = (model.predict(x_t, t, "velocity") - (sign * (eps - x0) if target == "velocity" else eps)) ** 2
    return err.mean(1) if reduce == "mean" else err.sum(1)


def marginal(x, t, pts, w, *, posterior=True, shrink=True, sign=1):
    mean = (1 - t) * pts if shrink else pts
    logits = torch.log(w)[None] - ((x[:, None] - mean[None]) ** 2).sum(-1) / (2 * t ** 2)
    post = torch.softmax(logits, 1) if posterior else w[None].expand(x.shape[0], -1)
    return sign * (post[..., None] * (x[:, None] - pts[None]) / t).sum(1)


def heun(vel, x, s, t, *, corrector=True, end_time=True, forward=False):
    dt = (s - t) if forward else (t - s)
    v1 = vel(x, s)
    if not corrector:
        return x + dt * v1
    return x + 0.5 * dt * (v1 + vel(x + dt * v1, t if end_time else s))


def slope(t, s0, s1, *, half=True):
    V = (1 - t) ** 2 * s0 ** 2 + t ** 2 * s1 ** 2
    dV = -2 * (1 - t) * s0 ** 2 + 2 * t * s1 ** 2
    return dV / (2 * V) if half else dV / V


def pair(x0, eps, t, *, path="course", target="course"):
    tt = t[:, None]
    x_t = (1 - tt) * x0 + tt * eps if path == "course" else tt * x0 + (1 - tt) * eps
    return x_t, (eps - x0 if target == "course" else x0 - eps)


def marginal_var_t(x, t, pts, w):
    """A typical slip: the posterior's Gaussian with variance t instead of t^2."""
    logits = torch.log(w)[None] - ((x[:, None] - (1 - t) * pts[None]) ** 2).sum(-1) / (2 * t)
    return (torch.softmax(logits, 1)[..., None] * (x[:, None] - pts[None]) / t).sum(1)


def marginal_book(x, t, pts, w):
    """The marginal velocity written in the book's Ch. 5 convention (data at t = 1)."""
    logits = torch.log(w)[None] - ((x[:, None] - t * pts[None]) ** 2).sum(-1) / (2 * (1 - t) ** 2)
    return (torch.softmax(logits, 1)[..., None] * (pts[None] - x[:, None]) / (1 - t)).sum(1)


SOLUTIONS = {
    "planar_logdet": planar,
    "cfm_loss": cfm_loss,
    "marginal_velocity": marginal,
    "heun_step": heun,
    "marginal_slope_1d": slope,
    "euler_point_mass": "a",
    "training_pair": pair,
}

WRONG = [
    ("planar_logdet", lambda *a: planar(*a, log=False), ["determinant itself"]),
    ("planar_logdet", lambda *a: planar(*a, deriv=False), ["derivative h'"]),
    ("planar_logdet", lambda *a: planar(*a, bias=False), ["bias b"]),
    ("planar_logdet", lambda *a: planar(*a).sum(), ["one value per sample"]),
    ("planar_logdet", lambda z, u, w, b: torch.log(1 + (1 - torch.tanh(z @ w + b) ** 2) * (u @ w)), ["absolute value"]),
    ("planar_logdet", lambda z, u, w, b: torch.log(((1 - torch.tanh(z @ w + b) ** 2) * (u @ w)).abs()),
     ["identity is missing"]),
    ("cfm_loss", lambda *a: cfm_loss(*a, sign=-1), ["wrong sign", "eps - x0"]),
    ("cfm_loss", lambda *a: cfm_loss(*a, path="fm"), ["noise-at-0", "(1 - t) x0 + t eps"]),
    ("cfm_loss", lambda *a: cfm_loss(*a, reduce="sum"), ["summed over the 3 dimensions"]),
    ("cfm_loss", lambda *a: cfm_loss(*a).mean(), ["one value per sample"]),
    ("cfm_loss", lambda m, x0, eps, t: cfm_loss(m, x0, eps, t, target="eps"), ["eps alone"]),
    ("marginal_velocity", lambda *a: marginal(*a, posterior=False), ["prior weights"]),
    ("marginal_velocity", lambda *a: marginal(*a, shrink=False), ["(1 - t) x0_n"]),
    ("marginal_velocity", lambda *a: marginal(*a, sign=-1), ["sign is flipped"]),
    ("marginal_velocity", lambda x, t, p, w: marginal(x, t, p, torch.ones_like(w)), ["weights are missing"]),
    ("marginal_velocity", marginal_var_t, ["variance is t^2"]),
    ("heun_step", lambda *a: heun(*a, corrector=False), ["Euler step"]),
    ("heun_step", lambda *a: heun(*a, forward=True), ["wrong way"]),
    ("heun_step", lambda *a: heun(*a, end_time=False), ["evaluated at s"]),
    ("heun_step", lambda v, x, s, t: 2 * heun(v, x, s, t) - x, ["factor 1/2"]),
    ("heun_step", lambda v, x, s, t: x + (t - s) * v(x + 0.5 * (t - s) * v(x, s), 0.5 * (s + t)), ["midpoint rule"]),
    ("marginal_slope_1d", lambda *a: slope(*a, half=False), ["V'/V"]),
    ("marginal_slope_1d", lambda t, s0, s1: slope(t, s1, s0), ["swapped", "book's Ch. 5 convention"]),
    ("marginal_slope_1d", lambda *a: -slope(*a), ["sign is flipped", "d/dtau"]),
    ("marginal_velocity", marginal_book, ["book's Ch. 5 convention"]),
    ("cfm_loss", lambda *a: cfm_loss(*a, sign=-1, path="fm"), ["book's Ch. 5 convention throughout"]),
    ("planar_logdet", lambda z, u, w, b: torch.log((1 + torch.tanh(z @ w + b) * (u @ w) ** 2).abs()),
     ["outer product", "det(I + a b^T)"]),
    ("marginal_slope_1d", lambda t, s0, s1: (s1 - s0) / ((1 - t) * s0 + t * s1), ["variances add"]),
    ("euler_point_mass", "b", ["recorded 'b'", "constant"]),
    ("euler_point_mass", "c", ["recorded 'c'"]),
    ("euler_point_mass", "zero", ["one of the letters"]),
    ("training_pair", lambda *a: pair(*a, path="fm", target="fm"), ["Ch. 5 convention", "tau = 1 - t"]),
    ("training_pair", lambda *a: pair(*a, target="fm"), ["kept the old sign"]),
    ("training_pair", lambda *a: pair(*a, path="fm"), ["still weighs x0 by t"]),
    ("training_pair", lambda x0, eps, t: (pair(x0, eps, t)[0], eps), ["path's velocity"]),
]

globals().update(chapter_suite("05", SOLUTIONS, WRONG))


def test_use_falls_back_only_for_a_stub(capsys):
    f = ch05.use("heun_step", lambda *a: None)
    x = torch.ones(2, 2)
    out = f(lambda y, t: y, x, 1.0, 0.5)
    assert "not attempted yet" in capsys.readouterr().out
    assert torch.allclose(out, ch05._heun_step(lambda y, t: y, x, 1.0, 0.5))
    wrong = ch05.use("heun_step", lambda v, x, s, t: x)
    assert torch.equal(wrong(lambda y, t: y, x, 1.0, 0.5), x)
    with pytest.raises(ValueError, match="no package version"):
        ch05.use("nope", None)
