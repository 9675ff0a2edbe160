"""Chapter 00 (the tour): a schedule's alpha_t, forward noising, the four predictions (§6.3.1),
a prediction about DDIM's bridges between modes (§9.2) and a DDIM step ported from diffusers."""
from __future__ import annotations

import math
from typing import Any

import torch

from .. import samplers
from ..datasets import eight_gaussians_mixture
from ..gmm import GaussianMixture
from ..grids import time_grid
from ..param import convert
from ..schedules import Cosine, Schedule, VPLinear
from ..utils import expand_t
from ._base import CPU, WrongAnswer, as_array, as_scalar, call, checker, close, example_pair, fmt, yours_or

# the checks; the tour also uses reuse, REFERENCES, bridge_stats, BRIDGE_CHOICES and ported_ddim_step
__all__ = ["check_vp_alpha", "check_forward_noise", "check_eps_from_x0", "check_score_from_eps",
           "check_ddim_bridges", "check_ddim_port"]

_TS = (0.1, 0.3, 0.5, 0.8)
# shapes that tell a per-example answer from one summed or averaged over dimensions: points in 2D
# and 3D and a batch of tiny 1-channel images
_SHAPES = ((5, 2), (4, 3), (2, 1, 4, 4))


def _cases(seed: int) -> list[tuple[Schedule, float, torch.Tensor, torch.Tensor]]:
    """(schedule, t, x0, eps) over two schedules, four times and three shapes (the VP cases first)."""
    out = []
    for sch in (VPLinear(), Cosine()):
        for i, shape in enumerate(_SHAPES):
            x0, eps = example_pair(seed + 10 * i, shape)
            out += [(sch, t, x0, eps) for t in _TS]
    return out


def _forward_noise(x0: torch.Tensor, eps: torch.Tensor, t: Any, schedule: Schedule) -> torch.Tensor:
    return expand_t(schedule.alpha(t), x0) * x0 + expand_t(schedule.sigma(t), x0) * eps


# the package's answer to each exercise that later cells reuse (what `reuse` stands in with for a stub)
REFERENCES: dict[str, Any] = {
    "vp_alpha": lambda t: float(VPLinear().alpha(t)),
    "forward_noise": _forward_noise,
    "eps_from_x0": lambda x_t, t, x0_hat, schedule: convert(schedule, x_t, t, x0_hat, "x0", "eps"),
    "score_from_eps": lambda eps_hat, t, schedule: -eps_hat / expand_t(schedule.sigma(t), eps_hat),
    "ddim_port": lambda model, x, t_cur, t_next: samplers.solve(model, x, [t_cur, t_next], "ddim"),
}


def reuse(fn: Any, name: str) -> Any:
    """Your answer `fn` to exercise `name`, for the cells that build on it; while it is a stub the package's
    answer (REFERENCES[name]) stands in and says so once, so the student copy runs top to bottom."""
    return yours_or(fn, REFERENCES[name], name)


def _where(sch: Schedule, t: float, x: torch.Tensor) -> str:
    return f"For the {sch.name} schedule at t={t} and x of shape {tuple(x.shape)}"


# -- 1. alpha_t of the linear VP schedule (a derivation: integrate beta) ---------------------------------
@checker("vp_alpha", "00")
def check_vp_alpha(fn: Any) -> tuple[bool, str]:
    """fn(t: float) -> alpha_t of the linear VP schedule (beta_min=0.1, beta_max=20)."""
    sch = VPLinear()
    for t in _TS + (1.0, 0.0):
        got, want = as_scalar(call(fn, t), f"one number, alpha_t at t={t}"), float(sch.alpha(t))
        if not math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-7):
            hint = ""
            if math.isclose(got, want ** 2, rel_tol=1e-3):
                hint = " That is alpha_t^2: did you forget the square root (the factor 1/2 in the exponent)?"
            elif math.isclose(got, math.sqrt(max(1 - want ** 2, 0.0)), rel_tol=1e-3):
                hint = " That is sigma_t, the noise coefficient: alpha_t multiplies the data."
            elif math.isclose(got, math.exp(-(0.1 * t + 0.5 * 19.9 * t * t) / 4), rel_tol=1e-3) or \
                    math.isclose(got, math.exp(-(0.1 * t + 19.9 * t * t) / 2), rel_tol=1e-3):
                hint = " Check the integral B(t) = beta_min t + (beta_max - beta_min) t^2 / 2."
            elif math.isclose(got, math.exp(-0.5 * (0.1 * t + 10.0 * t * t)), rel_tol=1e-5):
                hint = (" Close: the t^2 term of the integral carries (beta_max - beta_min) / 2 = 9.95,"
                        " not beta_max / 2.")
            elif math.isclose(got, math.exp(-0.5 * (0.1 + 19.9 * t)), rel_tol=1e-3):
                hint = (" That is exp(-beta(t) / 2): the exponent needs the integral of beta from 0 to t,"
                        " not the rate beta(t) at the end point.")
            return False, f"at t={t} your alpha is {got:.4g} but should be {want:.4g}.{hint}"
    return True, "alpha_t matches dl.VPLinear().alpha at t = 0, 0.1, 0.3, 0.5, 0.8 and 1. Well done!"


