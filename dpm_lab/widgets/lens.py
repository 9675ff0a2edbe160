"""Chapter 06 explorers: the four predictions, the loss weighting, the gamma family of reverse SDEs.

    FourPredictionsExplorer   exact x0*, eps*, score*, v* of a mixture and one network's four converted
                              fields, under any schedule (a VP network answers through the time map, §6.3.3)
    WeightingExplorer         the weight a loss puts on each noise level, in lambda-space (§6.2.2)
    GammaFamilyExplorer       the reverse SDEs dx = [v* - gamma^2/2 s*] dt + gamma dw from gamma = 0 (PF-ODE)
                              to gamma = g (Anderson): shared marginals, different paths (§6.4)

`dl.losses.implied_lambda_weight` is the number the weighting explorer draws.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import viz
from ..datasets import eight_gaussians_mixture
from ..gmm import GaussianMixture
from ..grids import time_grid
from ..losses import P_TIMES, TimeDist, implied_lambda_weight
from ..losses import weighting as loss_weighting
from ..param import KINDS, Model, TimeMappedModel
from ..schedules import Schedule, VPLinear, get_schedule
from ..utils import randn
from .base import Explorer, InvalidSelection
from .field import FIELD_KINDS, SYMBOLS

__all__ = ["FourPredictionsExplorer", "WeightingExplorer", "GammaFamilyExplorer"]

LENS_SCHEDULES = ("vp", "cosine", "flow", "trig", "ve", "edm")


def _schedules(names=LENS_SCHEDULES) -> dict[str, Schedule]:
    return {n: get_schedule(n) for n in names}


# -- the four predictions (§6.3.1) ------------------------------------------------------------------------
class FourPredictionsExplorer(Explorer):
    """The exact fields x0*, eps*, score*, velocity* of a mixture (red) and one network's (blue), side by side.

    Every network predicts ONE kind; its other three fields are conversions (§6.3.1, `Model.predict`).
    Under a schedule other than the network's own, the network answers through the time map of
    §6.3.3 (`param.TimeMappedModel`): same lambda, rescaled input, no retraining.

    Controls: t, schedule (Dropdown), network (Dropdown: "none" or a key of `models`), normalize.
    Args:
        mixture: the data (default: eight Gaussians).  models: label -> Model (e.g. the zoo's four
            8g_vp_* networks).  lim, n: box half-width and arrows per side.  n_density: density grid.
    `update()` returns {"points", "exact": kind -> (n*n, 2), "learned": kind -> (n*n, 2) or None,
    "rmse": kind -> p_t-weighted RMSE or None}; the arrows are `ex.quivers[row][kind]`.
    """

    compute_keys = ("t", "schedule", "network")
    clear_axes = False
    figsize = (11.0, 3.4)
    axes_grid = (1, 4)
    margins = {"left": 0.05, "right": 0.99, "bottom": 0.14, "top": 0.80, "wspace": 0.12}

    def __init__(self, mixture: GaussianMixture | None = None, models: dict[str, Model] | None = None, *,
                 lim: float = 3.0, n: int = 11, n_density: int = 60, **initial: Any) -> None:
        self.mixture = eight_gaussians_mixture() if mixture is None else mixture
        self.models = dict(models or {})
        for label, m in self.models.items():
            if not isinstance(getattr(m, "schedule", None), Schedule) or not hasattr(m, "predict"):
                raise TypeError(f"models[{label!r}] must be a Model (with .schedule and .predict), "
                                f"got {type(m).__name__}")
        self.lim, self.n, self.n_density = lim, n, n_density
        self._schedules = _schedules()
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        nets = ["none", *self.models]
        return {"t": W.FloatSlider(value=0.3, min=0.02, max=0.98, step=0.02, description="t",
                                   continuous_update=False),
                "schedule": W.Dropdown(options=list(self._schedules), value="vp", description="schedule"),
                "network": W.Dropdown(options=nets, value=nets[1] if len(nets) > 1 else "none", description="network",
                                      layout=W.Layout() if self.models else W.Layout(display="none")),
                "normalize": W.Checkbox(value=True, description="unit arrows")}

    def schedule(self, name: str) -> Schedule:
        """The schedule behind the dropdown entry `name`."""
        return self._schedules[name]

    def learned_model(self, network: str, schedule: str) -> Model | None:
        """The network `network` answering under `schedule` (itself, or through the time map)."""
        if network == "none":
            return None
        m, sch = self.models[network], self._schedules[schedule]
        return m if m.schedule.config() == sch.config() else TimeMappedModel(m, sch)

    def _exact(self, t: float, schedule: str) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """The arrow grid, the exact fields on it and log p_t on the density grid, kept per (t, schedule)
        (so switching the network only runs the network)."""
        if not hasattr(self, "_exact_kept"):
            self._exact_kept: dict = {}
        key = (round(t, 9), schedule)
        if key not in self._exact_kept:
            sch = self._schedules[schedule]
            _, _, pts = viz.grid_points(self.lim, self.n)
            _, _, dense = viz.grid_points(self.lim, self.n_density)
            self._exact_kept[key] = (pts, {k: self.mixture.predict(pts, t, sch, k) for k in FIELD_KINDS},
                                     self.mixture.log_prob_t(dense, t, sch).reshape(self.n_density, self.n_density))
            while len(self._exact_kept) > self.cache_size:
                self._exact_kept.pop(next(iter(self._exact_kept)))
        return self._exact_kept[key]

    def compute(self, t: float, schedule: str, network: str) -> dict[str, Any]:
        """Exact fields on the arrow grid, p_t on the density grid, the network's converted fields and RMSEs."""
        sch, t = self._schedules[schedule], float(t)
        pts, exact, log_p = self._exact(t, schedule)
        out = {"t": t, "schedule": schedule, "network": network, "points": pts, "exact": exact,
               "learned": None, "rmse": None, "log_p": log_p}
        model = self.learned_model(network, schedule)
        if model is not None:
            try:
                with torch.no_grad():
                    x = pts.to(torch.float32)
                    out["learned"] = {k: model.predict(x, t, k).double() for k in FIELD_KINDS}
            except ValueError as e:
                raise InvalidSelection(f"the {network} network cannot answer here: {e}") from None
            w = torch.exp(self.mixture.log_prob_t(pts, t, sch))
            w = w / w.sum()                                    # weight the error by p_t: where samples are
            out["rmse"] = {k: float((w * ((out["learned"][k] - out["exact"][k]) ** 2).sum(-1)).sum().sqrt())
                           for k in FIELD_KINDS}
        return out

    def _setup(self) -> None:
        xs, ys, _ = viz.grid_points(self.lim, self.n)
        X, Y = np.meshgrid(xs, ys)
        zero = np.zeros_like(X)
        extent = (-self.lim, self.lim, -self.lim, self.lim)
        self.images, self.quivers, self._notes = [], {"exact": {}, "learned": {}}, {}
        for c, kind in enumerate(FIELD_KINDS):
            ax = self.fig.axes[c]
            im = ax.imshow(np.zeros((self.n_density, self.n_density)), origin="lower", extent=extent, cmap="Greys",
                           vmin=0.0, vmax=1.0 / 0.6, interpolation="nearest")
            self.images.append(self.animated(im))
            for row, colour, width in (("exact", "C3", 0.008), ("learned", "C0", 0.005)):
                q = ax.quiver(X, Y, zero, zero, color=colour, angles="xy", scale_units="xy", scale=1.0,
                              pivot="mid", width=width, alpha=0.9)
                self.quivers[row][kind] = self.animated(q)
            self._notes[kind] = self.animated(ax.text(
                0.03, 0.03, "", transform=ax.transAxes, fontsize=8, va="bottom",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85}))
            ax.set_xlim(-self.lim, self.lim)
            ax.set_ylim(-self.lim, self.lim)
            ax.set_aspect("equal", adjustable="box")
            ax.set_title(viz.PREDICTION_LABELS[kind], fontsize=9)
            ax.tick_params(labelsize=7, labelleft=c == 0)
            ax.set_xlabel("$x_1$", fontsize=8, labelpad=1)
            if c == 0:
                ax.set_ylabel("$x_2$", fontsize=8, labelpad=1)
        self._suptitle = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "quivers"):
            self._setup()
        lp = viz.to_numpy(data["log_p"])
        for im in self.images:
            im.set_data(np.exp(lp - lp.max()))
        h = 2 * self.lim / (self.n - 1)
        for kind in FIELD_KINDS:
            fields = {"exact": data["exact"][kind], "learned": None if data["learned"] is None else data["learned"][kind]}
            big = max(float(viz.to_numpy(f).reshape(-1, 2).__pow__(2).sum(-1).max()) ** 0.5
                      for f in fields.values() if f is not None)
            for row, f in fields.items():
                q = self.quivers[row][kind]
                q.set_visible(f is not None)
                if f is None:
                    continue
                u = viz.to_numpy(f).reshape(self.n, self.n, 2)
                U, V = u[..., 0], u[..., 1]
                if values["normalize"]:
                    norm = np.sqrt(U ** 2 + V ** 2) + 1e-12
                    U, V, q.scale = U / norm, V / norm, 1.0 / (0.8 * h)
                else:
                    q.scale = max(big, 1e-12) / (0.95 * h)
                q.set_UVC(U, V)
            note = "" if values["normalize"] else f"longest |{SYMBOLS[kind]}| = {big:.3g}"
            if data["rmse"] is not None:
                note = f"rmse {data['rmse'][kind]:.3f}" + (f"; {note}" if note else "")
            self._notes[kind].set_text(note)
            self._notes[kind].set_visible(bool(note))
        net = data["network"]
        who = "exact (red)" + ("" if net == "none" else f" and {net}, converted (blue)")
        self._suptitle.set_text(f"{who}: {data['schedule']} schedule, t = {data['t']:.2f}")


