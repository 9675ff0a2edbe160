"""The 1D Fokker-Planck solver against exact marginals (convergence order, mass, stability errors), the
moment ODEs against every schedule's (alpha, sigma), ConstantSDE's kernel, and Girsanov's path KL.

Monte Carlo tolerances are 4 standard errors computed from the samples themselves."""
import math

import numpy as np
import pytest
import torch

import dpm_lab as dl
from dpm_lab import dynamics
from dpm_lab import fokker_planck as fp

MIX = dl.GaussianMixture([0.4, 0.6], [[-1.0], [1.0]], stds=[0.3, 0.4])


def cells(lo, hi, n):
    dx = (hi - lo) / n
    return lo + dx * (np.arange(n) + 0.5)


def density(mix, x, t=None, sched=None):
    m = mix if t is None else mix.marginal(t, sched)
    return m.log_prob(torch.tensor(x)[:, None]).exp().numpy()


@pytest.mark.parametrize("drift, theta", [("ou", 1.0), ("none", 0.0)])
def test_second_order_convergence_to_the_exact_mixture_marginal(drift, theta):
    sde, errs = fp.ConstantSDE(theta, 1.0), []
    for n in (100, 200, 400):
        x = cells(-6, 6, n)
        p = fp.fp_solve(density(MIX, x), x, [0.0, 0.3], drift, 1.0)
        errs.append(np.abs(p[-1] - density(MIX, x, 0.3, sde)).max())
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all((orders > 1.8) & (orders < 2.3)), orders


def test_upwind_is_first_order_and_mass_is_conserved():
    sde, errs = fp.ConstantSDE(1.0, 1.0), []
    for n in (100, 200, 400):
        x = cells(-6, 6, n)
        p = fp.fp_solve(density(MIX, x), x, [0.0, 0.15, 0.3], "ou", 1.0, scheme="upwind")
        assert np.allclose(fp.mass(p, x), fp.mass(p[0], x), rtol=0, atol=1e-12)
        errs.append(np.abs(p[-1] - density(MIX, x, 0.3, sde)).max())
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all((orders > 0.8) & (orders < 1.3)), orders


def test_schedule_drift_matches_the_vp_marginal_and_particles():
    sch = dl.VPLinear(0.1, 5.0)
    x = cells(-5, 5, 200)
    p = fp.fp_solve(density(MIX, x), x, [0.0, 0.5], sch)
    assert np.abs(p[-1] - density(MIX, x, 0.5, sch)).max() < 2e-3
    # particles: the histogram of the forward SDE sits within 4 binomial standard errors of the PDE
    g = torch.Generator().manual_seed(0)
    n = 20000
    path = dynamics.forward_sde(MIX.sample(n, generator=g, dtype=torch.float64), torch.linspace(0, 0.5, 201), sch,
                                generator=g)
    edges = np.linspace(-3, 3, 25)
    counts, _ = np.histogram(path[-1, :, 0].numpy(), edges)
    width = edges[1] - edges[0]
    prob = np.array([p[-1][(x >= a) & (x < b)].sum() * (x[1] - x[0]) for a, b in zip(edges[:-1], edges[1:])])
    se = np.sqrt(n * prob * (1 - prob)) + 1.0
    assert np.all(np.abs(counts - n * prob) < 4 * se + 0.02 * n * width), (counts - n * prob) / se


def test_double_well_relaxes_to_its_gibbs_density():
    x = cells(-2.5, 2.5, 250)
    p = fp.fp_solve(density(MIX, x), x, [0.0, 6.0], "double_well", 1.0)
    gibbs = np.exp(-2 * (x ** 4 / 4 - x ** 2 / 2) / 1.0)        # p_inf ~ exp(-2U/g^2)
    gibbs /= gibbs.sum() * (x[1] - x[0])
    assert np.abs(p[-1] - gibbs).max() < 0.02 * gibbs.max()


