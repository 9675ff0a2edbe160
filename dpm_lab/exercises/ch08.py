"""Chapter 08 (guidance and inverse problems): the checks of §8.1-8.4 and the package's versions later cells use.

Kinds: implement-and-reuse (tilted_logp: later cells build the tilted density's grid law from it; dps_guidance:
later cells sample with it), derivations checked numerically (measurement_posterior_weights: the posterior
weight of a component given a measurement; classifier_gradient, Bayes' rule for the classifier's gradient), a
prediction (tilted_prediction: does CFG with omega = 3 sample the tilted density?) and a find-the-bug (cfg_port: a guidance line ported from a
code base that writes the weight as w = omega - 1).
Course convention: t = 0 data, x_t = alpha_t x0 + sigma_t eps; guidance weight omega as in the book (1 = conditional).
"""
from __future__ import annotations

from typing import Any

import torch

from .. import guidance
from ..gmm import GaussianMixture
from ..param import Model
from ..recipes import guide
from ..schedules import VPLinear
from ..utils import randn
from ._base import WrongAnswer, as_array, call, checker, close, fmt, make_use

__all__ = ["check_tilted_logp", "check_dps_guidance", "check_measurement_posterior_weights",
           "check_classifier_gradient", "check_tilted_prediction", "check_cfg_port", "use", "grid_law", "dps_model",
           "TILTED_CHOICES", "ported_cfg", "cfg_model"]

_VP = VPLinear()
_MIX3 = GaussianMixture([0.5, 0.3, 0.2], [[-1.0, 0.5, 0.2], [1.5, 1.0, -0.3], [0.5, -1.5, 0.8]],
                        stds=[0.6, 0.4, 0.5], labels=[0, 1, 1])


def _same_shape(got: Any, want: torch.Tensor, what: str) -> None:
    a = as_array(got)
    if a.shape != tuple(want.shape):
        raise WrongAnswer(f"{what} should have shape {tuple(want.shape)}, yours has shape {a.shape}")


def _points(seed: int, n: int = 6, d: int = 2) -> torch.Tensor:
    return 1.5 * randn((n, d), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# -- 1. the tilted density (implement-and-reuse) ----------------------------------------------------
def _tilted_logp(mix: GaussianMixture, x: torch.Tensor, c: int, omega: float) -> torch.Tensor:
    return omega * mix.log_prob(x, c=c) + (1 - omega) * mix.log_prob(x)


@checker("tilted_logp", "08")
def check_tilted_logp(fn: Any) -> tuple[bool, str]:
    """fn(mix, x (B, D), c, omega) -> (B,) log of the tilted density p(x) p(c | x)^omega, up to a constant."""
    for mix, d in ((guide.mixture(), 2), (_MIX3, 3)):
        x = _points(81, 6, d)
        for c, omega in ((0, 3.0), (1, 0.5), (1, 1.0)):
            got = call(fn, mix, x, c, omega)
            want = _tilted_logp(mix, x, c, omega)
            _same_shape(got, want, "the log density")
            a = torch.as_tensor(as_array(got))
            if close(a - a[0], want - want[0], 1e-6, 1e-8):          # equal up to an additive constant
                continue
            if not torch.isfinite(a).all():
                return False, (f"your log density is not finite for c = {c}, omega = {omega}: for omega > 1 the weight "
                               "1 - omega is negative, so a weighted SUM of densities can go negative. The tilted "
                               "density is a product of powers; its log is a weighted sum of log densities.")
            lc, lu = mix.log_prob(x, c=c), mix.log_prob(x)
            for wrong, hint in (
                    (omega * lc + lu, "the unconditional factor has exponent 1 - omega, not 1: at omega = 1 the "
                                      "tilted density must be p(x | c) itself."),
                    ((1 - omega) * lc + omega * lu, "the exponents are swapped: omega belongs to p(x | c)."),
                    (omega * lc - (1 - omega) * lu, "the sign of the unconditional term: its exponent is 1 - omega "
                                                    "(negative for omega > 1), so it enters as + (1 - omega) log p(x)."),
                    (torch.exp(want), "return the LOG density (the grid normalises it later)."),
                    (omega * (lc - lu), "that is log p(c | x)^omega alone (up to a constant): the tilted density keeps "
                                        "the data factor p(x) in front."),
            ):
                if close(a - a[0], wrong - wrong[0], 1e-6, 1e-8):
                    return False, hint
            return False, (f"for c = {c}, omega = {omega} (D = {d}): expected {fmt(want - want[0])} (relative to the "
                           f"first point), got {fmt(a - a[0])}.")
    return True, "omega log p(x | c) + (1 - omega) log p(x) matches, up to a constant, in 2-D and 3-D."


def grid_law(tilted_logp: Any, mix: GaussianMixture, c: int, omega: float) -> guide.GridLaw:
    """The grid law (recipes.guide.GridLaw) of a tilted log density given as fn(mix, x, c, omega)."""
    return guide._law(lambda x: tilted_logp(mix, x, c, omega), 3.5, 40)


# -- 2. the DPS guidance term (implement-and-reuse) -------------------------------------------------
def _dps(model: Model, x_t: torch.Tensor, t: float, A: torch.Tensor, y: torch.Tensor, sigma_y: float) -> torch.Tensor:
    return guidance.DPS(model, guidance.matrix_operator(A), y, sigma_y).guidance(x_t, t)


def _dps_cases():
    mix = guide.mixture()
    yield mix.model(_VP), _points(82), 0.4, torch.tensor([[1.0, 0.0]], dtype=torch.float64), \
        torch.tensor([0.6], dtype=torch.float64), 0.1
    yield _MIX3.model(_VP), _points(83, 5, 3), 0.25, torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, -1.0]],
                                                                  dtype=torch.float64), \
        torch.tensor([0.2, -0.3], dtype=torch.float64), 0.3


