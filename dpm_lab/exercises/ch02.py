"""Chapter 02 (VAE to DDPM): the checks of §2.1-2.2 and the package's versions that later cells fall back on.

The betas follow the book: beta_i is a standard deviation (Eq. 2.2.1), alpha_i = sqrt(1 - beta_i^2),
alpha_bar_i = prod_{k <= i} alpha_k is a scale and 1 - alpha_bar_i^2 the noise variance.

Kinds: implement-and-reuse (vae_kl, simple_loss, gaussian_kl, ancestral_step: later cells call the
learner's function through `use`), derivations checked numerically (ddpm_posterior, elbo_weight),
a prediction (variance_prediction), a find-the-bug (noisy_sample), and plain implementations
(alpha_bar, eps_mean).  `use(name, answer)` returns the learner's function when it answers, else
the package's version with a note, so a student copy runs from top to bottom.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..gmm import GaussianMixture
from ..param import Model
from ..schedules import DiscreteSchedule
from ..utils import randn
from ._base import CPU, WrongAnswer, as_array, as_scalar, call, checker, close, example_pair, fmt, make_use

__all__ = ["check_alpha_bar", "check_ancestral_step", "check_ddpm_posterior", "check_elbo_weight",
           "check_eps_mean", "check_gaussian_kl", "check_noisy_sample", "check_simple_loss",
           "check_vae_kl", "check_variance_prediction"]

_BETAS = torch.linspace(0.05, 0.4, 10, dtype=torch.float64, device=CPU)
_SCHED = DiscreteSchedule(_BETAS, beta_is="std")
# a small 3-D mixture whose exact fields answer the model calls of the checks (D = 3, B = 5: no accidental broadcast)
_MIX3 = GaussianMixture([0.5, 0.3, 0.2], [[1.0, -0.5, 0.3], [-1.2, 0.4, 0.8], [0.2, 1.1, -1.0]], stds=[0.3, 0.5, 0.2])


def _alpha_bars(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar_0 = 1, alpha_bar_1, ..., alpha_bar_L for standard-deviation betas."""
    return torch.cat([torch.ones(1, dtype=betas.dtype, device=betas.device), torch.cumprod(torch.sqrt(1 - betas ** 2), 0)])


