"""Chapter 04 explorers: the three dynamics with one marginal, and the Fokker-Planck equation.

ThreeDynamicsExplorer: a 1D bimodal mixture noised by a schedule; the forward SDE (from data),
the reverse SDE and the PF-ODE (from the same prior draws) over the exact density p_t (§4.1,
the book's bimodal heatmap), and their histograms at the scrubbed time against p_t.

FokkerPlanckExplorer: dx = f(x) dt + g dw for three drifts; the package's finite-difference
solution of the Fokker-Planck PDE (dl.fokker_planck.fp_solve), a particle histogram of the SDE,
and the exact marginal (or, for the double well, the Gibbs equilibrium) at the chosen time.

Both compute everything for a setting once (cached, and warmed up at construction; the three
schedules' heatmaps are rendered then too), so moving the time slider or the number of paths, or
switching the schedule, only redraws the moving parts.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib.collections import LineCollection

from ..dynamics import euler_maruyama_step, forward_sde, ode_solve, sde_solve
from ..fokker_planck import DRIFTS, ConstantSDE, fp_solve
from ..gmm import GaussianMixture
from ..schedules import EDM, Schedule, VEGeometric, VPLinear
from ..utils import randn
from .base import Explorer

__all__ = ["ThreeDynamicsExplorer", "FokkerPlanckExplorer", "bimodal_1d"]

SCRUB = np.round(np.linspace(0.0, 1.0, 21), 2)          # the time scrubber's values


def bimodal_1d() -> GaussianMixture:
    """The chapter's 1D data: 0.4 N(-1.5, 0.35^2) + 0.6 N(1.5, 0.35^2)."""
    return GaussianMixture([0.4, 0.6], [[-1.5], [1.5]], stds=[0.35, 0.35])


