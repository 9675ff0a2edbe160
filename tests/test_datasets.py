"""2D datasets."""
import pytest
import torch

import dpm_lab as dl


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