def _weights(i: int, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior mean's weights on x0 and on x_i (Eq. 2.2.4)."""
    ab = _alpha_bars(betas)
    c0 = ab[i - 1] * betas[i - 1] ** 2 / (1 - ab[i] ** 2)
    ci = (1 - ab[i - 1] ** 2) * torch.sqrt(1 - betas[i - 1] ** 2) / (1 - ab[i] ** 2)
    return c0, ci


def _post(x_i: torch.Tensor, x0: torch.Tensor, i: int, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of p(x_{i-1} | x_i, x0) (Lemma 2.2.2, Eq. 2.2.4), written out by hand."""
    ab = _alpha_bars(betas)
    c0, ci = _weights(i, betas)
    var = (1 - ab[i - 1] ** 2) / (1 - ab[i] ** 2) * betas[i - 1] ** 2
    return c0 * x0 + ci * x_i, var


def _eps_mean(x_i: torch.Tensor, eps: torch.Tensor, i: int, betas: torch.Tensor) -> torch.Tensor:
    """mu_phi of Eq. 2.2.9 from a noise prediction."""
    ab = _alpha_bars(betas)
    return (x_i - betas[i - 1] ** 2 / torch.sqrt(1 - ab[i] ** 2) * eps) / torch.sqrt(1 - betas[i - 1] ** 2)


class _Spy(Model):
    """An exact model that records the times and kinds it is asked for (so a check can name a time slip).

    Its own output (raw, model(x, t)) is the clean-data prediction, so an answer that calls the model
    directly instead of asking for the noise is caught too."""

    def __init__(self, inner: Model):
        self.inner, self.schedule, self.kind = inner, inner.schedule, "x0"
        self.calls: list[tuple[str, torch.Tensor]] = []

    def _note(self, t: Any, kind: str) -> None:
        t = torch.as_tensor(t, dtype=torch.float64).detach().cpu().flatten()
        self.calls.append((kind, t))
        if (t > 1 + 1e-9).any() or (t < -1e-9).any():
            raise WrongAnswer(f"you asked the model at t = {fmt(t)}: the package's models take the time "
                              "t_i = i / L in [0, 1], not the step index i")

    def raw(self, x_t, t, c=None):
        self._note(t, "raw")
        return self.inner.predict(x_t, t, "x0", c)

    def predict(self, x_t, t, kind="eps", c=None):
        self._note(t, kind)
        return self.inner.predict(x_t, t, kind, c)


def _model_hint(spy: _Spy, i: torch.Tensor | int, L: int) -> str:
    """A hint about how the answer called the model: the wrong kind, the raw output, or a step off by one."""
    if not spy.calls:
        return " You never asked the model for its prediction (model.predict(x, t, 'eps'))."
    kinds = {k for k, _ in spy.calls}
    if "raw" in kinds:
        return (" model(x, t) is the network's own output (here a clean-data prediction); ask for the noise "
                "with model.predict(x, t, 'eps').")
    if kinds != {"eps"}:
        return f" You asked the model for {sorted(kinds)}; this formula needs its noise prediction 'eps'."
    want = torch.as_tensor(i, dtype=torch.float64).flatten() / L
    t = spy.calls[-1][1]
    if t.numel() == want.numel() or t.numel() == 1:
        if torch.allclose(t.expand_as(want), (want * L - 1) / L):
            return " You asked the model at t_{i-1} = (i - 1) / L; the noisy input x_i sits at t_i = i / L."
    return ""


# -- 1. the VAE's KL (implement-and-reuse) ----------------------------------------------------------------------
def _vae_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)


@checker("vae_kl", "02")
def check_vae_kl(fn: Any) -> tuple[bool, str]:
    """fn(mu (B, d), logvar (B, d)) -> (B,) KL(N(mu, diag exp(logvar)) || N(0, I))."""
    g = torch.Generator().manual_seed(6)
    mu = randn((4, 3), generator=g, dtype=torch.float64)
    logvar = 0.5 * randn((4, 3), generator=g, dtype=torch.float64)
    got = call(fn, mu, logvar)
    want = _vae_kl(mu, logvar)
    if not close(got, want):
        hint = ""
        if close(got, want.sum()) or close(got, want.mean()):
            hint = " Return one KL per example (sum over latent dims only)."
        elif close(got, want / 3):
            hint = " Sum over the latent dimensions, not the mean: the KL of independent coordinates adds up."
        elif close(got, 2 * want):
            hint = " You are missing the factor 1/2."
        elif close(got, want + 0.5 * mu.shape[1]):
            hint = " Each latent dimension contributes a -1 inside the bracket."
        elif close(got, 0.5 * (mu ** 2 + logvar.exp() - 1 + logvar).sum(-1)):
            hint = " The log term enters with a minus sign: ... - 1 - logvar."
        elif close(got, 0.5 * (mu ** 2 + (0.5 * logvar).exp() - 1 - logvar).sum(-1)):
            hint = " exp(logvar) is the variance; exp(logvar / 2) is the standard deviation."
        elif as_array(got).shape != (4,):
            hint = f" Return one KL per example, shape (4,), not {as_array(got).shape}: sum over the latent dimension (-1)."
        return False, f"for mu, logvar of shape (4, 3) your KL is {fmt(got)} but should be {fmt(want)}.{hint}"
    return True, "the closed-form Gaussian KL of the VAE is right."


# -- 2. alpha_bar --------------------------------------------------------------------------------------------------
@checker("alpha_bar", "02")
def check_alpha_bar(fn: Any) -> tuple[bool, str]:
    """fn(betas (L,)) -> alpha_bar_i for i = 1..L, the book's convention (beta is a std, Eq. 2.2.1)."""
    got = call(fn, _BETAS.clone())
    want = _SCHED.alpha_at_steps[1:]
    if not close(got, want):
        hint = ""
        ho = torch.cumprod(1 - _BETAS, 0)
        if close(got, ho) or close(got, ho.sqrt()):
            hint = (" That is Ho et al.'s convention (beta a variance). In the book beta_i is a standard deviation: "
                    "alpha_i = sqrt(1 - beta_i^2).")
        elif close(got, want ** 2):
            hint = " You returned alpha_bar^2 (the signal variance, Ho et al.'s alphas_cumprod); take the square root."
        elif close(got, torch.sqrt(1 - _BETAS ** 2)):
            hint = " That is each step's alpha_i; alpha_bar_i multiplies all of them up to step i."
        elif as_array(got).shape != tuple(want.shape):
            hint = f" Return one value per step, shape ({len(_BETAS)},)."
        return False, f"for betas = linspace(0.05, 0.4, 10) you gave {fmt(got)} but should give {fmt(want)}.{hint}"
    return True, "alpha_bar_i = prod_k sqrt(1 - beta_k^2): the signal left after i steps."


# -- 3. find the bug: the noisy sample x_i ----------------------------------------------------------------------
@checker("noisy_sample", "02")
def check_noisy_sample(fn: Any) -> tuple[bool, str]:
    """fn(x0, eps, i, betas) -> x_i of the book's chain (Eq. 2.2.1), the buggy cell's function repaired."""
    x0, eps = example_pair(3, (5, 3))
    ab = _alpha_bars(_BETAS)
    ho = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - _BETAS, 0)])
    for i in (1, 4, 10):
        got = call(fn, x0, eps, i, _BETAS.clone())
        want = ab[i] * x0 + torch.sqrt(1 - ab[i] ** 2) * eps
        if close(got, want):
            continue
        a = ab[i]
        hint = ""
        if close(got, a * x0 + torch.sqrt(1 - a) * eps):
            hint = (" That is still the buggy line: with sqrt(1 - alpha_bar_i) as the noise scale the variance of "
                    "unit-variance data drifts away from one. The noise variance is 1 - alpha_bar_i^2 (the slip of "
                    "one line in §3.4).")
        elif close(got, a.sqrt() * x0 + torch.sqrt(1 - a) * eps):
            hint = (" That is Ho et al.'s formula, where alpha_bar is a variance; in the book alpha_bar_i is a scale "
                    "(the signal's standard deviation).")
        elif close(got, ho[i].sqrt() * x0 + torch.sqrt(1 - ho[i]) * eps):
            hint = " That reads the betas as variances (Ho et al.); here they are the book's standard deviations."
        elif close(got, a ** 2 * x0 + torch.sqrt(1 - a ** 2) * eps):
            hint = " The signal is scaled by alpha_bar_i itself, not its square."
        elif any(close(got, ab[j] * x0 + torch.sqrt(1 - ab[j] ** 2) * eps) for j in (i - 1, i + 1) if 0 <= j <= 10):
            hint = " The form is right but the step is off by one: betas[i - 1] is beta_i, and alpha_bar_i uses beta_1..beta_i."
        return False, f"at i={i} your x_i[0] is {fmt(as_array(got)[0])} but should be {fmt(want[0])}.{hint}"
    return True, ("x_i = alpha_bar_i x0 + sqrt(1 - alpha_bar_i^2) eps: the variance of unit-variance data stays "
                  "alpha_bar_i^2 + 1 - alpha_bar_i^2 = 1.")


