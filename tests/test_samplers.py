"""Samplers on EXACT fields (MixtureModel), so the only error is the solver's.

Measured orders against a DOP853 reference, exact identities among methods (DDIM = DPM-Solver-1,
DDIM(eta=1) = ancestral DDPM, DDIM = Euler for the flow schedule), starting where alpha_1 = 0,
NFE bookkeeping and clear errors."""
import math

import pytest
import torch

from dpm_lab import gmm, grids, samplers, schedules
from dpm_lab.samplers import SOLVERS

T_MIN = 1e-3
STEPS = [32, 64, 128]


def _mixture():
    covs = [[[0.3, 0.1], [0.1, 0.15]], [[0.1, 0.0], [0.0, 0.4]]]
    return gmm.GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.3]], covs)


@pytest.fixture(scope="module")
def vp_problem():
    """2D anisotropic mixture under VP linear, 16 prior points, and the DOP853 reference at t_min."""
    sched = schedules.VPLinear()
    model = _mixture().model(sched)
    x1 = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = samplers.solve(model, x1, [1.0, T_MIN], "dop853", rtol=1e-12, atol=1e-12)
    return model, x1, ref


def _rms(x, ref):
    return ((x - ref) ** 2).sum(1).mean().sqrt().item()


ORDERS = [("euler", {}, 1), ("ddim", {}, 1), ("heun", {}, 2), ("dpm_solver_2", {}, 2), ("dpmpp_2m", {}, 2),
          ("dpmpp_2s", {}, 2), ("edm", {}, 2), ("deis", {"order": 2}, 2), ("dpm_solver_3", {}, 3),
          ("deis", {"order": 3}, 3), ("dpmpp_3m", {}, 3), ("rk4", {}, 4)]


@pytest.mark.parametrize("name,opts,order", ORDERS, ids=[f"{n}{o.get('order', '')}" for n, o, _ in ORDERS])
def test_global_error_falls_at_declared_order(vp_problem, name, opts, order):
    model, x1, ref = vp_problem
    if not opts:
        assert SOLVERS[name].order == order
    errs = []
    for n in STEPS:
        grid = grids.time_grid(model.schedule, n, "lambda", t_min=T_MIN)
        errs.append(_rms(samplers.solve(model, x1, grid, name, **opts), ref))
    logn, loge = torch.log(torch.tensor(STEPS, dtype=torch.float64)), torch.log(torch.tensor(errs))
    slope = -(((logn - logn.mean()) * (loge - loge.mean())).sum() / ((logn - logn.mean()) ** 2).sum()).item()
    assert abs(slope - order) <= 0.3, f"{name}: errors {errs}, fitted order {slope:.2f}"
    assert errs[-1] < 0.05


def test_ddim_equals_dpm_solver_1_step_by_step(vp_problem):
    model, x1, _ = vp_problem
    grid = grids.time_grid(model.schedule, 12, "uniform")
    a = samplers.trajectory(model, x1, grid, "ddim")
    b = samplers.trajectory(model, x1, grid, "dpm_solver_1")
    assert a.shape == b.shape == (13, 16, 2)
    torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)
    assert (a[-1] - a[0]).abs().max() > 0.1  # the steps move


