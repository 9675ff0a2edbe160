"""Chapter 03's checks (dpm_lab/exercises/ch03.py): the right answer passes, each typical wrong answer fails with
its specific hint, a stub is "not attempted yet", and `use` falls back on the package's version only for a stub.
The solutions here are written out by hand."""
import math

import pytest
import torch
from exercise_suite import chapter_suite

from dpm_lab.exercises import ch03


def score_from_energy(energy, x, *, scale=-1.0, mean=False):
    y = x.detach().requires_grad_(True)
    e = energy(y)
    return scale * torch.autograd.grad(e.mean() if mean else e.sum(), y)[0]


def langevin_step(score, x, eta, z, *, noise=None, sign=1):
    return x + sign * eta * score(x) + (math.sqrt(2 * eta) if noise is None else noise(eta)) * z


def annealed(score, x, sigmas, K, delta, noise, *, norm=0, up=False, two=2, scale=True):
    levels = range(len(sigmas)) if up else range(len(sigmas) - 1, -1, -1)
    for i, l in enumerate(levels):
        s = float(sigmas[l])
        eta = delta * s ** 2 / float(sigmas[norm]) ** 2 if scale else delta
        for k in range(K):
            x = x + eta * score(x, s) + math.sqrt(two * eta) * noise[i, k]
    return x


SOLUTIONS = {
    "score_from_energy": score_from_energy,
    "langevin_step": langevin_step,
    "ula_variance": lambda eta, s2: s2 / (1 - eta / (2 * s2)),
    "tweedie_denoiser": lambda s, x, alpha, sigma: (x + sigma ** 2 * s(x)) / alpha,
    "sm_constant": lambda S: 0.5 * torch.linalg.inv(S).trace(),
    "mode_weight_prediction": 0.5,
    "annealed_langevin": annealed,
    "ncsn_loss": lambda s, x0, sig, eps: 0.5 * ((sig[:, None] * s(x0 + sig[:, None] * eps, sig) + eps) ** 2).sum(1),
}


def ncsn(s, x0, sig, eps, *, w=2, sign=1, at_clean=False, target=None, reduce="sum"):
    x = x0 if at_clean else x0 + sig[:, None] * eps
    tgt = eps / sig[:, None] if target is None else target(eps, sig[:, None])
    r = (s(x, sig) + sign * tgt) ** 2
    return 0.5 * sig ** w * (r.sum(1) if reduce == "sum" else r.mean(1))

