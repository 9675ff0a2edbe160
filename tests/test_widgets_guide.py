"""Chapter 08 explorers: the drawn samples are exact CFG / the methods' samples, the readouts are recomputed
from them, every control changes the picture."""
import numpy as np
import pytest
import torch

import dpm_lab as dl
from dpm_lab.recipes import guide


@pytest.fixture(scope="module")
def gx():
    fake = {(o, i): torch.full((8, 1, 28, 28), o / 5 - 0.5 + 0.2 * i) for o in dl.widgets.guide.OMEGAS
            for i in (False, True)}
    return dl.widgets.GuidanceExplorer(n=300, nfe=10, digits=fake)


@pytest.fixture(scope="module")
def ix():
    return dl.widgets.InverseExplorer(n=100)


def test_guidance_explorer_draws_exact_cfg_and_its_readouts(gx):
    d = gx.update(omega=3.0, interval=False, c=1)
    x = guide.cfg_samples(gx.mix, 1, 3.0, n=300, nfe=10)
    torch.testing.assert_close(d["samples"], x)
    np.testing.assert_allclose(gx._sc[0].get_offsets(), x.numpy())
    law = guide.tilted_law(gx.mix, 1, 3.0)
    assert d["tv"] == pytest.approx(law.tv(x))
    torch.testing.assert_close(d["tilted"].probs, law.probs)
    assert d["p_c"] == pytest.approx(float(gx.mix.class_posterior(x, 0.0, dl.VPLinear())[:, 1].mean()))
    assert d["spread"] == pytest.approx(guide.spread(x))
    # omega = 1 samples p(x | c): at its floor; omega = 3 is far above it (the book's warning)
    d1 = gx.update(omega=1.0)
    assert d1["tv"] < d1["floor"] + 3 * d1["floor_sd"]
    assert d["tv"] > d["floor"] + 5 * d["floor_sd"]
    assert d["p_c"] > d1["p_c"] and d["spread"] < d1["spread"]


def test_guidance_every_control_changes_the_picture(gx):
    gx.update(omega=2.0, interval=False, c=0)
    base = gx.png()
    for change in ({"omega": 5.0}, {"interval": True}, {"c": 1}, {"omega": 0.0}):
        gx.update(**change)
        assert gx.png() != base
        base = gx.png()


def test_inverse_explorer_against_the_exact_posterior(ix):
    d = ix.update(task="inpaint (see x1)", method="exact posterior", nfe=50, scale=1.0)
    A, y, sy = guide.measurement("inpaint (see x1)")
    post = ix.mix.posterior(A, y, sy)
    torch.testing.assert_close(d["posterior"].mean(), post.mean())
    assert d["mean_err"] < 3 * d["mc_err"]                       # the exact posterior's model samples it
    x = guide.inverse_samples(ix.mix, "inpaint (see x1)", "DPS", n=100, nfe=20)
    d2 = ix.update(method="DPS", nfe=20)
    torch.testing.assert_close(d2["samples"], x)
    np.testing.assert_allclose(ix._sc[1].get_offsets(), x.numpy())
    assert d2["mean_err"] > 5 * d2["mc_err"]                     # DPS is biased here


def test_inverse_every_control_changes_the_picture(ix):
    ix.update(task="inpaint (see x1)", method="DPS", scale=1.0, nfe=20)
    base = ix.png()
    for change in ({"scale": 0.25}, {"nfe": 10}, {"method": "ILVR"}, {"task": "denoise"},
                   {"task": "blur (see (x1 + x2) / 2)"}):
        ix.update(**change)
        assert ix.png() != base
        base = ix.png()
    # the exact posterior has no guidance scale: the title says so instead of leaving a control that does nothing
    ix.update(method="exact posterior", scale=1.0)
    base = ix.png()
    ix.update(scale=2.0)
    assert "scale unused" in ix._title.get_text() and ix.png() == base
