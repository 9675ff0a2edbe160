"""dpm_lab.ot: the exact assignment against POT's ot.emd (an independent LP solver) and brute force."""
import itertools

import numpy as np
import ot as pot
import pytest
import torch

import dpm_lab as dl


def _clouds(n, seed=0, d=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64) + 1


@pytest.mark.parametrize("n, d", [(30, 2), (64, 3)])
def test_cost_matches_pot_emd(n, d):
    x, y = _clouds(n, d=d)
    perm = dl.ot.ot_permutation(x, y)
    assert sorted(perm.tolist()) == list(range(n))                      # a permutation
    M = pot.dist(x.numpy(), y.numpy())                                   # squared Euclidean
    w = np.full(n, 1 / n)
    plan = pot.emd(w, w, M)
    assert abs(dl.ot.transport_cost(x, y[perm]) - float((plan * M).sum())) < 1e-10
    # the LP optimum is a permutation matrix here (Birkhoff), the same one
    assert np.allclose(plan * n, np.eye(n)[perm.numpy()], atol=1e-8) or abs(
        dl.ot.transport_cost(x, y[perm]) - float((plan * M).sum())) < 1e-12


def test_brute_force_on_six_points():
    x, y = _clouds(6, seed=3)
    best = min(dl.ot.transport_cost(x, y[list(p)]) for p in itertools.permutations(range(6)))
    assert abs(dl.ot.transport_cost(*dl.ot.ot_coupling(x, y)) - best) < 1e-12


def test_ot_paths_do_not_cross_and_independent_ones_do():
    x, y = _clouds(200, seed=4)
    xo, yo = dl.ot.ot_coupling(x, y)
    assert dl.reflow.crossings(xo, yo) == 0.0                            # cyclical monotonicity
    assert dl.reflow.crossings(x, y) > 0.3                               # independent: about half


def test_equals_metrics_w2():
    x, y = _clouds(50, seed=5)
    assert abs(dl.ot.transport_cost(*dl.ot.ot_coupling(x, y)) ** 0.5 - dl.metrics.w2_exact(x, y)) < 1e-10


def test_bad_input_raises():
    x, y = _clouds(5)
    with pytest.raises(ValueError, match="same shape"):
        dl.ot.ot_permutation(x, y[:4])
    with pytest.raises(ValueError, match="finite"):
        dl.ot.ot_permutation(x, y * float("nan"))
    with pytest.raises(TypeError, match="x"):
        dl.ot.transport_cost([[0.0]], y)
