"""Time grids, 2D datasets and utilities."""
import pytest
import torch

import dpm_lab as dl


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


@pytest.mark.parametrize("name", dl.datasets.TOY_SETS)
def test_toy_sets(name):
    a = dl.datasets.sample_2d(name, 500, generator=torch.Generator().manual_seed(0))
    b = dl.datasets.sample_2d(name, 500, generator=torch.Generator().manual_seed(0))
    c = dl.datasets.sample_2d(name, 500, generator=torch.Generator().manual_seed(1))
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all() and 0.5 < float(a.std()) < 3.0


def test_toy_set_structure():
    g = torch.Generator().manual_seed(0)
    x = dl.datasets.sample_2d("checkerboard", 4000, generator=g)
    cells = (torch.floor(x[:, 0]) + torch.floor(x[:, 1])) % 2
    assert cells.unique().numel() == 1, "checkerboard points must fall on one colour"
    r = dl.datasets.sample_2d("rings", 4000, generator=g).norm(dim=1)
    near = torch.stack([(r - k).abs() for k in (0.5, 1.0, 1.5, 2.0)], 1).min(1).values
    assert float(near.max()) < 0.3
    src, tgt = dl.datasets.ring_pair(2000, generator=g)
    assert abs(float(src.norm(dim=1).mean()) - 4.0) < 0.05 and abs(float(tgt.norm(dim=1).mean()) - 1.1) < 0.05
    mix = dl.datasets.eight_gaussians_mixture()
    assert mix.n_components == 8 and mix.n_classes == 8


def test_toy_errors():
    with pytest.raises(ValueError, match="unknown toy dataset 'moon'"):
        dl.datasets.sample_2d("moon", 10)
    with pytest.raises(ValueError, match="n must be a positive int"):
        dl.datasets.sample_2d("moons", 0)


def test_expand_t_and_as_time():
    x = torch.zeros(3, 2, 4)
    assert dl.expand_t(torch.tensor([1.0, 2.0, 3.0]), x).shape == (3, 1, 1)
    assert dl.expand_t(0.5, x).dim() == 0
    with pytest.raises(ValueError, match="does not match x"):
        dl.expand_t(torch.ones(2), x)
    with pytest.raises(ValueError, match="shape \\(B,\\)"):
        dl.as_time(torch.ones(2, 2))
    assert dl.as_time(0.5, like=torch.zeros(1, dtype=torch.float32)).dtype == torch.float32


def test_device_seed_threads(monkeypatch):
    monkeypatch.delenv("DPM_LAB_THREADS", raising=False)
    assert dl.device().type in ("cpu", "cuda")
    g = dl.seed(3)
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="seed"):
        dl.seed(-1)
    n = dl.choose_threads()
    assert n >= 1 and torch.get_num_threads() == n
    torch.set_num_threads(1)


def test_thread_override(monkeypatch):
    monkeypatch.setenv("DPM_LAB_THREADS", "1")
    assert dl.choose_threads() == 1
