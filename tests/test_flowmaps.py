"""dpm_lab.flowmaps: the oracle flow map and its three characterizations (§11.6), the parameterizations'
boundaries, the CT one-point fact, the CTM <-> MeanFlow scaling identity, gamma-sampling, the losses' gradients
against independent routes, and the book's two slips."""
import math

import pytest
import torch

import dpm_lab as dl

fm = dl.flowmaps
RF = dl.schedules.RectifiedFlow()
MIX = dl.datasets.eight_gaussians_mixture()


def _x(n=24, seed=0, dtype=torch.float64):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _vel(mix, sched):
    return lambda x, t: mix.velocity(x, t, sched)


@pytest.mark.parametrize("sched", [RF, dl.schedules.VPLinear()])
def test_oracle_semigroup_and_identity(sched):
    G, x = fm.oracle_map(MIX, sched), _x()
    assert fm.semigroup_violation(G, x, 0.95, 0.5, 0.05).max() < 1e-7
    assert torch.equal(G(x, 0.3, 0.3), x)
    # a wrong middle time breaks it: the check can fail
    assert (G(G(x, 0.95, 0.5), 0.4, 0.05) - G(x, 0.95, 0.05)).norm(dim=-1).max() > 1e-2


def test_lagrangian_and_eulerian_residuals_vanish_at_second_order():
    G, x, v = fm.oracle_map(MIX, RF), _x(), _vel(MIX, RF)
    r1 = fm.lagrangian_residual(G, v, x, 0.9, 0.3, dt=1e-2).max()
    r2 = fm.lagrangian_residual(G, v, x, 0.9, 0.3, dt=5e-3).max()
    assert r2 < 1e-2 and 3.0 < r1 / r2 < 5.0          # central difference: error ~ dt^2
    e = fm.eulerian_residual(G, v, x, 0.7, 0.1, ds=1e-3).max()
    assert e < 1e-4
    # a map that ignores the source time fails the Eulerian identity
    wrong = lambda y, s, t: G(y, 0.7, t)  # noqa: E731
    assert fm.eulerian_residual(wrong, v, x, 0.7, 0.1, ds=1e-3).max() > 0.1


def test_meanflow_identity_with_quadrature():
    x = _x(12)
    assert fm.meanflow_identity_residual(MIX, RF, x, 0.8, 0.2).max() < 1e-4
    h = fm.oracle_average_velocity(MIX, RF, x, 0.8, 0.2)
    psi = MIX.flow_map(x, 0.8, 0.2, RF)
    assert torch.allclose(x + (0.2 - 0.8) * h, psi, atol=1e-7)      # Psi = x + (t - s) h*
    assert torch.allclose(fm.oracle_average_velocity(MIX, RF, x, 0.5, 0.5), MIX.velocity(x, 0.5, RF))


@pytest.mark.parametrize("sched", [RF, dl.schedules.VPLinear(), dl.schedules.EDM(sigma_max=2.0)])
def test_gaussian_flow_map_closed_form(sched):
    m = torch.tensor([1.0, -0.5], dtype=torch.float64)
    C = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)
    gauss = dl.gmm.GaussianMixture([1.0], m[None], C[None])
    x = _x()
    assert torch.allclose(fm.gaussian_flow_map(m, C, x, 0.9, 0.1, sched), gauss.flow_map(x, 0.9, 0.1, sched),
                          atol=1e-7)
    # affine: the map of a midpoint is the midpoint of the maps
    y = fm.gaussian_flow_map(m, C, torch.stack([x[0], x[1], (x[0] + x[1]) / 2]), 0.9, 0.1, sched)
    assert torch.allclose(y[2], (y[0] + y[1]) / 2, atol=1e-12)


@pytest.mark.parametrize("sched", [RF, dl.schedules.VPLinear(), dl.schedules.EDM(sigma_max=1.0)])
def test_ct_one_point_ddim_step_is_exact(sched):
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(6, 2, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64)
    x_s = sched.alpha(0.7) * x0 + sched.sigma(0.7) * eps
    out, _ = dl.samplers.ddim_step(fm.one_point_model(eps, sched), x_s, 0.7, 0.4)
    assert torch.allclose(out, fm.ct_ddim_target(x0, eps, 0.4, sched), atol=1e-12)


