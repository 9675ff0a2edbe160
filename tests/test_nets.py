"""Networks and the Predictor wrapper: shapes, conditioning, conversions, EDM preconditioning (App. D.6)."""
import pytest
import torch

import dpm_lab as dl
from dpm_lab import nets


def test_mlp_shapes_time_and_labels(gen):
    net = nets.MLP(2, 32, 2, n_classes=3)
    x = torch.randn(5, 2, generator=gen)
    assert net(x, 0.3).shape == (5, 2)
    assert net(x, torch.rand(5, generator=gen)).shape == (5, 2)
    out_null = net(x, 0.3)                         # c=None is the null label 3
    assert torch.allclose(out_null, net(x, 0.3, torch.full((5,), 3)))
    assert not torch.allclose(out_null, net(x, 0.3, 1))
    with pytest.raises(ValueError, match="c must be"):
        net(x, 0.3, torch.full((5,), 4))
    with pytest.raises(ValueError, match="unconditional"):
        nets.MLP(2, 8, 1)(x, 0.3, 1)
    with pytest.raises(ValueError, match="shape"):
        net(x, torch.rand(4))


@pytest.mark.parametrize("size,mults", [(8, (1, 2)), (28, (1, 2, 2))])
def test_unet_shapes(size, mults, gen):
    net = nets.UNet(1, base=8, mults=mults, n_classes=10, emb=16, groups=4)
    x = torch.randn(3, 1, size, size, generator=gen)
    assert net(x, torch.rand(3, generator=gen), torch.tensor([0, 5, 10])).shape == x.shape
    with pytest.raises(ValueError, match="divisible"):
        nets.UNet(1, base=8, mults=(1, 2, 2, 2))(torch.randn(1, 1, 28, 28), 0.5)


def test_classifiers(gen):
    assert nets.Classifier2D(2, 8, 32, 2)(torch.randn(4, 2, generator=gen), 0.5).shape == (4, 8)
    clf = nets.ImageClassifier(1, 10, base=8, emb=16, groups=4)
    assert clf(torch.randn(2, 1, 28, 28, generator=gen), torch.rand(2, generator=gen)).shape == (2, 10)


