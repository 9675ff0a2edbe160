"""The table of prediction kinds (§6.2.2) and the conversions among them (§6.3.1), each held against
an independent route: the closed-form fields of a mixture, autograd of x_t in t, the book's formulas."""
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from schedule_cases import SCHED_IDS, SCHEDULES

import dpm_lab as dl
from dpm_lab import param


def interior(sched):
    """Times inside (0, 1), moved off the knots of a discrete schedule (its derivatives jump there)."""
    t = torch.tensor([0.05, 0.31, 0.64, 0.9], dtype=torch.float64)
    return (torch.floor(t * sched.L) + 0.5) / sched.L if isinstance(sched, dl.DiscreteSchedule) else t


VP_LIKE = [dl.VPLinear(), dl.Cosine(), dl.Trig(1.0), dl.DiscreteSchedule.linear(100, 1e-3, 0.1)]


def test_table_is_the_books_table():
    assert dl.KINDS == tuple(param.TABLE) == ("x0", "eps", "score", "velocity", "v")
    written = {k: (row.A, row.B) for k, row in param.TABLE.items()}
    assert written == {"x0": ("1", "0"), "eps": ("0", "1"), "score": ("0", "-1/sigma_t"),
                       "velocity": ("alpha_t'", "sigma_t'"), "v": ("-sigma_t", "alpha_t")}
    assert "B='-1/sigma_t'" in repr(param.TABLE["score"])
    assert param.target_coefficients is param.coefficients


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_coefficients_match_the_schedule_and_autograd(sched):
    # (A_t, B_t) per kind, against the single schedule methods; the velocity row against d/dt by autograd
    t = interior(sched)
    a, s = sched.alpha(t), sched.sigma(t)
    expect = {"x0": (torch.ones_like(t), torch.zeros_like(t)), "eps": (torch.zeros_like(t), torch.ones_like(t)),
              "score": (torch.zeros_like(t), -1 / s), "v": (-s, a)}
    tg = t.clone().requires_grad_(True)
    da, = torch.autograd.grad((sched.alpha(tg) + 0 * tg).sum(), tg)
    ds, = torch.autograd.grad(sched.sigma(tg).sum(), tg)
    expect["velocity"] = (da, ds)
    for kind, (A, B) in expect.items():
        got = param.coefficients(sched, t, kind)
        torch.testing.assert_close(got[0], A, rtol=1e-9, atol=1e-12, msg=f"A of {kind}")
        torch.testing.assert_close(got[1], B, rtol=1e-9, atol=1e-12, msg=f"B of {kind}")


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_conversions_match_exact_mixture_fields(mixture2d, sched, gen):
    # the mixture computes x0*, eps*, score*, velocity*, v* in closed form, each by its own formula;
    # converting any one of them must give every other
    for t in interior(sched)[[0, 2, 3]].tolist():
        x = mixture2d.sample_marginal(12, t, sched, generator=gen, dtype=torch.float64)
        fields = {k: mixture2d.predict(x, t, sched, k) for k in dl.KINDS}
        for src, dst in itertools.product(dl.KINDS, repeat=2):
            torch.testing.assert_close(dl.convert(sched, x, t, fields[src], src, dst), fields[dst],
                                       rtol=1e-8, atol=1e-9, msg=f"{sched.name} {src}->{dst} at t={t}")


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_velocity_is_the_time_derivative_of_x_t(sched, gen):
    # for fixed (x0, eps), d/dt (alpha_t x0 + sigma_t eps) by autograd is the velocity of that pair
    t = interior(sched).clone().requires_grad_(True)
    x0 = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    eps = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    x_t = (sched.alpha(t) + 0 * t)[:, None] * x0 + sched.sigma(t)[:, None] * eps
    dxdt = torch.stack([torch.autograd.grad(x_t[:, j].sum(), t, retain_graph=True)[0] for j in range(3)], 1)
    x_t, t = x_t.detach(), t.detach()
    for kind, value in (("eps", eps), ("x0", x0)):
        torch.testing.assert_close(dl.convert(sched, x_t, t, value, kind, "velocity"), dxdt, rtol=1e-8, atol=1e-9)
        torch.testing.assert_close(dl.pf_ode_drift(sched, x_t, t, value, kind), dxdt, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("sched", VP_LIKE, ids=lambda s: s.name)
def test_v_is_the_angular_velocity_on_variance_preserving_paths(sched, gen):
    # Salimans & Ho: with alpha = cos(phi), sigma = sin(phi), v = d x_t / d phi (an independent route to the v row)
    t = interior(sched)
    tg = t.clone().requires_grad_(True)
    phi = torch.atan2(sched.sigma(tg), sched.alpha(tg))
    dphi, = torch.autograd.grad(phi.sum(), tg)
    x0 = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    eps = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    x_t = sched.alpha(t)[:, None] * x0 + sched.sigma(t)[:, None] * eps
    velocity = dl.convert(sched, x_t, t, eps, "eps", "velocity")
    torch.testing.assert_close(dl.convert(sched, x_t, t, eps, "eps", "v"), velocity / dphi[:, None],
                               rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_round_trip_every_pair(sched, gen):
    t = interior(sched)
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    value = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    for src, dst in itertools.permutations(dl.KINDS, 2):
        there = dl.convert(sched, x, t, value, src, dst)
        back = dl.convert(sched, x, t, there, dst, src)
        torch.testing.assert_close(back, value, rtol=1e-9, atol=1e-9, msg=f"{src}->{dst}->{src}")
        x0, eps = dl.to_x0_eps(sched, x, t, value, src)
        torch.testing.assert_close(sched.alpha(t)[:, None] * x0 + sched.sigma(t)[:, None] * eps, x)


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_conversions_match_the_books_formulas(sched, gen):
    # Eq. predictions-equivalence, written out independently of param.py
    t = interior(sched)
    x = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    score = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    a, s = sched.alpha(t)[:, None], sched.sigma(t)[:, None]
    da, ds = sched.d_alpha(t)[:, None], sched.d_sigma(t)[:, None]
    f, g2 = sched.f(t)[:, None], sched.g2(t)[:, None]
    eps = -s * score
    x0 = x / a + s ** 2 / a * score
    torch.testing.assert_close(dl.convert(sched, x, t, score, "score", "eps"), eps)
    torch.testing.assert_close(dl.convert(sched, x, t, score, "score", "x0"), x0)
    vel = dl.convert(sched, x, t, score, "score", "velocity")
    torch.testing.assert_close(vel, da * x0 + ds * eps)
    torch.testing.assert_close(vel, f * x - 0.5 * g2 * score)
    # velocity -> score (§6.3.1, "from velocity to score")
    k = a / (s * (da * s - a * ds))
    torch.testing.assert_close(k * vel - da / (s * (da * s - a * ds)) * x, score)
    torch.testing.assert_close(dl.convert(sched, x, t, score, "score", "v"), a * eps - s * x0)


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_pf_ode_drift_forms_agree(sched, gen):
    # Eq. clean_pf_ode: the drift written in each parameterisation, against the book's explicit forms
    t = interior(sched)
    x = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    x0 = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    preds = dl.all_predictions(sched, x, t, x0, "x0")
    a, s = sched.alpha(t)[:, None], sched.sigma(t)[:, None]
    ra, rs = sched.d_alpha(t)[:, None] / a, sched.d_sigma(t)[:, None] / s
    book = {"eps": ra * x - s * (ra - rs) * preds["eps"], "x0": rs * x + a * (ra - rs) * x0,
            "score": ra * x + s ** 2 * (ra - rs) * preds["score"], "velocity": preds["velocity"]}
    for k in dl.KINDS:
        drift = dl.pf_ode_drift(sched, x, t, preds[k], k)
        torch.testing.assert_close(drift, preds["velocity"], rtol=1e-9, atol=1e-9, msg=k)
        if k in book:
            torch.testing.assert_close(drift, book[k], rtol=1e-9, atol=1e-9, msg=f"book form of {k}")


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_error_scale_identities(sched, gen):
    # Eq. s-e-x-v-equi: ||s - s*|| = c_t ||k - k*|| for every kind k, on arbitrary tensors
    t = interior(sched)
    x = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    p1, p2 = (torch.randn(4, 5, generator=gen, dtype=torch.float64) for _ in range(2))
    s1, s2 = (dl.convert(sched, x, t, p, "eps", "score") for p in (p1, p2))
    ref = (s1 - s2).norm(dim=1)
    a, s = sched.alpha(t), sched.sigma(t)
    da, ds = sched.d_alpha(t), sched.d_sigma(t)
    book = {"eps": 1 / s, "x0": a / s ** 2, "score": torch.ones_like(t),
            "velocity": a / (s * (da * s - a * ds).abs()), "v": a / (s * (a ** 2 + s ** 2))}
    for k in dl.KINDS:
        k1, k2 = (dl.convert(sched, x, t, p, "eps", k) for p in (p1, p2))
        torch.testing.assert_close(dl.error_scale(sched, t, k) * (k1 - k2).norm(dim=1), ref, rtol=1e-9, atol=0)
        torch.testing.assert_close(dl.error_scale(sched, t, k), book[k], rtol=1e-9, atol=0, msg=k)


def test_error_scale_where_alpha_is_zero():
    # flow at t = 1: x_t = eps exactly, so an x0 / v / velocity error moves no score (c = 0); eps keeps 1/sigma
    sched = dl.RectifiedFlow()
    assert float(dl.error_scale(sched, 1.0, "eps")) == 1.0
    for k in ("x0", "v"):
        assert float(dl.error_scale(sched, 1.0, k)) == 0.0
    with pytest.raises(ValueError, match="score.*t = 0"):
        dl.error_scale(sched, 0.0, "eps")


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_target_coefficients(sched, gen):
    # regression targets A_t x0 + B_t eps of §6.2.2 are the conversions of the pair (x0, eps)
    t = interior(sched)
    x0 = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    eps = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    x = sched.alpha(t)[:, None] * x0 + sched.sigma(t)[:, None] * eps
    for k in dl.KINDS:
        A, B = dl.target_coefficients(sched, t, k)
        torch.testing.assert_close(A[:, None] * x0 + B[:, None] * eps, dl.convert(sched, x, t, eps, "eps", k))


@pytest.mark.parametrize("sched,t,src,dst,words", [
    (dl.VPLinear(), 0.0, "score", "x0", ["score", "t = 0", "sigma_t = 0"]),      # B = -1/sigma is infinite
    (dl.VPLinear(), 0.0, "eps", "score", ["score", "t = 0", "sigma_t = 0"]),     # forming a score there
    (dl.VPLinear(), 0.0, "x0", "eps", ["x0", "t = 0", "sigma_t = 0", "det"]),    # x_t = x0 says nothing of eps
    (dl.RectifiedFlow(), 1.0, "eps", "x0", ["eps", "t = 1", "alpha_t = 0", "det"]),  # x_t = eps says nothing of x0
    (dl.VPLinear(), 0.0, "velocity", "eps", ["velocity", "t = 0", "sqrt(t)"]),   # sigma' is infinite
    (dl.VEGeometric(), 0.0, "eps", "velocity", ["velocity", "t = 0", "sqrt(t)"]),
], ids=["score-at-sigma0", "to-score-at-sigma0", "x0-at-sigma0", "eps-at-alpha0", "velocity-vp0", "to-velocity-ve0"])
def test_singular_cases_raise_naming_kind_time_and_reason(sched, t, src, dst, words):
    x = torch.ones(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError) as err:
        dl.convert(sched, x, t, 0.5 * x, src, dst)
    for w in words:
        assert w in str(err.value), (w, str(err.value))
    # per-sample times: the error names the offending one
    with pytest.raises(ValueError, match=f"t = {t:g}"):
        dl.convert(sched, x, torch.tensor([0.5, t, 0.3], dtype=torch.float64), 0.5 * x, src, dst)


def test_all_predictions_leaves_out_what_is_undefined():
    # EDM at t = 0: an eps prediction fixes x0 = x_t, but the score -eps/sigma_t does not exist
    sched = dl.EDM()
    x, eps = torch.ones(2, 2, dtype=torch.float64), torch.full((2, 2), 0.5, dtype=torch.float64)
    views = dl.all_predictions(sched, x, 0.0, eps, "eps")
    assert set(views) == {"x0", "eps", "velocity", "v"}
    torch.testing.assert_close(views["x0"], x)
    torch.testing.assert_close(views["velocity"], sched.sigma_max * eps)


@settings(max_examples=40, deadline=None)
@given(t=st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1)), idx=st.integers(0, len(SCHEDULES) - 1),
       src=st.sampled_from(dl.KINDS), dst=st.sampled_from(dl.KINDS))
