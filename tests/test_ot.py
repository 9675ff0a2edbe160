"""dpm_lab.ot: the exact assignment against POT's ot.emd (an independent LP solver) and brute force."""
import itertools

import numpy as np
import ot as pot
import pytest
import torch

import dpm_lab as dl


def _clouds(n, seed=0, d=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, d, generator=g, dtype=torch.float64) + 1


@pytest.mark.parametrize("n, d", [(30, 2), (64, 3)])
def test_cost_matches_pot_emd(n, d):
    x, y = _clouds(n, d=d)
    perm = dl.ot.ot_permutation(x, y)
    assert sorted(perm.tolist()) == list(range(n))                      # a permutation
    M = pot.dist(x.numpy(), y.numpy())                                   # squared Euclidean
    w = np.full(n, 1 / n)
    plan = pot.emd(w, w, M)
    assert abs(dl.ot.transport_cost(x, y[perm]) - float((plan * M).sum())) < 1e-10
    # the LP optimum is a permutation matrix here (Birkhoff), the same one
    assert np.allclose(plan * n, np.eye(n)[perm.numpy()], atol=1e-8) or abs(
        dl.ot.transport_cost(x, y[perm]) - float((plan * M).sum())) < 1e-12


def test_brute_force_on_six_points():
    x, y = _clouds(6, seed=3)
    best = min(dl.ot.transport_cost(x, y[list(p)]) for p in itertools.permutations(range(6)))
    assert abs(dl.ot.transport_cost(*dl.ot.ot_coupling(x, y)) - best) < 1e-12


def test_ot_paths_do_not_cross_and_independent_ones_do():
    x, y = _clouds(200, seed=4)
    xo, yo = dl.ot.ot_coupling(x, y)
    assert dl.reflow.crossings(xo, yo) == 0.0                            # cyclical monotonicity
    assert dl.reflow.crossings(x, y) > 0.3                               # independent: about half


def test_equals_metrics_w2():
    x, y = _clouds(50, seed=5)
    assert abs(dl.ot.transport_cost(*dl.ot.ot_coupling(x, y)) ** 0.5 - dl.metrics.w2_exact(x, y)) < 1e-10


def test_bad_input_raises():
    x, y = _clouds(5)
    with pytest.raises(ValueError, match="same shape"):
        dl.ot.ot_permutation(x, y[:4])
    with pytest.raises(ValueError, match="finite"):
        dl.ot.ot_permutation(x, y * float("nan"))
    with pytest.raises(TypeError, match="x"):
        dl.ot.transport_cost([[0.0]], y)


