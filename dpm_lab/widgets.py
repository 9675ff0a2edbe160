"""Interactive explorers (ipywidgets + matplotlib) with cached, testable updates.

An Explorer separates three things:

    controls            ipywidgets, one per named value (sliders, dropdowns)
    update(**values)    the DATA to draw, a dict, cached on the values that matter
    draw(data, values)  matplotlib drawing into ONE figure that is reused on every change

so `update` runs without a browser (tests call it directly and compare with gmm/schedules),
moving a slider back to a position already seen costs nothing, and a notebook shows the
static picture with `explorer.figure()` even where widgets do not render.

    ex = widgets.ScheduleExplorer()
    ex                       # in a notebook: the controls and the live figure
    ex.update(t=0.5)["alpha_t"]["vp"]   # the numbers behind the picture
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import viz
from .gmm import GaussianMixture
from .param import Model
from .schedules import Schedule, get_schedule

__all__ = ["Explorer", "ScheduleExplorer", "FieldExplorer", "TrajectoryExplorer", "digit_image",
]

FIELD_KINDS = ("x0", "eps", "score", "velocity")


def _key_value(v):
    if isinstance(v, float):
        return round(v, 9)
    if isinstance(v, (list, tuple)):
        return tuple(_key_value(u) for u in v)
    return v


class Explorer:
    """Base class: subclasses define `_make_controls`, `compute(**values)` and `draw(data, values)`.

    Attributes:
        controls: OrderedDict name -> ipywidget.
        compute_keys: the control names the data depends on (others only change the drawing);
            None means all of them.
        cache_size: how many computed states are kept (least recently used are dropped).
    """

    compute_keys: tuple[str, ...] | None = None
    cache_size = 64
    figsize = (9.0, 3.2)

    def __init__(self, **initial):
        import ipywidgets as W

        self._W = W
        self.controls: OrderedDict[str, Any] = OrderedDict(self._make_controls())
        for name, value in initial.items():
            self.set_value(name, value)
        self._cache: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.fig = None
        self._out = None
        for w in self.controls.values():
            w.observe(self._on_change, names="value")

    # -- subclass hooks ----------------------------------------------------------------------
    def _make_controls(self) -> dict:
        raise NotImplementedError

    def compute(self, **values) -> dict:
        raise NotImplementedError

    def draw(self, data: dict, values: dict) -> None:
        raise NotImplementedError

    def _make_figure(self):
        return plt.subplots(1, 3, figsize=self.figsize)[0]

    # -- values and the cache ----------------------------------------------------------------
    @property
    def values(self) -> dict:
        """The current value of every control."""
        return {k: w.value for k, w in self.controls.items()}

    def set_value(self, name: str, value) -> None:
        """Set one control (as a learner would by moving it); unknown names raise ValueError."""
        if name not in self.controls:
            raise ValueError(f"unknown control {name!r}; controls: {', '.join(self.controls)}")
        self.controls[name].value = value

    def update(self, **values) -> dict:
        """The data for the controls' current values overridden by `values` (cached).

        Passing values also moves the controls (silently: the live figure is redrawn on the next
        control change or `figure()` call, so update() never writes output and stays testable).
        """
        for k, v in values.items():
            if k not in self.controls:
                raise ValueError(f"unknown control {k!r}; controls: {', '.join(self.controls)}")
        if values:
            self._silent = True
            try:
                for k, v in values.items():
                    self.set_value(k, v)
            finally:
                self._silent = False
        vals = self.values
        keys = self.compute_keys if self.compute_keys is not None else tuple(vals)
        key = tuple((k, _key_value(vals[k])) for k in keys)
        if key in self._cache:
            self.hits += 1
            self._cache.move_to_end(key)
        else:
            self.misses += 1
            self._cache[key] = self.compute(**{k: vals[k] for k in keys})
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return self._cache[key]

    # -- drawing -------------------------------------------------------------------------------
    def figure(self):
        """Draw the current state into the explorer's figure and return it (a static picture)."""
        if self.fig is None:
            self.fig = self._make_figure()
            plt.close(self.fig)  # we display it ourselves; keep pyplot from showing it twice
        for ax in self.fig.axes:
            ax.cla()
        self.draw(self.update(), self.values)
        self.fig.tight_layout()
        return self.fig

    def _redraw(self, data=None):
        from IPython.display import display

        fig = self.figure()
        with self._out:
            self._out.clear_output(wait=True)
            display(fig)

    _silent = False

    def _on_change(self, change):
        if self._silent or self._out is None:
            return
        self._redraw()

    def widget(self):
        """The controls above an output area holding the live figure (an ipywidgets.VBox)."""
        W = self._W
        if self._out is None:
            self._out = W.Output()
            self._redraw()
        return W.VBox([W.HBox(list(self.controls.values()), layout=W.Layout(flex_flow="row wrap")), self._out])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget())


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------