# -- 4. derivation: the posterior of Lemma 2.2.2 by completing the square ----------------------------------------
@checker("ddpm_posterior", "02")
def check_ddpm_posterior(fn: Any) -> tuple[bool, str]:
    """fn(x_i, x0, i, betas) -> (mean, variance) of p(x_{i-1} | x_i, x0) (Lemma 2.2.2, Eq. 2.2.4), 1 <= i <= L."""
    x0, x_i = example_pair(3)
    ab = _alpha_bars(_BETAS)
    for i in (1, 4, 10):
        got = call(fn, x_i, x0, i, _BETAS.clone())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return False, "return a pair (mean, variance)"
        mean, var = _post(x_i, x0, i, _BETAS)
        if not close(got[0], mean):
            c0, ci = _weights(i, _BETAS)
            hint = (" Check the two weights (mind i-1 vs i indexing): complete the square in x_{i-1}; the weight on "
                    "x0 comes from p(x_{i-1} | x0), the weight on x_i from p(x_i | x_{i-1}).")
            wrong_sqrt = ((ab[i - 1] * _BETAS[i - 1] ** 2 / (1 - ab[i])) * x0
                          + ((1 - ab[i - 1]) * torch.sqrt(1 - _BETAS[i - 1] ** 2) / (1 - ab[i])) * x_i)
            if close(got[0], ci * x0 + c0 * x_i):
                hint = (" The two weights are swapped: at i = 1 the mean must be x0 itself (weight 1 on x0, "
                        "0 on x_i).")
            elif close(got[0], _post(x_i, x0, i, _BETAS ** 0.5)[0]):
                hint = " That is Ho et al.'s convention (beta a variance); in the book beta_i is a standard deviation."
            elif any(close(got[0], _post(x_i, x0, j, _BETAS)[0]) for j in (i - 1, i + 1) if 1 <= j <= 10):
                hint = (" Your formula is right for the neighbouring step: the index is off by one. betas[i - 1] is "
                        "beta_i, alpha_bar_{i-1} is the product up to step i - 1 (1 at i = 1).")
            elif close(got[0], wrong_sqrt):
                hint = " The noise variances are 1 - alpha_bar^2 (alpha_bar is a scale), not 1 - alpha_bar."
            return False, f"at i={i} your mean[0] is {fmt(as_array(got[0])[0])} but should be {fmt(mean[0])}.{hint}"
        got_var = float(as_array(got[1]).ravel()[0]) if as_array(got[1]).size else math.nan
        if not close(np.asarray([got_var]), np.asarray([float(var)])):
            hint = ""
            if math.isclose(got_var, math.sqrt(float(var)), rel_tol=1e-4):
                hint = " (that is the std; return the variance)"
            elif math.isclose(got_var, float(_BETAS[i - 1] ** 2), rel_tol=1e-4):
                hint = (" (that is beta_i^2, the forward step's variance; the posterior's is smaller by the factor "
                        "(1 - alpha_bar_{i-1}^2) / (1 - alpha_bar_i^2))")
            elif math.isclose(got_var, float(1 / (1 / _BETAS[i - 1] ** 2 + 1 / max(1 - ab[i - 1] ** 2, 1e-300))),
                              rel_tol=1e-4) and i > 1:
                hint = (" (close: but p(x_i | x_{i-1}) is a Gaussian in alpha_i x_{i-1}, so its precision in x_{i-1} "
                        "is alpha_i^2 / beta_i^2)")
            return False, f"at i={i} your variance is {fmt(got[1])} but should be {fmt(var)}{hint}."
    return True, "Lemma 2.2.2 reproduced: a Gaussian in x_{i-1} once x0 is known. At i=1 the variance is 0."


