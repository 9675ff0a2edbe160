"""The step contract (dpm_lab.steps): time checks, coefficient reads, one model call, the noise draw,
the explicit state, clear errors, and the Solver object the driver runs."""
import math

import pytest
import torch
from stand_ins import EpsNet

from dpm_lab import gmm, schedules, steps, utils


def _mixture():
    covs = [[[0.3, 0.1], [0.1, 0.15]], [[0.1, 0.0], [0.0, 0.4]]]
    return gmm.GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.3]], covs)




def test_check_times_reads_from_s_to_a_cleaner_t():
    assert steps.check_times(0.7, torch.tensor(0.2), "ddim") == (0.7, pytest.approx(0.2))
    with pytest.raises(ValueError, match=r"ddim runs from the noisier time s to a cleaner t < s.*s=0.2, t=0.7"):
        steps.check_times(0.2, 0.7, "ddim")
    with pytest.raises(ValueError, match="t < s"):
        steps.check_times(0.5, 0.5, "ddim")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        steps.check_times(1.5, 0.5, "ddim")
    with pytest.raises(ValueError, match="scalar times"):
        steps.check_times(torch.tensor([0.5, 0.6]), 0.1, "ddim")
    with pytest.raises(TypeError, match="float time"):
        steps.check_times("0.5", 0.1, "ddim")
    with pytest.raises(TypeError, match="bool"):
        steps.check_times(True, 0.1, "ddim")


@pytest.mark.parametrize("sched", [schedules.VPLinear(), schedules.Cosine(), schedules.RectifiedFlow()],
                         ids=lambda s: s.name)
def test_coeffs_are_the_schedule_floats_with_end_point_limits(sched):
    c = steps.coeffs(sched, 0.3)
    assert isinstance(c.alpha, float) and isinstance(c.lam, float)
    assert c.alpha == float(sched.alpha(0.3)) and c.sigma == float(sched.sigma(0.3))
    assert math.isclose(c.lam, math.log(c.alpha / c.sigma), rel_tol=1e-12)
    one = steps.coeffs(sched, 1.0)
    if sched.name == "vp":
        assert one.alpha > 0 and math.isfinite(one.lam)
    else:   # cosine and flow: alpha_1 = 0 exactly (no threshold), lambda = -inf
        assert one.alpha == 0.0 and one.lam == -math.inf
    assert steps.coeffs(sched, 0.0).lam == math.inf          # sigma_0 = 0


def test_begin_returns_both_reads_and_a_state():
    sched = schedules.VPLinear()
    model = _mixture().model(sched)
    cs, ct, state = steps.begin(model, 0.8, 0.1, None, "x")
    assert (cs.t, ct.t) == (0.8, 0.1) and state == {"x0": None, "hist": []}
    mine = {"x0": None, "hist": [(1.0, None)]}
    assert steps.begin(model, 0.8, 0.1, mine, "x")[2] is mine


def test_new_state_is_explicit():
    fresh = steps.new_state(None)
    assert fresh == {"x0": None, "hist": []} and steps.new_state(None) is not fresh
    with pytest.raises(TypeError, match="state must be None or the dict"):
        steps.new_state([1, 2])


def test_x0_eps_is_one_call_and_consistent(gen):
    sched = schedules.VPLinear()
    mix = _mixture()
    calls = []

    class Counting(EpsNet):
        def raw(self, x_t, t, c=None):
            calls.append(t)
            return super().raw(x_t, t, c)

    model = Counting(mix, sched)
    x = mix.sample_marginal(16, 0.4, sched, generator=gen, dtype=torch.float64)
    state = steps.new_state(None)
    x0, eps = steps.x0_eps(model, x, 0.4, state)
    assert len(calls) == 1
    a, s = float(sched.alpha(0.4)), float(sched.sigma(0.4))
    torch.testing.assert_close(a * x0 + s * eps, x)                    # x = alpha x0 + sigma eps
    torch.testing.assert_close(x0, mix.x0(x, 0.4, sched))
    assert state["x0"] is x0


def test_x0_eps_where_alpha_is_zero(gen):
    """At t = 1 of the flow schedule x_t carries no data: the model is asked for x0 directly."""
    sched, mix = schedules.RectifiedFlow(), _mixture()
    x = utils.randn((8, 2), generator=gen, dtype=torch.float64)
    x0, eps = steps.x0_eps(mix.model(sched), x, 1.0)
    torch.testing.assert_close(x0, mix.x0(x, 1.0, sched))
    torch.testing.assert_close(eps, x)                                   # sigma_1 = 1, alpha_1 = 0
    with pytest.raises(ValueError, match="alpha_t = 0"):                 # an eps-network cannot answer
        steps.x0_eps(EpsNet(mix, sched), x, 1.0)


