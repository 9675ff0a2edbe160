"""Automatic checks for the course exercises: `dl.exercises.check_<name>(your_answer)`.

Each check prints a short, specific message and returns True or False. It never raises on
an unfinished answer: a stub that returns None (or None itself) prints "not attempted yet"
and returns False, so the student copy of a chapter runs from top to bottom.

    def my_alpha(t):
        return ...
    exercises.check_vp_alpha(my_alpha)      # -> prints a message, returns True/False

`exercises.EXERCISES` lists every check with the chapter it belongs to.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch

from .schedules import DiscreteSchedule, VPLinear

__all__ = ["EXERCISES", "check_vp_alpha", "check_forward_noise", "check_eps_from_x0", "check_score_from_eps",
           "check_gaussian_nll", "check_kl_grid", "check_js_grid", "check_tv_grid", "check_gaussian_score",
           "check_forward_kl_fit", "check_alpha_bar", "check_ddpm_posterior", "check_eps_mean",
           "check_vae_kl", "check_gaussian_kl"]

OK = "\u2705"      # check mark
NO = "\u274c"      # cross
TODO = "\u270f\ufe0f"  # pencil


class _NotAttempted(Exception):
    pass


def _f(x) -> str:
    """Format a number or a small array compactly for messages."""
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=float)
    if a.size == 1:
        return f"{a.item():.4g}"
    return np.array2string(a.ravel()[:4], precision=3, separator=", ") + (" ..." if a.size > 4 else "")


def _call(name: str, fn, *args):
    """Call the learner's answer; map 'no answer yet' to _NotAttempted and errors to messages."""
    if fn is None:
        raise _NotAttempted
    if not callable(fn):
        return fn
    try:
        out = fn(*args)
    except NotImplementedError:
        raise _NotAttempted
    if out is None or out is Ellipsis:
        raise _NotAttempted
    return out


def _as_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    if isinstance(x, (tuple, list)):
        return np.asarray([_as_array(v) for v in x], dtype=float)
    return np.asarray(x, dtype=float)


def _close(a, b, rtol=1e-4, atol=1e-6) -> bool:
    a, b = _as_array(a), _as_array(b)
    return a.shape == b.shape and bool(np.all(np.isfinite(a))) and np.allclose(a, b, rtol=rtol, atol=atol)


def _checker(name: str, chapter: str):
    """Decorator: a check body returns (ok, message); this adds the friendly wrapping."""

    def wrap(body: Callable):
        def check(answer: Any = None, *args, **kwargs) -> bool:
            try:
                ok, msg = body(answer, *args, **kwargs)
            except _NotAttempted:
                print(f"{TODO} {name}: not attempted yet. Fill in the cell above (replace `return None`) "
                      "and run this check again.")
                return False
            except Exception as exc:  # a learner's bug should read as advice, not a traceback
                print(f"{NO} {name}: your code raised {type(exc).__name__}: {exc}. "
                      "Check the shapes and types of what you return.")
                return False
            print(f"{OK if ok else NO} {name}: {msg}")
            return bool(ok)

        check.__name__ = f"check_{name}"
        check.__doc__ = body.__doc__
        check.chapter = chapter
        EXERCISES[name] = (chapter, check)
        return check

    return wrap


EXERCISES: dict[str, tuple[str, Callable]] = {}

_TS = (0.1, 0.3, 0.5, 0.8)


# ------------------------------------------------------------------------------------------
# 00 tour: schedules and the four predictions
# ------------------------------------------------------------------------------------------

@_checker("vp_alpha", "00")
def check_vp_alpha(fn):
    """fn(t: float) -> alpha_t of the linear VP schedule (beta_min=0.1, beta_max=20)."""
    sch = VPLinear()
    for t in _TS:
        got, want = float(_as_array(_call("vp_alpha", fn, t))), float(sch.alpha(t))
        if not math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-7):
            hint = ""
            if math.isclose(got, want ** 2, rel_tol=1e-3):
                hint = " That is alpha_t^2: did you forget the square root (the factor 1/2 in the exponent)?"
            elif math.isclose(got, math.sqrt(1 - want ** 2), rel_tol=1e-3):
                hint = " That is sigma_t, the noise coefficient: alpha_t multiplies the data."
            elif math.isclose(got, math.exp(-(0.1 * t + 0.5 * 19.9 * t * t) / 4), rel_tol=1e-3) or \
                    math.isclose(got, math.exp(-(0.1 * t + 19.9 * t * t) / 2), rel_tol=1e-3):
                hint = " Check the integral B(t) = beta_min t + (beta_max - beta_min) t^2 / 2."
            return False, f"at t={t} your alpha is {got:.4g} but should be {want:.4g}.{hint}"
    return True, "alpha_t matches dl.VPLinear().alpha at t = 0.1, 0.3, 0.5, 0.8. Well done!"