@checker("dps_guidance", "08")
def check_dps_guidance(fn: Any) -> tuple[bool, str]:
    """fn(model, x_t (B, D), t, A (M, D), y (M,), sigma_y) -> (B, D) the DPS approximation of grad log p_t(y | x_t)."""
    for model, x, t, A, y, sy in _dps_cases():
        got = call(fn, model, x, t, A, y, sy)
        want = _dps(model, x, t, A, y, sy)
        if close(got, want, 1e-5, 1e-7):
            continue
        _same_shape(got, want, "the guidance term")
        a = as_array(got)
        x0 = model.predict(x, t, "x0")
        alpha = float(_VP.alpha(t))
        if close(a, (y - x0 @ A.T) @ A / sy ** 2, 1e-5, 1e-7) or close(a, (y - x0 @ A.T) @ A / sy ** 2 / alpha,
                                                                         1e-5, 1e-7):
            return False, ("you took the gradient with respect to x0_hat (or replaced the denoiser's Jacobian by a "
                           "constant): DPS differentiates through the denoiser, d x0_hat / d x_t, so back-propagate "
                           "the loss from x0_hat(x_t) to x_t.")
        if close(a, (y - x @ A.T) @ A / sy ** 2, 1e-5, 1e-7):
            return False, "you used x_t in the residual; DPS measures y - A x0_hat(x_t), the denoised estimate."
        if close(a, -as_array(want), 1e-5, 1e-7):
            return False, ("the sign is flipped: the term is the gradient of the LOG-likelihood, "
                           "-||y - A x0_hat||^2 / (2 sigma_y^2), which points toward agreement with y.")
        if close(a, as_array(want) * sy ** 2, 1e-5, 1e-7) or close(a, as_array(want) * sy, 1e-5, 1e-7):
            return False, "the scale is missing: the Gaussian likelihood divides the squared residual by sigma_y^2."
        if close(a, as_array(want) / y.numel(), 1e-5, 1e-7) or close(a, as_array(want) / (y.numel() * x.shape[0]),
                                                                       1e-5, 1e-7):
            return False, ("you averaged the squared residual: the log-likelihood SUMS over the measured entries (and "
                           "each sample's gradient must not shrink with the batch size), so use .sum(), not .mean().")
        if close(a, as_array(want) / 2, 1e-5, 1e-7) or close(a, as_array(want) * 2, 1e-5, 1e-7):
            return False, "off by a factor 2: the gradient of ||r||^2 / (2 sigma_y^2) has no leftover 2."
        return False, f"in {x.shape[1]}-D at t = {t}: expected {fmt(want)}, got {fmt(got)}."
    return True, "your DPS term matches dl.guidance.DPS in 2-D (inpainting) and 3-D (two measurements)."


