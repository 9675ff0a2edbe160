"""Guidance wrappers on the EXACT class-conditional mixture (§8.1-§8.3): the guided fields have closed
forms there, so CFG and classifier guidance are held to them rather than to a trained network."""
import pytest
import torch

import dpm_lab as dl
from dpm_lab import guidance

NULL = 2                                   # mixture2d has classes 0 and 1; label 2 = no condition


def exact(mix, x, t, sched, kind, c=None):
    """The mixture's own closed-form field (conditional on c, or the full mixture)."""
    return mix.predict(x, t, sched, kind, c)


@pytest.mark.parametrize("sched", [dl.VPLinear(), dl.Cosine(), dl.EDM(10.0), dl.RectifiedFlow()],
                         ids=lambda s: s.name)
@pytest.mark.parametrize("kind", dl.KINDS)
def test_cfg_on_the_exact_mixture_is_the_closed_form_guided_field(mixture2d, sched, kind, gen):
    # omega * field(c) + (1 - omega) * field(all), in any kind (each is affine in the score)
    t = 0.4
    x = mixture2d.sample_marginal(10, t, sched, generator=gen, dtype=torch.float64)
    c = torch.tensor([0, 1] * 5)
    model = mixture2d.model(sched)
    cond = exact(mixture2d, x, t, sched, kind, c)
    uncond = exact(mixture2d, x, t, sched, kind)
    for omega in (0.0, 1.0, 2.5):
        cfg = guidance.CFG(model, omega, null_label=NULL)
        torch.testing.assert_close(cfg.predict(x, t, kind, c=c), omega * cond + (1 - omega) * uncond,
                                   rtol=1e-9, atol=1e-9, msg=f"omega={omega}")


def test_cfg_guides_eps_and_score_alike(mixture2d, gen):
    # the guided eps is -sigma_t times the guided score: the same combination in either kind (§8.3)
    sched = dl.VPLinear()
    t = 0.55
    x = mixture2d.sample_marginal(8, t, sched, generator=gen, dtype=torch.float64)
    cfg = guidance.CFG(mixture2d.model(sched), 3.0, null_label=NULL, c=1)
    s_g = 3.0 * mixture2d.score(x, t, sched, c=1) - 2.0 * mixture2d.score(x, t, sched)
    torch.testing.assert_close(cfg.predict(x, t, "score"), s_g, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(cfg.predict(x, t, "eps"), -sched.sigma(t) * s_g, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(cfg(x, t), cfg.predict(x, t, "eps"))          # raw is the model's kind (eps)


def test_cfg_per_sample_times_and_labels(mixture2d, gen):
    sched = dl.Cosine()
    x = mixture2d.sample_marginal(6, 0.3, sched, generator=gen, dtype=torch.float64)
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9, 0.3], dtype=torch.float64)
    c = torch.tensor([0, 1, 1, 0, 1, 0])
    got = guidance.CFG(mixture2d.model(sched), 2.0, null_label=NULL).predict(x, t, "x0", c=c)
    for b in range(6):
        tb, cb = float(t[b]), int(c[b])
        expect = 2.0 * mixture2d.x0(x[b:b + 1], tb, sched, c=cb) - mixture2d.x0(x[b:b + 1], tb, sched)
        torch.testing.assert_close(got[b:b + 1], expect, rtol=1e-9, atol=1e-9)


def test_cfg_interval_guides_only_inside(mixture2d, gen):
    # guidance limited to lambda_t in the interval: omega inside, plain conditional (omega = 1) outside
    sched = dl.VPLinear()
    model = mixture2d.model(sched)
    x = mixture2d.sample_marginal(6, 0.5, sched, generator=gen, dtype=torch.float64)
    c = torch.tensor([0, 1] * 3)
    cfg = guidance.CFG(model, 3.0, null_label=NULL, lam_interval=(-1.0, 1.0))
    for t in (0.05, 0.3, 0.5, 0.9):                       # VP lambda = 1.75, -0.21, -1.23, -4.07: only 0.3 inside
        inside = -1.0 <= float(sched.lam(t)) <= 1.0
        s_c, s_u = mixture2d.score(x, t, sched, c=c), mixture2d.score(x, t, sched)
        expect = 3.0 * s_c - 2.0 * s_u if inside else s_c
        torch.testing.assert_close(cfg.predict(x, t, "score", c=c), expect, rtol=1e-9, atol=1e-9)
    per_sample = torch.tensor([0.05, 0.3, 0.5, 0.9, 0.3, 0.5], dtype=torch.float64)
    got = cfg.predict(x, per_sample, "score", c=c)
    for b in range(6):
        torch.testing.assert_close(got[b:b + 1], cfg.predict(x[b:b + 1], float(per_sample[b]), "score", c=c[b:b + 1]))
    with pytest.raises(ValueError, match="lam_interval"):
        guidance.CFG(model, 2.0, null_label=NULL, lam_interval=(1.0, -1.0))


