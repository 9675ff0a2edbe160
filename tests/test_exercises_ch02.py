"""Chapter 02's checks (dpm_lab/exercises/ch02.py): the right answer passes, each typical wrong answer fails
with its specific hint, a stub is "not attempted yet", and `use` falls back on the package's version only for
a stub.  The betas are the book's (standard deviations, Eq. 2.2.1); the solutions here are written out by hand."""
import math

import pytest
import torch
from exercise_suite import chapter_suite

import dpm_lab as dl
from dpm_lab.exercises import ch02


def alpha_bars(b):
    """alpha_bar_0 = 1, alpha_bar_1, ..., alpha_bar_L for standard-deviation betas."""
    return torch.cat([torch.ones(1, dtype=b.dtype, device=b.device), torch.cumprod(torch.sqrt(1 - b ** 2), 0)])


def posterior(x_i, x0, i, b):
    ab = alpha_bars(b)
    mean = (ab[i - 1] * b[i - 1] ** 2 / (1 - ab[i] ** 2) * x0
            + (1 - ab[i - 1] ** 2) * torch.sqrt(1 - b[i - 1] ** 2) / (1 - ab[i] ** 2) * x_i)
    return mean, (1 - ab[i - 1] ** 2) / (1 - ab[i] ** 2) * b[i - 1] ** 2


def eps_mean(x_i, eps, i, b, *, square=True, noise="book", alpha=True, sign=-1):
    ab = alpha_bars(b)
    scale = torch.sqrt(1 - ab[i] ** 2) if noise == "book" else torch.sqrt(1 - ab[i])
    m = x_i + sign * (b[i - 1] ** 2 if square else b[i - 1]) / scale * eps
    return m / torch.sqrt(1 - b[i - 1] ** 2) if alpha else m


def vae_kl(mu, lv):
    return 0.5 * (mu ** 2 + lv.exp() - 1 - lv).sum(-1)


def noisy(x0, eps, i, b):
    a = alpha_bars(b)[i]
    return a * x0 + torch.sqrt(1 - a ** 2) * eps


def simple_loss(model, x0, i, eps, s, *, xi="book", target="eps", reduce="sum", t_shift=0, kind="eps"):
    ab = s.alpha_at_steps.to(x0.dtype)[i][:, None]
    if xi == "book":
        x_i = ab * x0 + torch.sqrt(1 - ab ** 2) * eps
    elif xi == "sqrt_slip":
        x_i = ab * x0 + torch.sqrt(1 - ab) * eps
    else:                                                    # Ho's alphas_cumprod used as the book's alpha_bar
        ac = s.alphas_cumprod[i - 1][:, None]
        x_i = ac * x0 + torch.sqrt(1 - ac ** 2) * eps
    pred = model.predict(x_i, (i - t_shift) / s.L, kind) if kind != "raw" else model(x_i, i / s.L)
    err = (pred - (eps if target == "eps" else x0)) ** 2
    return err.sum(-1) if reduce == "sum" else err.mean(-1)


def gaussian_kl(m1, v1, m2, v2):
    d = m1.shape[-1]
    return 0.5 * (d * v1 / v2 + ((m1 - m2) ** 2).sum(-1) / v2 - d + d * math.log(v2 / v1))


def elbo_weight(i, b):
    ab = alpha_bars(b)
    s2 = (1 - ab[i - 1] ** 2) / (1 - ab[i] ** 2) * b[i - 1] ** 2
    return b[i - 1] ** 4 / (2 * s2 * (1 - b[i - 1] ** 2) * (1 - ab[i] ** 2))


def step(model, x_i, i, s, z, *, noise="sigma", sign=-1, square=True, slip=False, t_shift=0, kind="eps"):
    ab, b = s.alpha_at_steps, s.betas
    eps_hat = model.predict(x_i, (i - t_shift) / s.L, kind) if kind != "raw" else model(x_i, i / s.L)
    scale = torch.sqrt(1 - ab[i]) if slip else torch.sqrt(1 - ab[i] ** 2)
    mean = (x_i + sign * (b[i - 1] ** 2 if square else b[i - 1]) / scale * eps_hat) / torch.sqrt(1 - b[i - 1] ** 2)
    var = (1 - ab[i - 1] ** 2) / (1 - ab[i] ** 2) * b[i - 1] ** 2
    std = {"sigma": var.sqrt(), "none": 0.0, "beta": b[i - 1], "var": var}[noise]
    return mean + std * z


