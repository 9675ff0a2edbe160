"""Chapter 05 explorers: the drawn data are the exact values (conditional velocities eps - x0, the mixture's
marginal velocity), every control changes the picture, and an impossible selection shows a message."""
import numpy as np
import pytest
import torch

import dpm_lab as dl


@pytest.fixture(scope="module")
def cond():
    return dl.widgets.ConditionalPathExplorer(max_paths=12)


def test_conditional_paths_are_the_straight_interpolation(cond):
    d = cond.update(t=0.4, n_paths=7, mixture="two Gaussians")
    assert d["x_t"].shape == (7, 2)
    assert torch.allclose(d["x_t"], 0.6 * d["x0"] + 0.4 * d["eps"])
    assert torch.allclose(d["cond_v"], d["eps"] - d["x0"])
    mix = cond.mixtures["two Gaussians"]
    assert torch.allclose(d["marg_v"], mix.velocity(d["x_t"], 0.4, dl.RectifiedFlow()))
    np.testing.assert_allclose(cond._qc.U, d["cond_v"][:, 0].numpy())      # the drawn arrows
    np.testing.assert_allclose(cond._qm.V, d["marg_v"][:, 1].numpy())
    assert len(cond._lines.get_segments()) == 7


def test_every_control_changes_the_picture(cond):
    cond.update(t=0.5, n_paths=5, mixture="eight Gaussians")
    base = cond.png()
    for change in ({"t": 0.9}, {"n_paths": 11}, {"mixture": "ring of 8 (r = 1.1)"}):
        cond.update(**change)
        assert cond.png() != base
        base = cond.png()


def test_marginal_velocity_is_the_posterior_average_of_conditional_ones():
    # Monte Carlo: E[eps - x0 | x_t] by self-normalised weights over many x0 draws; tolerance 5 standard errors
    mix = dl.widgets.default_mixtures()["two Gaussians"]
    t, x = 0.5, torch.tensor([[0.3, 0.1]], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x0 = mix.sample(200000, generator=g, dtype=torch.float64)
    logw = -((x - (1 - t) * x0) ** 2).sum(1) / (2 * t ** 2)
    w = torch.softmax(logw, 0)
    v = (x - x0) / t
    mc = (w[:, None] * v).sum(0)
    n_eff = 1 / (w ** 2).sum()
    se = ((w[:, None] * (v - mc) ** 2).sum(0) / n_eff).sqrt()
    exact = mix.velocity(x, t, dl.RectifiedFlow())[0]
    assert ((mc - exact).abs() < 5 * se).all()


def test_reflow_explorer_numbers():
    from dpm_lab.recipes import flows
    models = {f"round {k}": dl.zoo.load(f"ring_rf{k}") for k in range(2)}
    ex = dl.widgets.ReflowExplorer(models, flows.ring_source,
                                   lambda n, generator=None: dl.datasets.ring_pair(n, generator=generator)[1], n=200)
    d0 = ex.update(round="round 0", nfe=2)
    assert d0["paths"].shape[0] == 3
    assert torch.allclose(d0["samples"], dl.reflow.flow_path(models["round 0"], ex._x1, 2, "euler")[-1])
    d1 = ex.update(round="round 1")
    assert d1["S"] < d0["S"] / 10
    assert d1["w2_ratio"] < d0["w2_ratio"]
    base = ex.png()
    ex.update(nfe=8)
    assert ex.png() != base


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="max_paths"):
        dl.widgets.ConditionalPathExplorer(max_paths=0)
    with pytest.raises(ValueError, match="2-D"):
        dl.widgets.ConditionalPathExplorer({"x": dl.GaussianMixture([1.0], [[0.0]], stds=[1.0])})
    with pytest.raises(ValueError, match="samplers"):
        dl.widgets.ReflowExplorer({"a": None})


def test_legends_survive_the_animated_density(cond):
    """The static picture (png(): background plus animated artists) keeps both legends: their dark text must be in
    the PNG inside each legend's box (the animated density image once covered them)."""
    import io

    from PIL import Image

    cond.update(t=0.3, n_paths=8, mixture="eight Gaussians")
    img = np.asarray(Image.open(io.BytesIO(cond.png())).convert("RGB")).astype(int)
    renderer = cond.fig.canvas.get_renderer()
    for ax in cond.fig.axes:
        box = ax.get_legend().get_window_extent(renderer)
        h = img.shape[0]
        crop = img[int(h - box.y1):int(h - box.y0), int(box.x0):int(box.x1)]
        assert (crop.max(-1) < 80).sum() > 20, "legend text missing from the static picture"
