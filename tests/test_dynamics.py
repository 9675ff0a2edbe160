"""Dynamics on exact fields: the forward SDE's kernel, shared marginals of the reverse SDE, PF-ODE and
the gamma-family (§6.4), drift identities, and Langevin vs annealed Langevin on mode weights (§3.4.1).

Monte Carlo tolerances are 4 standard errors computed from the samples themselves."""
import math

import pytest
import torch

from dpm_lab import dynamics, gmm, grids, samplers, schedules, steps

N = 4000
T_END = 0.02


def _mixture():
    covs = [[[0.3, 0.1], [0.1, 0.15]], [[0.1, 0.0], [0.0, 0.4]]]
    return gmm.GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.3]], covs)


def _moment_z(x, mean, cov):
    """z-scores of the sample mean (D,) and of the sample second central moments (D*D,) about `mean`."""
    n = x.shape[0]
    xc = x - mean
    second = (xc[:, :, None] * xc[:, None, :]).flatten(1)
    z1 = (x.mean(0) - mean) / (x.std(0) / math.sqrt(n))
    z2 = (second.mean(0) - cov.flatten()) / (second.std(0) / math.sqrt(n))
    return torch.cat([z1, z2]).abs().max().item()


def test_forward_sde_reproduces_the_kernel(gen):
    sched = schedules.VPLinear()
    x0 = torch.tensor([[1.5, -2.0]], dtype=torch.float64).expand(N, 2)
    times = torch.linspace(0, 0.6, 301, dtype=torch.float64)
    path = dynamics.forward_sde(x0, times, sched, generator=gen)
    assert path.shape == (301, N, 2)
    a, s = sched.alpha(0.6), sched.sigma(0.6)
    z = _moment_z(path[-1], a * x0[0], s ** 2 * torch.eye(2, dtype=torch.float64))
    assert z < 4, z
    # the EDM/VE kernel: alpha = 1, variance sigma_t^2
    edm = schedules.EDM(sigma_max=2.0)
    path = dynamics.forward_sde(x0, torch.linspace(0, 1, 201, dtype=torch.float64), edm, generator=gen)
    assert _moment_z(path[-1], x0[0], 4.0 * torch.eye(2, dtype=torch.float64)) < 4


@pytest.fixture(scope="module")
def vp_setup():
    sched = schedules.VPLinear()
    mix = _mixture()
    marg = mix.marginal(T_END, sched)
    x1 = torch.randn(N, 2, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    grid = grids.time_grid(sched, 200, "uniform", t_min=T_END)
    return mix.model(sched), x1, grid, marg.mean(), marg.cov()


SHARED = [("euler_maruyama", {}), ("gamma_sde", {"gamma": 0.0}), ("gamma_sde", {"gamma": 0.6}),
          ("gamma_sde", {"gamma": lambda t: 2.0 * (1 - t) + 0.5}), ("ddpm", {}), ("ddim", {"eta": 0.5}),
          ("dpmpp_2m", {}), ("edm", {"churn": 0.1})]


@pytest.mark.parametrize("name,opts", SHARED, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SHARED)])
def test_reverse_sde_pf_ode_and_gamma_family_share_marginals(vp_setup, name, opts):
    model, x1, grid, mean, cov = vp_setup
    x = samplers.solve(model, x1, grid, name, generator=torch.Generator().manual_seed(5), **opts)
    z = _moment_z(x, mean, cov)
    assert z < 4, f"{name} {opts}: max |z| = {z:.2f}"


def test_marginal_check_has_power(vp_setup):
    """A wrong sampler (Anderson's drift without its noise) must fail the same check."""
    model, x1, grid, mean, cov = vp_setup
    x = x1
    for s, t in zip(grid[:-1].tolist(), grid[1:].tolist()):
        x = x - (s - t) * dynamics.reverse_drift(model, x, s)
    assert _moment_z(x, mean, cov) > 10


