"""Chapter 07 explorers: entropic OT by Sinkhorn, and the PF-ODE map against the OT map.

    SinkhornExplorer   two point clouds and their entropic plan for eps on a grid (the plan as lines or as a
                       matrix), beside the entropic cost against the exact OT cost as eps shrinks; iterations
    PFODEMapExplorer   a 2-D mixture's exact PF-ODE map noise -> data under a schedule, beside the exact OT
                       (Hungarian) map between the same two clouds: displacements or paths, and both costs

Everything is precomputed at construction (Sinkhorn for every (eps, n) on the grid, the flow per schedule), so a
change of control only redraws.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib.collections import LineCollection

from .. import ot, viz
from ..gmm import GaussianMixture
from ..schedules import get_schedule
from ..utils import randn
from .base import Explorer, InvalidSelection

__all__ = ["SinkhornExplorer", "PFODEMapExplorer", "sinkhorn_clouds", "pf_mixtures"]

EPS_GRID = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5)
N_GRID = (8, 16, 32, 64)


def sinkhorn_clouds(n: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The explorer's two clouds (float64, unit scale): a Gaussian blob on the left, an arc on the right."""
    g = torch.Generator().manual_seed(seed)
    x = 0.4 * randn((n, 2), generator=g, dtype=torch.float64) + torch.tensor([-0.7, 0.0], dtype=torch.float64)
    ang = torch.linspace(-1.3, 1.3, n, dtype=torch.float64)[torch.randperm(n, generator=g)]
    y = torch.stack([0.2 + 0.6 * torch.cos(ang), 1.1 * torch.sin(ang)], 1)
    return x, y + 0.05 * randn((n, 2), generator=g, dtype=torch.float64)


