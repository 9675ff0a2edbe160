"""Chapter 08's checks (dpm_lab/exercises/ch08.py): the right answer passes, each typical wrong answer fails with
its specific hint, a stub is "not attempted yet", and `use` falls back on the package's version only for a stub."""
import torch
from exercise_suite import chapter_suite

import dpm_lab as dl
from dpm_lab.exercises import ch08


def tilted(mix, x, c, omega, *, a=None, b=None, log=True):
    a = omega if a is None else a
    b = (1 - omega) if b is None else b
    out = a * mix.log_prob(x, c=c) + b * mix.log_prob(x)
    return out if log else out.exp()


def dps(model, x_t, t, A, y, sy, *, wrt="x_t", resid="x0", sign=1, power=2, factor=1.0):
    with torch.enable_grad():
        x = x_t.clone().requires_grad_(True)
        x0 = model.predict(x, t, "x0")
        if wrt == "x0":
            x0 = x0.detach().requires_grad_(True)
        r = y - (x0 if resid == "x0" else x) @ A.T
        ll = -(r ** 2).sum() / (2 * sy ** power)
        g, = torch.autograd.grad(ll, x0 if wrt == "x0" else x)
    return sign * factor * g


def weights(w, mu, S, A, y, sy, *, prior_cov=True, noise=True, normalise=True, prior_w=True):
    lw = []
    for k in range(len(w)):
        cov = (A @ S[k] @ A.T if prior_cov else 0) + (sy ** 2 * torch.eye(A.shape[0], dtype=torch.float64) if noise else 0)
        lw.append((torch.log(w[k]) if prior_w else 0) + torch.distributions.MultivariateNormal(A @ mu[k], cov).log_prob(y))
    lw = torch.stack(lw)
    return torch.softmax(lw, 0) if normalise else lw.exp()


def clf_grad(mix, x, t, sched, c, *, sign=1, which="diff", prob=False):
    sc, su = mix.score(x, t, sched, c=c), mix.score(x, t, sched)
    g = sc if which == "cond" else sign * (sc - su)
    return mix.class_posterior(x, t, sched)[:, c:c + 1] * g if prob else g