def test_gamma_drift_identities(gen):
    """gamma = 0 is the PF-ODE velocity and gamma = g is Anderson's drift f x - g^2 s (§6.4)."""
    for sched in [schedules.VPLinear(), schedules.EDM(), schedules.RectifiedFlow()]:
        model = _mixture().model(sched)
        for t in [0.05, 0.4, 0.9]:
            x = _mixture().sample_marginal(64, t, sched, generator=gen, dtype=torch.float64)
            torch.testing.assert_close(dynamics.gamma_drift(model, x, t, 0.0), dynamics.pf_ode_velocity(model, x, t))
            torch.testing.assert_close(dynamics.gamma_drift(model, x, t, "g"), dynamics.reverse_drift(model, x, t))


def test_annealed_langevin_recovers_weights_plain_langevin_does_not(gen):
    """§3.4.1: with modes 8 apart, Langevin at the data score keeps the starting split, annealing fixes it."""
    mix = gmm.GaussianMixture([0.8, 0.2], [[-4.0], [4.0]], stds=0.5)
    ve = schedules.VEGeometric(0.01, 20.0)
    levels = ve.inv_lam(-torch.linspace(math.log(20.0), math.log(0.1), 30, dtype=torch.float64))
    x = 20 * torch.randn(N, 1, generator=gen, dtype=torch.float64)
    xa = dynamics.annealed_langevin(mix.model(ve), x, levels, n_steps=30, delta=0.1 * 0.1 ** 2, generator=gen)
    xp = dynamics.langevin(mix.data_score, x.clamp(-8, 8), 300, 0.05, generator=gen)
    frac_a, frac_p = (xa < 0).double().mean().item(), (xp < 0).double().mean().item()
    assert abs(frac_a - 0.8) < 0.05, frac_a
    assert abs(frac_p - 0.8) > 0.2, frac_p
    assert abs(xa[xa < 0].std().item() - 0.5) < 0.1   # and the modes have the right width


def test_langevin_stationary_variance(gen):
    mix = gmm.GaussianMixture([1.0], [[1.0]], stds=0.7)
    x = dynamics.langevin(mix.data_score, torch.zeros(N, 1, dtype=torch.float64), 400, 0.01, generator=gen)
    assert abs(x.mean().item() - 1.0) < 4 * 0.7 / math.sqrt(N)
    assert abs(x.var().item() - 0.49) < 0.05     # eta = 0.01 adds an O(eta) bias of about 0.001