# -- 5. the eps-parameterised mean (Eq. 2.2.9) -------------------------------------------------------------------
@checker("eps_mean", "02")
def check_eps_mean(fn: Any) -> tuple[bool, str]:
    """fn(x_i, eps_hat, i, betas) -> the mean mu_phi of p_phi(x_{i-1} | x_i) written with a noise prediction (Eq. 2.2.9)."""
    x0, eps = example_pair(4)
    ab = _alpha_bars(_BETAS)
    for i in (1, 5, 10):
        b, a = _BETAS[i - 1], torch.sqrt(1 - _BETAS[i - 1] ** 2)
        x_i = ab[i] * x0 + torch.sqrt(1 - ab[i] ** 2) * eps
        got = call(fn, x_i, eps, i, _BETAS.clone())
        want, _ = _post(x_i, x0, i, _BETAS)   # with the true eps, the eps-mean IS the posterior mean
        if not close(got, want):
            coef = torch.sqrt(1 - ab[i] ** 2)
            hint = (" With the true eps it must equal the posterior mean of Lemma 2.2.2; write x0 through x_i and eps "
                    "and simplify (note 1 - alpha_i^2 = beta_i^2).")
            if close(got, (x_i - b / coef * eps) / a):
                hint = " The weight on eps has beta_i^2, not beta_i: the book's beta is a standard deviation."
            elif close(got, (x_i - b ** 2 / torch.sqrt(1 - ab[i]) * eps) / a):
                hint = (" The noise scale of x_i is sqrt(1 - alpha_bar_i^2), not sqrt(1 - alpha_bar_i) (alpha_bar is "
                        "a scale in the book; the other form is a slip of one line in §3.4).")
            elif close(got, x_i - b ** 2 / coef * eps):
                hint = " Divide the whole bracket by alpha_i = sqrt(1 - beta_i^2)."
            elif close(got, (x_i + b ** 2 / coef * eps) / a):
                hint = " Sign slip: subtract the noise term, the mean moves x_i against eps_hat."
            elif close(got, (x_i - coef * eps) / ab[i]):
                hint = " That is the clean estimate x0_hat; the mean of x_{i-1} takes one step from x_i, not all of them."
            return False, f"at i={i} your mean[0] is {fmt(as_array(got)[0])} but should be {fmt(want[0])}.{hint}"
    return True, "the eps-parameterised mean equals the posterior mean when eps_hat is the true noise."


