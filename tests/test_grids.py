"""Time grids: shapes, spacings, the Karras formula, errors, and the default spacing per schedule."""
import pytest
import torch

import dpm_lab as dl
from dpm_lab import grids


@pytest.mark.parametrize("kind", dl.GRIDS)
@pytest.mark.parametrize("sched", [dl.VPLinear(), dl.EDM(), dl.Cosine()], ids=["vp", "edm", "cosine"])
def test_grid_shape_and_order(sched, kind):
    t_max = 0.999 if sched.name == "cosine" else 1.0
    g = dl.time_grid(sched, 10, kind, t_max=t_max)
    assert g.shape == (11,) and g.dtype == torch.float64
    assert g[0] == t_max and g[-1] == sched.t_eps
    assert (g[1:] < g[:-1]).all()


def test_lambda_grid_is_uniform_in_lambda():
    sched = dl.VPLinear()
    lam = sched.lam(dl.time_grid(sched, 8, "lambda"))
    steps = lam[1:] - lam[:-1]
    torch.testing.assert_close(steps, steps.mean().expand(8), rtol=1e-8, atol=1e-10)


def test_edm_grid_matches_karras_formula():
    # for alpha = 1, sigma = 80 t the grid is Karras et al.'s rho = 7 spacing of sigma
    sched = dl.EDM(80.0)
    g = dl.time_grid(sched, 6, "edm", t_min=0.002 / 80)
    i = torch.arange(7, dtype=torch.float64)
    smax, smin, rho = 80.0, 0.002, 7.0
    sig = (smax ** (1 / rho) + i / 6 * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    torch.testing.assert_close(sched.sigma(g), sig)


def test_grid_errors():
    with pytest.raises(ValueError, match="n \\(number of steps\\) must be >= 1"):
        dl.time_grid(dl.VPLinear(), 0)
    with pytest.raises(ValueError, match="unknown time grid 'log'"):
        dl.time_grid(dl.VPLinear(), 5, "log")
    with pytest.raises(ValueError, match="finite log-SNR"):
        dl.time_grid(dl.RectifiedFlow(), 5, "lambda")
    with pytest.raises(ValueError, match="t_min < t_max"):
        dl.time_grid(dl.VPLinear(), 5, t_min=0.5, t_max=0.2)


@pytest.mark.parametrize("sched,kind", [(dl.VPLinear(), "quadratic"), (dl.DiscreteSchedule.linear(), "quadratic"),
                                        (dl.EDM(), "lambda"), (dl.Cosine(), "uniform"), (dl.VEGeometric(), "uniform"),
                                        (dl.RectifiedFlow(), "uniform"), (dl.Trig(), "uniform")],
                         ids=lambda v: getattr(v, "name", v))
def test_default_spacing_is_the_measured_choice_and_always_defined(sched, kind):
    assert grids.default_spacing(sched) == kind
    g = dl.time_grid(sched, 10, grids.default_spacing(sched))   # defined from t = 1 even where alpha_1 = 0
    assert g[0] == 1.0 and g[-1] == sched.t_eps and (g[1:] < g[:-1]).all()


def test_default_spacing_follows_a_schedule_attribute():
    class Mine(dl.VPLinear):
        name = "mine"

    assert grids.default_spacing(Mine()) == "uniform"           # unknown name: the kind every schedule has
    Mine.default_spacing = "lambda"
    assert grids.default_spacing(Mine()) == "lambda"
    Mine.default_spacing = "log"
    with pytest.raises(ValueError, match="unknown time grid 'log'"):
        grids.default_spacing(Mine())


def test_quadratic_grid_formula():
    g = dl.time_grid(dl.VPLinear(), 4, "quadratic", t_min=0.0)
    torch.testing.assert_close(g, torch.tensor([1.0, 0.5625, 0.25, 0.0625, 0.0], dtype=torch.float64))
