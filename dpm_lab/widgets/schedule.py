"""ScheduleExplorer: a schedule's alpha_t, sigma_t, SNR and lambda_t, and forward noising of 2D data
and of a digit at the slider's t (§2.2.1, §4.4)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib.lines import Line2D

from .. import viz
from ..datasets import sample_2d
from ..images import load_digits8
from ..schedules import Schedule, get_schedule
from ..utils import randn
from .base import Explorer, InvalidSelection

__all__ = ["ScheduleExplorer", "digit_image"]

CURVES = {"alpha_sigma": r"$\alpha_t$ (solid), $\sigma_t$ (dashed)",
          "snr": r"SNR $=\alpha_t^2/\sigma_t^2$",
          "lam": r"$\lambda_t=\log(\alpha_t/\sigma_t)$"}
ZOOMS = (4.0, 6.0, 10.0, 15.0, 25.0, 40.0, 60.0, 120.0)      # half-widths of the x_t panel (steps, so the frame rarely moves)


def digit_image(index: int = 0) -> torch.Tensor:
    """One 8x8 digit (H, W) scaled to [-1, 1], float64: image `index` of dl.images.load_digits8("all")."""
    images, _ = load_digits8("all", dtype=torch.float64)
    return images[index, 0]


class ScheduleExplorer(Explorer):
    """alpha_t, sigma_t, SNR and lambda_t for chosen schedules, and forward noising of a 2D set
    and of a digit at the slider's t (§2.2.1, §4.4).

    Controls: t (FloatSlider), schedules (SelectMultiple; the first one chosen noises the data),
    curve ('alpha_sigma', 'snr' or 'lam').  Pass `schedules={label: Schedule}` to compare your own
    (e.g. a DiscreteSchedule); `data` (B, 2) and `image` (H, W) replace the defaults.  The same eps
    is reused at every t, so each point moves continuously as t changes.  Choosing no schedule
    shows a message instead of the picture.

        ex = dl.widgets.ScheduleExplorer()
        ex                                   # in a notebook: the controls and the live figure
        ex.update(t=0.5)["alpha_t"]["vp"]    # the numbers behind the picture

    The drawn curves are `ex.curves[name][curve]` (t, y) on `ex.curve_times(curve)`.
    """

    compute_keys = ("t", "schedules")
    figsize = (11.0, 3.4)
    clear_axes = False
    margins = {"left": 0.065, "right": 0.985, "bottom": 0.16, "top": 0.87, "wspace": 0.32}
    NAMES = ("vp", "cosine", "flow", "ve", "edm", "trig")
    N_CURVE = 201

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
        self.curves = {name: self._curves(sch) for name, sch in self._schedules.items()}
        self._x0_np, self._eps_np = viz.to_numpy(self.x0), viz.to_numpy(self.eps)
        self._x0_max = float(np.abs(self._x0_np).max()) if self._x0_np.size else 0.0
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        names = list(self._schedules)
        return {"t": W.FloatSlider(value=0.3, min=0.0, max=1.0, step=0.01, description="t",
                                   continuous_update=False),
                "schedules": W.SelectMultiple(options=names, value=tuple(names[:3]),
                                              description="schedules", rows=min(len(names), 6)),
                "curve": W.Dropdown(options=[("alpha_t, sigma_t", "alpha_sigma"), ("SNR", "snr"),
                                             ("lambda_t", "lam")], value="alpha_sigma", description="curves")}

    @staticmethod
    def curve_times(curve: str) -> np.ndarray:
        """The times the `curve` is drawn at: [0, 1] for alpha/sigma, [0.005, 0.995] for SNR and
        lambda (which are infinite at an end for most schedules)."""
        lo, hi = (0.0, 1.0) if curve == "alpha_sigma" else (0.005, 0.995)
        return np.linspace(lo, hi, ScheduleExplorer.N_CURVE)

    def _curves(self, sch: Schedule) -> dict[str, Any]:
        t = torch.from_numpy(self.curve_times("alpha_sigma"))
        tt = torch.from_numpy(self.curve_times("snr"))
        with np.errstate(divide="ignore"):
            lam = viz.to_numpy(sch.lam(tt))
        return {"alpha": viz.to_numpy(sch.alpha(t)), "sigma": viz.to_numpy(sch.sigma(t)),
                "snr": np.exp(2 * lam), "lam": lam}

    def compute(self, t: float, schedules: tuple[str, ...]) -> dict[str, Any]:
        """alpha_t, sigma_t, lambda_t and SNR of each chosen schedule, and x_t, image_t under the first."""
        if not schedules:
            raise InvalidSelection("No schedule chosen: select at least one in the list "
                                   "(ctrl/cmd-click or shift-click to choose several).")
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

    # -- drawing: artists made once, updated in place ---------------------------------------------
    def _setup(self) -> None:
        ax0, ax1, ax2 = self.fig.axes[:3]
        self._lines = {}
        for k, name in enumerate(self._schedules):
            c = f"C{k % 10}"
            self._lines[name] = (self.animated(ax0.plot([], [], color=c, lw=1.6)[0]),
                                 self.animated(ax0.plot([], [], "--", color=c, lw=1.4)[0]))
        self._tline = self.animated(ax0.axvline(0.0, color="k", lw=0.8))
        self._dots = self.animated(ax0.scatter([], [], s=22, zorder=5, edgecolors="k", linewidths=0.5))
        ax0.set_xlabel("t  (0 = data, 1 = noise)")
        ax0.yaxis.set_label_coords(-0.17, 0.5)   # fixed: left of the widest tick labels of any curve
        ax0.set_xlim(0.0, 1.0)
        self._ranges = {}                        # y-range of each curve over ALL the schedules: a fixed frame
        for curve in ("alpha", "sigma", "snr", "lam"):
            ys = np.concatenate([c[curve][np.isfinite(c[curve])] for c in self.curves.values()])
            self._ranges[curve] = (float(ys.min()), float(ys.max()))
        ax1.scatter(self._x0_np[:, 0], self._x0_np[:, 1], s=1.5, color="0.8", label="$x_0$")
        self._points = self.animated(ax1.scatter([], [], s=2.5, color="C0"))
        ax1.set_aspect("equal", adjustable="box")
        ax1.set_xlabel("$x_1$", labelpad=1)
        ax1.set_ylabel("$x_2$", labelpad=1)
        self._title1 = self.animated(ax1.set_title(" ", fontsize=10, y=1.0))
        self._im = self.animated(ax2.imshow(viz.to_numpy(self.image), cmap="gray", vmin=-2, vmax=2))
        ax2.axis("off")
        self._title2 = self.animated(ax2.set_title(" ", fontsize=10, y=1.0))
        self._legend_key = None

    def _frame(self, curve: str, chosen: tuple[str, ...]) -> None:
        """The curve axes' scale and limits: fixed per curve kind (over all the schedules, so that
        choosing schedules does not move the frame); alpha/sigma on a symlog scale only while a
        chosen schedule's sigma_t goes far above 1 (VE, EDM)."""
        ax0 = self.fig.axes[0]
        if curve == "alpha_sigma":
            smax = max(float(np.nanmax(self.curves[n]["sigma"])) for n in chosen)
            if smax > 1.5:
                ax0.set_yscale("symlog", linthresh=1.0, linscale=1.5)
                ax0.set_ylim(0.0, self._ranges["sigma"][1] * 1.3)
            else:
                ax0.set_yscale("linear")
                ax0.set_ylim(-0.03, 1.05)
            ax0.set_ylabel("coefficient")
        elif curve == "snr":
            lo, hi = self._ranges["snr"]
            ax0.set_yscale("log")
            ax0.set_ylim(lo / 3, hi * 3)
            ax0.set_ylabel(CURVES[curve])
        else:
            lo, hi = self._ranges["lam"]
            ax0.set_yscale("linear")
            pad = 0.05 * (hi - lo + 1e-9)
            ax0.set_ylim(lo - pad, hi + pad)
            ax0.set_ylabel(CURVES[curve])
        ax0.set_title({"alpha_sigma": r"signal $\alpha_t$ and noise $\sigma_t$", "snr": "signal-to-noise ratio",
                       "lam": r"half log-SNR $\lambda_t$"}[curve], fontsize=10, y=1.0)

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_lines"):
            self._setup()
        ax0, ax1, _ = self.fig.axes[:3]
        curve, chosen, t = values["curve"], data["schedules"], data["t"]
        tc = self.curve_times(curve)
        for name, (la, ls) in self._lines.items():
            on = name in chosen
            c = self.curves[name]
            la.set_visible(on)
            ls.set_visible(on and curve == "alpha_sigma")
            if curve == "alpha_sigma":
                la.set_data(tc, c["alpha"])
                ls.set_data(tc, c["sigma"])
            else:
                la.set_data(tc, c[curve])
        if (curve, chosen) != self._legend_key:
            self._frame(curve, chosen)
            handles = [Line2D([], [], color=self._lines[n][0].get_color(), lw=2, label=n) for n in chosen]
            if curve == "alpha_sigma":
                handles += [Line2D([], [], color="0.3", lw=1.5, label=r"$\alpha_t$"),
                            Line2D([], [], color="0.3", lw=1.5, ls="--", label=r"$\sigma_t$")]
            legend = ax0.legend(handles=handles, fontsize=8, framealpha=0.85, handlelength=1.6,
                                loc="center right" if curve == "alpha_sigma" else "upper right")
            self.animated(legend)
            self._legend_key = (curve, chosen)
        # the values at t: the vertical line and a dot on each drawn curve
        self._tline.set_xdata([t, t])
        offs, cols = [], []
        for name in chosen:
            color = self._lines[name][0].get_color()
            if curve == "alpha_sigma":
                pts = [data["alpha_t"][name], data["sigma_t"][name]]
            else:
                pts = [data["snr_t"][name] if curve == "snr" else data["lam_t"][name]]
            inside = tc[0] <= t <= tc[-1]
            for y in pts:
                if inside and np.isfinite(y):
                    offs.append((t, y))
                    cols.append(color)
        self._dots.set_offsets(np.array(offs).reshape(-1, 2))
        self._dots.set_facecolors(cols if cols else "none")
        # forward noising under the first chosen schedule
        name = chosen[0]
        a, s = data["alpha_t"][name], data["sigma_t"][name]
        need = self._x0_max * abs(a) + 2.0 * s
        lim = next((z for z in ZOOMS if z >= need), ZOOMS[-1])
        ax1.set_xlim(-lim, lim)
        ax1.set_ylim(-lim, lim)
        self._points.set_offsets(viz.to_numpy(data["x_t"]))
        self._title1.set_text(f"xₜ under {name}: αₜ = {a:.3f}, σₜ = {s:.3f}")
        self._im.set_data(viz.to_numpy(data["image_t"]))
        self._title2.set_text(f"digit xₜ at t = {t:.2f} ({name})")