# -- 6. the L_simple loss (implement-and-reuse) -------------------------------------------------------------------
def _simple_loss(model: Model, x0: torch.Tensor, i: torch.Tensor, eps: torch.Tensor,
                 schedule: DiscreteSchedule) -> torch.Tensor:
    """||eps_phi(x_i, t_i) - eps||^2 per example, x_i = alpha_bar_i x0 + sqrt(1 - alpha_bar_i^2) eps, t_i = i / L."""
    ab = schedule.alpha_at_steps.to(x0.dtype)[i][:, None]
    x_i = ab * x0 + torch.sqrt(1 - ab ** 2) * eps
    return ((model.predict(x_i, i / schedule.L, "eps") - eps) ** 2).sum(-1)


@checker("simple_loss", "02")
def check_simple_loss(fn: Any) -> tuple[bool, str]:
    """fn(model, x0 (B, D), i (B,) steps in 1..L, eps (B, D), schedule) -> (B,) L_simple terms (Eq. 2.2.10)."""
    x0, eps = example_pair(8, (5, 3))
    i = torch.tensor([1, 3, 6, 10, 7])
    spy = _Spy(_MIX3.model(_SCHED))
    try:
        got = call(fn, spy, x0.clone(), i.clone(), eps.clone(), _SCHED)
    except RuntimeError as err:
        if "size of tensor" in str(err) or "must match" in str(err):
            raise WrongAnswer(f"your code raised RuntimeError: {err}. alpha_bar at the steps i has shape (B,) = (5,) "
                              "while x0 is (5, 3): give it a trailing axis ([:, None]) before multiplying.") from None
        raise
    exact = _MIX3.model(_SCHED)
    want = _simple_loss(exact, x0, i, eps, _SCHED)
    if close(got, want):
        return True, ("L_simple: the squared error of the noise prediction, one value per example. Averaged over "
                      "i, x0 and eps it is Eq. 2.2.10.")
    ab = _SCHED.alpha_at_steps[i][:, None]
    t = i / _SCHED.L

    def variant(x_i=None, target=eps, reduce="sum", tt=t):
        x_i = ab * x0 + torch.sqrt(1 - ab ** 2) * eps if x_i is None else x_i
        err = (exact.predict(x_i, tt, "eps") - target) ** 2
        return err.sum(-1) if reduce == "sum" else err.mean(-1)

    hint = _model_hint(spy, i, _SCHED.L)
    arr = as_array(got)
    if not hint:
        ac = _SCHED.alphas_cumprod[i - 1][:, None]
        if arr.shape != (5,):
            hint = f" Return one value per example, shape (5,), not {arr.shape}."
        elif close(got, variant(reduce="mean")):
            hint = (" You averaged over the data dimensions; ||.||^2 sums them (dl.losses.ddpm_simple averages, "
                    "which only rescales the loss by D).")
        elif close(got, variant(x_i=ab * x0 + torch.sqrt(1 - ab) * eps)):
            hint = " The noise scale of x_i is sqrt(1 - alpha_bar_i^2), not sqrt(1 - alpha_bar_i) (the slip of §3.4)."
        elif close(got, variant(x_i=ac.sqrt() * x0 + torch.sqrt(1 - ac) * eps)) or close(
                got, variant(x_i=ac * x0 + torch.sqrt(1 - ac ** 2) * eps)):
            hint = (" schedule.alphas_cumprod is Ho et al.'s alpha_bar (the square of the book's); use "
                    "schedule.alpha_at_steps[i], the book's alpha_bar_i (a scale).")
        elif close(got, variant(target=x0)):
            hint = " The target of L_simple is the noise eps that made x_i, not the clean x0."
    return False, f"for 5 examples in 3-D your losses are {fmt(got)} but should be {fmt(want)}.{hint}"