# -- chapter 07: exact OT with weights, Sinkhorn, minibatch pairs, Gaussians and the bridge --------------------
def _weights(n, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    return w / w.sum()


def test_exact_ot_unequal_weights_and_sizes_matches_pot_emd():
    x, _ = _clouds(40, seed=6)
    y = _clouds(25, seed=7)[1]
    a, b = _weights(40, 1), _weights(25, 2)
    P, cost = dl.ot.exact_ot(x, y, a, b)
    M = pot.dist(x.numpy(), y.numpy())
    ref = pot.emd2(a.numpy(), b.numpy(), M)
    assert abs(cost - ref) < 1e-9
    assert torch.allclose(P.sum(1), a, atol=1e-9) and torch.allclose(P.sum(0), b, atol=1e-9)
    assert (P >= 0).all()


def test_exact_ot_uniform_is_the_assignment():
    x, y = _clouds(30, seed=8)
    P, cost = dl.ot.exact_ot(x, y)
    assert abs(cost - dl.ot.transport_cost(*dl.ot.ot_coupling(x, y))) < 1e-12
    assert torch.allclose(P.sum(0), torch.full((30,), 1 / 30, dtype=torch.float64))


@pytest.mark.parametrize("eps", [0.5, 0.05])
def test_sinkhorn_matches_pot_sinkhorn_log(eps):
    x, y = _clouds(60, seed=9)
    a, b = _weights(60, 3), _weights(60, 4)
    r = dl.ot.sinkhorn(x, y, eps, a, b, tol=1e-10)
    M = pot.dist(x.numpy(), y.numpy())
    P = pot.bregman.sinkhorn_log(a.numpy(), b.numpy(), M, eps, numItermax=100000, stopThr=1e-12)
    assert r.converged and r.marginal_err <= 1e-10
    np.testing.assert_allclose(r.plan.numpy(), P, atol=1e-9)
    assert abs(float(r.cost) - float((P * M).sum())) < 1e-8
    assert torch.allclose(r.plan.sum(0), b, atol=1e-12)                    # columns exact after the g-update


def test_sinkhorn_is_batched_and_equals_one_by_one():
    xs = torch.stack([_clouds(20, seed=s)[0] for s in range(3)])
    ys = torch.stack([_clouds(25, seed=s)[1] for s in range(3)])
    r = dl.ot.sinkhorn(xs, ys, 0.2, tol=1e-10)
    assert r.plan.shape == (3, 20, 25) and r.cost.shape == (3,)
    for k in range(3):
        one = dl.ot.sinkhorn(xs[k], ys[k], 0.2, tol=1e-10)
        assert torch.allclose(one.plan, r.plan[k], atol=1e-10)


def test_sinkhorn_small_eps_does_not_overflow_and_approaches_exact():
    x, y = _clouds(50, seed=10)
    r = dl.ot.sinkhorn(x, y, 1e-3, max_iter=200)                  # unit-scale data: C/eps ~ 1e4
    assert torch.isfinite(r.plan).all() and torch.isfinite(r.cost).all()
    exact = dl.ot.exact_ot(x, y)[1]
    gaps = [float(dl.ot.sinkhorn(x, y, e, tol=1e-9, max_iter=100000).cost) - exact for e in (1.0, 0.3, 0.1, 0.03)]
    assert all(g > -1e-9 for g in gaps)                          # the entropic plan is a feasible plan
    assert all(g1 < g0 for g0, g1 in zip(gaps, gaps[1:]))        # and its cost decreases to OT's
    assert gaps[-1] < 0.02 * exact


def test_sinkhorn_reports_non_convergence():
    x, y = _clouds(30, seed=11)
    r = dl.ot.sinkhorn(x, y, 0.01, max_iter=5, check_every=1)
    assert r.n_iter == 5 and not r.converged and r.marginal_err > 1e-6


def test_sinkhorn_on_the_inputs_device_and_dtype():
    x, y = _clouds(10, seed=12)
    r = dl.ot.sinkhorn(x.float(), y.float(), 0.5)
    assert r.plan.dtype == torch.float32 and r.plan.device == x.device


@pytest.mark.parametrize("seed", range(5))
def test_minibatch_pairs_never_cost_more_than_independent(seed):
    x, y = _clouds(64, seed=seed)
    xt, xs = dl.ot.minibatch_ot_pairs(x, y)
    assert dl.ot.transport_cost(xt, xs) <= dl.ot.transport_cost(x, y) + 1e-12
    # the inverse-permutation bug: pairing with y[argsort(perm)] is no better than chance
    perm = dl.ot.ot_permutation(x, y)
    assert dl.ot.transport_cost(x, y[perm.argsort()]) > dl.ot.transport_cost(xt, xs)


def test_gaussian_w2_one_d_and_against_samples():
    assert abs(dl.ot.gaussian_w2([1.0], 4.0, [-0.5], 0.25) - (1.5 ** 2 + (2 - 0.5) ** 2) ** 0.5) < 1e-12
    m0, S0 = torch.tensor([0.0, 0.0]), torch.tensor([[1.0, 0.6], [0.6, 0.8]])
    m1, S1 = torch.tensor([1.0, -1.0]), torch.tensor([[0.5, -0.2], [-0.2, 1.5]])
    w = dl.ot.gaussian_w2(m0, S0, m1, S1)
    assert abs(w - dl.ot.gaussian_w2(m1, S1, m0, S0)) < 1e-10           # symmetric
    # POT's closed form (bures) as an independent route
    A, b = pot.gaussian.bures_wasserstein_mapping(m0.numpy().astype(float), m1.numpy().astype(float),
                                                  S0.numpy().astype(float), S1.numpy().astype(float))
    Am, bm = dl.ot.gaussian_ot_map(m0, S0, m1, S1)
    np.testing.assert_allclose(Am.numpy(), A, atol=1e-8)
    np.testing.assert_allclose(bm.numpy(), b.ravel(), atol=1e-8)


def test_gaussian_ot_map_pushes_forward_and_costs_w2():
    m0, S0 = torch.tensor([0.0, 1.0]), torch.tensor([[2.0, 0.3], [0.3, 0.5]])
    m1, S1 = torch.tensor([2.0, 0.0]), torch.tensor([[0.7, -0.4], [-0.4, 1.2]])
    A, b = dl.ot.gaussian_ot_map(m0, S0, m1, S1)
    assert torch.allclose(A, A.T) and torch.linalg.eigvalsh(A).min() > 0      # a convex potential's Hessian
    assert torch.allclose(A @ S0.double() @ A, S1.double(), atol=1e-10)
    assert torch.allclose(A @ m0.double() + b, m1.double())
    I = torch.eye(2, dtype=torch.float64)                                     # E||T(x) - x||^2 = W2^2
    cost = ((A @ m0.double() + b - m0.double()) ** 2).sum() + ((A - I) @ S0.double() @ (A - I).T).trace()
    assert abs(float(cost) - dl.ot.gaussian_w2(m0, S0, m1, S1) ** 2) < 1e-10


def _joint(C, S0, S1):
    return torch.cat([torch.cat([S0, C], 1), torch.cat([C.T, S1], 1)], 0)


@pytest.mark.parametrize("sigma2", [0.05, 1.0, 7.0])
def test_gaussian_eot_has_the_schroedinger_form(sigma2):
    # pi(x, y) = a(x) b(y) exp(-||x - y||^2 / (2 sigma2)): the joint precision's cross block is -I / sigma2
    S0 = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)
    S1 = torch.tensor([[0.5, -0.2], [-0.2, 1.5]], dtype=torch.float64)
    C = dl.ot.gaussian_eot([0, 0], S0, [1, 1], S1, sigma2)
    J = _joint(C, S0, S1)
    assert torch.linalg.eigvalsh(J).min() > 0
    assert torch.allclose(torch.linalg.inv(J)[:2, 2:], -torch.eye(2, dtype=torch.float64) / sigma2, atol=1e-8)


