"""Guidance wrappers on the EXACT class-conditional mixture (§8.1-§8.3): the guided fields have closed
forms there, so CFG and classifier guidance are held to them rather than to a trained network."""
import pytest
import torch

import dpm_lab as dl
from dpm_lab import guidance

NULL = 2                                   # mixture2d has classes 0 and 1; label 2 = no condition


def exact(mix, x, t, sched, kind, c=None):
    """The mixture's own closed-form field (conditional on c, or the full mixture)."""
    return mix.predict(x, t, sched, kind, c)


@pytest.mark.parametrize("sched", [dl.VPLinear(), dl.Cosine(), dl.EDM(10.0), dl.RectifiedFlow()],
                         ids=lambda s: s.name)
@pytest.mark.parametrize("kind", dl.KINDS)
def test_cfg_on_the_exact_mixture_is_the_closed_form_guided_field(mixture2d, sched, kind, gen):
    # omega * field(c) + (1 - omega) * field(all), in any kind (each is affine in the score)
    t = 0.4
    x = mixture2d.sample_marginal(10, t, sched, generator=gen, dtype=torch.float64)
    c = torch.tensor([0, 1] * 5)
    model = mixture2d.model(sched)
    cond = exact(mixture2d, x, t, sched, kind, c)
    uncond = exact(mixture2d, x, t, sched, kind)
    for omega in (0.0, 1.0, 2.5):
        cfg = guidance.CFG(model, omega, null_label=NULL)
        torch.testing.assert_close(cfg.predict(x, t, kind, c=c), omega * cond + (1 - omega) * uncond,
                                   rtol=1e-9, atol=1e-9, msg=f"omega={omega}")


def test_cfg_guides_eps_and_score_alike(mixture2d, gen):
    # the guided eps is -sigma_t times the guided score: the same combination in either kind (§8.3)
    sched = dl.VPLinear()
    t = 0.55
    x = mixture2d.sample_marginal(8, t, sched, generator=gen, dtype=torch.float64)
    cfg = guidance.CFG(mixture2d.model(sched), 3.0, null_label=NULL, c=1)
    s_g = 3.0 * mixture2d.score(x, t, sched, c=1) - 2.0 * mixture2d.score(x, t, sched)
    torch.testing.assert_close(cfg.predict(x, t, "score"), s_g, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(cfg.predict(x, t, "eps"), -sched.sigma(t) * s_g, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(cfg(x, t), cfg.predict(x, t, "eps"))          # raw is the model's kind (eps)


def test_cfg_per_sample_times_and_labels(mixture2d, gen):
    sched = dl.Cosine()
    x = mixture2d.sample_marginal(6, 0.3, sched, generator=gen, dtype=torch.float64)
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9, 0.3], dtype=torch.float64)
    c = torch.tensor([0, 1, 1, 0, 1, 0])
    got = guidance.CFG(mixture2d.model(sched), 2.0, null_label=NULL).predict(x, t, "x0", c=c)
    for b in range(6):
        tb, cb = float(t[b]), int(c[b])
        expect = 2.0 * mixture2d.x0(x[b:b + 1], tb, sched, c=cb) - mixture2d.x0(x[b:b + 1], tb, sched)
        torch.testing.assert_close(got[b:b + 1], expect, rtol=1e-9, atol=1e-9)


