"""Chapter 10 explorers: the drawn data are the students' and teachers' own outputs (recomputed here through the
sampling driver), every control changes the picture, and an impossible selection shows a message."""
import numpy as np
import pytest
import torch

import dpm_lab as dl
from dpm_lab.recipes import distill as rd


@pytest.fixture(scope="module")
def pd():
    rounds = {"moons": dl.zoo.load("pd_moons"), "8g -> moons": dl.zoo.load("pd_8g_to_moons")}
    teachers = {"moons": dl.zoo.load("moons_vp_x0"), "8g -> moons": dl.zoo.load("8g_to_moons")}
    noise = {"moons": lambda n, generator=None: rd.teacher_noise("moons_vp_x0", n, generator=generator),
             "8g -> moons": lambda n, generator=None: rd.teacher_noise("8g_to_moons", n, generator=generator)}
    return dl.widgets.PDRoundsExplorer(rounds, teachers, noise, n=150, n_grid=9)


@pytest.fixture(scope="module")
def sd():
    models = {"VSD/DMD": dl.zoo.load("vsd_8g"), "VSD/DMD, low noise only": dl.zoo.load("vsd_8g_small_t"),
              "SDS": dl.zoo.load("sds_8g")}
    mix = dl.datasets.eight_gaussians_mixture()
    return dl.widgets.ScoreDistillExplorer(models, mix.model(dl.schedules.get_schedule("vp")), mix,
                                           rd.snapshot_points(), rd.SNAP_TIMES)


def test_pd_explorer_draws_the_students_run_from_the_same_noise(pd):
    d = pd.update(data="moons", nfe=4)
    rounds, teacher = pd.rounds["moons"], dl.zoo.load("moons_vp_x0")
    want = dl.samplers.solve(rounds.student(4), d["x_T"], rounds.grid(4), "ddim")
    assert torch.allclose(d["student"], want, atol=1e-5)
    ref = dl.samplers.solve(teacher, d["x_T"], dl.distill.pd_grid(teacher.schedule, 64, 64), "ddim")
    assert torch.allclose(d["teacher"], ref, atol=1e-5)
    rms = float(((want - ref) ** 2).sum(1).mean().sqrt())
    assert abs(d["rms"][4] - rms) < 1e-5 and d["rms"][64] == 0.0
    np.testing.assert_allclose(pd._sc_s.get_offsets(), d["student"].numpy(), atol=1e-6)
    np.testing.assert_allclose(pd._im.get_array(), np.log10(d["err_grid"].numpy() + 1e-4), atol=1e-6)
    assert d["err_grid"].shape == (9, 9)


def test_pd_explorer_every_control_changes_the_picture(pd):
    pd.update(data="moons", nfe=8)
    base = pd.png()
    for change in ({"nfe": 1}, {"data": "8g -> moons"}, {"nfe": 64}):
        pd.update(**change)
        assert pd.png() != base
        base = pd.png()


def test_score_explorer_draws_the_stored_snapshots_and_exact_real_score(sd):
    d = sd.update(method="VSD/DMD", snapshot=8, t=0.3)
    m = sd.models["VSD/DMD"]
    assert torch.equal(d["x"], m.snap_x[8]) and d["step"] == int(m.snap_steps[8])
    mix = dl.datasets.eight_gaussians_mixture()
    real = mix.score(rd.snapshot_points().double(), 0.3, dl.schedules.get_schedule("vp")).float()
    assert torch.allclose(d["real"], real, atol=1e-5)
    assert torch.equal(d["fake"], m.snap_fake[8, rd.SNAP_TIMES.index(0.3)])
    assert d["hit"] == dl.metrics.mode_coverage(m.snap_x[8], mix)["hit"]
    np.testing.assert_allclose(sd._qf.U, d["fake"][:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(sd._qr.V, d["real"][:, 1].numpy(), atol=1e-6)
    np.testing.assert_allclose(sd._sc.get_offsets(), d["x"].numpy(), atol=1e-6)
    s = sd.update(method="SDS")
    assert s["fake"] is None and not sd._qf.get_visible()


def test_score_explorer_every_control_changes_the_picture(sd):
    sd.update(method="VSD/DMD", snapshot=4, t=0.3)
    base = sd.png()
    for change in ({"snapshot": 0}, {"t": 0.6}, {"method": "SDS"}, {"t": 0.1}, {"method": "VSD/DMD, low noise only"}):
        sd.update(**change)
        assert sd.png() != base
        base = sd.png()


def test_explorers_refuse_bad_input():
    with pytest.raises(ValueError, match="same names"):
        dl.widgets.PDRoundsExplorer({"a": None}, {}, {})
    with pytest.raises(ValueError, match="non-empty"):
        dl.widgets.ScoreDistillExplorer({}, None, dl.datasets.eight_gaussians_mixture(), rd.snapshot_points(), (0.1,))