def test_conversion_finite_or_clear_error(t, idx, src, dst):
    sched = SCHEDULES[idx]
    x = torch.ones(2, 2, dtype=torch.float64)
    try:
        out = dl.convert(sched, x, t, 0.5 * x, src, dst)
    except ValueError as err:
        assert "t = " in str(err) and (src in str(err) or dst in str(err))
        return
    assert torch.isfinite(out).all(), f"{sched.name} {src}->{dst} at t={t}"


def test_model_converts_once_at_the_edge(gen):
    class Fixed(dl.Model):
        def __init__(self, value):
            self.schedule, self.kind, self.value, self.calls = dl.Cosine(), "v", value, 0

        def raw(self, x_t, t, c=None):
            self.calls += 1
            return self.value

    x = torch.randn(3, 2, generator=gen, dtype=torch.float64)
    model = Fixed(torch.randn(3, 2, generator=gen, dtype=torch.float64))
    assert model.predict(x, 0.4, "v") is model.value
    for k in dl.KINDS:
        torch.testing.assert_close(getattr(model, k)(x, 0.4), dl.convert(model.schedule, x, 0.4, model.value, "v", k))
    assert model.calls == 1 + len(dl.KINDS)


def test_bad_input():
    sched = dl.VPLinear()
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="unknown prediction kind 'noise'"):
        dl.convert(sched, x, 0.5, x, "noise", "x0")
    with pytest.raises(ValueError, match="unknown prediction kind 'noise'"):
        dl.convert(sched, x, 0.5, x, "eps", "noise")
    with pytest.raises(ValueError, match="unknown prediction kind"):
        param.coefficients(sched, 0.5, "noise")
    with pytest.raises(ValueError, match="shape"):
        dl.convert(sched, x, 0.5, torch.zeros(3, 3), "eps", "x0")
    with pytest.raises(ValueError, match=r"does not match x"):
        dl.convert(sched, x, torch.full((4,), 0.5), x, "eps", "x0")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dl.convert(sched, x, 1.5, x, "eps", "x0")