SOLUTIONS = {
    "alpha_bar": lambda b: alpha_bars(b)[1:],
    "noisy_sample": noisy,
    "ddpm_posterior": posterior,
    "eps_mean": eps_mean,
    "simple_loss": simple_loss,
    "gaussian_kl": gaussian_kl,
    "elbo_weight": elbo_weight,
    "variance_prediction": "b",
    "ancestral_step": step,
    "vae_kl": vae_kl,
}


def ho_bar(b):
    return torch.cat([torch.ones(1, dtype=b.dtype), torch.cumprod(1 - b, 0)])


# (check, wrong answer, words its message must contain)
WRONG = [
    ("alpha_bar", lambda b: torch.cumprod(1 - b, 0), ["Ho et al.'s convention"]),
    ("alpha_bar", lambda b: torch.cumprod(1 - b, 0).sqrt(), ["Ho et al.'s convention"]),
    ("alpha_bar", lambda b: alpha_bars(b)[1:] ** 2, ["alpha_bar^2 (the signal variance"]),
    ("alpha_bar", lambda b: torch.sqrt(1 - b ** 2), ["each step's alpha_i"]),
    ("alpha_bar", alpha_bars, ["one value per step, shape (10,)"]),           # alpha_bar_0 = 1 included
    ("alpha_bar", lambda b: torch.cumprod(torch.sqrt(1 - b), 0) * 0 + 0.5, ["you gave", "should give"]),
    # find the bug: the buggy line kept, Ho's formula, betas read as variances, the signal squared, a step off
    ("noisy_sample", lambda x0, e, i, b: alpha_bars(b)[i] * x0 + torch.sqrt(1 - alpha_bars(b)[i]) * e,
     ["still the buggy line", "§3.4"]),
    ("noisy_sample", lambda x0, e, i, b: alpha_bars(b)[i].sqrt() * x0 + torch.sqrt(1 - alpha_bars(b)[i]) * e,
     ["Ho et al.'s formula"]),
    ("noisy_sample", lambda x0, e, i, b: ho_bar(b)[i].sqrt() * x0 + torch.sqrt(1 - ho_bar(b)[i]) * e,
     ["reads the betas as variances"]),
    ("noisy_sample", lambda x0, e, i, b: alpha_bars(b)[i] ** 2 * x0 + torch.sqrt(1 - alpha_bars(b)[i] ** 2) * e,
     ["not its square"]),
    ("noisy_sample", lambda x0, e, i, b: noisy(x0, e, i - 1, b), ["off by one"]),
    ("noisy_sample", lambda x0, e, i, b: x0 + e, ["at i=1 your x_i[0]"]),
    # the posterior: a pair, an index slip, the std, the forward variance, swapped weights, Ho's betas, 1 - abar
    ("ddpm_posterior", lambda x_i, x0, i, b: posterior(x_i, x0, i, b)[0], ["return a pair (mean, variance)"]),
    ("ddpm_posterior", lambda x_i, x0, i, b: (posterior(x_i, x0, i + 1 if i < 10 else i, b)[0],
                                              posterior(x_i, x0, i, b)[1]), ["at i=1", "the index is off by one"]),
    ("ddpm_posterior", lambda x_i, x0, i, b: (posterior(x_i, x0, i, b)[0], posterior(x_i, x0, i, b)[1].sqrt()),
     ["at i=4", "that is the std; return the variance"]),   # at i = 1 the variance is 0 = its square root
    ("ddpm_posterior", lambda x_i, x0, i, b: (posterior(x_i, x0, i, b)[0], b[i - 1] ** 2),
     ["at i=1 your variance is 0.0025 but should be 0", "the forward step's variance"]),
    ("ddpm_posterior", lambda x_i, x0, i, b: (posterior(x_i, x0, i, b)[0],
                                              1 / (1 / b[i - 1] ** 2 + 1 / (1 - alpha_bars(b)[i - 1] ** 2))
                                              if i > 1 else posterior(x_i, x0, i, b)[1]),
     ["at i=4", "alpha_i^2 / beta_i^2"]),
    ("ddpm_posterior", lambda x_i, x0, i, b: (posterior(x_i, x0, i, b)[0], 0.5 * posterior(x_i, x0, i, b)[1] + 0.01),
     ["at i=1 your variance is 0.01 but should be 0."]),
    ("ddpm_posterior", lambda x_i, x0, i, b: (posterior(x0, x_i, i, b)[0], posterior(x_i, x0, i, b)[1]),
     ["The two weights are swapped"]),
    ("ddpm_posterior", lambda x_i, x0, i, b: posterior(x_i, x0, i, b.sqrt()), ["Ho et al.'s convention"]),
    ("ddpm_posterior", lambda x_i, x0, i, b: (
        alpha_bars(b)[i - 1] * b[i - 1] ** 2 / (1 - alpha_bars(b)[i]) * x0
        + (1 - alpha_bars(b)[i - 1]) * torch.sqrt(1 - b[i - 1] ** 2) / (1 - alpha_bars(b)[i]) * x_i,
        posterior(x_i, x0, i, b)[1]), ["not 1 - alpha_bar"]),
    # the eps-mean: beta not squared, the sqrt slip, no alpha, a sign slip, the clean estimate
    ("eps_mean", lambda x_i, e, i, b: eps_mean(x_i, e, i, b, square=False), ["the book's beta is a standard deviation"]),
    ("eps_mean", lambda x_i, e, i, b: eps_mean(x_i, e, i, b, noise="slip"), ["not sqrt(1 - alpha_bar_i)", "§3.4"]),
    ("eps_mean", lambda x_i, e, i, b: eps_mean(x_i, e, i, b, alpha=False),
     ["at i=1 your mean[0]", "Divide the whole bracket by alpha_i"]),
    ("eps_mean", lambda x_i, e, i, b: eps_mean(x_i, e, i, b, sign=+1), ["Sign slip"]),
    ("eps_mean", lambda x_i, e, i, b: (x_i - torch.sqrt(1 - alpha_bars(b)[i] ** 2) * e) / alpha_bars(b)[i],
     ["at i=5 your mean[0]", "That is the clean estimate x0_hat"]),   # right at i = 1, where x0_hat is the mean
    ("eps_mean", lambda x_i, e, i, b: x_i * 0, ["posterior mean of Lemma 2.2.2"]),
    # L_simple: mean over dims, the sqrt slip, Ho's alphas_cumprod, x0 as target, time as index, t_{i-1},
    # the network's raw output, a batch mean, a broadcasting slip
    ("simple_loss", lambda *a: simple_loss(*a, reduce="mean"), ["averaged over the data dimensions"]),
    ("simple_loss", lambda *a: simple_loss(*a, xi="sqrt_slip"), ["not sqrt(1 - alpha_bar_i)"]),
    ("simple_loss", lambda *a: simple_loss(*a, xi="ho"), ["alphas_cumprod is Ho et al.'s alpha_bar"]),
    ("simple_loss", lambda *a: simple_loss(*a, target="x0"), ["not the clean x0"]),
    ("simple_loss", lambda m, x0, i, e, s: m.predict(x0, i, "eps"), ["t_i = i / L in [0, 1], not the step index"]),
    ("simple_loss", lambda *a: simple_loss(*a, t_shift=1), ["t_{i-1} = (i - 1) / L"]),
    ("simple_loss", lambda *a: simple_loss(*a, kind="raw"), ["model(x, t) is the network's own output"]),
    ("simple_loss", lambda *a: simple_loss(*a, kind="x0"), ["needs its noise prediction 'eps'"]),
    ("simple_loss", lambda *a: simple_loss(*a).mean(), ["shape (5,)"]),
    ("simple_loss", lambda m, x0, i, e, s: s.alpha_at_steps[i] * x0, ["trailing axis ([:, None])"]),
    # the isotropic KL: a batch sum, a mean over dims, the reverse KL, factor 2, squared variances, no log term
    ("gaussian_kl", lambda m1, v1, m2, v2: gaussian_kl(m1, v1, m2, v2).sum(), ["one KL per example, shape (4,)"]),
    ("gaussian_kl", lambda m1, v1, m2, v2: gaussian_kl(m1, v1, m2, v2) / 3, ["not the mean"]),
    ("gaussian_kl", lambda m1, v1, m2, v2: gaussian_kl(m2, v2, m1, v1), ["the KL is not symmetric"]),
    ("gaussian_kl", lambda m1, v1, m2, v2: 2 * gaussian_kl(m1, v1, m2, v2), ["factor 1/2"]),
    ("gaussian_kl", lambda m1, v1, m2, v2: gaussian_kl(m1, v1 ** 2, m2, v2 ** 2), ["do not square them"]),
    ("gaussian_kl", lambda m1, v1, m2, v2: 0.5 * (3 * v1 / v2 + ((m1 - m2) ** 2).sum(-1) / v2 - 3),
     ["for var1=0.05, var2=0.2", "log-determinant term"]),
    ("gaussian_kl", lambda m1, v1, m2, v2: ((m1 - m2) ** 2).sum(-1) / (2 * v2), ["equal-variance KL"]),
    ("gaussian_kl", lambda m1, v1, m2, v2: ((m1 - m2) ** 2).sum() / (2 * v2), ["shape (4,)"]),
    # the eps-form ELBO weight: factor 2, no alpha, sigma not squared, Ho's symbols, the x0-form weight
    ("elbo_weight", lambda i, b: 2 * elbo_weight(i, b), ["missing the factor 1/2"]),
    ("elbo_weight", lambda i, b: elbo_weight(i, b) * (1 - b[i - 1] ** 2), ["1 / alpha_i^2"]),
    ("elbo_weight", lambda i, b: elbo_weight(i, b) * posterior(b[:1], b[:1], i, b)[1].sqrt(),
     ["not by the standard deviation"]),
    ("elbo_weight", lambda i, b: b[i - 1] ** 2 / (2 * posterior(b[:1], b[:1], i, b)[1] * torch.sqrt(1 - b[i - 1] ** 2)
                                                  * (1 - alpha_bars(b)[i])), ["Ho et al.'s weight"]),
    ("elbo_weight", lambda i, b: (alpha_bars(b)[i - 1] * b[i - 1] ** 2 / (1 - alpha_bars(b)[i] ** 2)) ** 2
     / (2 * posterior(b[:1], b[:1], i, b)[1]), ["the x0-form"]),
    ("elbo_weight", lambda i, b: torch.ones(3), ["one number w_i"]),
    # the prediction: the two wrong letters and an answer that is no letter
    ("variance_prediction", "a", ["recorded 'a'", "beta_i^2 wins"]),
    ("variance_prediction", "(c)", ["recorded 'c'", "first few steps"]),
    ("variance_prediction", "beta", ["one of the letters 'a', 'b' or 'c'"]),
    ("variance_prediction", 2, ["one of the letters"]),
    # the ancestral step: no noise, beta_i z, sigma^2 z, a sign slip, beta not squared, the sqrt slip, time slips
    ("ancestral_step", lambda *a: step(*a, noise="none"), ["at i=4", "the mean alone"]),
    ("ancestral_step", lambda *a: step(*a, noise="beta"), ["Ho et al.'s other choice"]),
    ("ancestral_step", lambda *a: step(*a, noise="var"), ["not the variance sigma^2(i)"]),
    ("ancestral_step", lambda *a: step(*a, sign=+1), ["Sign slip"]),
    ("ancestral_step", lambda *a: step(*a, square=False), ["beta_i^2, not beta_i"]),
    ("ancestral_step", lambda *a: step(*a, slip=True), ["§3.4"]),
    ("ancestral_step", lambda m, x, i, s, z: step(m, x, i, s, z, t_shift=1), ["t_{i-1} = (i - 1) / L"]),
    ("ancestral_step", lambda m, x, i, s, z: m.predict(x, i, "eps"), ["not the step index i"]),
    ("ancestral_step", lambda *a: step(*a, kind="raw"), ["model(x, t) is the network's own output"]),
    ("ancestral_step", lambda m, x, i, s, z: step(m, x, i, s, torch.randn(x.shape, dtype=x.dtype)),
     ["use the draw z you are given"]),
    ("ancestral_step", lambda *a: step(*a, kind="x0"), ["needs its noise prediction 'eps'"]),
    ("ancestral_step", lambda m, x, i, s, z: x + z, ["never asked the model"]),
    # the VAE's KL: batch sum and mean, mean over dims, factor 2, the -1, the log sign
    ("vae_kl", lambda mu, lv: vae_kl(mu, lv).sum(), ["one KL per example"]),
    ("vae_kl", lambda mu, lv: vae_kl(mu, lv).mean(), ["one KL per example"]),
    ("vae_kl", lambda mu, lv: vae_kl(mu, lv) / 3, ["not the mean"]),
    ("vae_kl", lambda mu, lv: 2 * vae_kl(mu, lv), ["missing the factor 1/2"]),
    ("vae_kl", lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - lv).sum(-1), ["contributes a -1"]),
    ("vae_kl", lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 + lv).sum(-1), ["with a minus sign"]),
    ("vae_kl", lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - lv).sum(0), ["shape (4,), not (3,)"]),   # over the batch
    ("vae_kl", lambda mu, lv: 0.5 * (mu ** 2 + (0.5 * lv).exp() - 1 - lv).sum(-1), ["exp(logvar) is the variance"]),
]