@pytest.mark.parametrize("sched", [schedules.VPLinear(), schedules.Cosine(), schedules.EDM()], ids=lambda s: s.name)
def test_ddim_eta_one_is_ancestral_ddpm(sched):
    model = _mixture().model(sched)
    x1 = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * sched.prior_std()
    grid = grids.time_grid(sched, 25, "uniform")   # cosine starts where alpha_1 = 0
    a = samplers.trajectory(model, x1, grid, "ddpm", generator=torch.Generator().manual_seed(7))
    b = samplers.trajectory(model, x1, grid, "ddim", eta=1.0, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    c = samplers.solve(model, x1, grid, "ddim", eta=0.5, generator=torch.Generator().manual_seed(7))
    assert (c - a[-1]).abs().max() > 1e-3  # eta matters


def test_ddim_is_euler_for_the_flow_schedule():
    """Gotcha 5: DDIM = Euler on the velocity exactly when alpha, sigma are affine in t."""
    model = _mixture().model(schedules.RectifiedFlow())
    x1 = torch.randn(32, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grid = grids.time_grid(model.schedule, 10, "uniform")   # starts at t = 1 where alpha = 0
    torch.testing.assert_close(samplers.trajectory(model, x1, grid, "ddim"),
                               samplers.trajectory(model, x1, grid, "euler"), rtol=1e-10, atol=1e-10)
    vp = _mixture().model(schedules.VPLinear())
    grid = grids.time_grid(vp.schedule, 10, "uniform")
    assert (samplers.solve(vp, x1, grid, "ddim") - samplers.solve(vp, x1, grid, "euler")).abs().max() > 1e-2


@pytest.mark.parametrize("sched", [schedules.RectifiedFlow(), schedules.Cosine()], ids=lambda s: s.name)
@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m", "dpmpp_2s", "dpmpp_3m", "euler", "heun", "rk4", "ddpm"])
def test_start_at_alpha_zero_works_for_data_and_velocity_solvers(name, sched):
    model = _mixture().model(sched)
    x1 = torch.randn(16, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    grid = grids.time_grid(sched, 40, "uniform")
    assert grid[0] == 1.0
    x = samplers.solve(model, x1, grid, name, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()
    if name != "ddpm":
        ref = samplers.solve(model, x1, [1.0, sched.t_eps], "dop853", rtol=1e-11, atol=1e-11)
        assert _rms(x, ref) < 0.1


@pytest.mark.parametrize("name", ["ddim", "ddpm", "dpmpp_2m", "dpmpp_3m", "euler"])
def test_ending_exactly_at_t0_returns_the_data_prediction(name):
    model = _mixture().model(schedules.VPLinear())
    x1 = torch.randn(8, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    grid = torch.cat([grids.time_grid(model.schedule, 30, "lambda"), torch.zeros(1, dtype=torch.float64)])
    recs = list(samplers.sample(model, x1, grid, name, generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(recs[-1].x).all()
    if name != "euler":   # x0-based updates land exactly on x0_hat at sigma = 0
        torch.testing.assert_close(recs[-1].x, recs[-1].x0_pred)
    with pytest.raises(ValueError, match="sigma_t > 0"):
        samplers.solve(model, x1, grid, "dpm_solver_2")


@pytest.mark.parametrize("name", ["dpm_solver_1", "dpm_solver_2", "dpm_solver_3", "deis", "edm"])
@pytest.mark.parametrize("sched", [schedules.RectifiedFlow(), schedules.Cosine()], ids=lambda s: s.name)
def test_noise_form_solvers_refuse_alpha_zero_clearly(name, sched):
    model = _mixture().model(sched)   # cosine's alpha_1 is cos(pi/2) = 6e-17, treated as 0
    x1 = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="alpha"):
        samplers.solve(model, x1, grids.time_grid(model.schedule, 5, "uniform"), name)


@pytest.mark.parametrize("name", [n for n, s in SOLVERS.items() if s.nfe_per_step])
def test_nfe_records_and_dtype(name):
    model = _mixture().model(schedules.VPLinear())
    x1 = torch.randn(8, 2, generator=torch.Generator().manual_seed(4))   # float32
    recs = list(samplers.sample(model, x1, 6, name, generator=torch.Generator().manual_seed(0)))
    assert [r.i for r in recs] == list(range(7))
    assert recs[-1].nfe == 6 * SOLVERS[name].nfe_per_step
    assert recs[0].x0_pred is None and recs[-1].x0_pred.shape == (8, 2)
    assert recs[-1].x.dtype == torch.float32 and abs(recs[-1].t - model.schedule.t_eps) < 1e-12
    assert torch.isfinite(recs[-1].x).all()


def test_denoise_returns_the_final_data_prediction():
    model = _mixture().model(schedules.VPLinear())
    x1 = torch.randn(8, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    grid = grids.time_grid(model.schedule, 8, "lambda", t_min=0.05)
    x = samplers.solve(model, x1, grid, "dpmpp_2m")
    recs = list(samplers.sample(model, x1, grid, "dpmpp_2m", denoise=True))
    torch.testing.assert_close(recs[-1].x, model.predict(x, 0.05, "x0"))
    assert recs[-1].nfe == 9


def test_multistep_state_is_explicit():
    """Driving the step function by hand with the returned state reproduces the driver."""
    model = _mixture().model(schedules.VPLinear())
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    grid = grids.time_grid(model.schedule, 7, "lambda").tolist()
    out, state = x, None
    for s, t in zip(grid[:-1], grid[1:]):
        out, state = SOLVERS["dpmpp_3m"].step(model, out, s, t, state=state)
    assert len(state["hist"]) == 3
    torch.testing.assert_close(out, samplers.solve(model, x, grid, "dpmpp_3m"))
    fresh, _ = SOLVERS["dpmpp_3m"].step(model, x, grid[0], grid[1])   # state=None: a fresh start
    torch.testing.assert_close(fresh, samplers.solve(model, x, grid[:2], "dpmpp_3m"))


def test_edm_churn_is_reproducible_and_stochastic():
    model = _mixture().model(schedules.EDM())
    x1 = 80 * torch.randn(16, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    grid = grids.time_grid(model.schedule, 18, "edm")
    a = samplers.solve(model, x1, grid, "edm", churn=0.2, generator=torch.Generator().manual_seed(1))
    b = samplers.solve(model, x1, grid, "edm", churn=0.2, generator=torch.Generator().manual_seed(1))
    c = samplers.solve(model, x1, grid, "edm", churn=0.2, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-3


def test_phi_integrals_match_closed_forms():
    from dpm_lab.fast_solvers import phi_int, psi_int

    for h in [1e-6, 0.3, -0.7, 2.5, -3.0]:
        assert math.isclose(phi_int(0, h), math.expm1(h), rel_tol=1e-13)
        assert math.isclose(phi_int(1, h), math.exp(h) - 1 - h, rel_tol=1e-9, abs_tol=1e-15)
        assert math.isclose(psi_int(1, h), h - 1 + math.exp(-h), rel_tol=1e-9, abs_tol=1e-15)
    assert math.isclose(phi_int(2, 1e-3) / 1e-9, 1 / 6, rel_tol=1e-3)   # phi_3(0) = 1/3!
    assert psi_int(0, math.inf) == 1.0


def test_bad_inputs_give_clear_errors():
    model = _mixture().model(schedules.VPLinear())
    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown method 'rk5'.*ddim"):
        samplers.solve(model, x, 5, "rk5")
    with pytest.raises(ValueError, match="strictly descending"):
        samplers.solve(model, x, [0.1, 0.5, 0.01], "ddim")
    with pytest.raises(ValueError, match="at least 2 times"):
        samplers.solve(model, x, [0.5], "ddim")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        samplers.solve(model, x, [1.5, 0.1], "ddim")
    with pytest.raises(ValueError, match="steps"):
        samplers.solve(model, x, 0, "ddim")
    with pytest.raises(ValueError, match="nfe"):
        samplers.steps_for_nfe("heun", 1)
    with pytest.raises(ValueError, match="nfe"):
        samplers.steps_for_nfe("ddim", 0)
    with pytest.raises(ValueError, match="eta"):
        samplers.solve(model, x, 5, "ddim", eta=1.5)
    with pytest.raises(ValueError, match="order"):
        samplers.solve(model, x, 5, "deis", order=4)
    with pytest.raises(TypeError, match="x_T"):
        samplers.solve(model, [[0.0, 1.0]], 5, "ddim")
