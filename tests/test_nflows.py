"""dpm_lab.nflows: every log-determinant against autograd, inverses, the stacked change of variables as a
density (it integrates to 1), the residual power series, the CNF log-density against closed forms and the
package's likelihood ODE, and MLE training lowering the NLL."""
import math

import pytest
import torch

import dpm_lab as dl
from dpm_lab import nflows

D64 = torch.float64


def _x(n=6, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=D64)


def _perturbed(flow, seed=1, scale=0.4):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


@pytest.mark.parametrize("kind", ["planar", "coupling"])
def test_layer_logdet_matches_autograd_jacobian(kind):
    flow = (nflows.planar_flow(3, seed=2) if kind == "planar" else nflows.coupling_flow(3)).double()
    _perturbed(flow)
    x = _x()
    for layer in flow.layers:
        z, ld = layer(x)
        ref = nflows.autograd_logdet(lambda y, layer=layer: layer(y)[0], x)
        assert torch.allclose(ld, ref, atol=1e-10)
        x = z.detach()


def test_planar_determinant_lemma_by_hand():
    layer = nflows.PlanarLayer(2, generator=torch.Generator().manual_seed(3)).double()
    x = _x()
    u, w = layer.u_hat(), layer.w
    h1 = 1 - torch.tanh(x @ w + layer.b) ** 2
    jac = torch.eye(2, dtype=D64) + h1[:, None, None] * u[:, None] * w[None, :]     # I + h' u w^T
    assert torch.allclose(layer(x)[1], torch.linalg.det(jac).abs().log(), atol=1e-12)
    assert float((w @ u).detach()) > -1                                                          # invertibility


@pytest.mark.parametrize("kind", ["planar", "coupling"])
def test_inverse_undoes_forward(kind):
    flow = _perturbed((nflows.planar_flow(5, seed=4) if kind == "planar" else nflows.coupling_flow(4)).double())
    x = 2 * _x(50)
    z, _ = flow.to_latent(x)
    assert torch.allclose(flow.inverse(z), x, atol=1e-9)


def test_stacked_change_of_variables_integrates_to_one():
    # a Riemann sum on [-8, 8]^2 with step 0.04: the density's tails beyond are below 1e-6
    flow = _perturbed(nflows.coupling_flow(4, hidden=16, scale=1.5).double(), seed=5, scale=0.15)
    grid = torch.linspace(-8, 8, 401, dtype=D64)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    with torch.no_grad():
        p = flow.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp()
    assert abs(float(p.sum()) * 0.04 ** 2 - 1) < 2e-3


def test_stack_log_prob_is_prior_plus_sum_of_logdets():
    flow = _perturbed(nflows.planar_flow(4, seed=6).double())
    x = _x()
    z, total = x, torch.zeros(6, dtype=D64)
    for layer in flow.layers:
        total = total + nflows.autograd_logdet(lambda y, layer=layer: layer(y)[0], z)
        z = layer(z)[0].detach()
    want = -0.5 * (z ** 2).sum(1) - math.log(2 * math.pi) + total
    assert torch.allclose(flow.log_prob(x), want, atol=1e-10)


def test_logdet_series_converges_to_slogdet():
    g = torch.Generator().manual_seed(7)
    jac = 0.2 * torch.randn(4, 3, 3, generator=g, dtype=D64)            # spectral radius about 0.4
    exact = torch.linalg.slogdet(torch.eye(3, dtype=D64) + jac)[1]
    errs = [float((nflows.logdet_series(jac, n) - exact).abs().max()) for n in (2, 6, 40)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-10


def test_cnf_linear_flow_matches_gaussian_closed_form():
    # v(x, t) = a x carries N(0, e^{-2a}) at t = 0 to N(0, 1) at t = 1: log p_0 is that Gaussian, exactly
    a = 0.7
    x = _x()
    got = nflows.cnf_log_prob(lambda y, t: a * y, x, n_steps=16)
    var = math.exp(-2 * a)
    want = -0.5 * (x ** 2).sum(1) / var - math.log(2 * math.pi * var)
    assert torch.allclose(got, want, atol=1e-7)


def test_cnf_log_prob_matches_package_likelihood_on_exact_mixture():
    mix = dl.GaussianMixture([0.4, 0.6], [[-1.0, 0.5], [1.0, -0.5]], stds=[0.5, 0.7])
    model = mix.model(dl.RectifiedFlow())
    x = _x(4).mul(0.8)
    ours = nflows.cnf_log_prob(lambda y, t: model.predict(y, t, "velocity"), x, n_steps=64)
    assert torch.allclose(ours, dl.likelihood.log_likelihood(model, x), atol=1e-5)
    assert torch.allclose(ours, mix.log_prob(x), atol=1e-5)


def test_cnf_log_prob_leaves_the_input_alone():
    x = _x()
    nflows.cnf_log_prob(lambda y, t: 0.5 * y, x, n_steps=2)
    assert not x.requires_grad


def test_cnf_log_prob_is_differentiable():
    a = torch.tensor(0.3, dtype=D64, requires_grad=True)
    nflows.cnf_log_prob(lambda y, t: a * y, _x(), n_steps=4).sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad)


@pytest.mark.slow
def test_mle_training_lowers_nll():
    flow = nflows.coupling_flow(2, hidden=16, scale=1.5)
    data = lambda n, generator=None: dl.datasets.sample_2d("moons", n, generator=generator).float()  # noqa: E731
    x = data(1000, generator=torch.Generator().manual_seed(0))
    before = float(nflows.nll_loss(flow, x).mean().detach())
    dl.train.train(flow, nflows.nll_loss, data, steps=80, batch=128, lr=3e-3, ema=None)
    assert float(nflows.nll_loss(flow, x).mean().detach()) < before - 0.2


def test_sample_uses_the_generator():
    flow = nflows.coupling_flow(2)
    a = flow.sample(10, generator=torch.Generator().manual_seed(1))
    b = flow.sample(10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (10, 2)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="n_layers"):
        nflows.planar_flow(0)
    with pytest.raises(ValueError, match="mask"):
        nflows.AffineCoupling([1.0, 1.0])
    with pytest.raises(ValueError, match="x"):
        nflows.coupling_flow(2).log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="n_terms"):
        nflows.logdet_series(torch.zeros(1, 2, 2), 0)
    with pytest.raises(ValueError, match="jac"):
        nflows.logdet_series(torch.zeros(2, 2), 3)
    with pytest.raises(ValueError, match="n_steps"):
        nflows.cnf_log_prob(lambda y, t: y, _x(), n_steps=0)
    with pytest.raises(ValueError, match="n"):
        nflows.coupling_flow(2).sample(0)
    with pytest.raises(TypeError, match="x0"):
        nflows.cnf_log_prob(lambda y, t: y, [[0.0, 1.0]])