def test_cm_boundary_coeffs():
    c_skip, c_out = fm.cm_boundary_coeffs(RF, torch.tensor([0.0, 0.5, 1.0]))
    assert c_skip.tolist() == [1.0, 1.0, 0.0]
    assert c_out[0] == 0 and abs(c_out[2] - 1.0) < 1e-12
    # EDM with sigma_max = 1 reproduces Song et al.'s c_skip = sd^2 / (s^2 + sd^2), c_out = s sd / sqrt(s^2 + sd^2)
    s = torch.tensor([0.2, 0.7])
    cs, co = fm.cm_boundary_coeffs(dl.schedules.EDM(sigma_max=1.0), s, sigma_data=0.5)
    assert torch.allclose(cs, 0.25 / (s.double() ** 2 + 0.25))
    assert torch.allclose(co, 0.5 * s.double() / (s.double() ** 2 + 0.25).sqrt())


@pytest.mark.parametrize("param", fm.PARAMS)
def test_parameterization_boundaries(param):
    net = fm.FlowMap(RF, param)
    x = _x(dtype=torch.float32)
    with torch.no_grad():
        if param == "cm":
            assert torch.equal(net(x, 0.0, 0.0), x)
            with pytest.raises(ValueError, match="only to t = 0"):
                net(x, 0.5, 0.2)
            with pytest.raises(ValueError, match="velocity"):
                net.velocity(x, 0.5)
        else:
            assert torch.allclose(net(x, 0.6, 0.6), x)          # G(x, s, s) = x
            # the velocity head is d/dt G at t = s
            d = (net(x, 0.6, 0.6) - net(x, 0.6, 0.6 - 1e-3)) / 1e-3
            assert torch.allclose(d, net.velocity(x, 0.6), atol=2e-2)
    with pytest.raises(ValueError, match="param"):
        fm.FlowMap(RF, "cmx")


def test_ctm_g_and_v_param_agree_when_g_is_x_minus_s_h():
    x, s, t = _x(dtype=torch.float32), 0.8, 0.3
    vnet = fm.FlowMap(RF, "ctm_v")
    gnet = fm.FlowMap(RF, "ctm_g")
    with torch.no_grad():
        h = vnet.raw(x, s, t)
        G_v = vnet(x, s, t)
        G_g = (t / s) * x + (1 - t / s) * (x - s * h)
    assert torch.allclose(G_v, G_g, atol=1e-6)
    assert gnet(x, s, t).shape == x.shape


def test_ctm_mf_scaling_identity_arbitrary_tensors():
    g = torch.Generator().manual_seed(5)
    G, Psi, x = (torch.randn(7, 3, generator=g, dtype=torch.float64) for _ in range(3))
    a, b, c = fm.ctm_mf_scaling(G, Psi, x, 0.9, 0.35)
    assert math.isclose(a, b, rel_tol=1e-12) and math.isclose(a, c, rel_tol=1e-12)
    with pytest.raises(ValueError):
        fm.ctm_mf_scaling(G, Psi, x, 0.3, 0.35)


def test_gamma_sampling_limits_and_solver_object():
    G = fm.oracle_map(MIX, RF)
    x = _x(64)
    # gamma = 0 with the oracle: deterministic and exactly the one-jump map (semigroup)
    out = fm.gamma_sample(G, x, [1.0, 0.6, 0.3, 0.0], RF, 0.0)
    assert torch.allclose(out, G(x, 1.0, 0.0), atol=1e-7)
    # gamma = 1: jump to 0, then re-noise: alpha_t x0 + sigma_t z
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    step = fm.gamma_step(G, x, 1.0, 0.5, RF, 1.0, g1)
    z = dl.utils.randn_like(x, generator=g2)
    assert torch.allclose(step, 0.5 * G(x, 1.0, 0.0) + 0.5 * z, atol=1e-6)
    # a transport student re-noises with the given draws (source points)
    src = torch.full_like(x, 3.0)
    step = fm.gamma_step(G, x, 1.0, 0.5, RF, 1.0, None, noise=lambda y, g: src)
    assert torch.allclose(step, 0.5 * G(x, 1.0, 0.0) + 0.5 * src, atol=1e-6)
    # intermediate gamma: the jump lands at noise ratio sqrt(1 - gamma^2) of t's
    tt = fm._tilde_time(RF, 0.5, 0.6)
    assert math.isclose(tt / (1 - tt), 0.8 * 1.0, rel_tol=1e-9)
    with pytest.raises(ValueError, match="gamma"):
        fm.gamma_step(G, x, 1.0, 0.5, RF, 1.5)
    # the solver object through the package driver, counting one NFE per step
    net = fm.FlowMap(RF, "ctm_v")
    recs = list(dl.samplers.sample(net, x.float(), [1.0, 0.5, 0.0], fm.gamma_solver(0.0)))
    assert recs[-1].nfe == 2
    with torch.no_grad():
        assert torch.allclose(recs[-1].x, net(net(x.float(), 1.0, 0.5), 0.5, 0.0), atol=1e-6)


