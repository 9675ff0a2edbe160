"""Exponential integrators (§9.3-9.5): the kernel integrals, the history polynomial, the book's 2M
coefficients, and the order policies (plans, the step-ratio guard, the third-order step bound)."""
import math

import pytest
import torch

from dpm_lab import fast_solvers as fs
from dpm_lab import gmm, samplers, schedules, steps, utils


def _model():
    covs = [[[0.3, 0.1], [0.1, 0.15]], [[0.1, 0.0], [0.0, 0.4]]]
    return gmm.GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.3]], covs).model(schedules.VPLinear())


def _x(seed=0, n=8):
    return utils.randn((n, 2), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_phi_integrals_match_closed_forms():
    for h in [1e-6, 0.3, -0.7, 2.5, -3.0]:
        assert math.isclose(fs.phi_int(0, h), math.expm1(h), rel_tol=1e-13)
        assert math.isclose(fs.phi_int(1, h), math.exp(h) - 1 - h, rel_tol=1e-9, abs_tol=1e-15)
        assert math.isclose(fs.psi_int(1, h), h - 1 + math.exp(-h), rel_tol=1e-9, abs_tol=1e-15)
    assert math.isclose(fs.phi_int(2, 1e-3) / 1e-9, 1 / 6, rel_tol=1e-3)   # phi_3(0) = 1/3!
    assert fs.psi_int(0, math.inf) == 1.0


def test_taylor_from_history_is_exact_for_quadratics():
    p = lambda lam: 2.0 - 3.0 * lam + 0.5 * lam ** 2   # noqa: E731
    hist = [(lam, torch.tensor(p(lam))) for lam in (1.0, 0.4, -0.5)]
    y, dy, d2y = fs.taylor_from_history(hist, 3)
    assert math.isclose(float(y), p(1.0)) and math.isclose(float(dy), -3.0 + 1.0) and math.isclose(float(d2y), 1.0)
    assert len(fs.taylor_from_history([(-math.inf, 1.0)] + hist, 3)) == 3     # infinite lambda is skipped


def test_dpmpp_2m_with_equal_steps_uses_the_books_coefficients():
    """§9.5 algorithm box: with r = h/h_prev = 1, D = 1.5 x0_{i-1} - 0.5 x0_{i-2}."""
    model = _model()
    sch, x = model.schedule, _x(1)
    s = 0.5
    lam_s = steps.coeffs(sch, s).lam
    t, t_prev = steps.time_at_lam(sch, lam_s + 0.4), steps.time_at_lam(sch, lam_s - 0.4)
    x0_prev = model.predict(x, t_prev, "x0")
    out, state = fs.dpmpp_2m_step(model, x, s, t, state={"x0": None, "hist": [(lam_s - 0.4, x0_prev)]})
    cs, ct = steps.coeffs(sch, s), steps.coeffs(sch, t)
    d = 1.5 * model.predict(x, s, "x0") - 0.5 * x0_prev
    torch.testing.assert_close(out, ct.sigma / cs.sigma * x + ct.alpha * (1 - math.exp(-0.4)) * d)
    assert state["hist"][0][0] == lam_s
    first, _ = fs.dpmpp_2m_step(model, x, s, t)                                   # no history: DDIM in x0 form
    torch.testing.assert_close(first, samplers.ddim_step(model, x, s, t)[0])


def test_the_step_ratio_guard_drops_to_first_order():
    model = _model()
    sch, x = model.schedule, _x(2)
    s = 0.5
    lam_s = steps.coeffs(sch, s).lam
    t = steps.time_at_lam(sch, lam_s + 3.0)                                      # h = 3 = 10 h_prev
    hist = [(lam_s - 0.3, model.predict(x, steps.time_at_lam(sch, lam_s - 0.3), "x0"))]
    guarded, _ = fs.dpmpp_2m_step(model, x, s, t, state={"x0": None, "hist": list(hist)})
    ddim, _ = samplers.ddim_step(model, x, s, t)
    torch.testing.assert_close(guarded, ddim)
    free, _ = fs.dpmpp_2m_step(model, x, s, t, state={"x0": None, "hist": list(hist)}, max_step_ratio=None)
    assert (free - ddim).abs().max() > 1e-3


def test_the_third_order_term_needs_a_short_step():
    model = _model()
    sch, x = model.schedule, _x(3)
    lam_s = steps.coeffs(sch, 0.4).lam
    hist = [(lam_s - k * 1.2, model.predict(x, steps.time_at_lam(sch, lam_s - k * 1.2), "x0")) for k in (1, 2)]
    t = steps.time_at_lam(sch, lam_s + 1.2)                                      # h = 1.2 > 1
    run = lambda **kw: fs.dpmpp_3m_step(model, x, 0.4, t, state={"x0": None, "hist": list(hist)}, **kw)[0]  # noqa: E731
    torch.testing.assert_close(run(), run(order=2))
    assert (run(max_h_order3=None) - run(order=2)).abs().max() > 1e-4


@pytest.mark.parametrize("order", [1, 2, 3])
def test_dpm_solver_step_dispatches_on_order(order):
    model, x = _model(), _x(4)
    want = {1: fs.dpm_solver_1_step, 2: fs.dpm_solver_2_step, 3: fs.dpm_solver_3_step}[order](model, x, 0.7, 0.3)[0]
    torch.testing.assert_close(fs.dpm_solver_step(model, x, 0.7, 0.3, order=order)[0], want)
    with pytest.raises(ValueError, match="order must be one of 1, 2, 3"):
        fs.dpm_solver_step(model, x, 0.7, 0.3, order=4)


def test_multistep_plan_lowers_the_final_orders_of_short_runs():
    plan = fs.multistep_plan(3)
    assert [o["order"] for o in plan(5, {})] == [3, 3, 3, 2, 1]
    assert [o["order"] for o in plan(5, {"lower_order_final": False})] == [3] * 5
    assert [o["order"] for o in plan(fs.LOWER_ORDER_FINAL_BELOW, {})] == [3] * fs.LOWER_ORDER_FINAL_BELOW
    assert plan(2, {"order": 2, "max_step_ratio": None}) == [{"order": 2, "max_step_ratio": None},
                                                              {"order": 1, "max_step_ratio": None}]


def test_singlestep_plan_spends_small_budgets_on_low_orders():
    plan = fs.singlestep_plan(3)
    assert [o["order"] for o in plan(3, {})] == [2, 2, 1]
    assert [o["order"] for o in plan(4, {})] == [3, 3, 3, 1]
    assert [o["order"] for o in plan(3, {"lower_order_final": False})] == [3, 3, 3]
    assert [o["order"] for o in plan(2, {"orders": [3, 2]})] == [3, 2]
    assert [o["order"] for o in fs.singlestep_plan(2)(5, {})] == [2, 2, 2, 2, 1]


def test_fast_solvers_are_the_registered_ones():
    for solver in fs.FAST_SOLVERS:
        assert samplers.SOLVERS[solver.name] is solver
    assert samplers.SOLVERS["dpm_solver_3"].nfe(4) == 10 and samplers.SOLVERS["dpmpp_3m"].multistep


# -- ParaDiGMS (§9.7) ----------------------------------------------------------------------------------------
def _picard_setup(n=40, b=16):
    import dpm_lab as dl
    model = dl.datasets.eight_gaussians_mixture().model(schedules.VPLinear())
    grid = dl.grids.time_grid(model.schedule, n, "quadratic")
    return model, _x(3, b), grid


def test_euler_path_is_the_samplers_euler_run():
    model, x, grid = _picard_setup()
    torch.testing.assert_close(fs.euler_path(model, x, grid), samplers.trajectory(model, x, grid, "euler"))


@pytest.mark.parametrize("window", [1, 4, 40])
def test_picard_fixed_point_is_the_sequential_euler_solution(window):
    """tol = 0: the window slides only past points that stopped changing, so the answer IS Euler's."""
    model, x, grid = _picard_setup()
    res = fs.paradigms(model, x, grid, window=window, tol=0.0)
    torch.testing.assert_close(res.path, fs.euler_path(model, x, grid), rtol=0, atol=1e-12)
    assert res.sweeps <= 40                               # each sweep fixes at least one more point
    assert res.evaluations == sum(res.window_sizes) and max(res.window_sizes) <= window
    if window == 1:                                       # a window of one is the sequential solver
        assert res.sweeps == 40 and res.evaluations == 40


def test_picard_with_a_tolerance_needs_fewer_sweeps_and_stays_within_it():
    model, x, grid = _picard_setup()
    seq = fs.euler_path(model, x, grid)
    res = fs.paradigms(model, x, grid, window=40, tol=1e-6)
    assert res.sweeps < 20 and res.evaluations > 40      # fewer rounds, more total work
    err = (res.x - seq[-1]).pow(2).mean().sqrt()
    assert err < 1e-4                                     # tolerance 1e-6 per point, amplified along 40 steps
    loose = fs.paradigms(model, x, grid, window=40, tol=1e-3)
    assert loose.sweeps <= res.sweeps and (loose.x - seq[-1]).pow(2).mean().sqrt() > err


def test_picard_rejects_bad_input():
    model, x, grid = _picard_setup()
    with pytest.raises(ValueError, match="window"):
        fs.paradigms(model, x, grid, window=0)
    with pytest.raises(ValueError, match="tol"):
        fs.paradigms(model, x, grid, tol=-1.0)
    with pytest.raises(ValueError, match="descending"):
        fs.paradigms(model, x, list(grid)[::-1])
    with pytest.raises(RuntimeError, match="no convergence"):
        fs.paradigms(model, x, grid, tol=0.0, max_sweeps=3)


def test_fitted_order_reads_the_slope_of_a_power_law():
    import numpy as np

    from dpm_lab.fast_solvers import fitted_order
    nfes = [8, 16, 32, 64]
    assert abs(fitted_order(nfes, [5.0 * n ** -2.0 for n in nfes]) - 2.0) < 1e-12
    noisy = [3.0, 1.1, 0.2, 0.07]
    assert abs(fitted_order(nfes, noisy) + np.polyfit(np.log(nfes), np.log(noisy), 1)[0]) < 1e-12
    from dpm_lab.widgets import fitted_order as from_widgets
    assert from_widgets is fitted_order                                 # still importable from the widget module
    for bad in (([8], [1.0]), ([8, 16], [1.0]), ([8, 16], [1.0, 0.0])):
        with pytest.raises(ValueError, match="fitted_order"):
            fitted_order(*bad)