# -- 2. forward noising (reused to draw the noised data) ------------------------------------------------
@checker("forward_noise", "00")
def check_forward_noise(fn: Any) -> tuple[bool, str]:
    """fn(x0, eps, t, schedule) -> x_t = alpha_t x0 + sigma_t eps, shape of x0; t a float or (B,)."""
    cases = [(sch, t, x0, eps) for sch, t, x0, eps in _cases(0)]
    # per-example times, one per row, as a training loss draws them (a (3, 3) batch hides a wrong axis)
    g = torch.Generator(device=CPU).manual_seed(7)
    for shape in ((4, 2), (3, 3), (2, 1, 4, 4)):
        x0, eps = example_pair(int(torch.randint(1000, (1,), generator=g)), shape)
        cases.append((VPLinear(), torch.linspace(0.15, 0.85, shape[0], dtype=torch.float64), x0, eps))
    for sch, t, x0, eps in cases:
        per_example = isinstance(t, torch.Tensor)
        a, s = expand_t(sch.alpha(t), x0), expand_t(sch.sigma(t), x0)
        want = _forward_noise(x0, eps, t, sch)
        where = (f"With one time per example (t = {fmt(t)}) and x0 of shape {tuple(x0.shape)}" if per_example
                 else _where(sch, t, x0))
        try:
            got = call(fn, x0, eps, t, sch)
        except RuntimeError as exc:
            if per_example and "size" in str(exc):
                return False, (f"{where}, your code raised RuntimeError: {exc}. alpha_t has shape (B,) here: "
                               "reshape it to (B, 1, ...) so each row of x0 gets its own coefficient.")
            raise
        if close(got, want):
            continue
        hint = ""
        g_arr = as_array(got)
        if g_arr.shape != tuple(x0.shape):
            hint = f" Return x_t with the shape of x0, {tuple(x0.shape)}: no sum or mean over dimensions."
        elif close(got, s * x0 + a * eps):
            hint = " You swapped the roles: alpha_t multiplies the data, sigma_t the noise."
        elif close(got, a * x0 + s ** 2 * eps):
            hint = " sigma_t is already a standard deviation; do not square it."
        elif close(got, a ** 2 * x0 + s ** 2 * eps):
            hint = " alpha_t and sigma_t are already the coefficients (not variances); do not square them."
        elif close(got, a * x0 + torch.sqrt(1 - a) * eps):
            hint = (" That noise scale is sqrt(1 - alpha_t), Ho et al.'s form for their variance-like bar-alpha;"
                    " with the book's alpha_t (a scale) the noise coefficient is sigma_t = sqrt(1 - alpha_t^2).")
        elif per_example and x0.dim() == 2 and x0.shape[0] == x0.shape[1] and \
                close(got, sch.alpha(t) * x0 + sch.sigma(t) * eps):
            hint = (" Your coefficients were applied along the last axis (columns), not per example (rows):"
                    " reshape alpha_t and sigma_t to (B, 1).")
        elif not per_example and sch.name != "vp" and close(got, VPLinear().alpha(t) * x0 + VPLinear().sigma(t) * eps):
            hint = " That is the VP schedule's x_t: use the schedule you are given, not dl.VPLinear()."
        return False, f"{where}: your x_t[0] is {fmt(g_arr[0])} but should be {fmt(want[0])}.{hint}"
    return True, ("x_t = alpha_t x0 + sigma_t eps, exactly, for two schedules, points and images, and one time"
                  " per example. Nice.")