def _histogram(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Density histogram (counts / (n * width)), 0 outside the edges."""
    counts, _ = np.histogram(x, edges)
    return counts / (x.size * (edges[1] - edges[0]))


def _steps(edges: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x, y of a histogram drawn as a step line."""
    return np.repeat(edges, 2)[1:-1], np.repeat(h, 2)


class ThreeDynamicsExplorer(Explorer):
    """Forward SDE, reverse SDE and PF-ODE of a 1D mixture share one marginal p_t (§4.1.3-4.1.4).

    Controls: schedule (Dropdown: vp, ve, edm), t (FloatSlider on 0, 0.05, ..., 1), n_paths (paths drawn).
    Left: the exact density p_t(x) as a heatmap over (t, x), reverse-SDE paths (blue) and PF-ODE
    paths (white; grey in the legends and the histograms) from the same prior draws, forward-SDE paths
    (orange) from data, a green line at t.
    Right: at t, the histograms of the three particle clouds against p_t; the panel prints each
    histogram's total-variation distance to the exact bin masses.
    Args:
        mixture: 1D GaussianMixture (default bimodal_1d()).  n_particles: particles per dynamics.
        n_steps: uniform steps on [0, 1] (Euler-Maruyama for the SDEs, Heun for the PF-ODE).
    `update(...)` returns the data; its "hist" holds, per dynamics, the histograms at every SCRUB time.
    """

    compute_keys = ("schedule",)
    clear_axes = False
    figsize = (11.0, 4.0)
    margins = {"left": 0.06, "right": 0.98, "bottom": 0.13, "top": 0.85, "wspace": 0.22}
    axes_grid = (1, 2)
    MAX_PATHS = 40
    KINDS = ("forward SDE", "reverse SDE", "PF-ODE")
    COLORS = {"forward SDE": "C1", "reverse SDE": "C0", "PF-ODE": "w"}

    def __init__(self, mixture: GaussianMixture | None = None, *, n_particles: int = 2000, n_steps: int = 200,
                 seed: int = 0, **initial: Any) -> None:
        self.mixture = bimodal_1d() if mixture is None else mixture
        if self.mixture.dim != 1:
            raise ValueError(f"mixture must be one-dimensional, got dim {self.mixture.dim}")
        if isinstance(n_particles, bool) or not isinstance(n_particles, int) or n_particles < self.MAX_PATHS:
            raise ValueError(f"n_particles must be an int >= {self.MAX_PATHS}, got {n_particles!r}")
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 20 or n_steps % 20:
            raise ValueError(f"n_steps must be a multiple of 20 (so the scrubber's times are grid times), got {n_steps!r}")
        self.n_particles, self.n_steps, self.seed = n_particles, n_steps, seed
        self.schedules: dict[str, Schedule] = {"vp": VPLinear(), "ve": VEGeometric(0.01, 3.0), "edm": EDM(3.0)}
        super().__init__(**initial)
        start = dict(self.values)
        for name in self.schedules:                       # warm the data and each schedule's rendered heatmap
            self.update(schedule=name)                    # (the background): the dropdown then only redraws
            self.png()
        self.update(**start)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"schedule": W.Dropdown(options=list(self.schedules), value="vp", description="schedule"),
                "t": W.FloatSlider(value=0.5, min=0.0, max=1.0, step=float(SCRUB[1]), description="t",
                                   readout_format=".2f", continuous_update=False),
                "n_paths": W.IntSlider(value=12, min=0, max=self.MAX_PATHS, step=4, description="paths",
                                       continuous_update=False)}

    def compute(self, schedule: str) -> dict[str, Any]:
        cached = getattr(self, "_computed", {}).get(schedule)
        if cached is not None:
            return cached
        sch = self.schedules[schedule]
        model = self.mixture.model(sch)
        ts = torch.linspace(0, 1, self.n_steps + 1, dtype=torch.float64)
        g = torch.Generator().manual_seed(self.seed)
        x0 = self.mixture.sample(self.n_particles, generator=g, dtype=torch.float64)
        fwd = forward_sde(x0, ts, sch, generator=g)[..., 0]                       # (n+1, B), t ascending
        xT = randn((self.n_particles, 1), generator=g, dtype=torch.float64) * sch.prior_std()
        rev, x = [xT], xT
        for s, t in zip(ts.flip(0)[:-1].tolist(), ts.flip(0)[1:].tolist()):
            x, _ = euler_maruyama_step(model, x, s, t, generator=g)             # Anderson's SDE, §4.2
            rev.append(x)
        rev = torch.stack(rev).flip(0)[..., 0]                                  # stored t ascending
        ode = ode_solve(lambda y, t: self.mixture.velocity(y, t, sch), xT, ts.flip(0), method="heun")
        ode = ode.flip(0)[..., 0]
        lim = float(max(sch.alpha(ts).max() * self.mixture.means.abs().max() + 3.5 * sch.sigma(ts).max(), 3.0))
        xs = np.linspace(-lim, lim, 160)
        dens = np.stack([self.mixture.log_prob_t(torch.tensor(xs)[:, None], float(t), sch).exp().numpy()
                         for t in ts[::2].tolist()], 1)                         # (x, t) heatmap
        edges = np.linspace(-lim, lim, 41)
        idx = [int(round(t * self.n_steps)) for t in SCRUB]
        paths = {"forward SDE": fwd, "reverse SDE": rev, "PF-ODE": ode}
        hist = {k: np.stack([_histogram(p[i].numpy(), edges) for i in idx]) for k, p in paths.items()}
        exact = []
        for t in SCRUB:
            m = self.mixture.marginal(float(t), sch)
            cdf = np.array([_mixture_cdf(m, e) for e in edges])
            exact.append(np.diff(cdf) / (edges[1] - edges[0]))
        fine = np.linspace(-lim, lim, 400)
        curves = np.stack([self.mixture.log_prob_t(torch.tensor(fine)[:, None], float(t), sch).exp().numpy()
                           for t in SCRUB])
        tv = {k: 0.5 * np.abs(hist[k] - np.stack(exact)).sum(1) * (edges[1] - edges[0]) for k in paths}
        ymax = 1.15 * max(float(curves.max()), *(float(h.max()) for h in hist.values()))
        out = {"schedule": schedule, "times": ts.numpy(), "lim": lim, "xs": xs, "density": dens,
               "paths": {k: p[:, :self.MAX_PATHS].numpy() for k, p in paths.items()}, "edges": edges,
               "hist": hist, "exact_bins": np.stack(exact), "fine": fine, "curves": curves, "tv": tv, "ymax": ymax}
        self._computed = {**getattr(self, "_computed", {}), schedule: out}
        return out

    def static_key(self, data: Any, values: dict[str, Any]) -> Any:
        return data["schedule"]                   # the heatmap: re-rendered only when the schedule changes

    def _setup(self) -> None:
        ax0, ax1 = self.fig.axes
        self._im = ax0.imshow(np.zeros((2, 2)), origin="lower", aspect="auto", cmap="magma", interpolation="bilinear")
        self._coll = {k: self.animated(LineCollection([], colors=self.COLORS[k], linewidths=0.7,
                                                      alpha=0.8 if k != "forward SDE" else 0.6))
                      for k in self.KINDS}
        for c in self._coll.values():
            ax0.add_collection(c)
        self._tline = self.animated(ax0.axvline(0.5, color="C2", lw=1.5))
        ax0.set_xlabel("t (0 = data, 1 = noise)")
        ax0.set_ylabel("x")
        ax0.set_xlim(0, 1)
        for k in self.KINDS:
            ax0.plot([], [], color=self.COLORS[k] if k != "PF-ODE" else "0.6", label=k)
        ax0.legend(loc="upper left", fontsize=7, framealpha=0.8)
        self._exact, = ax1.plot([], [], color="k", lw=2, label="exact $p_t$")
        self.animated(self._exact)
        self._hist = {k: self.animated(ax1.plot([], [], color=self.COLORS[k] if k != "PF-ODE" else "0.5",
                                                lw=1.2, label=k)[0]) for k in self.KINDS}
        ax1.set_xlabel("x")
        ax1.set_ylabel("density")
        ax1.legend(loc="upper right", fontsize=7)
        self._note = self.animated(ax1.text(0.02, 0.97, "", transform=ax1.transAxes, fontsize=7, va="top", family="monospace"))
        self._title = self.animated(ax1.set_title(" ", fontsize=10))
        self._suptitle = self.fig.suptitle(" ", fontsize=10)

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_im"):
            self._setup()
        ax0, ax1 = self.fig.axes
        lim, ts = data["lim"], data["times"]
        self._im.set_data(data["density"])
        self._im.set_extent((0, 1, -lim, lim))
        self._im.set_clim(0, np.quantile(data["density"], 0.995))
        ax0.set_ylim(-lim, lim)
        n = int(values["n_paths"])
        for k in self.KINDS:
            p = data["paths"][k][:, :n]
            self._coll[k].set_segments([np.column_stack([ts, p[:, j]]) for j in range(p.shape[1])])
        t = float(values["t"])
        i = int(np.argmin(np.abs(SCRUB - t)))
        self._tline.set_xdata([t, t])
        self._exact.set_data(data["fine"], data["curves"][i])
        for k in self.KINDS:
            self._hist[k].set_data(*_steps(data["edges"], data["hist"][k][i]))
        ax1.set_xlim(-lim, lim)
        ax1.set_ylim(0, data["ymax"])              # fixed per schedule: moving t never re-renders the background
        self._note.set_text("TV to exact bins\n" + "\n".join(f"{k:12s} {data['tv'][k][i]:.3f}" for k in self.KINDS))
        self._title.set_text(f"histograms at t = {t:.2f} ({self.n_particles} particles each)")
        self._suptitle.set_text(f"three dynamics, one marginal: {data['schedule']} schedule, exact $p_t$ behind the paths")


