"""Losses: the template of §6.2.2, the scaling identities of §6.3.1, and each loss's minimizer.

Minimizer tests train a small MLP for ~1-2 s at ONE noise level t (p_time = fixed) on a 2D
Gaussian mixture and compare the learned field with the mixture's closed form at samples of p_t.
Tolerance: relative RMS error sqrt(E||f_phi - f*||^2 / E||f*||^2) below a stated bound (REL_TOL,
looser for the score-matching objectives without a regression target, whose gradients are noisier).
"""
import math

import pytest
import torch

import dpm_lab as dl
from dpm_lab import losses, nets
from dpm_lab.train import train

REL_TOL = 0.15
REL_TOL_SM = 0.25


class _Fixed(dl.Model):
    """A 'network' that returns a fixed tensor of its kind: loss values then depend on the target only."""

    def __init__(self, schedule, kind, value):
        self.schedule, self.kind, self.value = schedule, kind, value

    def raw(self, x_t, t, c=None):
        return self.value


SCHEDS = [dl.VPLinear(), dl.Cosine(), dl.VEGeometric(), dl.EDM(), dl.RectifiedFlow(), dl.Trig(0.5)]


@pytest.mark.parametrize("sched", SCHEDS, ids=lambda s: s.name)
def test_loss_scaling_identities_exact(sched, gen):
    """||s - s*||^2 = 1/sigma^2 ||eps - eps*||^2 = alpha^2/sigma^4 ||x - x*||^2 = c_v^2 ||v - v*||^2 (Eq. s-e-x-v-equi)."""
    x_t = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    t = torch.rand(16, generator=gen, dtype=torch.float64) * 0.9 + 0.05
    a_eps, b_eps = torch.randn(2, 16, 3, generator=gen, dtype=torch.float64)
    views_a = dl.all_predictions(sched, x_t, t, a_eps, "eps")
    views_b = dl.all_predictions(sched, x_t, t, b_eps, "eps")
    ref = ((views_a["score"] - views_b["score"]) ** 2).sum(1)
    for kind in dl.KINDS:
        err = ((views_a[kind] - views_b[kind]) ** 2).sum(1)
        torch.testing.assert_close(dl.error_scale(sched, t, kind) ** 2 * err, ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["x0", "score", "velocity", "v"])
def test_template_losses_equal_under_matching_weights(kind, gen):
    """The same model and draw give the same number as an eps loss and as a `kind` loss weighted by (c_kind/c_eps)^2."""
    sched = dl.VPLinear()
    x0 = torch.randn(32, 2, generator=gen, dtype=torch.float64)
    eps = torch.randn(32, 2, generator=gen, dtype=torch.float64)
    t = torch.rand(32, generator=gen, dtype=torch.float64) * 0.9 + 0.05
    model = _Fixed(sched, "eps", torch.randn(32, 2, generator=gen, dtype=torch.float64))
    ref = losses.DiffusionLoss(sched, "eps")(model, x0, eps=eps, t=t)
    w = lambda s, tt: losses.matching_weight(s, tt, kind, "eps")  # noqa: E731
    other = losses.DiffusionLoss(sched, kind, weighting=w)(model, x0, eps=eps, t=t)
    torch.testing.assert_close(other, ref)


def test_elbo_weighting_is_minus_dlambda_in_eps_units(gen):
    sched = dl.VPLinear()
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    h = 1e-6
    dlam = (sched.lam(t + h) - sched.lam(t - h)) / (2 * h)
    torch.testing.assert_close(losses.weighting(sched, "elbo", t, "eps"), -dlam, rtol=1e-5, atol=0)
    # the same ELBO written for an x0 network: -lambda' sigma^2 (alpha/sigma^2)^2 = -lambda' snr
    torch.testing.assert_close(losses.weighting(sched, "elbo", t, "x0"), -dlam * sched.snr(t), rtol=1e-5, atol=0)


