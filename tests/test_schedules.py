"""Oracle tests for schedules: closed forms against autograd, lambda inverses, SDE coefficients
through the moment ODEs of §4.1, between-time kernels and posteriors against Bayes' rule."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from schedule_cases import SCHED_IDS, SCHEDULES
from scipy.integrate import solve_ivp

import dpm_lab as dl

INTERIOR = torch.tensor([0.013, 0.1, 0.37, 0.5, 0.77, 0.95], dtype=torch.float64)


def off_knots(sched, t):
    """Move t off the knots of a discrete schedule (its derivative jumps there)."""
    if isinstance(sched, dl.DiscreteSchedule):
        return (torch.floor(t * sched.L) + 0.5) / sched.L
    return t


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_derivatives_equal_autograd(sched):
    t = off_knots(sched, INTERIOR).clone().requires_grad_(True)
    for closed, fn in [(sched.d_alpha, sched.alpha), (sched.d_sigma, sched.sigma),
                       (sched.d_sigma2, lambda u: sched.sigma(u) ** 2)]:
        auto, = torch.autograd.grad((fn(t) + 0 * t).sum(), t)  # + 0 t: constants too
        torch.testing.assert_close(closed(t.detach()), auto, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sched", [dl.EDM(), dl.RectifiedFlow(), dl.Trig(0.7)], ids=["edm", "flow", "trig"])
def test_d_sigma_at_zero_for_linear_starts(sched):
    # sigma_t is linear near t = 0 for these: the derivative is finite and equals autograd there
    t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    auto, = torch.autograd.grad(sched.sigma(t).sum(), t)
    torch.testing.assert_close(sched.d_sigma(0.0), auto[0])
    assert float(sched.d_sigma(0.0)) > 0


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_g2_is_minus_two_sigma2_dlambda(sched):
    # lemma of §4.5.2: g^2 = (sigma^2)' - 2 f sigma^2 = -2 sigma^2 lambda'
    t = off_knots(sched, INTERIOR).clone().requires_grad_(True)
    dlam, = torch.autograd.grad(sched.lam(t).sum(), t)
    torch.testing.assert_close(sched.d_lam(t.detach()), dlam, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(sched.g2(t.detach()), -2 * sched.sigma(t.detach()) ** 2 * dlam, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_lambda_inverse_round_trip(sched):
    t = torch.linspace(0.01, 0.98, 50, dtype=torch.float64)
    torch.testing.assert_close(sched.inv_lam(sched.lam(t)), t, rtol=0, atol=1e-9)
    # the generic bisection agrees with each closed form
    torch.testing.assert_close(dl.Schedule.inv_lam(sched, sched.lam(t)), t, rtol=0, atol=1e-9)
    assert (sched.lam(t)[1:] < sched.lam(t)[:-1]).all(), "lambda must decrease in t"


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_moment_odes_reproduce_alpha_sigma(sched):
    # §4.1.2: for dx = f x dt + g dw, m' = f m and P' = 2 f P + g^2 with m(0) = 1, P(0) = 0
    # must give back m = alpha_t and P = sigma_t^2 (the lemma of §4.5.2 read backwards).
    # A discrete schedule's f jumps at its knots i / L: integrate knot to knot (coefficients of the
    # segment (lo, hi] on each), so the solver never steps across a jump.
    T = 0.97
    ts = np.linspace(0, T, 9)
    edges = [0.0, T]
    if isinstance(sched, dl.DiscreteSchedule):
        edges = sorted({0.0, T, *(i / sched.L for i in range(1, sched.L) if i / sched.L < T)})
    y, got = [1.0, 0.0], {0.0: [1.0, 0.0]}
    for lo, hi in zip(edges[:-1], edges[1:]):
        def rhs(t, m, lo=lo, hi=hi):
            tt = torch.tensor(min(max(t, lo + 1e-12 * (hi - lo)), hi), dtype=torch.float64)
            f, g2 = float(sched.f(tt)), float(sched.g2(tt))
            return [f * m[0], 2 * f * m[1] + g2]

        inside = [t for t in ts if lo < t < hi] + [hi]
        sol = solve_ivp(rhs, (lo, hi), y, t_eval=inside, rtol=1e-11, atol=1e-12, max_step=0.05)
        got.update({t: sol.y[:, j] for j, t in enumerate(inside)})
        y = sol.y[:, -1]
    m = np.array([got[t] for t in ts]).T
    tt = torch.tensor(ts)
    np.testing.assert_allclose(m[0], sched.alpha(tt).numpy(), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(m[1], (sched.sigma(tt) ** 2).numpy(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_kernel_semigroup(sched):
    # p(x_s | x_t) composed through an intermediate u equals the direct kernel (kernel(s, t): from s to t)
    t, u, s = 0.2, 0.45, 0.8
    a_ut, s_ut = sched.kernel(t, u)
    a_su, s_su = sched.kernel(u, s)
    a_st, s_st = sched.kernel(t, s)
    torch.testing.assert_close(a_su * a_ut, a_st)
    torch.testing.assert_close(a_su ** 2 * s_ut ** 2 + s_su ** 2, s_st ** 2)
    # and from t = 0 it is the forward kernel itself
    a0, s0 = sched.kernel(0.0, s)
    torch.testing.assert_close(a0, sched.alpha(s))
    torch.testing.assert_close(s0, sched.sigma(s))


def bayes_posterior_1d(prior_mean, prior_std, a, noise_std, obs):
    """Mean and variance of p(x | y) for x ~ N(prior_mean, prior_std^2), y = a x + noise_std * e,
    computed by brute-force quadrature on a grid (an independent route to the lemmas)."""
    grid = np.linspace(prior_mean - 12 * prior_std, prior_mean + 12 * prior_std, 200001)
    logp = -0.5 * ((grid - prior_mean) / prior_std) ** 2 - 0.5 * ((obs - a * grid) / noise_std) ** 2
    w = np.exp(logp - logp.max())
    w /= w.sum()
    mean = (w * grid).sum()
    return mean, (w * (grid - mean) ** 2).sum()


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_posterior_matches_bayes(sched):
    # lemma of §4.5.3: p(x_t | x_s, x0) from p(x_t | x0) p(x_s | x_t)
    t, s, x0, xs = 0.3, 0.55, 0.7, -0.4
    c_s, c_0, std = (float(v) for v in sched.posterior(s, t))   # from s to the cleaner t
    a_st, s_st = (float(v) for v in sched.kernel(t, s))
    mean, var = bayes_posterior_1d(float(sched.alpha(t)) * x0, float(sched.sigma(t)), a_st, s_st, xs)
    assert c_s * xs + c_0 * x0 == pytest.approx(mean, abs=1e-7)
    assert std ** 2 == pytest.approx(var, rel=1e-5)


@pytest.mark.parametrize("beta_is", ["std", "variance"])
def test_ddpm_posterior_lemma_222(beta_is):
    # Lemma 2.2.2 (Eq. 2.2.4) in the book's notation, checked against schedule.posterior and Bayes.
    betas = torch.linspace(0.05, 0.4, 12, dtype=torch.float64)
    sched = dl.DiscreteSchedule(betas, beta_is=beta_is)
    i = 7
    beta_std = betas[i - 1] if beta_is == "std" else betas[i - 1].sqrt()   # beta_i as a std
    a_i = torch.sqrt(1 - beta_std ** 2)
    ab, ab_prev = sched.alpha_at_steps[i], sched.alpha_at_steps[i - 1]
    mu_x = ab_prev * beta_std ** 2 / (1 - ab ** 2)
    mu_xi = (1 - ab_prev ** 2) * a_i / (1 - ab ** 2)
    var = (1 - ab_prev ** 2) / (1 - ab ** 2) * beta_std ** 2
    c_s, c_0, std = sched.posterior(sched.time(i), sched.time(i - 1))
    torch.testing.assert_close(c_0, mu_x)
    torch.testing.assert_close(c_s, mu_xi)
    torch.testing.assert_close(std ** 2, var)
    mean, v = bayes_posterior_1d(float(ab_prev) * 0.3, float((1 - ab_prev ** 2).sqrt()), float(a_i), float(beta_std), 1.1)
    assert float(mu_x * 0.3 + mu_xi * 1.1) == pytest.approx(mean, abs=1e-7)
    assert float(var) == pytest.approx(v, rel=1e-5)


def test_discrete_beta_conventions_and_chain(gen):
    # the book: beta is a std, alpha_i = sqrt(1 - beta_i^2), bar-alpha = prod alpha (Eq. 2.2.1)
    beta = 0.1
    sched = dl.DiscreteSchedule(torch.full((20,), beta), beta_is="std")
    i = torch.arange(21, dtype=torch.float64)
    torch.testing.assert_close(sched.alpha_at_steps, (1 - beta ** 2) ** (i / 2))
    ho = dl.DiscreteSchedule(torch.full((20,), beta), beta_is="variance")
    torch.testing.assert_close(ho.alpha_at_steps, (1 - beta) ** (i / 2))
    # simulate the chain step by step: Var[x_i | x_0] = 1 - bar-alpha_i^2 (Monte Carlo, n = 40000)
    n, x0 = 40000, 2.0
    x = torch.full((n,), x0, dtype=torch.float64)
    for _ in range(20):
        x = math.sqrt(1 - beta ** 2) * x + beta * torch.randn(n, generator=gen, dtype=torch.float64)
    ab = float(sched.alpha_at_steps[-1])
    var = 1 - ab ** 2
    assert float(x.mean()) == pytest.approx(ab * x0, abs=4 * math.sqrt(var / n))
    assert float(x.var()) == pytest.approx(var, abs=4 * var * math.sqrt(2 / n))
    # the continuous schedule passes through the chain's knots
    torch.testing.assert_close(sched.alpha(sched.time(i)), sched.alpha_at_steps)


def test_special_values():
    t = torch.tensor([0.2, 0.6], dtype=torch.float64)
    fm = dl.RectifiedFlow()
    torch.testing.assert_close(fm.f(t), -1 / (1 - t))                     # map §4(e) checkable facts
    torch.testing.assert_close(fm.g2(t), 2 * t / (1 - t))
    vp = dl.VPLinear(0.1, 20.0)
    B = 0.1 * t + 0.5 * 19.9 * t ** 2
    torch.testing.assert_close(vp.alpha(t), torch.exp(-B / 2))            # Table 4.1
    torch.testing.assert_close(vp.g2(t), vp.beta(t))                      # g = sqrt(beta) for VP
    torch.testing.assert_close(vp.f(t), -0.5 * vp.beta(t))
    ve = dl.VEGeometric(0.01, 50.0)
    torch.testing.assert_close(ve.sigma(t) ** 2, (0.01 * (5000 ** t)) ** 2 - 0.01 ** 2)
    for s in (dl.VPLinear(), dl.Cosine(), dl.Trig(), dl.DiscreteSchedule.linear(50)):
        torch.testing.assert_close(s.alpha(t) ** 2 + s.sigma(t) ** 2 / getattr(s, "sigma_d", 1) ** 2,
                                   torch.ones_like(t))


@settings(max_examples=60, deadline=None)
@given(t=st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1)), idx=st.integers(0, len(SCHEDULES) - 1))
def test_finite_or_clear_error(t, idx):
    """Every quantity is finite wherever it is defined and raises ValueError where it is not;
    lambda is the only one allowed to be +-inf (the extended-real limit at the end points)."""
    sched = SCHEDULES[idx]
    for name in ("alpha", "sigma", "d_alpha", "d_sigma2", "d_sigma", "d_lam", "f", "g2"):
        try:
            value = getattr(sched, name)(t)
        except ValueError as err:
            assert "t =" in str(err)
            continue
        assert torch.isfinite(value).all(), f"{sched.name}.{name}({t}) = {value}"
    for extended in (sched.lam(t), sched.snr(t)):   # +-inf allowed, NaN never
        assert not torch.isnan(extended).any()


def test_bad_input():
    with pytest.raises(ValueError, match="unknown schedule 'vq'.*allowed: cosine"):
        dl.get_schedule("vq")
    with pytest.raises(ValueError, match=r"t.*\[0, 1\]"):
        dl.VPLinear().alpha(1.5)
    with pytest.raises(ValueError, match="t contains NaN"):
        dl.VPLinear().sigma(float("nan"))
    with pytest.raises(TypeError, match="t must be"):
        dl.VPLinear().sigma("0.5")
    with pytest.raises(ValueError, match="beta_min"):
        dl.VPLinear(beta_min=-1)
    with pytest.raises(ValueError, match="beta_is"):
        dl.DiscreteSchedule([0.1], beta_is="var")
    with pytest.raises(ValueError, match="betas"):
        dl.DiscreteSchedule([0.1, 1.2])
    with pytest.raises(ValueError, match="d_sigma is not defined at t = 0"):
        dl.VPLinear().d_sigma(0.0)
    with pytest.raises(ValueError, match="s <= t"):
        dl.VPLinear().kernel(0.6, 0.3)
    with pytest.raises(ValueError, match="t <= s"):
        dl.VPLinear().posterior(0.3, 0.6)


def test_config_round_trip():
    for sched in SCHEDULES:
        again = dl.get_schedule(**sched.config())
        t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
        torch.testing.assert_close(again.alpha(t), sched.alpha(t))
        torch.testing.assert_close(again.sigma(t), sched.sigma(t))


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_coeffs_agree_with_the_single_methods(sched):
    t = torch.tensor([0.05, 0.3, 0.6, 0.95], dtype=torch.float64)
    c = sched.coeffs(t)
    for name in ("alpha", "sigma", "d_alpha", "d_sigma2", "d_sigma", "lam", "d_lam", "f", "g2"):
        torch.testing.assert_close(getattr(c, name), getattr(sched, name)(t), msg=name)
    one = sched.coeffs(0.3).floats()
    assert isinstance(one.alpha, float) and one.alpha == pytest.approx(float(sched.alpha(0.3)))
    with pytest.raises(ValueError, match="scalar"):
        c.floats()


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_coeffs_end_points_are_limits_not_nan(sched):
    c = sched.coeffs(torch.tensor([0.0, 1.0], dtype=torch.float64))
    for name, value in c.__dict__.items():
        assert not torch.isnan(value).any(), name
    assert c.lam[0] == math.inf                      # sigma_0 = 0
    if float(sched.alpha(1.0)) == 0:                  # flow, cosine, trig end in pure noise
        assert c.lam[1] == -math.inf and c.f[1] == -math.inf and c.g2[1] == math.inf


def test_alphas_cumprod_is_diffusers_bar_alpha():
    # Ho et al. / diffusers: alphas_cumprod = cumprod(1 - beta) for variance betas (an independent route)
    betas = torch.linspace(1e-4, 0.02, 50, dtype=torch.float64)
    sched = dl.DiscreteSchedule(betas, beta_is="variance")
    torch.testing.assert_close(sched.alphas_cumprod, torch.cumprod(1 - betas, 0))
    torch.testing.assert_close(sched.alpha_at_steps[1:] ** 2, sched.alphas_cumprod)
    torch.testing.assert_close(sched.step_alphas ** 2, 1 - betas)


def test_sample_prior_draws_with_the_generator_then_moves(device):
    # x_1 ~ N(0, sigma_1^2 I): torch.randn's numbers for a CPU generator, scaled, then sent to `device`
    for sched in (dl.VPLinear(), dl.EDM(5.0)):
        x = sched.sample_prior((6, 2), generator=torch.Generator().manual_seed(9), dtype=torch.float64, device=device)
        z = torch.randn(6, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64, device="cpu")
        assert x.device.type == device.type and x.dtype == torch.float64
        torch.testing.assert_close(x.cpu(), z * sched.prior_std())
    assert dl.EDM(5.0).prior_std() == pytest.approx(5.0)


def test_check_finite_names_the_first_bad_time():
    t = torch.tensor([0.2, 0.0, 1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"vp.d_sigma is not defined at t = 0 \(sigma_t = 0"):
        dl.VPLinear().d_sigma(t)
    with pytest.raises(ValueError, match=r"flow.f is not defined at t = 1 \(alpha_t = 0"):
        dl.RectifiedFlow().f(t)


# -- §6.3.3-§6.3.4: time maps between affine paths and the kinetic energy of a path -------------------------
AFFINE = [dl.VPLinear(), dl.Cosine(), dl.RectifiedFlow(), dl.Trig(), dl.EDM(sigma_max=5.0), dl.VEGeometric(0.01, 5.0)]
AFFINE_IDS = [s.name for s in AFFINE]


@pytest.mark.parametrize("src", AFFINE, ids=AFFINE_IDS)
@pytest.mark.parametrize("dst", [dl.RectifiedFlow(), dl.Trig(), dl.VPLinear()], ids=["to-flow", "to-trig", "to-vp"])
def test_time_map_carries_the_same_pair(src, dst):
    # x^dst_tau = k x^src_t with the SAME (x0, eps): checked on draws, not on the formula
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(7, 2, generator=g, dtype=torch.float64), torch.randn(7, 2, generator=g, dtype=torch.float64)
    t = torch.linspace(0.05, 0.9, 7, dtype=torch.float64)
    lam = src.lam(t)
    inside = (lam > dst.lam(torch.tensor(1.0 - 1e-6, dtype=torch.float64))) & (lam < dst.lam(torch.tensor(1e-6, dtype=torch.float64)))
    t = t[inside]
    tau, k = dl.schedules.time_map(src, dst, t)
    x_src = src.alpha(t)[:, None] * x0[inside] + src.sigma(t)[:, None] * eps[inside]
    x_dst = dst.alpha(tau)[:, None] * x0[inside] + dst.sigma(tau)[:, None] * eps[inside]
    torch.testing.assert_close(k[:, None] * x_src, x_dst, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(dst.lam(tau), lam[inside], rtol=1e-8, atol=1e-8)


def test_time_map_outside_the_range_and_bad_input():
    with pytest.raises(ValueError, match="outside the range"):
        dl.schedules.time_map(dl.VPLinear(), dl.VEGeometric(0.01, 5.0), 1.0)   # VP reaches a lower SNR than VE
    with pytest.raises(TypeError, match="Schedule"):
        dl.schedules.time_map("vp", dl.RectifiedFlow(), 0.5)
    with pytest.raises(ValueError, match="t must lie in"):
        dl.schedules.time_map(dl.VPLinear(), dl.RectifiedFlow(), 1.5)


@pytest.mark.parametrize("sched", AFFINE, ids=AFFINE_IDS)
def test_flow_time_is_the_books_map(sched):
    # x_t = c x^FM_tau with x^FM_tau = (1 - tau) x0 + tau eps, c = alpha + sigma, tau = sigma / (alpha + sigma)
    t = torch.tensor([0.0, 0.2, 0.6, 0.95], dtype=torch.float64)
    c, tau = dl.schedules.flow_time(sched, t)
    x0, eps = torch.tensor([1.3, -0.4], dtype=torch.float64), torch.tensor([0.2, 0.9], dtype=torch.float64)
    x_t = sched.alpha(t)[:, None] * x0 + sched.sigma(t)[:, None] * eps
    torch.testing.assert_close(x_t, c[:, None] * ((1 - tau)[:, None] * x0 + tau[:, None] * eps))
    tau2, k = dl.schedules.time_map(sched, dl.RectifiedFlow(), t)
    torch.testing.assert_close(tau2, tau, atol=1e-9, rtol=0)
    torch.testing.assert_close(k, 1 / c)


@pytest.mark.parametrize("sched", AFFINE, ids=AFFINE_IDS)
def test_trig_time_is_rotation_and_radius(sched):
    t = torch.tensor([0.0, 0.3, 0.7, 1.0], dtype=torch.float64)
    R, u = dl.schedules.trig_time(sched, t)
    torch.testing.assert_close(R * torch.cos(u), sched.alpha(t))
    torch.testing.assert_close(R * torch.sin(u), sched.sigma(t))
    assert ((u >= 0) & (u <= math.pi / 2 + 1e-12)).all()
    inner = t[(t > 0) & (t < 1)]
    tau, _ = dl.schedules.time_map(sched, dl.Trig(), inner)        # the package's Trig runs u = pi t / 2
    torch.testing.assert_close(tau * math.pi / 2, dl.schedules.trig_time(sched, inner)[1], atol=1e-9, rtol=0)


class _Power(dl.Schedule):
    """x_t = (1 - rho) x0 + rho eps with rho = t^p (p >= 1/2 keeps the energy finite)."""

    def __init__(self, p):
        self.p, self.name = p, f"power{p}"

    def _alpha(self, t): return 1 - t ** self.p
    def _sigma(self, t): return t ** self.p
    def _d_alpha(self, t): return -self.p * t ** (self.p - 1)
    def _d_sigma2(self, t): return 2 * self.p * t ** (2 * self.p - 1)
    def _d_sigma(self, t): return self.p * t ** (self.p - 1)


def test_kinetic_energy_closed_form_and_monte_carlo():
    # (1 - rho, rho) paths: K = (D + E||x0||^2) int rho'^2 = (D + m2) p^2 / (2p - 1), minimal at p = 1
    D, m2 = 2, 4.08                                    # eight Gaussians: radius 2, std 0.2 -> 4 + 2 * 0.04
    for p in (1.0, 1.5, 2.0, 3.0):
        want = (D + m2) * p ** 2 / (2 * p - 1)
        assert math.isclose(dl.schedules.kinetic_energy(_Power(p), m2, D, n=64), want, rel_tol=1e-9)
    ks = {p: dl.schedules.kinetic_energy(_Power(p), m2, D) for p in (1.0, 1.2, 2.0)}
    assert min(ks, key=ks.get) == 1.0
    # Monte Carlo of E||alpha' x0 + sigma' eps||^2 on the mixture at fixed t: 20000 draws, tolerance 5 standard errors
    gmm = dl.datasets.eight_gaussians_mixture()
    g = torch.Generator().manual_seed(0)
    x0 = gmm.sample(20000, generator=g, dtype=torch.float64)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    c = dl.Trig().coeffs(0.4)
    e = ((c.d_alpha * x0 + c.d_sigma * eps) ** 2).sum(1)
    closed = float(c.d_alpha ** 2 * m2 + c.d_sigma ** 2 * D)
    assert abs(float(e.mean()) - closed) < 5 * float(e.std()) / math.sqrt(len(e))
    assert math.isclose(float((x0 ** 2).sum(1).mean()), m2, rel_tol=0.02)


def test_kinetic_energy_refuses_divergent_and_bad_input():
    with pytest.raises(ValueError, match="diverges"):
        dl.schedules.kinetic_energy(dl.VPLinear(), 1.0, 2)         # sigma ~ sqrt(t): int 1/t diverges
    assert math.isfinite(dl.schedules.kinetic_energy(dl.VPLinear(), 1.0, 2, t_min=1e-3))
    for kw, word in [({"second_moment": -1.0, "dim": 2}, "second_moment"), ({"second_moment": 1.0, "dim": 0}, "dim"),
                     ({"second_moment": 1.0, "dim": 2, "n": 1}, "n must"),
                     ({"second_moment": 1.0, "dim": 2, "t_min": 0.5, "t_max": 0.2}, "t_min < t_max")]:
        with pytest.raises(ValueError, match=word):
            dl.schedules.kinetic_energy(dl.RectifiedFlow(), **kw)