class _DPSModel(guidance._Measured):
    def __init__(self, fn, model, A, y, sigma_y, scale=1.0):
        super().__init__(model, guidance.matrix_operator(A), y, sigma_y, scale)
        self.fn, self.matrix = fn, torch.as_tensor(A, dtype=torch.float64)

    def guidance(self, x_t, t, c=None):
        return self.fn(self.model, x_t, t, self.matrix, self.y, self.sigma_y)


def dps_model(dps_guidance: Any, model: Model, A: torch.Tensor, y: torch.Tensor, sigma_y: float) -> Model:
    """A sampler-ready Model: the prior's score plus a DPS term given as fn(model, x_t, t, A, y, sigma_y)."""
    return _DPSModel(dps_guidance, model, A, y, sigma_y)


# -- 3. the posterior weight of a component (derivation) ------------------------------------------
def _log_normal(y, mean, cov):
    return torch.distributions.MultivariateNormal(mean, cov).log_prob(y)


def _weights(w, mu, y, A, covs):
    lw = torch.log(w) + torch.stack([_log_normal(y, A @ mu[k], covs[k]) for k in range(len(w))])
    return torch.softmax(lw, 0), lw


@checker("measurement_posterior_weights", "08")
def check_measurement_posterior_weights(fn: Any) -> tuple[bool, str]:
    """fn(w (K,), mu (K, D), S (K, D, D), A (M, D), y (M,), sigma_y) -> (K,) p(component k | y)."""
    g = torch.Generator().manual_seed(84)
    cases = []
    for K, D, M in ((3, 2, 1), (4, 3, 2)):
        mu = randn((K, D), generator=g, dtype=torch.float64)
        L = 0.5 * randn((K, D, D), generator=g, dtype=torch.float64)
        S = L @ L.transpose(1, 2) + 0.3 * torch.eye(D, dtype=torch.float64)
        w = torch.softmax(randn((K,), generator=g, dtype=torch.float64), 0)
        A = randn((M, D), generator=g, dtype=torch.float64)
        cases.append((w, mu, S, A, randn((M,), generator=g, dtype=torch.float64), 0.4))
    for w, mu, S, A, y, sy in cases:
        got = call(fn, w, mu, S, A, y, sy)
        want = GaussianMixture(w, mu, S).posterior(A, y, sy).weights
        if close(got, want, 1e-6, 1e-9):
            continue
        _same_shape(got, want, "the weights")
        a = as_array(got)
        I = torch.eye(A.shape[0], dtype=torch.float64)
        no_prior, _ = _weights(w, mu, y, A, [sy ** 2 * I] * len(w))
        no_noise, _ = _weights(w, mu, y, A, [A @ S[k] @ A.T for k in range(len(w))])
        _, raw = _weights(w, mu, y, A, [A @ S[k] @ A.T + sy ** 2 * I for k in range(len(w))])
        if close(a, no_prior, 1e-6, 1e-9):
            return False, ("the evidence of component k forgets its own spread: y = A x0 + noise with x0 ~ N(mu_k, S_k) "
                           "has covariance A S_k A^T + sigma_y^2 I, not sigma_y^2 I alone.")
        if close(a, no_noise, 1e-6, 1e-9):
            return False, "the measurement noise is missing from the evidence covariance: add sigma_y^2 I."
        if close(a, torch.log(want), 1e-6, 1e-9):
            return False, "those are the LOG posterior weights: return the probabilities themselves (they sum to 1)."
        if close(a, w, 1e-6, 1e-9):
            return False, ("those are the prior weights w_k: the measurement must re-weight each component by how "
                           "well it explains y (its evidence).")
        if close(a, raw.exp(), 1e-6, 1e-9) or close(a, raw, 1e-6, 1e-9):
            return False, "normalise: the posterior weights are probabilities over the components and sum to 1."
        if close(a, torch.softmax(torch.stack([_log_normal(y, A @ mu[k], A @ S[k] @ A.T + sy ** 2 * I)
                                                for k in range(len(w))]), 0), 1e-6, 1e-9):
            return False, "the prior weight w_k is missing: posterior weight = prior weight x evidence, normalised."
        return False, f"for K = {len(w)}, M = {A.shape[0]}: expected {fmt(want)}, got {fmt(got)}."
    return True, "w_k N(y; A mu_k, A S_k A^T + sigma_y^2 I) / p(y) matches the exact posterior mixture's weights."


