"""Chapter 06's checks (dpm_lab/exercises/ch06.py): the right answer passes, each typical wrong answer fails with its
specific hint, a stub is "not attempted yet", and `use` falls back on the package's version only for a stub.
The solutions here are written out by hand from the book's formulas, not taken from the package."""
import math

import pytest
import torch
from exercise_suite import chapter_suite

import dpm_lab as dl
from dpm_lab.exercises import ch06


def weights(x_t, t, points, s, *, centre=True, axis=-1, var=True, norm=True):
    a, sig = s.alpha(t).item(), s.sigma(t).item()
    d2 = ((x_t[:, None, :] - (a if centre else 1.0) * points[None]) ** 2).sum(-1)
    logits = -d2 / (2 * sig ** 2 if var else 2 * sig)
    return torch.softmax(logits, dim=axis) if norm else torch.exp(logits)


def naive_weights(x_t, t, points, s):
    """Normalised Gaussian densities computed outside the log domain: right at moderate t, 0/0 at small t."""
    a, sig = s.alpha(t).item(), s.sigma(t).item()
    dens = torch.exp(-((x_t[:, None, :] - a * points[None]) ** 2).sum(-1) / (2 * sig ** 2))
    return dens / dens.sum(-1, keepdim=True)


def convert(s, x_t, t, value, src, dst, *, score_b=lambda c: -1 / c.sigma, vel=lambda c: (c.d_alpha, c.d_sigma)):
    c = s.coeffs(t).floats()
    ab = {"x0": (1.0, 0.0), "eps": (0.0, 1.0), "score": (0.0, score_b(c)), "velocity": vel(c)}
    (A, B), (A2, B2) = ab[src], ab[dst]
    det = c.alpha * B - c.sigma * A
    x0, eps = (B * x_t - c.sigma * value) / det, (c.alpha * value - A * x_t) / det
    return A2 * x0 + B2 * eps


def scale(a, s, da, ds):
    return a / (s * (da * s - a * ds).abs())


def step(model, x, s, t, g, z, *, sign=-1, half=0.5, root=True, back=True):
    drift = model.predict(x, s, "velocity") + sign * half * g ** 2 * model.predict(x, s, "score")
    dt = s - t
    return (x - dt * drift if back else x + dt * drift) + g * (math.sqrt(dt) if root else dt) * z


SOLUTIONS = {
    "posterior_weights": weights,
    "convert": convert,
    "velocity_error_scale": scale,
    "flow_time": lambda a, s: (a + s, s / (a + s)),
    "gamma_step": step,
    "gamma_prediction": "b",
    "kinetic_energy": lambda p, d, m2: (d + m2) * p ** 2 / (2 * p - 1),
}