# -- 3. eps from a denoiser's x0 (reused by the DDIM loop) -----------------------------------------------
@checker("eps_from_x0", "00")
def check_eps_from_x0(fn: Any) -> tuple[bool, str]:
    """fn(x_t, t, x0_hat, schedule) -> the eps that goes with a denoiser output x0_hat."""
    for sch, t, x0, eps in _cases(1):
        a, s = sch.alpha(t), sch.sigma(t)
        x_t = a * x0 + s * eps
        got = call(fn, x_t, t, x0, sch)
        if close(got, eps):
            continue
        hint = ""
        if as_array(got).shape != tuple(x0.shape):
            hint = f" Return eps with the shape of x_t, {tuple(x0.shape)}: no sum or mean over dimensions."
        elif close(got, x_t - a * x0):
            hint = " Almost: divide by sigma_t at the end."
        elif close(got, -eps):
            hint = " The sign is flipped: subtract alpha_t x0_hat from x_t, not the other way round."
        elif close(got, (x_t - a * x0) / s ** 2):
            hint = " Divide by sigma_t, not by its square."
        elif close(got, (x_t - x0) / s):
            hint = " Scale x0_hat by alpha_t before subtracting it: x_t holds alpha_t x0, not x0."
        elif close(got, (x_t - a * x0) / torch.sqrt(1 - a)):
            hint = (" You divided by sqrt(1 - alpha_t), Ho et al.'s noise scale for their bar-alpha; with the"
                    " book's alpha_t (a scale) the noise scale is sigma_t = sqrt(1 - alpha_t^2).")
        elif sch.name != "vp" and close(got, (x_t - VPLinear().alpha(t) * x0) / VPLinear().sigma(t)):
            hint = " That uses the VP schedule's alpha_t and sigma_t: use the schedule you are given."
        return False, (f"{_where(sch, t, x0)}: your eps[0] is {fmt(as_array(got)[0])} but should be {fmt(eps[0])}."
                       f"{hint} Solve x_t = alpha_t x0 + sigma_t eps for eps.")
    return True, "eps = (x_t - alpha_t x0) / sigma_t recovers the noise exactly, for two schedules and three shapes."


# -- 4. the score from eps (Tweedie, reused against autograd) ---------------------------------------------
@checker("score_from_eps", "00")
def check_score_from_eps(fn: Any) -> tuple[bool, str]:
    """fn(eps_hat, t, schedule) -> the score that goes with a noise prediction (Tweedie, §3.3.4, §6.3.1)."""
    for sch, t, _, eps in _cases(2):
        s = sch.sigma(t)
        got = call(fn, eps, t, sch)
        want = -eps / s
        if close(got, want):
            continue
        hint = ""
        if as_array(got).shape != tuple(eps.shape):
            hint = f" Return the score with the shape of eps, {tuple(eps.shape)}: no sum or mean over dimensions."
        elif close(got, eps / s):
            hint = " The sign is off: the score points back toward the data, against the noise."
        elif close(got, -eps / s ** 2) or close(got, -eps * s):
            hint = " Check the power of sigma_t: Tweedie's formula divides by sigma_t^2, and eps itself carries one factor sigma_t."
        elif close(got, -eps):
            hint = " That is -eps: the score also carries a factor 1 / sigma_t (it grows as the noise shrinks)."
        elif sch.name != "vp" and close(got, -eps / VPLinear().sigma(t)):
            hint = " That uses the VP schedule's sigma_t: use the schedule you are given."
        return False, f"{_where(sch, t, eps)}: your score[0] is {fmt(as_array(got)[0])} but should be {fmt(want[0])}.{hint}"
    return True, "score = -eps / sigma_t, for two schedules and three shapes. The four predictions are one object."


# -- 5. predict, then run: what do 10 DDIM steps get wrong? ----------------------------------------------
BRIDGE_CHOICES = {
    "a": "nothing visible: with the exact denoiser, 10 steps are as good as 50",
    "b": "some samples end in a different mode than the 50-step run from the same start",
    "c": "some samples stop between two neighbouring modes, like bridges along the ring",
    "d": "the samples overshoot: they land outside the ring, beyond the modes",
}


def _between(x: torch.Tensor, mixture: GaussianMixture, k: float = 3.0) -> torch.Tensor:
    """True for points farther than k component standard deviations from every mode centre."""
    std = float(mixture.covs[0, 0, 0].sqrt())
    return torch.cdist(x, mixture.means).min(1).values > k * std


