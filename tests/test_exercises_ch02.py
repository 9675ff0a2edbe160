"""Chapter 02's checks (dpm_lab/exercises/ch02.py): the right answer passes, and each typical wrong
answer fails with its specific hint. The betas are the book's (standard deviations, Eq. 2.2.1)."""
import pytest
import torch

import dpm_lab as dl

NO, OK = "\u274c", "\u2705"


def alpha_bars(b):
    """alpha_bar_0 = 1, alpha_bar_1, ..., alpha_bar_L for standard-deviation betas."""
    return torch.cat([torch.ones(1, dtype=b.dtype, device=b.device), torch.cumprod(torch.sqrt(1 - b ** 2), 0)])


def posterior(x_i, x0, i, b):
    ab = alpha_bars(b)
    mean = (ab[i - 1] * b[i - 1] ** 2 / (1 - ab[i] ** 2) * x0
            + (1 - ab[i - 1] ** 2) * torch.sqrt(1 - b[i - 1] ** 2) / (1 - ab[i] ** 2) * x_i)
    return mean, (1 - ab[i - 1] ** 2) / (1 - ab[i] ** 2) * b[i - 1] ** 2


def eps_mean(x_i, eps, i, b):
    return (x_i - b[i - 1] ** 2 / torch.sqrt(1 - alpha_bars(b)[i] ** 2) * eps) / torch.sqrt(1 - b[i - 1] ** 2)


def vae_kl(mu, lv):
    return 0.5 * (mu ** 2 + lv.exp() - 1 - lv).sum(-1)


SOLUTIONS = {
    "alpha_bar": lambda b: alpha_bars(b)[1:],
    "ddpm_posterior": posterior,
    "eps_mean": eps_mean,
    "gaussian_kl": lambda m1, m2, var: ((m1 - m2) ** 2).sum() / (2 * var),
    "vae_kl": vae_kl,
}

