"""FieldExplorer: the exact fields x0*, eps*, score* and velocity* of a mixture side by side, and a
learned model's when given, over the noised density p_t (§6.3.1)."""
from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .. import viz
from ..datasets import eight_gaussians_mixture
from ..gmm import GaussianMixture
from ..param import Model
from ..schedules import Schedule, get_schedule
from .base import Explorer

__all__ = ["FieldExplorer", "FIELD_KINDS"]

FIELD_KINDS = ("x0", "eps", "score", "velocity")


class FieldExplorer(Explorer):
    """The exact fields x0*, eps*, score* and velocity* of a mixture side by side (and a learned
    model's, when given) over the noised density p_t (§6.3.1).

    Controls: t (FloatSlider), schedule (Dropdown; fixed to the model's when a model is given),
    normalize (Checkbox: unit arrows).

    Args:
        mixture: a GaussianMixture / PointSet (default: eight Gaussians).
        model: optional learned Model; its four predictions are drawn in a second row (its own
            schedule is then used for both rows and the schedule dropdown is fixed).
        lim, n: box half-width and arrows per side.
        n_density: grid points per side of the density drawn behind the arrows.
    """

    compute_keys = ("t", "schedule")
    NAMES = ("vp", "cosine", "flow", "ve", "edm")

    def __init__(self, mixture: GaussianMixture | None = None, model: Model | None = None, *,
                 lim: float = 3.0, n: int = 13, n_density: int = 60, **initial: Any) -> None:
        if mixture is None:
            mixture = eight_gaussians_mixture()
        self.mixture, self.model, self.lim, self.n, self.n_density = mixture, model, lim, n, n_density
        self.figsize = (11.0, 3.0 if model is None else 5.8)
        self._schedules = {name: get_schedule(name) for name in self.NAMES}
        if model is not None:
            self._schedules = {model.schedule.name: model.schedule}
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        names = list(self._schedules)
        return {"t": W.FloatSlider(value=0.3, min=0.02, max=1.0, step=0.02, description="t",
                                   continuous_update=False),
                "schedule": W.Dropdown(options=names, value=names[0], description="schedule",
                                       disabled=self.model is not None),
                "normalize": W.Checkbox(value=True, description="unit arrows")}

    def _make_figure(self) -> Figure:
        rows = 1 if self.model is None else 2
        return plt.subplots(rows, 4, figsize=self.figsize)[0]

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

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        axes = np.array(self.fig.axes).reshape(-1, 4)
        rows = [("exact", "exact")] + ([("learned", "learned")] if "learned" in data else [])
        lp = viz.to_numpy(data["log_p"])
        for r, (key, label) in enumerate(rows):
            for c, kind in enumerate(FIELD_KINDS):
                ax = axes[r, c]
                ax.imshow(np.exp(lp - lp.max()), origin="lower", extent=(-self.lim, self.lim, -self.lim, self.lim),
                          cmap="Greys", alpha=0.6)
                vec = data[key][kind]
                title = f"{label} {kind}"
                if key == "learned":
                    title += f" (rmse {data['rmse'][kind]:.2f})"
                viz.field(lambda _p, v=vec: v, lim=self.lim, n=self.n, ax=ax, normalize=values["normalize"],
                          color="C3" if key == "exact" else "C0", title=title)
                ax.set_xlabel("")
                ax.set_ylabel("")
        self.fig.suptitle(f"{data['schedule']} at t = {data['t']:.2f}", fontsize=10)
