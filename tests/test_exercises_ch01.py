"""Chapter 01's checks (dpm_lab/exercises/ch01.py): the right answer passes, a stub reads "not attempted
yet", and each typical wrong answer fails with its specific hint."""
import math

import numpy as np
import pytest
import torch
from exercise_suite import chapter_suite, run_check

import dpm_lab as dl

E = dl.exercises.ch01
C = 0.5 * math.log(2 * math.pi)


def kl(p, q, dx):
    return np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0)) * dx


def js(p, q, dx):
    return 0.5 * kl(p, (p + q) / 2, dx) + 0.5 * kl(q, (p + q) / 2, dx)


def nll(x, mu, s):
    return (0.5 * ((x - mu) / s) ** 2 + torch.log(s) + C).mean()


def moments(w, m, s):
    mean = np.dot(w, m)
    return mean, math.sqrt(np.dot(w, np.square(s) + np.square(m)) - mean ** 2)


def f_div(f, p, q, dx):
    return np.sum(q * f(p / q)) * dx


def energy_score(energy, x):
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(energy(x).sum(), x)[0]


def fisher(sp, sq):
    return ((sp - sq) ** 2).sum(-1).mean()


SOLUTIONS = {
    "gaussian_nll": nll,
    "forward_kl_fit": moments,
    "reverse_kl_prediction": 2.0,
    "f_divergence": f_div,
    "kl_grid": kl,
    "js_grid": js,
    "tv_grid": lambda p, q, dx: 0.5 * np.abs(p - q).sum() * dx,
    "optimal_discriminator": lambda p, q: p / (p + q),
    "energy_score": energy_score,
    "fisher_divergence": fisher,
    "gaussian_score": lambda x, mu, s: -(x - mu) / s ** 2,
    "reverse_kl_generator": lambda u: -np.log(u),
    "gaussian_fisher": lambda m1, s1, m2, s2: (s1 / s2 ** 2 - 1 / s1) ** 2 + (m1 - m2) ** 2 / s2 ** 4,
}

STUBS = {
    "gaussian_nll": lambda x, mu, s: None,
    "forward_kl_fit": lambda w, m, s: None,
    "reverse_kl_prediction": None,
    "f_divergence": lambda f, p, q, dx: None,
    "kl_grid": lambda p, q, dx: None,
    "js_grid": lambda p, q, dx: None,
    "tv_grid": lambda p, q, dx: None,
    "optimal_discriminator": lambda p, q: None,
    "energy_score": lambda energy, x: None,
    "fisher_divergence": lambda sp, sq: None,
    "gaussian_score": lambda x, mu, s: None,
    "reverse_kl_generator": lambda u: None,
    "gaussian_fisher": lambda m1, s1, m2, s2: None,
}