def digit_image(index: int = 0) -> torch.Tensor:
    """One 8x8 digit (H, W) scaled to [-1, 1], float64: image `index` of dl.images.load_digits8("all")."""
    from .images import load_digits8

    images, _ = load_digits8("all", dtype=torch.float64)
    return images[index, 0]


# ------------------------------------------------------------------------------------------
# ScheduleExplorer
# ------------------------------------------------------------------------------------------

class ScheduleExplorer(Explorer):
    """alpha_t, sigma_t, SNR and lambda_t for chosen schedules, and forward noising of a 2D set
    and of a digit at the slider's t (§2.2.1, §4.4).

    Controls: t (FloatSlider), schedules (SelectMultiple; the first one noises the data),
    curve ('alpha_sigma', 'snr' or 'lam').  Pass `schedules={label: Schedule}` to compare your own
    (e.g. a DiscreteSchedule); `data` (B, 2) and `image` (H, W) replace the defaults.  The same eps is reused at every t, so each point
    moves continuously as t changes.
    """

    compute_keys = ("t", "schedules")
    figsize = (10.0, 3.0)
    NAMES = ("vp", "cosine", "flow", "ve", "edm", "trig")

    def __init__(self, data: torch.Tensor | None = None, image: torch.Tensor | None = None, *,
                 schedules: dict[str, Schedule] | None = None, seed: int = 0, n: int = 500, **initial):
        g = torch.Generator().manual_seed(seed)
        if data is None:
            from .datasets import sample_2d

            data = sample_2d("eight_gaussians", n, generator=g, dtype=torch.float64)
        self.x0 = torch.as_tensor(data, dtype=torch.float64)
        self.eps = torch.randn(self.x0.shape, generator=g, dtype=torch.float64)
        self.image = digit_image(0) if image is None else torch.as_tensor(image, dtype=torch.float64).squeeze()
        self.image_eps = torch.randn(self.image.shape, generator=g, dtype=torch.float64)
        self._schedules = dict(schedules) if schedules else {name: get_schedule(name) for name in self.NAMES}
        super().__init__(**initial)

    def _make_controls(self):
        W = self._W
        names = list(self._schedules)
        return {"t": W.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.01, description="t",
                                   continuous_update=False),
                "schedules": W.SelectMultiple(options=names, value=tuple(names[:3]),
                                              description="schedules", rows=4),
                "curve": W.Dropdown(options=["alpha_sigma", "snr", "lam"], value="alpha_sigma",
                                    description="curves")}

    def compute(self, t, schedules):
        if not schedules:
            raise ValueError("choose at least one schedule")
        t = float(t)
        out = {"t": t, "schedules": tuple(schedules), "alpha_t": {}, "sigma_t": {}, "snr_t": {}, "lam_t": {}}
        for name in schedules:
            sch = self._schedules[name]
            a, s = float(sch.alpha(t)), float(sch.sigma(t))
            out["alpha_t"][name], out["sigma_t"][name] = a, s
            with np.errstate(divide="ignore"):
                lam = float(sch.lam(t))
            out["lam_t"][name], out["snr_t"][name] = lam, float(np.exp(2 * lam))
        first = self._schedules[schedules[0]]
        a, s = first.alpha(t), first.sigma(t)
        out["x_t"] = a * self.x0 + s * self.eps            # x_t = alpha_t x0 + sigma_t eps
        out["image_t"] = a * self.image + s * self.image_eps
        return out

    def draw(self, data, values):
        ax1, ax2, ax3 = self.fig.axes[:3]
        viz.schedule_curves({k: self._schedules[k] for k in data["schedules"]}, which=values["curve"], ax=ax1,
                            t_range=(0.0, 1.0) if values["curve"] == "alpha_sigma" else (0.005, 0.995))
        ax1.axvline(data["t"], color="k", lw=0.8)
        ax1.legend(fontsize=6)
        name = data["schedules"][0]
        lim = max(3.5, 1.2 * float(self.x0.abs().max()) * max(1.0, data["alpha_t"][name]) + 2 * data["sigma_t"][name])
        viz.scatter(data["x_t"], ax=ax2, s=2, lim=min(lim, 60.0),
                    title=f"{name}: a={data['alpha_t'][name]:.2f}, s={data['sigma_t'][name]:.2f}")
        ax3.imshow(viz.to_numpy(data["image_t"]), cmap="gray", vmin=-2, vmax=2)
        ax3.set_title(f"digit at t = {data['t']:.2f}", fontsize=10)
        ax3.axis("off")


# ------------------------------------------------------------------------------------------
# FieldExplorer
# ------------------------------------------------------------------------------------------

