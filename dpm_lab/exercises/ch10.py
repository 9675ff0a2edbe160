"""Chapter 10 (distillation): the checks of §10.1-10.3 and the package's versions later cells fall back on.

Kinds: implement-and-reuse (pd_target: later cells chain it into a perfect 1-step student; kd_loss: later
cells score the zoo's KD students with it), a derivation checked numerically (gaussian_vsd_grad: the KL
gradient of a Gaussian generator), a prediction (sds_modes) and two find-the-bugs from real mistakes
(pd_teacher_steps: a PD target built from the student's own steps; dmd_surrogate: a generator loss whose
gradient has the wrong sign).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..distill import gaussian_kl, pd_teacher_target
from ..gmm import GaussianMixture
from ..schedules import get_schedule
from ._base import WrongAnswer, as_array, as_scalar, call, checker, close, example_pair, fmt, make_use

__all__ = ["check_pd_target", "check_kd_loss", "check_gaussian_vsd_grad", "check_sds_modes", "check_pd_teacher_steps",
           "check_dmd_surrogate", "use"]

_VP, _FLOW = get_schedule("vp"), get_schedule("flow")
_MIX3 = GaussianMixture([0.5, 0.3, 0.2], [[1.0, -0.5, 0.3], [-1.2, 0.4, 0.8], [0.2, 1.1, -1.0]], stds=[0.3, 0.5, 0.2])
_MIX3B = GaussianMixture([0.6, 0.4], [[0.5, 0.5, -0.5], [-0.8, -0.2, 0.6]], stds=[0.4, 0.6])


# -- 1. the PD target (implement-and-reuse) --------------------------------------------------------------------------
def _pd_target(alpha_s: float, sigma_s: float, alpha_t: float, sigma_t: float, x_s: torch.Tensor,
               x_t: torch.Tensor) -> torch.Tensor:
    return (sigma_s * x_t - sigma_t * x_s) / (alpha_t * sigma_s - alpha_s * sigma_t)


def _pd_cases():
    out = []
    for sched, s, t, seed in ((_VP, 0.8, 0.4, 101), (_FLOW, 1.0, 0.6, 102), (_VP, 0.3, 0.05, 103)):
        cs, ct = sched.coeffs(s).floats(), sched.coeffs(t).floats()
        x_s, x_t = example_pair(seed, (5, 3))
        out.append((cs.alpha, cs.sigma, ct.alpha, ct.sigma, x_s, x_t))
    return out


@checker("pd_target", "10")
def check_pd_target(fn: Any) -> tuple[bool, str]:
    """fn(alpha_s, sigma_s, alpha_t, sigma_t, x_s (B, D), x_t (B, D)) -> (B, D): the data prediction x~ at
    (x_s, s) that makes one deterministic DDIM step s -> t land exactly on x_t."""
    for a_s, s_s, a_t, s_t, x_s, x_t in _pd_cases():
        got = call(fn, a_s, s_s, a_t, s_t, x_s, x_t)
        want = _pd_target(a_s, s_s, a_t, s_t, x_s, x_t)
        if close(got, want, 1e-6, 1e-9):
            continue
        a = as_array(got)
        if a.shape != tuple(want.shape):
            raise WrongAnswer(f"x~ should have shape {tuple(want.shape)} like x_s, yours has shape {a.shape}")
        where = f"(alpha_s, sigma_s, alpha_t, sigma_t) = ({a_s:.3f}, {s_s:.3f}, {a_t:.3f}, {s_t:.3f})"
        if close(a, x_t, 1e-6, 1e-9):
            return False, ("you returned the landing point x_t itself. The student predicts DATA at time s, and a "
                           "DDIM step then mixes that prediction with the noise it implies; solve for the data "
                           "prediction whose step lands on x_t.")
        if close(a, -want, 1e-6, 1e-9):
            return False, f"the sign is flipped (the denominator's two terms are swapped) at {where}."
        if close(a, x_t / a_t, 1e-6, 1e-9):
            return False, ("x_t / alpha_t treats the landing point as pure signal; the DDIM step adds sigma_t times "
                           "the noise implied by x_s and the prediction, (x_s - alpha_s x~)/sigma_s.")
        if close(a, (s_s * x_t - s_t * x_s) / (a_t * s_s), 1e-6, 1e-9):
            return False, ("the noise the step reuses, eps_hat = (x_s - alpha_s x~)/sigma_s, depends on x~ too; you "
                           "kept only its x_s part, so the alpha_s sigma_t term is missing from the denominator.")
        if close(a, (s_t * x_t - s_s * x_s) / (a_t * s_s - a_s * s_t), 1e-6, 1e-9):
            return False, (f"the two sigmas in the numerator are swapped at {where}: x_t carries the weight of the "
                           "START time's noise level and x_s that of the END time's (write the step and collect x~).")
        if close(a, (s_s * x_t - s_t * x_s) / (a_t * s_s + a_s * s_t), 1e-6, 1e-9):
            return False, (f"the denominator has a plus where the step gives a minus at {where}: the noise estimate "
                           "(x_s - alpha_s x~)/sigma_s SUBTRACTS alpha_s x~, so its part of x~'s coefficient is negative.")
        return False, f"at {where}: expected {fmt(want)}, got {fmt(got)}."
    return True, ("one DDIM step from x_s with your x~ lands on x_t exactly, under VP and on the flow path "
                  "(also from s = 1, where alpha_s = 0).")


# -- 2. the KD loss (implement-and-reuse) ------------------------------------------------------------------------------
def _kd_loss(student_map: Callable, x_T: torch.Tensor, x_end: torch.Tensor) -> torch.Tensor:
    return ((student_map(x_T) - x_end) ** 2).sum(1).mean()


@checker("kd_loss", "10")
def check_kd_loss(fn: Any) -> tuple[bool, str]:
    """fn(student_map, x_T (B, D), x_end (B, D)) -> one number: the knowledge-distillation loss, the squared
    distance between the student's output and the teacher's endpoint, averaged over the batch."""
    g = torch.Generator().manual_seed(104)
    A = torch.randn(3, 3, generator=g, dtype=torch.float64)
    G = lambda x: x @ A + 0.3                                                    # noqa: E731
    x_T, x_end = example_pair(105, (6, 3))
    got = call(fn, G, x_T, x_end)
    want = float(_kd_loss(G, x_T, x_end))
    if as_array(got).size != 1:
        raise WrongAnswer(f"return one number (the batch average); you returned shape {as_array(got).shape}")
    a = as_scalar(got)
    if abs(a - want) < 1e-8 * max(1.0, abs(want)):
        return True, "the KD loss matches: squared distance summed over the 3 dimensions, averaged over the batch."
    dist = (G(x_T) - x_end).norm(dim=1)
    if abs(a - want / 3) < 1e-8 * max(1.0, want):
        return False, ("you averaged over the 3 dimensions too; the map's error is the squared DISTANCE, summed "
                       "over dimensions, then averaged over the batch.")
    if abs(a - want * 6) < 1e-8 * max(1.0, want * 6):
        return False, "you summed over the batch of 6; the loss is an expectation over x_T, so average it."
    if abs(a - float(dist.mean())) < 1e-8 * max(1.0, want):
        return False, "the distance is not squared: the KD loss is the mean of ||G(x_T) - x_end||^2."
    return False, f"expected {want:.5g}, got {a:.5g}."


# -- 3. the VSD gradient for a Gaussian (derivation) -----------------------------------------------------------------------
def _vsd_grad(mu, scale, m, v, alpha, sigma):
    mu = torch.as_tensor(mu, dtype=torch.float64).clone().requires_grad_(True)
    sc = torch.as_tensor(scale, dtype=torch.float64).clone().requires_grad_(True)
    kl = gaussian_kl(alpha * mu, alpha ** 2 * sc ** 2 + sigma ** 2, alpha * torch.as_tensor(m, dtype=torch.float64),
                     torch.tensor(alpha ** 2 * v + sigma ** 2, dtype=torch.float64))
    d_mu, d_sc = torch.autograd.grad(kl, (mu, sc))
    return d_mu, d_sc


def _vsd_cases():
    return [(torch.tensor([0.7, -0.4]), 0.6, torch.tensor([-0.2, 0.3]), 1.7, 0.9, 0.44),
            (torch.tensor([0.5, 1.0, -0.3]), 1.4, torch.tensor([0.1, -0.6, 0.2]), 0.5, 0.5, 0.87)]


@checker("gaussian_vsd_grad", "10")
def check_gaussian_vsd_grad(fn: Any) -> tuple[bool, str]:
    """fn(mu (D,), scale, m (D,), v, alpha, sigma) -> (d_mu (D,), d_scale): the gradient in (mu, scale) of
    KL(p_t^theta || p_t) for the generator G(z) = mu + scale z, z ~ N(0, I), data N(m, v I), at a time with
    coefficients alpha, sigma (x_t = alpha x + sigma eps)."""
    for mu, sc, m, v, al, si in _vsd_cases():
        got = call(fn, mu.double(), sc, m.double(), v, al, si)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise WrongAnswer("return the pair (d_mu, d_scale)")
        want = _vsd_grad(mu, sc, m, v, al, si)
        g_mu, g_sc = as_array(got[0]).reshape(-1), as_array(got[1])
        if close(g_mu, want[0]) and close(g_sc.reshape(()), want[1]):
            continue
        D = mu.numel()
        A, B = al ** 2 * sc ** 2 + si ** 2, al ** 2 * v + si ** 2
        if close(g_mu, -want[0]) and close(g_sc.reshape(()), -want[1]):
            return False, "both signs are flipped: that is the direction that INCREASES the KL."
        if close(g_mu, al * (mu - m) / B):
            return False, ("d_mu misses a factor alpha: the generator's noisy mean is alpha mu, so the chain rule "
                           "gives alpha times the derivative in that mean, which itself carries alpha (mu - m).")
        if close(g_mu, al ** 2 * (mu - m) / A):
            return False, ("you divided by the generator's variance: that is the gradient of the forward KL(p_t || "
                           "p_t^theta). VSD's divergence is KL(p_t^theta || p_t): the data's variance sits below.")
        if close(g_mu, want[0]) and close(g_sc.reshape(()), want[1] / D):
            return False, f"d_scale is {D} times too small: each of the D = {D} dimensions contributes to the KL."
        if close(g_mu, want[0]):
            return False, (f"d_mu is right; d_scale: the generator's variance is alpha^2 scale^2 + sigma^2 = {A:.4g}; "
                           f"expected {fmt(want[1])}, got {fmt(g_sc)}.")
        return False, f"for D = {D}: expected d_mu = {fmt(want[0])}, d_scale = {fmt(want[1])}; got {fmt(g_mu)}, {fmt(g_sc)}."
    return True, ("your gradient matches autograd of the closed-form KL in 2-D and 3-D; the next cell checks "
                  "that the VSD estimator (score difference times dG/dtheta) averages to it.")


# -- 4. where does SDS take a point (predict-then-run) ----------------------------------------------------------------------
_WHY4 = ("SDS moves each point along E_t[eps_real(x_t) - eps]: the Dirac's own term averages to zero, so each point "
         "climbs the teacher's density, averaged over the noise levels, from where it starts. Nothing couples the "
         "points, so each stays in its own sector. At high noise the eight modes have merged into one blob around "
         "the origin, and averaging in those levels pulls the stopping point inward: short of the mode centre "
         "(radius about 1.4 here, not 2). Cutting the high noise levels (the run below) moves it out.")
_HINT4 = {"a": ("nothing pulls the points toward each other: each moves by the teacher's noise-averaged score at its "
                "OWN position, which points into its own sector; they end in three different directions. "),
          "b": ("the points do not reach the mode centres: averaging over noise levels includes high noise, where the "
                "modes have merged into one blob around the origin, and that pull moves the stopping point inward. ")}


@checker("sds_modes", "10")
def check_sds_modes(answer: Any) -> tuple[bool, str]:
    """answer: 'a' (all three points meet at one place), 'b' (each stops at a single point in its own sector, at the
    mode's centre, radius 2) or 'c' (each stops at a single point in its own sector, short of the mode's centre,
    radius below 2): where SDS with t over [0.02, 0.98] takes three single points of the eight-Gaussian mixture."""
    got = call(answer)
    key = str(got).strip().strip("()").strip().lower() if isinstance(got, str) else None
    if key not in ("a", "b", "c"):
        raise WrongAnswer(f"answer with one of the letters 'a', 'b' or 'c' (you gave {got!r})")
    if key == "c":
        return True, "right: (c). " + _WHY4
    return False, f"recorded {key!r}; the run below says (c): " + _HINT4[key] + _WHY4


# -- 5. the PD target from the wrong network (find-the-bug) -----------------------------------------------------------------
@checker("pd_teacher_steps", "10")
def check_pd_teacher_steps(fn: Any) -> tuple[bool, str]:
    """fn(teacher, student, x_s (B, D), s, u, t) -> (B, D): the regression target of a PD round, built from the
    right network's two DDIM steps s -> u -> t (use dl.distill.ddim_jump and dl.distill.pd_target)."""
    teacher, student = _MIX3.model(_VP), _MIX3B.model(_VP)
    x_s, _ = example_pair(106, (5, 3))
    s, u, t = 0.7, 0.45, 0.2
    got = call(fn, teacher, student, x_s, s, u, t)
    want = pd_teacher_target(teacher, x_s, s, u, t)
    if close(got, want, 1e-6, 1e-9):
        return True, ("the target comes from the TEACHER's two steps: the student learns to do in one step what "
                      "the teacher does in two, and nothing of its own error feeds back into its target.")
    a = as_array(got)
    if a.shape != tuple(want.shape):
        raise WrongAnswer(f"the target should have shape {tuple(want.shape)}, yours has {a.shape}")
    from ..distill import ddim_jump, pd_target
    if close(a, pd_teacher_target(student, x_s, s, u, t), 1e-6, 1e-9):
        return False, ("still the bug: the two steps are the STUDENT's. Its target then chases its own output and "
                       "the round distils nothing from the teacher; take both steps with the teacher.")
    mixed = pd_target(_VP, x_s, s, t, ddim_jump(student, ddim_jump(teacher, x_s, s, u), u, t))
    if close(a, mixed, 1e-6, 1e-9):
        return False, "the first step is the teacher's, the second the student's: both steps belong to the teacher."
    if close(a, pd_target(_VP, x_s, s, t, ddim_jump(teacher, x_s, s, t)), 1e-6, 1e-9):
        return False, ("that is ONE teacher step s -> t: its target is just the teacher's own x0 prediction. PD's "
                       "student must match TWO teacher steps s -> u -> t.")
    if close(a, ddim_jump(teacher, ddim_jump(teacher, x_s, s, u), u, t), 1e-6, 1e-9):
        return False, ("that is the teacher's landing point x_t; the regression target is the data prediction x~ "
                       "that lands there in one step: pass it through pd_target.")
    return False, f"expected {fmt(want)}, got {fmt(got)}."


