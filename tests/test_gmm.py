"""Exact ground truth: mixture fields against autograd, Tweedie, Gaussian conditioning,
class posteriors, point sets, and the reference PF-ODE flow map."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from schedule_cases import SCHED_IDS, SCHEDULES

import dpm_lab as dl

TIMES = [0.0, 0.02, 0.3, 0.7, 1.0]


def logp_grad(mix, x, t, sched, c=None):
    x = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(mix.log_prob_t(x, t, sched, c).sum(), x)
    return g


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
@pytest.mark.parametrize("t", TIMES)
def test_score_is_autograd_of_log_prob(mixture2d, sched, t, gen):
    x = mixture2d.sample_marginal(16, t, sched, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(mixture2d.score(x, t, sched), logp_grad(mixture2d, x, t, sched), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_tweedie_and_field_identities(mixture2d, sched, gen):
    # Tweedie (§3.3.4): alpha_t E[x0 | x_t] = x_t + sigma_t^2 score, with x0* from Gaussian conditioning
    for t in (0.02, 0.3, 0.7):
        x = mixture2d.sample_marginal(16, t, sched, generator=gen, dtype=torch.float64)
        a, s = sched.alpha(t), sched.sigma(t)
        x0, eps, score = mixture2d.x0(x, t, sched), mixture2d.eps(x, t, sched), mixture2d.score(x, t, sched)
        torch.testing.assert_close(a * x0, x + s ** 2 * score, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(a * x0 + s * eps, x, rtol=1e-9, atol=1e-9)
        tt = torch.tensor(t, dtype=torch.float64)
        if isinstance(sched, dl.DiscreteSchedule):
            tt = (torch.floor(tt * sched.L) + 0.5) / sched.L
            x0, eps = mixture2d.x0(x, tt, sched), mixture2d.eps(x, tt, sched)
        vel = sched.d_alpha(tt) * x0 + sched.d_sigma(tt) * eps
        torch.testing.assert_close(mixture2d.velocity(x, tt, sched), vel, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(mixture2d.v(x, tt, sched), sched.alpha(tt) * eps - sched.sigma(tt) * x0)
        for k in dl.KINDS:
            torch.testing.assert_close(mixture2d.predict(x, tt, sched, k),
                                       dl.convert(sched, x, tt, eps, "eps", k), rtol=1e-8, atol=1e-8)


def test_single_gaussian_posterior_mean_formula(gen):
    # monograph map Ch. 2(e): for x0 ~ N(mu, s^2), E[x0|x_i] = mu + ab s^2/(ab^2 s^2 + 1 - ab^2) (x - ab mu)
    mu, s = 1.5, 0.7
    g = dl.GaussianMixture([1.0], [[mu]], stds=s)
    sched = dl.VPLinear()
    x = torch.randn(10, 1, generator=gen, dtype=torch.float64)
    for t in (0.1, 0.5, 0.9):
        ab = sched.alpha(t)
        expect = mu + ab * s ** 2 / (ab ** 2 * s ** 2 + 1 - ab ** 2) * (x - ab * mu)
        torch.testing.assert_close(g.x0(x, t, sched), expect)


def test_x0_star_minimises_mse(mixture2d, gen):
    # the Bayes denoiser beats perturbed versions of itself in Monte Carlo MSE (n = 20000)
    sched = dl.EDM(5.0)
    t = 0.2
    x0, lab = mixture2d.sample(20000, generator=gen, dtype=torch.float64, return_labels=True)
    xt = x0 + sched.sigma(t) * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    den = mixture2d.x0(xt, t, sched)
    mse = ((den - x0) ** 2).sum(1).mean()
    for shift in (0.1 * torch.ones(2, dtype=torch.float64), 0.05 * xt, 0.1 * torch.randn(2, generator=gen, dtype=torch.float64)):
        assert mse < ((den + shift - x0) ** 2).sum(1).mean()
    # and its residual is uncorrelated with functions of x_t (orthogonality of conditional expectation)
    resid = x0 - den
    for h in (xt[:, :1], torch.tanh(xt[:, 1:])):
        corr = (resid * h).mean(0)
        se = (resid * h).std(0) / math.sqrt(len(xt))
        assert (corr.abs() < 4 * se).all()


def test_class_posterior_and_conditional_fields(mixture2d, gen):
    sched = dl.VPLinear()
    t = 0.4
    x = mixture2d.sample_marginal(12, t, sched, generator=gen, dtype=torch.float64)
    post = mixture2d.class_posterior(x, t, sched)
    torch.testing.assert_close(post.sum(1), torch.ones(12, dtype=torch.float64))
    for c in (0, 1):
        # Bayes (§8.1, Eq. guidance_bayes): grad log p_t(x|c) = grad log p_t(x) + grad log p_t(c|x)
        xr = x.clone().requires_grad_(True)
        glogc, = torch.autograd.grad(torch.log(mixture2d.class_posterior(xr, t, sched)[:, c]).sum(), xr)
        torch.testing.assert_close(mixture2d.score(x, t, sched, c=c), mixture2d.score(x, t, sched) + glogc)
        # the conditional field equals the field of the class's own mixture
        torch.testing.assert_close(mixture2d.x0(x, t, sched, c=c), mixture2d.conditional(c).x0(x, t, sched))
    # per-sample classes
    cs = torch.tensor([0, 1] * 6)
    both = mixture2d.eps(x, t, sched, c=cs)
    torch.testing.assert_close(both[0::2], mixture2d.eps(x[0::2], t, sched, c=0))
    torch.testing.assert_close(both[1::2], mixture2d.eps(x[1::2], t, sched, c=1))


def test_marginal_mixture_matches(mixture2d, gen):
    sched = dl.Cosine()
    x = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    m = mixture2d.marginal(0.45, sched)
    torch.testing.assert_close(m.log_prob(x), mixture2d.log_prob_t(x, 0.45, sched))
    torch.testing.assert_close(m.data_score(x), mixture2d.score(x, 0.45, sched))


def test_log_prob_normalised():
    g = dl.GaussianMixture([0.4, 0.6], [[-1.0], [2.0]], stds=[0.5, 1.0])
    grid = torch.linspace(-8, 10, 20001, dtype=torch.float64)[:, None]
    assert float(torch.trapezoid(g.log_prob(grid).exp(), grid[:, 0])) == pytest.approx(1, abs=1e-8)


def test_mixture_moments(mixture2d, gen):
    x = mixture2d.sample(50000, generator=gen, dtype=torch.float64)
    se = mixture2d.cov().diagonal().sqrt() / math.sqrt(len(x))
    assert ((x.mean(0) - mixture2d.mean()).abs() < 4 * se).all()
    torch.testing.assert_close(torch.cov(x.T), mixture2d.cov(), atol=0.03, rtol=0.03)


def test_point_set_softmax_posterior(gen):
    pts = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    ps = dl.PointSet(pts)
    sched = dl.RectifiedFlow()
    t = 0.35
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    # §6.1 worked example, written out directly
    a, s = 1 - t, t
    logits = -((x[:, None, :] - a * pts[None]) ** 2).sum(-1) / (2 * s ** 2)
    w = torch.softmax(logits, 1)
    x0 = w @ pts
    torch.testing.assert_close(ps.x0(x, t, sched), x0)
    torch.testing.assert_close(ps.score(x, t, sched), -(x - a * x0) / s ** 2)
    vel = (w[:, :, None] * (-pts[None] + (x[:, None, :] - a * pts[None]) / s)).sum(1)   # §6.1, v*
    torch.testing.assert_close(ps.velocity(x, t, sched), vel)
    torch.testing.assert_close(ps.score(x, t, sched), logp_grad(ps, x, t, sched))
    with pytest.raises(ValueError, match="t > 0"):
        ps.x0(x, 0.0, sched)


@pytest.mark.parametrize("sched", [dl.VPLinear(), dl.EDM(10.0), dl.RectifiedFlow()], ids=["vp", "edm", "flow"])
def test_flow_map_carries_marginals(mixture2d, sched, gen):
    # PF-ODE flow map (§4.1.4): p_1 pushed to t = 0 is p_data; moments within Monte Carlo error
    n = 3000
    x1 = mixture2d.sample_marginal(n, 1.0, sched, generator=gen, dtype=torch.float64)
    x0 = mixture2d.flow_map(x1, 1.0, 0.0, sched, rtol=1e-8, atol=1e-8)
    cov = mixture2d.cov()
    se = cov.diagonal().sqrt() / math.sqrt(n)
    assert ((x0.mean(0) - mixture2d.mean()).abs() < 4 * se).all()
    # variance estimate: standard error about sqrt(2/n) * var for near-Gaussian data (loose factor 6)
    assert ((torch.cov(x0.T).diagonal() - cov.diagonal()).abs() < 6 * math.sqrt(2 / n) * cov.diagonal()).all()
    # invertible: back to t = 1 recovers the start
    torch.testing.assert_close(mixture2d.flow_map(x0[:50], 0.0, 1.0, sched), x1[:50], rtol=1e-6, atol=1e-6)


def test_flow_semigroup_and_trajectory(mixture2d, gen):
    sched = dl.Cosine()
    x = torch.randn(20, 2, generator=gen, dtype=torch.float64)
    traj = mixture2d.flow(x, [0.9, 0.6, 0.3], sched)
    assert traj.shape == (3, 20, 2)
    torch.testing.assert_close(traj[0], x)
    torch.testing.assert_close(mixture2d.flow_map(traj[1], 0.6, 0.3, sched), traj[2], rtol=1e-7, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(t=st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1)), idx=st.integers(0, len(SCHEDULES) - 1),
       kind=st.sampled_from(dl.KINDS))
def test_fields_finite_or_clear_error(t, idx, kind):
    mix = dl.GaussianMixture([0.5, 0.5], [[0.0, 1.0], [2.0, -1.0]], stds=[0.3, 0.6])
    x = torch.tensor([[0.1, 0.2], [3.0, -4.0]], dtype=torch.float64)
    try:
        out = mix.predict(x, t, SCHEDULES[idx], kind)
    except ValueError as err:
        assert "t" in str(err)
        return
    assert torch.isfinite(out).all()


def test_bad_input():
    with pytest.raises(ValueError, match="weights must sum to 1"):
        dl.GaussianMixture([0.5, 0.6], [[0.0], [1.0]], stds=1.0)
    with pytest.raises(ValueError, match="weights must be non-negative"):
        dl.GaussianMixture([1.5, -0.5], [[0.0], [1.0]], stds=1.0)
    with pytest.raises(ValueError, match="covs must be positive definite"):
        dl.GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(ValueError, match="covs must have shape"):
        dl.GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0]]])
    with pytest.raises(ValueError, match="stds must be positive definite"):
        dl.GaussianMixture([1.0], [[0.0]], stds=0.0)
    mix = dl.GaussianMixture([1.0], [[0.0, 0.0]], stds=1.0)
    with pytest.raises(ValueError, match=r"x_t must have shape \(B, 2\)"):
        mix.score(torch.zeros(3, 3), 0.5, dl.VPLinear())
    with pytest.raises(TypeError, match="floating"):
        mix.score([[0.0, 0.0]], 0.5, dl.VPLinear())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mix.score(torch.zeros(3, 2), -0.1, dl.VPLinear())
    with pytest.raises(ValueError, match="no labels"):
        mix.x0(torch.zeros(3, 2), 0.5, dl.VPLinear(), c=0)


def test_marginal_reads_time_then_schedule(mixture2d, gen):
    sched = dl.VPLinear()
    with pytest.raises(TypeError, match=r"marginal\(t, schedule\)"):
        mixture2d.marginal(sched, 0.3)
    with pytest.raises(ValueError, match="scalar t"):
        mixture2d.marginal(torch.tensor([0.1, 0.2]), sched)
    pts = dl.PointSet(dl.utils.randn((5, 2), generator=gen, dtype=torch.float64))
    x = dl.utils.randn((4, 2), generator=gen, dtype=torch.float64)
    torch.testing.assert_close(pts.marginal(0.3, sched).log_prob(x), pts.log_prob_t(x, 0.3, sched))
    with pytest.raises(ValueError, match="sigma_t = 0"):
        pts.marginal(0.0, sched)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fields_follow_the_input_device_and_dtype(mixture2d, dtype, device, gen):
    # every field is computed in float64 and returned on x_t's device in x_t's dtype (run with --device cuda too)
    sched = dl.Cosine()
    x = mixture2d.sample_marginal(5, 0.4, sched, generator=gen, dtype=dtype, device=device)
    assert x.device.type == device.type and x.dtype == dtype
    t_per_sample = torch.full((5,), 0.4, dtype=torch.float64, device=device)
    outs = [mixture2d.predict(x, t, sched, k, c) for k in dl.KINDS for t in (0.4, t_per_sample) for c in (None, 1)]
    outs += [mixture2d.class_posterior(x, 0.4, sched), mixture2d.responsibilities(x, 0.4, sched),
             mixture2d.log_prob_t(x, 0.4, sched, c=torch.tensor([0, 1, 0, 1, 1], device=device)),
             mixture2d.model(sched).predict(x, t_per_sample, "v", torch.tensor([0, 1, 2, 2, 0], device=device))]
    for out in outs:
        assert out.device.type == device.type and out.dtype == dtype
    torch.testing.assert_close(outs[-4].sum(1), torch.ones(5, dtype=dtype, device=device))
    ref = mixture2d.score(x.double().cpu(), 0.4, sched)
    torch.testing.assert_close(mixture2d.score(x, 0.4, sched).cpu().double(), ref,
                               rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=1e-6)


def test_sampling_draws_on_the_generator_then_moves(mixture2d, device):
    # the same seed gives the same points wherever they are sent (utils.randn's contract)
    sched = dl.VPLinear()
    a, lab_a = mixture2d.sample(50, generator=torch.Generator().manual_seed(3), return_labels=True)
    b, lab_b = mixture2d.sample(50, generator=torch.Generator().manual_seed(3), device=device, return_labels=True)
    assert b.device.type == device.type and lab_b.device.type == device.type
    torch.testing.assert_close(b.cpu(), a)
    assert torch.equal(lab_b.cpu(), lab_a)
    xa = mixture2d.sample_marginal(50, 0.5, sched, generator=torch.Generator().manual_seed(4))
    xb = mixture2d.sample_marginal(50, 0.5, sched, generator=torch.Generator().manual_seed(4), device=device)
    torch.testing.assert_close(xb.cpu(), xa)
    # x_t = alpha x0 + sigma eps with the same draws in the same order (x0 first, then eps)
    g = torch.Generator().manual_seed(4)
    x0 = mixture2d.sample(50, generator=g, dtype=torch.float64)
    eps = dl.utils.randn((50, 2), generator=g, dtype=torch.float64)
    torch.testing.assert_close(xa, (sched.alpha(0.5) * x0 + sched.sigma(0.5) * eps).float())
    per_t = torch.linspace(0.1, 0.9, 50, dtype=torch.float64, device="cpu")
    xc = mixture2d.sample_marginal(50, per_t, sched, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    torch.testing.assert_close(xc, sched.alpha(per_t)[:, None] * x0 + sched.sigma(per_t)[:, None] * eps)
    only1 = mixture2d.sample(200, generator=torch.Generator().manual_seed(5), c=1, return_labels=True)[1]
    assert (only1 == 1).all()
    with pytest.raises(ValueError, match="one class"):
        mixture2d.sample(3, c=torch.tensor([0, 1, 1]))


def test_mixture_model_null_label_means_no_condition(mixture2d, gen):
    # the exact class-conditional model: labels 0..K-1 condition, label K (the networks' null) is the full mixture
    sched = dl.VPLinear()
    x = mixture2d.sample_marginal(6, 0.35, sched, generator=gen, dtype=torch.float64)
    model = mixture2d.model(sched)
    assert model.null_label == mixture2d.n_classes == 2
    c = torch.tensor([0, 2, 1, 2, 1, 0])
    t = torch.tensor([0.2, 0.35, 0.5, 0.6, 0.35, 0.8], dtype=torch.float64)
    for kind in dl.KINDS:
        got = model.predict(x, t, kind, c)
        for b in range(6):
            cb = None if int(c[b]) == 2 else int(c[b])
            expect = mixture2d.predict(x[b:b + 1], float(t[b]), sched, kind, cb)
            torch.testing.assert_close(got[b:b + 1], expect, rtol=1e-12, atol=1e-12, msg=f"{kind} sample {b}")
    torch.testing.assert_close(model.eps(x, 0.35, 2), mixture2d.eps(x, 0.35, sched))
    torch.testing.assert_close(model.score(x, 0.35, 1), mixture2d.score(x, 0.35, sched, c=1))
    torch.testing.assert_close(mixture2d.model(sched, c=0).x0(x, 0.35), mixture2d.x0(x, 0.35, sched, c=0))
    torch.testing.assert_close(model(x, 0.35, c), model.predict(x, 0.35, "eps", c))
    torch.testing.assert_close(mixture2d.model(sched, null_label=7).eps(x, 0.35, 7), mixture2d.eps(x, 0.35, sched))
    with pytest.raises(ValueError, match="class c must lie in 0..1"):
        model.eps(x, 0.35, torch.tensor([0, 3, 1, 1, 1, 1]))
    with pytest.raises(ValueError, match="null_label must not be a class"):
        mixture2d.model(sched, null_label=1)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        model.eps(x, 0.35, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="no labels"):
        dl.GaussianMixture([1.0], [[0.0, 0.0]], stds=1.0).model(sched).eps(x, 0.35, 0)


def test_flow_keeps_the_input_device_and_dtype(mixture2d, device, gen):
    sched = dl.RectifiedFlow()
    x = dl.utils.randn((4, 2), generator=gen, device=device)
    out = mixture2d.flow(x, [0.9, 0.5], sched, rtol=1e-8, atol=1e-8)
    assert out.shape == (2, 4, 2) and out.device.type == device.type and out.dtype == torch.float32
    ref = mixture2d.flow(x.double().cpu(), [0.9, 0.5], sched, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(out.cpu(), ref.float())


# -- chapter 03: the Hessian of log p_t and the exact posterior covariance (second-order Tweedie, §3.3.4) --
def _mixtures_for_tweedie():
    full = dl.GaussianMixture([0.3, 0.7], [[0.0, 1.0], [1.0, -1.0]],
                              covs=[[[1.0, 0.3], [0.3, 0.5]], [[0.4, 0.0], [0.0, 0.2]]])
    return [full, dl.datasets.eight_gaussians_mixture(),
            dl.PointSet(torch.tensor([[0.0, 0.0], [1.0, 2.0], [-1.5, 0.5]], dtype=torch.float64))]


@pytest.mark.parametrize("which", range(3))
@pytest.mark.parametrize("batched_t", [False, True])
def test_score_hessian_is_the_autograd_hessian_of_log_p(which, batched_t):
    mix, sched = _mixtures_for_tweedie()[which], dl.VPLinear()
    x = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0.1, 0.3, 0.5, 0.9], dtype=torch.float64) if batched_t else 0.3
    H = mix.score_hessian(x, t, sched)
    for b in range(4):
        tb = t[b:b + 1] if batched_t else t
        ref = torch.autograd.functional.hessian(lambda y, tb=tb: mix.log_prob_t(y[None], tb, sched)[0], x[b])
        torch.testing.assert_close(H[b], ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("which", range(3))
def test_posterior_cov_is_second_order_tweedie(which):
    """Cov[x0 | x_t] (Gaussian conditioning per component) = (sigma^2 I + sigma^4 H) / alpha^2 (two routes)."""
    mix = _mixtures_for_tweedie()[which]
    for sched in (dl.VPLinear(), dl.EDM(3.0)):
        x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
        t = torch.tensor([0.05, 0.2, 0.4, 0.6, 0.8], dtype=torch.float64)
        co = sched.coeffs(t)
        a, s = co.alpha[:, None, None], co.sigma[:, None, None]
        want = (s ** 2 * torch.eye(2, dtype=torch.float64) + s ** 4 * mix.score_hessian(x, t, sched)) / a ** 2
        torch.testing.assert_close(mix.posterior_cov(x, t, sched), want, rtol=1e-8, atol=1e-10)


def test_posterior_cov_of_a_gaussian_and_by_monte_carlo():
    """1D Gaussian prior N(m, s^2), x_t = x0 + sigma eps: Var[x0 | x_t] = s^2 sigma^2 / (s^2 + sigma^2) at every x_t;
    and on a 2-mode mixture, the covariance of importance-weighted prior draws (n = 200k; tolerance 5e-3,
    about 5 standard errors of a variance estimate of size ~0.1 with an effective sample of ~1e4)."""
    s2, sig = 0.7 ** 2, 0.5
    g1 = dl.GaussianMixture([1.0], [[0.4]], stds=0.7)
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]
    cov = g1.posterior_cov(x, sig / 3.0, dl.EDM(3.0))
    torch.testing.assert_close(cov[:, 0, 0], torch.full((7,), s2 * sig ** 2 / (s2 + sig ** 2), dtype=torch.float64))
    mix = dl.GaussianMixture([0.4, 0.6], [[-1.0], [1.0]], stds=[0.3, 0.5])
    gen = torch.Generator().manual_seed(0)
    x0 = mix.sample(200_000, generator=gen, dtype=torch.float64)
    xt = torch.tensor([[0.2]], dtype=torch.float64)
    w = torch.exp(-0.5 * (xt - x0) ** 2 / sig ** 2).flatten()
    w = w / w.sum()
    mean = (w * x0.flatten()).sum()
    var_mc = (w * (x0.flatten() - mean) ** 2).sum()
    got = mix.posterior_cov(xt, sig / 3.0, dl.EDM(3.0))[0, 0, 0]
    assert abs(float(got - var_mc)) < 5e-3, (float(got), float(var_mc))


# -- exact posteriors of a linear measurement y = A x0 + sigma_y z (§8.4) ---------------------------
@pytest.mark.parametrize("A,y,sy", [([[1.0, 0.0]], [0.3], 0.2), ([[0.6, -0.8]], [-0.5], 0.5),
                                    ([[1.0, 0.0], [0.0, 1.0]], [0.4, 0.2], 0.4)])
def test_measurement_posterior_matches_importance_weights(mixture2d, A, y, sy):
    # p(x0 | y) proportional to p(x0) N(y; A x0, sy^2 I): self-normalised importance weights on prior draws
    g = torch.Generator().manual_seed(7)
    x = mixture2d.sample(400_000, generator=g, dtype=torch.float64)
    A_, y_ = torch.tensor(A, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    logw = -0.5 * ((x @ A_.T - y_) ** 2).sum(-1) / sy ** 2
    w = torch.softmax(logw, 0)
    ess = float(1 / (w ** 2).sum())
    mean_is = w @ x
    cov_is = (w[:, None] * (x - mean_is)).T @ (x - mean_is)
    post = mixture2d.posterior(A, y, sy)
    tol = 5 * float(post.cov().diagonal().max().sqrt()) / ess ** 0.5        # 5 standard errors
    torch.testing.assert_close(post.mean(), mean_is, atol=tol, rtol=0)
    torch.testing.assert_close(post.cov(), cov_is, atol=3 * tol, rtol=0)
    # the evidence p(y) = E_prior N(y; A x0, sy^2 I) by plain Monte Carlo
    M = A_.shape[0]
    lik = torch.exp(logw) / (2 * math.pi * sy ** 2) ** (M / 2)
    ev_mc, ev_se = float(lik.mean()), float(lik.std() / len(lik) ** 0.5)
    assert abs(math.exp(mixture2d.log_evidence(A, y, sy)) - ev_mc) < 5 * ev_se


def test_posterior_score_is_the_noised_posterior_and_bayes(mixture2d, gen):
    # grad log p_t(x_t | y) from the joint Gaussian of (x_t, y) per component, by autograd of log p_t(x_t, y)
    sched = dl.VPLinear()
    A, y, sy, t = torch.tensor([[0.6, -0.8]], dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64), 0.3, 0.35
    x = mixture2d.sample_marginal(6, t, sched, generator=gen, dtype=torch.float64).requires_grad_(True)
    co = sched.coeffs(t)
    a, s = float(co.alpha), float(co.sigma)
    terms = []
    for k in range(3):                                 # joint of (x_t, y) given k: mean (a mu, A mu), block covariance
        mu, S = mixture2d.means[k], mixture2d.covs[k]
        mean = torch.cat([a * mu, A @ mu])
        top = torch.cat([a * a * S + s * s * torch.eye(2, dtype=torch.float64), a * S @ A.T], 1)
        bot = torch.cat([a * A @ S, A @ S @ A.T + sy ** 2 * torch.eye(1, dtype=torch.float64)], 1)
        dist = torch.distributions.MultivariateNormal(mean, torch.cat([top, bot], 0))
        terms.append(math.log(float(mixture2d.weights[k])) + dist.log_prob(torch.cat([x, y.expand(6, 1)], 1)))
    grad, = torch.autograd.grad(torch.logsumexp(torch.stack(terms), 0).sum(), x)
    x = x.detach()
    post = mixture2d.posterior(A, y, sy)
    torch.testing.assert_close(post.score(x, t, sched), grad, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(mixture2d.likelihood_score(x, t, sched, A, y, sy), grad - mixture2d.score(x, t, sched),
                               rtol=1e-8, atol=1e-8)


def test_measurement_bad_input(mixture2d):
    with pytest.raises(ValueError, match="A \\(the measurement operator\\)"):
        mixture2d.posterior([[1.0, 0.0, 0.0]], [0.1], 0.1)
    with pytest.raises(ValueError, match="y must have 1"):
        mixture2d.posterior([[1.0, 0.0]], [0.1, 0.2], 0.1)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma_y"):
            mixture2d.posterior([[1.0, 0.0]], [0.1], bad)
    with pytest.raises(TypeError, match="point set"):
        dl.PointSet(torch.zeros(3, 2)).posterior([[1.0, 0.0]], [0.1], 0.1)
