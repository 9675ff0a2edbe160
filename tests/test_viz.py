"""Tests of dpm_lab.viz: every plot accepts ax=, returns it, and draws what it was given."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import dpm_lab as dl  # noqa: E402

viz = dl.viz


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def gmm():
    return dl.datasets.eight_gaussians_mixture()


def test_grid_points_shapes_and_limits():
    xs, ys, pts = viz.grid_points(2.0, 5)
    assert pts.shape == (25, 2) and pts.dtype == torch.float64
    assert xs[0] == -2 and xs[-1] == 2
    _, ys, _ = viz.grid_points(((0, 1), (-3, 3)), 4)
    assert ys[0] == -3 and ys[-1] == 3


def test_density_draws_normalised_heatmap(gmm):
    fig, ax = plt.subplots()
    out = viz.density(gmm.log_prob, lim=3, n=30, ax=ax)
    assert out is ax
    img = ax.images[0].get_array()
    assert img.shape == (30, 30) and np.isclose(img.max(), 1.0)
    ax2 = viz.density(gmm.log_prob, n=20, log=True)   # creates its own axes
    assert ax2 is not ax and ax2.images[0].get_array().max() <= 0
    ax3 = viz.density(lambda x: gmm.log_prob(x) + 2.0, n=30, normalize=False, colorbar=True)
    p_max = gmm.log_prob(viz.grid_points(3, 30)[2]).exp().max().item()
    assert np.isclose(ax3.images[0].get_array().max(), np.exp(2.0) * p_max)   # absolute values, Z kept


def test_scatter_checks_shape_and_labels():
    ax = viz.scatter(torch.randn(50, 2, generator=torch.Generator().manual_seed(0)), label="data", lim=2)
    assert ax.get_legend() is not None and ax.get_xlim() == (-2, 2)
    assert ax.collections[0].get_offsets().shape == (50, 2)
    with pytest.raises(ValueError, match="shape"):
        viz.scatter(torch.randn(5, 3))


@pytest.mark.parametrize("kind", ["quiver", "stream"])
def test_field_draws_exact_score(gmm, kind):
    sched = dl.VPLinear()
    ax = viz.field(lambda x: gmm.score(x, 0.3, sched), lim=3, n=9, kind=kind)
    if kind == "quiver":
        q = ax.collections[0]
        _, _, pts = viz.grid_points(3, 9)
        want = gmm.score(pts, 0.3, sched).numpy()
        assert np.allclose(q.U.ravel(), want[:, 0]) and np.allclose(q.V.ravel(), want[:, 1])
    else:
        assert len(ax.collections) + len(ax.patches) > 0
    with pytest.raises(ValueError, match="kind"):
        viz.field(lambda x: x, kind="arrows")


def test_field_normalize_gives_unit_arrows():
    ax = viz.field(lambda x: 3 * x + 0.1, lim=1, n=5, normalize=True)
    q = ax.collections[0]
    assert np.allclose(np.hypot(q.U, q.V), 1.0)


def test_trajectories_time_major():
    traj = torch.randn(6, 10, 2)
    ax = viz.trajectories(traj, n_show=4)
    assert len(ax.lines) == 4
    assert np.allclose(ax.lines[0].get_xydata(), traj[:, 0].numpy())
    with pytest.raises(ValueError, match=r"\(n\+1, B, 2\)"):
        viz.trajectories(torch.randn(6, 10))


def test_time_strip_and_image_strip():
    g = torch.Generator().manual_seed(0)
    axes = viz.time_strip(torch.randn(40, 2, generator=g), dl.VPLinear(), times=(0.0, 0.5, 1.0), generator=g)
    assert len(axes) == 3 and axes[1].get_title() == "t = 0.5"
    axes = viz.image_strip(torch.zeros(8, 8), dl.Cosine(), times=(0.0, 1.0), generator=g)
    assert np.allclose(axes[0].images[0].get_array(), 0.0)   # t = 0: the clean image
    with pytest.raises(ValueError, match="one grey image"):
        viz.image_strip(torch.zeros(2, 3, 8, 8), dl.Cosine())


def test_time_strip_draws_the_forward_process_with_one_seeded_eps():
    sched = dl.Cosine()
    x0 = torch.randn(30, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    axes = viz.time_strip(x0, sched, times=(0.0, 0.3, 1.0), generator=torch.Generator().manual_seed(2))
    eps = torch.randn(30, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for ax, t in zip(axes, (0.0, 0.3, 1.0)):
        want = (sched.alpha(t) * x0 + sched.sigma(t) * eps).numpy()
        assert np.allclose(ax.collections[0].get_offsets(), want)
    assert np.allclose(axes[0].collections[0].get_offsets(), x0.numpy())


def test_image_strip_draws_the_forward_process_with_one_seeded_eps():
    sched = dl.VPLinear()
    img = torch.linspace(-1, 1, 16, dtype=torch.float64).reshape(1, 4, 4)
    axes = viz.image_strip(img, sched, times=(0.2, 0.7), generator=torch.Generator().manual_seed(4))
    eps = torch.randn(4, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for ax, t in zip(axes, (0.2, 0.7)):
        assert np.allclose(ax.images[0].get_array(), (sched.alpha(t) * img[0] + sched.sigma(t) * eps).numpy())


def test_image_grid_layout():
    ax = viz.image_grid(torch.arange(5 * 4 * 4, dtype=torch.float32).reshape(5, 4, 4), nrow=3, pad=1)
    canvas = ax.images[0].get_array()
    assert canvas.shape == (2 * 5 + 1, 3 * 5 + 1)
    viz.image_grid(torch.rand(4, 3, 4, 4))
    with pytest.raises(ValueError):
        viz.image_grid(torch.rand(4))


def test_error_vs_nfe_reference_slopes():
    nfe = np.array([5, 10, 20, 40])
    ax = viz.error_vs_nfe({"euler": (nfe, 1.0 / nfe), "heun": (nfe, 1.0 / nfe ** 2)}, slopes=(1, 2))
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    ref1 = [ln for ln in ax.lines if ln.get_label() == "slope $-1$"][0]
    assert np.allclose(ref1.get_ydata(), 1.0 / nfe)   # C NFE^-1 through the first point


def test_schedule_curves_values():
    ax = viz.schedule_curves({"vp": dl.VPLinear()}, which="alpha_sigma", n=11)
    line = ax.lines[0]
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert np.allclose(line.get_ydata(), dl.VPLinear().alpha(t).numpy())
    ax = viz.schedule_curves({"flow": dl.RectifiedFlow()}, which="lam", t_range=(0.1, 0.9), n=5)
    assert np.allclose(ax.lines[0].get_ydata(), dl.RectifiedFlow().lam(torch.linspace(0.1, 0.9, 5)).numpy())
    with pytest.raises(ValueError, match="which"):
        viz.schedule_curves({}, which="beta")


def test_animate_returns_html():
    html = viz.animate(torch.randn(3, 5, 2), times=torch.tensor([1.0, 0.5, 0.0]))
    assert "<script" in html and "animation" in html.lower()
    with pytest.raises(ValueError):
        viz.animate(torch.randn(3, 5))


def _animation_parts(html):
    import base64
    import io
    import re

    from PIL import Image

    frames = re.findall(r'frames\[\d+\] = "data:image/png;base64,', html)
    (gif,) = re.findall(r'<img id="_anim_img[0-9a-f]+" alt="animation" src="data:image/gif;base64,([A-Za-z0-9+/=]+)"',
                        html)
    im = Image.open(io.BytesIO(base64.b64decode(gif)))
    return len(frames), im


def test_animate_embeds_its_frames_and_a_gif_that_plays_without_scripts():
    traj = torch.cumsum(torch.randn(12, 30, 2, generator=torch.Generator().manual_seed(0)), 0) * 0.2
    html = viz.animate(traj, times=torch.linspace(1, 0, 12))
    n_png, gif = _animation_parts(html)
    assert n_png == 12                              # every frame embedded: plays from the stored output
    assert gif.format == "GIF" and gif.n_frames == 12 and gif.is_animated


def test_animate_keeps_at_most_max_frames_and_stays_small():
    traj = torch.cumsum(torch.randn(201, 300, 2, generator=torch.Generator().manual_seed(1)), 0) * 0.05
    html = viz.animate(traj, background=torch.randn(500, 2), times=torch.linspace(1, 0, 201))
    n_png, gif = _animation_parts(html)
    assert n_png == 60 and gif.n_frames == 60
    assert len(html) < 2_000_000, len(html)
    n_png, gif = _animation_parts(viz.animate(traj, max_frames=5))
    assert n_png == 5 and gif.n_frames == 5
