"""Guidance wrappers against exact mixture fields (§8.2, §8.3); the image recipes are tested in test_recipes.py."""
import pytest
import torch

import dpm_lab as dl
from dpm_lab import guidance


class ExactConditional(dl.Model):
    """Exact class-conditional fields of a labelled mixture; label K (= n_classes) means no condition."""

    def __init__(self, mix, schedule):
        self.mix, self.schedule, self.kind = mix, schedule, "eps"

    def predict(self, x_t, t, kind="eps", c=None):
        out = self.mix.predict(x_t, t, self.schedule, kind)
        c = torch.as_tensor(c).expand(x_t.shape[0])
        cond = c < self.mix.n_classes
        if cond.any():
            tt = t[cond] if torch.as_tensor(t).dim() else t
            out[cond] = self.mix.predict(x_t[cond], tt, self.schedule, kind, c=c[cond])
        return out


@pytest.mark.parametrize("kind", ["eps", "x0", "v", "score", "velocity"])
def test_cfg_combines_scores(mixture2d, kind, gen):
    sched = dl.Cosine()
    model = ExactConditional(mixture2d, sched)
    x = mixture2d.sample_marginal(10, 0.4, sched, generator=gen, dtype=torch.float64)
    c = torch.tensor([0, 1] * 5)
    s_c = mixture2d.score(x, 0.4, sched, c=c)
    s_u = mixture2d.score(x, 0.4, sched)
    for omega in (0.0, 1.0, 2.5):
        cfg = guidance.CFG(model, omega, null_label=2)
        expect = dl.convert(sched, x, 0.4, omega * s_c + (1 - omega) * s_u, "score", kind)
        torch.testing.assert_close(cfg.predict(x, 0.4, kind, c=c), expect, rtol=1e-9, atol=1e-9)


def test_cfg_interval_guides_only_inside(mixture2d, gen):
    # guidance limited to lambda_t in the interval: omega inside, plain conditional (omega = 1) outside
    sched = dl.VPLinear()
    model = ExactConditional(mixture2d, sched)
    x = mixture2d.sample_marginal(6, 0.5, sched, generator=gen, dtype=torch.float64)
    c = torch.tensor([0, 1] * 3)
    cfg = guidance.CFG(model, 3.0, null_label=2, lam_interval=(-1.0, 1.0))
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
        guidance.CFG(model, 2.0, null_label=2, lam_interval=(1.0, -1.0))


def test_classifier_guidance_with_exact_classifier(mixture2d, gen):
    # omega = 1 with the exact p(c | x_t) gives the exact conditional score (Bayes, §8.1)
    sched = dl.VPLinear()
    t = 0.3

    def classifier(x, tt):
        return torch.log(mixture2d.class_posterior(x, tt, sched))

    cg = guidance.ClassifierGuidance(mixture2d.model(sched), classifier, omega=1.0)
    x = mixture2d.sample_marginal(8, t, sched, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(cg.predict(x, t, "score", c=1), mixture2d.score(x, t, sched, c=1))
    with pytest.raises(ValueError, match="needs a class label"):
        cg.predict(x, t, "score")