def _pred_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(5, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(5, 2, generator=g, dtype=torch.float64)
    return x0, eps


@_checker("forward_noise", "00")
def check_forward_noise(fn):
    """fn(x0, eps, t, schedule) -> x_t = alpha_t x0 + sigma_t eps."""
    sch = VPLinear()
    x0, eps = _pred_inputs()
    for t in _TS:
        got = _call("forward_noise", fn, x0, eps, t, sch)
        want = sch.alpha(t) * x0 + sch.sigma(t) * eps
        if not _close(got, want):
            hint = ""
            if _close(got, sch.sigma(t) * x0 + sch.alpha(t) * eps):
                hint = " You swapped the roles: alpha_t multiplies the data, sigma_t the noise."
            elif _close(got, sch.alpha(t) * x0 + sch.sigma(t) ** 2 * eps):
                hint = " sigma_t is already a standard deviation; do not square it."
            return False, f"at t={t} your x_t[0] is {_f(_as_array(got)[0])} but should be {_f(want[0])}.{hint}"
    return True, "x_t = alpha_t x0 + sigma_t eps, exactly. Nice."


@_checker("eps_from_x0", "00")
def check_eps_from_x0(fn):
    """fn(x_t, t, x0_hat, schedule) -> the eps that goes with a denoiser output x0_hat."""
    sch = VPLinear()
    x0, eps = _pred_inputs(1)
    for t in _TS:
        x_t = sch.alpha(t) * x0 + sch.sigma(t) * eps
        got = _call("eps_from_x0", fn, x_t, t, x0, sch)
        if not _close(got, eps):
            hint = ""
            if _close(got, x_t - sch.alpha(t) * x0):
                hint = " Almost: divide by sigma_t at the end."
            return False, (f"at t={t} your eps[0] is {_f(_as_array(got)[0])} but should be {_f(eps[0])}."
                           f"{hint} Solve x_t = alpha_t x0 + sigma_t eps for eps.")
    return True, "eps = (x_t - alpha_t x0) / sigma_t recovers the noise exactly."


@_checker("score_from_eps", "00")
def check_score_from_eps(fn):
    """fn(eps_hat, t, schedule) -> the score -eps_hat / sigma_t (Tweedie, §3.3.4, §6.3.1)."""
    sch = VPLinear()
    _, eps = _pred_inputs(2)
    for t in _TS:
        got = _call("score_from_eps", fn, eps, t, sch)
        want = -eps / sch.sigma(t)
        if not _close(got, want):
            hint = ""
            if _close(got, eps / sch.sigma(t)):
                hint = " The sign is off: the score points back toward the data, against the noise."
            elif _close(got, -eps / sch.sigma(t) ** 2) or _close(got, -eps * sch.sigma(t)):
                hint = " Check the power of sigma_t: score = -eps / sigma_t."
            return False, f"at t={t} your score[0] is {_f(_as_array(got)[0])} but should be {_f(want[0])}.{hint}"
    return True, "score = -eps / sigma_t. The four predictions are one object."


# ------------------------------------------------------------------------------------------
# 01 generative modeling: likelihoods and divergences
# ------------------------------------------------------------------------------------------

@_checker("gaussian_nll", "01")
def check_gaussian_nll(fn):
    """fn(x (N,), mu, sigma) -> mean negative log-likelihood of N(mu, sigma^2) on the data."""
    x = torch.tensor([-1.0, 0.3, 0.8, 2.0, 2.5], dtype=torch.float64)
    for mu, s in ((0.0, 1.0), (1.0, 0.5), (-0.5, 2.0)):
        got = float(_as_array(_call("gaussian_nll", fn, x, mu, s)))
        want = float((0.5 * ((x - mu) / s) ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi)).mean())
        if not math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-8):
            diff = got - want
            hint = ""
            if math.isclose(diff, -0.5 * math.log(2 * math.pi), abs_tol=1e-6):
                hint = " You are missing the constant log(2 pi) / 2."
            elif math.isclose(diff, -math.log(s), abs_tol=1e-6):
                hint = " You are missing the log sigma term (the normaliser depends on sigma)."
            elif math.isclose(got, -want, rel_tol=1e-5):
                hint = " Sign: the NEGATIVE log-likelihood is a positive-ish loss."
            elif math.isclose(got, want * len(x), rel_tol=1e-5):
                hint = " Take the mean over the data, not the sum."
            return False, f"for mu={mu}, sigma={s} your NLL is {got:.4g} but should be {want:.4g}.{hint}"
    return True, "the mean Gaussian NLL is right: minimising it is MLE, i.e. forward KL."