def exact_classifier(mix, sched):
    """log p(c | x_t) of the mixture itself: the Bayes-optimal noise-aware classifier."""
    return lambda x, t: torch.log(mix.class_posterior(x, t, sched))


@pytest.mark.parametrize("sched", [dl.VPLinear(), dl.RectifiedFlow()], ids=lambda s: s.name)
def test_classifier_guidance_with_the_exact_posterior(mixture2d, sched, gen):
    # Bayes (§8.1): score(x | c) = score(x) + grad log p(c | x); omega = 1 gives the exact conditional score,
    # and in general score + omega (score(c) - score), converted to any kind
    t = 0.3
    x = mixture2d.sample_marginal(8, t, sched, generator=gen, dtype=torch.float64)
    s_u = mixture2d.score(x, t, sched)
    for c in (0, 1, torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])):
        s_c = mixture2d.score(x, t, sched, c=c)
        cg = guidance.ClassifierGuidance(mixture2d.model(sched), exact_classifier(mixture2d, sched), omega=1.0)
        torch.testing.assert_close(cg.predict(x, t, "score", c=c), s_c, rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(cg.predict(x, t, "eps", c=c), mixture2d.eps(x, t, sched, c=c), rtol=1e-8, atol=1e-8)
        strong = guidance.ClassifierGuidance(mixture2d.model(sched), exact_classifier(mixture2d, sched), 4.0, c=c)
        torch.testing.assert_close(strong.predict(x, t, "score"), s_u + 4.0 * (s_c - s_u), rtol=1e-8, atol=1e-8)


def test_classifier_guidance_at_omega_one_equals_cfg_at_omega_one(mixture2d, gen):
    sched = dl.Cosine()
    t = 0.45
    x = mixture2d.sample_marginal(6, t, sched, generator=gen, dtype=torch.float64)
    cg = guidance.ClassifierGuidance(mixture2d.model(sched), exact_classifier(mixture2d, sched), 1.0, c=0)
    cfg = guidance.CFG(mixture2d.model(sched), 1.0, null_label=NULL, c=0)
    for kind in dl.KINDS:
        torch.testing.assert_close(cg.predict(x, t, kind), cfg.predict(x, t, kind), rtol=1e-8, atol=1e-8)


def test_guidance_needs_labels(mixture2d):
    sched = dl.VPLinear()
    x = torch.zeros(4, 2, dtype=torch.float64)
    cg = guidance.ClassifierGuidance(mixture2d.model(sched), exact_classifier(mixture2d, sched), omega=1.0)
    with pytest.raises(ValueError, match="needs a class label"):
        cg.predict(x, 0.3, "score")
    cfg = guidance.CFG(mixture2d.model(sched), 2.0, null_label=NULL)
    with pytest.raises(ValueError, match="needs a class label"):
        cfg.predict(x, 0.3)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        cfg.predict(x, 0.3, c=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unknown prediction kind"):
        cfg.predict(x, 0.3, "noise", c=0)


# -- bad input ---------------------------------------------------------------------------------------
def test_guidance_bad_weights_and_labels(mixture2d):
    sched = dl.VPLinear()
    x = torch.zeros(4, 2, dtype=torch.float64)
    for bad in (float("nan"), float("inf"), "2"):
        with pytest.raises(ValueError, match="omega"):
            guidance.CFG(mixture2d.model(sched), bad, null_label=NULL)
        with pytest.raises(ValueError, match="omega"):
            guidance.ClassifierGuidance(mixture2d.model(sched), exact_classifier(mixture2d, sched), bad)
    with pytest.raises(ValueError, match="class label c must lie in 0..1"):
        guidance.CFG(mixture2d.model(sched), 2.0, null_label=NULL).predict(x, 0.3, c=5)
    with pytest.raises(ValueError, match="class label c must lie in 0..1"):
        guidance.ClassifierGuidance(mixture2d.model(sched), exact_classifier(mixture2d, sched), 2.0).predict(
            x, 0.3, "score", c=-1)


# -- inverse problems (§8.4) -------------------------------------------------------------------------
def _ops():
    g = torch.Generator().manual_seed(3)
    return [(guidance.matrix_operator(torch.randn(2, 3, generator=g, dtype=torch.float64)), (5, 3)),
            (guidance.mask_operator((torch.rand(4, 4, generator=g) > 0.5).float()), (5, 4, 4)),
            (guidance.downsample_operator(2), (5, 1, 4, 4)), (guidance.identity_operator(), (5, 3))]


@pytest.mark.parametrize("i", range(4))
def test_operator_adjoint_and_pseudo_inverse(i):
    A, shape = _ops()[i]
    g = torch.Generator().manual_seed(i)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    y = A(torch.randn(shape, generator=g, dtype=torch.float64))
    torch.testing.assert_close((A(x) * y).sum(), (x * A.T(y)).sum())      # <A x, y> = <x, A^T y>
    torch.testing.assert_close(A(A.pinv(y)), y)                            # A A^+ = I on the range


def test_operator_bad_input(mixture2d):
    A = guidance.matrix_operator([[1.0, 0.0]])
    with pytest.raises(ValueError, match="measurement operator"):
        A(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="measurement operator"):
        guidance.mask_operator(torch.ones(4, 4))(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="measurement operator"):
        guidance.downsample_operator(2)(torch.zeros(2, 1, 5, 4))
    model = mixture2d.model(dl.VPLinear())
    for bad in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="sigma_y"):
            guidance.DPS(model, A, torch.tensor([0.1]), bad)
    with pytest.raises(TypeError, match="LinearOperator"):
        guidance.DPS(model, [[1.0, 0.0]], torch.tensor([0.1]), 0.1)
    with pytest.raises(ValueError, match="measurement operator"):
        guidance.DPS(model, guidance.matrix_operator([[1.0, 0.0, 0.0]]), torch.tensor([0.1]), 0.1).predict(
            torch.zeros(2, 2, dtype=torch.float64), 0.5, "score")
    with pytest.raises(ValueError, match="scale"):
        guidance.DPS(model, A, torch.tensor([0.1]), 0.1, scale=float("inf"))


def _gauss(v=0.7):
    return dl.GaussianMixture([1.0], [[0.3, -0.4]], stds=v ** 0.5)


def test_pigdm_is_exact_for_an_isotropic_gaussian_prior(gen):
    # x0 | x_t ~ N(x0_hat, r_t^2 I) with r_t^2 = v s^2 / (a^2 v + s^2): PiGDM's Gaussian is then exact
    v, sched, sy = 0.7, dl.VPLinear(), 0.2
    mix = _gauss(v)
    Am, y = torch.tensor([[1.0, 0.5]], dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64)
    m = guidance.PiGDM(mix.model(sched), guidance.matrix_operator(Am), y, sy, data_var=v)
    for t in (0.2, 0.5, 0.9):
        x = mix.sample_marginal(6, t, sched, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(m.guidance(x, t), mix.likelihood_score(x, t, sched, Am, y, sy), rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(m.predict(x, t, "score"), mix.posterior(Am, y, sy).score(x, t, sched),
                                   rtol=1e-8, atol=1e-8)


def test_dps_and_projections_closed_forms(gen):
    # Gaussian prior: x0_hat = mu + a S C^{-1}(x - a mu) is linear, with Jacobian J = a S C^{-1}
    v, sched, sy, t = 0.7, dl.Cosine(), 0.3, 0.4
    mix = _gauss(v)
    Am, y = torch.tensor([[1.0, 0.5]], dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64)
    A = guidance.matrix_operator(Am)
    x = mix.sample_marginal(5, t, sched, generator=gen, dtype=torch.float64)
    a, s = float(sched.alpha(t)), float(sched.sigma(t))
    J = a * v / (a * a * v + s * s)
    x0 = mix.x0(x, t, sched)
    dps = guidance.DPS(mix.model(sched), A, y, sy).guidance(x, t)
    torch.testing.assert_close(dps, J * (y - x0 @ Am.T) @ Am / sy ** 2)
    gamma = s * s + a * a * sy * sy
    sde = guidance.ScoreSDEProjection(mix.model(sched), A, y, sy).guidance(x, t)
    torch.testing.assert_close(sde, (a * y - x @ Am.T) @ Am / gamma)
    ilvr = guidance.ILVRProjection(mix.model(sched), A, y, sy).guidance(x, t)
    torch.testing.assert_close(ilvr, (a * y - x @ Am.T) @ torch.linalg.pinv(Am).T / gamma)
    # DPS is loss guidance in noise space with l = ||y - A x0||^2 / (2 sy^2), back-propagated
    loss = lambda z: ((z @ Am.T - y) ** 2).sum(-1) / (2 * sy ** 2)                    # noqa: E731
    lg = guidance.LossGuidance(mix.model(sched), loss, 1.0)
    torch.testing.assert_close(lg.guidance(x, t), dps)
    # without back-propagation the Jacobian is that of unit-variance Gaussian data, alpha / (alpha^2 + sigma^2)
    nb = guidance.LossGuidance(mix.model(sched), loss, 1.0, backprop=False).guidance(x, t)
    torch.testing.assert_close(nb, (y - x0 @ Am.T) @ Am / sy ** 2 * a / (a * a + s * s))
    unit = dl.GaussianMixture([1.0], [[0.3, -0.4]], stds=1.0)                  # exact for unit-variance data
    torch.testing.assert_close(guidance.LossGuidance(unit.model(sched), loss, 1.0, backprop=False).guidance(x, t),
                               guidance.LossGuidance(unit.model(sched), loss, 1.0).guidance(x, t))
    # data space moves x0_hat itself
    ds = guidance.LossGuidance(mix.model(sched), loss, 0.01, space="data")
    torch.testing.assert_close(ds.predict(x, t, "x0"), x0 + 0.01 * (y - x0 @ Am.T) @ Am / sy ** 2)


def test_indi_is_euler_on_the_ve_pf_ode_with_sigma_t_proportional_to_t(mixture2d, gen):
    # y = x0 + sigma eps, x_t = (1 - t) x0 + t y = x0 + t sigma eps: EDM(sigma); InDI = Euler + final denoise
    sigma, n = 1.5, 12
    sched = dl.EDM(sigma)
    model = mixture2d.model(sched)
    y = mixture2d.sample(64, generator=gen, dtype=torch.float64) + sigma * torch.randn(64, 2, generator=gen,
                                                                                        dtype=torch.float64)
    got = guidance.indi_restore(lambda x, t: mixture2d.x0(x, t, sched), y, n)
    grid = [1 - i / n for i in range(n)]                                   # 1, ..., 1/n
    expect = dl.samplers.solve(model, y, grid, "euler", denoise=True)
    torch.testing.assert_close(got, expect, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_dps_error_does_not_vanish_with_nfe(mixture2d):
    # the exact posterior model converges as NFE grows; DPS's approximation error stays put
    sched = dl.VPLinear()
    Am, y, sy = torch.tensor([[1.0, 0.0]]), torch.tensor([0.6], dtype=torch.float64), 0.1
    post = mixture2d.posterior(Am, y, sy)
    A = guidance.matrix_operator(Am)
    err = {}
    for name, m in {"exact": post.model(sched), "dps": guidance.DPS(mixture2d.model(sched), A, y, sy)}.items():
        for nfe in (50, 100):
            xT = torch.randn(1000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
            x = dl.samplers.solve(m, xT, nfe=nfe, method="ddim")
            err[name, nfe] = float((x.mean(0) - post.mean()).norm())
    se = float(post.cov().trace().sqrt()) / 1000 ** 0.5
    assert err["exact", 100] < 3 * se
    assert min(err["dps", 50], err["dps", 100]) > 10 * se