def test_gaussian_eot_limits_and_sinkhorn():
    S0 = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)
    S1 = torch.tensor([[0.5, -0.2], [-0.2, 1.5]], dtype=torch.float64)
    A, _ = dl.ot.gaussian_ot_map([0, 0], S0, [0, 0], S1)
    assert torch.allclose(dl.ot.gaussian_eot([0, 0], S0, [0, 0], S1, 1e-7), S0 @ A, atol=1e-5)    # OT
    assert dl.ot.gaussian_eot([0, 0], S0, [0, 0], S1, 1e6).abs().max() < 1e-5                   # independent
    # 1-D against Sinkhorn on a fine grid of the two densities (eps = 2 sigma2)
    s0, s1, sigma2 = 1.0, 0.5, 0.5
    z = torch.linspace(-6, 6, 401, dtype=torch.float64)[:, None]
    a, b = torch.exp(-z[:, 0] ** 2 / (2 * s0 ** 2)), torch.exp(-z[:, 0] ** 2 / (2 * s1 ** 2))
    r = dl.ot.sinkhorn(z, z, 2 * sigma2, a / a.sum(), b / b.sum(), tol=1e-12)
    cov = float((r.plan * (z @ z.T)).sum())
    assert abs(cov - float(dl.ot.gaussian_eot(0.0, s0 ** 2, 0.0, s1 ** 2, sigma2))) < 1e-4


def test_gaussian_bridge_marginal_and_drift_against_the_sde():
    m0, S0 = torch.tensor([-2.0, 0.0]), torch.tensor([[0.5, 0.2], [0.2, 1.0]])
    m1, S1 = torch.tensor([2.0, 1.0]), torch.tensor([[1.0, -0.3], [-0.3, 0.4]])
    sigma2 = 0.5
    assert torch.allclose(dl.ot.gaussian_bridge_marginal(m0, S0, m1, S1, sigma2, 0.0)[1], S0.double())
    assert torch.allclose(dl.ot.gaussian_bridge_marginal(m0, S0, m1, S1, sigma2, 1.0)[1], S1.double())
    # the covariance ODE of the linear SDE dS/dt = K S + S K^T + sigma2 I holds along the bridge
    for t in (0.2, 0.5, 0.8):
        K, _ = dl.ot.gaussian_bridge_drift(m0, S0, m1, S1, sigma2, t)
        h = 1e-5
        dS = (dl.ot.gaussian_bridge_marginal(m0, S0, m1, S1, sigma2, t + h)[1]
              - dl.ot.gaussian_bridge_marginal(m0, S0, m1, S1, sigma2, t - h)[1]) / (2 * h)
        _, S_t = dl.ot.gaussian_bridge_marginal(m0, S0, m1, S1, sigma2, t)
        assert torch.allclose(dS, K @ S_t + S_t @ K.T + sigma2 * torch.eye(2, dtype=torch.float64), atol=1e-6)
        m_t, _ = dl.ot.gaussian_bridge_marginal(m0, S0, m1, S1, sigma2, t)
        K, k = dl.ot.gaussian_bridge_drift(m0, S0, m1, S1, sigma2, t)
        assert torch.allclose(K @ m_t + k, (m1 - m0).double(), atol=1e-10)       # dm/dt = u_t(m_t)


