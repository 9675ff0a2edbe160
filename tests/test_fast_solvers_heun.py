"""DPM-Solver-2 and Heun in log-SNR time, on v-prediction models (§9.4.5).

Precisely: with y = x/alpha and r = sigma/alpha = e^{-lambda} the PF-ODE is dy/dr = eps_hat.
  * the package's DPM-Solver-2 (the algorithm box, r1 = 1/2) is the explicit MIDPOINT rule in r whose
    intermediate node is halfway in lambda (r_m = sqrt(r_s r_t)), exactly;
  * the Heun-type member of the DPM-Solver-2 family (r1 = 1: x_t = (a_t/a_s) x - s_t (e^h - 1)(eps_s + eps_u)/2,
    u the DDIM step to t) is Heun's trapezoid rule in r, i.e. EDM's deterministic sampler, exactly;
  * for a variance-preserving schedule the PF-ODE written with the v-prediction in lambda time has no linear
    part, dx/dlambda = -alpha sigma v_hat, and plain Heun on it is another second-order step: it differs
    from DPM-Solver-2 by O(h^3).
Computed by hand from a model that only answers v (the exact mixture wrapped) and from the zoo's MNIST-5k
model, which predicts v."""
import math

import pytest
import torch

import dpm_lab as dl
from dpm_lab.widgets.solvers import lab_mixture


class VOnly:
    """The exact mixture seen through its v-prediction only (every other kind converted from v)."""
    kind = "v"

    def __init__(self, model):
        self.m, self.schedule = model, model.schedule

    def predict(self, x, t, kind="eps", c=None):
        return dl.param.convert(self.schedule, x, t, self.m.predict(x, t, "v"), "v", kind)


