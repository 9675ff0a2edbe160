"""Chapter 02 (VAE to DDPM): the VAE's KL, DDPM's alpha_bar, posterior and eps-mean, Gaussian KLs (§2.1-2.2).

The betas follow the book: beta_i is a standard deviation (Eq. 2.2.1), alpha_i = sqrt(1 - beta_i^2).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..schedules import DiscreteSchedule
from ..utils import randn
from ._base import CPU, as_array, as_scalar, call, checker, close, example_pair, fmt

__all__ = ["check_alpha_bar", "check_ddpm_posterior", "check_eps_mean", "check_gaussian_kl", "check_vae_kl"]

_BETAS = torch.linspace(0.05, 0.4, 10, dtype=torch.float64, device=CPU)


@checker("alpha_bar", "02")
def check_alpha_bar(fn: Any) -> tuple[bool, str]:
    """fn(betas (L,)) -> alpha_bar_i for i = 1..L, the book's convention (beta is a std, Eq. 2.2.1)."""
    got = call(fn, _BETAS.clone())
    want = DiscreteSchedule(_BETAS, beta_is="std").alpha_at_steps[1:]
    if not close(got, want):
        hint = ""
        ho = torch.cumprod(1 - _BETAS, 0)
        if close(got, ho) or close(got, ho.sqrt()):
            hint = " That is Ho et al.'s convention (beta a variance). In the book beta_i is a standard deviation: alpha_i = sqrt(1 - beta_i^2)."
        elif close(got, want ** 2):
            hint = " You returned alpha_bar^2 (the signal variance); take the square root."
        elif as_array(got).shape != tuple(want.shape):
            hint = f" Return one value per step, shape ({len(_BETAS)},)."
        return False, f"for betas = linspace(0.05, 0.4, 10) you gave {fmt(got)} but should give {fmt(want)}.{hint}"
    return True, "alpha_bar_i = prod_k sqrt(1 - beta_k^2): the signal left after i steps."


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


@checker("ddpm_posterior", "02")
def check_ddpm_posterior(fn: Any) -> tuple[bool, str]:
    """fn(x_i, x0, i, betas) -> (mean, variance) of p(x_{i-1} | x_i, x0) (Lemma 2.2.2, Eq. 2.2.4), 1 <= i <= L."""
    x0, x_i = example_pair(3)
    for i in (1, 4, 10):
        got = call(fn, x_i, x0, i, _BETAS.clone())
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return False, "return a pair (mean, variance)"
        mean, var = _post(x_i, x0, i, _BETAS)
        if not close(got[0], mean):
            c0, ci = _weights(i, _BETAS)
            hint = ""
            if close(got[0], ci * x0 + c0 * x_i):
                hint = " The two weights are swapped."
            elif close(got[0], _post(x_i, x0, i, _BETAS ** 0.5)[0]):
                hint = " That is Ho et al.'s convention (beta a variance); in the book beta_i is a standard deviation."
            return False, (f"at i={i} your mean[0] is {fmt(as_array(got[0])[0])} but should be {fmt(mean[0])}.{hint} "
                           "Check the two weights: alpha_bar_{i-1} beta_i^2 / (1 - alpha_bar_i^2) on x0, "
                           "(1 - alpha_bar_{i-1}^2) alpha_i / (1 - alpha_bar_i^2) on x_i (mind i-1 vs i indexing).")
        got_var = float(as_array(got[1]).ravel()[0]) if as_array(got[1]).size else math.nan
        if not close(np.asarray([got_var]), np.asarray([float(var)])):
            hint = ""
            if math.isclose(got_var, math.sqrt(float(var)), rel_tol=1e-4):
                hint = " (that is the std; return the variance)"
            elif math.isclose(got_var, float(_BETAS[i - 1] ** 2), rel_tol=1e-4):
                hint = (" (that is beta_i^2, the forward step's variance; the posterior's is smaller by the factor "
                        "(1 - alpha_bar_{i-1}^2) / (1 - alpha_bar_i^2))")
            return False, f"at i={i} your variance is {fmt(got[1])} but should be {fmt(var)}{hint}."
    return True, "Lemma 2.2.2 reproduced: a Gaussian in x_{i-1} once x0 is known. At i=1 the variance is 0."