def test_gaussian_flow_map_is_ot_only_for_commuting_covariances():
    S0 = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)
    S1 = torch.tensor([[0.5, -0.2], [-0.2, 1.5]], dtype=torch.float64)
    M, _ = dl.ot.gaussian_flow_map([0, 0], S0, [0, 0], S1, n_steps=400)
    assert torch.allclose(M @ S1 @ M.T, S0, atol=1e-8)                         # it transports
    assert (M - M.T).abs().max() > 1e-2                                        # but is not a gradient map
    A, _ = dl.ot.gaussian_ot_map([0, 0], S1, [0, 0], S0)
    I = torch.eye(2, dtype=torch.float64)
    cost = lambda B: float(((B - I) @ S1 @ (B - I).T).trace())                # noqa: E731
    assert cost(M) > cost(A) + 1e-3
    D0, D1 = torch.diag(torch.tensor([2.0, 0.3], dtype=torch.float64)), torch.diag(torch.tensor([0.5, 1.1], dtype=torch.float64))
    M, _ = dl.ot.gaussian_flow_map([0, 0], D0, [0, 0], D1, n_steps=400)
    assert torch.allclose(M, dl.ot.gaussian_ot_map([0, 0], D1, [0, 0], D0)[0], atol=1e-8)


def test_chapter07_bad_input_names_the_argument():
    x, y = _clouds(5)
    with pytest.raises(ValueError, match="a must be non-negative"):
        dl.ot.exact_ot(x, y, torch.tensor([-0.1, 0.3, 0.3, 0.3, 0.2]))
    with pytest.raises(ValueError, match="b must sum to one"):
        dl.ot.sinkhorn(x, y, 0.1, None, torch.full((5,), 0.3))
    with pytest.raises(ValueError, match="a must have 5 entries"):
        dl.ot.sinkhorn(x, y, 0.1, torch.full((4,), 0.25))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="eps must be a positive"):
            dl.ot.sinkhorn(x, y, bad)
    with pytest.raises(ValueError, match="same dimension"):
        dl.ot.sinkhorn(x, torch.zeros(5, 3, dtype=torch.float64), 0.1)
    with pytest.raises(ValueError, match="same dimension"):
        dl.ot.exact_ot(x, torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="y must be finite"):
        dl.ot.sinkhorn(x, y * float("nan"), 0.1)
    with pytest.raises(ValueError, match="a must be finite"):
        dl.ot.exact_ot(x, y, torch.full((5,), float("nan")))
    with pytest.raises(ValueError, match="sigma2 must be a positive"):
        dl.ot.gaussian_eot([0.0], 1.0, [0.0], 1.0, 0.0)
    with pytest.raises(ValueError, match="S1 must be symmetric positive definite"):
        dl.ot.gaussian_w2([0, 0], torch.eye(2), [0, 0], -torch.eye(2))
    with pytest.raises(ValueError, match="m1 must have 2 entries"):
        dl.ot.gaussian_ot_map([0, 0], torch.eye(2), [0, 0, 0], torch.eye(2))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        dl.ot.sinkhorn([[0.0]], y, 0.1)


def test_bridge_sde_with_the_closed_form_drift_has_the_bridge_marginals():
    m0, S0 = torch.tensor([-2.0, 0.0], dtype=torch.float64), torch.tensor([[0.3, 0.2], [0.2, 1.0]], dtype=torch.float64)
    m1, S1 = torch.tensor([2.0, 0.5], dtype=torch.float64), torch.tensor([[1.0, -0.4], [-0.4, 0.5]], dtype=torch.float64)
    s2, n = 0.5, 20000
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(S0).T + m0

    def drift(y, t):
        K, k = dl.ot.gaussian_bridge_drift(m0, S0, m1, S1, s2, t)
        return y @ K.T + k

    path = dl.ot.bridge_sde(drift, x, s2, 200, generator=g)
    for k, t in ((100, 0.5), (200, 1.0)):
        m_t, S_t = dl.ot.gaussian_bridge_marginal(m0, S0, m1, S1, s2, t)
        se = float(S_t.diag().max()) * (2 / n) ** 0.5
        assert (path[k].mean(0) - m_t).abs().max() < 5 * float(S_t.diag().max() / n) ** 0.5 + 0.01
        assert (torch.cov(path[k].T) - S_t).abs().max() < 5 * se + 0.01          # + O(h) Euler-Maruyama bias
    with pytest.raises(ValueError, match="sigma2"):
        dl.ot.bridge_sde(drift, x, -1.0)