# (check, wrong answer, words its message must contain)
WRONG = [
    ("gaussian_nll", lambda x, mu, s: (0.5 * ((x - mu) / s) ** 2 + torch.log(s)).mean(), ["log(2 pi) / 2"]),
    ("gaussian_nll", lambda x, mu, s: (0.5 * ((x - mu) / s) ** 2 + C).mean(),
     ["for x of 8 points, mu=1.0, sigma=0.5", "log sigma term"]),        # right at sigma = 1, where log sigma = 0
    ("gaussian_nll", lambda x, mu, s: (0.5 * ((x - mu) / s) ** 2 + torch.log(s ** 2) + C).mean(),
     ["not log sigma^2"]),
    ("gaussian_nll", lambda x, mu, s: -nll(x, mu, s), ["NEGATIVE log-likelihood"]),
    ("gaussian_nll", lambda x, mu, s: len(x) * nll(x, mu, s), ["mean over the data, not the sum"]),
    ("gaussian_nll", lambda x, mu, s: (0.5 * (x - mu) ** 2 / s + torch.log(s) + C).mean(),
     ["variance sigma^2, not by sigma"]),
    ("gaussian_nll", lambda x, mu, s: (((x - mu) / s) ** 2 + torch.log(s) + C).mean(), ["factor 1/2"]),
    ("gaussian_nll", lambda x, mu, s: 0.5 * ((x - mu) / s) ** 2 + torch.log(s) + C,
     ["return one number, the mean over the data; you returned 5 numbers"]),
    ("gaussian_nll", lambda x, mu, s: (0.5 * ((x - mu) / s) ** 2 + math.log(s) + C).mean(),
     ["math.log(sigma)", "torch.log(sigma)"]),                          # right values, gradient misses 1/sigma
    ("gaussian_nll", lambda x, mu, s: float(nll(x, mu, s)), ["autograd cannot follow"]),
    ("gaussian_nll", lambda x, mu, s: (0.5 * ((x - mu) / s) ** 2 + np.log(s) + C).mean(),
     ["raised RuntimeError", "when called with x a float64 tensor of shape (5,)", "require grad",
      "inside your code"]),                                             # the input's fault, not the return value's
    ("forward_kl_fit", lambda w, m, s: (moments(w, m, s)[0], moments(w, m, s)[1] ** 2), ["take its square root"]),
    ("forward_kl_fit", lambda w, m, s: (np.dot(w, m), math.sqrt(np.dot(w, np.square(s)))),
     ["The spread of the means counts too"]),
    ("forward_kl_fit", lambda w, m, s: (np.dot(w, m), math.sqrt(np.dot(w, (np.asarray(m) - np.dot(w, m)) ** 2))),
     ["The width of each component counts too"]),
    ("forward_kl_fit", lambda w, m, s: (np.mean(m), moments(w, m, s)[1]), ["WEIGHTED average"]),
    ("forward_kl_fit", lambda w, m, s: (m[int(np.argmax(w))], s[int(np.argmax(w))]), ["That is one component"]),
    ("forward_kl_fit", lambda w, m, s: (1.0, 2.0, 3.0), ["return a pair (mean, std); you returned 3 numbers"]),
    ("reverse_kl_prediction", 0.0, ["Recorded: you predicted mu = +0.00", "ridge", "curvature"]),
    ("reverse_kl_prediction", -2.0, ["wrong side"]),
    ("reverse_kl_prediction", 1.0, ["does not stop halfway"]),
    ("reverse_kl_prediction", 3.5, ["does not overshoot"]),
    ("reverse_kl_prediction", "the right mode", ["enter a number"]),
    ("f_divergence", lambda f, p, q, dx: f_div(f, q, p, dx), ["u log u (KL) on (p, q)", "arguments are swapped"]),
    ("f_divergence", lambda f, p, q, dx: np.sum(q * f(p / q)), ["Multiply the sum by dx"]),
    ("f_divergence", lambda f, p, q, dx: np.mean(q * f(p / q)), ["divides by the 601 points"]),
    ("f_divergence", lambda f, p, q, dx: np.sum(p * f(p / q)) * dx, ["Weight by q, the second density"]),
    ("f_divergence", lambda f, p, q, dx: np.sum(f(p / q)) * dx, ["Weight f(p / q) by q"]),
    ("f_divergence", lambda f, p, q, dx: np.sum(q * f(q / p)) * dx, ["ratio is upside down"]),
    ("f_divergence", lambda f, p, q, dx: q * f(p / q) * dx, ["one number, the integral over the grid"]),
    ("f_divergence", lambda f, p, q, dx: np.sum(q * f(p / q[:10])) * dx,
     ["raised ValueError", "f(u) = u log u (KL), NumPy arrays p, q of shape (601,)", "shapes match"]),
    ("f_divergence", lambda f, p, q, dx: np.sum(p * np.log(p / q)) * dx,   # KL whatever f is
     ["-log u (reverse KL) on (p, q)", "your value is"]),
    ("kl_grid", lambda p, q, dx: kl(q, p, dx), ["on (p, q)", "That is KL(q || p)"]),
    ("kl_grid", lambda p, q, dx: kl(p, q, dx) / dx, ["Multiply the sum by dx"]),
    ("kl_grid", lambda p, q, dx: kl(p, q, dx) - kl(q, p, dx), ["on (p, q) your value is"]),
    ("kl_grid", lambda p, q, dx: -kl(p, q, dx), ["KL is never negative"]),
    ("kl_grid", lambda p, q, dx: p * np.log(p / q) * dx, ["one number, the integral over the grid"]),
    ("js_grid", lambda p, q, dx: 2 * js(p, q, dx), ["factor 1/2 in front of each KL"]),
    ("js_grid", lambda p, q, dx: 0.5 * kl(p, q, dx) + 0.5 * kl(q, p, dx), ["never exceed log 2"]),
    ("js_grid", lambda p, q, dx: kl(p, (p + q) / 2, dx), ["on (p, q) your value is"]),
    ("js_grid", lambda p, q, dx: js(p, q, dx) / np.log(2), ["in bits (log base 2)"]),
    ("js_grid", lambda p, q, dx: math.sqrt(js(p, q, dx)), ["Jensen-Shannon DISTANCE", "square it"]),
    ("tv_grid", lambda p, q, dx: np.abs(p - q).sum() * dx, ["factor 1/2 (TV lies in [0, 1])"]),
    ("tv_grid", lambda p, q, dx: 0.5 * np.abs(p - q).sum(), ["Multiply the sum by dx"]),
    ("tv_grid", lambda p, q, dx: 0.5 * (p - q).sum() * dx, ["Take the absolute value |p - q|"]),
    ("tv_grid", lambda p, q, dx: 0.5 * ((p - q) ** 2).sum() * dx, ["on (p, q) your value is"]),
    ("optimal_discriminator", lambda p, q: q / (p + q), ["probability that x was GENERATED"]),
    ("optimal_discriminator", lambda p, q: p / q, ["density ratio, not a probability"]),
    ("optimal_discriminator", lambda p, q: np.log(p / (p + q)), ["not its logarithm"]),
    ("optimal_discriminator", lambda p, q: np.full_like(p, 0.5), ["only where p = q"]),
    ("optimal_discriminator", lambda p, q: p.sum() / (p.sum() + q.sum()), ["return D* at every point"]),
    ("optimal_discriminator", lambda p, q: p / (p + q) if p.ndim == 1 else p / (p + q).sum(),
     ["for two positive arrays of shape (3, 4), where p =", "you gave"]),
    ("energy_score", E.buggy_energy_score, ["Two slips", "B = 5"]),
    ("energy_score", lambda e, x: -energy_score(e, x), ["The sign", "exp(+E)"]),
    ("energy_score", lambda e, x: energy_score(lambda y: e(y).mean(), x), ["batch MEAN", "B = 5"]),
    ("energy_score", lambda e, x: e(x), ["you returned shape (5,)"]),
    ("energy_score", lambda e, x: energy_score(lambda y: (y ** 2).sum(-1), x), ["but the score is"]),
    ("energy_score", lambda e, x: torch.autograd.grad(e(x).sum(), x)[0],
     ["raised RuntimeError", "does not require grad", "make one from x"]),
    ("fisher_divergence", lambda sp, sq: ((sp - sq) ** 2).mean(), ["averaged over the D coordinates too"]),
    ("fisher_divergence", lambda sp, sq: ((sp - sq) ** 2).sum(), ["Average over the points"]),
    ("fisher_divergence", lambda sp, sq: (sp - sq).norm(dim=-1).mean(), ["Square the norm"]),
    ("fisher_divergence", lambda sp, sq: 0.5 * fisher(sp, sq), ["No 1/2"]),
    ("fisher_divergence", lambda sp, sq: ((sp - sq) ** 2).sum(-1), ["one number, the average over the points"]),
    ("fisher_divergence", lambda sp, sq: float(fisher(sp, sq)), ["autograd cannot follow"]),
    ("fisher_divergence", lambda sp, sq: np.mean(np.sum((sp.numpy() - sq.numpy()) ** 2, -1)),
     ["raised RuntimeError", "shape (5, 3)"]),
    ("gaussian_score", lambda x, mu, s: (x - mu) / s ** 2, ["sign is flipped"]),
    ("gaussian_score", lambda x, mu, s: -(x - mu) / s, ["for mu=1.0, sigma=0.5", "variance sigma^2, not by sigma"]),
    ("gaussian_score", lambda x, mu, s: -(x - mu), ["for mu=1.0, sigma=0.5", "a narrower Gaussian has a steeper"]),
    ("gaussian_score", lambda x, mu, s: -(x - mu).sum() / s ** 2, ["you gave"]),
    ("reverse_kl_generator", lambda u: u * np.log(u), ["forward KL(p || q)", "u log u is the generator"]),
    ("reverse_kl_generator", lambda u: np.log(u), ["minus the reverse KL", "sign is flipped"]),
    ("reverse_kl_generator", lambda u: -u * np.log(u), ["minus the forward KL", "convex"]),
    ("reverse_kl_generator", lambda u: (1 / u) * np.log(1 / u), ["treats u as q / p"]),
    ("reverse_kl_generator", lambda u: 1.0 - np.log(u), ["f(1) = 0"]),
    ("reverse_kl_generator", lambda u: float(np.sum(-np.log(u))), ["an array of the shape of u"]),
    ("gaussian_fisher", lambda m1, s1, m2, s2: (m1 - m2) ** 2 / s2 ** 4, ["the widths count too", "N(0.0, 1.0^2)", "0.0625"]),
    ("gaussian_fisher", lambda m1, s1, m2, s2: (s2 / s1 ** 2 - 1 / s2) ** 2 + (m2 - m1) ** 2 / s1 ** 4,
     ["That is D_F(q || p)"]),
    ("gaussian_fisher", lambda m1, s1, m2, s2: 0.5 * ((s1 / s2 ** 2 - 1 / s1) ** 2 + (m1 - m2) ** 2 / s2 ** 4),
     ["No 1/2"]),
    ("gaussian_fisher", lambda m1, s1, m2, s2: (s1 / s2 ** 2 - 1 / s1) ** 2 + (m1 - m2) ** 2 / s2 ** 2,
     ["divided by the variance s2^2, and squared"]),
    ("gaussian_fisher", lambda m1, s1, m2, s2: (1 / s2 ** 2 - 1 / s1 ** 2) ** 2 + (m1 - m2) ** 2 / s2 ** 4,
     ["for p = N(0.5, 0.7^2)", "z-coefficient"]),
]


