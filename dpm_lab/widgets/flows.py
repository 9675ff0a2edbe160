"""Chapter 05 explorers: conditional vs marginal paths, and reflow.

    ConditionalPathExplorer   straight conditional paths x_t = (1 - t) x0 + t eps with their velocities eps - x0,
                              beside the exact marginal velocity of the mixture (their posterior average) over p_t
    ReflowExplorer            a transport model's paths and samples after each reflow round at a chosen NFE,
                              with the book's straightness and W2 against the floor

Course convention: t = 0 data, t = 1 noise (the book's Ch. 5 uses tau = 1 - t).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib.collections import LineCollection

from .. import datasets, metrics, reflow, viz
from ..gmm import GaussianMixture
from ..schedules import RectifiedFlow
from ..utils import randn
from .base import Explorer, InvalidSelection

__all__ = ["ConditionalPathExplorer", "ReflowExplorer", "default_mixtures"]

_FLOW = RectifiedFlow()


def default_mixtures() -> dict[str, GaussianMixture]:
    """The mixtures of the conditional-path explorer: eight Gaussians, two Gaussians, a ring of eight."""
    return {"eight Gaussians": datasets.eight_gaussians_mixture(),
            "two Gaussians": GaussianMixture([0.5, 0.5], [[-1.5, -0.5], [1.5, 0.5]], stds=[0.3, 0.5]),
            "ring of 8 (r = 1.1)": datasets.ring_mixture(8, 1.1, 0.11)}


class ConditionalPathExplorer(Explorer):
    """Conditional vs marginal paths and velocities of the linear path (§5.2.2, §5.3.2).

    Left: n_paths conditional paths, straight segments from a data point x0 (t = 0) to its noise eps (t = 1),
    their points x_t and conditional velocities eps - x0 (orange).  Right: the exact marginal velocity
    v*(x, t) = E[eps - x0 | x_t] of the mixture (red field, over the density p_t) and, at the same points x_t,
    v* itself (green): the posterior average replaces each path's own direction.
    Controls: t, n_paths (1..max_paths), mixture (default_mixtures() or the given dict).
    `update()` returns the data drawn: 'x_t', 'cond_v', 'marg_v' (at x_t), 'field' on 'points'.
    """

    compute_keys = ("t", "n_paths", "mixture")
    clear_axes = False
    figsize = (10.0, 4.6)
    axes_grid = (1, 2)
    margins = {"left": 0.06, "right": 0.99, "bottom": 0.09, "top": 0.84, "wspace": 0.15}

    def __init__(self, mixtures: dict[str, GaussianMixture] | None = None, *, max_paths: int = 48, lim: float = 3.0,
                 n_arrows: int = 15, n_density: int = 70, seed: int = 0, **initial: Any) -> None:
        self.mixtures = mixtures or default_mixtures()
        if not self.mixtures or not all(isinstance(m, GaussianMixture) and m.dim == 2 for m in self.mixtures.values()):
            raise ValueError("mixtures must be a non-empty dict of 2-D GaussianMixtures")
        if isinstance(max_paths, bool) or not isinstance(max_paths, int) or max_paths < 1:
            raise ValueError(f"max_paths must be a positive int, got {max_paths!r}")
        self.max_paths, self.lim, self.n_arrows, self.n_density = max_paths, lim, n_arrows, n_density
        g = torch.Generator().manual_seed(seed)
        self._pairs = {name: (m.sample(max_paths, generator=g, dtype=torch.float64),
                              randn((max_paths, 2), generator=g, dtype=torch.float64))
                       for name, m in self.mixtures.items()}
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        names = list(self.mixtures)
        return {"t": W.FloatSlider(value=0.5, min=0.02, max=1.0, step=0.02, description="t", continuous_update=False),
                "n_paths": W.IntSlider(value=min(16, self.max_paths), min=1, max=self.max_paths,
                                       description="paths", continuous_update=False),
                "mixture": W.Dropdown(options=names, value=names[0], description="data")}

    def compute(self, t: float, n_paths: int, mixture: str) -> dict[str, Any]:
        mix, t = self.mixtures[mixture], float(t)
        x0, eps = (p[:n_paths] for p in self._pairs[mixture])
        x_t = (1 - t) * x0 + t * eps
        _, _, pts = viz.grid_points(self.lim, self.n_arrows)
        _, _, dense = viz.grid_points(self.lim, self.n_density)
        return {"t": t, "mixture": mixture, "x0": x0, "eps": eps, "x_t": x_t, "cond_v": eps - x0,
                "marg_v": mix.velocity(x_t, t, _FLOW), "points": pts, "field": mix.velocity(pts, t, _FLOW),
                "log_p": mix.log_prob_t(dense, t, _FLOW).reshape(self.n_density, self.n_density)}

    def _setup(self) -> None:
        ext = (-self.lim, self.lim, -self.lim, self.lim)
        xs, ys, _ = viz.grid_points(self.lim, self.n_arrows)
        X, Y = np.meshgrid(xs, ys)
        nan = np.full(self.max_paths, np.nan)
        self._im, self._pts = [], []
        titles = ("conditional paths x\u209c = (1-t) x\u2080 + t \u03b5 and their velocities \u03b5 - x\u2080",
                  "exact marginal velocity v*(x, t) = E[\u03b5 - x\u2080 | x\u209c] over p\u209c")
        for ax, title in zip(self.fig.axes, titles):
            self._im.append(self.animated(ax.imshow(np.zeros((self.n_density, self.n_density)), origin="lower", extent=ext,
                                      cmap="Greys", vmin=0.0, vmax=1.6, interpolation="bilinear")))
            self._pts.append(self.animated(ax.scatter(nan[:1], nan[:1], s=14, color="C0", zorder=4, label="x\u209c")))
            ax.set_xlim(-self.lim, self.lim)
            ax.set_ylim(-self.lim, self.lim)
            ax.set_aspect("equal", adjustable="box")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("x\u2081", fontsize=8)
            ax.tick_params(labelsize=7)
        self.fig.axes[0].set_ylabel("x\u2082", fontsize=8)
        left, right = self.fig.axes
        self._lines = self.animated(LineCollection([], colors="0.45", linewidths=0.7, alpha=0.7))
        left.add_collection(self._lines)
        kw = {"angles": "xy", "scale_units": "xy", "pivot": "tail", "width": 0.006, "scale": 4.0}
        self._qkw, self._colors = kw, {"_qc": "C1", "_qm": "C2"}
        self._qc = left.quiver(nan, nan, nan, nan, color="C1", label="\u03b5 - x\u2080 (conditional)", **kw)
        self._qfield = self.animated(right.quiver(X, Y, np.zeros_like(X), np.zeros_like(X), color="C3", alpha=0.6,
                                    **{**kw, "pivot": "mid", "width": 0.005, "scale": 5.0}))
        self._qm = right.quiver(nan, nan, nan, nan, color="C2", label="v*(x\u209c, t) (marginal)", **kw)
        for ax in (left, right):     # animated, on top: the animated density would otherwise cover them
            self.animated(ax.legend(loc="upper right", fontsize=7, framealpha=0.85)).set_zorder(10)
        self._title = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_qfield"):
            self._setup()
        lp = viz.to_numpy(data["log_p"])
        for im in self._im:
            im.set_data(np.exp(lp - lp.max()))
        x0, eps, x_t = (viz.to_numpy(data[k]) for k in ("x0", "eps", "x_t"))
        n = x_t.shape[0]
        self._lines.set_segments(np.stack([x0, eps], 1))
        for sc in self._pts:
            sc.set_offsets(x_t)

        # a quiver cannot change its number of arrows: the per-path arrows are made anew
        for name, ax, v in (("_qc", self.fig.axes[0], data["cond_v"]), ("_qm", self.fig.axes[1], data["marg_v"])):
            getattr(self, name).remove()
            v = viz.to_numpy(v)
            setattr(self, name, self.animated(ax.quiver(x_t[:, 0], x_t[:, 1], v[:, 0], v[:, 1],
                                                        color=self._colors[name], zorder=5, **self._qkw)))
        f = viz.to_numpy(data["field"]).reshape(self.n_arrows, self.n_arrows, 2)
        self._qfield.set_UVC(f[..., 0], f[..., 1])
        spread = float(np.linalg.norm(viz.to_numpy(data["cond_v"]) - viz.to_numpy(data["marg_v"]), axis=1).mean())
        self._title.set_text(f"{data['mixture']}, t = {data['t']:.2f}, {n} conditional paths: mean |conditional - "
                             f"marginal velocity| at x\u209c = {spread:.2f}")


class ReflowExplorer(Explorer):
    """A transport model after each reflow round (§5.4): its Euler paths at a chosen NFE, its samples against the
    target, the book's straightness S and W2 over the floor.

    Controls: round (the models' names), nfe (Euler steps, 1..NFE_MAX).  Default: the zoo's ring_pair rounds.
    Args: models (name -> velocity model on the rectified-flow path), source(n, generator) and
    target(n, generator) samplers, n points (samples and W2), n_paths drawn.
    `update()` returns 'samples', 'paths' (nfe+1, n_paths, 2), 'S', 'w2_ratio'.
    """

    compute_keys = ("round", "nfe")
    clear_axes = False
    figsize = (10.0, 4.6)
    axes_grid = (1, 2)
    margins = {"left": 0.06, "right": 0.99, "bottom": 0.09, "top": 0.84, "wspace": 0.15}
    NFE_MAX = 32

    def __init__(self, models: dict[str, Any] | None = None, source=None, target=None, *, n: int = 400,
                 n_paths: int = 80, lim: float = 5.0, seed: int = 0, **initial: Any) -> None:
        if models is None:
            from .. import zoo
            models = {f"round {k}": zoo.load(f"ring_rf{k}") for k in range(3)}
            source = source or (lambda m, generator=None: datasets.ring_pair(m, generator=generator)[0])
            target = target or (lambda m, generator=None: datasets.ring_pair(m, generator=generator)[1])
        if not models or source is None or target is None:
            raise ValueError("give models (a non-empty dict), source and target samplers")
        self.models, self.n, self.n_paths, self.lim = dict(models), n, min(n_paths, n), lim
        g = torch.Generator().manual_seed(seed)
        self._x1 = source(n, generator=g).float()
        self._target = target(n, generator=g).float()
        self._floor = metrics.floor(metrics.w2_exact, target, n, repeats=3, generator=g)
        self._S: dict[str, float] = {}
        for name in self.models:
            self.straightness(name)
        self._zoom = 1.5 * float(self._target.abs().max())
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        names = list(self.models)
        return {"round": W.Dropdown(options=names, value=names[0], description="model"),
                "nfe": W.IntSlider(value=4, min=1, max=self.NFE_MAX, description="NFE (Euler)", continuous_update=False)}

    def straightness(self, name: str) -> float:
        """The book's S of the model's RK4 path (32 steps) from the explorer's source points (cached)."""
        if name not in self._S:
            self._S[name] = reflow.straightness(reflow.flow_path(self.models[name], self._x1, 32))
        return self._S[name]

    def compute(self, round: str, nfe: int) -> dict[str, Any]:
        if round not in self.models:
            raise InvalidSelection(f"no model named {round!r}")
        path = reflow.flow_path(self.models[round], self._x1, int(nfe), "euler")
        samples = path[-1]
        return {"round": round, "nfe": int(nfe), "paths": path[:, :self.n_paths], "samples": samples,
                "S": self.straightness(round), "w2_ratio": metrics.w2_exact(samples, self._target) / self._floor}

    def _setup(self) -> None:
        left, right = self.fig.axes
        self._lines = self.animated(LineCollection([], colors="C0", linewidths=0.6, alpha=0.55))
        left.add_collection(self._lines)
        t = viz.to_numpy(self._target)
        x1 = viz.to_numpy(self._x1[:self.n_paths])
        left.scatter(x1[:, 0], x1[:, 1], s=5, color="0.6", label="source (t = 1)")
        self._ends = self.animated(left.scatter(x1[:, 0], x1[:, 1], s=6, color="C3", zorder=3, label="end (t = 0)"))
        right.scatter(t[:, 0], t[:, 1], s=5, color="0.65", label="target")
        self._samples = self.animated(right.scatter(t[:, 0], t[:, 1], s=5, color="C3", label="samples"))
        for ax, title, lim in zip((left, right), ("Euler paths from the source", "samples against the target"),
                                  (self.lim, self._zoom)):
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal", adjustable="box")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("x\u2081", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(loc="upper right", fontsize=7, framealpha=0.85, markerscale=2)
        left.set_ylabel("x\u2082", fontsize=8)
        self._title = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_lines"):
            self._setup()
        p = viz.to_numpy(data["paths"])
        self._lines.set_segments(list(np.transpose(p, (1, 0, 2))))
        self._ends.set_offsets(p[-1])
        self._samples.set_offsets(viz.to_numpy(data["samples"]))
        self._title.set_text(f"{data['round']}, Euler with NFE {data['nfe']}: straightness S = {data['S']:.4f}, "
                             f"W2 = {data['w2_ratio']:.2f} x floor (n = {self.n})")
