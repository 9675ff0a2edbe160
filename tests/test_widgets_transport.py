"""Chapter 07 explorers: the drawn data are the exact values (Sinkhorn's plan and cost, the exact OT cost, the
PF-ODE images from gmm.flow and the Hungarian pairing), every control changes the picture, bad selections show a
message."""
import numpy as np
import pytest
import torch

import dpm_lab as dl
from dpm_lab.widgets import transport as wt


@pytest.fixture(scope="module")
def sk():
    return dl.widgets.SinkhornExplorer()


@pytest.fixture(scope="module")
def pf():
    mix = {"crossed": wt.pf_mixtures()["two thin crossed Gaussians"]}
    return dl.widgets.PFODEMapExplorer(mix, n_max=40, n_times=5)


def test_sinkhorn_explorer_draws_the_plan(sk):
    d = sk.update(eps=0.1, n=16, view="lines")
    x, y = wt.sinkhorn_clouds(16)
    r = dl.ot.sinkhorn(x, y, 0.1, tol=1e-6, max_iter=5000)
    assert torch.allclose(d["plan"], r.plan) and d["n_iter"] == r.n_iter
    assert abs(d["exact"] - dl.ot.exact_ot(x, y)[1]) < 1e-12
    assert d["exact"] <= d["cost"]
    np.testing.assert_allclose(sk._now.get_ydata(), [d["cost"]])
    np.testing.assert_allclose(sk._exact.get_ydata(), [d["exact"]] * 2)
    assert len(sk._lines.get_segments()) == 16 * 12
    sk.update(view="matrix")
    np.testing.assert_allclose(np.asarray(sk._mat.get_array()).sum(), 16.0, rtol=1e-6)    # n P sums to n


def test_sinkhorn_costs_decrease_to_exact(sk):
    d = sk.update(n=32)
    c = np.array(d["costs"])
    assert np.all(np.diff(c) > 0)                       # over the increasing eps grid
    assert c[0] - d["exact"] < 0.01 * d["exact"]       # eps = 0.01: within 1%


def test_sinkhorn_every_control_changes_the_picture(sk):
    sk.update(eps=0.5, n=16, view="lines")
    base = sk.png()
    for change in ({"eps": 0.02}, {"n": 64}, {"view": "matrix"}):
        sk.update(**change)
        assert sk.png() != base
        base = sk.png()


def test_pf_explorer_numbers(pf):
    d = pf.update(schedule="rectified flow")
    mix = pf.mixtures["crossed"]
    x0 = mix.flow_map(d["z"], 1.0, 0.0, dl.schedules.get_schedule("flow"))
    assert torch.allclose(d["x0"], x0, atol=1e-6)
    assert torch.equal(d["perm"], dl.ot.ot_permutation(d["z"], d["x0"]))
    assert d["ot_cost"] <= d["pf_cost"] + 1e-12
    np.testing.assert_allclose(pf._ends[0].get_offsets(), d["x0"][:pf.values["n_shown"]].numpy())


def test_pf_every_control_changes_the_picture(pf):
    pf.update(schedule="VP (linear beta)", view="displacements", n_shown=20)
    base = pf.png()
    for change in ({"schedule": "rectified flow"}, {"view": "paths"}, {"n_shown": 40}):
        pf.update(**change)
        assert pf.png() != base
        base = pf.png()


def test_bad_selection_shows_a_message(pf):
    with pytest.raises(ValueError, match="mixtures"):
        dl.widgets.PFODEMapExplorer({})
    with pytest.raises(dl.widgets.InvalidSelection):
        pf.compute(data="nope", schedule="rectified flow")