# -- 4. the classifier's gradient by Bayes' rule (derivation) -------------------------------------
@checker("classifier_gradient", "08")
def check_classifier_gradient(fn: Any) -> tuple[bool, str]:
    """fn(mix, x_t (B, D), t, schedule, c) -> (B, D) grad_x log p_t(c | x_t), from the mixture's score fields."""
    for mix, d in ((guide.mixture(), 2), (_MIX3, 3)):
        x = _points(85, 5, d)
        for t, c in ((0.3, 0), (0.6, 1)):
            got = call(fn, mix, x, t, _VP, c)
            with torch.enable_grad():
                xx = x.clone().requires_grad_(True)
                want, = torch.autograd.grad(torch.log(mix.class_posterior(xx, t, _VP)[:, c]).sum(), xx)
            if close(got, want, 1e-6, 1e-8):
                continue
            _same_shape(got, want, "the gradient")
            a = as_array(got)
            sc, su = mix.score(x, t, _VP, c=c), mix.score(x, t, _VP)
            if close(a, su - sc, 1e-6, 1e-8):
                return False, "the sign is flipped: log p(c | x) = log p(x | c) - log p(x) + log p(c)."
            if close(a, sc + su, 1e-6, 1e-8):
                return False, ("the unconditional score enters with a minus sign: "
                               "log p(c | x) = log p(x | c) - log p(x) + const.")
            if close(a, su, 1e-6, 1e-8):
                return False, ("that is the unconditional score; the classifier's gradient is the DIFFERENCE between "
                               "the conditional and the unconditional scores.")
            if close(a, sc, 1e-6, 1e-8):
                return False, ("that is the conditional score itself; the classifier's gradient is what the "
                               "condition adds to the unconditional score.")
            p = mix.class_posterior(x, t, _VP)[:, c:c + 1]
            if close(a, p * (sc - su), 1e-6, 1e-8):
                return False, "that is grad p(c | x), not grad log p(c | x): divide by p(c | x) (or take the log first)."
            return False, f"in {d}-D at t = {t}, c = {c}: expected {fmt(want)}, got {fmt(got)}."
    return True, "score(x | c) - score(x) matches autograd of log p_t(c | x_t) in 2-D and 3-D."


# -- 5. does CFG with omega = 3 sample the tilted density? (predict-then-run) ---------------------
TILTED_CHOICES = {
    "a": "yes, exactly: the guided score is the score of the tilted density at t = 0",
    "b": "yes, up to the solver's error, which vanishes as the number of steps grows",
    "c": "no: it samples p(x | c) itself; guidance only changes how fast the sampler gets there",
    "d": "no: its samples favour class c more than p(x | c) does, but their law is not the tilted density",
}