# -- 7. the KL between isotropic Gaussians (implement-and-reuse) -------------------------------------------------
def _gaussian_kl(mu1: torch.Tensor, var1: Any, mu2: torch.Tensor, var2: Any) -> torch.Tensor:
    """KL(N(mu1, var1 I) || N(mu2, var2 I)) per example (sum over the last dimension)."""
    d = mu1.shape[-1]
    return 0.5 * (d * var1 / var2 + ((mu1 - mu2) ** 2).sum(-1) / var2 - d + d * math.log(var2 / var1))


@checker("gaussian_kl", "02")
def check_gaussian_kl(fn: Any) -> tuple[bool, str]:
    """fn(mu1 (B, D), var1, mu2 (B, D), var2) -> (B,) KL(N(mu1, var1 I) || N(mu2, var2 I)), var1 and var2 floats."""
    x0, eps = example_pair(5, (4, 3))
    mu1, mu2 = x0, 0.3 * eps
    for var1, var2 in ((0.1, 0.1), (0.05, 0.2), (1.0, 0.3)):
        got = call(fn, mu1.clone(), var1, mu2.clone(), var2)
        want = _gaussian_kl(mu1, var1, mu2, var2)
        if close(got, want):
            continue
        d2 = ((mu1 - mu2) ** 2)
        arr = as_array(got)
        hint = ""
        if arr.size == 1:
            hint = " Return one KL per example, shape (4,): sum over the data dimensions only, not over the batch."
        elif close(got, want / 3) or close(got, 0.5 * (var1 / var2 + d2.mean(-1) / var2 - 1 + math.log(var2 / var1))):
            hint = " Sum over the dimensions, not the mean: the KL of independent coordinates adds up."
        elif close(got, _gaussian_kl(mu2, var2, mu1, var1)):
            hint = (" That is KL(N(mu2, var2) || N(mu1, var1)): the KL is not symmetric, and the first argument is "
                    "the distribution the expectation is taken under.")
        elif close(got, 2 * want):
            hint = " You are missing the factor 1/2."
        elif close(got, _gaussian_kl(mu1, var1 ** 2, mu2, var2 ** 2)):
            hint = " var1 and var2 are variances already; do not square them."
        elif close(got, 0.5 * (3 * var1 / var2 + d2.sum(-1) / var2 - 3)):
            hint = " The log-determinant term D log(var2 / var1) is missing (it vanishes only when var1 = var2)."
        elif close(got, d2.sum(-1) / (2 * var2)):
            hint = (" That is the equal-variance KL ||mu1 - mu2||^2 / (2 var); with var1 != var2 the variance terms "
                    "D (var1/var2 - 1 + log(var2/var1)) / 2 add to it.")
        return False, f"for var1={var1}, var2={var2} your KL is {fmt(got)} but should be {fmt(want)}.{hint}"
    return True, ("KL of isotropic Gaussians in D dimensions: (D var1/var2 + ||mu1 - mu2||^2/var2 - D + D log(var2/var1)) / 2; "
                  "with equal variances it is ||mu1 - mu2||^2 / (2 var), the DDPM loss.")


# -- 8. derivation: the ELBO weight of the eps-form -------------------------------------------------------------
def _elbo_weight(i: int, betas: torch.Tensor) -> torch.Tensor:
    """w_i with KL(p(x_{i-1} | x_i, x0) || N(mu_phi, sigma^2(i) I)) = w_i ||eps - eps_phi||^2, 2 <= i <= L."""
    ab = _alpha_bars(betas)
    return betas[i - 1] ** 2 / (2 * (1 - betas[i - 1] ** 2) * (1 - ab[i - 1] ** 2))