globals().update(chapter_suite("02", SOLUTIONS, WRONG, None))


def test_alpha_bar_agrees_with_the_package_schedule(capsys):
    betas = torch.linspace(0.05, 0.4, 10, dtype=torch.float64)
    assert torch.allclose(SOLUTIONS["alpha_bar"](betas), dl.DiscreteSchedule(betas, beta_is="std").alpha_at_steps[1:])
    assert dl.exercises.EXERCISES["alpha_bar"][1](lambda b: dl.DiscreteSchedule(b, beta_is="std").alpha_at_steps[1:])
    capsys.readouterr()


def test_references_agree_with_the_package(capsys):
    """The versions later cells fall back on are the package's own formulas."""
    s = dl.DiscreteSchedule(torch.linspace(1e-3, 0.2, 100, dtype=torch.float64).sqrt())
    mix = dl.datasets.eight_gaussians_mixture()
    model = mix.model(s)
    g = torch.Generator().manual_seed(0)
    x0 = mix.sample(64, generator=g, dtype=torch.float64)
    i = torch.randint(1, 101, (64,), generator=g)
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    # L_simple: the package's loss averages over the D = 2 dimensions, ours sums them
    pkg = dl.losses.ddpm_simple(s)(model, x0, eps=eps, t=i / 100)
    assert torch.allclose(ch02._REFERENCES["simple_loss"](model, x0, i, eps, s), 2 * pkg)
    ab = s.alpha_at_steps[i][:, None]
    x_i = ab * x0 + (1 - ab ** 2).sqrt() * eps
    want = ((model.predict(x_i, i / 100, "eps") - eps) ** 2).sum(-1)
    assert torch.allclose(ch02._REFERENCES["simple_loss"](model, x0, i, eps, s), want)
    # the ancestral step: dl.samplers' ddpm step with the same draw
    x = torch.randn(8, 2, generator=g, dtype=torch.float64)
    z = torch.randn(8, 2, generator=g, dtype=torch.float64)
    c_i, c_0, std = s.posterior(30 / 100, 29 / 100)
    want = c_i * x + c_0 * model.predict(x, 0.3, "x0") + std * z
    assert torch.allclose(ch02._REFERENCES["ancestral_step"](model, x, 30, s, z), want, atol=1e-10)
    # the eps-form weight times ||eps - eps_hat||^2 is the x0-form KL term
    for k in (2, 40, 100):
        c_i, c_0, std = s.posterior(k / 100, (k - 1) / 100)
        ab_k = s.alpha_at_steps[k]
        w_x0 = c_0 ** 2 / (2 * std ** 2)
        assert math.isclose(float(ch02._REFERENCES["elbo_weight"](k, s.betas)),
                            float(w_x0 * (1 - ab_k ** 2) / ab_k ** 2), rel_tol=1e-9)
    capsys.readouterr()


def test_use_falls_back_only_for_a_stub(capsys):
    def stub(*a):
        return None
    f = ch02.use("gaussian_kl", stub)
    m = torch.zeros(3, 2)
    assert torch.allclose(f(m, 0.1, m + 1, 0.2), gaussian_kl(m, 0.1, m + 1, 0.2))
    assert "not attempted yet" in capsys.readouterr().out
    wrong = ch02.use("gaussian_kl", lambda m1, v1, m2, v2: torch.zeros(m1.shape[0]))
    assert torch.equal(wrong(m, 0.1, m + 1, 0.2), torch.zeros(3))        # a wrong answer is used as it is
    with pytest.raises(ValueError, match="no package version"):
        ch02.use("nope", stub)
