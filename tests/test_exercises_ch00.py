"""Chapter 00's checks (dpm_lab/exercises/ch00.py): the right answer passes, a stub reads "not attempted
yet", and each typical wrong answer fails with its specific hint."""
import math

import pytest
import torch
from exercise_suite import chapter_suite, run_check

import dpm_lab as dl

E = dl.exercises.ch00


def _rows(t, x0, s):
    """alpha_t and sigma_t shaped to multiply x0 row by row (t a float or a (B,) tensor)."""
    a, sg = s.alpha(t), s.sigma(t)
    if isinstance(t, torch.Tensor) and t.dim() == 1:
        a, sg = a.reshape(-1, *[1] * (x0.dim() - 1)), sg.reshape(-1, *[1] * (x0.dim() - 1))
    return a, sg


def _noise(x0, eps, t, s):
    a, sg = _rows(t, x0, s)
    return a * x0 + sg * eps


def _diffusers_step(model, x, t_cur, t_next, square_cur=True, square_next=True):
    """diffusers' DDIM update; square_* = True reads alphas_cumprod as alpha_t^2 (the fix)."""
    a_t, a_n = model.schedule.alpha(t_cur), model.schedule.alpha(t_next)
    a_t, a_n = (a_t ** 2 if square_cur else a_t), (a_n ** 2 if square_next else a_n)
    eps = model.predict(x, t_cur, "eps")
    x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
    return a_n ** 0.5 * x0 + (1 - a_n) ** 0.5 * eps


def _two_calls(model, x, t_cur, t_next):
    x0, eps = model.predict(x, t_cur, "x0"), model.predict(x, t_cur, "eps")
    return model.schedule.alpha(t_next) * x0 + model.schedule.sigma(t_next) * eps


def _slip_step(model, x, t_cur, t_next):
    sch = model.schedule
    eps = model.predict(x, t_cur, "eps")
    x0 = (x - sch.sigma(t_cur) * eps) / sch.alpha(t_cur)
    return sch.alpha(t_next) * x0 + (1 - sch.alpha(t_next)) ** 0.5 * eps


def _no_root(model, x, t_cur, t_next):
    sch = model.schedule
    eps = model.predict(x, t_cur, "eps")
    x0 = (x - (1 - sch.alpha(t_cur) ** 2) * eps) / sch.alpha(t_cur)       # a variance where a std belongs
    return sch.alpha(t_next) * x0 + sch.sigma(t_next) * eps


def _x0_only(model, x, t_cur, t_next):
    return model.predict(x, t_cur, "x0")


SOLUTIONS = {
    "vp_alpha": lambda t: math.exp(-0.5 * (0.1 * t + 0.5 * 19.9 * t ** 2)),
    "forward_noise": _noise,
    "eps_from_x0": lambda x_t, t, x0, s: (x_t - s.alpha(t) * x0) / s.sigma(t),
    "score_from_eps": lambda eps, t, s: -eps / s.sigma(t),
    "ddim_bridges": "c",
    "ddim_port": _diffusers_step,
}