WRONG = [
    ("score_from_energy", lambda e, x: score_from_energy(e, x, scale=1.0), ["Sign"]),
    ("score_from_energy", lambda e, x: score_from_energy(e, x, mean=True), ["batch MEAN"]),
    ("score_from_energy", lambda e, x: e(x), ["shape (5, 3)"]),
    ("langevin_step", lambda s, x, eta, z: langevin_step(s, x, eta, z, noise=math.sqrt), ["not sqrt(eta) z"]),
    ("langevin_step", lambda s, x, eta, z: langevin_step(s, x, eta, z, sign=-1), ["Sign"]),
    ("langevin_step", lambda s, x, eta, z: langevin_step(s, x, eta, z, noise=lambda e: 2 * e), ["square root"]),
    ("langevin_step", lambda s, x, eta, z: x + eta * s(x), ["gradient ascent"]),
    ("ula_variance", lambda eta, s2: s2, ["limit eta -> 0"]),
    ("ula_variance", lambda eta, s2: s2 * (1 + eta / (2 * s2)), ["first-order expansion"]),
    ("ula_variance", lambda eta, s2: 2 * eta / (1 - (1 - eta / s2)), ["Square the contraction"]),
    ("tweedie_denoiser", lambda s, x, a, sigma: (x + sigma * s(x)) / a, ["VARIANCE"]),
    ("tweedie_denoiser", lambda s, x, a, sigma: (x - sigma ** 2 * s(x)) / a, ["Sign"]),
    ("tweedie_denoiser", lambda s, x, a, sigma: sigma ** 2 * s(x) / a, ["correction only"]),
    ("tweedie_denoiser", lambda s, x, a, sigma: x + sigma ** 2 * s(x), ["alpha = 1 formula", "at alpha = 0.8"]),
    ("tweedie_denoiser", lambda s, x, a, sigma: x / a + sigma ** 2 * s(x), ["enters once"]),
    ("tweedie_denoiser", lambda s, x, a, sigma: (x + sigma ** 2 * s(x)) / a ** 2, ["enters once"]),
    ("langevin_step", lambda s, x, eta, z: x + eta / 2 * s(x) + math.sqrt(eta) * z, ["NCSN paper's convention"]),
    ("langevin_step", lambda s, x, eta, z: x + eta * s(x) + math.sqrt(2 * eta) * torch.randn(x.shape, dtype=x.dtype),
     ["use the draw z you are given"]),
    ("annealed_langevin", lambda s, x, sig, K, d, n: annealed(s, x, sig, K, d / 2, n), ["NCSN paper's own step"]),
    ("mode_weight_prediction", 0.6, ["between one half and the target"]),
    ("ncsn_loss", lambda s, x0, sig, eps: ncsn(s, x0, sig, eps, w=0), ["lambda(sigma) = sigma^2 is missing"]),
    ("ncsn_loss", lambda s, x0, sig, eps: ncsn(s, x0, sig, eps, w=1), ["the square"]),
    ("ncsn_loss", lambda s, x0, sig, eps: ncsn(s, x0, sig, eps, sign=-1), ["Sign"]),
    ("ncsn_loss", lambda s, x0, sig, eps: ncsn(s, x0, sig, eps, target=lambda e, sg: e * sg), ["divides by sigma"]),
    ("ncsn_loss", lambda s, x0, sig, eps: ncsn(s, x0, sig, eps, at_clean=True), ["NOISY point"]),
    ("ncsn_loss", lambda s, x0, sig, eps: ncsn(s, x0, sig, eps, reduce="mean"), ["SUMS"]),
    ("ncsn_loss", lambda s, x0, sig, eps: ncsn(s, x0, sig, eps)[:, None].expand(5, 3), ["shape (5,)"]),
    ("sm_constant", lambda S: 0.5 * S.trace(), ["not S"]),
    ("sm_constant", lambda S: torch.linalg.inv(S).trace(), ["factor 1/2"]),
    ("sm_constant", lambda S: 0.5 * S.shape[0], ["S = I only"]),
    ("mode_weight_prediction", 0.8, ["the target weight", "recorded 0.8"]),
    ("mode_weight_prediction", 1.0, ["does not pull harder"]),
    ("mode_weight_prediction", 0.2, ["recorded 0.2", "follow the starting points"]),
    ("annealed_langevin", lambda *a: annealed(*a, norm=-1), ["still the buggy line", "NCSN paper"]),
    ("annealed_langevin", lambda *a: annealed(*a, up=True), ["wrong way"]),
    ("annealed_langevin", lambda *a: annealed(*a, two=1), ["sqrt(2 eta) z"]),
    ("annealed_langevin", lambda *a: annealed(*a, scale=False), ["same step delta"]),
]

globals().update(chapter_suite("03", SOLUTIONS, WRONG))


def test_use_falls_back_only_for_a_stub(capsys):
    x = torch.ones(2, 2, dtype=torch.float64)
    step = ch03.use("tweedie_denoiser", lambda s, x, alpha, sigma: None)
    torch.testing.assert_close(step(lambda y: -y, x, 0.5, 0.5), (x - 0.25 * x) / 0.5)
    assert "not attempted yet" in capsys.readouterr().out
    wrong = ch03.use("tweedie_denoiser", lambda s, x, alpha, sigma: x)
    torch.testing.assert_close(wrong(lambda y: -y, x, 1.0, 0.5), x)
    with pytest.raises(ValueError, match="no package version"):
        ch03.use("mode_weight_prediction", None)


def test_mode_weight_prediction_rejects_a_non_fraction(capsys):
    assert ch03.check_mode_weight_prediction(1.5) is False
    assert "between 0 and 1" in capsys.readouterr().out