def test_predictor_corrector(vp_setup):
    model, x1, grid, mean, cov = vp_setup
    sub = grid[::4]
    pc = dynamics.predictor_corrector(samplers.SOLVERS["ddim"], corrector_steps=1, snr=0.16)
    assert isinstance(pc, steps.Solver) and pc.stochastic and pc.nfe_per_step == 2 and pc.name == "pc(ddim)"
    recs = list(samplers.sample(model, x1, sub, pc, generator=torch.Generator().manual_seed(3)))
    x = recs[-1].x
    assert torch.isfinite(x).all() and recs[-1].nfe == 2 * (len(sub) - 1)
    assert _moment_z(x, mean, cov) < 4
    named = samplers.solve(model, x1, sub, "pc", predictor="ddim", generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(named, x)                               # the registered 'pc' by name: same run


def test_predictor_corrector_keeps_the_predictors_plan(vp_setup):
    model, x1, _, _, _ = vp_setup
    pc = dynamics.predictor_corrector(samplers.SOLVERS["dpmpp_2m"], corrector_steps=0)
    assert [o["order"] for o in pc.step_options(4)] == [2, 2, 2, 1]
    grid = grids.time_grid(model.schedule, 4, "lambda")
    torch.testing.assert_close(samplers.solve(model, x1, grid, pc), samplers.solve(model, x1, grid, "dpmpp_2m"))


def test_annealed_langevin_runs_through_the_driver(gen):
    """The driver's annealed_langevin visits the grid's levels after the first, eta = step_ratio sigma_t^2."""
    mix = gmm.GaussianMixture([0.8, 0.2], [[-4.0], [4.0]], stds=0.5)
    ve = schedules.VEGeometric(0.01, 20.0)
    levels = ve.inv_lam(-torch.linspace(math.log(20.0), math.log(0.1), 30, dtype=torch.float64))
    x = 20 * torch.randn(N, 1, generator=gen, dtype=torch.float64)
    recs = list(samplers.sample(mix.model(ve), x, levels, "annealed_langevin", n_steps=30, step_ratio=0.1,
                                generator=torch.Generator().manual_seed(0)))
    assert recs[-1].nfe == 29 * 30 and recs[-1].x0_pred.shape == x.shape
    xa = recs[-1].x
    assert abs((xa < 0).double().mean().item() - 0.8) < 0.05
    assert abs(xa[xa < 0].std().item() - 0.5) < 0.1
    again = dynamics.annealed_langevin(mix.model(ve), x, levels[1:], n_steps=30, delta=0.1 * 0.1 ** 2,
                                       generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, xa)      # the function form over levels[1:] is the same chain


def test_pf_ode_solve_encodes_and_decodes(vp_setup):
    model, x1, _, _, _ = vp_setup
    x = x1[:16]
    z = dynamics.pf_ode_solve(model, x, 1.0, 0.3)
    torch.testing.assert_close(dynamics.pf_ode_solve(model, z, 0.3, 1.0), x, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(z, model.mixture.flow_map(x, 1.0, 0.3, model.schedule), rtol=1e-7, atol=1e-7)


def test_bad_inputs(gen):
    model = _mixture().model(schedules.VPLinear())
    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="gamma"):
        dynamics.gamma_drift(model, x, 0.5, -1.0)
    with pytest.raises(ValueError, match="gamma"):
        dynamics.gamma_drift(model, x, 0.5, "h")
    with pytest.raises(ValueError, match="ascending"):
        dynamics.forward_sde(x, [0.5, 0.1], model.schedule, generator=gen)
    with pytest.raises(ValueError, match="descending"):
        dynamics.annealed_langevin(model, x, [0.1, 0.5], generator=gen)
    with pytest.raises(ValueError, match="step_size"):
        dynamics.langevin(lambda y: y, x, 10, 0.0)
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        samplers.solve(model, x, [1.0, 0.5], "pc", predictor="nope")
    with pytest.raises(TypeError, match="solver name"):
        dynamics.predictor_corrector("ddim")
    with pytest.raises(ValueError, match="corrector_steps"):
        samplers.solve(model, x, [1.0, 0.5], "pc", corrector_steps=-1, generator=gen)
    with pytest.raises(ValueError, match="step_ratio"):
        samplers.solve(model, x, [1.0, 0.5], "annealed_langevin", step_ratio=0.0, generator=gen)
    with pytest.raises(ValueError, match="gamma_sde runs from the noisier time s to a cleaner t < s"):
        dynamics.gamma_sde_step(model, x, 0.2, 0.5, generator=gen)
    with pytest.raises(ValueError, match="alpha"):   # f is undefined where alpha = 0
        dynamics.reverse_drift(_mixture().model(schedules.RectifiedFlow()), x, 1.0)


def test_langevin_temperature_targets_the_tempered_law():
    # on N(0, 1) the tempered law p^(1/T) is N(0, T); 4000 chains x 400 steps of eta = 0.01:
    # discretisation bias of the variance ~ eta/2 relative, MC s.e. of a variance ~ T sqrt(2/4000) = 0.022 T
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(4000, 1, dtype=torch.float64)
    for T in (0.5, 2.0):
        out = dynamics.langevin(lambda y: -y, x, 400, 0.01, generator=g, temperature=T)
        assert abs(out.var().item() / T - 1) < 0.1
    with pytest.raises(ValueError, match="temperature"):
        dynamics.langevin(lambda y: -y, x, 1, 0.01, temperature=0.0)
    with pytest.raises(ValueError, match="step_size"):
        dynamics.langevin(lambda y: -y, x, 1, -0.01)


# -- generic ODE and SDE solvers (App. A) ------------------------------------------------------------------
@pytest.mark.parametrize("method, order", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_ode_solve_has_its_convergence_order_on_the_linear_ode(method, order):
    lam, x0 = -1.3, torch.tensor([[0.7]], dtype=torch.float64)
    errs = []
    for n in (10, 20, 40):
        path = dynamics.ode_solve(lambda x, t: lam * x, x0, torch.linspace(0, 1, n + 1, dtype=torch.float64),
                                  method=method)
        errs.append(abs(float(path[-1]) - 0.7 * math.exp(lam)))
    slopes = [math.log2(a / b) for a, b in zip(errs[:-1], errs[1:])]
    assert all(abs(s - order) < 0.25 for s in slopes), slopes
    end = x0 * math.exp(lam)
    back = dynamics.ode_solve(lambda x, t: lam * x, end, torch.linspace(1, 0, 41, dtype=torch.float64))
    assert torch.allclose(back[-1], x0, atol=1e-6)                  # backward solving returns the start


def test_sde_solve_weak_order_one_and_strong_order_one_half(gen):
    """Geometric Brownian motion dx = a x dt + b x dW against its exact solution x0 exp((a - b^2/2) T + b W_T)
    driven by the same increments: strong error E|x_n - X_T| ~ h^(1/2), weak error |E[x_n - X_T]| ~ h.
    The weak error is measured on the coupled difference, whose Monte Carlo noise (its std / sqrt(N),
    about 3e-4 here) is far below the errors measured."""
    a, b, n_paths, fine = -1.0, 1.0, 20000, 1024
    dW = math.sqrt(1 / fine) * torch.randn(fine, n_paths, 1, generator=gen, dtype=torch.float64)
    exact = torch.exp(torch.tensor(a - 0.5 * b ** 2) + b * dW.sum(0))
    strong, weak = [], []
    for n in (8, 16, 32, 64):
        path = dynamics.sde_solve(torch.ones(n_paths, 1, dtype=torch.float64), torch.linspace(0, 1, n + 1),
                                  lambda x, t: a * x, lambda x, t: b * x, dW=dW.reshape(n, fine // n, n_paths, 1).sum(1))
        diff = path[-1] - exact
        strong.append(float(diff.abs().mean()))
        weak.append(abs(float(diff.mean())))
    s_slope = math.log2(strong[0] / strong[-1]) / 3
    w_slope = math.log2(weak[0] / weak[-1]) / 3
    assert 0.4 < s_slope < 0.75, s_slope
    assert 0.75 < w_slope < 1.3, w_slope


def test_generic_solvers_name_bad_arguments():
    x0 = torch.zeros(3, 1)
    with pytest.raises(ValueError, match="times"):
        dynamics.sde_solve(x0, [0.0, 0.5, 0.4], lambda x, t: x, 1.0)
    with pytest.raises(ValueError, match="ascending"):
        dynamics.sde_solve(x0, [1.0, 0.5], lambda x, t: x, 1.0)
    with pytest.raises(ValueError, match="diffusion"):
        dynamics.sde_solve(x0, [0.0, 0.5], lambda x, t: x, -1.0)
    with pytest.raises(ValueError, match="dW"):
        dynamics.sde_solve(x0, [0.0, 0.5], lambda x, t: x, 1.0, dW=torch.zeros(2, 3, 1))
    with pytest.raises(ValueError, match="unknown method"):
        dynamics.ode_solve(lambda x, t: x, x0, [0.0, 1.0], method="rk45")
    with pytest.raises(ValueError, match="times"):
        dynamics.ode_solve(lambda x, t: x, x0, [0.0, 0.0])
