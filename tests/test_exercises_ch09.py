"""Chapter 09's checks (dpm_lab/exercises/ch09.py): the right answer passes, each typical wrong answer fails with its
specific hint, a stub is "not attempted yet", and `use` falls back on the package's version only for a stub.
The solutions here are written out by hand from the book's formulas (§9.2-9.5), not taken from the package."""
import math

import pytest
import torch
from exercise_suite import chapter_suite

import dpm_lab as dl
from dpm_lab.exercises import ch09


def co(model, t):
    c = model.schedule.coeffs(t).floats()
    return c.alpha, c.sigma, c.lam


def t_of(model, lam):
    return float(model.schedule.inv_lam(torch.tensor(lam, dtype=torch.float64)))


def dpm2(model, x, s, t, *, mid_in_t=False, final_at_start=False, full=False, sign=-1.0):
    a_s, _, l_s = co(model, s)
    a_t, s_t, l_t = co(model, t)
    h = l_t - l_s
    t_m = 0.5 * (s + t) if mid_in_t else t_of(model, l_s + h / 2)
    a_m, s_m, l_m = co(model, t_m)
    eps = model.predict(x, s, "eps")
    u = a_m / a_s * x + sign * s_m * math.expm1(h if full else l_m - l_s) * eps
    e = eps if final_at_start else model.predict(u, t_m, "eps")
    return a_t / a_s * x + sign * s_t * math.expm1(h) * e


def pp2m(model, x, s, t, prev, *, inv=False, whole_r=False, alpha_ratio=False, sign=1.0, forget=False):
    a_s, s_s, l_s = co(model, s)
    a_t, s_t, l_t = co(model, t)
    h = l_t - l_s
    x0 = model.predict(x, s, "x0")
    d = x0
    if prev is not None and not forget:
        r = h / (l_s - prev[0])
        r = 1 / r if inv else r
        w = r if whole_r else r / 2
        d = (1 + w) * x0 - w * prev[1]
    lead = a_t / a_s if alpha_ratio else s_t / s_s
    return lead * x + sign * a_t * (1 - math.exp(-h)) * d, (l_s, x0)


def phi2(h):
    small = h.abs() < 1e-3
    safe = torch.where(small, torch.ones_like(h), h)
    return torch.where(small, 0.5 + h / 6 + h ** 2 / 24, (torch.expm1(safe) - safe) / safe ** 2)


def heun(model, x, s, t, *, zero_at_0=False, corrector_at_s=False, no_half=False):
    v1 = model.predict(x, s, "velocity")
    y = x + (t - s) * v1
    v2 = torch.zeros_like(x) if (zero_at_0 and t == 0) else model.predict(y, s if corrector_at_s else t, "velocity")
    return x + (1.0 if no_half else 0.5) * (t - s) * (v1 + v2)


def heun_euler_last(model, x, s, t):
    """Another fix: an Euler last step (no corrector at t = 0); the run stays second order."""
    if t == 0:
        return x + (t - s) * model.predict(x, s, "velocity")
    return heun(model, x, s, t)


SOLUTIONS = {
    "dpm_solver_2": dpm2,
    "dpmpp_2m": pp2m,
    "phi_2": phi2,
    "edm_contraction": lambda s, t: t / s,
    "order_prediction": "b",
    "heun_data_end": heun,
}

WRONG = [
    ("dpm_solver_2", lambda *a: dpm2(*a, mid_in_t=True), ["halfway in t"]),
    ("dpm_solver_2", lambda *a: dpm2(*a, final_at_start=True), ["That is DDIM"]),
    ("dpm_solver_2", lambda *a: dpm2(*a, full=True), ["e^{h/2} - 1"]),
    ("dpm_solver_2", lambda *a: dpm2(*a, sign=1.0), ["Mind the sign"]),
    ("dpm_solver_2", lambda m, x, s, t: dpm2(m, x, s, t)[:, :2], ["shaped like x"]),
    ("dpmpp_2m", lambda *a: pp2m(*a, inv=True), ["not the inverse"]),
    ("dpmpp_2m", lambda *a: pp2m(*a, whole_r=True), ["halves the slope"]),
    ("dpmpp_2m", lambda *a: pp2m(*a, forget=True), ["You ignored prev"]),
    ("dpmpp_2m", lambda *a: pp2m(*a, alpha_ratio=True), ["sigma_t / sigma_s"]),
    ("dpmpp_2m", lambda *a: pp2m(*a, sign=-1.0), ["Mind the sign"]),
    ("dpmpp_2m", lambda m, x, s, t, p: (pp2m(m, x, s, t, p)[0], None), ["history you pass on"]),
    ("dpmpp_2m", lambda m, x, s, t, p: pp2m(m, x, s, t, p)[0], ["the pair"]),
    ("phi_2", lambda h: torch.expm1(h) / h, ["phi_1"]),
    ("phi_2", lambda h: torch.expm1(h) - h, ["divide by h^2"]),
    ("phi_2", lambda h: (torch.exp(h) - 1 - h) / h, ["Divide by h^2, not h"]),
    ("phi_2", lambda h: torch.full_like(h, 0.5), ["only the limit"]),
    ("phi_2", lambda h: (torch.exp(h) - 1 - h) / h ** 2, ["cancels catastrophically"]),
    ("edm_contraction", lambda s, t: s / t, ["Upside down"]),
    ("edm_contraction", lambda s, t: 1 - t / s, ["weight DDIM puts on x0_hat"]),
    ("edm_contraction", lambda s, t: s - t, ["step in sigma"]),
    ("edm_contraction", lambda s, t: (t / s) ** 2, ["once, not squared"]),
    ("edm_contraction", lambda s, t: [t, s], ["one number"]),
    ("order_prediction", "a", ["recorded 'a'", "first order"]),
    ("order_prediction", "c", ["recorded 'c'", "third order"]),
    ("order_prediction", "4x", ["one of the letters"]),
    ("heun_data_end", lambda *a: heun(*a, zero_at_0=True), ["zero at t = 0", "order 1.0"]),
    ("heun_data_end", lambda *a: heun(*a, corrector_at_s=True), ["END time t"]),
    ("heun_data_end", lambda *a: heun(*a, no_half=True), ["Average the two slopes"]),
    ("heun_data_end", lambda m, x, s, t: x + (t - s) * m.predict(x, s, "velocity"), ["That is Euler"]),
]