@checker("elbo_weight", "02")
def check_elbo_weight(fn: Any) -> tuple[bool, str]:
    """fn(i, betas) -> w_i such that the i-th diffusion term of the ELBO is w_i ||eps - eps_phi||^2 (2 <= i <= L)."""
    ab = _alpha_bars(_BETAS)
    for i in (2, 5, 10):
        got = as_scalar(call(fn, i, _BETAS.clone()), "one number w_i for the step i")
        want = float(_elbo_weight(i, _BETAS))
        if math.isclose(got, want, rel_tol=1e-4):
            continue
        b2, a2 = float(_BETAS[i - 1] ** 2), float(1 - _BETAS[i - 1] ** 2)
        s2 = float((1 - ab[i - 1] ** 2) / (1 - ab[i] ** 2) * _BETAS[i - 1] ** 2)     # sigma^2(i)
        one_minus = float(1 - ab[i] ** 2)
        c0 = float(ab[i - 1] * _BETAS[i - 1] ** 2 / (1 - ab[i] ** 2))
        near = lambda v, got=got: math.isclose(got, v, rel_tol=1e-4)  # noqa: E731
        hint = (" Write mu - mu_phi through eps - eps_phi with Eq. 2.2.9, then divide its square by 2 sigma^2(i) "
                "(Lemma 2.2.2's variance).")
        if near(2 * want):
            hint = " You are missing the factor 1/2 of the Gaussian KL."
        elif near(b2 ** 2 / (2 * s2 * one_minus)):
            hint = " The mean carries a factor 1 / alpha_i (Eq. 2.2.9), so its square brings 1 / alpha_i^2."
        elif near(b2 ** 2 / (2 * math.sqrt(s2) * a2 * one_minus)):
            hint = " Divide by 2 sigma^2(i), the variance, not by the standard deviation sigma(i)."
        elif near(b2 / (2 * s2 * math.sqrt(a2) * float(1 - ab[i]))):
            hint = (" That is Ho et al.'s weight beta_t^2 / (2 sigma_t^2 alpha_t (1 - alpha_bar_t)) with the book's "
                    "symbols: Ho's beta, alpha, alpha_bar are the squares of the book's.")
        elif near(c0 ** 2 / (2 * s2)):
            hint = (" That is the weight of ||x0 - x0_phi||^2 (the x0-form); in eps-form convert with "
                    "x0 - x0_phi = -sqrt(1 - alpha_bar_i^2) / alpha_bar_i (eps - eps_phi).")
        return False, f"at i={i} your weight is {got:.5g} but should be {want:.5g}.{hint}"
    return True, ("w_i = beta_i^4 / (2 sigma^2(i) alpha_i^2 (1 - alpha_bar_i^2)) = beta_i^2 / (2 alpha_i^2 "
                  "(1 - alpha_bar_{i-1}^2)): L_simple is this sum with every w_i set to one.")


# -- 9. predict then run: which reverse variance gives the tighter bound -----------------------------------------
_WHY = ("sigma^2(i) is the spread of x_{i-1} when x0 is KNOWN. The model does not know x0: its kernel "
        "should also carry its uncertainty about x0, which near the data end is as large as the noise itself, so "
        "with sigma^2(i) it is overconfident there and pays for it in the first steps. beta_i^2 is close to the "
        "true spread at those steps.")


@checker("variance_prediction", "02")
def check_variance_prediction(answer: Any) -> tuple[bool, str]:
    """answer: 'a', 'b' or 'c' -- which reverse variance gives the exact model the tighter ELBO at L = 100."""
    got = call(answer)
    key = str(got).strip().strip("()").strip().lower() if isinstance(got, str) else None
    if key not in ("a", "b", "c"):
        raise WrongAnswer(f"answer with one of the letters 'a', 'b' or 'c' (you gave {got!r})")
    if key == "b":
        return True, "right, by about 2 nats at L = 100 (run the next cells). " + _WHY
    if key == "a":
        return False, ("recorded 'a'. It is the natural guess, and the next cells show the opposite: beta_i^2 wins by "
                       "about 2 nats. " + _WHY)
    return False, ("recorded 'c'. They differ by about 2 nats at L = 100 (see the next cells); the difference sits "
                   "in the first few steps. " + _WHY)


