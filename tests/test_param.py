"""Conversions among x0, eps, score, velocity and v (§6.3.1) and the PF-ODE drift forms (§6.3.2)."""
import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import dpm_lab as dl
from conftest import SCHED_IDS, SCHEDULES


def interior(sched):
    t = torch.tensor([0.05, 0.31, 0.64, 0.9], dtype=torch.float64)
    return (torch.floor(t * sched.L) + 0.5) / sched.L if isinstance(sched, dl.DiscreteSchedule) else t


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_round_trip_every_pair(sched, gen):
    t = interior(sched)
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    value = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    for src, dst in itertools.permutations(dl.KINDS, 2):
        there = dl.convert(sched, x, t, value, src, dst)
        back = dl.convert(sched, x, t, there, dst, src)
        torch.testing.assert_close(back, value, rtol=1e-9, atol=1e-9, msg=f"{src}->{dst}->{src}")


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
    torch.testing.assert_close(a * x0 + s * eps, x)


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_pf_ode_drift_forms_agree(sched, gen):
    t = interior(sched)
    x = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    x0 = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    preds = dl.all_predictions(sched, x, t, x0, "x0")
    drifts = {k: dl.pf_ode_drift(sched, x, t, preds[k], k) for k in dl.KINDS}
    for k in dl.KINDS:
        torch.testing.assert_close(drifts[k], preds["velocity"], rtol=1e-9, atol=1e-9, msg=k)


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_error_scale_identities(sched, gen):
    # Eq. s-e-x-v-equi: ||s - s*|| = c_t ||k - k*|| for every kind k, on arbitrary tensors
    t = interior(sched)
    x = torch.randn(4, 5, generator=gen, dtype=torch.float64)
    p1, p2 = (torch.randn(4, 5, generator=gen, dtype=torch.float64) for _ in range(2))
    s1, s2 = (dl.convert(sched, x, t, p, "eps", "score") for p in (p1, p2))
    ref = (s1 - s2).norm(dim=1)
    for k in dl.KINDS:
        k1, k2 = (dl.convert(sched, x, t, p, "eps", k) for p in (p1, p2))
        torch.testing.assert_close(dl.error_scale(sched, t, k) * (k1 - k2).norm(dim=1), ref, rtol=1e-9, atol=0)


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


@settings(max_examples=40, deadline=None)
@given(t=st.one_of(st.just(0.0), st.just(1.0), st.floats(0, 1)), idx=st.integers(0, len(SCHEDULES) - 1),
       src=st.sampled_from(dl.KINDS), dst=st.sampled_from(dl.KINDS))
def test_conversion_finite_or_clear_error(t, idx, src, dst):
    sched = SCHEDULES[idx]
    x = torch.ones(2, 2, dtype=torch.float64)
    try:
        out = dl.convert(sched, x, t, 0.5 * x, src, dst)
    except ValueError as err:
        assert "t" in str(err) or "sigma" in str(err) or "alpha" in str(err)
        return
    assert torch.isfinite(out).all(), f"{sched.name} {src}->{dst} at t={t}"


def test_bad_input():
    sched = dl.VPLinear()
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="unknown prediction kind 'noise'"):
        dl.convert(sched, x, 0.5, x, "noise", "x0")
    with pytest.raises(ValueError, match="shape"):
        dl.convert(sched, x, 0.5, torch.zeros(3, 3), "eps", "x0")
    with pytest.raises(ValueError, match=r"does not match x"):
        dl.convert(sched, x, torch.full((4,), 0.5), x, "eps", "x0")
    with pytest.raises(ValueError, match="sigma_t = 0"):
        dl.convert(sched, x, 0.0, x, "x0", "eps")
    with pytest.raises(ValueError, match="alpha_t = 0"):
        dl.convert(dl.RectifiedFlow(), x, 1.0, x, "eps", "x0")