class SinkhornExplorer(Explorer):
    """Entropic OT between two clouds (§7.2.2): the plan P_eps by log-domain Sinkhorn, as lines or a matrix.

    Left: the clouds and the plan (lines x_i -> y_j, darker for larger P_ij; or the matrix n P with rows and
    columns ordered by the first coordinate).  Right: the entropic plan's cost <C, P_eps> against eps for this n,
    the exact OT cost (dashed) and the current eps.  Controls: eps (EPS_GRID), n (N_GRID), view.
    `update()` returns 'plan', 'cost', 'exact', 'n_iter', 'costs' (over EPS_GRID).
    """

    compute_keys = ("eps", "n")
    clear_axes = False
    figsize = (10.0, 4.4)
    axes_grid = (1, 2)
    margins = {"left": 0.06, "right": 0.98, "bottom": 0.12, "top": 0.85, "wspace": 0.22}

    def __init__(self, *, seed: int = 0, **initial: Any) -> None:
        self._solved: dict[tuple[float, int], dict] = {}
        for n in N_GRID:
            x, y = sinkhorn_clouds(n, seed=seed)
            exact = ot.exact_ot(x, y)[1]
            for eps in EPS_GRID:
                r = ot.sinkhorn(x, y, eps, tol=1e-6, max_iter=5000)
                self._solved[eps, n] = {"x": x, "y": y, "plan": r.plan, "cost": float(r.cost), "exact": exact,
                                        "n_iter": r.n_iter, "converged": r.converged}
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"eps": W.SelectionSlider(options=list(EPS_GRID), value=0.5, description="\u03b5",
                                         continuous_update=False),
                "n": W.SelectionSlider(options=list(N_GRID), value=16, description="points", continuous_update=False),
                "view": W.Dropdown(options=["lines", "matrix"], value="lines", description="plan as")}

    def compute(self, eps: float, n: int) -> dict[str, Any]:
        if (eps, n) not in self._solved:
            raise InvalidSelection(f"eps must be one of {EPS_GRID} and n one of {N_GRID}")
        return {**self._solved[eps, n], "eps": eps, "n": n,
                "costs": [self._solved[e, n]["cost"] for e in EPS_GRID]}

    def _setup(self) -> None:
        left, right = self.fig.axes
        self._lines = self.animated(LineCollection([], linewidths=1.0))
        left.add_collection(self._lines)
        self._src = self.animated(left.scatter([], [], s=18, color="C0", zorder=3, label="source x\u1d62"))
        self._tgt = self.animated(left.scatter([], [], s=18, color="C3", zorder=3, label="target y\u2c7c"))
        self._mat = self.animated(left.imshow(np.zeros((2, 2)), extent=(-2.1, 1.9, -1.6, 1.6), cmap="Greys",
                                              vmin=0, vmax=1, aspect="auto", zorder=1, visible=False))
        left.set_xlim(-2.1, 1.9)        # the 32- and 64-point clouds reach x = -1.96
        left.set_ylim(-1.6, 1.6)
        left.legend(loc="lower left", fontsize=7, framealpha=0.85)
        left.tick_params(labelsize=7)
        right.set_xscale("log")
        right.set_xlabel("\u03b5", fontsize=9)
        right.set_ylabel("transport cost \u27e8C, P\u2091\u27e9", fontsize=9)
        right.tick_params(labelsize=7)
        right.set_title("entropic plan's cost against \u03b5", fontsize=9)
        self._curve = self.animated(*right.plot([], [], "o-", color="C0", ms=3, label="\u27e8C, P\u03b5\u27e9 (Sinkhorn)"))
        self._exact = self.animated(right.axhline(0.0, color="k", ls="--", lw=1, label="exact OT cost"))
        self._now = self.animated(*right.plot([], [], "o", color="C3", ms=8, label="current \u03b5"))
        right.legend(loc="upper left", fontsize=7)
        self._title = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_lines"):
            self._setup()
        left, right = self.fig.axes
        x, y, P = (viz.to_numpy(data[k]) for k in ("x", "y", "plan"))
        n = data["n"]
        matrix = values["view"] == "matrix"
        for art in (self._lines, self._src, self._tgt):
            art.set_visible(not matrix)
        self._mat.set_visible(matrix)
        if matrix:
            ox, oy = np.argsort(x[:, 1]), np.argsort(y[:, 1])
            self._mat.set_data(n * P[np.ix_(ox, oy)])
            left.set_title("n P (rows: source, columns: target, each sorted by height)", fontsize=9)
            left.set_xticks([])
            left.set_yticks([])
        else:
            k = min(n, 12)                                   # the 12 largest entries of each row
            j = np.argsort(-P, axis=1)[:, :k]
            i = np.repeat(np.arange(n), k)
            w = P[i, j.ravel()] * n
            segs = np.stack([x[i], y[j.ravel()]], 1)
            rgba = np.zeros((len(w), 4))
            rgba[:, 3] = np.clip(w, 0, 1) * 0.9
            self._lines.set_segments(segs)
            self._lines.set_color(rgba)
            self._src.set_offsets(x)
            self._tgt.set_offsets(y)
            left.set_title("plan: line x\u1d62 \u2192 y\u2c7c with opacity n P\u1d62\u2c7c", fontsize=9)
            left.set_xticks([-1, 0, 1])
            left.set_yticks([-1, 0, 1])
        self._curve.set_data(EPS_GRID, data["costs"])
        self._exact.set_ydata([data["exact"], data["exact"]])
        self._now.set_data([data["eps"]], [data["cost"]])
        right.set_xlim(EPS_GRID[0] / 1.5, EPS_GRID[-1] * 1.5)
        right.set_ylim(0.9 * data["exact"], 1.05 * max(data["costs"]))
        conv = f"{data['n_iter']} iterations" + ("" if data["converged"] else " (not converged)")
        self._title.set_text(f"Sinkhorn, \u03b5 = {data['eps']:g}, n = {n}: cost {data['cost']:.3f} vs exact OT "
                             f"{data['exact']:.3f} (+{100 * (data['cost'] / data['exact'] - 1):.1f}%), {conv}")


def pf_mixtures() -> dict[str, GaussianMixture]:
    """The PF-ODE explorer's 2-D data: two thin crossed Gaussians (non-commuting covariances: the PF-ODE map is
    measurably not OT) and three round Gaussians (isotropic components: it is OT to about 1e-5 of the cost)."""
    thin = 0.02
    return {"two thin crossed Gaussians": GaussianMixture([0.5, 0.5], [[-1.5, 0.0], [1.5, 0.0]],
                                                         covs=[[[1.5, 0.0], [0.0, thin]], [[thin, 0.0], [0.0, 1.5]]]),
            "three round Gaussians": GaussianMixture([0.5, 0.3, 0.2], [[-1.5, -0.6], [1.4, -0.8], [0.3, 1.6]],
                                                     stds=[0.35, 0.25, 0.3])}


