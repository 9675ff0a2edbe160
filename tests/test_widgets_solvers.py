"""Chapter 09 explorers: the drawn errors are the solver's distance to the exact flow map, the step anatomy's
integrals are the exact ones, every control changes the picture, and impossible selections show a message."""
import math

import numpy as np
import pytest
import torch

import dpm_lab as dl
from dpm_lab.widgets import solvers as ws


@pytest.fixture(scope="module")
def lab():
    return dl.widgets.SolverLab(n=12, n_paths=4)


@pytest.fixture(scope="module")
def anatomy():
    return dl.widgets.StepAnatomyExplorer()


def test_lab_errors_are_distances_to_the_exact_flow_map(lab):
    d = lab.update(method="dpmpp_2m", grid="lambda", schedule="VP", nfe=8)
    model = lab.mixture.model(lab.schedules["VP"])
    x_T = lab._start["VP"]
    exact = lab.mixture.flow_map(x_T, 1.0, model.schedule.t_eps, model.schedule)
    torch.testing.assert_close(d["ref"], exact, rtol=1e-6, atol=1e-7)
    mine = dl.samplers.solve(model, x_T, nfe=8, method="dpmpp_2m", spacing="lambda")
    want = float((mine - exact).pow(2).sum(-1).mean().sqrt())
    assert math.isclose(d["errors"][d["nfes"].index(8)], want, rel_tol=1e-5)
    np.testing.assert_allclose(lab._err_line.get_ydata(), d["errors"])            # the drawn curve
    np.testing.assert_allclose(lab._fin.get_offsets(), d["finals"][8].numpy())
    assert d["paths"][8].shape == (9, 4, 2)                                       # 8 steps + start, 4 paths


def test_lab_error_falls_with_nfe_at_the_solvers_order(lab):
    """On the lambda grid under VP, from NFE 16 to 32 DDIM halves its error and DPM-Solver++(2M) quarters it."""
    e1 = lab.update(method="ddim", grid="lambda", schedule="VP")["errors"]
    e2 = lab.update(method="dpmpp_2m")["errors"]
    slope = lambda e: math.log2(e[-2] / e[-1])     # noqa: E731
    assert 0.8 < slope(e1) < 1.2 and slope(e2) > 1.6
    assert e2[-1] < e1[-1] / 5


def test_lab_every_control_changes_the_picture(lab):
    lab.update(method="dpmpp_2m", grid="lambda", schedule="VP", nfe=8)
    base = lab.png()
    for change in ({"nfe": 16}, {"method": "heun"}, {"grid": "quadratic"}, {"schedule": "EDM"}):
        lab.update(**change)
        assert lab.message is None
        assert lab.png() != base
        base = lab.png()


def test_lab_impossible_selection_shows_a_message(lab):
    assert lab.update(method="ddim", grid="lambda", schedule="flow") is None
    assert "finite log-SNR" in lab.message
    d = lab.update(grid="uniform")
    assert lab.message is None and d["schedule"] == "flow"


def test_anatomy_integrals_are_exact_and_the_step_is_its_formula(anatomy):
    d = anatomy.update(form="DEIS (noise form, eps)", order=2, n=8, step=3)
    s = anatomy.current()
    # the exact integral by quadrature of e^{h-u} eps along the exact path (Simpson on the dense path)
    from scipy.integrate import simpson
    lam = anatomy._lams[s["js"]:s["jt"] + 1]
    eps = anatomy._pred["eps"][s["js"]:s["jt"] + 1].numpy()
    quad = simpson(np.exp(s["h"] - (lam - lam[0]))[:, None] * eps, x=lam, axis=0)
    np.testing.assert_allclose(s["integral_exact"].numpy(), quad, rtol=1e-5)
    # the package's DEIS step from the same state with the same history gives the same x_t
    hist = [(a[0], a[1][None]) for a in s["anchors"][1:]]
    x, _ = dl.fast_solvers.deis_step(anatomy.model, anatomy._path[s["js"]][None], anatomy._ts[s["js"]],
                                     anatomy._ts[s["jt"]], state={"x0": None, "hist": hist}, order=2,
                                     max_step_ratio=None, max_h_order3=None)
    torch.testing.assert_close(x[0], s["x_step"])
    assert len(d["local_errors"]) == 8 and s["k"] == 2


def test_anatomy_order_one_is_ddim_in_both_forms(anatomy):
    e = anatomy.update(form="DEIS (noise form, eps)", order=1, n=10, step=4).get("local_errors")
    f = anatomy.update(form="DPM-Solver++ (data form, x0)")["local_errors"]
    np.testing.assert_allclose(e, f, rtol=1e-8)              # DDIM = AB-DEIS-0 = DPM-Solver++ order 1


def test_anatomy_local_error_shrinks_with_the_order_where_the_prediction_is_smooth(anatomy):
    """Early steps (eps barely turns): each order divides the error."""
    errs = [anatomy.update(form="DEIS (noise form, eps)", order=k, n=20, step=4)["local_errors"] for k in (1, 2, 3)]
    assert errs[0][4] > 1.5 * errs[1][4] > 2.2 * errs[2][4]


def test_anatomy_step_range_follows_n_and_every_control_changes_the_picture(anatomy):
    anatomy.update(form="DEIS (noise form, eps)", order=3, n=20, step=15)
    anatomy.update(n=4)
    assert anatomy.values["step"] == 3 and anatomy.controls["step"].max == 3
    base = anatomy.png()
    for change in ({"step": 1}, {"order": 1}, {"n": 10}, {"form": "DPM-Solver++ (data form, x0)"}):
        anatomy.update(**change)
        assert anatomy.png() != base
        base = anatomy.png()


def test_lab_helpers():
    assert ws.lab_mixture().dim == 2 and set(ws.lab_schedules()) == {"VP", "EDM", "flow"}
    assert set(ws.__all__) <= set(dl.widgets.__all__)


def test_anatomy_update_sets_n_and_a_step_beyond_the_old_range_together(anatomy):
    anatomy.update(n=4, step=3)
    d = anatomy.update(n=8, step=5)                       # step 5 is past the old range 0..3
    assert anatomy.values["step"] == 5 and anatomy.controls["step"].max == 7
    assert len(d["local_errors"]) == 8
    anatomy.update(n=4)                                   # shrinking n clamps the step into 0..3
    assert anatomy.values["step"] == 3
    with pytest.raises(ValueError):
        anatomy.update(n=4, step=6)