# -- 6. a DMD generator loss with its sign flipped (find-the-bug) ------------------------------------------------------------
@checker("dmd_surrogate", "10")
def check_dmd_surrogate(fn: Any) -> tuple[bool, str]:
    """fn(x_gen (B, D), x0_fake (B, D), x0_real (B, D)) -> one number whose gradient in x_gen, followed by a
    gradient-DESCENT step, moves the generator's samples as distribution matching asks (fake denoiser toward
    real). The denoised values are to be held fixed (they depend on x_gen here, as in training)."""
    base, c = example_pair(107, (4, 2))
    x_gen = base.clone().requires_grad_(True)
    x0_fake = 0.7 * x_gen + 0.2 * c                  # stand-ins that depend on x_gen, as the real ones do
    x0_real = torch.tanh(x_gen) - 0.3 * c
    out = call(fn, x_gen, x0_fake, x0_real)
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise WrongAnswer("return one number (a 0-d tensor) that autograd can differentiate")
    if not out.requires_grad:
        raise WrongAnswer("your number does not depend on x_gen: the gradient must flow into the generator's output")
    (grad,) = torch.autograd.grad(out.reshape(()), x_gen)
    d = (x0_fake - x0_real).detach()
    B = x_gen.shape[0]
    if close(grad, d / B):
        return True, ("descending your surrogate moves each sample along x0_real - x0_fake: toward what the "
                      "teacher denoises it to, away from what the generator's own (fake) denoiser says.")
    if close(grad, -d / B):
        return False, ("still the bug: the sign is flipped, so a descent step moves samples TOWARD the fake "
                       "denoiser's answer; the generator would run away from the data.")
    if close(grad, d):
        return False, f"the gradient is {B} times too large: average over the batch instead of summing."
    if close(grad, -d):
        return False, f"the sign is flipped AND the batch of {B} is summed: fix both."
    y = base.clone().requires_grad_(True)                 # the same stand-ins, gradient flowing through them
    full = torch.autograd.grad((((0.7 * y + 0.2 * c) - (torch.tanh(y) - 0.3 * c)) * y).sum() / B, y)[0]
    if close(grad, full) or close(grad, -full):
        return False, ("the gradient also flows through x0_fake and x0_real: hold them fixed (.detach()); the "
                       "distribution-matching gradient passes only through the generator's output.")
    return False, f"the gradient of your number in x_gen is {fmt(grad)}; it should be {fmt(d / B)}."


_REFERENCES: dict[str, Callable] = {"pd_target": _pd_target, "kd_loss": _kd_loss, "gaussian_vsd_grad": _vsd_grad}

use = make_use(_REFERENCES)   # use(name, answer): the learner's function, or the package's while a stub
