"""Plots for the course (matplotlib): densities, samples, fields, trajectories, strips, NFE curves.

Every plotting function takes `ax=` (a new figure is made when it is None) and returns the
axes, so cells can compose them:

    ax = dl.viz.density(lambda x: gmm.log_prob(x), lim=3)
    dl.viz.scatter(samples, ax=ax, label="model")

Inputs may be torch tensors or NumPy arrays; trajectories are time-major (n+1, B, D).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

from .schedules import Schedule
from .utils import randn

__all__ = ["new_axes", "to_numpy", "grid_points", "density", "scatter", "field", "trajectories",
           "time_strip", "image_strip", "image_grid", "error_vs_nfe", "schedule_curves", "animate",
           "PREDICTION_LABELS"]

PREDICTION_LABELS = {"x0": r"$x_0^*(x_t)$ (denoiser)", "eps": r"$\epsilon^*(x_t)$ (noise)",
                     "score": r"$\nabla\log p_t(x_t)$ (score)", "velocity": r"$v^*(x_t)$ (PF-ODE velocity)",
                     "v": r"$v$-prediction"}

Array = torch.Tensor | np.ndarray | Sequence      # anything to_numpy accepts
Limits = float | tuple[float, float] | tuple[tuple[float, float], tuple[float, float]] | None


def to_numpy(x: Array) -> np.ndarray:
    """A detached float NumPy copy of a tensor or array-like."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def new_axes(ax: Axes | None = None, figsize: tuple[float, float] = (4.2, 4.0)) -> Axes:
    """Return `ax`, or the axes of a new figure when ax is None."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _limits(lim: Limits) -> tuple[tuple[float, float], tuple[float, float]]:
    if lim is None:
        lim = 3.0
    if np.isscalar(lim):
        return (-float(lim), float(lim)), (-float(lim), float(lim))
    lim = tuple(lim)
    if len(lim) == 2 and np.isscalar(lim[0]):
        return (float(lim[0]), float(lim[1])), (float(lim[0]), float(lim[1]))
    return tuple(lim[0]), tuple(lim[1])


def grid_points(lim: Limits = 3.0, n: int = 100) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """A regular n x n grid on the box `lim`: returns (xs, ys, points (n*n, 2) float64 tensor).

    `lim` is a half-width, a (lo, hi) pair, or ((x_lo, x_hi), (y_lo, y_hi)).
    """
    (x0, x1), (y0, y1) = _limits(lim)
    xs, ys = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
    X, Y = np.meshgrid(xs, ys)
    pts = torch.from_numpy(np.stack([X.ravel(), Y.ravel()], 1))
    return xs, ys, pts


def _finish(ax: Axes, title: str | None = None, xlabel: str | None = "$x_1$", ylabel: str | None = "$x_2$",
            legend: bool = False) -> Axes:
    if title:
        ax.set_title(title, fontsize=10)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    return ax


def density(log_prob: Callable[[torch.Tensor], Array], lim: Limits = 3.0, n: int = 100, *, ax: Axes | None = None,
            log: bool = False, cmap: str = "viridis", title: str | None = None, colorbar: bool = False,
            normalize: bool = True) -> Axes:
    """Heatmap of a 2D density from a log-density callable on an n x n grid.

    Args:
        log_prob: maps points (M, 2) float64 tensor -> (M,) log-densities (tensor or array).
        lim: half-width of the square box, or explicit limits (see grid_points).
        log: draw log p instead of p.
        normalize: divide p by its maximum on the grid (the picture then ignores the normaliser Z);
            False draws the values themselves (e.g. to show that an unnormalised density differs).
    """
    ax = new_axes(ax)
    xs, ys, pts = grid_points(lim, n)
    with torch.no_grad():
        lp = to_numpy(log_prob(pts)).reshape(n, n)
    if log:
        z = lp
    else:
        z = np.exp(lp - np.nanmax(lp)) if normalize else np.exp(lp)  # normalised: the picture ignores Z
    im = ax.imshow(z, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap=cmap, aspect="auto")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label="log p" if log else ("p / max p" if normalize else "p"))
    return _finish(ax, title or ("log density" if log else "density"))


def scatter(x: Array, *, ax: Axes | None = None, label: str | None = None, s: float = 3.0, alpha: float = 0.5,
            color: Any = None, lim: Limits = None, title: str | None = None, **kw: Any) -> Axes:
    """Scatter plot of 2D samples x (B, 2)."""
    ax = new_axes(ax)
    x = to_numpy(x)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"scatter needs x of shape (B, 2), got {x.shape}")
    ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, label=label, color=color, **kw)
    if lim is not None:
        (a, b), (c, d) = _limits(lim)
        ax.set_xlim(a, b)
        ax.set_ylim(c, d)
    ax.set_aspect("equal", adjustable="box")
    return _finish(ax, title, legend=label is not None)


def field(fn: Callable[[torch.Tensor], Array], lim: Limits = 3.0, n: int = 17, *, ax: Axes | None = None,
          kind: str = "quiver", title: str | None = None, color: Any = "C3", normalize: bool = False,
          label: str | None = None, **kw: Any) -> Axes:
    """Draw a vector field fn(points (M, 2) float64) -> (M, 2) as a quiver or a streamplot.

    Use it for any of the four predictions, e.g. `dl.viz.field(lambda x: gmm.score(x, 0.3, sched))`.
    normalize=True draws unit arrows (direction only), useful where magnitudes differ wildly.
    """
    if kind not in ("quiver", "stream"):
        raise ValueError(f"kind must be 'quiver' or 'stream', got {kind!r}")
    ax = new_axes(ax)
    xs, ys, pts = grid_points(lim, n)
    with torch.no_grad():
        u = to_numpy(fn(pts)).reshape(n, n, 2)
    U, V = u[..., 0], u[..., 1]
    if normalize:
        norm = np.sqrt(U ** 2 + V ** 2) + 1e-12
        U, V = U / norm, V / norm
    if kind == "quiver":
        X, Y = np.meshgrid(xs, ys)
        ax.quiver(X, Y, U, V, color=color, angles="xy", label=label, **kw)
    else:
        ax.streamplot(xs, ys, U, V, color=color, density=kw.pop("density", 0.8), linewidth=0.8, **kw)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_aspect("equal", adjustable="box")
    return _finish(ax, title, legend=label is not None)


def trajectories(traj: Array, *, ax: Axes | None = None, n_show: int = 64, color: Any = "k", alpha: float = 0.35,
                 lw: float = 0.7, start: bool = True, end: bool = True, title: str | None = None,
                 label: str | None = None) -> Axes:
    """Paths of a time-major trajectory (n+1, B, 2): lines, start points (grey) and end points (red)."""
    ax = new_axes(ax)
    tr = to_numpy(traj)
    if tr.ndim != 3 or tr.shape[2] != 2:
        raise ValueError(f"trajectories needs a (n+1, B, 2) array, got shape {tr.shape}")
    tr = tr[:, :n_show]
    ax.plot(tr[:, :, 0], tr[:, :, 1], color=color, alpha=alpha, lw=lw)
    if start:
        ax.scatter(tr[0, :, 0], tr[0, :, 1], s=6, color="0.5", label="start $x_1$", zorder=3)
    if end:
        ax.scatter(tr[-1, :, 0], tr[-1, :, 1], s=8, color="C3", label=label or "end $x_0$", zorder=4)
    ax.set_aspect("equal", adjustable="box")
    return _finish(ax, title, legend=True)


def time_strip(x0: Array, schedule: Schedule, times: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), *,
               generator: torch.Generator | None = None, axes: Sequence[Axes] | None = None, lim: Limits = 3.5,
               s: float = 2.0) -> np.ndarray:
    """Forward noising x_t = alpha_t x0 + sigma_t eps of 2D data at several times, one panel each.

    One eps is drawn and reused across the panels, so each point moves continuously.
    Returns the array of axes.
    """
    x0 = torch.as_tensor(x0, dtype=torch.float64)
    eps = randn(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
    if axes is None:
        _, axes = plt.subplots(1, len(times), figsize=(2.2 * len(times), 2.4), sharex=True, sharey=True)
    axes = np.atleast_1d(axes)
    for ax, t in zip(axes, times):
        xt = schedule.alpha(t) * x0 + schedule.sigma(t) * eps
        scatter(xt, ax=ax, s=s, lim=lim)
        _finish(ax, f"t = {t:g}", xlabel=None, ylabel=None)
        ax.set_ylabel("")
    axes[0].set_ylabel("$x_2$")
    return axes


def image_strip(x0: Array, schedule: Schedule, times: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), *,
                generator: torch.Generator | None = None, axes: Sequence[Axes] | None = None,
                cmap: str = "gray") -> np.ndarray:
    """Forward noising of ONE image x0 (H, W) or (1, H, W) at several times, one panel each."""
    img = torch.as_tensor(x0, dtype=torch.float64).squeeze()
    if img.dim() != 2:
        raise ValueError(f"image_strip needs one grey image (H, W), got shape {tuple(img.shape)}")
    eps = randn(img.shape, generator=generator, dtype=torch.float64, device=img.device)
    if axes is None:
        _, axes = plt.subplots(1, len(times), figsize=(1.6 * len(times), 1.9))
    axes = np.atleast_1d(axes)
    for ax, t in zip(axes, times):
        xt = schedule.alpha(t) * img + schedule.sigma(t) * eps
        ax.imshow(to_numpy(xt), cmap=cmap, vmin=-2.0, vmax=2.0)
        ax.set_title(f"t = {t:g}", fontsize=9)
        ax.axis("off")
    return axes


def image_grid(images: Array, *, nrow: int = 8, ax: Axes | None = None, cmap: str = "gray",
               vmin: float | None = None, vmax: float | None = None, title: str | None = None,
               pad: int = 1) -> Axes:
    """Tile images (B, H, W) or (B, C, H, W) (C = 1 or 3) into one picture with nrow per row."""
    im = to_numpy(images)
    if im.ndim == 3:
        im = im[:, None]
    if im.ndim != 4:
        raise ValueError(f"image_grid needs (B, H, W) or (B, C, H, W), got shape {im.shape}")
    B, C, H, W = im.shape
    ncol = min(nrow, B)
    nr = int(np.ceil(B / ncol))
    canvas = np.full((C, nr * (H + pad) + pad, ncol * (W + pad) + pad), np.nan)
    for k in range(B):
        r, c = divmod(k, ncol)
        canvas[:, pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = im[k]
    ax = new_axes(ax, figsize=(0.5 * ncol + 0.5, 0.5 * nr + 0.5))
    if C == 1:
        ax.imshow(canvas[0], cmap=cmap, vmin=vmin, vmax=vmax)
    else:
        lo, hi = np.nanmin(canvas), np.nanmax(canvas)
        ax.imshow(np.nan_to_num((canvas.transpose(1, 2, 0) - lo) / (hi - lo + 1e-12)))
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def error_vs_nfe(results: dict[str, tuple[Array, Array]], *, ax: Axes | None = None, slopes: Sequence[int] = (1, 2),
                 title: str | None = None, ylabel: str = "error") -> Axes:
    """Log-log error against NFE for several methods, with dashed reference slopes NFE^-p.

    Args:
        results: {method name: (nfes, errors)}.
        slopes: orders p whose reference lines C * NFE^-p are drawn through the first point.
    """
    ax = new_axes(ax, figsize=(4.6, 3.6))
    first = None
    for name, (nfe, err) in results.items():
        nfe, err = to_numpy(nfe), to_numpy(err)
        ax.loglog(nfe, err, "o-", label=name, ms=4)
        if first is None:
            first = (nfe, err)
    if first is not None:
        nfe, err = first
        for p in slopes:
            ref = err[0] * (nfe / nfe[0]) ** (-float(p))
            ax.loglog(nfe, ref, "--", color="0.6", lw=0.8, label=f"slope $-{p}$")
    return _finish(ax, title, xlabel="NFE", ylabel=ylabel, legend=True)


def schedule_curves(schedules: dict[str, Schedule], *, which: str = "alpha_sigma", ax: Axes | None = None,
                    n: int = 201, t_range: tuple[float, float] = (0.0, 1.0)) -> Axes:
    """Plot alpha_t and sigma_t ("alpha_sigma"), the SNR ("snr", log scale) or lambda_t ("lam").

    Args:
        schedules: {label: Schedule}.
    """
    if which not in ("alpha_sigma", "snr", "lam"):
        raise ValueError(f"which must be 'alpha_sigma', 'snr' or 'lam', got {which!r}")
    ax = new_axes(ax, figsize=(4.2, 3.2))
    t = torch.linspace(t_range[0], t_range[1], n, dtype=torch.float64)
    for k, (name, sch) in enumerate(schedules.items()):
        c = f"C{k}"
        if which == "alpha_sigma":
            ax.plot(t, to_numpy(sch.alpha(t)), color=c, label=rf"{name} $\alpha_t$")
            ax.plot(t, to_numpy(sch.sigma(t)), "--", color=c, label=rf"{name} $\sigma_t$")
        else:
            with np.errstate(divide="ignore"):
                y = to_numpy(sch.lam(t))
            if which == "snr":
                ax.semilogy(t, np.exp(2 * y), color=c, label=name)
            else:
                ax.plot(t, y, color=c, label=name)
    ylabel = {"alpha_sigma": "coefficient", "snr": r"SNR $=\alpha_t^2/\sigma_t^2$",
              "lam": r"$\lambda_t=\log(\alpha_t/\sigma_t)$"}[which]
    return _finish(ax, None, xlabel="t  (0 = data, 1 = noise)", ylabel=ylabel, legend=True)


def animate(traj: Array, *, lim: Limits = 3.5, interval: int = 120, s: float = 4.0, times: Array | None = None,
            background: Array | None = None, figsize: tuple[float, float] = (3.2, 3.2), dpi: int = 60,
            max_frames: int = 60, loop: bool = True) -> str:
    """Animate a time-major trajectory (n+1, B, 2) as points moving; returns self-contained HTML.

    In a notebook: `from IPython.display import HTML; HTML(dl.viz.animate(traj))`.  The HTML is
    matplotlib's `to_jshtml` player (play, pause, step, a frame slider) with every frame embedded
    as base64 PNG, so the stored output plays without re-running the notebook; its picture is an
    embedded animated GIF of the same frames, so where scripts do not run (an untrusted notebook,
    GitHub, nbviewer) the animation still plays.  At most `max_frames` frames are kept (evenly
    spaced, first and last always); at the default size and dpi that is about 1 MB.

    Args:
        background: optional (M, 2) points drawn in grey in every frame (e.g. the target data).
        times: optional (n+1,) times shown in the title.
        loop: the GIF (and the player's default mode) loop; False plays once.
    """
    from matplotlib import animation

    tr = to_numpy(traj)
    if tr.ndim != 3 or tr.shape[2] != 2:
        raise ValueError(f"animate needs a (n+1, B, 2) array, got shape {tr.shape}")
    if max_frames < 2:
        raise ValueError(f"max_frames must be at least 2, got {max_frames}")
    n = tr.shape[0]
    keep = np.unique(np.round(np.linspace(0, n - 1, min(n, max_frames))).astype(int))
    fig, pts, label = _animation_figure(tr[0], lim, s, background, figsize, dpi)

    def frame(j: int) -> tuple:
        k = int(keep[j])
        pts.set_offsets(tr[k])
        label.set_text(f"step {k}" + (f", t = {float(times[k]):.3f}" if times is not None else ""))
        return pts, label

    gif = _gif_base64(fig, frame, len(keep), interval, loop)
    anim = animation.FuncAnimation(fig, frame, frames=len(keep), interval=interval, blit=False)
    return _player_with_gif(anim.to_jshtml(default_mode="loop" if loop else "once"), gif)


def _animation_figure(first: np.ndarray, lim: Limits, s: float, background: Array | None,
                      figsize: tuple[float, float], dpi: int) -> tuple:
    """The one figure an animation redraws: (figure, the moving points, the title)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if background is not None:
        bg = to_numpy(background)
        ax.scatter(bg[:, 0], bg[:, 1], s=2, color="0.8")
    pts = ax.scatter(first[:, 0], first[:, 1], s=s, color="C0")
    (a, b), (c, d) = _limits(lim)
    ax.set_xlim(a, b)
    ax.set_ylim(c, d)
    ax.set_aspect("equal", adjustable="box")
    ax.tick_params(labelsize=7)
    label = ax.set_title("step 0", fontsize=9)
    fig.tight_layout()
    return fig, pts, label


def _gif_base64(fig, frame: Callable[[int], tuple], n_frames: int, interval: int, loop: bool) -> str:
    """Every frame of an animation drawn once and packed as a base64 animated GIF (64 colours)."""
    import base64
    import io

    from PIL import Image

    frames = []
    for j in range(n_frames):
        frame(j)
        fig.canvas.draw()
        w, h = fig.canvas.get_width_height(physical=True)
        rgb = Image.frombuffer("RGBA", (w, h), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
        frames.append(rgb.quantize(colors=64, method=Image.Quantize.MEDIANCUT))
    buf = io.BytesIO()
    frames[0].save(buf, format="gif", save_all=True, append_images=frames[1:], duration=interval,
                   loop=0 if loop else 1, optimize=False)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _player_with_gif(html: str, gif: str) -> str:
    """matplotlib's jshtml player whose <img> starts as the GIF: a moving picture where scripts do not run."""
    import re

    html, count = re.subn(r'<img id="(_anim_img[0-9a-f]+)">',
                          lambda m: f'<img id="{m.group(1)}" alt="animation" src="data:image/gif;base64,{gif}">',
                          html, count=1)
    if count != 1:                                   # a matplotlib whose template differs: GIF first
        html = f'<img alt="animation" src="data:image/gif;base64,{gif}">' + html
    return html
