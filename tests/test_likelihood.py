"""Likelihoods on exact fields: PF-ODE log-density vs the closed form (exact divergence and Hutchinson),
the DDPM ELBO's terms vs their Gaussian closed forms, bits/dim, PF-ODE encode/decode."""
import math

import pytest
import torch
from stand_ins import EpsNet

from dpm_lab import gmm, schedules
from dpm_lab import likelihood as lk


def _mixture():
    covs = [[[0.3, 0.1], [0.1, 0.15]], [[0.1, 0.0], [0.0, 0.4]]]
    return gmm.GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.3]], covs)


def _gaussian():
    return gmm.GaussianMixture([1.0], [[0.5, -1.0]], [[[0.5, 0.2], [0.2, 0.3]]])


@pytest.mark.parametrize("mix", [_gaussian(), _mixture()], ids=["gaussian", "mixture"])
@pytest.mark.parametrize("sched", [schedules.VPLinear(), schedules.EDM(sigma_max=20.0)], ids=lambda s: s.name)
def test_pf_ode_likelihood_matches_closed_form(mix, sched, gen):
    model = mix.model(sched)
    x0 = mix.sample(6, generator=gen, dtype=torch.float64)
    exact_prior = lambda x: mix.log_prob_t(x, 1.0, sched)  # noqa: E731
    logp = lk.log_likelihood(model, x0, t_min=0.0, prior=exact_prior)
    torch.testing.assert_close(logp, mix.log_prob(x0), rtol=0, atol=1e-5)
    # the default N(0, sigma_1^2) prior is only slightly off (alpha_1 = 0.0066 for VP; for EDM p_1 has
    # covariance 400 I + Cov(x0), not 400 I)
    tol = 2e-2 if sched.name == "vp" else 0.1
    assert (lk.log_likelihood(model, x0, t_min=0.0) - mix.log_prob(x0)).abs().max() < tol




@pytest.mark.parametrize("sched", [schedules.VPLinear(), schedules.Cosine(), schedules.EDM(sigma_max=20.0),
                                   schedules.RectifiedFlow()], ids=lambda s: s.name)
def test_the_default_is_the_data_log_density(sched, gen):
    """log_likelihood(model, x) is log p_0(x): integrated from t = 0 for exact models on every schedule."""
    mix = _mixture()
    model = mix.model(sched)
    x0 = mix.sample(6, generator=gen, dtype=torch.float64)
    assert lk.data_time(model, x0) == 0.0
    res = lk.log_likelihood(model, x0, prior=lambda x: mix.log_prob_t(x, 1.0, sched), details=True)
    assert isinstance(res, lk.Likelihood) and res.t_min == 0.0 and res.t_max == 1.0 and res.x_T.shape == x0.shape
    torch.testing.assert_close(res.logp, mix.log_prob(x0), rtol=0, atol=1e-5)
    if sched.name == "vp":    # p_{t_eps} differs from p_0 by 10x the tolerance above: the default matters
        early = lk.log_likelihood(model, x0, t_min=sched.t_eps, prior=lambda x: mix.log_prob_t(x, 1.0, sched))
        assert (early - mix.log_prob(x0)).abs().max() > 1e-4


def test_where_the_field_diverges_at_0_the_time_is_t_eps_and_said(gen):
    """An eps-network on VP: v = alpha' x0 + sigma' eps with sigma' = inf at t = 0, so t_min = t_eps."""
    mix = _mixture()
    vp = schedules.VPLinear()
    x0 = mix.sample(4, generator=gen, dtype=torch.float64)
    net = EpsNet(mix, vp)
    assert lk.data_time(net, x0) == vp.t_eps
    res = lk.log_likelihood(net, x0, prior=lambda x: mix.log_prob_t(x, 1.0, vp), details=True)
    assert res.t_min == vp.t_eps
    torch.testing.assert_close(res.logp, mix.log_prob_t(x0, vp.t_eps, vp), rtol=0, atol=1e-5)
    edm = schedules.EDM(sigma_max=20.0)                 # sigma_t linear near 0: finite at t = 0
    assert lk.data_time(EpsNet(mix, edm), x0) == 0.0
    pts = gmm.PointSet(mix.sample(5, generator=gen, dtype=torch.float64))
    assert lk.data_time(pts.model(vp), x0) == vp.t_eps  # a point set has no density at t = 0