def _grid_pair():
    x = np.linspace(-6, 6, 601)
    dx = x[1] - x[0]
    p = 0.5 * np.exp(-0.5 * (x + 1.5) ** 2 / 0.25) + 0.5 * np.exp(-0.5 * (x - 1.5) ** 2 / 0.25)
    q = np.exp(-0.5 * (x - 0.3) ** 2 / 1.5)
    p, q = p / (p.sum() * dx), q / (q.sum() * dx)
    return x, dx, p, q


def _kl(p, q, dx):
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q[m])) * dx)


def _grid_check(name, fn, ref, extra_hints):
    x, dx, p, q = _grid_pair()
    cases = [("p, q", p, q), ("q, p", q, p), ("p, p", p, p)]
    for label, a, b in cases:
        got = float(_as_array(_call(name, fn, a, b, dx)))
        want = ref(a, b, dx)
        if not math.isclose(got, want, rel_tol=1e-3, abs_tol=1e-6):
            hint = extra_hints(got, want, a, b, dx)
            return False, f"on ({label}) your value is {got:.4g} but should be {want:.4g}.{hint}"
    return True, None


@_checker("kl_grid", "01")
def check_kl_grid(fn):
    """fn(p, q, dx) -> KL(p || q) = sum p log(p / q) dx for densities on a grid."""
    def hints(got, want, a, b, dx):
        if math.isclose(got, _kl(b, a, dx), rel_tol=1e-3):
            return " That is KL(q || p): the first argument is the one you average over."
        if math.isclose(got, want / dx, rel_tol=1e-3):
            return " Multiply the sum by dx to turn it into an integral."
        return ""
    ok, msg = _grid_check("kl_grid", fn, _kl, hints)
    return ok, msg or "KL is right, and KL(p||p) = 0. Note KL(p||q) != KL(q||p)."


def _js(p, q, dx):
    m = 0.5 * (p + q)
    return 0.5 * _kl(p, m, dx) + 0.5 * _kl(q, m, dx)


@_checker("js_grid", "01")
def check_js_grid(fn):
    """fn(p, q, dx) -> Jensen-Shannon divergence (1/2) KL(p||m) + (1/2) KL(q||m), m = (p + q)/2."""
    def hints(got, want, a, b, dx):
        if math.isclose(got, 2 * want, rel_tol=1e-3):
            return " You are missing the factor 1/2 in front of each KL."
        if got > math.log(2) + 1e-9:
            return " JS can never exceed log 2: compare each density with the average m, not with the other."
        return ""
    ok, msg = _grid_check("js_grid", fn, _js, hints)
    return ok, msg or "JS is right, symmetric and below log 2 = 0.693."


def _tv(p, q, dx):
    return float(0.5 * np.abs(p - q).sum() * dx)


@_checker("tv_grid", "01")
def check_tv_grid(fn):
    """fn(p, q, dx) -> total variation distance (1/2) int |p - q| dx."""
    def hints(got, want, a, b, dx):
        if math.isclose(got, 2 * want, rel_tol=1e-3):
            return " You are missing the factor 1/2 (TV lies in [0, 1])."
        return ""
    ok, msg = _grid_check("tv_grid", fn, _tv, hints)
    return ok, msg or "TV is right: symmetric and in [0, 1]."


