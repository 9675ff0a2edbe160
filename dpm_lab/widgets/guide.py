"""The explorers of chapter 08: guidance weight and inverse problems on the exact 2D mixture.

    GuidanceExplorer   omega (and guidance limited to a lambda interval) on the class-conditional mixture:
                       exact CFG samples over the conditional density p(x|c) and over the tilted density
                       p(x|c)^omega p(x)^(1-omega)/Z, with the TV gap to the tilted density (beside its floor),
                       the mean p(c|x) and the spread read out; a digits row for the same omega from a bank
    InverseExplorer    task (inpaint, denoise, blur), method (exact posterior, Score-SDE, ILVR, DPS, PiGDM),
                       guidance scale and NFE: samples against the exact posterior p(x0 | y), with the
                       posterior-mean error and the weight of each posterior mode

Every picture is computed from banks made at construction (guidance) or cached per selection (inverse).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import viz
from ..gmm import GaussianMixture
from ..recipes import guide
from .base import Explorer

__all__ = ["GuidanceExplorer", "InverseExplorer", "OMEGAS", "digits_bank"]

OMEGAS = (0.0, 1.0, 2.0, 3.0, 5.0)


def digits_bank(model, omegas=OMEGAS, *, labels=tuple(range(8)), nfe: int = 8, seed: int = 0) -> dict:
    """{(omega, interval): images (len(labels), 1, H, W)} from a class-conditional image model, one shared seed,
    plain CFG and CFG limited to guide.INTERVAL (§8.3)."""
    from ..recipes.images import generate
    out, lab = {}, torch.tensor(labels)
    for omega in omegas:
        for interval in (False, True):
            g = torch.Generator().manual_seed(seed)
            out[omega, interval] = generate(model, lab, omega=omega, nfe=nfe, generator=g,
                                            lam_interval=guide.INTERVAL if interval else None)
    return out


class GuidanceExplorer(Explorer):
    """Classifier-free guidance on the exact class-conditional mixture (§8.3), omega and interval.

    Left: samples of exact CFG for class c over p(x | c); middle: the same samples over the tilted density
    p(x|c)^omega p(x)^(1-omega)/Z that the book's tempered target names; right: digits for the same omega
    (a bank; blank without one).  Title: TV(samples, tilted) beside the floor of exact tilted draws, mean p(c|x)
    and the spread (diversity).  `update()` returns 'samples', 'tv', 'floor', 'p_c', 'spread', 'tilted', 'cond'.
    """

    compute_keys = ("omega", "interval", "c")
    clear_axes = False
    figsize = (11.0, 4.0)
    axes_grid = (1, 3)
    margins = {"left": 0.04, "right": 0.99, "bottom": 0.11, "top": 0.8, "wspace": 0.12}

    def __init__(self, *, n: int = 600, nfe: int = 20, digits: dict | None = None, omegas=OMEGAS, seed: int = 0,
                 **initial: Any) -> None:
        self.mix, self.omegas, self.digits = guide.mixture(), tuple(float(o) for o in omegas), digits
        self.bank, g = {}, torch.Generator().manual_seed(seed + 1)
        for c in (0, 1):
            for omega in self.omegas:
                law = guide.tilted_law(self.mix, c, omega)
                fl = law.floor(n, repeats=5, generator=g)
                for interval in (False, True):
                    x = guide.cfg_samples(self.mix, c, omega, interval=interval, n=n, nfe=nfe, seed=seed)
                    self.bank[c, omega, interval] = (x, law, fl)
        self.cond = {c: guide.conditional_law(self.mix, c) for c in (0, 1)}
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"omega": W.SelectionSlider(options=list(self.omegas), value=self.omegas[min(2, len(self.omegas) - 1)],
                                           description="\u03c9", continuous_update=False),
                "interval": W.Checkbox(value=False, description="guide only in the \u03bb interval"),
                "c": W.Dropdown(options=[0, 1], value=0, description="class c")}

    def compute(self, omega: float, interval: bool, c: int) -> dict[str, Any]:
        x, law, (fl, fl_sd) = self.bank[c, float(omega), bool(interval)]
        p_c = float(self.mix.class_posterior(x, 0.0, guide.SCHEDULE)[:, c].mean())
        digits = None if self.digits is None else self.digits.get((float(omega), bool(interval)))
        return {"samples": x, "tv": law.tv(x), "floor": fl, "floor_sd": fl_sd, "p_c": p_c,
                "spread": guide.spread(x), "tilted": law, "cond": self.cond[c], "digits": digits,
                "omega": float(omega), "interval": bool(interval), "c": c}

    def _setup(self) -> None:
        lim = self.cond[0].lim
        ext = (-lim, lim, -lim, lim)
        titles = ("samples over the conditional p(x | c)", "samples over the tilted p(x|c)^\u03c9 p(x)^(1-\u03c9) / Z",
                  "digits 0-7 (MNIST-5k U-Net, same \u03c9)")
        self._im, self._sc = [], []
        for ax, title in zip(self.fig.axes[:2], titles):
            self._im.append(self.animated(ax.imshow(np.zeros((40, 40)), origin="lower", extent=ext, cmap="Greys",
                                                    interpolation="nearest")))
            self._sc.append(self.animated(ax.scatter([np.nan], [np.nan], s=3, color="C3", alpha=0.5)))
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("x\u2081", fontsize=8)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
        self.fig.axes[0].set_ylabel("x\u2082", fontsize=8)
        ax = self.fig.axes[2]
        self._dig = self.animated(ax.imshow(np.zeros((2 * 29 + 1, 4 * 29 + 1)), cmap="gray", vmin=-1, vmax=1))
        ax.set_title(titles[2], fontsize=9)
        ax.axis("off")
        self._title = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_title"):
            self._setup()
        x = viz.to_numpy(data["samples"])
        for im, law in zip(self._im, (data["cond"], data["tilted"])):
            p = viz.to_numpy(law.probs).reshape(law.n, law.n)
            im.set_data(p / p.max())
            im.set_clim(0, 1)
        for sc in self._sc:
            sc.set_offsets(x)
        if data["digits"] is not None:
            self._dig.set_data(_tile(viz.to_numpy(data["digits"]), 4))
        else:
            self.fig.axes[2].set_title("no digit bank given (digits=None)", fontsize=9)
        where = "only for \u03bb in [{:g}, {:g}]".format(*guide.INTERVAL) if data["interval"] else "at every t"
        self._title.set_text(
            f"CFG \u03c9 = {data['omega']:g} {where}, class {data['c']}:  TV(samples, tilted) = {data['tv']:.3f} "
            f"(floor {data['floor']:.3f} \u00b1 {data['floor_sd']:.3f})\n"
            f"mean p(c | x) = {data['p_c']:.3f},  spread = {data['spread']:.3f}")


def _tile(im: np.ndarray, ncol: int) -> np.ndarray:
    """(B, 1, H, W) -> one array of rows of ncol images with 1-pixel gaps (background -1)."""
    B, _, H, W = im.shape
    rows = (B + ncol - 1) // ncol
    out = np.full((rows * (H + 1) + 1, ncol * (W + 1) + 1), -1.0)
    for k in range(B):
        r, c = divmod(k, ncol)
        out[1 + r * (H + 1):1 + r * (H + 1) + H, 1 + c * (W + 1):1 + c * (W + 1) + W] = im[k, 0]
    return out


class InverseExplorer(Explorer):
    """Inverse problems y = A x0 + sigma_y z on the exact mixture (§8.4): each method's samples against the
    exact posterior p(x0 | y) (a mixture, gmm.GaussianMixture.posterior).

    Left: the prior density, the measurement's line (or point) and the method's samples; right: the exact
    posterior density with the same samples.  Title: posterior-mean error, the exact posterior's own
    Monte Carlo error at this n, and the weights the samples give each posterior mode against the exact ones.
    `update()` returns 'samples', 'mean_err', 'mc_err', 'weights', 'true_weights', 'posterior'.
    """

    compute_keys = ("task", "method", "scale", "nfe")
    clear_axes = False
    figsize = (9.0, 4.4)
    axes_grid = (1, 2)
    margins = {"left": 0.06, "right": 0.99, "bottom": 0.09, "top": 0.8, "wspace": 0.12}
    lim = 3.0

    def __init__(self, *, n: int = 200, seed: int = 0, **initial: Any) -> None:
        self.mix, self.n, self.seed = guide.mixture(), n, seed
        self._pts = viz.grid_points(self.lim, 60)[2]
        self._prior = self.mix.log_prob(self._pts).reshape(60, 60)
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        tasks = list(guide.TASKS)
        return {"task": W.Dropdown(options=tasks, value=tasks[0], description="task"),
                "method": W.Dropdown(options=list(guide.METHODS), value="DPS", description="method"),
                "scale": W.SelectionSlider(options=[0.25, 0.5, 1.0, 2.0], value=1.0, description="scale",
                                           continuous_update=False),
                "nfe": W.SelectionSlider(options=[10, 20, 50], value=20, description="NFE", continuous_update=False)}

    def compute(self, task: str, method: str, scale: float, nfe: int) -> dict[str, Any]:
        A, y, sy = guide.measurement(task)
        post: GaussianMixture = self.mix.posterior(A, y, sy)
        x = guide.inverse_samples(self.mix, task, method, scale=scale, n=self.n, nfe=nfe, seed=self.seed)
        k = post.data_posterior(x).argmax(1)
        w = torch.bincount(k, minlength=post.n_components).double() / len(x)
        return {"samples": x, "posterior": post, "mean_err": float((x.mean(0) - post.mean()).norm()),
                "mc_err": float(post.cov().trace().sqrt()) / self.n ** 0.5, "weights": w,
                "true_weights": post.weights, "A": A, "y": y, "log_post": post.log_prob(self._pts).reshape(60, 60)}

    def _setup(self) -> None:
        ext = (-self.lim, self.lim, -self.lim, self.lim)
        self._im, self._sc = [], []
        for ax, title in zip(self.fig.axes, ("prior p(x0), the measurement and the samples",
                                             "exact posterior p(x0 | y) and the samples")):
            self._im.append(self.animated(ax.imshow(np.zeros((60, 60)), origin="lower", extent=ext, cmap="Greys",
                                                    vmin=0, vmax=1, interpolation="bilinear")))
            self._sc.append(self.animated(ax.scatter([np.nan], [np.nan], s=4, color="C3", alpha=0.6, label="samples")))
            ax.set_xlim(-self.lim, self.lim)
            ax.set_ylim(-self.lim, self.lim)
            ax.set_aspect("equal")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("x\u2081", fontsize=8)
            ax.tick_params(labelsize=7)
        self.fig.axes[0].set_ylabel("x\u2082", fontsize=8)
        self._line = self.animated(self.fig.axes[0].plot([], [], color="C0", lw=1.5, label="A x = y")[0])
        self._mean = self.animated(self.fig.axes[1].scatter([np.nan], [np.nan], marker="x", s=60, color="C0",
                                                            label="exact posterior mean", zorder=5))
        for ax in self.fig.axes:          # animated, on top of the animated densities
            self.animated(ax.legend(loc="lower left", fontsize=7, framealpha=0.85)).set_zorder(10)
        self._title = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_title"):
            self._setup()
        self._im[0].set_data(np.exp(viz.to_numpy(self._prior - self._prior.max())))
        lp = viz.to_numpy(data["log_post"])
        self._im[1].set_data(np.exp(lp - lp.max()))
        x = viz.to_numpy(data["samples"])
        for sc in self._sc:
            sc.set_offsets(x)
        self._mean.set_offsets(viz.to_numpy(data["posterior"].mean())[None])
        A, y = viz.to_numpy(data["A"]), viz.to_numpy(data["y"])
        if A.shape[0] == 1:                                  # the line a1 x1 + a2 x2 = y
            s = np.linspace(-self.lim, self.lim, 2)
            a1, a2 = A[0]
            pts = (np.stack([s, (y[0] - a1 * s) / a2], 1) if abs(a2) > abs(a1) else
                   np.stack([(y[0] - a2 * s) / a1, s], 1))
            self._line.set_data(pts[:, 0], pts[:, 1])
        else:
            self._line.set_data([y[0]], [y[1]])
            self._line.set_marker("o")
        if A.shape[0] == 1:
            self._line.set_marker("")
        w, tw = viz.to_numpy(data["weights"]), viz.to_numpy(data["true_weights"])
        modes = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(w, tw))
        scale = ("scale unused (exact)" if values["method"] == "exact posterior" else f"scale {values['scale']:g}")
        self._title.set_text(f"{values['method']} on '{values['task']}', {scale}, "
                             f"NFE {values['nfe']}:  |mean - exact mean| = {data['mean_err']:.3f} "
                             f"(MC error {data['mc_err']:.3f})\nmode weights sampled/exact: {modes}")
