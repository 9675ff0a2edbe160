"""Chapter 11 explorers: a learned flow map against the exact one, and gamma-sampling.

    dl.widgets.FlowMapExplorer()          # method, s, t, u, NFE: G(., s, t) over the oracle Psi_{s->t}
    dl.widgets.GammaSamplingExplorer()    # gamma and steps: samples and W2 against the floor
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import datasets, flowmaps, metrics, viz
from ..schedules import RectifiedFlow
from .base import Explorer, InvalidSelection

__all__ = ["FlowMapExplorer", "GammaSamplingExplorer", "default_students"]

TIMES = [round(1.0 - 0.05 * k, 2) for k in range(21)]          # the explorers' time grid, 1.0 ... 0.0


def default_students() -> dict[str, flowmaps.FlowMap]:
    """The zoo's chapter-11 students on eight Gaussians (CD, CT, CTM, MeanFlow)."""
    from .. import zoo
    return {label: zoo.load(f"fm_8g_{key}") for label, key in
            (("CM (CD)", "cd"), ("CM (CT)", "ct"), ("CTM", "ctm"), ("MeanFlow", "mf"))}


class FlowMapExplorer(Explorer):
    """A learned G(., s, t) over the exact flow map Psi_{s->t} of the eight-Gaussian mixture (§11.1, §11.6).

    Points x_s are the exact PF-ODE images of fixed prior draws (so x_s ~ p_s and Psi_{s->t}(x_s) is a
    lookup in one precomputed trajectory).  Left: x_s, the oracle's Psi_{s->t}(x_s) and the student's
    G applied in NFE equal jumps from s to t.  Right: the semigroup test through u: G(G(x, s, u), u, t)
    against G(x, s, t).  Controls: method, s, t, u, nfe.  A consistency model maps only to t = 0.
    `update()` returns 'x_s', 'oracle', 'learned', 'two_jump', 'err' (mean ||G - Psi||), 'violation'.
    """

    compute_keys = ("method", "s", "t", "u", "nfe")
    clear_axes = False
    figsize = (10.0, 4.6)
    axes_grid = (1, 2)
    margins = {"left": 0.06, "right": 0.99, "bottom": 0.09, "top": 0.84, "wspace": 0.15}

    def __init__(self, students: dict[str, Any] | None = None, *, n: int = 200, seed: int = 0, **initial: Any):
        self.students = dict(students if students is not None else default_students())
        self.mixture, self.schedule = datasets.eight_gaussians_mixture(), RectifiedFlow()
        x1 = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        traj = self.mixture.flow(x1, TIMES, self.schedule)        # (21, n, 2): x_s for every s on the grid
        self._traj = {t: traj[i].float() for i, t in enumerate(TIMES)}
        initial = {"method": "CTM", "s": 0.8, "t": 0.0, "u": 0.4, "nfe": 1, **initial}
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        sl = dict(min=0.0, max=1.0, step=0.05, continuous_update=False, readout_format=".2f")
        return {"method": W.Dropdown(options=list(self.students), description="student"),
                "s": W.FloatSlider(value=0.8, description="s (from)", **{**sl, "min": 0.05}),
                "t": W.FloatSlider(value=0.0, description="t (to)", **sl),
                "u": W.FloatSlider(value=0.4, description="u (via)", **sl),
                "nfe": W.IntSlider(value=1, min=1, max=8, description="NFE", continuous_update=False)}

    def sync_controls(self, values: dict[str, Any]) -> None:
        """The ranges follow each other (the widget standard): t stays below s, and u between t and s."""
        c = self.controls
        s = round(float(values["s"]), 2)
        c["t"].max = max(0.0, round(s - 0.05, 2))
        values["t"] = c["t"].value = min(round(float(values["t"]), 2), c["t"].max)
        u, lo, hi = c["u"], values["t"], s
        if lo > u.max:                                  # keep min <= max at every moment
            u.max = hi
            u.min = lo
        else:
            u.min = lo
            u.max = hi
        values["u"] = u.value = min(max(round(float(values["u"]), 2), lo), hi)

    def compute(self, method: str, s: float, t: float, u: float, nfe: int) -> dict[str, Any]:
        s, t, u = round(s, 2), round(t, 2), round(u, 2)
        if not s > t:
            raise InvalidSelection(f"a flow map jumps from s to t < s (toward data); got s = {s}, t = {t}: "
                                   "lower t or raise s")
        if not s >= u >= t:
            raise InvalidSelection(f"the semigroup test needs t <= u <= s; got u = {u}: move u between t and s")
        net = self.students[method]
        if net.param == "cm" and t > 0:
            raise InvalidSelection("a consistency model maps only to t = 0 (it learns Psi_{s->0}); set t = 0 or "
                                   "pick CTM / MeanFlow")
        x_s, oracle = self._traj[s], self._traj[t]
        grid = np.linspace(s, t, int(nfe) + 1)
        gamma = 1.0 if net.param == "cm" else 0.0
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            learned = flowmaps.gamma_sample(net, x_s, grid, net.schedule, gamma, g)
            if net.param == "cm":
                two = flowmaps.gamma_sample(net, x_s, [s, u, t] if s > u > t else [s, t], net.schedule, 1.0, g)
                one = net(x_s, s, 0.0)
            else:
                two = net(net(x_s, s, u), u, t)
                one = net(x_s, s, t)
        return {"x_s": x_s, "oracle": oracle, "learned": learned, "two_jump": two, "one_jump": one,
                "err": float((learned - oracle).norm(dim=-1).mean()),
                "violation": float((two - one).norm(dim=-1).mean())}

    def _setup(self) -> None:
        left, right = self.fig.axes
        empty = np.zeros((0, 2))
        self._xs = self.animated(left.scatter(empty[:, 0], empty[:, 1], s=4, color="0.75", label="x_s"))
        self._or = self.animated(left.scatter(empty[:, 0], empty[:, 1], s=6, color="k", label="oracle \u03a8(s\u2192t)"))
        self._le = self.animated(left.scatter(empty[:, 0], empty[:, 1], s=6, color="C3", alpha=0.7, label="learned"))
        self._one = self.animated(right.scatter(empty[:, 0], empty[:, 1], s=6, color="C0", label="G(x, s, t)"))
        self._two = self.animated(right.scatter(empty[:, 0], empty[:, 1], s=6, color="C1", alpha=0.7,
                                                label="G(G(x, s, u), u, t)"))
        for ax in (left, right):
            ax.set_xlim(-3.5, 3.5)
            ax.set_ylim(-3.5, 3.5)
            ax.set_aspect("equal", adjustable="box")
            ax.set_xlabel("x\u2081", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(loc="upper right", fontsize=7, framealpha=0.85, markerscale=2)
        left.set_ylabel("x\u2082", fontsize=8)
        self._titles = [self.animated(ax.set_title(" ", fontsize=9)) for ax in (left, right)]
        self._sup = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_xs"):
            self._setup()
        for artist, key in ((self._xs, "x_s"), (self._or, "oracle"), (self._le, "learned"), (self._one, "one_jump"),
                            (self._two, "two_jump")):
            artist.set_offsets(viz.to_numpy(data[key]))
        cm = self.students[values["method"]].param == "cm"
        if cm and values["nfe"] > 1:       # re-noising draws fresh noise: a sample no longer pairs with its Psi
            self._titles[0].set_text(f"CM, NFE {values['nfe']}: re-noised, so points no longer pair with \u03a8; "
                                     "compare the clouds")
        else:
            self._titles[0].set_text(f"mean |G - \u03a8| = {data['err']:.3f} (learned: NFE {values['nfe']})")
        if cm and values["t"] < values["u"] < values["s"]:
            self._titles[1].set_text(f"CM via u re-noises (not a semigroup test): {data['violation']:.3f}")
        else:
            self._titles[1].set_text(f"semigroup violation {data['violation']:.3f}")
        self._sup.set_text(f"{values['method']}: s = {values['s']:.2f} \u2192 t = {values['t']:.2f} "
                           f"(via u = {values['u']:.2f}), eight Gaussians")


class GammaSamplingExplorer(Explorer):
    """gamma-sampling of a flow-map student (§11.4.4): gamma = 1 is CM multistep (jump to data, re-noise),
    gamma = 0 deterministic jumps.  Samples over the target and W2 / floor (n points, floor averaged over
    6 pairs).  Controls: method, gamma, steps.  `update()` returns 'samples', 'w2', 'floor'."""

    compute_keys = ("method", "gamma", "steps")
    clear_axes = False
    figsize = (5.6, 5.0)
    axes_grid = (1, 1)
    margins = {"left": 0.12, "right": 0.97, "bottom": 0.1, "top": 0.88}

    def __init__(self, students: dict[str, Any] | None = None, *, n: int = 200, seed: int = 0, **initial: Any):
        self.students = dict(students if students is not None else default_students())
        self.n, self.schedule = n, RectifiedFlow()
        g = torch.Generator().manual_seed(seed)
        sampler = lambda m, generator=None: datasets.sample_2d("eight_gaussians", m, generator=generator).float()  # noqa: E731
        self._target = sampler(n, generator=g)
        self.floor = metrics.floor(metrics.w2_exact, sampler, n, repeats=6, generator=g)
        self._x1 = torch.randn(n, 2, generator=g)
        initial = {"method": "CTM", "gamma": 0.0, "steps": 2, **initial}
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"method": W.Dropdown(options=list(self.students), description="student"),
                "gamma": W.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.1, description="\u03b3",
                                       continuous_update=False),
                "steps": W.IntSlider(value=2, min=1, max=8, description="steps", continuous_update=False)}

    def compute(self, method: str, gamma: float, steps: int) -> dict[str, Any]:
        net = self.students[method]
        if net.param == "cm" and gamma < 1:
            raise InvalidSelection("a consistency model can only jump to t = 0: it samples with \u03b3 = 1")
        grid = np.linspace(1.0, 0.0, int(steps) + 1)
        with torch.no_grad():
            x = flowmaps.gamma_sample(net, self._x1, grid, net.schedule, float(gamma), torch.Generator().manual_seed(1))
        w2 = metrics.w2_exact(x, self._target)
        return {"samples": x, "w2": w2, "floor": self.floor}

    def _setup(self) -> None:
        ax = self.fig.axes[0]
        t = viz.to_numpy(self._target)
        ax.scatter(t[:, 0], t[:, 1], s=5, color="0.7", label="target")
        self._pts = self.animated(ax.scatter(t[:, 0], t[:, 1], s=5, color="C3", label="samples"))
        ax.set_xlim(-3.2, 3.2)
        ax.set_ylim(-3.2, 3.2)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("x\u2081", fontsize=8)
        ax.set_ylabel("x\u2082", fontsize=8)
        ax.legend(loc="upper right", fontsize=7, markerscale=2)
        self._title = self.animated(ax.set_title(" ", fontsize=9))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_pts"):
            self._setup()
        self._pts.set_offsets(viz.to_numpy(data["samples"]))
        self._title.set_text(f"{values['method']}, \u03b3 = {values['gamma']:.1f}, {values['steps']} steps: "
                             f"W2 = {data['w2'] / data['floor']:.2f} x floor (n = {self.n})"
                             + ("\n(one step ends at t = 0: \u03b3 acts only between steps)" if values["steps"] == 1 else ""))
