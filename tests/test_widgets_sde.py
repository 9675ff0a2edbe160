"""Chapter 04 explorers: the drawn data equal exact values, every control changes the picture, the scrubber
only redraws (cache hits), and bad constructor input names its argument."""
import numpy as np
import pytest
import torch

import dpm_lab as dl
from dpm_lab.widgets import sde


@pytest.fixture(scope="module")
def three():
    return dl.widgets.ThreeDynamicsExplorer(n_particles=600, n_steps=100)


@pytest.fixture(scope="module")
def fpe():
    return dl.widgets.FokkerPlanckExplorer(n_particles=500, n_cells=200)


def test_three_dynamics_draws_the_exact_marginal_and_the_histograms(three):
    d = three.update(schedule="vp", t=0.35, n_paths=8)
    i = list(sde.SCRUB).index(0.35)
    mix, sch = three.mixture, three.schedules["vp"]
    want = mix.log_prob_t(torch.tensor(d["fine"])[:, None], 0.35, sch).exp().numpy()
    x, y = three._exact.get_data()
    assert np.allclose(y, want) and np.allclose(x, d["fine"])
    hx, hy = three._hist["PF-ODE"].get_data()
    assert np.allclose(hy[::2], d["hist"]["PF-ODE"][i])
    assert len(three._coll["reverse SDE"].get_segments()) == 8
    assert three._tline.get_xdata()[0] == 0.35
    # the three clouds share p_t: every TV within a few Monte Carlo floors (600 particles, 40 bins: ~0.1)
    for k in three.KINDS:
        assert d["tv"][k].max() < 0.2, (k, d["tv"][k])


def test_three_dynamics_controls_change_the_picture_and_the_scrubber_only_redraws(three):
    three.update(schedule="vp", t=0.0, n_paths=4)
    before = three.png()
    misses = three.misses
    for t in (0.5, 1.0):
        three.update(t=t)
        assert three.png() != before
    three.update(n_paths=20)
    assert len(three._coll["PF-ODE"].get_segments()) == 20
    assert three.misses == misses                      # t and n_paths never recompute
    d = three.update(schedule="ve")
    assert d["lim"] > 5 and three.fig.axes[0].get_ylim()[1] == pytest.approx(d["lim"])


def test_fokker_planck_explorer_pde_matches_the_exact_marginal(fpe):
    d = fpe.update(drift="ou", g=1.0, t=0.5)
    i = list(sde.SCRUB).index(0.5)
    assert np.allclose(fpe._pde.get_data()[1], d["pde"][i])
    exact = fpe.mixture.log_prob_t(torch.tensor(d["x"])[:, None], 0.5, dl.fokker_planck.ConstantSDE(1.0, 1.0))
    assert np.allclose(fpe._ex.get_data()[1], exact.exp().numpy())
    assert d["err"].max() < 5e-3 and np.allclose(d["mass"], d["mass"][0], atol=1e-12)
    for g in fpe.G_VALUES:                 # pure diffusion: the box is wide enough that its walls hold back no mass
        assert fpe.update(drift="none", g=g, t=1.0)["err"].max() < 2e-3, g
    d = fpe.update(drift="double_well", g=0.8, t=1.0)
    assert d["exact"] is None and "equilibrium" in fpe._legend.get_texts()[2].get_text()


def test_fokker_planck_every_control_changes_the_picture(fpe):
    fpe.update(drift="none", g=0.6, t=0.0)
    seen = {fpe.png()}
    for change in ({"t": 0.6}, {"g": 1.25}, {"drift": "ou"}, {"drift": "double_well"}):
        fpe.update(**change)
        seen.add(fpe.png())
    assert len(seen) == 5


def test_bad_input_names_the_argument(fpe):
    with pytest.raises(ValueError, match="mixture"):
        dl.widgets.ThreeDynamicsExplorer(dl.datasets.eight_gaussians_mixture())
    with pytest.raises(ValueError, match="n_steps"):
        dl.widgets.ThreeDynamicsExplorer(n_steps=30)
    with pytest.raises(ValueError, match="n_particles"):
        dl.widgets.FokkerPlanckExplorer(n_particles=10)
    with pytest.raises(ValueError, match="n_cells"):
        dl.widgets.FokkerPlanckExplorer(n_cells=50)
    with pytest.raises(ValueError, match="unknown control"):
        fpe.update(sigma=1.0)