def test_bad_input_names_the_argument():
    x = cells(-3, 3, 60)
    p0 = density(MIX, x)
    with pytest.raises(ValueError, match="dt"):
        fp.fp_solve(p0, x, [0, 0.1], "ou", 1.0, dt=-0.01)
    with pytest.raises(ValueError, match="stable limit"):
        fp.fp_solve(p0, x, [0, 0.1], "ou", 1.0, dt=0.1)
    with pytest.raises(ValueError, match="grid too coarse"):
        fp.fp_solve(p0, x, [0, 0.1], "double_well", 0.05)
    with pytest.raises(ValueError, match="unknown drift"):
        fp.fp_solve(p0, x, [0, 0.1], "quartic", 1.0)
    with pytest.raises(ValueError, match="g2"):
        fp.fp_solve(p0, x, [0, 0.1], "ou", -1.0)
    with pytest.raises(ValueError, match="g2"):
        fp.fp_solve(p0, x, [0, 0.1], dl.VPLinear(), 1.0)
    with pytest.raises(ValueError, match="grid"):
        fp.fp_solve(p0, np.r_[x[:-1], x[-1] + 0.5], [0, 0.1], "ou", 1.0)
    with pytest.raises(ValueError, match="p0"):
        fp.fp_solve(-p0, x, [0, 0.1], "ou", 1.0)
    with pytest.raises(ValueError, match="times"):
        fp.fp_solve(p0, x, [0.1, 0.0], "ou", 1.0)
    with pytest.raises(ValueError, match="theta"):
        fp.ConstantSDE(-1.0)
    with pytest.raises(ValueError, match="g must"):
        fp.ConstantSDE(1.0, 0.0)


@pytest.mark.parametrize("name", ["vp", "cosine", "ve", "edm", "flow", "trig"])
def test_moment_odes_recover_alpha_and_sigma(name):
    sch = dl.get_schedule(name)
    ts = np.array([0.05, 0.3, 0.6, 0.9])
    m, P = fp.moment_odes(sch, ts)
    a, s = sch.alpha(torch.tensor(ts)).numpy(), sch.sigma(torch.tensor(ts)).numpy()
    assert np.allclose(m, a, rtol=1e-6, atol=1e-8) and np.allclose(P, s ** 2, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="times"):
        fp.moment_odes(sch, [0.5, 1.0])


def test_constant_sde_coefficients_and_forward_kernel(gen):
    sde = fp.ConstantSDE(0.7, 1.3)
    assert math.isclose(float(sde.f(0.4)), -0.7, rel_tol=1e-12) and math.isclose(float(sde.g2(0.4)), 1.69, rel_tol=1e-12)
    x0 = torch.full((20000, 1), 1.5, dtype=torch.float64)
    path = dynamics.sde_solve(x0, torch.linspace(0, 1, 401), lambda x, t: -0.7 * x, 1.3, generator=gen)
    a, s = float(sde.alpha(1.0)), float(sde.sigma(1.0))
    xe = path[-1, :, 0]
    se_m, se_v = s / math.sqrt(20000), s ** 2 * math.sqrt(2 / 20000)
    assert abs(float(xe.mean()) - 1.5 * a) < 4 * se_m + 0.01          # 0.01: EM's O(h) weak bias
    assert abs(float(xe.var()) - s ** 2) < 4 * se_v + 0.01


def test_girsanov_constant_drift_difference_is_exact():
    ts = torch.linspace(0, 2, 11)
    path = torch.zeros(11, 3, 2, dtype=torch.float64)
    kl = fp.girsanov_kl(path, ts, lambda x, t: x + 0.5, lambda x, t: x - 0.25, 1.5)
    assert torch.allclose(kl, torch.full((3,), 0.5 * 2 * 0.75 ** 2 * 2 / 1.5 ** 2, dtype=torch.float64))


def test_girsanov_matches_the_mean_log_likelihood_ratio(gen):
    bp, bq, g = (lambda x, t: -2.0 * x), (lambda x, t: 1.0 - x), 0.8
    ts = torch.linspace(0, 1, 201)
    path = dynamics.sde_solve(torch.full((20000, 1), 0.5, dtype=torch.float64), ts, bp, g, generator=gen)
    kl, llr = fp.girsanov_kl(path, ts, bp, bq, g), fp.path_log_ratio(path, ts, bp, bq, g)
    se = float(llr.std()) / math.sqrt(llr.numel())
    assert abs(float(llr.mean()) - float(kl.mean())) < 4 * se
    with pytest.raises(ValueError, match="times"):
        fp.girsanov_kl(path, ts[:-1], bp, bq, g)
    with pytest.raises(ValueError, match="diffusion g"):
        fp.girsanov_kl(path, ts, bp, bq, 0.0)