@pytest.fixture(scope="module")
def setup():
    vp = dl.VPLinear()
    mix = lab_mixture()
    x = mix.sample_marginal(16, 0.5, vp, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return mix, vp, VOnly(mix.model(vp)), x


def _c(sch, t):
    a, s = float(sch.alpha(torch.tensor(t, dtype=torch.float64))), float(sch.sigma(torch.tensor(t, dtype=torch.float64)))
    return a, s, s / a                                               # alpha, sigma, r = e^{-lambda}


def _t_at_r(sch, r):
    return float(sch.inv_lam(torch.tensor(-math.log(r), dtype=torch.float64)))


def _eps(model, x, t):
    a, s, _ = _c(model.schedule, t)
    return s * x + a * model.predict(x, t, "v")                       # VP (alpha^2 + sigma^2 = 1): eps = sigma x + alpha v


def midpoint_in_r(model, x, s, t):
    sch = model.schedule
    a_s, _, r_s = _c(sch, s)
    a_t, _, r_t = _c(sch, t)
    r_m = math.sqrt(r_s * r_t)                                        # halfway in lambda
    t_m = _t_at_r(sch, r_m)
    a_m = _c(sch, t_m)[0]
    y = x / a_s
    u = y + (r_m - r_s) * _eps(model, x, s)
    return a_t * (y + (r_t - r_s) * _eps(model, a_m * u, t_m))


def heun_in_r(model, x, s, t):
    sch = model.schedule
    a_s, _, r_s = _c(sch, s)
    a_t, _, r_t = _c(sch, t)
    y = x / a_s
    e1 = _eps(model, x, s)
    e2 = _eps(model, a_t * (y + (r_t - r_s) * e1), t)
    return a_t * (y + (r_t - r_s) * (e1 + e2) / 2)


def dpm_solver_2_r1(model, x, s, t, r1):
    """The DPM-Solver-2 family (Lu et al. 2022, Alg. 1) with its intermediate node at lambda_s + r1 h."""
    sch = model.schedule
    cs, ct = sch.coeffs(s).floats(), sch.coeffs(t).floats()
    h = ct.lam - cs.lam
    t_u = float(sch.inv_lam(torch.tensor(cs.lam + r1 * h, dtype=torch.float64)))
    cu = sch.coeffs(t_u).floats()
    e_s = model.predict(x, s, "eps")
    u = cu.alpha / cs.alpha * x - cu.sigma * math.expm1(r1 * h) * e_s
    e_u = model.predict(u, t_u, "eps")
    return ct.alpha / cs.alpha * x - ct.sigma * math.expm1(h) * e_s - ct.sigma / (2 * r1) * math.expm1(h) * (e_u - e_s)


def heun_in_lambda_v(model, x, s, t):
    sch = model.schedule

    def f(x, lam):                                                    # dx/dlambda = -alpha sigma v (VP)
        tt = float(sch.inv_lam(torch.tensor(lam, dtype=torch.float64)))
        a, sg, _ = _c(sch, tt)
        return -a * sg * model.predict(x, tt, "v")

    ls, lt = sch.coeffs(s).floats().lam, sch.coeffs(t).floats().lam
    k1 = f(x, ls)
    k2 = f(x + (lt - ls) * k1, lt)
    return x + (lt - ls) / 2 * (k1 + k2)


@pytest.mark.parametrize("s,t", [(0.5, 0.3), (0.9, 0.6), (0.2, 0.05)])
def test_dpm_solver_2_is_the_midpoint_rule_in_r(setup, s, t):
    _, _, vm, x = setup
    step = dl.fast_solvers.dpm_solver_2_step(vm, x, s, t)[0]
    torch.testing.assert_close(step, midpoint_in_r(vm, x, s, t), rtol=0, atol=1e-12)
    torch.testing.assert_close(step, dpm_solver_2_r1(vm, x, s, t, 0.5), rtol=0, atol=1e-12)


@pytest.mark.parametrize("s,t", [(0.5, 0.3), (0.9, 0.6)])
def test_heun_type_dpm_solver_2_is_heun_in_r_and_edm(setup, s, t):
    _, _, vm, x = setup
    heun = dpm_solver_2_r1(vm, x, s, t, 1.0)
    torch.testing.assert_close(heun, heun_in_r(vm, x, s, t), rtol=0, atol=1e-12)
    torch.testing.assert_close(heun, dl.fast_solvers.edm_step(vm, x, s, t)[0], rtol=0, atol=1e-12)
    assert (heun - dl.fast_solvers.dpm_solver_2_step(vm, x, s, t)[0]).abs().max() > 1e-5   # not the same step


def test_v_form_has_no_linear_part(setup):
    """dx/dlambda of the exact PF-ODE = velocity * dt/dlambda equals -alpha sigma v for VP."""
    _, vp, vm, x = setup
    t, dt = 0.5, 1e-6
    dlam_dt = (vp.coeffs(t + dt).floats().lam - vp.coeffs(t - dt).floats().lam) / (2 * dt)
    a, sg, _ = _c(vp, t)
    lhs = vm.predict(x, t, "velocity") / dlam_dt
    torch.testing.assert_close(lhs, -a * sg * vm.predict(x, t, "v"), rtol=1e-6, atol=1e-7)


def test_heun_in_lambda_on_v_differs_from_dpm_solver_2_at_third_order(setup):
    _, vp, vm, x = setup
    s = 0.5
    diffs = []
    for h in (0.4, 0.2, 0.1):
        t = float(vp.inv_lam(torch.tensor(vp.coeffs(s).floats().lam + h, dtype=torch.float64)))
        diffs.append(float((heun_in_lambda_v(vm, x, s, t) - dl.fast_solvers.dpm_solver_2_step(vm, x, s, t)[0]).norm()))
    ratios = [diffs[0] / diffs[1], diffs[1] / diffs[2]]
    assert all(6 < r < 12 for r in ratios), ratios                    # 2^3 = 8 per halving of h


def test_on_the_zoo_v_model():
    """The same identity on MNIST-5k's network, which predicts v (one step, two images)."""
    net = dl.zoo.load("mnist5k_uncond")
    assert dl.zoo.recipe_of(net).spec["kind"] == "v"
    x = net.schedule.sample_prior((2, 1, 28, 28), generator=torch.Generator().manual_seed(0)).double()
    net = net.double()
    with torch.no_grad():
        step = dl.fast_solvers.dpm_solver_2_step(net, x, 0.6, 0.4)[0]
        mine = midpoint_in_r(net, x, 0.6, 0.4)
    torch.testing.assert_close(step, mine, rtol=0, atol=1e-9)