def test_sign_matters(gen):
    """Flipping the sign of the divergence integral (the book's slip) is far off."""
    mix, sched = _mixture(), schedules.VPLinear()
    x0 = mix.sample(6, generator=gen, dtype=torch.float64)
    res = lk.log_likelihood(mix.model(sched), x0, details=True)
    logp, x_T = res.logp, res.x_T
    prior = lk.gaussian_log_prob(x_T, 1.0)
    wrong = prior - (logp - prior)
    assert (wrong - mix.log_prob(x0)).abs().min() > 1.0


def test_hutchinson_is_unbiased(gen):
    mix, sched = _mixture(), schedules.VPLinear()
    x0 = mix.sample(4, generator=gen, dtype=torch.float64)
    reps = 48
    est = lk.log_likelihood(mix.model(sched), x0.repeat(reps, 1), t_min=0.0, method="hutchinson",
                            prior=lambda x: mix.log_prob_t(x, 1.0, sched), generator=gen).reshape(reps, 4)
    se = est.std(0) / math.sqrt(reps)
    assert ((est.mean(0) - mix.log_prob(x0)).abs() < 4 * se + 1e-6).all()
    assert (se > 1e-3).all()  # a real estimator, not the exact trace in disguise


def test_divergence_of_linear_maps(gen):
    A = torch.tensor([[1.0, 2.0, 0.0], [-1.0, 0.5, 3.0], [0.0, 1.0, -2.0]], dtype=torch.float64)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    fn = lambda y: y @ A.T  # noqa: E731
    torch.testing.assert_close(lk.divergence(fn, x), torch.full((5,), -0.5, dtype=torch.float64))
    probes = torch.randint(0, 2, (2000, 5, 3), generator=gen).double() * 2 - 1
    hut = lk.divergence(fn, x, method="hutchinson", probes=probes)
    assert (hut + 0.5).abs().max() < 0.3
    diag = lambda y: y * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)  # noqa: E731
    torch.testing.assert_close(lk.divergence(diag, x, method="hutchinson", probes=probes[:1]),
                               torch.full((5,), 6.0, dtype=torch.float64))   # Rademacher: exact on diagonals


def test_ddpm_elbo_terms_match_gaussian_closed_forms(gen):
    """For x0 ~ N(mu, s^2 I): E||x0 - x0*(x_i)||^2 = D s^2 sigma_i^2 / (alpha_i^2 s^2 + sigma_i^2)."""
    mu, s, D, L, B = torch.tensor([0.5, -1.0]), 0.6, 2, 40, 3000
    mix = gmm.GaussianMixture([1.0], mu[None], stds=s)
    sched = schedules.VPLinear()
    x0 = mix.sample(B, generator=gen, dtype=torch.float64)
    terms = lk.ddpm_elbo(mix.model(sched), x0, steps=L, generator=gen)
    ts = torch.arange(L + 1, dtype=torch.float64) / L
    a, sg = sched.alpha(ts), sched.sigma(ts)
    snr, mmse = (a / sg) ** 2, D * s ** 2 * sg ** 2 / (a ** 2 * s ** 2 + sg ** 2)
    expect_diff = (0.5 * (snr[1:-1] - snr[2:]) * mmse[2:]).sum()
    std = (sg[1] / a[1]).item()
    expect_recon = 0.5 * mmse[1] / std ** 2 + D * math.log(std) + 0.5 * D * math.log(2 * math.pi)
    for key, want in [("diffusion", expect_diff), ("recon", expect_recon)]:
        got, se = terms[key].mean(), terms[key].std() / math.sqrt(B)
        assert abs(got - want) < 4 * se, (key, got.item(), want.item(), se.item())
    q = torch.distributions.Normal(a[-1] * x0, sg[-1])
    p = torch.distributions.Normal(torch.zeros_like(x0), sched.sigma(1.0))
    torch.testing.assert_close(terms["prior"], torch.distributions.kl_divergence(q, p).sum(1))
    torch.testing.assert_close(terms["nll"], terms["prior"] + terms["recon"] + terms["diffusion"])


