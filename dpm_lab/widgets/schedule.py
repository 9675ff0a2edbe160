"""ScheduleExplorer: a schedule's alpha_t, sigma_t, SNR and lambda_t, and forward noising of 2D data
and of a digit at the slider's t (§2.2.1, §4.4)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import viz
from ..datasets import sample_2d
from ..images import load_digits8
from ..schedules import Schedule, get_schedule
from ..utils import randn
from .base import Explorer, InvalidSelection

__all__ = ["ScheduleExplorer", "digit_image"]


def digit_image(index: int = 0) -> torch.Tensor:
    """One 8x8 digit (H, W) scaled to [-1, 1], float64: image `index` of dl.images.load_digits8("all")."""
    images, _ = load_digits8("all", dtype=torch.float64)
    return images[index, 0]


class ScheduleExplorer(Explorer):
    """alpha_t, sigma_t, SNR and lambda_t for chosen schedules, and forward noising of a 2D set
    and of a digit at the slider's t (§2.2.1, §4.4).

    Controls: t (FloatSlider), schedules (SelectMultiple; the first one noises the data),
    curve ('alpha_sigma', 'snr' or 'lam').  Pass `schedules={label: Schedule}` to compare your own
    (e.g. a DiscreteSchedule); `data` (B, 2) and `image` (H, W) replace the defaults.  The same eps
    is reused at every t, so each point moves continuously as t changes.

        ex = dl.widgets.ScheduleExplorer()
        ex                                   # in a notebook: the controls and the live figure
        ex.update(t=0.5)["alpha_t"]["vp"]    # the numbers behind the picture
    """

    compute_keys = ("t", "schedules")
    figsize = (10.0, 3.0)
    NAMES = ("vp", "cosine", "flow", "ve", "edm", "trig")

    def __init__(self, data: torch.Tensor | None = None, image: torch.Tensor | None = None, *,
                 schedules: dict[str, Schedule] | None = None, seed: int = 0, n: int = 500, **initial: Any) -> None:
        g = torch.Generator().manual_seed(seed)
        if data is None:
            data = sample_2d("eight_gaussians", n, generator=g, dtype=torch.float64)
        self.x0 = torch.as_tensor(data, dtype=torch.float64)
        self.eps = randn(self.x0.shape, generator=g, dtype=torch.float64, device=self.x0.device)
        self.image = digit_image(0) if image is None else torch.as_tensor(image, dtype=torch.float64).squeeze()
        self.image_eps = randn(self.image.shape, generator=g, dtype=torch.float64, device=self.image.device)
        self._schedules = dict(schedules) if schedules else {name: get_schedule(name) for name in self.NAMES}
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        names = list(self._schedules)
        return {"t": W.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.01, description="t",
                                   continuous_update=False),
                "schedules": W.SelectMultiple(options=names, value=tuple(names[:3]),
                                              description="schedules", rows=4),
                "curve": W.Dropdown(options=["alpha_sigma", "snr", "lam"], value="alpha_sigma",
                                    description="curves")}

    def compute(self, t: float, schedules: tuple[str, ...]) -> dict[str, Any]:
        """alpha_t, sigma_t, lambda_t and SNR of each chosen schedule, and x_t, image_t under the first."""
        if not schedules:
            raise InvalidSelection("No schedule chosen: select at least one in the list (ctrl/cmd-click for several).")
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

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
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