def test_embeddings(gen):
    t = torch.rand(6, generator=gen)
    assert nets.SinusoidalEmbedding(8)(t).shape == (6, 8)
    emb = nets.FourierEmbedding(8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(emb.w, nets.FourierEmbedding(8, generator=torch.Generator().manual_seed(0)).w)


@pytest.mark.parametrize("kind", ["x0", "eps", "velocity", "v"])
def test_predictor_converts_once_at_the_edge(kind, gen):
    sched = dl.VPLinear()
    model = nets.Predictor(nets.MLP(2, 16, 1), sched, kind)
    x, t = torch.randn(7, 2, generator=gen), torch.rand(7, generator=gen) * 0.9 + 0.05
    raw = model.raw(x, t)
    assert torch.equal(model(x, t), raw)
    for dst in dl.KINDS:
        torch.testing.assert_close(model.predict(x, t, dst), dl.convert(sched, x, t, raw, kind, dst))


@pytest.mark.parametrize("sched", [dl.VPLinear(), dl.EDM(), dl.RectifiedFlow()], ids=lambda s: s.name)
def test_edm_coefficients_give_unit_variances(sched):
    """c_in^2 Var(x_t) = 1 and Var((x0 - c_skip x_t) / c_out) = 1 when Var(x0) = sigma_d^2 (App. D.6)."""
    sd = 0.7
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    c_skip, c_out, c_in, _ = nets.edm_coefficients(sched, t, sd)
    a, s = sched.alpha(t), sched.sigma(t)
    var_xt = a ** 2 * sd ** 2 + s ** 2
    torch.testing.assert_close(c_in ** 2 * var_xt, torch.ones_like(t))
    var_target = ((1 - c_skip * a) ** 2 * sd ** 2 + c_skip ** 2 * s ** 2) / c_out ** 2
    torch.testing.assert_close(var_target, torch.ones_like(t))


def test_predictor_edm(gen):
    sched = dl.VPLinear()
    with pytest.raises(ValueError, match="x0"):
        nets.Predictor(nets.MLP(2, 8, 1), sched, "eps", precond="edm")
    net = nets.MLP(2, 8, 1)
    model = nets.Predictor(net, sched, "x0", precond="edm", sigma_data=0.5)
    x, t = torch.randn(4, 2, generator=gen), torch.full((4,), 0.4)
    c_skip, c_out, c_in, c_noise = (c.float() for c in nets.edm_coefficients(sched, t, 0.5))
    expect = c_skip[:, None] * x + c_out[:, None] * net(c_in[:, None] * x, c_noise)
    torch.testing.assert_close(model.raw(x, t), expect)
    assert model.eps(x, 0.4).shape == x.shape


def test_predictor_on_images(gen):
    model = nets.Predictor(nets.UNet(1, 8, (1, 2), n_classes=10, emb=16, groups=4), dl.Cosine(), "eps")
    x = torch.randn(2, 1, 8, 8, generator=gen)
    assert model.x0(x, 0.5, c=torch.tensor([1, 2])).shape == x.shape


def test_fourier_frequencies_are_the_generators_normal_draws():
    # utils.randn with a CPU generator gives torch.randn's numbers: frozen features do not move with the refactor
    w = nets.FourierEmbedding(8, scale=3.0, generator=torch.Generator().manual_seed(5)).w
    z = torch.randn(4, generator=torch.Generator().manual_seed(5), device="cpu")
    torch.testing.assert_close(w, z * 3.0 * 2 * torch.pi)
    assert w.device.type == "cpu"


def test_predictor_follows_the_input_device(device, gen):
    sched = dl.VPLinear()
    model = nets.Predictor(nets.MLP(2, 8, 1, n_classes=3), sched, "v").to(device)
    x = dl.utils.randn((5, 2), generator=gen, device=device)
    t = torch.full((5,), 0.3, device=device)
    for kind in dl.KINDS:
        out = model.predict(x, t, kind, c=torch.tensor([0, 1, 2, 3, 0], device=device))
        assert out.device.type == device.type and out.dtype == torch.float32 and out.shape == (5, 2)
    # c_noise = -lambda_t / 4 (App. D.6), and c_skip = alpha / (alpha^2 + sigma^2) for sigma_d = 1
    tt = torch.tensor([0.2, 0.7], dtype=torch.float64, device="cpu")
    c_skip, _, _, c_noise = nets.edm_coefficients(sched, tt)
    torch.testing.assert_close(c_noise, -sched.lam(tt) / 4)
    torch.testing.assert_close(c_skip, sched.alpha(tt) / (sched.alpha(tt) ** 2 + sched.sigma(tt) ** 2))


def test_unet_extra_conditions_start_at_zero_effect_and_then_matter(gen):
    teacher = nets.UNet(1, 8, (1, 2), n_classes=3)
    x = torch.randn(5, 1, 8, 8, generator=gen)
    t, c = torch.rand(5, generator=gen), torch.tensor([0, 1, 2, 3, 0])
    student = nets.UNet.grow(teacher, 2)
    r = torch.rand(5, 2, generator=gen)
    assert torch.equal(student(x, t, c, r), teacher(x, t, c))        # grown copy = teacher until trained
    assert len(teacher.state_dict()) + 2 * 5 == len(student.state_dict())   # freqs, 2 Linear (w, b) per extra
    with torch.no_grad():
        for p in student.embed.x.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
    a, b = student(x, t, c, r), student(x, t, c, 1 - r)
    assert (a - b).abs().max() > 1e-4                               # once trained, the extras change the output
    assert torch.equal(student(x, t, c, 0.5), student(x, t, c, torch.full((5, 2), 0.5)))   # scalar broadcasts


def test_unet_extra_conditions_refuse_bad_input(gen):
    net = nets.UNet(1, 8, (1, 2), extra=1)
    x = torch.randn(2, 1, 8, 8, generator=gen)
    with pytest.raises(ValueError, match="extra = 1"):
        net(x, 0.5)
    with pytest.raises(ValueError, match="shape"):
        net(x, 0.5, extra=torch.zeros(3, 1))
    with pytest.raises(ValueError, match="finite"):
        net(x, 0.5, extra=torch.tensor([[float("nan")], [0.0]]))
    with pytest.raises(ValueError, match="no extra"):
        nets.UNet(1, 8, (1, 2))(x, 0.5, extra=torch.zeros(2, 1))
    with pytest.raises(ValueError, match="extra must be an int"):
        nets.UNet.grow(nets.UNet(1, 8, (1, 2)), 0)
    with pytest.raises(TypeError, match="nets.UNet"):
        nets.UNet.grow(nets.MLP(2), 1)