SOLUTIONS = {
    "tilted_logp": tilted,
    "dps_guidance": dps,
    "measurement_posterior_weights": weights,
    "classifier_gradient": clf_grad,
    "tilted_prediction": "d",
    "cfg_port": lambda ec, eu, omega: eu + omega * (ec - eu),
}
WRONG = [
    ("tilted_logp", lambda m, x, c, o: tilted(m, x, c, o, b=1.0), "exponent 1 - omega, not 1"),
    ("tilted_logp", lambda m, x, c, o: tilted(m, x, c, o, a=1 - o, b=o), "swapped"),
    ("tilted_logp", lambda m, x, c, o: tilted(m, x, c, o, b=-(1 - o)), "sign of the unconditional term"),
    ("tilted_logp", lambda m, x, c, o: tilted(m, x, c, o, log=False), "LOG density"),
    ("tilted_logp", lambda m, x, c, o: tilted(m, x, c, o)[:1], "shape"),
    ("tilted_logp", lambda m, x, c, o: tilted(m, x, c, o, b=-o), "data factor p(x)"),
    ("tilted_logp", lambda m, x, c, o: torch.log(o * m.log_prob(x, c=c).exp() + (1 - o) * m.log_prob(x).exp()),
     "not finite"),
    ("dps_guidance", lambda *a: dps(*a, wrt="x0"), "with respect to x0_hat"),
    ("dps_guidance", lambda *a: dps(*a, resid="x_t"), "you used x_t in the residual"),
    ("dps_guidance", lambda *a: dps(*a, sign=-1), "sign is flipped"),
    ("dps_guidance", lambda *a: dps(*a, power=0), "divides the squared residual by sigma_y^2"),
    ("dps_guidance", lambda *a: dps(*a, factor=2.0), "factor 2"),
    ("dps_guidance", lambda m, x, t, A, y, sy: dps(m, x, t, A, y, sy) / y.numel(), "use .sum(), not .mean()"),
    ("measurement_posterior_weights", lambda *a: weights(*a, prior_cov=False), "forgets its own spread"),
    ("measurement_posterior_weights", lambda *a: weights(*a, noise=False), "measurement noise is missing"),
    ("measurement_posterior_weights", lambda *a: weights(*a, normalise=False), "normalise"),
    ("measurement_posterior_weights", lambda *a: weights(*a, prior_w=False), "prior weight w_k is missing"),
    ("measurement_posterior_weights", lambda *a: torch.log(weights(*a)), "LOG posterior weights"),
    ("measurement_posterior_weights", lambda w, *a: w, "those are the prior weights"),
    ("classifier_gradient", lambda *a: clf_grad(*a, sign=-1), "sign is flipped"),
    ("classifier_gradient", lambda *a: clf_grad(*a, which="cond"), "conditional score itself"),
    ("classifier_gradient", lambda *a: clf_grad(*a, prob=True), "not grad log p(c | x)"),
    ("classifier_gradient", lambda m, x, t, s, c: m.score(x, t, s, c=c) + m.score(x, t, s), "minus sign"),
    ("classifier_gradient", lambda m, x, t, s, c: m.score(x, t, s), "that is the unconditional score"),
    ("tilted_prediction", "a", "not carried by the PF-ODE"),
    ("tilted_prediction", "b", "not a discretisation error"),
    ("tilted_prediction", "c", "changes the field itself"),
    ("tilted_prediction", "maybe", "one letter"),
    ("cfg_port", ch08.ported_cfg, "still the port"),
    ("cfg_port", lambda ec, eu, o: eu + (o - 1) * (ec - eu), "kept the unconditional base"),
    ("cfg_port", lambda ec, eu, o: o * eu + (1 - o) * ec, "roles are swapped"),
    ("cfg_port", lambda ec, eu, o: ec + (o + 1) * (ec - eu), "not omega + 1"),
    ("cfg_port", lambda ec, eu, o: o * (ec + eu), "sum to one"),
]
STUBS = {n: None for n in SOLUTIONS}

globals().update(chapter_suite("08", SOLUTIONS, WRONG, STUBS))


def test_use_falls_back_only_for_a_stub(capsys):
    mix = dl.recipes.guide.mixture()
    x = torch.zeros(3, 2, dtype=torch.float64)
    f = ch08.use("tilted_logp", lambda *a: None)
    torch.testing.assert_close(f(mix, x, 0, 2.0), tilted(mix, x, 0, 2.0))
    assert "not attempted yet" in capsys.readouterr().out
    wrong = ch08.use("tilted_logp", lambda m, x, c, o: tilted(m, x, c, o, b=1.0))
    torch.testing.assert_close(wrong(mix, x, 0, 2.0), tilted(mix, x, 0, 2.0, b=1.0))


def test_reuse_helpers_feel_a_wrong_answer():
    mix = dl.recipes.guide.mixture()
    right = ch08.grid_law(tilted, mix, 0, 3.0)
    torch.testing.assert_close(right.probs, dl.recipes.guide.tilted_law(mix, 0, 3.0).probs)
    wrong = ch08.grid_law(lambda m, x, c, o: tilted(m, x, c, o, b=1.0), mix, 0, 3.0)
    assert 0.5 * (wrong.probs - right.probs).abs().sum() > 0.1
    sched = dl.VPLinear()
    A, y = torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([0.6], dtype=torch.float64)
    m = ch08.dps_model(dps, mix.model(sched), A, y, 0.1)
    x = torch.randn(4, 2, dtype=torch.float64)
    ref = dl.guidance.DPS(mix.model(sched), dl.guidance.matrix_operator(A), y, 0.1)
    torch.testing.assert_close(m.predict(x, 0.4, "score"), ref.predict(x, 0.4, "score"))
