"""Chapter 10's checks (dpm_lab/exercises/ch10.py): the right answer passes, each typical wrong answer fails with
its specific hint, a stub is "not attempted yet", and `use` falls back on the package's version only for a stub.
The solutions here are written out by hand."""
import torch
from exercise_suite import chapter_suite

import dpm_lab as dl
from dpm_lab.exercises import ch10


def pd_target(a_s, s_s, a_t, s_t, x_s, x_t, *, sign=1):
    return sign * (s_s * x_t - s_t * x_s) / (a_t * s_s - a_s * s_t)


def kd_loss(G, x_T, x_end, *, dims="sum", batch="mean", square=True):
    d2 = ((G(x_T) - x_end) ** 2)
    per = d2.sum(1) if dims == "sum" else d2.mean(1)
    per = per if square else per.sqrt()
    return per.mean() if batch == "mean" else per.sum()


def vsd_grad(mu, scale, m, v, alpha, sigma, *, which="reverse", alpha_power=2, dim_factor=True, sign=1):
    D = mu.numel()
    A, B = alpha ** 2 * scale ** 2 + sigma ** 2, alpha ** 2 * v + sigma ** 2
    if which == "reverse":
        d_mu = alpha ** alpha_power * (mu - m) / B
        d_sc = (D if dim_factor else 1) * alpha ** 2 * scale * (1 / B - 1 / A)
    else:                                  # forward KL(p_t || p_t^theta)
        d_mu = alpha ** 2 * (mu - m) / A
        d_sc = D * alpha ** 2 * scale * (1 / A - (B + 0 * A) / A ** 2) - alpha ** 2 * scale * ((mu - m) ** 2).sum() * alpha ** 2 / A ** 2
    return sign * d_mu, sign * d_sc


def pd_steps(teacher, student, x_s, s, u, t, *, first=None, second=None, one_step=False, solve=True):
    first, second = first or teacher, second or teacher
    if one_step:
        x_t = dl.distill.ddim_jump(first, x_s, s, t)
    else:
        x_t = dl.distill.ddim_jump(second, dl.distill.ddim_jump(first, x_s, s, u), u, t)
    return dl.distill.pd_target(teacher.schedule, x_s, s, t, x_t) if solve else x_t


def surrogate(x_gen, x0_fake, x0_real, *, sign=1, detach=True, reduce="mean"):
    d = (x0_fake - x0_real)
    d = d.detach() if detach else d
    v = sign * (d * x_gen).sum(1)
    return v.mean() if reduce == "mean" else v.sum()


def surrogate_mse(x_gen, x0_fake, x0_real):            # DMD's own form: 0.5 ||x - (x - d).detach()||^2
    target = (x_gen - (x0_fake - x0_real)).detach()
    return 0.5 * ((x_gen - target) ** 2).sum(1).mean()


SOLUTIONS = {
    "pd_target": pd_target,
    "kd_loss": kd_loss,
    "gaussian_vsd_grad": vsd_grad,
    "sds_modes": "c",
    "pd_teacher_steps": pd_steps,
    "dmd_surrogate": surrogate,
}

WRONG = [
    ("pd_target", lambda a_s, s_s, a_t, s_t, x_s, x_t: x_t.clone(), ["landing point x_t itself"]),
    ("pd_target", lambda *a: pd_target(*a, sign=-1), ["sign is flipped"]),
    ("pd_target", lambda a_s, s_s, a_t, s_t, x_s, x_t: x_t / a_t, ["pure signal"]),
    ("pd_target", lambda a_s, s_s, a_t, s_t, x_s, x_t: (s_s * x_t - s_t * x_s) / (a_t * s_s), ["depends on x~ too"]),
    ("pd_target", lambda *a: pd_target(*a)[:, :2], ["shape"]),
    ("pd_target", lambda a_s, s_s, a_t, s_t, x_s, x_t: (s_t * x_t - s_s * x_s) / (a_t * s_s - a_s * s_t),
     ["sigmas in the numerator are swapped"]),
    ("pd_target", lambda a_s, s_s, a_t, s_t, x_s, x_t: (s_s * x_t - s_t * x_s) / (a_t * s_s + a_s * s_t),
     ["plus where the step gives a minus"]),
    ("kd_loss", lambda *a: kd_loss(*a, dims="mean"), ["averaged over the 3 dimensions"]),
    ("kd_loss", lambda *a: kd_loss(*a, batch="sum"), ["summed over the batch of 6"]),
    ("kd_loss", lambda *a: kd_loss(*a, square=False), ["not squared"]),
    ("kd_loss", lambda G, x, e: ((G(x) - e) ** 2).sum(1), ["return one number"]),
    ("gaussian_vsd_grad", lambda *a: vsd_grad(*a, sign=-1), ["INCREASES the KL"]),
    ("gaussian_vsd_grad", lambda *a: vsd_grad(*a, alpha_power=1), ["misses a factor alpha"]),
    ("gaussian_vsd_grad", lambda *a: vsd_grad(*a, which="forward"), ["forward KL"]),
    ("gaussian_vsd_grad", lambda *a: vsd_grad(*a, dim_factor=False), ["times too small"]),
    ("sds_modes", "a", ["recorded 'a'", "(c)", "toward each other"]),
    ("sds_modes", "b", ["recorded 'b'", "(c)", "do not reach the mode centres"]),
    ("sds_modes", "z", ["one of the letters"]),
    ("pd_teacher_steps", lambda te, st, x, s, u, t: pd_steps(te, st, x, s, u, t, first=st, second=st),
     ["still the bug", "STUDENT"]),
    ("pd_teacher_steps", lambda te, st, x, s, u, t: pd_steps(te, st, x, s, u, t, second=st), ["second the student"]),
    ("pd_teacher_steps", lambda te, st, x, s, u, t: pd_steps(te, st, x, s, u, t, one_step=True), ["ONE teacher step"]),
    ("pd_teacher_steps", lambda te, st, x, s, u, t: pd_steps(te, st, x, s, u, t, solve=False), ["landing point"]),
    ("dmd_surrogate", lambda *a: surrogate(*a, sign=-1), ["still the bug", "sign is flipped"]),
    ("dmd_surrogate", lambda *a: surrogate(*a, reduce="sum"), ["times too large"]),
    ("dmd_surrogate", lambda *a: surrogate(*a, detach=False), ["hold them fixed"]),
    ("dmd_surrogate", lambda x, f, r: (f - r).detach().sum(), ["does not depend on x_gen"]),
]

globals().update(chapter_suite("10", SOLUTIONS, WRONG))


def test_dmd_papers_mse_form_also_passes(capsys):
    assert ch10.check_dmd_surrogate(surrogate_mse)


def test_use_falls_back_only_for_a_stub(capsys):
    x_s, x_t = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    stub = ch10.use("pd_target", lambda *a: None)
    assert torch.allclose(stub(0.5, 0.8, 0.9, 0.3, x_s, x_t), pd_target(0.5, 0.8, 0.9, 0.3, x_s, x_t))
    assert "not attempted yet" in capsys.readouterr().out
    wrong = ch10.use("pd_target", lambda *a: a[-1])
    assert torch.equal(wrong(0.5, 0.8, 0.9, 0.3, x_s, x_t), x_t)
