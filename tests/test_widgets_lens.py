"""Chapter 06's explorers (dpm_lab/widgets/lens.py): the drawn data against exact values, every control moving
the picture, impossible selections as messages."""
import math

import numpy as np
import pytest
import torch

import dpm_lab as dl
from dpm_lab.widgets import lens


class _Half(dl.param.Model):
    """A stand-in network: the exact VP eps-field times 0.5 (so its error is known exactly)."""

    def __init__(self, gmm, sched):
        self.exact, self.schedule, self.kind = gmm.model(sched), sched, "eps"

    def raw(self, x_t, t, c=None):
        return 0.5 * self.exact.predict(x_t.double(), t, "eps").to(x_t.dtype)


@pytest.fixture(scope="module")
def gmm():
    return dl.datasets.eight_gaussians_mixture()


def test_four_predictions_draws_the_exact_and_the_converted_fields(gmm):
    exact_vp = gmm.model(dl.VPLinear())
    ex = dl.widgets.FourPredictionsExplorer(gmm, models={"exact": exact_vp, "half": _Half(gmm, dl.VPLinear())},
                                            normalize=False)
    for schedule in ("vp", "flow", "trig", "edm"):
        d = ex.update(schedule=schedule, t=0.4, network="exact")
        sch = ex.schedule(schedule)
        for kind in lens.FIELD_KINDS:
            want = gmm.predict(d["points"], 0.4, sch, kind)
            torch.testing.assert_close(d["exact"][kind], want)
            # the exact VP model through the time map is exact under every schedule (float32 input)
            torch.testing.assert_close(d["learned"][kind], want, rtol=1e-4, atol=1e-4)
            assert d["rmse"][kind] < 1e-3
            U, V = ex.quivers["exact"][kind].U, ex.quivers["exact"][kind].V
            np.testing.assert_allclose(np.stack([U.ravel(), V.ravel()], 1), want.numpy().reshape(ex.n, ex.n, 2)
                                       .reshape(-1, 2), rtol=1e-6, atol=1e-9)
    d = ex.update(schedule="vp", network="half")
    assert d["rmse"]["eps"] > 0.05                       # a wrong network shows its error
    d = ex.update(network="none")
    assert d["learned"] is None and not ex.quivers["learned"]["x0"].get_visible()


def test_four_predictions_controls_change_the_picture(gmm):
    ex = dl.widgets.FourPredictionsExplorer(gmm, models={"half": _Half(gmm, dl.VPLinear())})
    pictures = {ex.png()}
    assert [ax.get_xlabel() for ax in ex.fig.axes] == ["$x_1$"] * 4 and ex.fig.axes[0].get_ylabel() == "$x_2$"
    for k, v in [("t", 0.8), ("schedule", "flow"), ("network", "none"), ("normalize", False)]:
        ex.update(**{k: v})
        pictures.add(ex.png())
    assert len(pictures) == 5
    with pytest.raises(TypeError, match="models"):
        dl.widgets.FourPredictionsExplorer(gmm, models={"bad": gmm})


def test_weighting_explorer_draws_its_curves():
    ex = dl.widgets.WeightingExplorer()
    d = ex.update(kind="x0", weighting="none")
    lam, w = d["curves"]["flow"]
    np.testing.assert_allclose(ex.lines["flow"].get_ydata(), w.numpy())
    # x0 loss on the flow path: ||eps err||^2 = (alpha/sigma)^2 ||x0 err||^2 -> w = sigma^2 / (alpha^2 |lambda'|)
    sch = dl.RectifiedFlow()
    c = sch.coeffs(ex.t)
    np.testing.assert_allclose(w.numpy(), (c.sigma ** 2 / c.alpha ** 2 / c.d_lam.abs()).numpy(), rtol=1e-9)
    pictures = {ex.png()}
    for k, v in [("kind", "velocity"), ("weighting", "sigma2"), ("p_time", "logit_normal")]:
        ex.update(**{k: v})
        pictures.add(ex.png())
    assert len(pictures) == 4


@pytest.fixture(scope="module")
def gamma_ex():
    return dl.widgets.GammaFamilyExplorer(n=400, n_steps=40, etas=(0.0, 0.5, 1.0))


def test_gamma_paths_are_the_packages_gamma_sde(gamma_ex):
    # each block of the batched run equals dl.dynamics.gamma_sde_step run alone with the same generator
    ex = gamma_ex
    model = ex.mixture.model(ex.sched)
    for eta in (0.0, 1.0):
        gamma = (lambda t, eta=eta: eta * math.sqrt(float(ex.sched.g2(t))))
        x = ex.paths[eta][0]
        want = dl.samplers.trajectory(model, x, ex.grid.tolist(), "gamma_sde", gamma=gamma,
                                      generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(ex.paths[eta], want, rtol=1e-10, atol=1e-10)


def test_gamma_explorer_draws_shared_marginals_and_different_paths(gamma_ex):
    ex = gamma_ex
    d1 = ex.update(gamma=1.0, t=0.0)
    counts, _ = np.histogram(d1["x"].numpy(), bins=ex.edges, density=True)
    np.testing.assert_allclose(ex._hist.get_data().values, counts)
    d0 = ex.update(gamma=0.0, t=0.0)
    # 400 samples: the means agree with the exact one within 4 standard errors (plus Euler bias at 40 steps)
    se = d0["exact_std"] / math.sqrt(400)
    for d in (d0, d1):
        assert abs(float(d["mean"][-1]) - d["exact_mean"]) < 4 * se + 0.05
    assert d0["corr"] > 0.8 and abs(d1["corr"]) < 0.3        # the ODE keeps x_1's order, Anderson's SDE forgets it
    assert ex.update(gamma=0.6)["gamma"] == 0.5              # snapped to the grid
    pictures = {ex.png()}
    ex.update(t=0.5)
    pictures.add(ex.png())
    ex.update(gamma=1.0)
    pictures.add(ex.png())
    assert len(pictures) == 3
    with pytest.raises(ValueError, match="1-D"):
        dl.widgets.GammaFamilyExplorer(dl.datasets.eight_gaussians_mixture())
    with pytest.raises(ValueError, match="evenly spaced"):
        dl.widgets.GammaFamilyExplorer(n=10, n_steps=2, etas=(0.0, 0.3, 1.0))