@checker("tilted_prediction", "08")
def check_tilted_prediction(answer: Any) -> tuple[bool, str]:
    """answer: one of the letters of TILTED_CHOICES (a string)."""
    a = call(answer)
    if not isinstance(a, str) or a.strip().lower() not in TILTED_CHOICES:
        raise WrongAnswer(f"answer with one letter of {sorted(TILTED_CHOICES)} (a string), got {a!r}")
    a = a.strip().lower()
    if a == "d":
        return True, ("recorded 'd'. The guided score is omega s(x_t | c) + (1 - omega) s(x_t), a mixture of scores at "
                      "every t, and the path of tilted densities p_t(x) p_t(c|x)^omega / Z_t does not solve the "
                      "forward equation with it (§8.1's remark): the cells below measure the gap.")
    hints = {"a": ("recorded 'a'. The guided score equals the tilted density's score at each t separately, but the "
                   "family of tilted p_t is not carried by the PF-ODE of those scores: the end law differs (measured below)."),
             "b": ("recorded 'b'. The gap is not a discretisation error: a cell below runs an accurate solver with "
                   "200 steps and still finds it, far above the floor."),
             "c": ("recorded 'c'. At omega = 1 that is true, but omega = 3 changes the field itself: the samples move "
                   "toward where p(c | x) is high, and the spread falls (measured below).")}
    return False, hints[a]


# -- 6. a CFG line ported from the w = omega - 1 convention (find-the-bug) ------------------------
def ported_cfg(eps_c: torch.Tensor, eps_u: torch.Tensor, omega: float) -> torch.Tensor:
    """The port under suspicion: a code base that writes the guided noise as eps_c + w (eps_c - eps_u)."""
    return eps_c + omega * (eps_c - eps_u)


@checker("cfg_port", "08")
def check_cfg_port(fn: Any) -> tuple[bool, str]:
    """fn(eps_c (B, D), eps_u (B, D), omega) -> (B, D) the guided noise prediction in the book's omega convention."""
    g = torch.Generator().manual_seed(86)
    for shape in ((4, 2), (3, 1, 4, 4)):
        ec, eu = randn(shape, generator=g, dtype=torch.float64), randn(shape, generator=g, dtype=torch.float64)
        for omega in (0.0, 1.0, 3.0):
            got = call(fn, ec, eu, omega)
            want = omega * ec + (1 - omega) * eu
            if close(got, want):
                continue
            _same_shape(got, want, "the guided noise")
            a = as_array(got)
            if close(a, ported_cfg(ec, eu, omega)):
                return False, ("this is still the port: with it omega = 1 is not the conditional model (try omega = 1: "
                               "you get 2 eps_c - eps_u). Its weight is w = omega - 1.")
            if close(a, eu + (omega - 1) * (ec - eu)):
                return False, ("you wrote w = omega - 1 but kept the unconditional base; in that form the base is the "
                               "conditional prediction: eps_c + (omega - 1)(eps_c - eps_u).")
            if omega != 0.5 and close(a, omega * (ec + eu)):
                return False, ("both predictions got the weight omega: the two weights must sum to one (omega = 0 must "
                               "give eps_u itself).")
            if close(a, omega * eu + (1 - omega) * ec):
                return False, "the roles are swapped: omega multiplies the CONDITIONAL prediction."
            if close(a, ec + (omega + 1) * (ec - eu)):
                return False, "w = omega - 1, not omega + 1: at omega = 1 there must be no extra push."
            return False, f"for omega = {omega}, shape {shape}: expected {fmt(want)}, got {fmt(got)}."
    return True, "omega eps_c + (1 - omega) eps_u: omega = 0 unconditional, 1 conditional, in any shape."


class _Combined(Model):
    kind = "eps"

    def __init__(self, combine, mix: GaussianMixture, omega: float, c: int):
        self.combine, self.mix, self.omega, self.c, self.schedule = combine, mix, omega, c, _VP

    def raw(self, x_t, t, c=None):
        return self.combine(self.mix.eps(x_t, t, _VP, c=self.c), self.mix.eps(x_t, t, _VP), self.omega)


def cfg_model(combine: Any, mix: GaussianMixture, omega: float, c: int) -> Model:
    """A sampler-ready Model (VP schedule) whose eps is combine(eps(x_t | c), eps(x_t), omega) on the exact mixture."""
    return _Combined(combine, mix, omega, c)


use = make_use({"tilted_logp": _tilted_logp, "dps_guidance": _dps, "cfg_port": lambda ec, eu, omega:
                omega * ec + (1 - omega) * eu})
