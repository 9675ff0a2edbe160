"""Chapter 03 (EBMs to NCSN): the checks of §3.1-3.4 and the package's versions that later cells fall back on.

Kinds: implement-and-reuse (score_from_energy, langevin_step, tweedie_denoiser, ncsn_loss, annealed_langevin:
later cells call the learner's function through `use`), derivations checked numerically (ula_variance,
sm_constant, tweedie_denoiser with the book's general scale alpha, langevin_step as the Euler-Maruyama step of
the Langevin SDE), a prediction (mode_weight_prediction) and a find-the-bug (annealed_langevin: the step size
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
           "check_sm_constant", "check_mode_weight_prediction", "check_annealed_langevin", "check_ncsn_loss", "use"]


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
    """fn(energy, x (B, D)) -> (B, D) the score of p = exp(-E)/Z at x."""
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
        return True, ("x + eta s(x) + sqrt(2 eta) z: over a time eta the drift moves x by eta s(x), and sqrt(2) times "
                      "a Brownian increment has variance 2 eta.")
    hint = ""
    again = call(fn, _gauss_score, x, eta, z)
    if as_array(got).shape == as_array(want).shape and not close(got, again):
        hint = (" Two calls with the same x and z gave different points: use the draw z you are given, not a fresh "
                "torch.randn (the check, and the later cells, pass the noise in so that runs can be compared).")
    elif close(got, x + 0.5 * eta * _gauss_score(x) + math.sqrt(eta) * z):
        hint = (" That is the NCSN paper's convention (drift eta/2, noise sqrt(eta)): the same chain with the step "
                "halved. Here eta is the time step of dx = s dt + sqrt(2) dw, the book's convention.")
    elif close(got, x + eta * _gauss_score(x) + math.sqrt(eta) * z):
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


# -- 4. Tweedie's denoiser, the book's general scale alpha (derivation, implement-and-reuse) -----------------------
def _tweedie(score_fn: Callable, x_t: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """E[x | x_t] for x_t = alpha x + sigma eps: (x_t + sigma^2 grad log p_t(x_t)) / alpha (§3.3.4)."""
    return (x_t + sigma ** 2 * score_fn(x_t)) / alpha


@checker("tweedie_denoiser", "03")
def check_tweedie_denoiser(fn: Any) -> tuple[bool, str]:
    """fn(score_fn, x_t (B, D), alpha, sigma) -> E[x | x_t] for x_t = alpha x + sigma eps, from the score of x_t's
    density (Tweedie's formula with the book's general scale alpha, §3.3.4)."""
    x = randn((6, 2), generator=_gen(2), dtype=torch.float64)
    for alpha, sigma in ((1.0, 0.6), (0.8, 0.6), (0.5, 0.3)):
        got = call(fn, _gauss_score, x, alpha, sigma)
        want = _tweedie(_gauss_score, x, alpha, sigma)
        if close(got, want):
            continue
        s = _gauss_score(x)
        hint = ""
        if as_array(got).shape != (6, 2):
            hint = f" Return one point per row, shape (6, 2), not {as_array(got).shape}."
        elif close(got, x + sigma ** 2 * s):
            hint = (" That is the alpha = 1 formula. With a scale, x_t / alpha = x + (sigma / alpha) eps is the alpha = 1 "
                    "problem in a new variable: redo it there, and mind how a score changes when the variable is rescaled.")
        elif close(got, (x + sigma * s) / alpha) or close(got, x + sigma * s):
            hint = " The step is sigma^2 (the noise VARIANCE), not sigma."
        elif close(got, (x - sigma ** 2 * s) / alpha) or close(got, x - sigma ** 2 * s):
            hint = " Sign: denoising moves towards higher density, along +s."
        elif close(got, x / alpha + sigma ** 2 * s) or close(got, (x + sigma ** 2 * s) / alpha ** 2) or \
                close(got, x / alpha + sigma ** 2 * s / alpha ** 2):
            hint = (" The scale alpha enters once, on the whole answer: in the rescaled variable y = x_t / alpha the "
                    "noise std is sigma / alpha and grad_y log p_Y(y) = alpha grad log p_t(x_t); put both into the "
                    "alpha = 1 formula and simplify.")
        elif close(got, sigma ** 2 * s / alpha) or close(got, sigma ** 2 * s):
            hint = " You returned the correction only; the noisy point x_t belongs in the answer too."
        return False, (f"at alpha = {alpha}, sigma = {sigma} your denoiser gives {fmt(got)} but should give "
                       f"{fmt(want)}.{hint}")
    return True, ("E[x | x_t] = (x_t + sigma^2 s(x_t)) / alpha: one step of size sigma^2 up the score lands on "
                  "alpha E[x | x_t], and dividing by alpha undoes the signal's scale.")


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
    if abs(p - 0.5) <= 0.05:
        return True, f"recorded {p:g}: right, one half to within the chains' sampling error (run the next cell). " + _WHY_MODES
    if 0.5 < p < 0.75:
        return False, (f"recorded {p:g}: between one half and the target. The weights do not tilt the outcome even "
                       "partly: far from both modes the two pulls are the same -(x - mu), and 2000 chains started "
                       "symmetrically split 0.5 +- 0.011. " + _WHY_MODES)
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
    elif close(got, _annealed(_noised_score, x, sigmas, 4, delta / 2, noise), rtol=1e-6, atol=1e-9):
        hint = (" That is the NCSN paper's own step convention (drift alpha_i / 2, noise sqrt(alpha_i)), the same "
                "chain with the step halved; keep the book's step x + eta s + sqrt(2 eta) z of your langevin_step.")
    elif close(got, _annealed(_noised_score, x, sigmas, 4, delta, noise, two=False), rtol=1e-6, atol=1e-9):
        hint = " The noise of each Langevin step is sqrt(2 eta) z, not sqrt(eta) z."
    elif close(got, _annealed(_noised_score, x, sigmas, 4, delta, noise, scale=False), rtol=1e-6, atol=1e-9):
        hint = (" Every level uses the same step delta: the step must grow with the noise, eta_l = delta "
                "sigma_l^2 / sigma_1^2, or the chains hardly move while the noise is large.")
    elif as_array(got).shape != (5, 2):
        hint = f" Return the final points, shape (5, 2), not {as_array(got).shape}."
    return False, f"for a 3-level ladder your end points are {fmt(got)} but should be {fmt(want)}.{hint}"


# -- 8. the NCSN loss: DSM at per-example noise levels, weighted by lambda(sigma) = sigma^2 (implement-and-reuse) ---
def _ncsn_loss(score_fn: Callable, x0: torch.Tensor, sigma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """lambda(sigma) 1/2 ||s(x0 + sigma eps, sigma) + eps / sigma||^2 per example, lambda = sigma^2 (§3.4.2)."""
    sig = sigma.reshape(-1, *([1] * (x0.dim() - 1)))
    return 0.5 * sigma ** 2 * ((score_fn(x0 + sig * eps, sigma) + eps / sig) ** 2).flatten(1).sum(1)


def _noised_score_b(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """_noised_score with one sigma per example (a (B,) tensor)."""
    return -(x - 1.0) / (0.5 + sigma[:, None] ** 2)


@checker("ncsn_loss", "03")
def check_ncsn_loss(fn: Any) -> tuple[bool, str]:
    """fn(score_fn, x0 (B, D), sigma (B,), eps (B, D)) -> (B,): each example's denoising score-matching loss at its
    own noise level, weighted by NCSN's lambda(sigma) = sigma^2; score_fn(x, sigma) with sigma a (B,) tensor."""
    g = _gen(4)
    x0, eps = randn((5, 3), generator=g, dtype=torch.float64), randn((5, 3), generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.05, 0.2, 0.7, 2.0, 6.0], dtype=torch.float64)
    got = call(fn, _noised_score_b, x0, sigma, eps)
    want = _ncsn_loss(_noised_score_b, x0, sigma, eps)
    if close(got, want):
        return True, ("sigma^2 / 2 ||s(x0 + sigma eps, sigma) + eps / sigma||^2 = 1/2 ||sigma s + eps||^2: with "
                      "lambda = sigma^2 each level's term is a noise-prediction error, bounded whatever sigma is.")
    g_arr = as_array(got)
    s_noisy = _noised_score_b(x0 + sigma[:, None] * eps, sigma)
    sq = lambda v: (v ** 2).sum(1)                                         # noqa: E731
    hint = ""
    if g_arr.shape != (5,):
        hint = f" Return one number per example, shape (5,), not {g_arr.shape}: sum over the D = 3 coordinates only."
    elif close(got, 0.5 * sq(s_noisy + eps / sigma[:, None])):
        hint = (" The weight lambda(sigma) = sigma^2 is missing: unweighted, the levels with sigma = 0.05 dominate "
                "(their term grows like 1 / sigma^2).")
    elif close(got, 0.5 * sigma * sq(s_noisy + eps / sigma[:, None])):
        hint = " The weight is lambda(sigma) = sigma^2, the square."
    elif close(got, 0.5 * sigma ** 2 * sq(s_noisy - eps / sigma[:, None])):
        hint = (" Sign: the noise pushed x~ away from x0 by sigma eps, so the conditional score at x~ points back, "
                "the opposite way from eps.")
    elif close(got, 0.5 * sigma ** 2 * sq(s_noisy + eps * sigma[:, None])):
        hint = " The conditional score of N(x0, sigma^2 I) at x0 + sigma eps divides by sigma, it does not multiply."
    elif close(got, 0.5 * sigma ** 2 * sq(_noised_score_b(x0, sigma) + eps / sigma[:, None])):
        hint = " Evaluate the score at the NOISY point x0 + sigma eps, not at the clean x0."
    elif close(got, 0.5 * sigma ** 2 * sq(s_noisy + eps / sigma[:, None]) / 3):
        hint = " You averaged over the coordinates: the squared norm SUMS over them."
    return False, f"for 5 examples in D = 3 at sigma = 0.05 .. 6 your losses are {fmt(got)} but should be {fmt(want)}.{hint}"


def _sm_constant(cov: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.linalg.inv(cov).trace()


_REFERENCES = {"score_from_energy": _score_from_energy, "langevin_step": _langevin_step,
               "tweedie_denoiser": _tweedie, "annealed_langevin": _annealed, "ula_variance": _ula_variance,
               "sm_constant": _sm_constant, "ncsn_loss": _ncsn_loss}


use = make_use(_REFERENCES)   # use(name, answer): the learner's function, or the package's while a stub