def test_time_distributions_and_label_dropout():
    g = torch.Generator().manual_seed(0)
    for p in [losses.TimeDist("uniform", 0.2, 0.6), losses.TimeDist("logit_normal", 0.1, 0.9)]:
        t = p(1000, generator=g)
        assert t.shape == (1000,) and t.min() >= p.t_min and t.max() <= p.t_max
    assert set((losses.TimeDist("discrete", L=4)(200, generator=g) * 4).round().tolist()) == {1.0, 2.0, 3.0, 4.0}
    assert (losses.TimeDist("fixed", loc=0.3)(5) == 0.3).all()
    c = torch.zeros(10000, dtype=torch.long)
    d1 = losses.drop_labels(c, 0.2, 8, generator=torch.Generator().manual_seed(1))
    d2 = losses.drop_labels(c, 0.2, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(d1, d2) and abs((d1 == 8).double().mean().item() - 0.2) < 0.02
    with pytest.raises(ValueError, match="null_label"):
        losses.DiffusionLoss(dl.VPLinear(), p_uncond=0.1)
    with pytest.raises(ValueError, match="weighting"):
        losses.weighting(dl.VPLinear(), "bogus", 0.5, "eps")


def _fit_and_compare(loss, sched, kind, t, field, *, steps=700, tol=REL_TOL, lr=3e-3):
    mix = dl.datasets.eight_gaussians_mixture(radius=1.5, std=0.3)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nets.Predictor(nets.MLP(2, 64, 2, t_dim=0), sched, kind)
    data = lambda n, generator: mix.sample(n, generator=generator)  # noqa: E731
    train(model, loss, data, steps=steps, batch=256, lr=lr, ema=0.99, seed=0, device="cpu")
    x_t = mix.sample_marginal(2000, t, sched, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        got = model.predict(x_t, t, field)
    true = mix.predict(x_t, t, sched, field)
    rel = ((got - true) ** 2).sum(1).mean().sqrt() / (true ** 2).sum(1).mean().sqrt()
    assert rel < tol, f"relative RMS error {rel:.3f} >= {tol}"


FIXED = lambda t: losses.TimeDist("fixed", loc=t)  # noqa: E731


@pytest.mark.parametrize("name,kind,field", [("ddpm_simple", "eps", "eps"), ("x0", "x0", "x0"), ("v", "v", "v"),
                                             ("velocity", "velocity", "velocity")])
def test_vp_losses_learn_the_exact_field(name, kind, field):
    sched = dl.VPLinear()
    loss = losses.DiffusionLoss(sched, kind, p_time=FIXED(0.3))
    _fit_and_compare(loss, sched, kind, 0.3, field)


def test_dsm_learns_the_score():
    sched = dl.VEGeometric(0.01, 10.0)
    t = 0.62                                             # sigma_t about 0.72
    _fit_and_compare(losses.dsm(sched, FIXED(t)), sched, "score", t, "score")


def test_cfm_learns_the_velocity():
    _fit_and_compare(losses.cfm(p_time=FIXED(0.5)), dl.RectifiedFlow(), "velocity", 0.5, "velocity")


class _ZeroEps:
    """A model that predicts eps = 0: its error is the noise itself."""

    def predict(self, x, t, kind, c=None):
        return torch.zeros_like(x)


@pytest.mark.parametrize("name", ["vp", "cosine", "flow"])
def test_elbo_loss_is_vdm_continuous_elbo(name):
    # VDM: -1/2 SNR'(t) ||x0 - x0_hat||^2, SNR' by a central difference of alpha^2/sigma^2 (not lambda')
    sched = dl.get_schedule(name)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(64, 2, generator=g, dtype=torch.float64)
    t, h = 0.37, 1e-5
    snr = lambda u: (sched.coeffs(u).alpha / sched.coeffs(u).sigma) ** 2
    d_snr = (snr(t + h) - snr(t - h)) / (2 * h)
    co = sched.coeffs(t)
    x0_err = (co.sigma / co.alpha) * eps                      # x0_hat = (x_t - sigma * 0) / alpha
    vdm = -0.5 * d_snr * (x0_err ** 2).sum(1)
    ours = losses.elbo_loss(sched)(_ZeroEps(), x0, eps=eps, t=t)
    assert torch.allclose(ours, vdm.to(ours.dtype), rtol=1e-6)


def test_elbo_loss_trains_over_all_t():
    sched = dl.VPLinear()
    loss = losses.elbo_loss(sched, t_max=0.95)
    _fit_and_compare(loss, sched, "eps", 0.5, "eps", steps=1200, tol=0.2)


@pytest.mark.parametrize("method", ["sliced", "exact"])
def test_score_matching_learns_the_score(method):
    sched = dl.VEGeometric(0.01, 10.0)
    t = 0.62
    loss = losses.ScoreMatching(sched, method, p_time=FIXED(t), vr=True)
    _fit_and_compare(loss, sched, "score", t, "score", tol=REL_TOL_SM, lr=2e-3)


def test_classifier_loss_shape(gen):
    mix = dl.datasets.eight_gaussians_mixture()
    x0, c = mix.sample(16, generator=gen, return_labels=True)
    ce = losses.classifier_loss(dl.VPLinear(), nets.Classifier2D(2, 8, 16, 1), x0, c, generator=gen)
    assert ce.shape == (16,) and (ce > 0).all()


def test_named_instances_run_and_return_per_sample_losses(gen):
    x0 = torch.randn(8, 2, generator=gen)
    disc = dl.DiscreteSchedule.linear(100, 1e-3, 0.1)
    assert losses.ddpm_simple(disc).p_time.name == "discrete"
    sched = dl.VPLinear()
    for loss, kind in [(losses.ddpm_simple(sched), "eps"), (losses.elbo_loss(sched), "eps"),
                       (losses.x0_loss(sched, "edm", 0.5), "x0"), (losses.v_loss(sched), "v"),
                       (losses.velocity_loss(sched), "velocity"), (losses.dsm(), "score"), (losses.cfm(), "velocity")]:
        model = nets.Predictor(nets.MLP(2, 8, 1), loss.schedule, kind)
        out = loss(model, x0, generator=gen)
        assert out.shape == (8,) and torch.isfinite(out).all() and (out >= 0).all()


class _Recorder(dl.Model):
    """Returns a fixed prediction and records what the loss fed it."""

    def __init__(self, schedule, kind, value):
        self.schedule, self.kind, self.value, self.seen = schedule, kind, value, {}

    def raw(self, x_t, t, c=None):
        self.seen = {"x_t": x_t, "t": t, "c": c}
        return self.value


def test_template_draws_t_then_eps_then_dropout(device):
    # the documented draws with one generator, in order; the loss is the template written out by hand
    sched = dl.Cosine()
    x0 = torch.linspace(-1, 1, 24, device="cpu").reshape(12, 2)
    c = torch.arange(12, device="cpu") % 3
    loss = losses.DiffusionLoss(sched, "v", "snr", losses.TimeDist("uniform", 0.1, 0.9), p_uncond=0.5, null_label=3)
    g = torch.Generator().manual_seed(7)
    t = 0.1 + 0.8 * dl.utils.rand((12,), generator=g, dtype=torch.float64)
    eps = dl.utils.randn((12, 2), generator=g)
    dropped = torch.where(dl.utils.rand((12,), generator=g) < 0.5, 3, c)
    a, s = sched.alpha(t)[:, None].float(), sched.sigma(t)[:, None].float()
    pred = torch.full((12, 2), 0.3)
    expect = (sched.alpha(t) ** 2 / sched.sigma(t) ** 2).float() * ((pred - (a * eps - s * x0)) ** 2).mean(1)
    for dev in ("cpu", device):
        model = _Recorder(sched, "v", pred.to(dev))
        got = loss(model, x0.to(dev), c.to(dev), generator=torch.Generator().manual_seed(7))
        assert got.device.type == torch.device(dev).type
        torch.testing.assert_close(got.cpu(), expect)
        torch.testing.assert_close(model.seen["t"].cpu(), t)
        torch.testing.assert_close(model.seen["x_t"].cpu(), a * x0 + s * eps)
        assert torch.equal(model.seen["c"].cpu(), dropped) and (dropped == 3).any() and (dropped != 3).any()


def test_weightings_validate_t_and_raise_at_end_points():
    vp, flow = dl.VPLinear(), dl.RectifiedFlow()
    t = torch.tensor([0.0, 0.5], dtype=torch.float64)
    for name in ("elbo", "snr", "edm"):
        with pytest.raises(ValueError, match=f"{name} weighting is not defined at t = 0"):
            losses.weighting(vp, name, t, "eps")
    with pytest.raises(ValueError, match="elbo weighting is not defined at t = 1"):
        losses.weighting(flow, "elbo", 1.0, "eps")
    for name in ("none", "sigma2"):
        assert torch.isfinite(losses.weighting(vp, name, t)).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        losses.weighting(vp, "none", 1.5)
    with pytest.raises(ValueError, match="unknown weighting 'bogus'"):
        losses.DiffusionLoss(vp, weighting="bogus")
    seen = []
    w = losses.weighting(vp, lambda s, tt: seen.append((s, tt)) or 2 * tt, 0.25)
    assert float(w) == 0.5 and seen[0][0] is vp and seen[0][1].dtype == torch.float64


@pytest.mark.parametrize("sched", SCHEDS, ids=lambda s: s.name)
def test_elbo_weighting_in_each_kind_is_the_matching_weight(sched):
    # -lambda' sigma^2 c_kind^2: the same ELBO written for a `kind` loss, i.e. the eps ELBO times (c_kind / c_eps)^2
    t = torch.tensor([0.1, 0.4, 0.8], dtype=torch.float64)
    eps_w = losses.weighting(sched, "elbo", t, "eps")
    torch.testing.assert_close(eps_w, -sched.d_lam(t))
    for kind in dl.KINDS:
        torch.testing.assert_close(losses.weighting(sched, "elbo", t, kind),
                                   eps_w * losses.matching_weight(sched, t, kind, "eps"), rtol=1e-10, atol=0)


# -- chapter 03 additions ---------------------------------------------------------------------------------------
def test_jacobian_trace_is_the_divergence_and_rejects_bad_input():
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    A = torch.tensor([[1.0, 2.0, 0.0], [0.5, -3.0, 1.0], [0.0, 0.2, 4.0]], dtype=torch.float64)
    out = x @ A.T + x ** 3                        # div = tr A + 3 sum x^2
    torch.testing.assert_close(losses.jacobian_trace(out, x), A.trace() + 3 * (x ** 2).sum(1))
    with pytest.raises(ValueError, match="same shape"):
        losses.jacobian_trace(out[:, :2], x)
    with pytest.raises(ValueError, match="require grad"):
        losses.jacobian_trace(out, x.detach())


def test_hyvarinen_and_explicit_score_matching_differ_by_a_constant():
    """On a 2D Gaussian N(m, S): explicit SM = Hyvarinen SM + 1/2 E||grad log p||^2 = ... + 1/2 tr(S^-1).
    Per batch the difference is exactly 1/2 mean||s*||^2 (the constant); gradients in the parameters are equal
    up to Monte Carlo error of the Stein identity (n = 20000; tolerance 0.05 relative)."""
    gen = torch.Generator().manual_seed(1)
    S = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)
    m = torch.tensor([0.5, -0.3], dtype=torch.float64)
    L = torch.linalg.cholesky(S)
    x = (m + dl.utils.randn((20000, 2), generator=gen, dtype=torch.float64) @ L.T).requires_grad_(True)
    true = -(x - m) @ torch.linalg.inv(S)
    W = torch.tensor([[-0.7, 0.2], [0.1, -1.1]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.2, 0.1], dtype=torch.float64, requires_grad=True)
    s = x @ W.T + b + 0.1 * torch.tanh(x)
    hyv = losses.exact_score_matching(s, x).mean()
    exp = losses.explicit_score_matching(s, true.detach()).mean()
    const = 0.5 * (true ** 2).sum(1).mean()
    g_h = torch.autograd.grad(hyv, [W, b], retain_graph=True)
    g_e = torch.autograd.grad(exp, [W, b])
    for a, c in zip(g_h, g_e):
        assert float((a - c).norm() / c.norm()) < 0.05
    # the constant itself: Stein's identity makes the difference match 1/2 E||s*||^2 = 1/2 tr(S^-1)
    assert abs(float((exp - hyv - const).detach())) < 0.05
    assert abs(float(const) - 0.5 * float(torch.linalg.inv(S).trace())) < 0.05
    with pytest.raises(ValueError, match="same shape"):
        losses.explicit_score_matching(s, true[:, :1])


def test_implied_weight_of_the_elbo_is_flat_and_matches_the_definition():
    t = torch.linspace(0.02, 0.98, 50, dtype=torch.float64)
    for name in ("vp", "cosine", "flow", "trig", "ve", "edm"):
        sch = dl.get_schedule(name)
        for kind in dl.param.KINDS:
            lam, w = losses.implied_lambda_weight(sch, kind, "elbo", t)
            torch.testing.assert_close(w, torch.ones_like(w), rtol=1e-9, atol=1e-12)
        # unweighted eps loss, uniform t: w = 1 / |lambda'| (the density of lambda), against autograd of lambda
        tt = t.clone().requires_grad_(True)
        dlam, = torch.autograd.grad(sch.lam(tt).sum(), tt)
        _, w = losses.implied_lambda_weight(sch, "eps", "none", t)
        torch.testing.assert_close(w, 1 / dlam.abs(), rtol=1e-8, atol=1e-12)
    # the logit-normal density integrates to one
    _, w = losses.implied_lambda_weight(dl.RectifiedFlow(), "eps", "elbo", torch.linspace(1e-4, 1 - 1e-4, 20001,
                                      dtype=torch.float64), "logit_normal")
    assert math.isclose(float(torch.trapezoid(w, dx=(1 - 2e-4) / 20000)), 1.0, rel_tol=1e-3)
    with pytest.raises(ValueError, match="strictly inside"):
        losses.implied_lambda_weight(dl.VPLinear(), "eps", "none", torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match="p_time"):
        losses.implied_lambda_weight(dl.VPLinear(), "eps", "none", torch.tensor([0.5]), "beta")


@pytest.mark.parametrize("dist", [losses.TimeDist("uniform", 0.2, 0.9),
                                  losses.TimeDist("logit_normal", 0.0, 1.0, loc=0.5, scale=0.8),
                                  losses.TimeDist("logit_normal", 0.1, 0.95)])
def test_time_density_matches_its_draws(dist):
    # histogram of 200k draws in 20 bins against the density's integral over each bin; binomial s.e.
    # sqrt(p(1-p)/n) <= 0.0012, tolerance 5 s.e.
    n = 200_000
    t = dist(n, generator=torch.Generator().manual_seed(0))
    edges = torch.linspace(dist.t_min, dist.t_max, 21, dtype=torch.float64)
    freq = torch.histc(t, 20, dist.t_min, dist.t_max) / n
    fine = torch.linspace(dist.t_min + 1e-9, dist.t_max - 1e-9, 20 * 400 + 1, dtype=torch.float64)
    dens = dist.density(fine)
    mass = torch.stack([torch.trapezoid(dens[i * 400:(i + 1) * 400 + 1], fine[i * 400:(i + 1) * 400 + 1])
                        for i in range(20)])
    assert torch.allclose(freq, mass, atol=5 * 0.0012), (freq - mass).abs().max()
    assert float(dist.density(torch.tensor([edges[0] - 0.05]))) == 0.0
    with pytest.raises(ValueError, match="discrete time distribution has no density"):
        losses.TimeDist("discrete", L=10).density(torch.tensor([0.5]))
