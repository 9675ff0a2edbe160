"""Bad input to the chapter 04-06 functions: a clear ValueError naming the argument, before any work."""
import pytest
import torch

import dpm_lab as dl
from dpm_lab import dynamics, likelihood, losses, param, reflow, samplers

MIX = dl.datasets.eight_gaussians_mixture()
NAN = torch.tensor([[float("nan"), 0.0], [0.0, 1.0]], dtype=torch.float64)


@pytest.fixture
def model():
    return MIX.model(dl.RectifiedFlow())


def test_swappable_pairs_refuses_nan_and_keeps_its_old_name():
    ok = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="x_start contains NaN"):
        reflow.swappable_pairs(NAN, NAN)
    with pytest.raises(ValueError, match="x_end contains NaN"):
        reflow.crossings(ok[:2], NAN)
    assert reflow.crossings is reflow.swappable_pairs


def test_log_likelihood_nan_and_empty(model):
    with pytest.raises(ValueError, match="x0 contains NaN"):
        likelihood.log_likelihood(model, NAN)
    with pytest.raises(ValueError, match="x0 is an empty batch"):
        likelihood.log_likelihood(model, torch.zeros(0, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="x0 contains NaN"):
        likelihood.ddpm_elbo(MIX.model(dl.VPLinear()), NAN, steps=4)


def test_diffusion_loss_shapes_named():
    loss = losses.elbo_loss(dl.VPLinear())
    m = MIX.model(dl.VPLinear())
    x0 = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="eps must be a tensor of x0's shape"):
        loss(m, x0, eps=torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"t must be .* shape \(4,\)"):
        loss(m, x0, t=torch.full((3,), 0.5))
    with pytest.raises(ValueError, match="x0 must have shape"):
        loss(m, torch.zeros(4, dtype=torch.float64))
    assert loss(m, x0, t=0.5, eps=torch.ones_like(x0)).shape == (4,)          # the good calls still work
    assert losses.dsm(dl.VEGeometric())(MIX.model(dl.VEGeometric()), x0, t=torch.full((4,), 0.3)).shape == (4,)
    assert not hasattr(losses, "ddpm_elbo")                                  # the name belongs to likelihood alone


def test_nan_inputs_raise_instead_of_returning_nan(model):
    sch = dl.RectifiedFlow()
    with pytest.raises(ValueError, match="x_t contains NaN.*posterior_cov"):
        MIX.posterior_cov(NAN, 0.5, sch)
    with pytest.raises(ValueError, match="x_t contains NaN.*score_hessian"):
        MIX.score_hessian(NAN, 0.5, sch)
    with pytest.raises(ValueError, match="value contains NaN"):
        param.convert(sch, torch.zeros(2, 2), 0.5, NAN.float(), "eps", "x0")
    with pytest.raises(ValueError, match="x_t contains NaN"):
        param.convert(sch, NAN, 0.5, torch.zeros(2, 2, dtype=torch.float64), "eps", "x0")
    with pytest.raises(ValueError, match="true_score contains NaN"):
        losses.explicit_score_matching(torch.zeros(2, 2, dtype=torch.float64), NAN)
    with pytest.raises(ValueError, match="x contains NaN or inf at s = 0.5"):
        dynamics.gamma_sde_step(model, NAN, 0.5, 0.4, generator=torch.Generator().manual_seed(0))
    # finite input: unchanged answers
    x = MIX.sample(3, generator=torch.Generator().manual_seed(1)).double()
    assert torch.isfinite(MIX.posterior_cov(x, 0.5, sch)).all()
    torch.testing.assert_close(param.convert(sch, x, 0.5, x, "x0", "x0"), x)


def test_sample_validates_before_the_first_step(model):
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="unknown"):
        samplers.sample(model, x, 4, "eulr")                     # raised at the call, not when iterated
    with pytest.raises(ValueError, match="nfe"):
        samplers.sample(model, x, method="euler", nfe=0)
    with pytest.raises(ValueError, match="x_T"):
        samplers.sample(model, torch.zeros(3), 4, "euler")
    recs = list(samplers.sample(model, x, 4, "euler"))
    assert len(recs) == 5 and recs[-1].nfe == 4