WRONG = [
    ("posterior_weights", lambda *a: weights(*a, centre=False), ["alpha_t x^(i)"]),
    ("posterior_weights", lambda *a: weights(*a, axis=0), ["normalised over the batch"]),
    ("posterior_weights", lambda *a: weights(*a, var=False), ["exponent"]),
    ("posterior_weights", lambda *a: weights(*a, norm=False), ["sum to one"]),
    ("posterior_weights", lambda *a: weights(*a)[:, :2], ["shape (5, 4)"]),
    ("posterior_weights", lambda *a: naive_weights(*a), ["underflows", "log domain"]),
    ("convert", lambda *a: convert(*a, score_b=lambda c: 1 / c.sigma), ["minus sign"]),
    ("convert", lambda *a: convert(*a, score_b=lambda c: -1 / c.sigma ** 2), ["one power of sigma_t"]),
    ("convert", lambda *a: convert(*a, vel=lambda c: (c.alpha, c.sigma)), ["time derivatives"]),
    ("convert", lambda *a: convert(*a, vel=lambda c: (c.d_sigma, c.d_alpha)), ["alpha_t' goes with x0"]),
    ("convert", lambda s, x, t, v, src, dst: v, ["Solve alpha_t x0"]),
    ("velocity_error_scale", lambda a, s, da, ds: a / (s * (da * s - a * ds)), ["absolute value"]),
    ("velocity_error_scale", lambda *a: scale(*a) ** 2, ["squared errors"]),
    ("velocity_error_scale", lambda *a: 1 / scale(*a), ["other way round"]),
    ("velocity_error_scale", lambda a, s, da, ds: 1 / (s * (da * s - a * ds).abs()), ["divide the two"]),
    ("velocity_error_scale", lambda a, s, da, ds: 1 / s, ["scale of the eps-error"]),
    ("velocity_error_scale", lambda a, s, da, ds: a / s ** 2, ["scale of the eps-error"]),
    ("flow_time", lambda a, s: (a + s, a / (a + s)), ["Chapter 5's convention"]),
    ("flow_time", lambda a, s: (1 / (a + s), s / (a + s)), ["the other way"]),
    ("flow_time", lambda a, s: ((a ** 2 + s ** 2).sqrt(), s / (a + s)), ["trigonometric"]),
    ("flow_time", lambda a, s: (a + s, s), ["divide by alpha_t + sigma_t"]),
    ("flow_time", lambda a, s: a + s, ["the pair (c, tau)"]),
    ("gamma_step", lambda *a: step(*a, sign=+1), ["minus sign"]),
    ("gamma_step", lambda *a: step(*a, half=1.0), ["already holds"]),
    ("gamma_step", lambda *a: step(*a, root=False), ["sqrt(dt)"]),
    ("gamma_step", lambda *a: step(*a, back=False), ["backwards"]),
    ("gamma_step", lambda *a: step(*a, half=0.0), ["pulls them back"]),
    ("gamma_prediction", "a", ["recorded 'a'", "0.9"]),
    ("gamma_prediction", "c", ["recorded 'c'"]),
    ("gamma_prediction", "maybe", ["one of the letters"]),
    ("kinetic_energy", lambda p, d, m2: d * p ** 2 / (2 * p - 1), ["second moment"]),
    ("kinetic_energy", lambda p, d, m2: m2 * p ** 2 / (2 * p - 1), ["E||eps||^2 = D"]),
    ("kinetic_energy", lambda p, d, m2: (d + m2) * p ** 2 / (2 * p + 1), ["p^2 / (2p - 1)"]),
    ("kinetic_energy", lambda p, d, m2: (d + m2) * p / (2 * p - 1), ["Square the velocity"]),
    ("kinetic_energy", lambda p, d, m2: d + m2, ["straight path's K"]),
    ("kinetic_energy", lambda p, d, m2: [1.0, 2.0], ["one number"]),
]


globals().update(chapter_suite("06", SOLUTIONS, WRONG, None))


def test_references_agree_with_the_package(capsys):
    """The versions later cells fall back on are the package's (and the book's) formulas."""
    sched = dl.VPLinear()
    gmm = dl.datasets.eight_gaussians_mixture()
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(6, 2, generator=g, dtype=torch.float64)
    x = torch.randn(4, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ch06._REFERENCES["posterior_weights"](x, 0.5, pts, sched), weights(x, 0.5, pts, sched))
    c, tau = ch06._REFERENCES["flow_time"](sched.alpha(0.3), sched.sigma(0.3))
    torch.testing.assert_close(torch.stack([c, tau]), torch.stack(list(dl.schedules.flow_time(sched, 0.3))))
    model = gmm.model(sched)
    z = torch.randn(4, 2, generator=g, dtype=torch.float64)
    x_t, _ = dl.dynamics.gamma_sde_step(model, x, 0.5, 0.45, gamma=0.0)
    torch.testing.assert_close(ch06._REFERENCES["gamma_step"](model, x, 0.5, 0.45, 0.0, z), x_t)
    assert math.isclose(ch06._kinetic(2.0, 2, 4.08), dl.schedules.kinetic_energy(
        type("P2", (dl.Schedule,), {"_alpha": lambda s, t: 1 - t ** 2, "_sigma": lambda s, t: t ** 2,
                                     "_d_alpha": lambda s, t: -2 * t, "_d_sigma2": lambda s, t: 4 * t ** 3,
                                     "_d_sigma": lambda s, t: 2 * t})(), 4.08, 2), rel_tol=1e-9)
    v = dl.param.error_scale(sched, torch.tensor([0.2, 0.6]), "velocity")
    c = sched.coeffs(torch.tensor([0.2, 0.6]))
    torch.testing.assert_close(ch06._velocity_scale(c.alpha, c.sigma, c.d_alpha, c.d_sigma), v)
    capsys.readouterr()


def test_use_falls_back_only_for_a_stub(capsys):
    f = ch06.use("flow_time", lambda a, s: None)
    a, s = torch.tensor(0.6), torch.tensor(0.8)
    assert torch.allclose(torch.stack(f(a, s)), torch.stack([a + s, s / (a + s)]))
    assert "not attempted yet" in capsys.readouterr().out
    wrong = ch06.use("flow_time", lambda a, s: (a, s))
    assert wrong(a, s) == (a, s)                                     # a wrong answer is used as it is
    with pytest.raises(ValueError, match="no package version"):
        ch06.use("nope", None)