def test_cfg_interval_guides_only_inside(mixture2d, gen):
    # guidance limited to lambda_t in the interval: omega inside, plain conditional (omega = 1) outside
    sched = dl.VPLinear()
    model = mixture2d.model(sched)
    x = mixture2d.sample_marginal(6, 0.5, sched, generator=gen, dtype=torch.float64)
    c = torch.tensor([0, 1] * 3)
    cfg = guidance.CFG(model, 3.0, null_label=NULL, lam_interval=(-1.0, 1.0))
    for t in (0.05, 0.3, 0.5, 0.9):                       # VP lambda = 1.75, -0.21, -1.23, -4.07: only 0.3 inside
        inside = -1.0 <= float(sched.lam(t)) <= 1.0
        s_c, s_u = mixture2d.score(x, t, sched, c=c), mixture2d.score(x, t, sched)
        expect = 3.0 * s_c - 2.0 * s_u if inside else s_c
        torch.testing.assert_close(cfg.predict(x, t, "score", c=c), expect, rtol=1e-9, atol=1e-9)
    per_sample = torch.tensor([0.05, 0.3, 0.5, 0.9, 0.3, 0.5], dtype=torch.float64)
    got = cfg.predict(x, per_sample, "score", c=c)
    for b in range(6):
        torch.testing.assert_close(got[b:b + 1], cfg.predict(x[b:b + 1], float(per_sample[b]), "score", c=c[b:b + 1]))
    with pytest.raises(ValueError, match="lam_interval"):
        guidance.CFG(model, 2.0, null_label=NULL, lam_interval=(1.0, -1.0))


def exact_classifier(mix, sched):
    """log p(c | x_t) of the mixture itself: the Bayes-optimal noise-aware classifier."""
    return lambda x, t: torch.log(mix.class_posterior(x, t, sched))


@pytest.mark.parametrize("sched", [dl.VPLinear(), dl.RectifiedFlow()], ids=lambda s: s.name)
def test_classifier_guidance_with_the_exact_posterior(mixture2d, sched, gen):
    # Bayes (§8.1): score(x | c) = score(x) + grad log p(c | x); omega = 1 gives the exact conditional score,
    # and in general score + omega (score(c) - score), converted to any kind
    t = 0.3
    x = mixture2d.sample_marginal(8, t, sched, generator=gen, dtype=torch.float64)
    s_u = mixture2d.score(x, t, sched)
    for c in (0, 1, torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])):
        s_c = mixture2d.score(x, t, sched, c=c)
        cg = guidance.ClassifierGuidance(mixture2d.model(sched), exact_classifier(mixture2d, sched), omega=1.0)
        torch.testing.assert_close(cg.predict(x, t, "score", c=c), s_c, rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(cg.predict(x, t, "eps", c=c), mixture2d.eps(x, t, sched, c=c), rtol=1e-8, atol=1e-8)
        strong = guidance.ClassifierGuidance(mixture2d.model(sched), exact_classifier(mixture2d, sched), 4.0, c=c)
        torch.testing.assert_close(strong.predict(x, t, "score"), s_u + 4.0 * (s_c - s_u), rtol=1e-8, atol=1e-8)


def test_classifier_guidance_at_omega_one_equals_cfg_at_omega_one(mixture2d, gen):
    sched = dl.Cosine()
    t = 0.45
    x = mixture2d.sample_marginal(6, t, sched, generator=gen, dtype=torch.float64)
    cg = guidance.ClassifierGuidance(mixture2d.model(sched), exact_classifier(mixture2d, sched), 1.0, c=0)
    cfg = guidance.CFG(mixture2d.model(sched), 1.0, null_label=NULL, c=0)
    for kind in dl.KINDS:
        torch.testing.assert_close(cg.predict(x, t, kind), cfg.predict(x, t, kind), rtol=1e-8, atol=1e-8)


def test_guidance_needs_labels(mixture2d):
    sched = dl.VPLinear()
    x = torch.zeros(4, 2, dtype=torch.float64)
    cg = guidance.ClassifierGuidance(mixture2d.model(sched), exact_classifier(mixture2d, sched), omega=1.0)
    with pytest.raises(ValueError, match="needs a class label"):
        cg.predict(x, 0.3, "score")
    cfg = guidance.CFG(mixture2d.model(sched), 2.0, null_label=NULL)
    with pytest.raises(ValueError, match="needs a class label"):
        cfg.predict(x, 0.3)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        cfg.predict(x, 0.3, c=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unknown prediction kind"):
        cfg.predict(x, 0.3, "noise", c=0)