# -- the loss template's weighting in lambda-space (§6.2.2) ------------------------------------------------
class WeightingExplorer(Explorer):
    """The weight a loss puts on each noise level, w(lambda) on the noise MSE, for every schedule (§6.2.2).

    Left: w(lambda) (log scale) for the chosen target kind, weighting and time distribution, one curve per
    schedule, the ELBO (w = 1 under uniform times) dashed.  Right: the same losses' weights omega(t) in t.
    Controls: kind, weighting, p_time (Dropdowns).  `update()` returns {"curves": name -> (lam, w), "t",
    "omega": name -> omega(t)}.
    """

    compute_keys = ("kind", "weighting", "p_time")
    figsize = (10.0, 4.2)
    axes_grid = (1, 2)
    margins = {"left": 0.07, "right": 0.98, "bottom": 0.27, "top": 0.88, "wspace": 0.25}
    clear_axes = False

    def __init__(self, schedules: tuple[str, ...] = LENS_SCHEDULES, n: int = 300, **initial: Any) -> None:
        self._schedules = _schedules(schedules)
        self.t = torch.linspace(1e-3, 1 - 1e-3, n, dtype=torch.float64)
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"kind": W.Dropdown(options=list(KINDS), value="eps", description="target"),
                "weighting": W.Dropdown(options=["none", "elbo", "sigma2", "snr", "edm"], value="none",
                                        description="weighting"),
                "p_time": W.Dropdown(options=list(P_TIMES), value="uniform", description="p_time")}

    def compute(self, kind: str, weighting: str, p_time: str) -> dict[str, Any]:
        curves, omega = {}, {}
        for name, sch in self._schedules.items():
            lam, w = implied_lambda_weight(sch, kind, weighting, self.t, p_time)
            curves[name] = (lam, w)
            omega[name] = TimeDist(p_time, 0.0, 1.0).density(self.t) * loss_weighting(sch, weighting, self.t, kind)
        return {"curves": curves, "omega": omega, "t": self.t, "kind": kind, "weighting": weighting, "p_time": p_time}

    def _setup(self) -> None:
        ax, bx = self.fig.axes
        self.lines, self.omega_lines = {}, {}
        for i, name in enumerate(self._schedules):
            self.lines[name] = self.animated(ax.plot([], [], color=f"C{i}", lw=1.6, label=name)[0])
            self.omega_lines[name] = self.animated(bx.plot([], [], color=f"C{i}", lw=1.6, label=name)[0])
        ax.axhline(1.0, color="k", ls="--", lw=1, label="ELBO, uniform t")
        ax.set(xlim=(-8, 8), ylim=(1e-4, 1e4), yscale="log", xlabel=r"$\lambda=\log(\alpha_t/\sigma_t)$",
               ylabel=r"$w(\lambda)$ on $\|\epsilon_\phi-\epsilon\|^2$")
        bx.set(xlim=(0, 1), ylim=(1e-4, 1e6), yscale="log", xlabel="t", ylabel=r"$p_{time}(t)\,\omega(t)$")
        # below the axes: inside, some (kind, weighting, p_time) always has a curve under it
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, frameon=False)
        self._title = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "lines"):
            self._setup()
        t = viz.to_numpy(data["t"])
        for name, (lam, w) in data["curves"].items():
            self.lines[name].set_data(viz.to_numpy(lam), viz.to_numpy(w))
            self.omega_lines[name].set_data(t, viz.to_numpy(data["omega"][name]))
        self._title.set_text(f"{data['kind']} target, {data['weighting']} weighting, {data['p_time']} times: "
                             "the weight on each noise level")