# (check, wrong answer, words its message must contain)
WRONG = [
    ("vp_alpha", lambda t: math.exp(-(0.1 * t + 0.5 * 19.9 * t ** 2)),
     ["at t=0.1 your alpha is 0.8963 but should be 0.9467", "square root"]),
    ("vp_alpha", lambda t: math.sqrt(1 - math.exp(-(0.1 * t + 0.5 * 19.9 * t ** 2))), ["That is sigma_t"]),
    ("vp_alpha", lambda t: math.exp(-(0.1 * t + 19.9 * t * t) / 2), ["Check the integral B(t)"]),
    ("vp_alpha", lambda t: math.exp(-(0.1 * t + 0.5 * 19.9 * t * t) / 4), ["Check the integral B(t)"]),
    ("vp_alpha", lambda t: math.exp(-0.5 * (0.1 + 19.9 * t)), ["exp(-beta(t) / 2)", "integral of beta"]),
    ("vp_alpha", lambda t: math.exp(-0.5 * (0.1 * t + 10.0 * t * t)), ["(beta_max - beta_min) / 2 = 9.95"]),
    ("vp_alpha", lambda t: 1 - t, ["at t=0.1 your alpha is 0.9 but should be 0.9467."]),
    ("vp_alpha", lambda t: [t, 1 - t], ["return one number, alpha_t at t=0.1; you returned 2 numbers"]),
    ("forward_noise", lambda x0, eps, t, s: _noise(eps, x0, t, s), ["swapped the roles"]),
    ("forward_noise", lambda x0, eps, t, s: _rows(t, x0, s)[0] * x0 + _rows(t, x0, s)[1] ** 2 * eps,
     ["do not square it"]),
    ("forward_noise", lambda x0, eps, t, s: _rows(t, x0, s)[0] ** 2 * x0 + _rows(t, x0, s)[1] ** 2 * eps,
     ["not variances"]),
    ("forward_noise", lambda x0, eps, t, s: _noise(x0, eps, t, s).sum(-1),
     ["For the vp schedule at t=0.1 and x of shape (5, 2): your x_t[0] is", "Return x_t with the shape of x0, (5, 2)"]),
    ("forward_noise", lambda x0, eps, t, s: _noise(x0, eps, t, s).mean(-1), ["no sum or mean over dimensions"]),
    ("forward_noise", lambda x0, eps, t, s: _rows(t, x0, s)[0] * x0 + torch.sqrt(1 - _rows(t, x0, s)[0]) * eps,
     ["sqrt(1 - alpha_t), Ho et al.'s form", "sigma_t = sqrt(1 - alpha_t^2)"]),
    ("forward_noise", lambda x0, eps, t, s: _noise(x0, eps, t, dl.VPLinear()),
     ["For the cosine schedule", "use the schedule you are given"]),
    ("forward_noise", lambda x0, eps, t, s: s.alpha(t) * x0 + s.sigma(t) * eps,       # no per-example reshape
     ["With one time per example", "(4, 2), your code raised RuntimeError", "reshape it to (B, 1, ...)"]),
    ("forward_noise", lambda x0, eps, t, s: s.alpha(t) * x0 + s.sigma(t) * eps if x0.shape != (4, 2)
     else _noise(x0, eps, t, s),                                                        # the silent (3, 3) case
     ["x0 of shape (3, 3)", "along the last axis (columns), not per example (rows)"]),
    ("forward_noise", lambda x0, eps, t, s: x0 + _rows(t, x0, s)[1] * eps, ["your x_t[0] is", "should be"]),
    ("eps_from_x0", lambda x_t, t, x0, s: x_t - s.alpha(t) * x0, ["divide by sigma_t", "Solve x_t"]),
    ("eps_from_x0", lambda x_t, t, x0, s: (s.alpha(t) * x0 - x_t) / s.sigma(t), ["The sign is flipped"]),
    ("eps_from_x0", lambda x_t, t, x0, s: (x_t - s.alpha(t) * x0) / s.sigma(t) ** 2, ["not by its square"]),
    ("eps_from_x0", lambda x_t, t, x0, s: (x_t - x0) / s.sigma(t), ["Scale x0_hat by alpha_t"]),
    ("eps_from_x0", lambda x_t, t, x0, s: ((x_t - s.alpha(t) * x0) / s.sigma(t)).sum(-1),
     ["Return eps with the shape of x_t, (5, 2)"]),
    ("eps_from_x0", lambda x_t, t, x0, s: (x_t - dl.VPLinear().alpha(t) * x0) / dl.VPLinear().sigma(t),
     ["For the cosine schedule", "VP schedule's alpha_t and sigma_t"]),
    ("eps_from_x0", lambda x_t, t, x0, s: (x_t - s.alpha(t) * x0) / torch.sqrt(1 - s.alpha(t)),
     ["divided by sqrt(1 - alpha_t)", "sigma_t = sqrt(1 - alpha_t^2)"]),
    ("eps_from_x0", lambda x_t, t, x0, s: x_t / s.sigma(t), ["at t=0.1 and x of shape (5, 2): your eps[0]", "Solve x_t"]),
    ("score_from_eps", lambda eps, t, s: eps / s.sigma(t), ["The sign is off"]),
    ("score_from_eps", lambda eps, t, s: -eps / s.sigma(t) ** 2, ["power of sigma_t"]),
    ("score_from_eps", lambda eps, t, s: -eps * s.sigma(t), ["power of sigma_t"]),
    ("score_from_eps", lambda eps, t, s: -eps, ["That is -eps", "1 / sigma_t"]),
    ("score_from_eps", lambda eps, t, s: (-eps / s.sigma(t)).mean(-1), ["Return the score with the shape of eps"]),
    ("score_from_eps", lambda eps, t, s: -eps / dl.VPLinear().sigma(t), ["For the cosine schedule", "VP schedule's sigma_t"]),
    ("ddim_bridges", "a", ["You predicted (a)", "discretisation error", "between modes after 10 steps"]),
    ("ddim_bridges", "b", ["You predicted (b)", "100% of the 10-step samples end in the same mode"]),
    ("ddim_bridges", "d", ["You predicted (d)", "mean radius is 1.93 after 10 steps", "inwards"]),
    ("ddim_bridges", "z", ["answer one letter of 'a', 'b', 'c', 'd'; you gave 'z'"]),
    ("ddim_port", E.ported_ddim_step, ["For the vp schedule from t=0.5 to t=0.3", "(largest difference", "still the port's output"]),
    ("ddim_port", lambda m, x, s, t: _diffusers_step(m, x, t, t), ["returns x unchanged", "at t_next"]),
    ("ddim_port", lambda m, x, s, t: _diffusers_step(m, x, s, t, square_next=False),
     ["x0 is right now, but the re-noising to t_next still treats alpha(t_next) as alphas_cumprod"]),
    ("ddim_port", lambda m, x, s, t: _diffusers_step(m, x, s, t, square_cur=False),
     ["re-noising to t_next is right now, but x0 is still estimated"]),
    ("ddim_port", _slip_step, ["sqrt(1 - alpha_t) is the mixed-convention slip", "sigma_t = sqrt(1 - alpha_t^2)"]),
    ("ddim_port", _two_calls, ["your x is right, but your step called the model 2 times", "one NFE per step"]),
    ("ddim_port", _x0_only, ["That is x0_hat itself"]),
    ("ddim_port", _no_root, ["A square root is missing", "sigma_t = sqrt(1 - alpha_t^2)"]),
    ("ddim_port", lambda m, x, s, t: (_diffusers_step(m, x, s, t), {}), ["return only the new x (a tensor)"]),
    ("ddim_port", lambda m, x, s, t: _diffusers_step(m, x, s, t).sum(-1), ["Return x with the shape it came in, (6, 2)"]),
]

