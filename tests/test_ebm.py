"""dpm_lab.ebm: energies and their scores, log p from a score by a line integral, contrastive divergence,
the NCSN noise ladder and SURE (§3.1-3.4), each against an independent route."""
import math

import pytest
import torch

import dpm_lab as dl
from dpm_lab import ebm


@pytest.fixture
def mix():
    return dl.GaussianMixture([0.2, 0.5, 0.3], [[-1.0, 0.5], [1.0, 1.0], [0.0, -1.5]], stds=[0.4, 0.6, 0.5])


def test_score_of_an_energy_ignores_log_Z(mix):
    """E = -log p + any constant has the exact score of p (§3.1.2)."""
    x = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for const in (0.0, 12.5):
        s = ebm.score_of(lambda y, k=const: -mix.log_prob(y) + k, x)
        torch.testing.assert_close(s, mix.data_score(x))
    net = ebm.Energy(2, hidden=16, depth=2).double()
    s = net.score(x)
    ref = -torch.autograd.functional.jacobian(lambda y: net(y).sum(), x)
    torch.testing.assert_close(s, ref)
    with pytest.raises(ValueError, match="one value per sample"):
        ebm.score_of(lambda y: y, x)
    with pytest.raises(ValueError, match=r"x must have shape \(B, 2\)"):
        net(torch.zeros(3, 3))


def test_log_ratio_recovers_log_p_up_to_a_constant(mix):
    """The line integral of the exact score equals log p(x) - log p(x_ref) of the mixture (quadrature, 1e-8)."""
    x = torch.randn(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    ref = torch.tensor([0.3, -0.2], dtype=torch.float64)
    got = ebm.log_ratio(mix.data_score, x, ref, n_nodes=48)
    want = mix.log_prob(x) - mix.log_prob(ref[None])
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-8)
    # fewer nodes converge to the same value (the error falls below 1e-3 by 16 nodes)
    assert float((ebm.log_ratio(mix.data_score, x, ref, n_nodes=16) - want).abs().max()) < 1e-3
    with pytest.raises(ValueError, match="n_nodes"):
        ebm.log_ratio(mix.data_score, x, ref, n_nodes=0)
    with pytest.raises(ValueError, match="x_ref"):
        ebm.log_ratio(mix.data_score, x, torch.zeros(3), n_nodes=4)


