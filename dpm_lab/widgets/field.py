"""FieldExplorer: the exact fields x0*, eps*, score* and velocity* of a mixture side by side, and a
learned model's when given, over the noised density p_t (§6.3.1)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import viz
from ..datasets import eight_gaussians_mixture
from ..gmm import GaussianMixture
from ..param import Model
from ..schedules import Schedule, get_schedule
from .base import Explorer

__all__ = ["FieldExplorer", "FIELD_KINDS"]

FIELD_KINDS = ("x0", "eps", "score", "velocity")
SYMBOLS = {"x0": "x\u2080* - x\u209c", "eps": "\u03b5*", "score": "\u2207log p\u209c", "velocity": "v*"}


class FieldExplorer(Explorer):
    """The exact fields x0*, eps*, score* and velocity* of a mixture side by side (and a learned
    model's, when given) over the noised density p_t (§6.3.1).

    Controls: t (FloatSlider), schedule (Dropdown; hidden when a model is given: its own schedule
    is used), normalize (Checkbox "unit arrows": directions only; unchecked, arrow lengths are
    relative to the panel's largest, whose size is printed in the panel).

    Args:
        mixture: a GaussianMixture / PointSet (default: eight Gaussians).
        model: optional learned Model; its four predictions are drawn in a second row (its own
            schedule is then used for both rows).
        lim, n: box half-width and arrows per side.
        n_density: grid points per side of the density drawn behind the arrows.

    The drawn arrows are `ex.quivers[row][kind]` (row "exact" or "learned"); their U, V are the
    field (unit vectors with normalize) on `update()["points"]`, except for x0, whose arrows are the
    displacement x0*(x_t) - x_t: a point x0* drawn as an arrow at x_t would mean nothing.
    """

    compute_keys = ("t", "schedule")
    clear_axes = False
    NAMES = ("vp", "cosine", "flow", "ve", "edm")

    def __init__(self, mixture: GaussianMixture | None = None, model: Model | None = None, *,
                 lim: float = 3.0, n: int = 13, n_density: int = 60, **initial: Any) -> None:
        if mixture is None:
            mixture = eight_gaussians_mixture()
        self.mixture, self.model, self.lim, self.n, self.n_density = mixture, model, lim, n, n_density
        self.figsize = (11.0, 3.3 if model is None else 6.0)
        self.margins = ({"left": 0.04, "right": 0.99, "bottom": 0.08, "top": 0.80, "wspace": 0.12}
                        if model is None else
                        {"left": 0.04, "right": 0.99, "bottom": 0.05, "top": 0.88, "wspace": 0.12, "hspace": 0.28})
        self.axes_grid = (1 if model is None else 2, 4)
        self._schedules = {name: get_schedule(name) for name in self.NAMES}
        if model is not None:
            self._schedules = {model.schedule.name: model.schedule}
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        names = list(self._schedules)
        hidden = self.model is not None              # one schedule, the model's: no dropdown to show
        return {"t": W.FloatSlider(value=0.3, min=0.02, max=1.0, step=0.02, description="t",
                                   continuous_update=False),
                "schedule": W.Dropdown(options=names, value=names[0], description="schedule",
                                       layout=W.Layout(display="none") if hidden else W.Layout()),
                "normalize": W.Checkbox(value=True, description="unit arrows")}

    def schedule(self, name: str) -> Schedule:
        """The schedule behind the dropdown entry `name`."""
        return self._schedules[name]

    def compute(self, t: float, schedule: str) -> dict[str, Any]:
        """The four exact fields on the arrow grid, log p_t on the density grid, and the model's fields and rmse."""
        sch = self._schedules[schedule]
        t = float(t)
        _, _, pts = viz.grid_points(self.lim, self.n)
        out = {"t": t, "schedule": schedule, "points": pts,
               "exact": {k: self.mixture.predict(pts, t, sch, k) for k in FIELD_KINDS}}
        _, _, dense = viz.grid_points(self.lim, self.n_density)
        out["log_p"] = self.mixture.log_prob_t(dense, t, sch).reshape(self.n_density, self.n_density)
        if self.model is not None:
            with torch.no_grad():
                x = pts.to(torch.float32)
                out["learned"] = {k: self.model.predict(x, t, k).double() for k in FIELD_KINDS}
                err = {k: float(((out["learned"][k] - out["exact"][k]) ** 2).sum(-1).mean().sqrt())
                       for k in FIELD_KINDS}
            out["rmse"] = err
        return out

    # -- drawing: artists made once, updated in place ---------------------------------------------
    def _rows(self) -> list[str]:
        return ["exact"] + (["learned"] if self.model is not None else [])

    def _setup(self) -> None:
        axes = np.array(self.fig.axes).reshape(-1, 4)
        xs, ys, _ = viz.grid_points(self.lim, self.n)
        X, Y = np.meshgrid(xs, ys)
        zero = np.zeros_like(X)
        extent = (-self.lim, self.lim, -self.lim, self.lim)
        self.images, self.quivers, self._notes = [], {}, {}
        for r, row in enumerate(self._rows()):
            self.quivers[row], self._notes[row] = {}, {}
            for c, kind in enumerate(FIELD_KINDS):
                ax = axes[r, c]
                im = ax.imshow(np.zeros((self.n_density, self.n_density)), origin="lower", extent=extent,
                               cmap="Greys", vmin=0.0, vmax=1.0 / 0.6, interpolation="bilinear")
                self.images.append(self.animated(im))
                q = ax.quiver(X, Y, zero, zero, color="C3" if row == "exact" else "C0", angles="xy",
                              scale_units="xy", scale=1.0, pivot="mid", width=0.007)
                self.quivers[row][kind] = self.animated(q)
                self._notes[row][kind] = self.animated(ax.text(
                    0.03, 0.03, "", transform=ax.transAxes, fontsize=8, va="bottom",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8}))
                ax.set_xlim(-self.lim, self.lim)
                ax.set_ylim(-self.lim, self.lim)
                ax.set_aspect("equal", adjustable="box")
                label = (r"$x_0^*(x_t)-x_t$ (denoiser step)" if kind == "x0" else viz.PREDICTION_LABELS[kind])
                ax.set_title(f"{row} {label}", fontsize=9)
                ax.tick_params(labelsize=7, labelleft=c == 0, labelbottom=r == len(self._rows()) - 1)
        self._suptitle = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "quivers"):
            self._setup()
        lp = viz.to_numpy(data["log_p"])
        dens = np.exp(lp - lp.max())                         # p_t / max p_t on the grid
        for im in self.images:
            im.set_data(dens)
        h = 2 * self.lim / (self.n - 1)                      # arrow spacing
        for row in self._rows():
            for kind in FIELD_KINDS:
                field = data[row][kind] - data["points"].to(data[row][kind].dtype) if kind == "x0" else data[row][kind]
                u = viz.to_numpy(field).reshape(self.n, self.n, 2)
                U, V = u[..., 0], u[..., 1]
                norm = np.sqrt(U ** 2 + V ** 2)
                q = self.quivers[row][kind]
                if values["normalize"]:
                    U, V = U / (norm + 1e-12), V / (norm + 1e-12)
                    q.scale = 1.0 / (0.8 * h)
                    note = ""
                else:
                    big = float(norm.max())
                    q.scale = max(big, 1e-12) / (0.95 * h)
                    note = f"longest |{SYMBOLS[kind]}| = {big:.3g}"
                if row == "learned":
                    note = f"rmse {data['rmse'][kind]:.3f}" + (f", {note}" if note else "")
                q.set_UVC(U, V)
                self._notes[row][kind].set_text(note)
                self._notes[row][kind].set_visible(bool(note))
        which = "exact fields of p\u209c" + (" (top) and the learned model's (bottom)" if self.model is not None else "")
        self._suptitle.set_text(f"{which}, {data['schedule']} schedule at t = {data['t']:.2f}"
                                f"{'  (unit arrows: directions only)' if values['normalize'] else ''}")