def test_losses_are_finite_and_train_step_lowers_oracle_error():
    data = lambda n, *, generator=None: MIX.sample(n, generator=generator).float()  # noqa: E731
    teacher = MIX.model(RF)
    g = torch.Generator().manual_seed(0)
    x0 = data(64, generator=g)
    for param, loss in [("cm", fm.CTLoss(RF)), ("cm", fm.CDLoss(RF, teacher)), ("cm", fm.ContinuousCTLoss(RF)),
                        ("ctm_g", fm.CTMLoss(RF)), ("ctm_v", fm.CTMLoss(RF, teacher)), ("ctm_v", fm.MeanFlowLoss(RF)),
                        ("ctm_v", fm.MeanFlowLoss(RF, teacher, adaptive_p=1.0))]:
        net = fm.FlowMap(RF, param)
        val = loss(net, x0, generator=g)
        assert val.shape == (64,) and torch.isfinite(val).all()
        val.mean().backward()
        assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(ValueError, match="ctm_v"):
        fm.MeanFlowLoss(RF)(fm.FlowMap(RF, "cm"), x0, generator=g)
    with pytest.raises(ValueError, match="p_fm"):
        fm.MeanFlowLoss(RF, p_fm=1.5)
    with pytest.raises(ValueError, match="min_gap"):
        fm.MeanFlowLoss(RF, min_gap=1.0)
    val = fm.MeanFlowLoss(RF, p_fm=0.0, min_gap=0.3)(fm.FlowMap(RF, "ctm_v"), x0, generator=g)
    assert val.shape == (64,) and torch.isfinite(val).all()


def test_meanflow_target_equals_oracle_h_when_fed_the_oracle():
    """The JVP target v - (s - t) dh/ds at h = h* reproduces h* (the identity the loss trains toward)."""
    x, s, t = _x(8), 0.8, 0.2
    v = MIX.velocity(x, s, RF)
    h = fm.oracle_average_velocity(MIX, RF, x, s, t)
    ds = 1e-3
    dh = (fm.oracle_average_velocity(MIX, RF, x + ds * v, s + ds, t)
          - fm.oracle_average_velocity(MIX, RF, x - ds * v, s - ds, t)) / (2 * ds)
    assert torch.allclose(v - (s - t) * dh, h, atol=1e-4)


def test_book_slips():
    x, T = _x(16), 1.0
    h = lambda y, s, t: fm.oracle_average_velocity(MIX, RF, y, s, t)  # noqa: E731
    psi = MIX.flow_map(x, 1.0, 0.0, RF)
    assert (fm.meanflow_one_step(h, x, T) - psi).abs().max() < 1e-6
    assert (fm.book_meanflow_one_step(h, x, T) - psi).norm(dim=-1).mean() > 1.0
    # CTM boundary: for EDM (x_s = x0 + s eps) x - s v* is the denoiser; the book's x - v* is not
    edm = dl.schedules.EDM(sigma_max=1.0)
    v = _vel(MIX, edm)
    y = _x(16) * 0.7
    assert torch.allclose(fm.ctm_boundary_g(v, y, 0.7), MIX.x0(y, 0.7, edm), atol=1e-10)
    assert (fm.book_ctm_boundary_g(v, y, 0.7) - MIX.x0(y, 0.7, edm)).norm(dim=-1).mean() > 0.1