@checker("eps_mean", "02")
def check_eps_mean(fn: Any) -> tuple[bool, str]:
    """fn(x_i, eps_hat, i, betas) -> mu = (x_i - beta_i^2 / sqrt(1 - alpha_bar_i^2) eps_hat) / alpha_i (Eq. 2.2.9)."""
    x0, eps = example_pair(4)
    ab = _alpha_bars(_BETAS)
    for i in (1, 5, 10):
        b, a = _BETAS[i - 1], torch.sqrt(1 - _BETAS[i - 1] ** 2)
        x_i = ab[i] * x0 + torch.sqrt(1 - ab[i] ** 2) * eps
        got = call(fn, x_i, eps, i, _BETAS.clone())
        want, _ = _post(x_i, x0, i, _BETAS)   # with the true eps, the eps-mean IS the posterior mean
        if not close(got, want):
            hint = ""
            coef = torch.sqrt(1 - ab[i] ** 2)
            if close(got, (x_i - b / coef * eps) / a):
                hint = " The weight on eps is beta_i^2 / sqrt(1 - alpha_bar_i^2): the book's beta is a std."
            elif close(got, x_i - b ** 2 / coef * eps):
                hint = " Divide the whole bracket by alpha_i = sqrt(1 - beta_i^2)."
            elif close(got, (x_i + b ** 2 / coef * eps) / a):
                hint = " Subtract the noise term: the mean moves x_i against eps_hat."
            elif close(got, (x_i - coef * eps) / ab[i]):
                hint = " That is the clean estimate x0_hat; the mean of x_{i-1} takes one step from x_i, not all of them."
            return False, (f"at i={i} your mean[0] is {fmt(as_array(got)[0])} but should be {fmt(want[0])}.{hint} "
                           "With the true eps it must equal the posterior mean of Lemma 2.2.2; "
                           "note 1 - alpha_i^2 = beta_i^2.")
    return True, "the eps-parameterised mean equals the posterior mean when eps_hat is the true noise."


@checker("gaussian_kl", "02")
def check_gaussian_kl(fn: Any) -> tuple[bool, str]:
    """fn(mu1, mu2, var) -> KL(N(mu1, var I) || N(mu2, var I)) = ||mu1 - mu2||^2 / (2 var)."""
    x0, eps = example_pair(5)
    for var in (0.1, 1.0):
        got = as_scalar(call(fn, x0[0], eps[0], var), "one number: sum the squared differences over the dimensions")
        d2 = ((x0[0] - eps[0]) ** 2)
        want = float(d2.sum() / (2 * var))
        if not math.isclose(got, want, rel_tol=1e-5):
            hint = ""
            if math.isclose(got, 2 * want, rel_tol=1e-4):
                hint = " Divide by 2 * variance."
            elif math.isclose(got, float(d2.mean() / (2 * var)), rel_tol=1e-4):
                hint = " Sum over the dimensions, not the mean: the KL of independent coordinates adds up."
            elif math.isclose(got, float(d2.sum().sqrt() / (2 * var)), rel_tol=1e-4):
                hint = " Use the squared distance ||mu1 - mu2||^2, not the distance."
            return False, f"for var={var} your KL is {got:.4g} but should be {want:.4g}.{hint}"
    return True, "equal-variance Gaussians: the KL is a scaled squared distance between means, the DDPM loss."


@checker("vae_kl", "02")
def check_vae_kl(fn: Any) -> tuple[bool, str]:
    """fn(mu (B, d), logvar (B, d)) -> (B,) KL(N(mu, diag exp(logvar)) || N(0, I))."""
    g = torch.Generator().manual_seed(6)
    mu = randn((4, 3), generator=g, dtype=torch.float64)
    logvar = 0.5 * randn((4, 3), generator=g, dtype=torch.float64)
    got = call(fn, mu, logvar)
    want = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)
    if not close(got, want):
        hint = ""
        if close(got, want.sum()) or close(got, want.mean()):
            hint = " Return one KL per example (sum over latent dims only)."
        elif close(got, 2 * want):
            hint = " You are missing the factor 1/2."
        elif close(got, want + 0.5 * mu.shape[1]):
            hint = " Each latent dimension contributes a -1 inside the bracket."
        elif close(got, 0.5 * (mu ** 2 + logvar.exp() - 1 + logvar).sum(-1)):
            hint = " The log term enters with a minus sign: ... - 1 - logvar."
        return False, f"your KL is {fmt(got)} but should be {fmt(want)}.{hint}"
    return True, "the closed-form Gaussian KL of the VAE is right."
