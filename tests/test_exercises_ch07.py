"""Chapter 07's checks (dpm_lab/exercises/ch07.py): the right answer passes, each typical wrong answer fails with
its specific hint, a stub is "not attempted yet".  The solutions here are written out by hand."""
import torch
from exercise_suite import chapter_suite

import dpm_lab as dl


def step(f, g, C, a, b, eps, *, weights=True, sign=-1, scale=True, fresh=True, logdomain=True):
    la, lb = (a.log(), b.log()) if weights else (0 * a, 0 * b)
    d = eps if scale else 1.0
    if not logdomain:
        K = torch.exp(-C / eps)
        f_new = -eps * torch.log((K * (b * torch.exp(g / eps))[None, :]).sum(1))
        g_new = -eps * torch.log((K * (a * torch.exp(f_new / eps))[:, None]).sum(0))
        return f_new, g_new
    f_new = sign * eps * torch.logsumexp(lb[None, :] + (g[None, :] - C) / d, dim=1)
    f_use = f_new if fresh else f
    g_new = sign * eps * torch.logsumexp(la[:, None] + (f_use[:, None] - C) / d, dim=0)
    return f_new, g_new


def ot_map(m0, S0, m1, S1, *, kind="ot", b_rule="right"):
    r0 = dl.ot.sqrtm_psd(S0)
    ri = torch.linalg.inv(r0)
    if kind == "ot":
        A = ri @ dl.ot.sqrtm_psd(r0 @ S1 @ r0) @ ri
    elif kind == "cholesky-like":
        A = dl.ot.sqrtm_psd(S1) @ ri
    elif kind == "reverse":
        A = torch.linalg.inv(ri @ dl.ot.sqrtm_psd(r0 @ S1 @ r0) @ ri)
    else:
        A = torch.diag((S1.diag() / S0.diag()).sqrt())
    b = m1 - A @ m0 if b_rule == "right" else m1 - m0
    return A, b


def bridge(x0, x1, t, z, s2, *, var="bridge", swap=False):
    tt = t[:, None]
    mean = tt * x0 + (1 - tt) * x1 if swap else (1 - tt) * x0 + tt * x1
    std = {"bridge": (s2 * tt * (1 - tt)).sqrt(), "bm": (s2 * tt).sqrt(), "nosigma": (tt * (1 - tt)).sqrt(),
           "variance": s2 * tt * (1 - tt)}[var]
    return mean + std * z


def pairing(xt, xs):
    return xt, xs[dl.ot.ot_permutation(xt, xs)]


SOLUTIONS = {
    "sinkhorn_step": step,
    "w2_1d": 4.5,
    "gaussian_ot_map": ot_map,
    "large_eps": "b",
    "bridge_sample": bridge,
    "ot_pairing": pairing,
}

WRONG = [
    ("sinkhorn_step", lambda *a: step(*a, weights=False), ["weights b_j are missing"]),
    ("sinkhorn_step", lambda *a: step(*a, sign=1), ["wrong sign"]),
    ("sinkhorn_step", lambda *a: step(*a, scale=False), ["divide (g_j - C_ij) by eps"]),
    ("sinkhorn_step", lambda *a: step(*a, fresh=False), ["used the OLD f"]),
    ("sinkhorn_step", lambda *a: step(*a, logdomain=False), ["inf or NaN", "logsumexp"]),
    ("w2_1d", 4.5 ** 0.5, ["W2 itself"]),
    ("w2_1d", 2.25 + 3.75 ** 2, ["standard deviations"]),
    ("w2_1d", 2.25 + 4 + 0.25, ["INDEPENDENT", "upper bound"]),
    ("w2_1d", 2.25, ["only the means"]),
    ("w2_1d", 3.0, ["two terms"]),
    ("gaussian_ot_map", lambda *a: ot_map(*a, kind="cholesky-like"), ["not symmetric", "Brenier"]),
    ("gaussian_ot_map", lambda *a: ot_map(*a, b_rule="shift"), ["b = m1 - A m0"]),
    ("gaussian_ot_map", lambda *a: ot_map(*a, kind="reverse"), ["direction is reversed"]),
    ("gaussian_ot_map", lambda *a: ot_map(*a, kind="diag"), ["entry-wise"]),
    ("large_eps", "a", ["recorded 'a'", "independent"]),
    ("large_eps", "c", ["recorded 'c'", "easy case"]),
    ("large_eps", "independent", ["one of the letters"]),
    ("bridge_sample", lambda *a: bridge(*a, swap=True), ["ends are swapped"]),
    ("bridge_sample", lambda *a: bridge(*a, var="bm"), ["free Brownian motion"]),
    ("bridge_sample", lambda *a: bridge(*a, var="nosigma"), ["sigma2 is missing"]),
    ("bridge_sample", lambda *a: bridge(*a, var="variance"), ["VARIANCE"]),
    ("ot_pairing", lambda xt, xs: (xt, xs[dl.ot.ot_permutation(xt, xs).argsort()]), ["inverse permutation"]),
    ("ot_pairing", lambda xt, xs: (xt[dl.ot.ot_permutation(xt, xs)], xs), ["re-ordered the targets"]),
    ("ot_pairing", lambda xt, xs: (xt, xs), ["unchanged"]),
    ("ot_pairing", lambda xt, xs: (xt, xs[torch.zeros(len(xs), dtype=torch.long)]), ["same points"]),
]

globals().update(chapter_suite("07", SOLUTIONS, WRONG))


def test_a_pairing_in_another_row_order_passes(capsys):
    def shuffled(xt, xs):
        a, b = pairing(xt, xs)
        idx = torch.arange(len(a)).flip(0)
        return a[idx], b[idx]
    assert dl.exercises.check_ot_pairing(shuffled)


def test_use_falls_back_only_for_a_stub():
    from dpm_lab.exercises import ch07
    f = ch07.use("ot_pairing", None)
    x, y = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    assert torch.equal(f(x, y)[1], pairing(x, y)[1])
    wrong = ch07.use("ot_pairing", lambda a, b: (a, b))
    assert torch.equal(wrong(x, y)[1], y)