globals().update(chapter_suite("01", SOLUTIONS, WRONG, STUBS))


def test_grid_checks_cover_the_reversed_and_equal_pairs(capsys):
    # symmetric in its arguments but not zero on (p, p): caught on the third pair only
    assert not dl.exercises.check_tv_grid(lambda p, q, dx: 0.5 * np.abs(p - q).sum() * dx + 1e-3 * (p is q))
    assert "on (p, p)" in capsys.readouterr().out


def test_forward_kl_fit_uses_the_learners_mixture(capsys):
    w, m, s = (0.2, 0.8), (0.0, 1.0), (0.3, 0.3)
    assert dl.exercises.check_forward_kl_fit(moments, weights=w, means=m, stds=s) is True
    capsys.readouterr()


def test_the_book_generators_give_kl_js_and_tv_through_the_template(capsys):
    f_kl = lambda u: u * np.log(u)                                     # noqa: E731
    f_js = lambda u: 0.5 * (u * np.log(u) - (u + 1) * np.log((u + 1) / 2))  # noqa: E731
    f_tv = lambda u: 0.5 * np.abs(u - 1)                               # noqa: E731
    assert E.check_kl_grid(lambda p, q, dx: f_div(f_kl, p, q, dx))
    assert E.check_js_grid(lambda p, q, dx: f_div(f_js, p, q, dx))
    assert E.check_tv_grid(lambda p, q, dx: f_div(f_tv, p, q, dx))
    capsys.readouterr()