# -- the gamma family of reverse SDEs (§6.4) ---------------------------------------------------------------
def default_mixture_1d() -> GaussianMixture:
    """A 1-D two-mode mixture (weights 0.3 / 0.7, means -2 / 1.5, stds 0.35 / 0.6): histograms read well."""
    return GaussianMixture([0.3, 0.7], [[-2.0], [1.5]], stds=[0.35, 0.6])


class GammaFamilyExplorer(Explorer):
    """Reverse SDEs dx = [v* - gamma^2/2 s*] dt + gamma dw_bar, gamma(t) = eta g(t), all with marginals p_t (§6.4).

    eta = 0 is the PF-ODE, eta = 1 Anderson's reverse SDE.  For each eta on the grid `etas`, `n`
    particles are run once (Euler-Maruyama on the exact mixture, `dynamics.gamma_sde_step`, n_steps on a
    quadratic grid) from the SAME x_1 with the SAME noise draws, and cached: the controls only pick what to draw.
    Panels: the histogram of x_t against the exact p_t; a few paths (this eta, and the ODE's in grey);
    mean and std of x_t against the exact ones.
    Controls: gamma (the ratio gamma / g: a FloatSlider stepping over the evenly spaced `etas`), t (FloatSlider, snapped to the step grid).
    `update()` returns {"gamma" (the ratio), "t", "i", "x": (n,) samples at t, "edges", "counts", "p": exact density on
    `xs`, "mean", "std", "exact_mean", "exact_std", "corr": corr(x_1, x_0) of the paths}.
    """

    compute_keys = ("gamma", "t")
    figsize = (11.0, 3.5)
    axes_grid = (1, 3)
    margins = {"left": 0.05, "right": 0.99, "bottom": 0.15, "top": 0.84, "wspace": 0.22}
    clear_axes = False

    def __init__(self, mixture: GaussianMixture | None = None, schedule: Schedule | None = None, *, n: int = 2000,
                 n_steps: int = 100, etas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5), n_paths: int = 10,
                 seed: int = 0, **initial: Any) -> None:
        self.mixture = default_mixture_1d() if mixture is None else mixture
        if self.mixture.dim != 1:
            raise ValueError(f"GammaFamilyExplorer draws 1-D histograms: mixture must be 1-D, got dim {self.mixture.dim}")
        if not etas or any(not e >= 0 for e in etas):
            raise ValueError(f"etas must be a non-empty sequence of numbers >= 0, got {etas!r}")
        self.sched = VPLinear() if schedule is None else schedule
        self.etas, self.n_paths = tuple(float(e) for e in etas), n_paths
        self.grid = time_grid(self.sched, n_steps, "quadratic")       # fine steps near the data
        self.paths = self.run_paths(self.mixture, self.sched, self.grid, self.etas, n, seed)
        self.xs = torch.linspace(-4.5, 4.5, 301, dtype=torch.float64)
        self.edges = np.linspace(-4.5, 4.5, 61)
        super().__init__(**initial)

    @staticmethod
    def run_paths(mixture: GaussianMixture, schedule: Schedule, grid: torch.Tensor, etas: tuple[float, ...],
                  n: int, seed: int) -> dict[float, torch.Tensor]:
        """eta -> (len(grid), n, D) paths from the same x_1 and the same noise draws (common random numbers).

        All etas run as one batch: each step is dynamics.gamma_sde_step's Euler-Maruyama step
        x_t = x_s - (s - t) [v* - gamma^2/2 s*] + gamma sqrt(s - t) z with gamma = eta g(s) per block,
        and the same z for every block (the noise a per-eta run with generator seed + 1 would draw).
        """
        model = mixture.model(schedule)
        E, D = len(etas), mixture.dim
        x = randn((n, D), generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * schedule.prior_std()
        x = x.repeat(E, 1)
        eta = torch.tensor(etas, dtype=torch.float64).repeat_interleave(n)[:, None]
        g = torch.Generator().manual_seed(seed + 1)
        ts, out = grid.tolist(), [x]
        for s_, t_ in zip(ts[:-1], ts[1:]):
            dt, gam = s_ - t_, eta * math.sqrt(max(float(schedule.g2(s_)), 0.0))
            drift = model.predict(x, s_, "velocity") - 0.5 * gam ** 2 * model.predict(x, s_, "score")
            z = randn((n, D), generator=g, dtype=torch.float64).repeat(E, 1)
            x = x - dt * drift + gam * math.sqrt(dt) * z
            out.append(x)
        path = torch.stack(out).reshape(len(ts), E, n, D)
        return {e: path[:, k] for k, e in enumerate(etas)}

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        lo, hi = min(self.etas), max(self.etas)
        step = (hi - lo) / (len(self.etas) - 1) if len(self.etas) > 1 else 1.0
        if len(self.etas) > 1 and not np.allclose(np.diff(sorted(self.etas)), step):
            raise ValueError(f"etas must be evenly spaced (one slider step), got {self.etas}")
        return {"gamma": W.FloatSlider(value=1.0 if 1.0 in self.etas else hi, min=lo, max=max(hi, lo + 1e-9), step=step,
                                       description="\u03b3 / g", continuous_update=False, readout_format=".2f"),
                "t": W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.02, description="t", continuous_update=False)}

    def eta(self, gamma: float) -> float:
        """The grid value of gamma / g nearest to the slider's."""
        return min(self.etas, key=lambda e: abs(e - float(gamma)))

    def index(self, t: float) -> int:
        """The step-grid index nearest to t."""
        return int(torch.argmin((self.grid - float(t)).abs()))

    def compute(self, gamma: float, t: float) -> dict[str, Any]:
        i = self.index(t)
        ti = float(self.grid[i])
        path = self.paths[self.eta(gamma)]
        x = path[i, :, 0]
        counts, _ = np.histogram(x.numpy(), bins=self.edges, density=True)
        p = torch.exp(self.mixture.log_prob_t(self.xs[:, None], ti, self.sched))
        marg = self.mixture.marginal(ti, self.sched)
        x0, x1 = path[-1, :, 0], path[0, :, 0]
        corr = float(torch.corrcoef(torch.stack([x1, x0]))[0, 1])
        return {"gamma": self.eta(gamma), "t": ti, "i": i, "x": x, "edges": self.edges, "counts": counts, "p": p,
                "mean": path[:, :, 0].mean(1), "std": path[:, :, 0].std(1),
                "exact_mean": float(marg.mean()[0]), "exact_std": float(marg.cov()[0, 0].sqrt()), "corr": corr}

    def _exact_moments(self) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "_moments"):
            ms = [self.mixture.marginal(float(t), self.sched) for t in self.grid]
            self._moments = (np.array([float(m.mean()[0]) for m in ms]), np.array([float(m.cov()[0, 0].sqrt()) for m in ms]))
        return self._moments

    def _setup(self) -> None:
        ax, bx, cx = self.fig.axes
        self._hist = self.animated(ax.stairs(np.zeros(len(self.edges) - 1), self.edges, fill=True, color="C0",
                                             alpha=0.45, label="samples"))
        self._pdf, = ax.plot([], [], color="C3", lw=1.8, label="exact $p_t$")
        self.animated(self._pdf)
        ax.set(xlim=(-4.5, 4.5), ylim=(0, 0.9), xlabel="x", ylabel="density")
        ax.legend(fontsize=7, loc="upper left")
        ts = viz.to_numpy(self.grid)
        ode = viz.to_numpy(self.paths[self.etas[0]][:, :self.n_paths, 0])
        for j in range(self.n_paths):
            bx.plot(ts, ode[:, j], color="0.6", lw=0.8, label=f"\u03b3 / g = {self.etas[0]:g}" if j == 0 else None)
        self._paths = [self.animated(bx.plot([], [], color="C0", lw=1.0,
                                             label="selected \u03b3" if j == 0 else None)[0]) for j in range(self.n_paths)]
        self._tline = self.animated(bx.axvline(0.0, color="k", lw=0.8, ls=":"))
        bx.set(xlim=(1.0, 0.0), ylim=(-4.5, 4.5), xlabel="t (sampling runs 1 \u2192 0)", ylabel="$x_t$")
        bx.legend(fontsize=7, loc="lower left")
        em, es = self._exact_moments()
        cx.plot(ts, em, color="C3", lw=1.6, label="exact mean")
        cx.plot(ts, es, color="C3", lw=1.6, ls="--", label="exact std")
        self._mean, = cx.plot([], [], color="C0", lw=1.0, label="sample mean")
        self._std, = cx.plot([], [], color="C0", lw=1.0, ls="--", label="sample std")
        self._tline2 = cx.axvline(0.0, color="k", lw=0.8, ls=":")
        self.animated(self._mean, self._std, self._tline2)
        cx.set(xlim=(1.0, 0.0), ylim=(-0.5, 2.0), xlabel="t", ylabel="moment of $x_t$")
        cx.legend(fontsize=7, loc="upper right", ncol=2)
        self._title = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_hist"):
            self._setup()
        self._hist.set_data(data["counts"], data["edges"])
        self._pdf.set_data(viz.to_numpy(self.xs), viz.to_numpy(data["p"]))
        ts = viz.to_numpy(self.grid)
        path = viz.to_numpy(self.paths[data["gamma"]][:, :self.n_paths, 0])
        for j, line in enumerate(self._paths):
            line.set_data(ts, path[:, j])
        for line in (self._tline, self._tline2):
            line.set_xdata([data["t"], data["t"]])
        self._mean.set_data(ts, viz.to_numpy(data["mean"]))
        self._std.set_data(ts, viz.to_numpy(data["std"]))
        what = "PF-ODE" if data["gamma"] == 0 else ("Anderson's reverse SDE" if data["gamma"] == 1 else "a middle member")
        self._title.set_text(f"\u03b3 = {data['gamma']:g} g(t) ({what}) at t = {data['t']:.2f}: mean "
                             f"{float(data['mean'][data['i']]):+.3f} (exact {data['exact_mean']:+.3f}), std "
                             f"{float(data['std'][data['i']]):.3f} (exact {data['exact_std']:.3f}); "
                             f"corr(x\u2081, x\u2080) = {data['corr']:.2f}")