# (check, wrong answer, words its message must contain)
WRONG = [
    ("alpha_bar", lambda b: torch.cumprod(1 - b, 0), ["Ho et al.'s convention"]),
    ("alpha_bar", lambda b: torch.cumprod(1 - b, 0).sqrt(), ["Ho et al.'s convention"]),
    ("alpha_bar", lambda b: alpha_bars(b)[1:] ** 2, ["alpha_bar^2 (the signal variance)"]),
    ("alpha_bar", alpha_bars, ["one value per step, shape (10,)"]),           # alpha_bar_0 = 1 included
    ("alpha_bar", lambda b: torch.cumprod(torch.sqrt(1 - b), 0) * 0 + 0.5, ["you gave", "should give"]),
    ("ddpm_posterior", lambda x_i, x0, i, b: posterior(x_i, x0, i, b)[0], ["return a pair (mean, variance)"]),
    ("ddpm_posterior", lambda x_i, x0, i, b: (posterior(x_i, x0, i + 1 if i < 10 else i, b)[0],
                                              posterior(x_i, x0, i, b)[1]), ["at i=1", "mind i-1 vs i indexing"]),
    ("ddpm_posterior", lambda x_i, x0, i, b: (posterior(x_i, x0, i, b)[0], posterior(x_i, x0, i, b)[1].sqrt()),
     ["at i=4", "that is the std; return the variance"]),   # at i = 1 the variance is 0 = its square root
    ("ddpm_posterior", lambda x_i, x0, i, b: (posterior(x_i, x0, i, b)[0], b[i - 1] ** 2),
     ["at i=1 your variance is 0.0025 but should be 0", "the forward step's variance"]),
    ("ddpm_posterior", lambda x_i, x0, i, b: (posterior(x_i, x0, i, b)[0], 0.5 * posterior(x_i, x0, i, b)[1] + 0.01),
     ["at i=1 your variance is 0.01 but should be 0."]),
    ("ddpm_posterior", lambda x_i, x0, i, b: (posterior(x0, x_i, i, b)[0], posterior(x_i, x0, i, b)[1]),
     ["The two weights are swapped"]),
    ("ddpm_posterior", lambda x_i, x0, i, b: posterior(x_i, x0, i, b.sqrt()), ["Ho et al.'s convention"]),
    ("eps_mean", lambda x_i, eps, i, b: (x_i - b[i - 1] / torch.sqrt(1 - alpha_bars(b)[i] ** 2) * eps)
     / torch.sqrt(1 - b[i - 1] ** 2), ["the book's beta is a std", "note 1 - alpha_i^2 = beta_i^2"]),
    ("eps_mean", lambda x_i, eps, i, b: x_i - b[i - 1] ** 2 / torch.sqrt(1 - alpha_bars(b)[i] ** 2) * eps,
     ["at i=1 your mean[0]", "Divide the whole bracket by alpha_i", "posterior mean of Lemma 2.2.2"]),
    ("eps_mean", lambda x_i, eps, i, b: (x_i + b[i - 1] ** 2 / torch.sqrt(1 - alpha_bars(b)[i] ** 2) * eps)
     / torch.sqrt(1 - b[i - 1] ** 2), ["Subtract the noise term"]),
    ("eps_mean", lambda x_i, eps, i, b: (x_i - torch.sqrt(1 - alpha_bars(b)[i] ** 2) * eps) / alpha_bars(b)[i],
     ["at i=5 your mean[0]", "That is the clean estimate x0_hat"]),   # right at i = 1, where x0_hat is the mean
    ("gaussian_kl", lambda m1, m2, var: ((m1 - m2) ** 2).sum() / var, ["Divide by 2 * variance"]),
    ("gaussian_kl", lambda m1, m2, var: ((m1 - m2) ** 2).sum() / 2, ["for var=0.1 your KL"]),
    ("gaussian_kl", lambda m1, m2, var: ((m1 - m2) ** 2).mean() / (2 * var), ["not the mean"]),
    ("gaussian_kl", lambda m1, m2, var: (m1 - m2).norm() / (2 * var), ["the squared distance"]),
    ("gaussian_kl", lambda m1, m2, var: (m1 - m2) ** 2 / (2 * var),
     ["return one number: sum the squared differences over the dimensions; you returned 2 numbers"]),
    ("vae_kl", lambda mu, lv: vae_kl(mu, lv).sum(), ["one KL per example"]),
    ("vae_kl", lambda mu, lv: vae_kl(mu, lv).mean(), ["one KL per example"]),
    ("vae_kl", lambda mu, lv: 2 * vae_kl(mu, lv), ["missing the factor 1/2"]),
    ("vae_kl", lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - lv).sum(-1), ["contributes a -1"]),
    ("vae_kl", lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 + lv).sum(-1), ["with a minus sign"]),
    ("vae_kl", lambda mu, lv: 0.5 * (mu ** 2 + lv.exp() - 1 - lv).sum(0), ["your KL is"]),   # summed over the batch
]


def _run(name, answer, capsys):
    ok = dl.exercises.EXERCISES[name][1](answer)
    return ok, capsys.readouterr().out


def test_every_chapter_check_has_a_solution_and_a_wrong_answer():
    mine = {n for n, (ch, _) in dl.exercises.EXERCISES.items() if ch == "02"}
    assert set(SOLUTIONS) == mine
    assert {name for name, _, _ in WRONG} == mine


@pytest.mark.parametrize("name", sorted(SOLUTIONS))
def test_correct_answer_passes(name, capsys):
    ok, out = _run(name, SOLUTIONS[name], capsys)
    assert ok is True and out.startswith(OK)


@pytest.mark.parametrize("name, answer, words", WRONG, ids=[f"{w[0]}-{i}" for i, w in enumerate(WRONG)])
def test_wrong_answer_gets_its_hint(name, answer, words, capsys):
    ok, out = _run(name, answer, capsys)
    assert ok is False and out.startswith(NO)
    for w in words:
        assert w in out, f"{name}: {w!r} not in {out!r}"


def test_alpha_bar_agrees_with_the_package_schedule(capsys):
    betas = torch.linspace(0.05, 0.4, 10, dtype=torch.float64)
    assert torch.allclose(SOLUTIONS["alpha_bar"](betas), dl.DiscreteSchedule(betas, beta_is="std").alpha_at_steps[1:])
    assert dl.exercises.check_alpha_bar(lambda b: dl.DiscreteSchedule(b, beta_is="std").alpha_at_steps[1:]) is True
    capsys.readouterr()