@_checker("gaussian_score", "01")
def check_gaussian_score(fn):
    """fn(x (N,), mu, sigma) -> d/dx log N(x; mu, sigma^2) = -(x - mu) / sigma^2."""
    x = torch.tensor([-1.0, 0.3, 2.0], dtype=torch.float64)
    for mu, s in ((0.0, 1.0), (1.0, 0.5)):
        got = _call("gaussian_score", fn, x, mu, s)
        want = -(x - mu) / s ** 2
        if not _close(got, want):
            hint = ""
            if _close(got, -want):
                hint = " The sign is flipped: the score points toward the mean."
            elif _close(got, -(x - mu) / s):
                hint = " Divide by the variance sigma^2, not by sigma."
            return False, f"for mu={mu}, sigma={s}, x={_f(x)} you gave {_f(got)} but should give {_f(want)}.{hint}"
    return True, "the Gaussian score is right, and it never needed the normaliser 1/sqrt(2 pi sigma^2)."


@_checker("forward_kl_fit", "01")
def check_forward_kl_fit(answer, weights=(0.5, 0.5), means=(-2.0, 2.0), stds=(0.5, 0.5)):
    """answer(weights, means, stds) -> (mean, std) of the Gaussian minimising KL(p || q) for a 1D mixture p.

    The forward-KL (MLE) fit of a Gaussian matches the first two moments of p.
    """
    cases = [(weights, means, stds), ((0.3, 0.7), (-1.0, 3.0), (1.0, 0.5))]
    for w, m, s in cases:
        got = _as_array(_call("forward_kl_fit", answer, w, m, s)).ravel()
        w_, m_, s_ = map(np.asarray, (w, m, s))
        mean = float((w_ * m_).sum())
        var = float((w_ * (s_ ** 2 + m_ ** 2)).sum() - mean ** 2)
        want = np.array([mean, math.sqrt(var)])
        if got.shape != (2,):
            return False, f"return a pair (mean, std); you returned {got.size} numbers"
        if not np.allclose(got, want, rtol=1e-4, atol=1e-6):
            hint = ""
            if math.isclose(got[1], var, rel_tol=1e-4):
                hint = " You returned the variance: take its square root."
            elif math.isclose(got[1] ** 2, float((w_ * s_ ** 2).sum()), rel_tol=1e-3):
                hint = " The spread of the means counts too: Var = E[Var|k] + Var(E|k)."
            return False, f"for weights={w}, means={m}, stds={s} you gave {_f(got)} but should give {_f(want)}.{hint}"
    return True, "moment matching: the forward-KL fit covers both modes."


# ------------------------------------------------------------------------------------------
# 02 VAE to DDPM
# ------------------------------------------------------------------------------------------

_BETAS = torch.linspace(0.05, 0.4, 10, dtype=torch.float64)


@_checker("alpha_bar", "02")
def check_alpha_bar(fn):
    """fn(betas (L,)) -> alpha_bar_i for i = 1..L, the book's convention (beta is a std, Eq. 2.2.1)."""
    got = _call("alpha_bar", fn, _BETAS.clone())
    want = DiscreteSchedule(_BETAS, beta_is="std").alpha_at_steps[1:]
    if not _close(got, want):
        hint = ""
        ho = torch.cumprod(1 - _BETAS, 0)
        if _close(got, ho) or _close(got, ho.sqrt()):
            hint = " That is Ho et al.'s convention (beta a variance). In the book beta_i is a standard deviation: alpha_i = sqrt(1 - beta_i^2)."
        elif _close(got, want ** 2):
            hint = " You returned alpha_bar^2 (the signal variance); take the square root."
        elif _as_array(got).shape != tuple(want.shape):
            hint = f" Return one value per step, shape ({len(_BETAS)},)."
        return False, f"for betas = linspace(0.05, 0.4, 10) you gave {_f(got)} but should give {_f(want)}.{hint}"
    return True, "alpha_bar_i = prod_k sqrt(1 - beta_k^2): the signal left after i steps."


def _post(x_i, x0, i, betas):
    a = torch.sqrt(1 - betas ** 2)
    ab = torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(a, 0)])
    c0 = ab[i - 1] * betas[i - 1] ** 2 / (1 - ab[i] ** 2)
    ci = (1 - ab[i - 1] ** 2) * a[i - 1] / (1 - ab[i] ** 2)
    var = (1 - ab[i - 1] ** 2) / (1 - ab[i] ** 2) * betas[i - 1] ** 2
    return c0 * x0 + ci * x_i, var


