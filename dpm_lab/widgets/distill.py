"""Chapter 10 explorers: progressive-distillation rounds and score distillation.

    PDRoundsExplorer       per data set and round: the student's samples beside the teacher's, its pointwise
                           map error |student(x_T) - teacher(x_T)| over the plane of starting points x_T, and
                           the error against NFE for every round
    ScoreDistillExplorer   a one-step generator during training (stored snapshots): its samples over the data
                           density with the modes it covers, and the real and fake scores as fields at a time t

Everything is computed when the explorer is made (a few hundred network calls), so a change of a control
only looks up and draws.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import metrics, samplers, viz
from ..gmm import GaussianMixture
from .base import Explorer, InvalidSelection

__all__ = ["PDRoundsExplorer", "ScoreDistillExplorer"]


def _rms(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(((x - y) ** 2).sum(1).mean().sqrt())


class PDRoundsExplorer(Explorer):
    """Progressive distillation round by round (§10.3): which map each student learned, and where it errs.

    Args:
        rounds: {name: recipes.distill.PDRounds}; teachers: {name: the teacher Model};
        noise: {name: noise(n, generator=...) -> x_T}; n: samples shown; n_grid: starting points per axis
        of the error map on [-lim, lim]^2.
    Controls: data (a name), nfe (64 = the teacher itself, then 32, 16, ..., 1: one round each).
    `update()` returns 'x_T', 'teacher', 'student', 'err_grid' (n_grid, n_grid), 'rms' {nfe: RMS map error}.
    """

    compute_keys = ("data", "nfe")
    clear_axes = False
    figsize = (11.5, 3.9)
    axes_grid = (1, 3)
    margins = {"left": 0.06, "right": 0.98, "bottom": 0.14, "top": 0.84, "wspace": 0.55}

    def __init__(self, rounds: dict, teachers: dict, noise: dict, *, n: int = 1000, n_grid: int = 41, lim: float = 3.0,
                 seed: int = 0, **initial: Any) -> None:
        if not rounds or set(rounds) != set(teachers) or set(rounds) != set(noise):
            raise ValueError("rounds, teachers and noise must be non-empty dicts with the same names")
        self.rounds, self.lim, self.n_grid = rounds, lim, n_grid
        self.nfes = [64] + list(next(iter(rounds.values())).steps)
        g = torch.Generator().manual_seed(seed)
        xs = np.linspace(-lim, lim, n_grid)
        X, Y = np.meshgrid(xs, xs)
        plane = torch.tensor(np.stack([X.ravel(), Y.ravel()], 1), dtype=torch.float32)
        self._runs = {}
        for name, r in rounds.items():
            x_T = noise[name](n, generator=g).float()
            start = torch.cat([x_T, plane])
            with torch.no_grad():
                ref = samplers.solve(teachers[name], start, r.grid(64), "ddim")
                outs = {64: ref, **{k: r.sample(start, k) for k in r.steps}}
            self._runs[name] = {"x_T": x_T, "ref": ref, "outs": outs, "n": n,
                                "rms": {k: _rms(v[:n], ref[:n]) for k, v in outs.items()}}
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        names = list(self.rounds)
        return {"data": W.Dropdown(options=names, value=names[0], description="teacher"),
                "nfe": W.SelectionSlider(options=self.nfes, value=self.nfes[3], description="NFE",
                                         continuous_update=False)}

    def compute(self, data: str, nfe: int) -> dict[str, Any]:
        run = self._runs[data]
        if nfe not in run["outs"]:
            raise InvalidSelection(f"no student with {nfe} steps; choose one of {self.nfes}")
        n, out, ref = run["n"], run["outs"][nfe], run["ref"]
        err = (out[n:] - ref[n:]).norm(dim=1).reshape(self.n_grid, self.n_grid)
        return {"data": data, "nfe": nfe, "x_T": run["x_T"], "teacher": ref[:n], "student": out[:n],
                "err_grid": err, "rms": run["rms"]}

    def _setup(self) -> None:
        ax0, ax1, ax2 = self.fig.axes
        nan = np.full((1, 2), np.nan)
        self._sc_t = self.animated(ax0.scatter(nan[:, 0], nan[:, 1], s=3, color="0.6", alpha=0.5,
                                               label="teacher, 64 DDIM steps"))
        self._sc_s = self.animated(ax0.scatter(nan[:, 0], nan[:, 1], s=3, color="C3", alpha=0.6, label="student"))
        ax0.set(xlim=(-2.5, 2.5), ylim=(-2.0, 2.0), xlabel="x\u2081", ylabel="x\u2082")
        self._leg = self.animated(ax0.legend(loc="upper right", fontsize=7, markerscale=3))
        ax0.set_title("samples from the same x_T", fontsize=9)
        self._im = self.animated(ax1.imshow(np.zeros((self.n_grid, self.n_grid)), origin="lower", cmap="magma",
                                            extent=(-self.lim, self.lim, -self.lim, self.lim), vmin=-3, vmax=0.5))
        self.fig.colorbar(self._im, ax=ax1, fraction=0.046, pad=0.02)
        ax1.set(xlabel="x_T,1", ylabel="x_T,2")
        ax1.set_title("log10 |student(x_T) - teacher(x_T)|", fontsize=9)
        self._curve, = ax2.loglog([1, 64], [1, 1], "o-", color="C0")
        self._mark, = ax2.loglog([1], [1], "o", ms=11, mfc="none", color="C3")
        self.animated(self._curve, self._mark)
        ax2.set(xlabel="NFE (student steps)", ylabel="RMS map error vs teacher", ylim=(1e-3, 3), xlim=(0.7, 45))
        ax2.set_title("error after each PD round", fontsize=9)
        ax2.grid(True, which="both", alpha=0.3)
        self._title = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_curve"):
            self._setup()
        self._sc_t.set_offsets(viz.to_numpy(data["teacher"]))
        self._sc_s.set_offsets(viz.to_numpy(data["student"]))
        self._leg.get_texts()[1].set_text(f"student, {data['nfe']} step(s)")
        self._im.set_data(np.log10(viz.to_numpy(data["err_grid"]) + 1e-4))
        nfes = sorted(k for k in data["rms"] if k != 64)          # the teacher itself has no error to plot
        self._curve.set_data(nfes, [data["rms"][k] for k in nfes])
        self._mark.set_data(*(([data["nfe"]], [data["rms"][data["nfe"]]]) if data["nfe"] != 64 else ([], [])))
        self._title.set_text(f"{data['data']}: PD student with {data['nfe']} step(s), RMS map error "
                             f"{data['rms'][data['nfe']]:.3f}")


class ScoreDistillExplorer(Explorer):
    """Score distillation during training (§10.2): the generator's samples, and the two scores it balances.

    Args:
        models: {name: recipes.distill.ScoreDistilled} (their stored snapshots); real: the teacher Model;
        mixture: the data as a GaussianMixture (for the density and mode coverage); points: the (G*G, 2)
        grid of the stored fake fields; times: the times of the stored fields.
    Controls: method (a name), snapshot (training step index), t (field time).
    `update()` returns 'x' (the snapshot's samples), 'step', 'real' and 'fake' (G*G, 2) fields (fake None for
    SDS), 'hit' (fraction of modes covered) and 'spread' (mean distance to the nearest mode centre).
    """

    compute_keys = ("method", "snapshot", "t")
    clear_axes = False
    figsize = (10.0, 4.4)
    axes_grid = (1, 2)
    margins = {"left": 0.06, "right": 0.98, "bottom": 0.11, "top": 0.85, "wspace": 0.2}

    def __init__(self, models: dict, real: Any, mixture: GaussianMixture, points: torch.Tensor,
                 times: tuple[float, ...], *, lim: float = 3.0, **initial: Any) -> None:
        if not models:
            raise ValueError("models must be a non-empty dict of ScoreDistilled models")
        self.models, self.real, self.mixture, self.points, self.times, self.lim = (models, real, mixture, points,
                                                                                     tuple(times), lim)
        self.n_snap = min(int(m.snap_steps.numel()) for m in models.values())
        self._real = {t: real.predict(points.double(), t, "score").float() for t in self.times}
        _, _, dense = viz.grid_points(lim, 80)
        self._dens = mixture.log_prob(dense.double()).exp().reshape(80, 80)
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        names = list(self.models)
        return {"method": W.Dropdown(options=names, value=names[0], description="method"),
                "snapshot": W.IntSlider(value=self.n_snap - 1, min=0, max=self.n_snap - 1, description="snapshot",
                                        continuous_update=False),
                "t": W.SelectionSlider(options=list(self.times), value=self.times[1], description="field t",
                                       continuous_update=False)}

    def compute(self, method: str, snapshot: int, t: float) -> dict[str, Any]:
        m = self.models[method]
        if not 0 <= snapshot < self.n_snap:
            raise InvalidSelection(f"snapshot must lie in 0..{self.n_snap - 1}")
        x = m.snap_x[snapshot]
        cov = metrics.mode_coverage(x, self.mixture)
        spread = float(torch.cdist(x.double(), self.mixture.means.double()).min(1).values.mean())
        fake = m.snap_fake[snapshot, self.times.index(t)] if m.fake is not None else None
        return {"method": method, "step": int(m.snap_steps[snapshot]), "x": x, "real": self._real[t], "fake": fake,
                "t": t, "hit": cov["hit"], "spread": spread}

    def _setup(self) -> None:
        ax0, ax1 = self.fig.axes
        ext = (-self.lim, self.lim, -self.lim, self.lim)
        ax0.imshow(viz.to_numpy(self._dens), origin="lower", extent=ext, cmap="Greys", alpha=0.6)
        nan = np.full((1, 2), np.nan)
        self._sc = self.animated(ax0.scatter(nan[:, 0], nan[:, 1], s=4, color="C3", alpha=0.6, label="generator samples"))
        ax0.set(xlim=(-self.lim, self.lim), ylim=(-self.lim, self.lim), xlabel="x\u2081", ylabel="x\u2082")
        ax0.set_aspect("equal")
        ax0.legend(loc="upper right", fontsize=7, markerscale=3)
        self._t0 = self.animated(ax0.set_title(" ", fontsize=9))
        p = viz.to_numpy(self.points)
        zero = np.zeros(len(p))
        kw = {"angles": "xy", "scale_units": "xy", "scale": 12.0, "width": 0.004}
        self._qr = self.animated(ax1.quiver(p[:, 0], p[:, 1], zero, zero, color="C0",
                                            label="real score s(x, t) (teacher)", **kw))
        self._qf = self.animated(ax1.quiver(p[:, 0], p[:, 1], zero, zero, color="C3", alpha=0.8,
                                            label="fake score (generator's)", **kw))
        ax1.set(xlim=(-self.lim, self.lim), ylim=(-self.lim, self.lim), xlabel="x\u2081")
        ax1.set_aspect("equal")
        ax1.legend(loc="upper right", fontsize=7)
        self._t1 = self.animated(ax1.set_title(" ", fontsize=9))
        self._title = self.animated(self.fig.suptitle(" ", fontsize=10))

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        if not hasattr(self, "_qr"):
            self._setup()
        self._sc.set_offsets(viz.to_numpy(data["x"]))
        self._t0.set_text(f"modes covered {data['hit']:.0%}, mean distance to a mode centre {data['spread']:.2f}")
        r = viz.to_numpy(data["real"])
        self._qr.set_UVC(r[:, 0], r[:, 1])
        if data["fake"] is not None:
            f = viz.to_numpy(data["fake"])
            self._qf.set_UVC(f[:, 0], f[:, 1])
            self._qf.set_visible(True)
            self._t1.set_text(f"scores at t = {data['t']}: generator steps go along real - fake")
        else:
            self._qf.set_visible(False)
            self._t1.set_text(f"score at t = {data['t']}; SDS has no fake score (its Dirac's is -\u03b5/\u03c3)")
        self._title.set_text(f"{data['method']}: training step {data['step']}")
