"""Metrics: exact W2 closed forms, floors, and that a far-off sample is far above the floor."""
import math

import pytest
import torch

import dpm_lab as dl
from dpm_lab import metrics

MIX = dl.datasets.eight_gaussians_mixture()


def _target(n, generator=None):
    return MIX.sample(n, generator=generator)


def test_w2_exact_closed_forms(gen):
    x = torch.randn(300, 2, generator=gen, dtype=torch.float64)
    assert metrics.w2_exact(x, x) == 0.0
    assert metrics.w2_exact(x, x[torch.randperm(300, generator=gen)]) == pytest.approx(0.0, abs=1e-12)
    shift = torch.tensor([0.3, -1.2], dtype=torch.float64)
    # for a translated copy the identity coupling is optimal: W2 = ||shift|| exactly
    assert metrics.w2_exact(x, x + shift) == pytest.approx(shift.norm().item(), rel=1e-10)
    with pytest.raises(ValueError, match="equal-size"):
        metrics.w2_exact(x, x[:10])


@pytest.mark.parametrize("metric", [metrics.w2_exact, metrics.sliced_wasserstein, metrics.mmd,
                                    metrics.energy_distance], ids=lambda m: m.__name__)
def test_floor_positive_and_far_sample_far_above(metric):
    g = torch.Generator().manual_seed(0)
    fl = metrics.floor(metric, _target, 500, generator=g)
    assert fl > 0
    far = _target(500, generator=g) * 0.5 + 3.0                     # shrunk and shifted
    assert metric(far, _target(500, generator=g)) > 5 * fl


def test_sliced_wasserstein_unequal_sizes_and_shift(gen):
    x = torch.randn(400, 2, generator=gen)
    sw = metrics.sliced_wasserstein(x, x + torch.tensor([1.0, 0.0]), n_proj=2000, generator=gen)
    # projections of a shift b onto random unit u: sqrt(E (u.b)^2) = |b| / sqrt(2) in 2D
    assert sw == pytest.approx(2 ** -0.5, rel=0.05)
    assert metrics.sliced_wasserstein(x, x[:300], generator=gen) < 0.2


def test_mmd_bandwidth_rule_and_energy_zero(gen):
    x = torch.randn(200, 2, generator=gen)
    assert metrics.median_bandwidth(x, x) > 0
    assert metrics.energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    assert metrics.mmd(x, x + 3.0) > 0.5


def test_nll_and_mode_coverage(gen):
    x = _target(4000, generator=gen)
    assert metrics.nll(x, MIX) == pytest.approx(-MIX.log_prob(x.double()).mean().item(), rel=1e-6)
    assert metrics.nll(x * 0.5, MIX) > metrics.nll(x, MIX) + 1
    cov = metrics.mode_coverage(x, MIX)
    assert cov["hit"] == 1.0 and cov["tv"] < 0.05
    one = MIX.conditional(2).sample(500, generator=gen)
    cov1 = metrics.mode_coverage(one, MIX, by="posterior")
    assert cov1["hit"] == pytest.approx(1 / 8) and cov1["weights"][2] == pytest.approx(1.0)


def test_sliced_wasserstein_directions_are_the_generators_draws(gen):
    # the same seed gives the same value; u are standard normal draws (utils.randn) normalised per direction
    x = torch.randn(50, 3, generator=gen)
    y = torch.randn(60, 3, generator=gen) + 0.5
    a = metrics.sliced_wasserstein(x, y, n_proj=16, generator=torch.Generator().manual_seed(2))
    b = metrics.sliced_wasserstein(x, y, n_proj=16, generator=torch.Generator().manual_seed(2))
    assert a == b
    u = torch.randn(3, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64, device="cpu")
    u = u / u.norm(dim=0, keepdim=True)
    px, py = (x.double() @ u).sort(0).values, (y.double() @ u).sort(0).values
    q = torch.linspace(0, 1, 60, dtype=torch.float64, device="cpu")
    by_hand = float(((torch.quantile(px, q, dim=0) - torch.quantile(py, q, dim=0)) ** 2).mean() ** 0.5)
    assert a == pytest.approx(by_hand, rel=1e-12)