# -- §6.3.3: a model of one schedule answers for another through the time map -----------------------------------
@pytest.mark.parametrize("dst", [dl.RectifiedFlow(), dl.Trig(), dl.Cosine()], ids=["flow", "trig", "cosine"])
def test_time_mapped_model_gives_the_other_schedules_exact_fields(dst):
    # the exact VP model, mapped, against the mixture's own closed-form fields under dst (an independent route)
    gmm = dl.datasets.eight_gaussians_mixture()
    mapped = dl.param.TimeMappedModel(gmm.model(dl.VPLinear()), dst)
    g = torch.Generator().manual_seed(5)
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    x = gmm.sample_marginal(5, t, dst, generator=g).double()
    for kind in ("x0", "eps", "score", "velocity"):
        torch.testing.assert_close(mapped.predict(x, t, kind), gmm.predict(x, t, dst, kind), rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(mapped.predict(x, 0.4, kind), gmm.predict(x, 0.4, dst, kind), rtol=1e-7, atol=1e-9)


def test_time_mapped_model_bad_input_and_range():
    gmm = dl.datasets.eight_gaussians_mixture()
    with pytest.raises(TypeError, match="inner"):
        dl.param.TimeMappedModel(gmm, dl.RectifiedFlow())             # a mixture is not a Model (no .schedule)
    with pytest.raises(TypeError, match="schedule"):
        dl.param.TimeMappedModel(gmm.model(dl.VPLinear()), "flow")
    mapped = dl.param.TimeMappedModel(gmm.model(dl.VEGeometric(0.01, 5.0)), dl.VPLinear())
    with pytest.raises(ValueError, match="outside the range"):
        mapped.predict(torch.zeros(2, 2, dtype=torch.float64), 0.99, "x0")