def test_the_prediction_is_recorded_and_accepts_text_numbers(capsys):
    assert E.check_reverse_kl_prediction("+2") is True
    assert E.PREDICTIONS["reverse_kl_from_0.1"] == 2.0
    assert E.check_reverse_kl_prediction(lambda: 1.9) is True
    out = capsys.readouterr().out
    assert "Right:" in out and "ends at mu = +2.00, sigma = 0.50" in out


def test_reverse_kl_fit_numbers_the_chapter_prints():
    end = E.reverse_kl_fit(2.0, 0.1, 0.5)[-1]
    assert abs(end[0] - 2.0) < 1e-2 and abs(math.exp(end[1]) - 0.5) < 1e-2
    assert abs(E.reverse_kl_fit(2.0, -0.1, 0.5)[-1, 0] + 2.0) < 1e-2
    sym = E.reverse_kl_fit(2.0, 0.1, 0.5, "gd")[-1]                   # plain GD: the wide symmetric minimum
    assert abs(sym[0]) < 1e-2 and abs(math.exp(sym[1]) - 1.737) < 1e-2
    assert abs(E.reverse_kl_fit(2.0, 1e-12, 0.5)[-1, 0] - 2.0) < 1e-2   # Adam amplifies a tiny offset


def test_the_buggy_energy_score_is_minus_one_over_b_of_the_score():
    gmm = dl.datasets.eight_gaussians_mixture()
    x = gmm.sample(4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = E.buggy_energy_score(lambda y: gmm.log_prob(y) + 3.0, x)
    assert torch.allclose(got, -gmm.data_score(x) / 4, atol=1e-12)


@pytest.mark.parametrize("name", sorted(E.REFERENCES))
def test_every_reference_passes_its_own_check(name, capsys):
    ok, out = run_check(name, E.REFERENCES[name], capsys)
    assert ok is True, out


def test_reuse_stands_in_with_the_reference(capsys):
    fd = E.reuse(lambda sp, sq: None, "fisher_divergence")
    a, b = torch.ones(3, 2, dtype=torch.float64), torch.zeros(3, 2, dtype=torch.float64)
    assert float(fd(a, b)) == 2.0
    assert "fisher_divergence: not attempted yet" in capsys.readouterr().out
    assert E.reuse(lambda sp, sq: 7.0, "fisher_divergence")(a, b) == 7.0      # an answer is used as it is


def test_a_check_never_raises(capsys):
    def boom(*args):
        raise KeyError("boom")
    for name in SOLUTIONS:
        assert dl.exercises.EXERCISES[name][1](boom) is False
    out = capsys.readouterr().out
    assert "Traceback" not in out