def test_mode_coverage_bad_method():
    with pytest.raises(ValueError, match="unknown by 'nearst'"):
        metrics.mode_coverage(torch.zeros(3, 2), MIX, by="nearst")


def test_floor_spread_and_return_std_agree_with_the_pairs():
    fl = metrics.floor_spread(metrics.w2_exact, _target, 200, repeats=4, generator=torch.Generator().manual_seed(5))
    # the same pairs drawn by hand from the same generator
    g = torch.Generator().manual_seed(5)
    vals = [metrics.w2_exact(_target(200, generator=g), _target(200, generator=g)) for _ in range(4)]
    assert fl.values == pytest.approx(vals, rel=1e-12)
    assert fl.mean == pytest.approx(sum(vals) / 4, rel=1e-12)
    assert fl.std == pytest.approx(torch.tensor(vals, dtype=torch.float64).std().item(), rel=1e-9)      # ddof = 1
    m, s = metrics.floor(metrics.w2_exact, _target, 200, repeats=4, generator=torch.Generator().manual_seed(5),
                         return_std=True)
    assert (m, s) == pytest.approx((fl.mean, fl.std), rel=1e-12)
    # the old one-number call still gives the mean of the first three pairs
    assert metrics.floor(metrics.w2_exact, _target, 200, generator=torch.Generator().manual_seed(5)) == \
        pytest.approx(sum(vals[:3]) / 3, rel=1e-12)
    assert fl.std > 0 and fl.low <= fl.mean <= fl.high


def test_over_seeds_per_seed_values_and_beyond():
    shifted = lambda n, generator=None: _target(n, generator=generator) + torch.tensor([1.0, 0.0])  # noqa: E731
    sp = metrics.over_seeds(metrics.w2_exact, shifted, _target, 150, seeds=[3, 7, 11])
    for s, v in zip([3, 7, 11], sp.values):
        g = torch.Generator().manual_seed(s)
        assert v == pytest.approx(metrics.w2_exact(shifted(150, generator=g), _target(150, generator=g)), rel=1e-12)
    fl = metrics.floor_spread(metrics.w2_exact, _target, 150, repeats=3, generator=torch.Generator().manual_seed(0))
    assert sp.beyond(fl)                                                   # a unit shift is seen
    same = metrics.over_seeds(metrics.w2_exact, _target, _target, 150, seeds=range(3))
    assert not same.beyond(fl)                                            # the target against itself is not
    assert "3 draws" in str(sp)


def test_spread_bad_arguments():
    with pytest.raises(ValueError, match="repeats must be an int >= 2"):
        metrics.floor_spread(metrics.w2_exact, _target, 50, repeats=1)
    with pytest.raises(ValueError, match="seeds must hold at least one seed"):
        metrics.over_seeds(metrics.w2_exact, _target, _target, 50, seeds=[])
    with pytest.raises(ValueError, match="n must be an int >= 2"):
        metrics.over_seeds(metrics.w2_exact, _target, _target, 1)
    with pytest.raises(ValueError, match="repeats must be an int >= 1"):
        metrics.floor(metrics.w2_exact, _target, 50, repeats=0)
    assert metrics.Spread.of([2.0]).std == 0.0


def test_off_mode_fraction_matches_the_chi2_tail_and_sees_between_mode_points():
    g = torch.Generator().manual_seed(9)
    ring = dl.datasets.ring_mixture(8, 1.1, 0.11)
    x = ring.sample(100_000, generator=g)
    # separated isotropic 2-D modes: P(r > 3 sigma) = exp(-9/2) = 0.0111; 5 standard errors of the count
    assert metrics.off_mode_fraction(x, ring) == pytest.approx(math.exp(-4.5), abs=5 * (0.0111 / 1e5) ** 0.5)
    mid = torch.tensor([[1.1 * math.cos(math.pi / 8), 1.1 * math.sin(math.pi / 8)]])   # halfway between two modes
    assert metrics.off_mode_fraction(torch.cat([x[:900], mid.repeat(100, 1)]), ring) > 0.09
    assert metrics.off_mode_fraction(ring.means, ring) == 0.0
    with pytest.raises(ValueError, match="k must be a positive"):
        metrics.off_mode_fraction(x[:5], ring, k=0)
