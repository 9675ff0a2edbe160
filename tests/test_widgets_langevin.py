"""Chapter 03 explorers: the drawn data are the package's Langevin runs on the exact score (same seed), every
control changes the picture, impossible selections show a message, and the tabulated learned score is close
to the model it tabulates."""
import numpy as np
import pytest
import torch

import dpm_lab as dl
from dpm_lab.widgets import langevin as L


def test_isotropic_score_is_the_mixture_score():
    mix = dl.ebm.two_mode_mixture(3.0)
    x = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 4
    for sigma in (0.0, 0.5, 4.0):
        want = mix.score(x, sigma / 10.0, dl.EDM(10.0)) if sigma else mix.data_score(x)
        torch.testing.assert_close(L.isotropic_score(mix, sigma)(x), want, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="isotropic"):
        L.isotropic_score(dl.GaussianMixture([1.0], [[0.0, 0.0]], covs=[[[1.0, 0.2], [0.2, 1.0]]]))


def test_score_table_is_exact_on_a_linear_field_and_clamps_outside():
    A = torch.tensor([[-1.0, 0.5], [0.2, -2.0]])
    tab = L.ScoreTable(lambda x: x @ A.T + 1.0, 4.0, 9)
    x = torch.rand(20, 2, generator=torch.Generator().manual_seed(1)) * 8 - 4
    torch.testing.assert_close(tab(x), x @ A.T + 1.0, rtol=1e-5, atol=1e-5)
    far = torch.tensor([[10.0, 0.0]])
    torch.testing.assert_close(tab(far), torch.tensor([[4.0, 0.0]]) @ A.T + 1.0)
    with pytest.raises(ValueError, match="box > 0"):
        L.ScoreTable(lambda x: x, -1.0)


def test_langevin_explorer_draws_the_package_run():
    ex = L.LangevinExplorer()
    d = ex.update(log_eta=-1.0, steps=100, temperature=1.0, a=5.0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(ex.n_chains, 2, generator=g, dtype=torch.float64) * 16 - 8
    mix = dl.ebm.two_mode_mixture(5.0)
    for _ in range(100):
        x = dl.dynamics.langevin(mix.data_score, x, 1, 0.1, generator=g)
    torch.testing.assert_close(d["exact"]["x"], x, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ex.art["exact"]["points"].get_offsets(), x.numpy(), rtol=1e-6, atol=1e-6)
    assert d["exact"]["paths"].shape == (101, 12, 2)
    # the mode-weight failure: about half of the chains in the heavier mode (256 chains: 0.5 +- 5 * 0.031)
    assert abs(d["exact"]["upper"] - 0.5) < 0.15
    # every control moves the picture
    before = ex.art["exact"]["points"].get_offsets().copy()
    for kw in ({"log_eta": -0.5}, {"steps": 40}, {"temperature": 2.0}, {"a": 2.0}):
        ex.update(**kw)
        after = ex.art["exact"]["points"].get_offsets().copy()
        assert not np.allclose(before, after), kw
        before = after


def test_langevin_explorer_message_on_divergence_and_learned_row():
    ex = L.LangevinExplorer(model=dl.ebm.two_mode_mixture(5.0).model(dl.EDM(20.0)))
    d = ex.update(log_eta=-1.0, steps=60)
    # the "learned" model here is the exact one, tabulated: the chains agree closely with the exact row
    assert abs(d["learned"]["upper"] - d["exact"]["upper"]) < 0.05
    assert ex.update(a=3.0)["learned"] is None
    assert "trained at a = 5" in ex.art["learned"]["note"].get_text()
    ex2 = L.LangevinExplorer()
    sharp = ex2.update(log_eta=0.0, a=1.0)      # eta = 1 on unit-variance modes: still stable (eta < 2)
    assert sharp is not None


def test_annealed_explorer_is_the_package_annealed_langevin():
    ex = L.AnnealedLangevinExplorer()
    d = ex.update(L=6, K=10, log_ratio=-1.0)
    sig = dl.ebm.geometric_sigmas(0.1, 20.0, 6)
    g = torch.Generator().manual_seed(0)
    x0 = 20.0 * torch.randn(ex.n_chains, 2, generator=g, dtype=torch.float64)
    model = dl.ebm.two_mode_mixture(5.0).model(dl.EDM(20.0))
    want = dl.dynamics.annealed_langevin(model, x0, (sig / 20.0).clamp(max=1).flip(0).tolist(), n_steps=10,
                                         delta=0.1 * 0.01, generator=g)
    torch.testing.assert_close(d["exact"]["x"], want, rtol=1e-8, atol=1e-8)
    full = ex.update(L=10, K=30, log_ratio=-1.0)
    # the weights recovered: 0.8 within 5 binomial standard errors of 256 chains (0.025) plus a 0.05 bias allowance
    assert abs(full["exact"]["upper"] - 0.8) < 0.17
    one = ex.update(L=1)
    assert one["exact"]["upper"] < full["exact"]["upper"]
    before = ex.art["exact"]["points"].get_offsets().copy()
    for kw in ({"L": 4}, {"K": 5}, {"log_ratio": -2.0}):
        ex.update(**kw)
        after = ex.art["exact"]["points"].get_offsets().copy()
        assert not np.allclose(before, after), kw
        before = after


def test_the_note_names_the_target_each_explorer_draws():
    # Langevin has a temperature control, so its target is p^(1/T); annealed Langevin samples p itself
    for explorer, target in ((L.LangevinExplorer(), "target p^(1/T):"), (L.AnnealedLangevinExplorer(), "target p:")):
        explorer.update()
        assert target in explorer.art["exact"]["note"].get_text()


def test_explorers_are_exported():
    assert dl.widgets.LangevinExplorer is L.LangevinExplorer
    assert dl.widgets.AnnealedLangevinExplorer is L.AnnealedLangevinExplorer


def test_langevin_explorer_keeps_a_cold_target_in_view():
    ex = L.LangevinExplorer()
    for T in (0.25, 0.5, 1.0, 3.0):
        ex.update(temperature=T, steps=40)
        line = ex.art["exact"]["target"]
        assert line.axes.get_ylim()[1] >= float(np.max(line.get_ydata())), T     # the peak is never clipped
    assert ex.controls["a"].style.description_width == "initial"                 # "separation a" not truncated