STUBS = {
    "vp_alpha": lambda t: None,
    "forward_noise": lambda x0, eps, t, s: None,
    "eps_from_x0": lambda x_t, t, x0, s: None,
    "score_from_eps": lambda eps, t, s: None,
    "ddim_bridges": None,
    "ddim_port": lambda m, x, s, t: None,
}


globals().update(chapter_suite("00", SOLUTIONS, WRONG, STUBS))


def test_the_prediction_accepts_its_letter_in_any_dress(capsys):
    for answer in ("c", "C", " (c) "):
        assert dl.exercises.ch00.check_ddim_bridges(answer) is True
    assert "Right." in capsys.readouterr().out


def test_bridge_stats_are_the_numbers_the_tour_prints():
    st = E.bridge_stats()
    assert round(st["between_10"], 3) == 0.088 and round(st["between_50"], 3) == 0.016
    assert st["same_mode"] == 1.0 and st["radius_10"] < st["radius_50"] < 2.0


def test_the_port_is_wrong_and_its_fix_is_the_package_step():
    model = dl.datasets.eight_gaussians_mixture().model(dl.VPLinear())
    x = model.schedule.sample_prior((8, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = dl.samplers.solve(model, x, [0.5, 0.3], "ddim")
    assert torch.allclose(_diffusers_step(model, x, 0.5, 0.3), ref, atol=1e-12)
    assert not torch.allclose(E.ported_ddim_step(model, x, 0.5, 0.3), ref, atol=1e-3)


def test_yours_or_uses_the_reference_while_the_answer_is_a_stub(capsys):
    use = E.yours_or(lambda a: None, lambda a: a + 1, "thing")
    assert use(1) == 2 and use(2) == 3
    out = capsys.readouterr().out
    assert out.count("not attempted yet") == 1 and "thing" in out
    assert E.yours_or(lambda a: a * 10, lambda a: a + 1, "thing")(2) == 20      # an answer is used as it is
    assert E.yours_or(None, lambda a: -a, "thing")(3) == -3


def test_the_public_names():
    assert dl.exercises.check_vp_alpha(SOLUTIONS["vp_alpha"]) is True
    assert dl.exercises.check_score_from_eps.chapter == "00"
    assert dl.exercises.ch00.check_ddim_port.chapter == "00"


@pytest.mark.parametrize("name", sorted(E.REFERENCES))
def test_every_reference_passes_its_own_check(name, capsys):
    ok, out = run_check(name, E.REFERENCES[name], capsys)
    assert ok is True, out


def test_reuse_stands_in_with_the_reference(capsys):
    alpha = E.reuse(lambda t: None, "vp_alpha")
    assert alpha(0.5) == pytest.approx(float(dl.VPLinear().alpha(0.5)))
    assert "vp_alpha: not attempted yet" in capsys.readouterr().out