def test_short_run_langevin_uses_the_generator_and_validates():
    energy = lambda y: 0.5 * (y ** 2).sum(1)             # noqa: E731  standard normal
    x = torch.zeros(4000, 2, dtype=torch.float64)
    a = ebm.short_run_langevin(energy, x, 200, 0.05, generator=torch.Generator().manual_seed(0))
    b = ebm.short_run_langevin(energy, x, 200, 0.05, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    # ULA on N(0, 1) with step eta has stationary variance 1 / (1 - eta / 2); 4000 x 2 draws: 5 standard errors
    var = 1 / (1 - 0.05 / 2)
    assert abs(float(a.var()) - var) < 5 * var * math.sqrt(2 / 8000)
    for kw, name in (({"n_steps": 0, "step_size": 0.1}, "n_steps"), ({"n_steps": 1, "step_size": -0.1}, "step_size")):
        with pytest.raises(ValueError, match=name):
            ebm.short_run_langevin(energy, x, **kw)
    with pytest.raises(ValueError, match="noise_scale"):
        ebm.short_run_langevin(energy, x, 1, 0.1, noise_scale=-1.0)


def test_contrastive_divergence_pushes_energy_down_on_data():
    """A few hundred CD steps on a 2D Gaussian blob: data energy ends below the energy of far points."""
    torch.manual_seed(0)
    net = ebm.Energy(2, hidden=32, depth=2)
    cd = ebm.ContrastiveDivergence(n_steps=10, step_size=0.05, box=3.0, reg=0.1)
    data = lambda n, *, generator=None: 0.3 * dl.utils.randn((n, 2), generator=generator) + 1.0  # noqa: E731
    dl.train.train(net, cd, data, steps=150, batch=128, lr=3e-3, ema=None, seed=0)
    with torch.no_grad():
        e_data = net(torch.tensor([[1.0, 1.0]])).item()
        e_far = net(torch.tensor([[-2.0, -2.0], [2.5, -2.5]])).mean().item()
    assert e_data < e_far - 1.0, (e_data, e_far)
    loss = cd(net, data(16, generator=torch.Generator().manual_seed(1)), generator=torch.Generator().manual_seed(2))
    assert loss.shape == (16,)
    for kw, name in (({"n_steps": 0}, "n_steps"), ({"step_size": 0.0}, "step_size"), ({"box": -1.0}, "box"),
                     ({"reg": -0.1}, "reg")):
        with pytest.raises(ValueError, match=name):
            ebm.ContrastiveDivergence(**kw)


def test_noise_ladder_is_geometric_and_validates():
    s = ebm.geometric_sigmas(0.1, 10.0, 5)
    torch.testing.assert_close(s[1:] / s[:-1], torch.full((4,), 10 ** 0.5, dtype=torch.float64))
    lad = ebm.NoiseLadder(s, 20.0)
    torch.testing.assert_close(lad.times(), s / 20.0)
    t = lad(6000, generator=torch.Generator().manual_seed(0))
    counts = torch.stack([(t == v).sum() for v in lad.times()])
    assert int(counts.sum()) == 6000 and int(counts.min()) > 1200 - 5 * 31     # 1200 each, sd ~31
    cont = ebm.NoiseLadder(s, 20.0, discrete=False)(4000, generator=torch.Generator().manual_seed(0))
    u = (torch.log(cont * 20.0) - math.log(0.1)) / math.log(100.0)           # uniform on [0, 1]
    assert float(u.min()) >= 0 and float(u.max()) <= 1 and abs(float(u.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / 4000)
    with pytest.raises(ValueError, match="strictly increasing"):
        ebm.NoiseLadder([1.0, 0.5])
    with pytest.raises(ValueError, match="sigma_max"):
        ebm.NoiseLadder([0.1, 1.0], 0.5)
    with pytest.raises(ValueError, match="sigma_min must be < sigma_max"):
        ebm.geometric_sigmas(1.0, 0.5, 3)
    with pytest.raises(ValueError, match="L must be"):
        ebm.geometric_sigmas(0.1, 1.0, 1)


def test_sure_is_unbiased_for_the_mse_of_shrinkage():
    """x ~ N(0, s^2 I) in D = 2, x~ = x + sigma eps, D(x~) = c x~: E SURE = true MSE = D[(1-c)^2 s^2 + c^2 sigma^2].
    n = 40000: tolerance 5 standard errors of the SURE mean."""
    gen = torch.Generator().manual_seed(0)
    s, sigma, n = 1.2, 0.6, 40000
    x = s * dl.utils.randn((n, 2), generator=gen, dtype=torch.float64)
    xn = x + sigma * dl.utils.randn((n, 2), generator=gen, dtype=torch.float64)
    for c in (0.5, s ** 2 / (s ** 2 + sigma ** 2), 1.0):
        vals = ebm.sure(ebm.shrinkage(c), xn, sigma)
        mse = 2 * ((1 - c) ** 2 * s ** 2 + c ** 2 * sigma ** 2)
        assert abs(float(vals.mean()) - mse) < 5 * float(vals.std()) / math.sqrt(n) + 1e-9, (c, float(vals.mean()), mse)
    with pytest.raises(ValueError, match="sigma"):
        ebm.sure(ebm.shrinkage(0.5), xn, 0.0)
    with pytest.raises(ValueError, match="shape of its input"):
        ebm.sure(lambda y: y[:, :1], xn, 0.5)
    with pytest.raises(ValueError, match="c must be"):
        ebm.shrinkage(float("nan"))