def bridge_stats(n_samples: int = 512, seed: int = 1) -> dict[str, float]:
    """DDIM (uniform grid) on the exact eight-Gaussian model with 10 and 50 steps from the same prior draws:
    the fraction of samples between modes (farther than 3 std from every centre), the fraction that
    end in the same mode in both runs, and the mean radius (the modes sit at radius 2)."""
    gmm, sch = eight_gaussians_mixture(), VPLinear()
    model = gmm.model(sch)
    x1 = sch.sample_prior((n_samples, 2), generator=torch.Generator(device=CPU).manual_seed(seed),
                          dtype=torch.float64)
    with torch.no_grad():
        x10, x50 = (samplers.solve(model, x1, time_grid(sch, n, "uniform"), "ddim") for n in (10, 50))
    mode = lambda x: torch.cdist(x, gmm.means).argmin(1)  # noqa: E731
    return {"between_10": float(_between(x10, gmm).double().mean()),
            "between_50": float(_between(x50, gmm).double().mean()),
            "same_mode": float((mode(x10) == mode(x50)).double().mean()),
            "radius_10": float(x10.norm(dim=1).mean()), "radius_50": float(x50.norm(dim=1).mean())}


@checker("ddim_bridges", "00")
def check_ddim_bridges(choice: Any) -> tuple[bool, str]:
    """choice: one letter of BRIDGE_CHOICES, your prediction of what 10 DDIM steps do differently from 50."""
    raw = call(choice)
    key = str(raw).strip().strip("()").lower()
    if key not in BRIDGE_CHOICES:
        raise WrongAnswer(f"answer one letter of {', '.join(repr(k) for k in BRIDGE_CHOICES)}; you gave {raw!r}")
    st = bridge_stats()
    facts = (f"Measured on 512 samples: {100 * st['between_10']:.1f}% lie between modes after 10 steps, "
             f"{100 * st['between_50']:.1f}% after 50 (about what the Gaussian tails of the data give).")
    said = f"You predicted ({key}): {BRIDGE_CHOICES[key]}. "
    if key == "c":
        return True, said + "Right. " + facts + " The cells below show why."
    if key == "a":
        hint = ("Not quite: an exact denoiser removes the learning error, not the discretisation error of a "
                "coarse grid.")
    elif key == "b":
        hint = (f"Not here: {100 * st['same_mode']:.0f}% of the 10-step samples end in the same mode as their "
                "50-step twins. The trouble is where inside the ring they stop, not which mode they choose.")
    else:
        hint = (f"The other way round: the mean radius is {st['radius_10']:.2f} after 10 steps and "
                f"{st['radius_50']:.2f} after 50 (the modes sit at 2): coarse steps fall short, inwards.")
    return False, said + hint + " " + facts + " The cells below show why."


# -- 6. find the bug: a DDIM step ported from diffusers' convention --------------------------------------
def ported_ddim_step(model: Any, x: torch.Tensor, t_cur: float, t_next: float) -> torch.Tensor:
    """The buggy port shown in the tour: diffusers' DDIM update with the book's alpha_t where diffusers
    means its alphas_cumprod (Ho et al.'s bar-alpha, the square of the book's alpha_t)."""
    alpha_prod_t, alpha_prod_next = model.schedule.alpha(t_cur), model.schedule.alpha(t_next)
    eps = model.predict(x, t_cur, "eps")
    x0 = (x - (1 - alpha_prod_t) ** 0.5 * eps) / alpha_prod_t ** 0.5
    return alpha_prod_next ** 0.5 * x0 + (1 - alpha_prod_next) ** 0.5 * eps


class _Counting:
    """A model wrapper that counts predict calls (network evaluations) and passes everything else on."""

    def __init__(self, model: Any) -> None:
        self.model, self.schedule, self.calls = model, model.schedule, 0

    def predict(self, x: torch.Tensor, t: Any, kind: str = "eps", c: Any = None) -> torch.Tensor:
        self.calls += 1
        return self.model.predict(x, t, kind, c)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def _port_cases() -> list[tuple[Any, torch.Tensor, float, float]]:
    """(model, x, t_cur, t_next): the eight Gaussians under VP and a 3D two-mode mixture under the cosine
    schedule, at high, middle and low noise."""
    g = torch.Generator(device=CPU).manual_seed(3)
    eight = eight_gaussians_mixture().model(VPLinear())
    three = GaussianMixture(torch.tensor([0.3, 0.7]), torch.tensor([[1.0, -1.0, 0.5], [-1.0, 0.5, 0.0]]),
                            stds=0.3).model(Cosine())
    out = []
    for model, dim in ((eight, 2), (three, 3)):
        for t_cur, t_next in ((0.5, 0.3), (0.2, 0.05), (0.9, 0.8)):
            x = model.schedule.sample_prior((6, dim), generator=g, dtype=torch.float64)
            out.append((model, x, t_cur, t_next))
    return out


