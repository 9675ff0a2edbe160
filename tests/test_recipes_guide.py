"""Chapter 08 recipes: the trained noise-aware classifier against the exact p(c | x_t), and the grid laws
used to compare guided samplers with the tilted density."""
import pytest
import torch

import dpm_lab as dl
from dpm_lab.recipes import guide


@pytest.fixture(scope="module")
def clf():
    return dl.zoo.load("guide_clf2d")


@pytest.mark.parametrize("t", [0.05, 0.3, 0.6, 0.9])
def test_trained_classifier_is_close_to_the_exact_posterior(clf, t):
    mix, sched = guide.mixture(), dl.VPLinear()
    g = torch.Generator().manual_seed(5)
    x0, c = mix.sample(4000, generator=g, dtype=torch.float64, return_labels=True)
    x = sched.alpha(t) * x0 + sched.sigma(t) * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    exact = mix.class_posterior(x, t, sched)
    with torch.no_grad():
        learned = torch.softmax(clf(x.float(), torch.full((4000,), t)), -1).double()
    ce_exact = float(-torch.log(exact.gather(1, c[:, None])).mean())
    ce_learned = float(-torch.log(learned.gather(1, c[:, None])).mean())
    assert ce_learned - ce_exact < 0.03                      # within 0.03 nats of the Bayes risk
    assert float((learned - exact).abs().mean()) < 0.03


def test_grid_laws():
    mix = guide.mixture()
    law = guide.tilted_law(mix, 0, 3.0)
    assert abs(float(law.probs.sum()) - 1) < 1e-12
    torch.testing.assert_close(guide.tilted_law(mix, 1, 1.0).probs, guide.conditional_law(mix, 1).probs)
    # omega = 0 is the unconditional density: its draws sit at that law's floor
    g0 = torch.Generator().manual_seed(1)
    law0 = guide.tilted_law(mix, 0, 0.0)
    m0, s0 = law0.floor(4000, generator=g0)
    assert abs(law0.tv(mix.sample(4000, generator=g0)) - m0) < 5 * s0
    # draws from the law sit at the floor; draws from p(x | c) are far from the omega = 3 law
    g = torch.Generator().manual_seed(0)
    mean, std = law.floor(4000, generator=g)
    assert abs(law.tv(law.sample(4000, generator=g)) - mean) < 5 * std
    assert law.tv(mix.sample(4000, generator=g, c=0)) > mean + 5 * std
    assert guide.conditional_law(mix, 0).tv(mix.sample(4000, generator=g, c=0)) < mean + 5 * std
    assert abs(guide.spread(torch.randn(100000, 2, generator=g) * 2) - 2) < 0.02