# -- 10. the ancestral step (implement-and-reuse) ---------------------------------------------------------------
def _ancestral_step(model: Model, x_i: torch.Tensor, i: int, schedule: DiscreteSchedule, z: torch.Tensor) -> torch.Tensor:
    """One step of Eq. 2.2.14 from x_i to x_{i-1} with the standard normal draw z."""
    ab = schedule.alpha_at_steps
    beta2 = 1 - schedule.step_alphas[i - 1] ** 2
    eps_hat = model.predict(x_i, i / schedule.L, "eps")
    mean = (x_i - beta2 / torch.sqrt(1 - ab[i] ** 2) * eps_hat) / schedule.step_alphas[i - 1]
    std = torch.sqrt((1 - ab[i - 1] ** 2) / (1 - ab[i] ** 2) * beta2)
    return mean + std.to(x_i.dtype) * z


@checker("ancestral_step", "02")
def check_ancestral_step(fn: Any) -> tuple[bool, str]:
    """fn(model, x_i (B, D), i, schedule, z (B, D)) -> x_{i-1} by Eq. 2.2.14, z the step's standard normal draw."""
    x_i, z = example_pair(9, (5, 3))
    exact = _MIX3.model(_SCHED)
    ab, b2, a = _SCHED.alpha_at_steps, _SCHED.betas ** 2, _SCHED.step_alphas
    for i in (4, 10, 1):
        spy = _Spy(exact)
        got = call(fn, spy, x_i.clone(), i, _SCHED, z.clone())
        want = _ancestral_step(exact, x_i, i, _SCHED, z)
        if close(got, want):
            continue
        eps_hat = exact.predict(x_i, i / _SCHED.L, "eps")
        mean = (x_i - b2[i - 1] / torch.sqrt(1 - ab[i] ** 2) * eps_hat) / a[i - 1]
        std = torch.sqrt((1 - ab[i - 1] ** 2) / (1 - ab[i] ** 2) * b2[i - 1])
        hint = _model_hint(spy, i, _SCHED.L)
        if not hint:
            if close(got, mean):
                hint = " That is the mean alone: add the noise sigma(i) z of Eq. 2.2.14 (it is what keeps the spread)."
            elif close(got, mean + _SCHED.betas[i - 1] * z):
                hint = (" The noise is scaled by beta_i, the forward step's std (Ho et al.'s other choice); Eq. 2.2.14 "
                        "uses sigma(i), the standard deviation of Lemma 2.2.2's posterior.")
            elif close(got, mean + std ** 2 * z):
                hint = " Scale z by the standard deviation sigma(i), not the variance sigma^2(i)."
            elif close(got, (x_i + b2[i - 1] / torch.sqrt(1 - ab[i] ** 2) * eps_hat) / a[i - 1] + std * z):
                hint = " Sign slip: subtract the noise term, the mean moves x_i against eps_hat."
            elif close(got, (x_i - _SCHED.betas[i - 1] / torch.sqrt(1 - ab[i] ** 2) * eps_hat) / a[i - 1] + std * z):
                hint = " The weight on eps_hat has beta_i^2, not beta_i: the book's beta is a standard deviation."
            elif close(got, (x_i - b2[i - 1] / torch.sqrt(1 - ab[i]) * eps_hat) / a[i - 1] + std * z):
                hint = " The noise scale of x_i is sqrt(1 - alpha_bar_i^2), not sqrt(1 - alpha_bar_i) (the slip of §3.4)."
            elif i > 1 and as_array(got).shape == tuple(x_i.shape) and \
                    not close(got, call(fn, _Spy(exact), x_i.clone(), i, _SCHED, z.clone())):
                hint = (" Two calls with the same x_i and z gave different points: use the draw z you are given, not a "
                        "fresh torch.randn (the sampler passes z in, so that runs can be compared).")
        return False, f"at i={i} your x_(i-1)[0] is {fmt(as_array(got)[0])} but should be {fmt(want[0])}.{hint}"
    return True, "Eq. 2.2.14: denoise (the eps-mean), then re-noise with sigma(i) z. At i = 1, sigma(1) = 0."


# -- the package's versions the later cells fall back on -----------------------------------------------------------
_REFERENCES: dict[str, Callable] = {"vae_kl": _vae_kl, "simple_loss": _simple_loss, "gaussian_kl": _gaussian_kl,
                                    "elbo_weight": _elbo_weight, "ancestral_step": _ancestral_step,
                                    "eps_mean": _eps_mean}


use = make_use(_REFERENCES)   # use(name, answer): the learner's function, or the package's while a stub
