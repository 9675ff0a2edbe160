"""TrajectoryExplorer: sampler trajectories from the prior to a mixture target, with a time scrubber
(§2.2.6, §9)."""
from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

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

    Controls: sampler (a name in METHODS, all from dl.samplers.SOLVERS), nfe, eta (DDIM
    stochasticity; 1 = DDPM), seed and step (the scrubber: which step of the trajectory to show;
    drawing only).

    Args:
        mixture: the target (its exact model drives the sampler unless `model` is given).
        model: optional learned Model with its schedule.
        schedule: used with the exact model (default VPLinear).
        n_samples: number of trajectories.
        lim: half-width of the plotted box.
    """

    compute_keys = ("sampler", "nfe", "eta", "seed")
    figsize = (9.0, 3.4)
    METHODS = ("ddim", "ddpm", "euler", "heun", "dpm_solver_2", "dpmpp_2m")   # names in dl.samplers.SOLVERS

    def __init__(self, mixture: GaussianMixture | None = None, model: Model | None = None, *,
                 schedule: Schedule | None = None, n_samples: int = 256, lim: float = 3.5, **initial: Any) -> None:
        if mixture is None:
            mixture = eight_gaussians_mixture()
        self.mixture = mixture
        self.schedule = model.schedule if model is not None else (schedule or get_schedule("vp"))
        self.model = model if model is not None else mixture.model(self.schedule)
        self.n_samples, self.lim = n_samples, lim
        self.target = mixture.sample(2000, generator=torch.Generator().manual_seed(123), dtype=torch.float64)
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"sampler": W.Dropdown(options=list(self.METHODS), value="ddim", description="sampler"),
                "nfe": W.IntSlider(value=10, min=1, max=100, description="NFE", continuous_update=False),
                "eta": W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.1, description="eta (ddim)",
                                     continuous_update=False),
                "seed": W.IntText(value=0, description="seed"),
                "step": W.IntSlider(value=100, min=0, max=100, description="step (scrub)",
                                    continuous_update=False)}

    def times(self, nfe: int) -> torch.Tensor:
        """The descending grid of nfe + 1 times used (uniform in t, from 1 to schedule.t_eps)."""
        return time_grid(self.schedule, int(nfe), "uniform")

    def compute(self, sampler: str, nfe: int, eta: float, seed: int) -> dict[str, Any]:
        """Run `sampler` (a dl.samplers method) with at most `nfe` network evaluations; eta is used by ddim."""
        g = torch.Generator().manual_seed(int(seed))
        x1 = self.schedule.sample_prior((self.n_samples, self.mixture.dim), generator=g, dtype=torch.float64)
        per_step = samplers.SOLVERS[sampler].nfe_per_step if sampler in samplers.SOLVERS else 1
        times = self.times(samplers.steps_for_nfe(sampler, max(int(nfe), per_step)))
        opts = {"eta": float(eta)} if sampler == "ddim" else {}
        with torch.no_grad():
            traj = samplers.trajectory(self.model, x1, times, sampler, generator=g, **opts)
        final = traj[-1]
        # a simple quality number: mean log-likelihood of the samples under the target mixture
        ll = float(self.mixture.log_prob(final.double()).mean())
        return {"times": times, "trajectory": traj, "final": final, "mean_log_p": ll}

    def _make_figure(self) -> Figure:
        return plt.subplots(1, 2, figsize=self.figsize)[0]

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        ax1, ax2 = self.fig.axes[:2]
        traj = data["trajectory"]
        k = min(int(values["step"]), traj.shape[0] - 1)
        viz.scatter(self.target, ax=ax1, color="0.75", s=2, alpha=0.5)
        viz.trajectories(traj[: k + 1], ax=ax1, n_show=48, label=f"$x$ at step {k}",
                         title=f"{values['sampler']}, step {k}/{traj.shape[0] - 1}"
                         f", t = {float(data['times'][k]):.3f}")
        ax1.set_xlim(-self.lim, self.lim)
        ax1.set_ylim(-self.lim, self.lim)
        viz.scatter(self.target, ax=ax2, color="0.75", s=2, alpha=0.5, label="target")
        viz.scatter(traj[k], ax=ax2, s=4, color="C3", alpha=0.8, label=f"samples at step {k}",
                    lim=self.lim, title=f"mean log p = {data['mean_log_p']:.2f} (final)")