def _mixture_cdf(m: GaussianMixture, x: float) -> float:
    """CDF of a 1D mixture at x."""
    from math import erf, sqrt

    sd = m.covs[:, 0, 0].sqrt()
    return float(sum(w * 0.5 * (1 + erf((x - mu) / (sqrt(2) * s)))
                     for w, mu, s in zip(m.weights.tolist(), m.means[:, 0].tolist(), sd.tolist())))


class FokkerPlanckExplorer(Explorer):
    """The Fokker-Planck PDE dp/dt = -d(f p)/dx + g^2/2 d2p/dx2 against particles and the exact marginal (Thm 4.1.1).

    Controls: drift (Dropdown: none, ou, double_well: f = 0, -x, x - x^3), g (Dropdown of the
    diffusion), t (FloatSlider 0..1 in steps of 0.05).  One panel: the PDE solution (the package's fp_solve), a
    histogram of particles run by Euler-Maruyama (200 steps), and the exact marginal (none, ou: a Gaussian
    mixture through ConstantSDE) or the Gibbs equilibrium exp(-2U/g^2) (double well; dashed).
    `update(...)` returns the data: "pde" (times, N), "hist" (times, bins), "exact" (times, N) or None.
    """

    compute_keys = ("drift", "g")
    clear_axes = False
    figsize = (8.0, 4.0)
    margins = {"left": 0.09, "right": 0.98, "bottom": 0.13, "top": 0.88}
    axes_grid = (1, 1)
    G_VALUES = (0.6, 0.8, 1.0, 1.25)
    LIMS = {"none": 6.0, "ou": 4.5, "double_well": 2.5}   # none: wide enough that the walls hold back < 1e-3 of the mass

    def __init__(self, mixture: GaussianMixture | None = None, *, n_particles: int = 4000, n_cells: int = 200,
                 seed: int = 0, **initial: Any) -> None:
        self.mixture = bimodal_1d() if mixture is None else mixture
        if self.mixture.dim != 1:
            raise ValueError(f"mixture must be one-dimensional, got dim {self.mixture.dim}")
        if isinstance(n_particles, bool) or not isinstance(n_particles, int) or n_particles < 100:
            raise ValueError(f"n_particles must be an int >= 100, got {n_particles!r}")
        if isinstance(n_cells, bool) or not isinstance(n_cells, int) or n_cells < 200:
            # the double well's box [-2.5, 2.5] needs dx <= 0.025 at g = 0.6 (cell Peclet number <= 2)
            raise ValueError(f"n_cells must be an int >= 200 (the cells per box), got {n_cells!r}")
        self.n_particles, self.n_cells, self.seed = n_particles, n_cells, seed
        super().__init__(**initial)
        for d in DRIFTS:                                   # warm the cache for every setting
            for g in self.G_VALUES:
                self._cache_setting(d, g)

    def _cache_setting(self, drift: str, g: float) -> None:
        self.update_cache = getattr(self, "update_cache", {})
        if (drift, g) not in self.update_cache:
            self.update_cache[(drift, g)] = self._solve(drift, g)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"drift": W.Dropdown(options=list(DRIFTS), value="ou", description="drift f"),
                "g": W.Dropdown(options=list(self.G_VALUES), value=1.0, description="g"),
                "t": W.FloatSlider(value=0.3, min=0.0, max=1.0, step=float(SCRUB[1]), description="t",
                                   readout_format=".2f", continuous_update=False)}

    def compute(self, drift: str, g: float) -> dict[str, Any]:
        self._cache_setting(drift, float(g))
        return self.update_cache[(drift, float(g))]

    def _solve(self, drift: str, g: float) -> dict[str, Any]:
        lim = self.LIMS[drift]
        dx = 2 * lim / self.n_cells
        x = -lim + dx * (np.arange(self.n_cells) + 0.5)
        p0 = self.mixture.log_prob(torch.tensor(x)[:, None]).exp().numpy()
        pde = fp_solve(p0, x, SCRUB, drift, g ** 2)
        gen = torch.Generator().manual_seed(self.seed)
        x0 = self.mixture.sample(self.n_particles, generator=gen, dtype=torch.float64)
        path = sde_solve(x0, torch.linspace(0, 1, 201, dtype=torch.float64), DRIFTS[drift], g, generator=gen)
        edges = np.linspace(-lim, lim, 51)
        hist = np.stack([_histogram(path[int(round(t * 200)), :, 0].numpy(), edges) for t in SCRUB])
        if drift == "double_well":
            U = x ** 4 / 4 - x ** 2 / 2
            gibbs = np.exp(-2 * U / g ** 2)
            exact, equilibrium = None, gibbs / (gibbs.sum() * dx)
        else:
            sde = ConstantSDE(1.0 if drift == "ou" else 0.0, g)
            exact = np.stack([self.mixture.log_prob_t(torch.tensor(x)[:, None], float(t), sde).exp().numpy()
                              for t in SCRUB])
            equilibrium = None
        ref = equilibrium if exact is None else exact
        ymax = 1.15 * max(float(pde.max()), float(hist.max()), float(np.max(ref)))
        return {"drift": drift, "g": g, "x": x, "pde": pde, "edges": edges, "hist": hist, "exact": exact, "ymax": ymax,
                "equilibrium": equilibrium, "mass": pde.sum(1) * dx,
                "err": None if exact is None else np.abs(pde - exact).max(1)}

    def _setup(self) -> None:
        ax = self.fig.axes[0]
        self._h, = ax.plot([], [], color="C0", lw=1.0, label="particles (Euler-Maruyama)")
        self._pde, = ax.plot([], [], color="C3", lw=2.0, label="PDE (fp_solve)")
        self._ex, = ax.plot([], [], color="k", lw=1.2, ls="--", label="exact marginal")
        self.animated(self._h, self._pde, self._ex)
        ax.set_xlabel("x")
        ax.set_ylabel("density")
        self._legend = ax.legend(loc="upper right", fontsize=8)
        self._note = self.animated(ax.text(0.02, 0.97, "", transform=ax.transAxes, fontsize=8, va="top"))
        self._title = self.animated(ax.set_title(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_pde"):
            self._setup()
        ax = self.fig.axes[0]
        i = int(np.argmin(np.abs(SCRUB - float(values["t"]))))
        x = data["x"]
        hx, hy = _steps(data["edges"], data["hist"][i])
        self._h.set_data(hx, hy)
        self._pde.set_data(x, data["pde"][i])
        if data["exact"] is not None:
            ref, label = data["exact"][i], "exact marginal"
            note = f"mass {data['mass'][i]:.6f} (t = 0: {data['mass'][0]:.6f})   max |PDE - exact| = {data['err'][i]:.1e}"
        else:
            ref, label = data["equilibrium"], "equilibrium exp(-2U/g²) (t → ∞)"
            note = f"mass {data['mass'][i]:.6f} (t = 0: {data['mass'][0]:.6f})   no closed form at finite t"
        self._ex.set_data(x, ref)
        self._legend.get_texts()[2].set_text(label)
        ax.set_xlim(x[0], x[-1])
        ax.set_ylim(0, data["ymax"])               # fixed per setting: moving t never re-renders the background
        self._note.set_text(note)
        f = {"none": "f = 0", "ou": "f = -x", "double_well": "f = x - x³"}[data["drift"]]
        self._title.set_text(f"Fokker-Planck for dx = f dt + g dw with {f}, g = {data['g']:g}, at t = {float(values['t']):.2f}")

    def static_key(self, data: Any, values: dict[str, Any]) -> Any:
        return (data["drift"], data["g"])
