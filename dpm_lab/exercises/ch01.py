"""Chapter 01 (generative modeling): the Gaussian NLL, moment matching, a prediction about a reverse-KL
fit, the f-divergence template, the optimal GAN discriminator, the score of an energy (a sign-convention
bug) and the Fisher divergence; also the older grid checks (KL, JS, TV) and the Gaussian score."""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..datasets import eight_gaussians_mixture
from ._base import CPU, NotAttempted, WrongAnswer, as_array, as_scalar, call, checker, close, fmt, yours_or

__all__ = ["check_gaussian_nll", "check_forward_kl_fit", "check_reverse_kl_prediction", "check_f_divergence",
           "check_kl_grid", "check_js_grid", "check_tv_grid", "check_optimal_discriminator", "check_energy_score",
           "check_fisher_divergence", "check_gaussian_score", "check_reverse_kl_generator", "check_gaussian_fisher",
           "reverse_kl_fit", "buggy_energy_score",
           "REFERENCES", "reuse", "PREDICTIONS"]


_TORCH = ("build the answer from torch operations on the tensors you are given (torch.log, **, .sum(), .mean()), "
          "not math or NumPy functions, which cannot follow tensors that require grad.")
_NUMPY = "check each operation on the arrays you are given (their shapes match; divide elementwise)."


def _attempt(fn: Any, args: tuple, inputs: str, advice: str = _TORCH) -> Any:
    """call(fn, *args), with an exception raised inside the learner's code reported as such (what it was
    called with and what it raised, then `advice`), never as a fault of the value it returns."""
    try:
        with warnings.catch_warnings():          # torch's "tensor to a scalar" warning: the hint explains it
            warnings.simplefilter("ignore", UserWarning)
            return call(fn, *args)
    except (NotAttempted, WrongAnswer):
        raise
    except Exception as exc:  # noqa: BLE001 - the learner's error becomes advice
        raise WrongAnswer(f"your function raised {type(exc).__name__} ({exc}) when called with {inputs}. "
                          f"The error happens inside your code, before anything is returned: {advice}") from None


