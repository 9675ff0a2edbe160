"""TrajectoryExplorer: sampler trajectories from the prior to a mixture target, with a time scrubber
(§2.2.6, §9)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib.collections import LineCollection

from .. import samplers, viz
from ..datasets import eight_gaussians_mixture
from ..gmm import GaussianMixture
from ..grids import time_grid
from ..param import Model
from ..schedules import Schedule, get_schedule
from .base import Explorer

__all__ = ["TrajectoryExplorer"]


class TrajectoryExplorer(Explorer):
    """Sampler trajectories from the prior to the target, with a time scrubber (§2.2.6, §9).

    Controls: sampler (a name in METHODS, all from dl.samplers.SOLVERS), nfe (network evaluations;
    its step is the sampler's evaluations per step, so every position is a different run), eta
    (DDIM stochasticity, 0 = deterministic DDIM, 1 = DDPM-like; enabled for ddim only), seed, and
    step (the scrubber: which step of the run to show, 0 = the prior sample, max = the last step;
    its max follows the sampler and NFE, and a scrubber at the end stays at the end).

    Left: the paths up to the scrubbed step over the target, the start x_T (grey) and the points
    at the step (red).  Right: the points at the step over the exact noised density p_t at that
    step's time t (exact for the target mixture): a sampler is right when they follow it.

    Args:
        mixture: the target (its exact model drives the sampler unless `model` is given).
        model: optional learned Model with its schedule.
        schedule: used with the exact model (default VPLinear).
        n_samples: number of trajectories.
        lim: half-width of the plotted box.
        n_show: paths drawn on the left.
        nfe_max: top of the NFE slider (default NFE_MAX = 50; a larger one makes its far end slower
            than the widget standard's latency on a 2-core CPU).
    """

    compute_keys = ("sampler", "nfe", "eta", "seed")
    figsize = (10.0, 4.3)
    clear_axes = False
    margins = {"left": 0.055, "right": 0.985, "bottom": 0.11, "top": 0.86, "wspace": 0.18}
    axes_grid = (1, 2)
    METHODS = ("ddim", "ddpm", "euler", "heun", "dpm_solver_2", "dpmpp_2m")   # names in dl.samplers.SOLVERS
    NFE_MAX = 50      # default top of the NFE slider: a run of 50 steps stays inside the latency budget
    N_DENSITY = 70

    def __init__(self, mixture: GaussianMixture | None = None, model: Model | None = None, *,
                 schedule: Schedule | None = None, n_samples: int = 256, lim: float = 3.5, n_show: int = 48,
                 nfe_max: int | None = None,
                 **initial: Any) -> None:
        if mixture is None:
            mixture = eight_gaussians_mixture()
        self.mixture = mixture
        self.schedule = model.schedule if model is not None else (schedule or get_schedule("vp"))
        self.model = model if model is not None else mixture.model(self.schedule)
        self.n_samples, self.lim, self.n_show = n_samples, lim, n_show
        if nfe_max is not None:
            self.NFE_MAX = int(nfe_max)
        self.target = mixture.sample(2000, generator=torch.Generator().manual_seed(123), dtype=torch.float64)
        self._density_grid = viz.grid_points(lim, self.N_DENSITY)[2]
        self._densities: dict = {}
        super().__init__(**initial)
        with self._hold():
            self.sync_controls(self.values)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"sampler": W.Dropdown(options=list(self.METHODS), value="ddim", description="sampler"),
                "nfe": W.IntSlider(value=10, min=1, max=self.NFE_MAX, description="NFE", continuous_update=False),
                "eta": W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.1, description="eta (ddim)",
                                     continuous_update=False),
                "seed": W.IntText(value=0, description="seed", layout=W.Layout(width="160px")),
                "step": W.IntSlider(value=self.NFE_MAX, min=0, max=self.NFE_MAX, description="step (scrub)",
                                    continuous_update=False)}

    # -- controls that follow others --------------------------------------------------------------
    def per_step(self, sampler: str) -> int:
        """Network evaluations per step of `sampler`."""
        solver = samplers.SOLVERS.get(sampler)
        return (solver.nfe_per_step or 1) if solver is not None else 1

    def n_steps(self, sampler: str, nfe: int) -> int:
        """Steps of a run of `sampler` spending at most `nfe` evaluations (at least one step)."""
        return samplers.steps_for_nfe(sampler, max(int(nfe), self.per_step(sampler)))

    def sync_controls(self, values: dict[str, Any]) -> None:
        """NFE moves in multiples of the sampler's evaluations per step; the scrubber's max is the
        run's number of steps (a scrubber at its end stays at the end); eta only for ddim."""
        c = self.controls
        per = self.per_step(values["sampler"])
        nfe = c["nfe"]
        if nfe.step != per or nfe.min != per:
            nfe.min = per
            nfe.step = per
            nfe.max = per * (self.NFE_MAX // per)
        snapped = min(nfe.max, max(per, per * (int(nfe.value) // per)))   # at most nfe evaluations
        if nfe.value != snapped:
            nfe.value = snapped
        steps = self.n_steps(values["sampler"], nfe.value)
        step = c["step"]
        at_end = step.value >= step.max
        if step.max != steps:
            step.max = steps
        if at_end or step.value > steps:
            step.value = steps
        c["eta"].disabled = values["sampler"] != "ddim"

    def compute_values(self, values: dict[str, Any]) -> dict[str, Any]:
        args = super().compute_values(values)
        if args["sampler"] != "ddim":
            args["eta"] = 0.0                     # eta is ddim's only: other samplers share one run
        return args

    def times(self, nfe: int) -> torch.Tensor:
        """The descending grid of nfe + 1 times used (uniform in t, from 1 to schedule.t_eps)."""
        return time_grid(self.schedule, int(nfe), "uniform")

    def compute(self, sampler: str, nfe: int, eta: float, seed: int) -> dict[str, Any]:
        """Run `sampler` (a dl.samplers method) with at most `nfe` network evaluations; eta is used by ddim."""
        g = torch.Generator().manual_seed(int(seed))
        x1 = self.schedule.sample_prior((self.n_samples, self.mixture.dim), generator=g, dtype=torch.float64)
        times = self.times(samplers.steps_for_nfe(sampler, max(int(nfe), self.per_step(sampler))))
        opts = {"eta": float(eta)} if sampler == "ddim" else {}
        with torch.no_grad():
            traj = samplers.trajectory(self.model, x1, times, sampler, generator=g, **opts)
        final = traj[-1]
        # a simple quality number: mean log-likelihood of the samples under the target mixture
        ll = float(self.mixture.log_prob(final.double()).mean())
        used = (traj.shape[0] - 1) * self.per_step(sampler)
        return {"times": times, "trajectory": traj, "final": final, "mean_log_p": ll, "nfe_used": used,
                "paths": viz.to_numpy(traj[:, : self.n_show])}

    def density_at(self, t: float) -> np.ndarray:
        """p_t / max p_t of the target on the drawing grid (cached per time)."""
        key = round(float(t), 9)
        if key not in self._densities:
            if len(self._densities) > 512:
                self._densities.clear()
            lp = viz.to_numpy(self.mixture.log_prob_t(self._density_grid, float(t), self.schedule))
            self._densities[key] = np.exp(lp - lp.max()).reshape(self.N_DENSITY, self.N_DENSITY)
        return self._densities[key]

    # -- drawing: artists made once, updated in place ---------------------------------------------
    def _setup(self) -> None:
        ax1, ax2 = self.fig.axes[:2]
        tg = viz.to_numpy(self.target)
        extent = (-self.lim, self.lim, -self.lim, self.lim)
        for ax in (ax1, ax2):
            ax.set_xlim(-self.lim, self.lim)
            ax.set_ylim(-self.lim, self.lim)
            ax.set_aspect("equal", adjustable="box")
            ax.set_xlabel("$x_1$", labelpad=1)
        ax1.set_ylabel("$x_2$", labelpad=1)
        ax1.scatter(tg[:, 0], tg[:, 1], s=2, color="0.8", label="target samples", zorder=1)
        self._paths = self.animated(LineCollection([], colors="k", alpha=0.35, linewidths=0.7, zorder=2))
        ax1.add_collection(self._paths)
        self._start = self.animated(ax1.scatter([], [], s=7, color="0.45", zorder=3, label="start $x_T$"))
        self._now = self.animated(ax1.scatter([], [], s=9, color="C3", zorder=4, label="$x$ at the step"))
        ax1.legend(loc="upper right", fontsize=8, framealpha=0.85, markerscale=2)
        self._title1 = self.animated(ax1.set_title(" ", fontsize=10, y=1.0))
        self._im = self.animated(ax2.imshow(np.zeros((self.N_DENSITY, self.N_DENSITY)), origin="lower", extent=extent,
                                            cmap="Greys", vmin=0.0, vmax=1.6, interpolation="bilinear", zorder=0))
        self._points = self.animated(ax2.scatter([], [], s=5, color="C3", alpha=0.85, zorder=3))
        self._title2 = self.animated(ax2.set_title(" ", fontsize=10, y=1.0))
        ax2.text(0.02, 0.02, "grey: exact p\u209c of the target at the step's t", transform=ax2.transAxes,
                 fontsize=8, color="0.3")

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_paths"):
            self._setup()
        traj, paths = data["trajectory"], data["paths"]
        n = traj.shape[0] - 1
        k = min(int(values["step"]), n)
        t = float(data["times"][k])
        self._paths.set_segments(list(np.transpose(paths[: k + 1], (1, 0, 2))) if k > 0 else [])
        self._start.set_offsets(paths[0])
        self._now.set_offsets(paths[k])
        eta = f", eta = {values['eta']:g}" if values["sampler"] == "ddim" else ""
        self._title1.set_text(f"{values['sampler']}{eta}: step {k}/{n} ({data['nfe_used']} NFE), t = {t:.3f}")
        self._im.set_data(self.density_at(t))
        self._points.set_offsets(viz.to_numpy(traj[k]))
        self._title2.set_text(f"samples at t = {t:.3f} over p\u209c   (final mean log p = {data['mean_log_p']:.2f})")