def test_ddpm_elbo_bounds_the_nll(gen):
    mix = _mixture()
    for sched, steps in [(schedules.VPLinear(), 100), (schedules.DiscreteSchedule.linear(100, 1e-3, 0.1), None)]:
        x0 = mix.sample(1000, generator=gen, dtype=torch.float64)
        nll = lk.ddpm_elbo(mix.model(sched), x0, steps=steps, generator=gen)["nll"]
        gap = nll + mix.log_prob(x0)
        assert gap.mean() > 4 * gap.std() / math.sqrt(1000) * -1
        assert 0 < gap.mean() < 3.0


def test_bits_per_dim():
    nll = torch.tensor([2 * 3 * math.log(2)])
    torch.testing.assert_close(lk.bits_per_dim(nll, 3), torch.tensor([2.0]))
    torch.testing.assert_close(lk.bits_per_dim(torch.zeros(1), 1, bin_width=0.5), torch.tensor([1.0]))


def test_encode_decode_round_trip(gen):
    mix, sched = _mixture(), schedules.VPLinear()
    model = mix.model(sched)
    x0 = mix.sample(32, generator=gen, dtype=torch.float64)
    z = lk.encode(model, x0)
    assert (z - x0).abs().max() > 0.5
    torch.testing.assert_close(lk.decode(model, z), x0, rtol=0, atol=1e-7)
    torch.testing.assert_close(z, mix.flow_map(x0, 0.0, 1.0, sched), rtol=1e-7, atol=1e-7)   # from t = 0


def test_bad_inputs(gen):
    model = _mixture().model(schedules.VPLinear())
    x = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="method"):
        lk.log_likelihood(model, x, method="skilling")
    with pytest.raises(ValueError, match="t_min"):
        lk.log_likelihood(model, x, t_min=0.5, t_max=0.5)
    with pytest.raises(ValueError, match="n_probes"):
        lk.log_likelihood(model, x, method="hutchinson", n_probes=0)
    with pytest.raises(ValueError, match="steps"):
        lk.ddpm_elbo(model, x, steps=0)
    with pytest.raises(ValueError, match="bin_width"):
        lk.bits_per_dim(torch.zeros(1), 2, bin_width=0.0)
    with pytest.raises(TypeError, match="x0"):
        lk.log_likelihood(model, x.numpy())


def test_hutchinson_variance_matches_monte_carlo():
    """The exact variance of u^T A u against the sample variance of many probes (4 standard errors)."""
    from dpm_lab.likelihood import hutchinson_variance
    g = torch.Generator().manual_seed(3)
    A = torch.randn(4, 4, generator=g, dtype=torch.float64)
    n = 40000
    for probe in ("rademacher", "gaussian"):
        u = (torch.randint(0, 2, (n, 4), generator=g).double() * 2 - 1 if probe == "rademacher"
             else torch.randn(n, 4, generator=g, dtype=torch.float64))
        est = torch.einsum("ni,ij,nj->n", u, A, u)
        assert abs(float(est.mean()) - float(torch.trace(A))) < 4 * float(est.std()) / n ** 0.5
        want = float(hutchinson_variance(A, probe=probe))
        # the sample variance's standard error: sqrt((m4 - var^2) / n)
        m4 = float(((est - est.mean()) ** 4).mean())
        assert abs(float(est.var()) - want) < 4 * ((m4 - want ** 2) / n) ** 0.5
    assert torch.isclose(hutchinson_variance(A, 8), hutchinson_variance(A) / 8)
    assert float(hutchinson_variance(torch.diag(torch.tensor([1.0, 2.0])))) == 0.0   # diagonal: exact with Rademacher
    with pytest.raises(ValueError, match="n_probes"):
        hutchinson_variance(A, 0)
    with pytest.raises(ValueError, match="probe"):
        hutchinson_variance(A, probe="uniform")
    with pytest.raises(ValueError, match="jacobian"):
        hutchinson_variance(torch.zeros(3, 2))