@_checker("ddpm_posterior", "02")
def check_ddpm_posterior(fn):
    """fn(x_i, x0, i, betas) -> (mean, variance) of p(x_{i-1} | x_i, x0) (Lemma 2.2.2, Eq. 2.2.4), 1 <= i <= L."""
    x0, x_i = _pred_inputs(3)
    for i in (1, 4, 10):
        got = _call("ddpm_posterior", fn, x_i, x0, i, _BETAS.clone())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return False, "return a pair (mean, variance)"
        mean, var = _post(x_i, x0, i, _BETAS)
        if not _close(got[0], mean):
            return False, (f"at i={i} your mean[0] is {_f(_as_array(got[0])[0])} but should be {_f(mean[0])}. "
                           "Check the two weights: alpha_bar_{i-1} beta_i^2 / (1 - alpha_bar_i^2) on x0, "
                           "(1 - alpha_bar_{i-1}^2) alpha_i / (1 - alpha_bar_i^2) on x_i (mind i-1 vs i indexing).")
        if not _close(np.asarray(_as_array(got[1])).ravel()[:1], np.asarray([float(var)])):
            hint = " (that is the std; return the variance)" if math.isclose(
                float(_as_array(got[1]).ravel()[0]), math.sqrt(float(var)), rel_tol=1e-4) else ""
            return False, f"at i={i} your variance is {_f(got[1])} but should be {_f(var)}{hint}."
    return True, "Lemma 2.2.2 reproduced: a Gaussian in x_{i-1} once x0 is known. At i=1 the variance is 0."


@_checker("eps_mean", "02")
def check_eps_mean(fn):
    """fn(x_i, eps_hat, i, betas) -> mu = (x_i - beta_i^2 / sqrt(1 - alpha_bar_i^2) eps_hat) / alpha_i (Eq. 2.2.9)."""
    x0, eps = _pred_inputs(4)
    a = torch.sqrt(1 - _BETAS ** 2)
    ab = torch.cumprod(a, 0)
    for i in (1, 5, 10):
        x_i = ab[i - 1] * x0 + torch.sqrt(1 - ab[i - 1] ** 2) * eps
        got = _call("eps_mean", fn, x_i, eps, i, _BETAS.clone())
        want, _ = _post(x_i, x0, i, _BETAS)   # with the true eps, the eps-mean IS the posterior mean
        if not _close(got, want):
            return False, (f"at i={i} your mean[0] is {_f(_as_array(got)[0])} but should be {_f(want[0])}. "
                           "With the true eps it must equal the posterior mean of Lemma 2.2.2; "
                           "note 1 - alpha_i^2 = beta_i^2.")
    return True, "the eps-parameterised mean equals the posterior mean when eps_hat is the true noise."


@_checker("gaussian_kl", "02")
def check_gaussian_kl(fn):
    """fn(mu1, mu2, var) -> KL(N(mu1, var I) || N(mu2, var I)) = ||mu1 - mu2||^2 / (2 var)."""
    x0, eps = _pred_inputs(5)
    for var in (0.1, 1.0):
        got = float(_as_array(_call("gaussian_kl", fn, x0[0], eps[0], var)))
        want = float(((x0[0] - eps[0]) ** 2).sum() / (2 * var))
        if not math.isclose(got, want, rel_tol=1e-5):
            hint = " Divide by 2 * variance." if math.isclose(got, 2 * want, rel_tol=1e-4) else ""
            return False, f"for var={var} your KL is {got:.4g} but should be {want:.4g}.{hint}"
    return True, "equal-variance Gaussians: the KL is a scaled squared distance between means, the DDPM loss."


@_checker("vae_kl", "02")
def check_vae_kl(fn):
    """fn(mu (B, d), logvar (B, d)) -> (B,) KL(N(mu, diag exp(logvar)) || N(0, I))."""
    g = torch.Generator().manual_seed(6)
    mu = torch.randn(4, 3, generator=g, dtype=torch.float64)
    logvar = 0.5 * torch.randn(4, 3, generator=g, dtype=torch.float64)
    got = _call("vae_kl", fn, mu, logvar)
    want = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)
    if not _close(got, want):
        hint = ""
        if _close(got, want.sum()) or _close(got, want.mean()):
            hint = " Return one KL per example (sum over latent dims only)."
        elif _close(got, 2 * want):
            hint = " You are missing the factor 1/2."
        return False, f"your KL is {_f(got)} but should be {_f(want)}.{hint}"
    return True, "the closed-form Gaussian KL of the VAE is right."