@checker("ddim_port", "00")
def check_ddim_port(fn: Any) -> tuple[bool, str]:
    """fn(model, x, t_cur, t_next) -> x at t_next after one deterministic DDIM step, one model call."""
    for model, x, t_cur, t_next in _port_cases():
        counted = _Counting(model)
        got = call(fn, counted, x, t_cur, t_next)
        if isinstance(got, tuple):
            raise WrongAnswer("return only the new x (a tensor), not a tuple; the package's steps also "
                              "return a state, this exercise does not")
        want = REFERENCES["ddim_port"](model, x, t_cur, t_next)
        where = f"For the {model.schedule.name} schedule from t={t_cur} to t={t_next} and x of shape {tuple(x.shape)}"
        if close(got, want, rtol=1e-6, atol=1e-8):
            if counted.calls != 1:
                return False, (f"{where}, your x is right, but your step called the model {counted.calls} times. "
                               "One call is one NFE: a single prediction of x0 or eps gives the other by algebra "
                               "(your Exercise 3), so DDIM costs one NFE per step.")
            continue
        a_t, a_n = float(model.schedule.alpha(t_cur)), float(model.schedule.alpha(t_next))
        s_t, s_n = float(model.schedule.sigma(t_cur)), float(model.schedule.sigma(t_next))
        eps = model.predict(x, t_cur, "eps")
        x0_right = (x - s_t * eps) / a_t
        x0_port = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        hint = ""
        if as_array(got).shape != tuple(x.shape):
            hint = f" Return x with the shape it came in, {tuple(x.shape)}."
        elif close(got, ported_ddim_step(model, x, t_cur, t_next)):
            hint = (" That is still the port's output: where diffusers reads alphas_cumprod (a variance-like"
                    " bar-alpha), our schedule.alpha(t) is its square root.")
        elif close(got, a_n * x0_port + s_n * eps):
            hint = (" The re-noising to t_next is right now, but x0 is still estimated with alpha_t as if it"
                    " were alphas_cumprod (at t_cur).")
        elif close(got, math.sqrt(a_n) * x0_right + math.sqrt(1 - a_n) * eps):
            hint = (" x0 is right now, but the re-noising to t_next still treats alpha(t_next) as alphas_cumprod.")
        elif close(got, a_n * x0_right + math.sqrt(1 - a_n) * eps):
            hint = (" Nearly: the noise coefficient sqrt(1 - alpha_t) is the mixed-convention slip; with the"
                    " book's alpha_t (a scale) it is sigma_t = sqrt(1 - alpha_t^2).")
        elif close(got, a_n * (x - s_t ** 2 * eps) / a_t + s_n * eps) or \
                close(got, a_n * x0_right + s_n ** 2 * eps):
            hint = (" A square root is missing: 1 - alpha_prod is a variance, and the noise coefficient is its"
                    " square root, sigma_t = sqrt(1 - alpha_t^2).")
        elif close(got, x0_right):
            hint = " That is x0_hat itself: DDIM re-noises it to t_next with the same eps_hat."
        elif close(got, x):
            hint = (" Your step returns x unchanged: it reads the prediction or its coefficients at t_next. x lives"
                    " at t_cur, so x0_hat and eps_hat come from t_cur; only the re-noising uses t_next.")
        if as_array(got).shape == tuple(x.shape):
            gap = float(abs(as_array(got) - as_array(want)).max())
            return False, (f"{where}: your x[0] is {fmt(as_array(got)[0])} but should be {fmt(want[0])} "
                           f"(largest difference {gap:.2g}).{hint}")
        return False, f"{where}: your x[0] is {fmt(as_array(got)[0])} but should be {fmt(want[0])}.{hint}"
    return True, ("your step matches dl.samplers' DDIM for two schedules and dimensions, at high and low noise, "
                  "with one model call per step.")
