"""Chapter 11's checks (dpm_lab/exercises/ch11.py): the right answer passes, each typical wrong answer fails with
its specific hint, a stub is "not attempted yet", and `use` falls back on the package's version only for a stub.
Course convention: t = 0 data, x_t = (1 - t) x0 + t eps; the solutions here are written out by hand."""
import math

import pytest
import torch
from exercise_suite import chapter_suite

from dpm_lab.exercises import ch11


def ct_target(x_s, eps, s, sp, *, kind="right"):
    S, SP = s[:, None], sp[:, None]
    x0 = (x_s - S * eps) / (1 - S)
    if kind == "noscale":
        x0 = x_s - S * eps
    if kind == "swap":
        return SP * x0 + (1 - SP) * eps
    if kind == "ve":
        return x0 + SP * eps
    if kind == "nonoise":
        return (1 - SP) * x0
    if kind == "oldlevel":
        return (1 - SP) * x0 + S * eps
    if kind == "nomove":
        return x_s
    if kind == "x0only":
        return x0
    if kind == "precedence":
        return (1 - SP) * (x_s - S * eps / (1 - S)) + SP * eps
    if kind == "nobroadcast":
        return (1 - sp) * ((x_s - s * eps) / (1 - s)) + sp * eps
    return (1 - SP) * x0 + SP * eps


def cm_coeffs(s, sd, *, kind="right"):
    a, sg = 1 - s, s
    if kind == "edm_x_over_alpha":
        r = sg / a
        return sd ** 2 / (r ** 2 + sd ** 2), sd * r / (r ** 2 + sd ** 2).sqrt()
    if kind == "s_as_sigma":
        return sd ** 2 / (s ** 2 + sd ** 2), sd * s / (s ** 2 + sd ** 2).sqrt()
    den = sg ** 2 + sd ** 2 * a ** 2
    cs, co = sd ** 2 * a / den, sd * sg / den.sqrt()
    return (co, cs) if kind == "swapped" else (cs, co)


def gamma_step(G, x, s, t, gamma, z, *, kind="right"):
    k = math.sqrt(1 - gamma ** 2)
    tt = k * t / (1 - t + k * t)
    if kind == "ve":
        return G(x, s, k * t) + gamma * t * z
    if kind == "noscale":
        return G(x, s, tt) + gamma * t * z
    if kind == "unitnoise":
        return (1 - t) / (1 - tt) * G(x, s, tt) + gamma * z
    if kind == "ve_scaled":
        return (1 - t) / (1 - k * t) * G(x, s, k * t) + gamma * t * z
    if kind == "tilde_noise":
        return (1 - t) / (1 - tt) * G(x, s, tt) + gamma * tt * z
    if kind == "keptnoise":
        return (1 - t) / (1 - tt) * G(x, s, tt) + k * t * z
    return (1 - t) / (1 - tt) * G(x, s, tt) + gamma * t * z


SOLUTIONS = {
    "ct_target": ct_target,
    "cm_coeffs": cm_coeffs,
    "gamma_sampling_step": gamma_step,
    "multistep_cm": "b",
    "meanflow_identity": lambda v, dh, s, t: v - (s - t) * dh,
    "ctm_from_meanflow": lambda x, h, s, t: x - s * h,
    "meanflow_one_step": lambda h, x, T: x - T * h(x, T, 0.0),
}