def test_velocity_records_the_data_prediction(gen):
    sched, mix = schedules.VPLinear(), _mixture()
    x = mix.sample_marginal(8, 0.5, sched, generator=gen, dtype=torch.float64)
    state = steps.new_state(None)
    v = steps.velocity(mix.model(sched), x, 0.5, state)
    torch.testing.assert_close(v, mix.velocity(x, 0.5, sched))
    torch.testing.assert_close(state["x0"], mix.x0(x, 0.5, sched))


def test_noise_is_drawn_on_the_generator_then_moved(device):
    x = torch.zeros(5, 3, dtype=torch.float64, device=device)
    z = steps.noise(x, torch.Generator().manual_seed(3))
    want = torch.randn(5, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64, device="cpu")
    assert z.device == x.device and z.dtype == x.dtype
    torch.testing.assert_close(z.cpu(), want)


def test_need_names_method_and_end_point():
    steps.need(True, "alpha_s > 0", "deis")
    with pytest.raises(ValueError, match=r"deis needs alpha_s > 0; start below t = 1"):
        steps.need(False, "alpha_s > 0", "deis")
    with pytest.raises(ValueError, match="my hint"):
        steps.need(False, "x", "m", hint="my hint")


def _step(model, x, s, t, *, state=None, generator=None, scale=1.0):
    state = steps.new_state(state)
    return scale * x, state


def test_solver_fields_are_validated():
    ok = steps.Solver("mine", _step, 1, 1)
    assert ok.step_options(3, scale=2.0) == [{"scale": 2.0}] * 3 and ok.nfe(3) == 3
    with pytest.raises(TypeError, match="name"):
        steps.Solver("", _step, 1, 1)
    with pytest.raises(TypeError, match="step must be callable"):
        steps.Solver("mine", 3, 1, 1)
    with pytest.raises(TypeError, match="order"):
        steps.Solver("mine", _step, -1, 1)
    with pytest.raises(TypeError, match="nfe_per_step"):
        steps.Solver("mine", _step, 1, 0)
    adaptive = steps.Solver("mine", _step, 1, None)
    assert adaptive.nfe(4) is None


def test_solver_plan_and_cost():
    plan = lambda n, opts: [{**opts, "k": i + 1} for i in range(n)]   # noqa: E731
    sol = steps.Solver("mine", _step, 1, 1, plan=plan, cost=lambda o: o["k"])
    assert sol.step_options(3, scale=1.0) == [{"scale": 1.0, "k": 1}, {"scale": 1.0, "k": 2}, {"scale": 1.0, "k": 3}]
    assert sol.nfe(3) == 6
    bad = steps.Solver("mine", _step, 1, 1, plan=lambda n, opts: [opts])
    with pytest.raises(ValueError, match="1 option sets for 3 steps"):
        bad.step_options(3)


def test_as_solver_takes_solver_like_objects_and_refuses_others():
    class Student:                                  # a later chapter's sampler, not a Solver subclass
        name, order, nfe_per_step, stochastic = "student", 0, 1, False

        @staticmethod
        def step(model, x, s, t, *, state=None, generator=None):
            return x, steps.new_state(state)

    sol = steps.as_solver(Student())
    assert isinstance(sol, steps.Solver) and sol.name == "student" and sol.order == 0
    assert steps.as_solver(sol) is sol
    with pytest.raises(TypeError, match="got function without name, step, order, nfe_per_step.*wrap it"):
        steps.as_solver(_step)
    with pytest.raises(TypeError, match="got int without"):
        steps.as_solver(3)
    with pytest.raises(TypeError, match="solver name"):
        steps.as_solver("ddim")


def test_time_at_lam_inverts_lambda():
    sched = schedules.VPLinear()
    t = steps.time_at_lam(sched, float(sched.lam(0.37)))
    assert isinstance(t, float) and math.isclose(t, 0.37, rel_tol=1e-9)


def test_coeffs_are_remembered_per_schedule_and_equal_a_fresh_read():
    vp, cos = schedules.VPLinear(), schedules.Cosine()
    first = steps.coeffs(vp, 0.37)
    assert steps.coeffs(vp, 0.37) is first                    # a grid's times are read once
    assert first == vp.coeffs(0.37).floats()                  # and the remembered value is the fresh one
    assert steps.coeffs(cos, 0.37) == cos.coeffs(0.37).floats() != first   # no sharing across schedules
