"""Chapter 03 (EBMs to NCSN): the checks of §3.1-3.4 and the package's versions that later cells fall back on.

Kinds: implement-and-reuse (score_from_energy, langevin_step, tweedie_denoiser, annealed_langevin: later
cells call the learner's function through `use`), derivations checked numerically (ula_variance,
sm_constant), a prediction (mode_weight_prediction) and a find-the-bug (annealed_langevin: the step size
of the NCSN paper, whose levels run the other way, pasted into the book's ordering).
`use(name, answer)` returns the learner's function when it answers, else the package's version with a note.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..utils import randn
from ._base import WrongAnswer, as_array, as_scalar, call, checker, close, fmt, make_use

__all__ = ["check_score_from_energy", "check_langevin_step", "check_ula_variance", "check_tweedie_denoiser",
           "check_sm_constant", "check_mode_weight_prediction", "check_annealed_langevin", "use"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- 1. the score of an energy (implement-and-reuse) --------------------------------------------------------------
def _score_from_energy(energy: Callable, x: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        y = x.detach().requires_grad_(True)
        return -torch.autograd.grad(energy(y).sum(), y)[0]


_A = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.5]], dtype=torch.float64)


def _energy(x: torch.Tensor) -> torch.Tensor:
    """A non-quadratic energy in D = 3: 1/2 x^T A x + sum cos(x) + 0.1 |x|^4 (per sample, (B,))."""
    return 0.5 * ((x @ _A) * x).sum(1) + torch.cos(x).sum(1) + 0.1 * (x ** 2).sum(1) ** 2


@checker("score_from_energy", "03")
def check_score_from_energy(fn: Any) -> tuple[bool, str]:
    """fn(energy, x (B, D)) -> (B, D) the score -grad_x E(x) of p = exp(-E)/Z."""
    x = randn((5, 3), generator=_gen(0), dtype=torch.float64)
    got = call(fn, _energy, x)
    want = _score_from_energy(_energy, x)
    if close(got, want):
        return True, "the score is minus the energy's gradient, and log Z never entered."
    g = as_array(got)
    hint = ""
    if g.shape != (5, 3):
        hint = f" Return one score vector per sample, shape (5, 3), not {g.shape}."
    elif close(got, -want):
        hint = " Sign: p = exp(-E)/Z, so grad log p = -grad E (the score points downhill in energy)."
    elif close(got, want / 5) or close(got, -want / 5):
        hint = " You differentiated the batch MEAN of E: that divides every gradient by B = 5; use E(x).sum()."
    return False, f"for a 3-D energy your score is {fmt(got)} but should be {fmt(want)}.{hint}"


# -- 2. one Langevin step (implement-and-reuse) -------------------------------------------------------------------
def _langevin_step(score_fn: Callable, x: torch.Tensor, eta: float, z: torch.Tensor) -> torch.Tensor:
    return x + eta * score_fn(x) + math.sqrt(2 * eta) * z


def _gauss_score(x: torch.Tensor) -> torch.Tensor:
    return -(x - 1.0) / 0.5


@checker("langevin_step", "03")
def check_langevin_step(fn: Any) -> tuple[bool, str]:
    """fn(score_fn, x (B, D), eta, z (B, D)) -> x + eta s(x) + sqrt(2 eta) z (§3.1.4)."""
    g = _gen(1)
    x, z = randn((4, 2), generator=g, dtype=torch.float64), randn((4, 2), generator=g, dtype=torch.float64)
    eta = 0.09
    got = call(fn, _gauss_score, x, eta, z)
    want = _langevin_step(_gauss_score, x, eta, z)
    if close(got, want):
        return True, "x + eta s(x) + sqrt(2 eta) z: drift up the score, noise of variance 2 eta."
    hint = ""
    if close(got, x + eta * _gauss_score(x) + math.sqrt(eta) * z):
        hint = " The noise is sqrt(2 eta) z, not sqrt(eta) z: with sqrt(eta) the chain samples p^2 (temperature 1/2)."
    elif close(got, x - eta * _gauss_score(x) + math.sqrt(2 * eta) * z):
        hint = " Sign: the step goes UP the score (towards high density): x + eta s(x)."
    elif close(got, x + eta * _gauss_score(x) + 2 * eta * z) or close(got, x + eta * _gauss_score(x) + eta * z):
        hint = " The noise scale is a square root, sqrt(2 eta): the noise must be much larger than the drift."
    elif close(got, x + eta * _gauss_score(x)):
        hint = " Without the noise this is gradient ascent on log p: it finds a mode, it does not sample."
    return False, f"at eta = {eta} your step gives {fmt(got)} but should give {fmt(want)}.{hint}"


# -- 3. derivation: ULA's stationary variance on a Gaussian -------------------------------------------------------
def _ula_variance(eta: float, s2: float) -> float:
    return s2 / (1 - eta / (2 * s2))


@checker("ula_variance", "03")
def check_ula_variance(fn: Any) -> tuple[bool, str]:
    """fn(eta, s2) -> the stationary variance of x <- x + eta (-x / s2) + sqrt(2 eta) z (needs eta < 2 s2)."""
    cases = [(0.1, 1.0), (0.5, 2.0), (0.02, 0.25), (0.3, 0.5)]
    for eta, s2 in cases:
        got = as_scalar(call(fn, eta, s2), "one number (the variance)")
        want = _ula_variance(eta, s2)
        if not math.isclose(got, want, rel_tol=1e-6):
            hint = ""
            if math.isclose(got, s2, rel_tol=1e-6):
                hint = " s^2 is the limit eta -> 0 only; a finite step inflates the variance."
            elif math.isclose(got, s2 / (1 - eta / s2), rel_tol=1e-6):
                hint = " Close: expand (1 - eta/s2)^2 fully; the eta^2 term halves the correction."
            elif math.isclose(got, 2 * eta / (1 - (1 - eta / s2)), rel_tol=1e-6):
                hint = " Square the contraction factor: Var' = (1 - eta/s2)^2 Var + 2 eta."
            elif math.isclose(got, s2 * (1 + eta / (2 * s2)), rel_tol=1e-6):
                hint = " That is the first-order expansion; give the exact fixed point of Var' = (1-eta/s2)^2 Var + 2 eta."
            return False, f"at eta = {eta}, s^2 = {s2} you give {got:.5g}, the stationary variance is {want:.5g}.{hint}"
    return True, "Var = s^2 / (1 - eta / (2 s^2)): biased up by a finite step, exact as eta -> 0 (the next cell runs it)."


# -- 4. Tweedie's denoiser (implement-and-reuse) ------------------------------------------------------------------
def _tweedie(score_fn: Callable, x_t: torch.Tensor, sigma: float) -> torch.Tensor:
    return x_t + sigma ** 2 * score_fn(x_t)


@checker("tweedie_denoiser", "03")
def check_tweedie_denoiser(fn: Any) -> tuple[bool, str]:
    """fn(score_fn, x_t (B, D), sigma) -> E[x | x_t] = x_t + sigma^2 grad log p_sigma(x_t) (Eq. tweedie, alpha = 1)."""
    x = randn((6, 2), generator=_gen(2), dtype=torch.float64)
    sigma = 0.6
    got = call(fn, _gauss_score, x, sigma)
    want = _tweedie(_gauss_score, x, sigma)
    if close(got, want):
        return True, "x_t + sigma^2 s(x_t): one step up the noisy score lands on the posterior mean."
    hint = ""
    if close(got, x + sigma * _gauss_score(x)):
        hint = " The step is sigma^2 (the noise VARIANCE), not sigma."
    elif close(got, x - sigma ** 2 * _gauss_score(x)):
        hint = " Sign: denoising moves towards higher density, along +s."
    elif close(got, sigma ** 2 * _gauss_score(x)):
        hint = " You returned the correction only; add the noisy point x_t."
    return False, f"at sigma = {sigma} your denoiser gives {fmt(got)} but should give {fmt(want)}.{hint}"


# -- 5. derivation: the constant between explicit and Hyvarinen score matching ------------------------------------
@checker("sm_constant", "03")
def check_sm_constant(fn: Any) -> tuple[bool, str]:
    """fn(cov (D, D)) -> the constant C = 1/2 E||grad log p(x)||^2 for p = N(m, cov) (explicit SM = Hyvarinen + C)."""
    covs = [torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64),
            torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.5, 0.1], [0.0, 0.1, 0.3]], dtype=torch.float64)]
    for S in covs:
        got = as_scalar(call(fn, S), "one number (the constant)")
        want = 0.5 * float(torch.linalg.inv(S).trace())
        if not math.isclose(got, want, rel_tol=1e-6):
            hint = ""
            if math.isclose(got, 0.5 * float(S.trace()), rel_tol=1e-6):
                hint = " The score of N(m, S) is -S^{-1}(x - m): its second moment involves S^{-1}, not S."
            elif math.isclose(got, 2 * want, rel_tol=1e-6):
                hint = " You are missing the factor 1/2 of the explicit objective."
            elif math.isclose(got, 0.5 * S.shape[0], rel_tol=1e-6):
                hint = " That is the answer for S = I only; E||S^{-1}(x - m)||^2 = tr(S^{-1})."
            return False, f"for the {S.shape[0]}-D covariance {fmt(S)} you give {got:.5g}; C = {want:.5g}.{hint}"
    return True, "C = 1/2 tr(S^{-1}): it does not depend on the model, so both objectives have the same gradients."


# -- 6. predict then run: where do Langevin chains end on two separated modes? ------------------------------------
_WHY_MODES = ("Each chain drifts to the mode whose basin it starts in and then almost never crosses the gap: the "
              "score in the far-away region says nothing about the relative weights (they only scale the density "
              "inside each mode). So the fractions follow the starting points, about 0.5 for a uniform start, "
              "not the weights 0.2 / 0.8.")


@checker("mode_weight_prediction", "03")
def check_mode_weight_prediction(answer: Any) -> tuple[bool, str]:
    """answer: the fraction (a number in [0, 1]) of Langevin chains, started uniformly on [-8, 8]^2, that end in
    the heavier mode of 0.2 N((-5,-5), I) + 0.8 N((5,5), I) after a few hundred steps."""
    p = as_scalar(call(answer), "one number in [0, 1]")
    if not 0 <= p <= 1:
        raise WrongAnswer(f"give a fraction between 0 and 1 (you gave {p:g})")
    if abs(p - 0.5) <= 0.1:
        return True, f"recorded {p:g}: right, about one half (run the next cell). " + _WHY_MODES
    if abs(p - 0.8) <= 0.1:
        return False, (f"recorded {p:g}, the target weight. Langevin would reach 0.8 only after crossing between "
                       "the modes many times, which takes exponentially long in the gap. " + _WHY_MODES)
    if p > 0.9:
        return False, (f"recorded {p:g}. The heavier mode does not pull harder from afar: its pull is the same "
                       "-(x - mu) as the lighter one's. " + _WHY_MODES)
    return False, f"recorded {p:g}. " + _WHY_MODES


# -- 7. find the bug: annealed Langevin's step size (implement-and-reuse) -----------------------------------------
def _annealed(score_fn: Callable, x: torch.Tensor, sigmas: torch.Tensor, n_steps: int, delta: float,
              noise: torch.Tensor, *, norm: str = "smallest", order: str = "down", two: bool = True,
              scale: bool = True) -> torch.Tensor:
    """The reference (and its wrong variants for the tests): levels sigma_L -> sigma_1, eta_l = delta sigma_l^2 / sigma_1^2."""
    levels = list(range(len(sigmas)))[::-1] if order == "down" else list(range(len(sigmas)))
    ref = sigmas[0] if norm == "smallest" else sigmas[-1]
    for i, l in enumerate(levels):
        s = float(sigmas[l])
        eta = delta * s ** 2 / float(ref) ** 2 if scale else delta
        for k in range(n_steps):
            x = x + eta * score_fn(x, s) + math.sqrt((2 if two else 1) * eta) * noise[i, k]
    return x


def _noised_score(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """The exact score of N(1, 0.5 I) * N(0, sigma^2 I): -(x - 1) / (0.5 + sigma^2)."""
    return -(x - 1.0) / (0.5 + sigma ** 2)


@checker("annealed_langevin", "03")
def check_annealed_langevin(fn: Any) -> tuple[bool, str]:
    """fn(score_fn, x (B, D), sigmas (L,) increasing, n_steps, delta, noise (L, K, B, D)) -> (B, D): annealed Langevin
    from sigma_L down to sigma_1, K steps per level, eta_l = delta sigma_l^2 / sigma_1^2, noise[i, k] the k-th draw
    at the i-th level visited (i = 0: sigma_L)."""
    g = _gen(3)
    sigmas = torch.tensor([0.1, 0.4, 1.6], dtype=torch.float64)
    x = 2 * randn((5, 2), generator=g, dtype=torch.float64)
    noise = randn((3, 4, 5, 2), generator=g, dtype=torch.float64)
    delta = 2e-3
    got = call(fn, _noised_score, x, sigmas, 4, delta, noise)
    want = _annealed(_noised_score, x, sigmas, 4, delta, noise)
    if close(got, want, rtol=1e-6, atol=1e-9):
        return True, ("levels from sigma_L down to sigma_1 with eta_l = delta sigma_l^2 / sigma_1^2: large moves "
                      "while the noise is large, delta itself at the finest level.")
    hint = ""
    if close(got, _annealed(_noised_score, x, sigmas, 4, delta, noise, norm="largest"), rtol=1e-6, atol=1e-9):
        hint = (" This is still the buggy line: it divides by sigmas[-1]^2, the LARGEST level in the book's order "
                "(sigma_1 < ... < sigma_L). The NCSN paper numbers its levels the other way, so its sigma_L is the "
                "smallest; here that is sigmas[0].")
    elif close(got, _annealed(_noised_score, x, sigmas, 4, delta, noise, order="up"), rtol=1e-6, atol=1e-9):
        hint = " The levels run the wrong way: start at the LARGEST sigma (sigmas[-1]) and end at sigmas[0]."
    elif close(got, _annealed(_noised_score, x, sigmas, 4, delta, noise, two=False), rtol=1e-6, atol=1e-9):
        hint = " The noise of each Langevin step is sqrt(2 eta) z, not sqrt(eta) z."
    elif close(got, _annealed(_noised_score, x, sigmas, 4, delta, noise, scale=False), rtol=1e-6, atol=1e-9):
        hint = (" Every level uses the same step delta: the step must grow with the noise, eta_l = delta "
                "sigma_l^2 / sigma_1^2, or the chains hardly move while the noise is large.")
    elif as_array(got).shape != (5, 2):
        hint = f" Return the final points, shape (5, 2), not {as_array(got).shape}."
    return False, f"for a 3-level ladder your end points are {fmt(got)} but should be {fmt(want)}.{hint}"


def _sm_constant(cov: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.linalg.inv(cov).trace()


_REFERENCES = {"score_from_energy": _score_from_energy, "langevin_step": _langevin_step,
               "tweedie_denoiser": _tweedie, "annealed_langevin": _annealed, "ula_variance": _ula_variance,
               "sm_constant": _sm_constant}


use = make_use(_REFERENCES)   # use(name, answer): the learner's function, or the package's while a stub