WRONG = [
    ("ct_target", lambda *a: ct_target(*a, kind="swap"), ["swapped"]),
    ("ct_target", lambda *a: ct_target(*a, kind="ve"), ["VE/EDM path"]),
    ("ct_target", lambda *a: ct_target(*a, kind="nonoise"), ["noise term is missing"]),
    ("ct_target", lambda *a: ct_target(*a, kind="noscale"), ["alpha_s = 1 - s"]),
    ("ct_target", lambda *a: ct_target(*a, kind="oldlevel"), ["old level s"]),
    ("ct_target", lambda *a: ct_target(*a, kind="nomove"), ["unchanged"]),
    ("ct_target", lambda *a: ct_target(*a).sum(0), ["shape"]),
    ("ct_target", lambda *a: ct_target(*a, kind="x0only"), ["clean estimate itself"]),
    ("ct_target", lambda *a: ct_target(*a, kind="precedence"), ["precedence slip"]),
    ("ct_target", lambda *a: ct_target(*a, kind="nobroadcast"), ["s[:, None]"]),
    ("cm_coeffs", lambda *a: cm_coeffs(*a, kind="edm_x_over_alpha"), ["divide c_skip by alpha_s"]),
    ("cm_coeffs", lambda *a: cm_coeffs(*a, kind="s_as_sigma"), ["r = s / (1 - s)"]),
    ("cm_coeffs", lambda *a: cm_coeffs(*a, kind="swapped"), ["c_skip(0) = 1"]),
    ("cm_coeffs", lambda s, sd: cm_coeffs(s, sd)[0], ["pair"]),
    ("gamma_sampling_step", lambda *a: gamma_step(*a, kind="ve"), ["VE form"]),
    ("gamma_sampling_step", lambda *a: gamma_step(*a, kind="noscale"), ["alpha_t / alpha_t~"]),
    ("gamma_sampling_step", lambda *a: gamma_step(*a, kind="unitnoise"), ["gamma sigma_t z"]),
    ("gamma_sampling_step", lambda *a: gamma_step(*a, kind="keptnoise"), ["sqrt(1 - gamma^2) t"]),
    ("gamma_sampling_step", lambda *a: gamma_step(*a, kind="ve_scaled"), ["ratio t~/(1 - t~)"]),
    ("gamma_sampling_step", lambda *a: gamma_step(*a, kind="tilde_noise"), ["intermediate time t~"]),
    ("cm_coeffs", lambda s, sd: (cm_coeffs(s, sd)[0], cm_coeffs(s, sd)[1] * (1 - s)), ["factor alpha_s"]),
    ("cm_coeffs", lambda s, sd: (cm_coeffs(s, sd)[0], sd * s / (s ** 2 + sd ** 2 * (1 - s) ** 2)), ["square root"]),
    ("multistep_cm", "a", ["recorded 'a'"]),
    ("multistep_cm", "c", ["one of the letters"]),
    ("multistep_cm", 8, ["one of the letters"]),
    ("meanflow_identity", lambda v, dh, s, t: v + (s - t) * dh, ["flipped"]),
    ("meanflow_identity", lambda v, dh, s, t: v - dh, ["interval length"]),
    ("meanflow_identity", lambda v, dh, s, t: v, ["only at t = s"]),
    ("meanflow_identity", lambda v, dh, s, t: -(s - t) * dh, ["v is missing"]),
    ("ctm_from_meanflow", lambda x, h, s, t: x + s * h, ["sign is flipped"]),
    ("ctm_from_meanflow", lambda x, h, s, t: x - (s - t) * h, ["carries s, not s - t"]),
    ("ctm_from_meanflow", lambda x, h, s, t: x - h, ["factor s is missing"]),
    ("meanflow_one_step", lambda h, x, T: x + T * h(x, T, 0.0), ["§11.5.2", "x_T - T h"]),
    ("meanflow_one_step", lambda h, x, T: x - T * h(x, 0.0, T), ["times are swapped"]),
    ("meanflow_one_step", lambda h, x, T: x - h(x, T, 0.0), ["interval length T"]),
]

globals().update(chapter_suite("11", SOLUTIONS, WRONG))


def test_use_falls_back_only_for_a_stub(capsys):
    f = ch11.use("gamma_sampling_step", lambda *a: None)
    x, z = torch.ones(3, 2), torch.zeros(3, 2)
    out = f(ch11._demo_map, x, 0.9, 0.5, 0.0, z)
    assert "not attempted yet" in capsys.readouterr().out
    assert torch.allclose(out, ch11._demo_map(x, 0.9, 0.5))
    with pytest.raises(ValueError, match="no package version"):
        ch11.use("nope", None)