class PFODEMapExplorer(Explorer):
    """Is the PF-ODE an OT map? (§7.5.1) The exact PF-ODE map of a mixture, noise (t = 1) -> data (t = 0), beside
    the exact OT map between the same two clouds (Hungarian on the noise points and their PF-ODE images).

    Controls: data (pf_mixtures()), schedule (VP, rectified flow), view ("displacements": straight segments start -> end;
    "paths": the PF-ODE's curved paths, and OT's straight ones), n shown.  Per schedule the flow of n_max points
    is computed once (DOP853, gmm.flow).  `update()` returns 'z', 'x0' (PF-ODE images), 'perm' (OT pairing),
    'pf_cost', 'ot_cost', 'paths'.
    """

    compute_keys = ("data", "schedule")
    clear_axes = False
    figsize = (10.0, 4.6)
    axes_grid = (1, 2)
    margins = {"left": 0.06, "right": 0.99, "bottom": 0.09, "top": 0.84, "wspace": 0.12}
    SCHEDULES = {"VP (linear beta)": "vp", "rectified flow": "flow"}

    def __init__(self, mixtures: dict[str, GaussianMixture] | None = None, *, n_max: int = 200, seed: int = 0,
                 n_times: int = 17, **initial: Any) -> None:
        self.mixtures = pf_mixtures() if mixtures is None else mixtures
        if not self.mixtures or not all(isinstance(m, GaussianMixture) and m.dim == 2 for m in self.mixtures.values()):
            raise ValueError("mixtures must be a non-empty dict of 2-D GaussianMixtures")
        self.n_max, self._flows = n_max, {}
        times = torch.linspace(1.0, 0.0, n_times, dtype=torch.float64)
        for data, mix in self.mixtures.items():
            for label, name in self.SCHEDULES.items():
                sched = get_schedule(name)
                g = torch.Generator().manual_seed(seed)
                z = mix.sample_marginal(n_max, 1.0, sched, generator=g, dtype=torch.float64)
                paths = mix.flow(z, times, sched)
                x0 = paths[-1]
                perm = ot.ot_permutation(z, x0)
                self._flows[data, label] = {"z": z, "x0": x0, "paths": paths, "perm": perm,
                                            "pf_cost": ot.transport_cost(z, x0),
                                            "ot_cost": ot.transport_cost(z, x0[perm])}
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        names = list(self.mixtures)
        return {"data": W.Dropdown(options=names, value=names[0], description="data"),
                "schedule": W.Dropdown(options=list(self.SCHEDULES), value="VP (linear beta)", description="schedule"),
                "view": W.Dropdown(options=["displacements", "paths"], value="displacements", description="show"),
                "n_shown": W.IntSlider(value=min(80, self.n_max), min=10, max=self.n_max, step=10,
                                       description="drawn", continuous_update=False)}

    def compute(self, data: str, schedule: str) -> dict[str, Any]:
        if (data, schedule) not in self._flows:
            raise InvalidSelection(f"data must be one of {list(self.mixtures)}, schedule one of {list(self.SCHEDULES)}")
        return {**self._flows[data, schedule], "schedule": schedule, "data": data}

    def _setup(self) -> None:
        self._segs, self._starts, self._ends = [], [], []
        for ax, title in zip(self.fig.axes, ("PF-ODE map z \u2192 \u03a6(z)", "OT map (Hungarian, same two clouds)")):
            lc = self.animated(LineCollection([], colors="0.35", linewidths=0.7, alpha=0.6))
            ax.add_collection(lc)
            self._segs.append(lc)
            self._starts.append(self.animated(ax.scatter([], [], s=8, color="C0", zorder=3, label="noise z (t = 1)")))
            self._ends.append(self.animated(ax.scatter([], [], s=8, color="C3", zorder=3, label="data (t = 0)")))
            ax.set_xlim(-3.5, 3.5)
            ax.set_ylim(-3.5, 3.5)
            ax.set_aspect("equal", adjustable="box")
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("x\u2081", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(loc="upper right", fontsize=7, framealpha=0.85)
        self.fig.axes[0].set_ylabel("x\u2082", fontsize=8)
        self._title = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_segs"):
            self._setup()
        k = int(values["n_shown"])
        z, x0, paths = viz.to_numpy(data["z"])[:k], viz.to_numpy(data["x0"]), viz.to_numpy(data["paths"])[:, :k]
        ot_end = x0[data["perm"].cpu().numpy()][:k]
        if values["view"] == "paths":
            self._segs[0].set_segments(list(np.transpose(paths, (1, 0, 2))))
        else:
            self._segs[0].set_segments(np.stack([z, x0[:k]], 1))
        self._segs[1].set_segments(np.stack([z, ot_end], 1))
        for sc in self._starts:
            sc.set_offsets(z)
        self._ends[0].set_offsets(x0[:k])
        self._ends[1].set_offsets(ot_end)
        excess = 100 * (data["pf_cost"] / data["ot_cost"] - 1)
        self._title.set_text(f"{data['data']}, {data['schedule']}: E||\u03a6(z) - z||\u00b2 = {data['pf_cost']:.4f} "
                             f"(PF-ODE) vs {data['ot_cost']:.4f} (OT): +{excess:.3f}%, n = {self.n_max}; {k} drawn")