# -- 1. the Gaussian negative log-likelihood (implement, then the MLE fit reuses it) ----------------------
def _nll(x: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return (0.5 * ((x - mu) / sigma) ** 2 + torch.log(sigma) + 0.5 * math.log(2 * math.pi)).mean()


def _nll_data() -> list[tuple[torch.Tensor, float, float]]:
    g = torch.Generator(device=CPU).manual_seed(11)
    x5 = torch.tensor([-1.0, 0.3, 0.8, 2.0, 2.5], dtype=torch.float64, device=CPU)
    x8 = 1.5 * torch.randn(8, generator=g, dtype=torch.float64, device=CPU) + 0.5
    return [(x5, 0.0, 1.0), (x8, 1.0, 0.5), (x8, -0.5, 2.0)]


@checker("gaussian_nll", "01")
def check_gaussian_nll(fn: Any) -> tuple[bool, str]:
    """fn(x (N,), mu, sigma) -> the mean over the data of -log N(x_i; mu, sigma^2), differentiable in mu, sigma.

    mu and sigma arrive as 0-d float64 tensors that require grad, as in the fit that reuses the answer.
    """
    c = 0.5 * math.log(2 * math.pi)
    for x, m, s in _nll_data():
        mu = torch.tensor(m, dtype=torch.float64, requires_grad=True)
        sigma = torch.tensor(s, dtype=torch.float64, requires_grad=True)
        inputs = (f"x a float64 tensor of shape {tuple(x.shape)}, mu = tensor({m}) and sigma = tensor({s}) "
                  "(0-d tensors that require grad, as the fit below passes them)")
        out = _attempt(fn, (x, mu, sigma), inputs)
        got = as_scalar(out, "one number, the mean over the data")
        want = float(_nll(x, mu.detach(), sigma.detach()))
        where = f"for x of {len(x)} points, mu={m}, sigma={s}"
        if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            d2 = ((x - m) ** 2).mean().item()
            hint = ""
            if math.isclose(got - want, -c, abs_tol=1e-6):
                hint = " You are missing the constant log(2 pi) / 2."
            elif math.isclose(got, -want, rel_tol=1e-6):
                hint = " Sign: the NEGATIVE log-likelihood is the loss we minimise (it is mostly positive)."
            elif math.isclose(got, want * len(x), rel_tol=1e-6):
                hint = " Take the mean over the data, not the sum: the loss should not grow with N."
            elif math.isclose(got - want, -math.log(s), abs_tol=1e-6):
                hint = " You are missing the log sigma term (the normaliser 1/(sigma sqrt(2 pi)) depends on sigma)."
            elif math.isclose(got - want, math.log(s), abs_tol=1e-6):
                hint = (" The normaliser contributes log sigma, not log sigma^2 (or you counted it twice): "
                        "N(x; mu, sigma^2) has 1/(sigma sqrt(2 pi)) in front.")
            elif math.isclose(got, 0.5 * d2 / s + math.log(s) + c, rel_tol=1e-6):
                hint = " Divide the squared distance by the variance sigma^2, not by sigma."
            elif math.isclose(got, d2 / s ** 2 + math.log(s) + c, rel_tol=1e-6):
                hint = " The quadratic term carries a factor 1/2: (x - mu)^2 / (2 sigma^2)."
            return False, f"{where} your NLL is {got:.6g} but should be {want:.6g}.{hint}"
    # the fit below differentiates the answer in mu and sigma: autograd must see every term
    x, m, s = _nll_data()[1]
    mu = torch.tensor(m, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    out = _attempt(fn, (x, mu, sigma), f"x of shape {tuple(x.shape)}, mu = tensor({m}), sigma = tensor({s})")
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        return False, ("your values are right, but autograd cannot follow them back to mu and sigma (you return a "
                       "plain number or used .item() / float()): the fit below needs the gradient, so keep the "
                       "computation in torch.")
    g_mu, g_s = torch.autograd.grad(out, (mu, sigma), allow_unused=True)
    want_mu = float(-(x - m).mean() / s ** 2)
    want_s = float(1 / s - ((x - m) ** 2).mean() / s ** 3)
    got_mu = 0.0 if g_mu is None else float(g_mu)
    got_s = 0.0 if g_s is None else float(g_s)
    if not (math.isclose(got_mu, want_mu, rel_tol=1e-6, abs_tol=1e-9)
            and math.isclose(got_s, want_s, rel_tol=1e-6, abs_tol=1e-9)):
        if math.isclose(got_s, want_s - 1 / s, rel_tol=1e-6, abs_tol=1e-9):
            return False, ("your values are right, but d NLL / d sigma misses the 1/sigma of the log sigma term: "
                           "math.log(sigma) turns the tensor into a plain number, so autograd treats that term as "
                           "a constant. Use torch.log(sigma): the fit below would otherwise find a wrong sigma.")
        return False, (f"your values are right but the gradient is not: d/dmu = {got_mu:.4g} (should be "
                       f"{want_mu:.4g}), d/dsigma = {got_s:.4g} (should be {want_s:.4g}). Keep every term in torch.")
    return True, "the mean Gaussian NLL and its gradient are right: minimising it is MLE, i.e. forward KL."


# -- 2. moment matching (a derivation entered as a function) ------------------------------------------------
def _moments(w: Any, m: Any, s: Any) -> tuple[float, float]:
    w, m, s = (np.asarray(v, dtype=float) for v in (w, m, s))
    mean = float((w * m).sum())
    return mean, math.sqrt(float((w * (s ** 2 + m ** 2)).sum()) - mean ** 2)


@checker("forward_kl_fit", "01")
def check_forward_kl_fit(answer: Any, weights=(0.5, 0.5), means=(-2.0, 2.0), stds=(0.5, 0.5)) -> tuple[bool, str]:
    """answer(weights, means, stds) -> (mean, std) of the Gaussian minimising KL(p || q) for a 1D mixture p.

    The forward-KL (MLE) fit of a Gaussian matches the first two moments of p.
    """
    cases = [(weights, means, stds), ((0.3, 0.7), (-1.0, 3.0), (1.0, 0.5)),
             ((0.2, 0.5, 0.3), (-3.0, 0.0, 4.0), (0.5, 1.0, 0.25))]
    for w, m, s in cases:
        got = as_array(_attempt(answer, (w, m, s), f"weights={w}, means={m}, stds={s} (tuples of floats)",
                               "turn the sequences into arrays (np.asarray) before doing arithmetic with them.")).ravel()
        if got.shape != (2,):
            return False, f"return a pair (mean, std); you returned {got.size} numbers"
        mean, std = _moments(w, m, s)
        want = np.array([mean, std])
        if not np.allclose(got, want, rtol=1e-4, atol=1e-6):
            w_, m_, s_ = (np.asarray(v, dtype=float) for v in (w, m, s))
            hint = ""
            if math.isclose(got[0], float(m_.mean()), rel_tol=1e-4, abs_tol=1e-9) and not math.isclose(
                    float(m_.mean()), mean, rel_tol=1e-4, abs_tol=1e-9):
                hint = " The mean is the WEIGHTED average of the component means: weight each by its w_k."
            elif math.isclose(got[1], std ** 2, rel_tol=1e-4):
                hint = " You returned the variance: take its square root."
            elif any(np.allclose(got, (mk, sk), rtol=1e-4) for mk, sk in zip(m_, s_)):
                hint = (" That is one component: the forward-KL (MLE) fit must cover every mode, so match the "
                        "mixture's mean and variance.")
            elif math.isclose(got[1] ** 2, float((w_ * s_ ** 2).sum()), rel_tol=1e-3):
                hint = " The spread of the means counts too: Var = E[Var | k] + Var(E[x | k])."
            elif math.isclose(got[1] ** 2, float((w_ * (m_ - mean) ** 2).sum()), rel_tol=1e-3):
                hint = " The width of each component counts too: Var = E[Var | k] + Var(E[x | k])."
            return False, f"for weights={w}, means={m}, stds={s} you gave {fmt(got)} but should give {fmt(want)}.{hint}"
    return True, "moment matching: the forward-KL fit covers every mode (three mixtures checked)."


# -- 3. predict, then run: where does the reverse-KL fit from mu = 0.1 end? ----------------------------------
_X = np.linspace(-16.0, 16.0, 1601)
_DX = float(_X[1] - _X[0])
_LOG_2PI = math.log(2 * math.pi)


def _log_bimodal(d: float, w: float = 0.5, s: float = 0.5) -> np.ndarray:
    a = math.log(w) - 0.5 * ((_X + d) / s) ** 2
    b = math.log(1 - w) - 0.5 * ((_X - d) / s) ** 2
    return np.logaddexp(a, b) - math.log(s) - 0.5 * _LOG_2PI


def reverse_kl_fit(d: float = 2.0, mu0: float = 0.1, sigma0: float = 0.5, optimizer: str = "adam",
                   steps: int = 800, lr: float | None = None) -> np.ndarray:
    """The path (steps + 1, 2) of (mu, log sigma) minimising KL(N(mu, sigma^2) || p) on a grid, p the mixture
    (N(-d, 0.25) + N(d, 0.25)) / 2; the gradient is exact for the grid sum, optimizer 'adam' (lr 0.05) or
    'gd' (plain gradient descent, lr 0.1). The chapter's notebook writes the same fit inline."""
    lr = (0.05 if optimizer == "adam" else 0.1) if lr is None else lr
    log_p = _log_bimodal(d)
    theta = np.array([mu0, math.log(sigma0)], dtype=float)
    m, v = np.zeros(2), np.zeros(2)
    path = [theta.copy()]
    for k in range(1, steps + 1):
        sigma = math.exp(theta[1])
        z = (_X - theta[0]) / sigma
        log_q = -0.5 * z * z - theta[1] - 0.5 * _LOG_2PI
        w = np.exp(log_q) * (log_q + 1.0 - log_p) * _DX
        g = np.array([np.sum(w * z) / sigma, np.sum(w * (z * z - 1.0))])
        if optimizer == "adam":
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            theta = theta - lr * (m / (1 - 0.9 ** k)) / (np.sqrt(v / (1 - 0.999 ** k)) + 1e-8)
        else:
            theta = theta - lr * g
        path.append(theta.copy())
    return np.array(path)


PREDICTIONS: dict[str, Any] = {}   # what a learner predicted, recorded by the prediction checks


@checker("reverse_kl_prediction", "01")
def check_reverse_kl_prediction(answer: Any) -> tuple[bool, str]:
    """answer: a number, your prediction of the mu where the reverse-KL fit (Adam, d = 2, start mu = 0.1,
    sigma = 0.5) ends."""
    raw = call(answer)
    try:
        guess = float(raw)
    except (TypeError, ValueError):
        raise WrongAnswer(f"enter a number, the mu where you think the fit ends (such as -2, 0 or 2); "
                          f"you gave {raw!r}") from None
    if not math.isfinite(guess):
        raise WrongAnswer(f"enter a finite number; you gave {raw!r}")
    PREDICTIONS["reverse_kl_from_0.1"] = guess
    end = reverse_kl_fit(2.0, 0.1, 0.5)[-1]
    said = f"Recorded: you predicted mu = {guess:+.2f}. The fit ends at mu = {end[0]:+.2f}, sigma = {math.exp(end[1]):.2f}. "
    if abs(guess - end[0]) <= 0.3:
        return True, said + ("Right: at the starting width 0.5 the line mu = 0 is a ridge of KL(q || p) (a narrow q in "
                             "the gap between the modes sits where p is small), so the push of 0.1 grows and the "
                             "fit rolls into the nearer mode. The cells below measure the ridge.")
    if abs(guess) < 0.3:
        hint = ("mu = 0 is where the gradient in mu vanishes (by symmetry), but it is not where a start at 0.1 "
                "returns: at sigma = 0.5 the curvature of KL(q || p) along mu at 0 is negative (a ridge), so a "
                "small offset grows instead of shrinking.")
    elif abs(guess + end[0]) <= 0.3:
        hint = ("Right distance, wrong side: the start 0.1 lies on the positive side of the ridge at 0, and "
                "gradient descent rolls down the side it starts on.")
    elif 0.3 < abs(guess) < abs(end[0]) - 0.3:
        hint = ("It does not stop halfway: in between, q puts its mass where p is small. The only resting places "
                "are local minima, the two modes and one wide symmetric Gaussian at mu = 0.")
    else:
        hint = ("It does not overshoot: beyond the mode at 2, q would put its mass where p is tiny, which reverse "
                "KL punishes hardest. The fit stops on the mode.")
    return False, said + hint + " Run the cells below to see the path."


# -- 4. the f-divergence template (implement, then KL, JS, TV and the figures reuse it) ------------------------
_F_KL = ("u log u (KL)", lambda u: u * np.log(u))
_F_REV = ("-log u (reverse KL)", lambda u: -np.log(u))
_F_TV = ("|u - 1| / 2 (TV)", lambda u: 0.5 * np.abs(u - 1))
_F_CHI2 = ("(u - 1)^2 (chi-squared)", lambda u: (u - 1) ** 2)


def _f_div(f: Callable, p: np.ndarray, q: np.ndarray, dx: float) -> float:
    return float(np.sum(q * f(p / q)) * dx)


def _f_grids() -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Two grids with different spacing and extent, each with a bimodal p and a broad q (normalised)."""
    out = []
    for lo, hi, n, shift in ((-6.0, 6.0, 601, 0.3), (-5.0, 7.0, 401, 1.0)):
        x = np.linspace(lo, hi, n)
        dx = float(x[1] - x[0])
        p = 0.5 * np.exp(-0.5 * (x + 1.5) ** 2 / 0.25) + 0.5 * np.exp(-0.5 * (x - 1.5) ** 2 / 0.25)
        q = np.exp(-0.5 * (x - shift) ** 2 / 2.0)
        out.append((p / (p.sum() * dx), q / (q.sum() * dx), dx))
    return out


@checker("f_divergence", "01")
def check_f_divergence(fn: Any) -> tuple[bool, str]:
    """fn(f, p, q, dx) -> D_f(p || q) = integral of q f(p / q) for densities p, q on a uniform grid (NumPy arrays)."""
    for p, q, dx in _f_grids():
        for label, f in (_F_KL, _F_REV, _F_TV, _F_CHI2):
            for pair, a, b in (("p, q", p, q), ("q, p", q, p)):
                inputs = f"f(u) = {label}, NumPy arrays p, q of shape {a.shape} and dx = {dx:.3g}"
                got = as_scalar(_attempt(fn, (f, a, b, dx), inputs, _NUMPY), "one number, the integral over the grid")
                want = _f_div(f, a, b, dx)
                if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
                    continue
                where = f"for f(u) = {label} on ({pair}) with {a.size} grid points, dx = {dx:.3g},"
                near = lambda v, got=got: math.isclose(got, v, rel_tol=1e-6, abs_tol=1e-9)  # noqa: E731
                hint = ""
                if near(_f_div(f, b, a, dx)):
                    hint = (" That is D_f(q || p): the arguments are swapped. The template weights by the SECOND "
                            "density and evaluates f at first / second.")
                elif near(float(np.sum(b * f(a / b)))):
                    hint = " Multiply the sum by dx to turn it into an integral."
                elif near(float(np.mean(b * f(a / b)))):
                    hint = (f" A mean over grid points is not an integral: it divides by the {a.size} points instead "
                            "of multiplying by dx. Use the sum times dx.")
                elif near(float(np.sum(a * f(a / b)) * dx)):
                    hint = " Weight by q, the second density, not by p."
                elif near(float(np.sum(f(a / b)) * dx)):
                    hint = " Weight f(p / q) by q before integrating."
                elif near(float(np.sum(b * f(b / a)) * dx)):
                    hint = " The ratio is upside down: f is evaluated at p / q (first over second)."
                return False, f"{where} your value is {got:.6g} but should be {want:.6g}.{hint}"
    return True, ("the f-divergence template is right (four generators f, both orders, two grids). "
                  "One function, every f-divergence.")


def _grid_pair() -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """A bimodal p and a broad q on a grid of 601 points over [-6, 6], both normalised."""
    x = np.linspace(-6, 6, 601)
    dx = x[1] - x[0]
    p = 0.5 * np.exp(-0.5 * (x + 1.5) ** 2 / 0.25) + 0.5 * np.exp(-0.5 * (x - 1.5) ** 2 / 0.25)
    q = np.exp(-0.5 * (x - 0.3) ** 2 / 1.5)
    p, q = p / (p.sum() * dx), q / (q.sum() * dx)
    return x, dx, p, q


def _kl(p: np.ndarray, q: np.ndarray, dx: float) -> float:
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q[m])) * dx)


def _js(p: np.ndarray, q: np.ndarray, dx: float) -> float:
    m = 0.5 * (p + q)
    return 0.5 * _kl(p, m, dx) + 0.5 * _kl(q, m, dx)


def _tv(p: np.ndarray, q: np.ndarray, dx: float) -> float:
    return float(0.5 * np.abs(p - q).sum() * dx)


def _grid_check(fn: Any, ref: Callable, hints: Callable) -> tuple[bool, str | None]:
    """Compare fn(a, b, dx) with ref on (p, q), (q, p) and (p, p); hints(got, want, a, b, dx) explains."""
    x, dx, p, q = _grid_pair()
    for label, a, b in (("p, q", p, q), ("q, p", q, p), ("p, p", p, p)):
        got = as_scalar(_attempt(fn, (a, b, dx), f"NumPy arrays of shape {a.shape} and dx = {dx:.3g}", _NUMPY),
                        "one number, the integral over the grid")
        want = ref(a, b, dx)
        if not math.isclose(got, want, rel_tol=1e-3, abs_tol=1e-6):
            return False, f"on ({label}) your value is {got:.4g} but should be {want:.4g}.{hints(got, want, a, b, dx)}"
    return True, None


@checker("kl_grid", "01")
def check_kl_grid(fn: Any) -> tuple[bool, str]:
    """fn(p, q, dx) -> KL(p || q) = sum p log(p / q) dx for densities on a grid."""
    def hints(got, want, a, b, dx):
        if math.isclose(got, _kl(b, a, dx), rel_tol=1e-3):
            return " That is KL(q || p): the first argument is the one you average over."
        if math.isclose(got, want / dx, rel_tol=1e-3):
            return " Multiply the sum by dx to turn it into an integral."
        if math.isclose(got, -want, rel_tol=1e-3):
            return " KL is never negative: average log(p / q), with p on top, over p."
        return ""
    ok, msg = _grid_check(fn, _kl, hints)
    return ok, msg or "KL is right, and KL(p||p) = 0. Note KL(p||q) != KL(q||p)."


@checker("js_grid", "01")
def check_js_grid(fn: Any) -> tuple[bool, str]:
    """fn(p, q, dx) -> Jensen-Shannon divergence (1/2) KL(p||m) + (1/2) KL(q||m), m = (p + q)/2."""
    def hints(got, want, a, b, dx):
        if math.isclose(got, 2 * want, rel_tol=1e-3):
            return " You are missing the factor 1/2 in front of each KL."
        if math.isclose(got, want / math.log(2), rel_tol=1e-3):
            return " That is JS in bits (log base 2); use the natural log, as everywhere in the course."
        if math.isclose(got, math.sqrt(want), rel_tol=1e-3):
            return (" That is the square root of JS, the Jensen-Shannon DISTANCE (what "
                    "scipy.spatial.distance.jensenshannon returns): square it.")
        if got > math.log(2) + 1e-9:
            return " JS can never exceed log 2: compare each density with the average m, not with the other."
        return ""
    ok, msg = _grid_check(fn, _js, hints)
    return ok, msg or "JS is right, symmetric and below log 2 = 0.693."


@checker("tv_grid", "01")
def check_tv_grid(fn: Any) -> tuple[bool, str]:
    """fn(p, q, dx) -> total variation distance (1/2) int |p - q| dx."""
    def hints(got, want, a, b, dx):
        if math.isclose(got, 2 * want, rel_tol=1e-3):
            return " You are missing the factor 1/2 (TV lies in [0, 1])."
        if abs(got) < 1e-6 < want:
            return " Take the absolute value |p - q|: p - q alone integrates to 0."
        if math.isclose(got, want / dx, rel_tol=1e-3):
            return " Multiply the sum by dx to turn it into an integral."
        return ""
    ok, msg = _grid_check(fn, _tv, hints)
    return ok, msg or "TV is right: symmetric and in [0, 1]."


# -- 5. the optimal discriminator (a derivation entered as a function; the GAN value reuses it) --------------
def _disc_inputs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    x = np.linspace(-4, 4, 81)
    p = 0.5 * np.exp(-0.5 * (x + 1.5) ** 2 / 0.25) + 0.5 * np.exp(-0.5 * (x - 1.5) ** 2 / 0.25)
    q = np.exp(-0.5 * x ** 2 / 2.0)
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0.05, 2.0, size=(3, 4)), rng.uniform(0.05, 2.0, size=(3, 4))
    return [("two densities on a grid of 81 points", p / p.sum(), q / q.sum()),
            ("two positive arrays of shape (3, 4)", a, b)]


@checker("optimal_discriminator", "01")
def check_optimal_discriminator(fn: Any) -> tuple[bool, str]:
    """fn(p, q) -> D*(x) at every point: the discriminator maximising E_p log D + E_q log(1 - D) for data
    density p and generator density q (NumPy arrays of density values, same shape)."""
    for label, p, q in _disc_inputs():
        got = as_array(_attempt(fn, (p, q), f"{label} (NumPy arrays)", _NUMPY))
        want = p / (p + q)
        if close(got, want, rtol=1e-6, atol=1e-9):
            continue
        where = f"for {label}"
        if got.shape != want.shape:
            return False, (f"{where} you returned shape {got.shape}; return D* at every point, an array shaped like p "
                           f"{want.shape} (one probability per x, not a summary of the whole array).")
        hint = ""
        if close(got, q / (p + q)):
            hint = (" That is the probability that x was GENERATED; D(x) is the probability that x came from the "
                    "data p, so p goes on top.")
        elif close(got, p / q):
            hint = (" p / q is a density ratio, not a probability (it exceeds 1 where p > q). Maximise "
                    "p log D + q log(1 - D) pointwise over D in (0, 1).")
        elif close(got, np.log(want)):
            hint = " Return D* itself, not its logarithm."
        elif close(got, np.full_like(want, 0.5)):
            hint = " 1/2 is the answer only where p = q (the equilibrium); elsewhere D* depends on p and q."
        k = int(np.argmax(np.abs(got - want)))
        at = (f"where p = {p.flat[k]:.3g} and q = {q.flat[k]:.3g} you gave {got.flat[k]:.4g} but D* is "
              f"{want.flat[k]:.4g}")
        return False, f"{where}, {at}.{hint}"
    return True, "D* = p / (p + q), pointwise: it is 1/2 exactly where the generator matches the data."


# -- 6. find the bug: the score of an energy with Ch. 1's sign (p proportional to exp(+E)) ---------------------
def buggy_energy_score(energy: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The buggy version shown in the chapter: meant to return grad_x log p for p(x) proportional to
    exp(+energy(x)) (Ch. 1's convention) at each row of x (B, D)."""
    x = x.detach().requires_grad_(True)
    return -torch.autograd.grad(energy(x).mean(), x)[0]


def _energy_score(energy: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(energy(x).sum(), x)[0]


def _energies() -> list[tuple[str, Callable, torch.Tensor, torch.Tensor]]:
    """(label, energy, x, exact score) for three energies and batch sizes 5, 7 and 1."""
    g = torch.Generator(device=CPU).manual_seed(7)
    gmm = eight_gaussians_mixture()
    m = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    x1 = 1.5 * torch.randn(5, 2, generator=g, dtype=torch.float64)
    x2 = torch.randn(7, 3, generator=g, dtype=torch.float64)
    x3 = torch.randn(1, 2, generator=g, dtype=torch.float64)
    return [("E(x) = log p(x) + 7 of the eight-Gaussian mixture, x of shape (5, 2)",
             lambda x: gmm.log_prob(x) + 7.0, x1, gmm.data_score(x1)),
            ("E(x) = -|x - m|^2 / 2 (a Gaussian), x of shape (7, 3)",
             lambda x: -0.5 * ((x - m) ** 2).sum(-1), x2, -(x2 - m)),
            ("E(x) = sum(x^2) - sum(x^4) / 4 (a double well), x of shape (1, 2)",
             lambda x: (x ** 2).sum(-1) - 0.25 * (x ** 4).sum(-1), x3, 2 * x3 - x3 ** 3)]


@checker("energy_score", "01")
def check_energy_score(fn: Any) -> tuple[bool, str]:
    """fn(energy, x (B, D)) -> grad_x log p(x) (B, D) for p(x) proportional to exp(+energy(x)), Ch. 1's sign;
    energy maps (B, D) to (B,)."""
    for label, energy, x, want in _energies():
        got = _attempt(fn, (energy, x.clone()), f"{label}",
                       "x arrives as a plain tensor (it does not require grad): autograd can only differentiate "
                       "with respect to a tensor that does, so make one from x before evaluating the energy.")
        g = as_array(got)
        if close(g, want.numpy(), rtol=1e-6, atol=1e-9):
            continue
        B = x.shape[0]
        where = f"for {label}"
        if g.shape != tuple(want.shape):
            return False, (f"{where} you returned shape {g.shape}; return the gradient at every point, shape "
                           f"{tuple(want.shape)} (the energy itself has shape ({B},)).")
        w = want.numpy()
        hint = ""
        if close(g, -w / B):
            hint = (f" Two slips: the sign (Ch. 1 writes p proportional to exp(+E), so the score is +grad E; the minus "
                    f"belongs to Ch. 3's exp(-E)) and the batch mean (it divides every gradient by B = {B}: "
                    "differentiate the sum, the points do not interact).")
        elif close(g, -w):
            hint = (" The sign: Ch. 1 writes p proportional to exp(+E), so the score is +grad E. The minus belongs to "
                    "Ch. 3's convention exp(-E).")
        elif close(g, w / B):
            hint = (f" You differentiated the batch MEAN, which divides every point's gradient by B = {B}. The points "
                    "do not interact, so differentiate the sum.")
        return False, f"{where} you gave {fmt(g)} but the score is {fmt(w)}.{hint}"
    return True, "score = +grad E under Ch. 1's exp(+E), one gradient per point. No normaliser anywhere."


# -- 7. the Fisher divergence (implement, then the score-matching fit reuses it) --------------------------------
def _fisher(score_p: torch.Tensor, score_q: torch.Tensor) -> torch.Tensor:
    return ((score_p - score_q) ** 2).sum(-1).mean()


@checker("fisher_divergence", "01")
def check_fisher_divergence(fn: Any) -> tuple[bool, str]:
    """fn(score_p (B, D), score_q (B, D)) -> the Monte Carlo Fisher divergence: the average over the B points of
    the squared Euclidean norm of score_p - score_q (a 0-d tensor, differentiable in score_q)."""
    g = torch.Generator(device=CPU).manual_seed(3)
    for shape in ((5, 3), (4, 1), (6, 2)):
        sp = torch.randn(shape, generator=g, dtype=torch.float64)
        sq = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(True)
        inputs = f"score_p, score_q float64 tensors of shape {shape} (score_q requires grad)"
        out = _attempt(fn, (sp, sq), inputs)
        got = as_scalar(out, "one number, the average over the points")
        want = float(_fisher(sp, sq.detach()))
        where = f"for scores of shape {shape} (B = {shape[0]} points in D = {shape[1]} dimensions)"
        if not math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            diff = sp - sq.detach()
            near = lambda v, got=got: math.isclose(got, float(v), rel_tol=1e-6, abs_tol=1e-9)  # noqa: E731
            hint = ""
            if near((diff ** 2).mean()):
                hint = (" You averaged over the D coordinates too: the squared norm SUMS over coordinates, then "
                        "average over the points.")
            elif near((diff ** 2).sum()):
                hint = " Average over the points instead of summing: the estimate should not grow with B."
            elif near(diff.norm(dim=-1).mean()):
                hint = " Square the norm: D_F averages ||s_p - s_q||^2, not ||s_p - s_q||."
            elif near(0.5 * want):
                hint = (" No 1/2: the Fisher divergence is E||s_p - s_q||^2 (score-matching losses often carry a 1/2; "
                        "here we compute the divergence itself).")
            return False, f"{where} your value is {got:.6g} but should be {want:.6g}.{hint}"
        if not (isinstance(out, torch.Tensor) and out.requires_grad):
            return False, (f"{where} your value is right, but autograd cannot follow it back to score_q (a NumPy or "
                           "Python number): the fit below minimises it by gradient descent, so keep it in torch.")
    return True, "the Fisher divergence is right: sum over coordinates, average over points, no normaliser needed."


# -- 4. the generator f of the reverse KL (derivation; the table of section 4 reuses it) -------------------------
def _f_reverse(u: np.ndarray) -> np.ndarray:
    return -np.log(u)


@checker("reverse_kl_generator", "01")
def check_reverse_kl_generator(fn: Any) -> tuple[bool, str]:
    """fn(u) -> f(u) elementwise, for a NumPy array u > 0 of density ratios p / q: the generator whose
    f-divergence, the integral of q f(p / q), is the reverse KL, KL(q || p).

    Any f(u) = -log u + c (u - 1) is right: the term c (u - 1) integrates to c (1 - 1) = 0 against q."""
    for p, q, dx in _f_grids():
        for pair, a, b in (("p, q", p, q), ("q, p", q, p)):
            u = a / b
            out = _attempt(fn, (u.copy(),), f"a NumPy array u of {u.size} positive ratios p / q", _NUMPY)
            vals = as_array(out)
            if vals.shape != u.shape:
                return False, (f"return f(u) at every ratio, an array of the shape of u {u.shape}; you returned "
                               f"shape {vals.shape}")
            got = float(np.sum(b * vals) * dx)
            want = float(np.sum(b * np.log(b / a)) * dx)              # KL(second || first), directly
            if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
                continue
            where = f"on ({pair}), {a.size} grid points, the integral of q f(p / q) with your f is {got:.6g}, "
            near = lambda v, got=got: math.isclose(got, float(v), rel_tol=1e-6, abs_tol=1e-9)  # noqa: E731
            forward = float(np.sum(a * np.log(a / b)) * dx)
            hint = ""
            if near(forward):
                hint = (" That is the forward KL(p || q): u log u is the generator of KL(p || q). Write KL(q || p) "
                        "as an integral against q and express its integrand through u = p / q.")
            elif near(-want):
                hint = (" That is minus the reverse KL: the sign is flipped (log(q / p) = -log u), so your f is "
                        "concave and the 'divergence' comes out negative.")
            elif near(-forward):
                hint = (" That is minus the forward KL: -u log u is concave; a generator must be convex with "
                        "f(1) = 0. Start from q log(q / p) and write q / p through u.")
            elif near(float(np.sum(b * (b / a) * np.log(b / a)) * dx)):
                hint = (" Your f treats u as q / p: the template always feeds f the ratio p / q (first over "
                        "second), so q / p = 1 / u.")
            elif abs(float(as_array(_attempt(fn, (np.ones(3),), "u = np.ones(3)", _NUMPY)).ravel()[0])) > 1e-9:
                hint = " A generator needs f(1) = 0, so that D_f(p || p) = 0; yours is not 0 at u = 1."
            return False, f"{where}but KL(q || p) is {want:.6g}.{hint}"
    return True, ("f(u) = -log u: KL(q || p) = integral of q log(q / p) = integral of q (-log(p / q)). Reverse KL "
                  "is an f-divergence too, with f(u) = -log u (convex, f(1) = 0).")


# -- 7. the Fisher divergence of two Gaussians (derivation; checked against Monte Carlo in the chapter) ---------
def _gauss_fisher(m1: float, s1: float, m2: float, s2: float) -> float:
    return (s1 / s2 ** 2 - 1 / s1) ** 2 + (m1 - m2) ** 2 / s2 ** 4


@checker("gaussian_fisher", "01")
def check_gaussian_fisher(fn: Any) -> tuple[bool, str]:
    """fn(m1, s1, m2, s2) -> D_F(p || q) = E_{x ~ p} (d/dx log p - d/dx log q)^2 for p = N(m1, s1^2) and
    q = N(m2, s2^2) in 1D: one number, in closed form."""
    for m1, s1, m2, s2 in ((0.0, 1.0, 1.0, 2.0), (0.5, 0.7, -1.0, 1.3), (2.0, 1.5, 2.0, 0.5), (1.0, 0.8, -0.5, 0.8)):
        args = (m1, s1, m2, s2)
        got = as_scalar(_attempt(fn, args, f"m1={m1}, s1={s1}, m2={m2}, s2={s2} (floats)",
                                 "the arguments are floats; use math or plain arithmetic."), "one number")
        want = _gauss_fisher(*args)
        if math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9):
            continue
        near = lambda v, got=got: math.isclose(got, float(v), rel_tol=1e-6, abs_tol=1e-9)  # noqa: E731
        hint = ""
        if near((m1 - m2) ** 2 / s2 ** 4) and not near(want):
            hint = (" Only the means' term: the widths count too. Even with equal means the two scores have "
                    "different slopes, -1/s1^2 and -1/s2^2, and x ~ p spreads by s1.")
        elif near(_gauss_fisher(m2, s2, m1, s1)):
            hint = " That is D_F(q || p): average under p, the FIRST Gaussian, x = m1 + s1 z."
        elif near(0.5 * want):
            hint = " No 1/2: the divergence is E(s_p - s_q)^2 (score-matching losses carry a 1/2, the divergence does not)."
        elif near((s1 / s2 ** 2 - 1 / s1) ** 2 + (m1 - m2) ** 2 / s2 ** 2):
            hint = (" The means' term: the score of q is -(x - m2) / s2^2, so a shift of the mean enters divided by "
                    "the variance s2^2, and squared: s2^4.")
        elif near((1 / s2 ** 2 - 1 / s1 ** 2) ** 2 + (m1 - m2) ** 2 / s2 ** 4) or near(
                (s1 / s2 - 1 / s1) ** 2 + (m1 - m2) ** 2 / s2 ** 4):
            hint = (" The widths' term: with x = m1 + s1 z the score difference has a z-coefficient "
                    "s1 / s2^2 - 1 / s1, and E z^2 = 1.")
        return False, f"for p = N({m1}, {s1}^2), q = N({m2}, {s2}^2) you gave {got:.6g} but D_F is {want:.6g}.{hint}"
    return True, ("D_F = (s1 / s2^2 - 1 / s1)^2 + (m1 - m2)^2 / s2^4: zero only when the Gaussians are equal, "
                  "and free of both normalisers.")


# -- the Gaussian score (kept from an earlier version of the chapter) -------------------------------------------
@checker("gaussian_score", "01")
def check_gaussian_score(fn: Any) -> tuple[bool, str]:
    """fn(x (N,), mu, sigma) -> d/dx log N(x; mu, sigma^2) at each x."""
    x = torch.tensor([-1.0, 0.3, 2.0], dtype=torch.float64, device=CPU)
    for mu, s in ((0.0, 1.0), (1.0, 0.5)):
        got = _attempt(fn, (x, mu, s), f"x a float64 tensor of shape (3,), mu={mu}, sigma={s} (floats)",
                       "mu and sigma are floats here; use operations that work on a tensor and a float.")
        want = -(x - mu) / s ** 2
        if not close(got, want):
            hint = ""
            if close(got, -want):
                hint = " The sign is flipped: the score points toward the mean."
            elif close(got, -(x - mu) / s):
                hint = " Divide by the variance sigma^2, not by sigma."
            elif close(got, -(x - mu)):
                hint = " Divide by the variance sigma^2: a narrower Gaussian has a steeper score."
            return False, f"for mu={mu}, sigma={s}, x={fmt(x)} you gave {fmt(got)} but should give {fmt(want)}.{hint}"
    return True, "the Gaussian score is right, and it never needed the normaliser 1/sqrt(2 pi sigma^2)."


# -- references for the cells that reuse an answer -------------------------------------------------------------
REFERENCES: dict[str, Any] = {
    "gaussian_nll": _nll,
    "forward_kl_fit": _moments,
    "f_divergence": _f_div,
    "optimal_discriminator": lambda p, q: p / (p + q),
    "energy_score": _energy_score,
    "fisher_divergence": _fisher,
    "reverse_kl_generator": _f_reverse,
    "gaussian_fisher": _gauss_fisher,
}


def reuse(fn: Any, name: str) -> Any:
    """Your answer `fn` to exercise `name`, for the cells that build on it; while it is a stub the package's
    answer (REFERENCES[name]) stands in and says so once, so the student copy runs top to bottom."""
    return yours_or(fn, REFERENCES[name], name)