globals().update(chapter_suite("09", SOLUTIONS, WRONG, None))


def test_heun_check_accepts_the_other_fix(capsys):
    """An Euler last step also restores second order (its O(h^2) local error stays O(h^2) globally)."""
    assert dl.exercises.check_heun_data_end(heun_euler_last)
    assert "order" in capsys.readouterr().out


def test_the_widget_bug_is_first_order_and_loses_to_euler_at_equal_nfe():
    model = ch09._MIX3.model(dl.RectifiedFlow())
    x_T = ch09._draws(4, (6, 3))
    exact = ch09._MIX3.flow_map(x_T, 1.0, 0.0, model.schedule)
    err = lambda f, n: float(((ch09.heun_run(f, model, x_T, n) - exact) ** 2).mean().sqrt())  # noqa: E731
    euler = lambda m, x, s, t: x + (t - s) * m.predict(x, s, "velocity")                    # noqa: E731
    bug = [err(ch09._heun_widget, n) for n in (8, 16, 32)]
    assert abs(ch09._order(bug, [8, 16, 32]) - 1.0) < 0.15
    assert all(err(ch09._heun_widget, n) > err(euler, 2 * n) for n in (8, 16, 32))        # same NFE = 2n


def test_references_agree_with_hand_written_solutions(capsys):
    model = ch09._MIX3.model(dl.VPLinear())
    x = ch09._draws(7, (4, 3))
    torch.testing.assert_close(ch09._REFERENCES["dpm_solver_2"](model, x, 0.7, 0.4), dpm2(model, x, 0.7, 0.4))
    prev = (co(model, 0.8)[2], model.predict(x, 0.8, "x0"))
    got, mem = ch09._REFERENCES["dpmpp_2m"](model, x, 0.7, 0.4, prev)
    want, want_mem = pp2m(model, x, 0.7, 0.4, prev)
    torch.testing.assert_close(got, want)
    assert math.isclose(mem[0], want_mem[0])
    h = torch.tensor([1e-8, 1e-4, 0.5, 3.0], dtype=torch.float64)
    torch.testing.assert_close(ch09._phi_2(h), phi2(h), rtol=1e-9, atol=1e-12)
    assert math.isclose(dl.fast_solvers.phi_int(1, 0.5) / 0.25, float(ch09._phi_2(torch.tensor(0.5))), rel_tol=1e-12)
    capsys.readouterr()


def test_edm_contraction_is_what_ddim_does():
    model = ch09._MIX3.model(dl.EDM())
    x = ch09._draws(8, (4, 3))
    s, t = 0.6, 0.3
    x0 = model.predict(x, s, "x0")
    x_t, _ = dl.samplers.ddim_step(model, x, s, t)
    r = model.schedule.coeffs(t).floats().sigma / model.schedule.coeffs(s).floats().sigma
    torch.testing.assert_close(x_t - x0, r * (x - x0))


def test_use_falls_back_only_for_a_stub(capsys):
    f = ch09.use("edm_contraction", lambda s, t: None)
    assert f(2.0, 1.0) == 0.5
    assert "not attempted yet" in capsys.readouterr().out
    assert ch09.use("edm_contraction", lambda s, t: 3.0)(2.0, 1.0) == 3.0
    with pytest.raises(ValueError, match="no package version"):
        ch09.use("nope", None)