class FieldExplorer(Explorer):
    """The exact fields x0*, eps*, score* and velocity* of a mixture side by side (and a learned
    model's, when given) over the noised density p_t (§6.3.1).

    Args:
        mixture: a GaussianMixture / PointSet (default: eight Gaussians).
        model: optional learned Model; its four predictions are drawn in a second row (its own
            schedule is then used for both rows and the schedule dropdown is fixed).
        lim, n: box half-width and arrows per side.
    """

    compute_keys = ("t", "schedule")
    NAMES = ("vp", "cosine", "flow", "ve", "edm")

    def __init__(self, mixture: GaussianMixture | None = None, model: Model | None = None, *,
                 lim: float = 3.0, n: int = 13, n_density: int = 60, **initial):
        if mixture is None:
            from .datasets import eight_gaussians_mixture

            mixture = eight_gaussians_mixture()
        self.mixture, self.model, self.lim, self.n, self.n_density = mixture, model, lim, n, n_density
        self.figsize = (11.0, 3.0 if model is None else 5.8)
        self._schedules = {name: get_schedule(name) for name in self.NAMES}
        if model is not None:
            self._schedules = {model.schedule.name: model.schedule}
        super().__init__(**initial)

    def _make_controls(self):
        W = self._W
        names = list(self._schedules)
        return {"t": W.FloatSlider(value=0.3, min=0.02, max=1.0, step=0.02, description="t",
                                   continuous_update=False),
                "schedule": W.Dropdown(options=names, value=names[0], description="schedule",
                                       disabled=self.model is not None),
                "normalize": W.Checkbox(value=True, description="unit arrows")}

    def _make_figure(self):
        rows = 1 if self.model is None else 2
        return plt.subplots(rows, 4, figsize=self.figsize)[0]

    def schedule(self, name: str) -> Schedule:
        return self._schedules[name]

    def compute(self, t, schedule):
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

    def draw(self, data, values):
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


# ------------------------------------------------------------------------------------------
# TrajectoryExplorer
# ------------------------------------------------------------------------------------------

class TrajectoryExplorer(Explorer):
    """Sampler trajectories from the prior to the target, with a time scrubber (§2.2.6, §9).

    Controls: sampler ('ddim', 'ddpm', 'euler'), nfe, eta (DDIM stochasticity; 1 = DDPM),
    seed and step (the scrubber: which step of the trajectory to show; drawing only).

    Args:
        mixture: the target (its exact model drives the sampler unless `model` is given).
        model: optional learned Model with its schedule.
        schedule: used with the exact model (default VPLinear).
        n_samples: number of trajectories.
    """

    compute_keys = ("sampler", "nfe", "eta", "seed")
    figsize = (9.0, 3.4)

    def __init__(self, mixture: GaussianMixture | None = None, model: Model | None = None, *,
                 schedule: Schedule | None = None, n_samples: int = 256, lim: float = 3.5, **initial):
        if mixture is None:
            from .datasets import eight_gaussians_mixture

            mixture = eight_gaussians_mixture()
        self.mixture = mixture
        self.schedule = model.schedule if model is not None else (schedule or get_schedule("vp"))
        self.model = model if model is not None else mixture.model(self.schedule)
        self.n_samples, self.lim = n_samples, lim
        self.target = mixture.sample(2000, generator=torch.Generator().manual_seed(123), dtype=torch.float64)
        super().__init__(**initial)

    METHODS = ("ddim", "ddpm", "euler", "heun", "dpm_solver_2", "dpmpp_2m")   # names in dl.samplers.SOLVERS

    def _make_controls(self):
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
        from .grids import time_grid

        return time_grid(self.schedule, int(nfe), "uniform")

    def compute(self, sampler, nfe, eta, seed):
        """Run `sampler` (a dl.samplers method) with at most `nfe` network evaluations; eta is used by ddim."""
        from . import samplers

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

    def draw(self, data, values):
        ax1, ax2 = self.fig.axes[:2]
        traj = data["trajectory"]
        k = min(int(values["step"]), traj.shape[0] - 1)
        viz.scatter(self.target, ax=ax1, color="0.75", s=2, alpha=0.5)
        viz.trajectories(traj[: k + 1], ax=ax1, n_show=48, label=f"$x$ at step {k}", title=f"{values['sampler']}, step {k}/{traj.shape[0] - 1}"
                         f", t = {float(data['times'][k]):.3f}")
        ax1.set_xlim(-self.lim, self.lim)
        ax1.set_ylim(-self.lim, self.lim)
        viz.scatter(self.target, ax=ax2, color="0.75", s=2, alpha=0.5, label="target")
        viz.scatter(traj[k], ax=ax2, s=4, color="C3", alpha=0.8, label=f"samples at step {k}",
                    lim=self.lim, title=f"mean log p = {data['mean_log_p']:.2f} (final)")

    def _make_figure(self):
        return plt.subplots(1, 2, figsize=self.figsize)[0]
