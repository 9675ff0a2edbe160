"""Chapter 11 explorers: the drawn data are the exact values (the oracle's flow map, the student's jumps), every
control changes the picture, and impossible selections show a message."""
import numpy as np
import pytest
import torch

import dpm_lab as dl

RF = dl.schedules.RectifiedFlow()


def _students():
    return {"CM": dl.flowmaps.FlowMap(RF, "cm"), "CTM": dl.flowmaps.FlowMap(RF, "ctm_g"),
            "MeanFlow": dl.flowmaps.FlowMap(RF, "ctm_v")}


@pytest.fixture(scope="module")
def fmx():
    return dl.widgets.FlowMapExplorer(_students(), n=60)


def test_flow_map_explorer_draws_oracle_and_student(fmx):
    d = fmx.update(method="CTM", s=0.8, t=0.2, u=0.5, nfe=1)
    mix = dl.datasets.eight_gaussians_mixture()
    want = mix.flow_map(d["x_s"].double(), 0.8, 0.2, RF).float()
    assert torch.allclose(d["oracle"], want, atol=1e-4)          # the oracle is the exact PF-ODE map
    net = fmx.students["CTM"]
    with torch.no_grad():
        assert torch.allclose(d["learned"], net(d["x_s"], 0.8, 0.2), atol=1e-6)
        assert torch.allclose(d["two_jump"], net(net(d["x_s"], 0.8, 0.5), 0.5, 0.2), atol=1e-6)
    assert np.isclose(d["err"], float((d["learned"] - d["oracle"]).norm(dim=-1).mean()))
    np.testing.assert_allclose(fmx._or.get_offsets(), d["oracle"].numpy(), atol=1e-6)
    d4 = fmx.update(nfe=4)
    with torch.no_grad():
        x = d["x_s"]
        for a, b in zip([0.8, 0.65, 0.5, 0.35], [0.65, 0.5, 0.35, 0.2]):
            x = net(x, a, b)
    assert torch.allclose(d4["learned"], x, atol=1e-5)


def test_flow_map_explorer_messages(fmx):
    # the ranges follow each other: t stays below s and u between t and s (no impossible selection is left)
    assert fmx.update(method="CTM", s=0.8, t=0.2, u=0.5) is not None
    assert fmx.update(s=0.4) is not None and fmx.values["t"] == 0.2 and fmx.values["u"] == 0.4
    assert fmx.controls["t"].max == 0.35 and (fmx.controls["u"].min, fmx.controls["u"].max) == (0.2, 0.4)
    with pytest.raises(ValueError):
        fmx.update(u=0.9)                              # outside [t, s] is outside the slider's range
    fmx.update(s=0.8)
    assert fmx.update(method="CM", t=0.2, u=0.5) is None and "only to t = 0" in fmx.message
    d = fmx.update(t=0.0)
    assert d is not None and fmx.message is None


def test_flow_map_explorer_every_control_changes_the_picture(fmx):
    fmx.update(method="MeanFlow", s=0.8, t=0.2, u=0.5, nfe=1)
    base = fmx.png()
    for change in ({"method": "CTM"}, {"s": 0.9}, {"t": 0.1}, {"u": 0.3}, {"nfe": 3}):
        fmx.update(**change)
        assert fmx.png() != base, change
        base = fmx.png()


def test_gamma_explorer_samples_and_w2():
    ex = dl.widgets.GammaSamplingExplorer(_students(), n=80, method="MeanFlow")
    d = ex.update(gamma=0.0, steps=2)
    net = ex.students["MeanFlow"]
    with torch.no_grad():
        want = net(net(ex._x1, 1.0, 0.5), 0.5, 0.0)
    assert torch.allclose(d["samples"], want, atol=1e-5)
    assert np.isclose(d["w2"], dl.metrics.w2_exact(want, ex._target), rtol=1e-5)
    base = ex.png()
    for change in ({"gamma": 0.7}, {"steps": 5}, {"method": "CTM"}, {"gamma": 1.0}):
        ex.update(**change)
        assert ex.png() != base, change
        base = ex.png()
    assert ex.update(method="CM", gamma=0.5) is None and "\u03b3 = 1" in ex.message
    assert ex.update(gamma=1.0) is not None
