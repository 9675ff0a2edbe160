"""Chapter 03 explorers: Langevin dynamics and annealed Langevin on the two-mode mixture (§3.1.4, §3.4).

    LangevinExplorer            step size, steps, temperature, separation: paths and where the chains end
    AnnealedLangevinExplorer    NCSN's annealed Langevin: levels L, steps per level K, step ratio delta

Both run `dl.dynamics` on the exact score of `ebm.two_mode_mixture(a)` (closed form, written out here for
speed: a few tensor operations a step) and, with `model=` (the zoo's `ncsn_2modes`), on the learned score in
a second row.  The learned score is tabulated once per noise level on a grid and read by bilinear
interpolation (`ScoreTable`), so a change of a control costs no network call.  The data behind each
picture: `update()["exact"]` and `update()["learned"]`, each with the final points "x", the fraction
"upper" of chains in the heavier mode (u = (x1 + x2)/sqrt 2 > 0) and, for Langevin, the paths "paths".
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import dynamics
from ..ebm import geometric_sigmas, two_mode_mixture
from ..gmm import GaussianMixture
from ..schedules import EDM
from .base import Explorer, InvalidSelection

__all__ = ["LangevinExplorer", "AnnealedLangevinExplorer", "ScoreTable", "isotropic_score"]

_SQ2 = math.sqrt(2.0)


def isotropic_score(mixture: GaussianMixture, sigma: float = 0.0):
    """The exact score of an isotropic mixture noised by sigma, x -> grad log p_sigma(x), as a fast closed
    form (the same field as mixture.score at sigma; a few tensor operations, for many Langevin steps)."""
    if not mixture.isotropic:
        raise ValueError("isotropic_score needs a mixture of isotropic components (stds=...)")
    mu = mixture.means.cpu().numpy()
    var = (mixture.covs[:, 0, 0] + sigma ** 2).cpu().numpy()               # (K,): isotropic, one variance each
    logw = (torch.log(mixture.weights).cpu().numpy() - 0.5 * mixture.dim * np.log(var))

    def score(x: torch.Tensor) -> torch.Tensor:               # in NumPy: tiny arrays, a few microseconds an op
        d = x.detach().cpu().double().numpy()[:, None, :] - mu   # (B, K, D)
        q = logw - 0.5 * (d * d).sum(-1) / var
        r = np.exp(q - q.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        s = -((r / var)[..., None] * d).sum(1)
        return torch.from_numpy(s).to(device=x.device, dtype=x.dtype)

    return score


class ScoreTable:
    """A score field tabulated on an n x n grid over [-box, box]^2 and read by bilinear interpolation
    (points outside take the value at the nearest edge).  Args: score_fn (N, 2) -> (N, 2); box; n."""

    def __init__(self, score_fn, box: float, n: int = 65):
        if not box > 0 or n < 2:
            raise ValueError(f"ScoreTable needs box > 0 and n >= 2, got box={box}, n={n}")
        self.box, self.n = float(box), int(n)
        xs = torch.linspace(-box, box, n)
        X, Y = torch.meshgrid(xs, xs, indexing="xy")
        with torch.no_grad():
            s = score_fn(torch.stack([X.flatten(), Y.flatten()], 1).float()).float()
        self.table = s.T.reshape(1, 2, n, n)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        g = (x.float() / self.box).clamp(-1, 1)[None, None]      # (1, 1, B, 2) in grid_sample's (x, y) order
        out = torch.nn.functional.grid_sample(self.table, g, align_corners=True)
        return out[0, :, 0].T.to(x.dtype)


def _u(x: torch.Tensor) -> np.ndarray:
    """The coordinate along the line joining the two modes."""
    return ((x[:, 0] + x[:, 1]) / _SQ2).detach().cpu().double().numpy()


def _target_u(a: float, T: float, u: np.ndarray, weights=(0.2, 0.8)) -> tuple[np.ndarray, float]:
    """The u-marginal of p^(1/T) (normalised on the grid u) and its weight on u > 0; p factorises in (u, v)."""
    m = a * _SQ2
    p = weights[0] * np.exp(-0.5 * (u + m) ** 2) + weights[1] * np.exp(-0.5 * (u - m) ** 2)
    q = p ** (1.0 / T)
    du = u[1] - u[0]
    q = q / (q.sum() * du)
    return q, float(q[u > 0].sum() * du)


class _TwoModes(Explorer):
    """Shared parts: the mixture for a separation, the figure (rows exact/learned, a plane and a histogram)."""

    clear_axes = False
    figsize = (9.5, 3.4)
    n_chains = 256
    has_temperature = False      # the target drawn is p, or p^(1/T) where a temperature control exists
    plane_title = "paths (blue) and final points (red)"
    U = np.linspace(-14, 14, 281)

    def __init__(self, model=None, **initial: Any) -> None:
        self.model = model
        if model is not None:
            self.figsize = (9.5, 6.2)
        self.axes_grid = (1 if model is None else 2, 2)
        self.margins = {"left": 0.07, "right": 0.98, "bottom": 0.14 if model is None else 0.08,
                        "top": 0.84 if model is None else 0.9, "wspace": 0.25, "hspace": 0.45}
        super().__init__(**initial)

    def _rows(self) -> list[str]:
        return ["exact"] + (["learned"] if self.model is not None else [])

    def _setup(self, lim: float = 12.0) -> None:
        axes = np.array(self.fig.axes).reshape(-1, 2)
        self.art: dict[str, dict[str, Any]] = {}
        for r, row in enumerate(self._rows()):
            ax, hx = axes[r]
            art = {"lines": [ax.plot([], [], lw=0.6, color="C0", alpha=0.6)[0] for _ in range(12)],
                   "points": ax.scatter(np.zeros(self.n_chains), np.zeros(self.n_chains), s=7, color="C3", alpha=0.8,
                                        zorder=4, label="final points"),
                   "modes": ax.scatter([], [], marker="x", s=60, color="k", zorder=3),
                   "bars": hx.stairs(np.zeros(56), np.linspace(-14, 14, 57), fill=True, color="C0", alpha=0.6,
                                     label="chains"),
                   "target": hx.plot([], [], color="k", lw=1.5, label="target")[0],
                   "note": ax.text(0.03, 0.95, "", transform=ax.transAxes, va="top", fontsize=8,
                                   bbox={"boxstyle": "round", "fc": "white", "ec": "0.8", "alpha": 0.9})}
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="$x_1$", ylabel="$x_2$")
            ax.set_aspect("equal", adjustable="box")
            ax.set_title(f"{row} score: {self.plane_title}", fontsize=9)
            hx.set(xlim=(-14, 14), ylim=(0, 0.45), xlabel="$u=(x_1+x_2)/\\sqrt{2}$", ylabel="density")
            hx.set_title(f"{row}: where the chains end, along the modes' axis", fontsize=9)
            hx.legend(fontsize=8, loc="upper left")
            self.art[row] = art
            self.animated(*art["lines"], art["points"], art["modes"], art["bars"], art["target"], art["note"])
        self._suptitle = self.animated(self.fig.suptitle(" ", fontsize=10))

    def _draw_row(self, row: str, res: dict, a: float, T: float, paths: np.ndarray | None) -> None:
        art = self.art[row]
        x = res["x"]
        art["points"].set_offsets(x.numpy())
        art["modes"].set_offsets(np.array([[-a, -a], [a, a]]))
        for i, line in enumerate(art["lines"]):
            if paths is not None:
                line.set_data(paths[:, i, 0], paths[:, i, 1])
            else:
                line.set_data([], [])
        counts, _ = np.histogram(_u(x), bins=56, range=(-14, 14), density=True)
        q, w_up = _target_u(a, T, self.U)
        top = max(0.45, 1.1 * float(q.max()))          # a cold target (T < 1) is taller: keep its peak in view
        art["bars"].set_data(np.minimum(counts, top))
        art["target"].set_data(self.U, q)
        art["target"].axes.set_ylim(0, top)
        target = "target p^(1/T)" if self.has_temperature else "target p"
        art["note"].set_text(f"heavier mode: {res['upper']:.2f} of chains\n{target}: {w_up:.2f}")


def _upper(x: torch.Tensor) -> float:
    return float(((x[:, 0] + x[:, 1]) > 0).double().mean())


class LangevinExplorer(_TwoModes):
    """Unadjusted Langevin dynamics x <- x + eta s(x) + sqrt(2 eta T) z (§3.1.4) on the two-mode mixture
    0.2 N((-a,-a), I) + 0.8 N((a,a), I), started uniformly on [-8, 8]^2.

    Controls: log10 step size eta, steps (draw-only: a prefix of one long run), temperature T, separation a.
    With a well-separated pair the chains stay in the mode whose basin they start in: the heavier mode gets
    about half of them instead of 0.8 (the mode-weight failure, §3.4.1).  With `model` (the zoo's ncsn_2modes,
    trained at a = 5) its score at its smallest level sigma_1 = 0.1 runs in the second row (only for a = 5).
    """

    has_temperature = True

    compute_keys = ("log_eta", "temperature", "a")
    max_steps = 200

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"log_eta": W.FloatSlider(value=-1.0, min=-3.0, max=0.0, step=0.25, description="log10 eta",
                                         continuous_update=False, style={"description_width": "initial"}),
                "steps": W.IntSlider(value=200, min=0, max=self.max_steps, step=20, description="steps",
                                     continuous_update=False),
                "temperature": W.FloatSlider(value=1.0, min=0.25, max=3.0, step=0.25, description="T",
                                             continuous_update=False),
                "a": W.FloatSlider(value=5.0, min=1.0, max=6.0, step=0.5, description="separation a",
                                   continuous_update=False, style={"description_width": "initial"})}

    def _learned_score(self):
        if not hasattr(self, "_table"):
            sched = self.model.schedule
            t = 0.1 / float(sched.sigma_max)
            self._table = ScoreTable(lambda x: self.model.predict(x, t, "score"), 12.0, 97)
        return self._table

    def _run(self, score, eta: float, T: float) -> dict:
        """One dl.dynamics.langevin run of max_steps; the score calls see every state, so they record the paths
        (12 chains) and a snapshot of all chains every `steps.step` steps."""
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(self.n_chains, 2, generator=g, dtype=torch.float64) * 16 - 8)
        every, keep, snaps = self.controls["steps"].step, [], {}

        def recording(y):
            if len(keep) % every == 0:
                snaps[len(keep)] = y
            keep.append(y[:12])
            return score(y)

        x = dynamics.langevin(recording, x, self.max_steps, eta, generator=g, temperature=T)
        keep.append(x[:12])
        snaps[self.max_steps] = x
        if not torch.isfinite(x).all():
            raise InvalidSelection(f"the chains diverged: eta = {eta:g} is too large for this score; lower the "
                                   "step size")
        return {"paths": torch.stack(keep).numpy(), "snaps": snaps}

    def compute(self, log_eta: float, temperature: float, a: float) -> dict:
        eta = 10.0 ** log_eta
        out = {"eta": eta, "T": temperature, "a": a,
               "exact": self._run(isotropic_score(two_mode_mixture(a)), eta, temperature)}
        if self.model is not None:
            out["learned"] = self._run(self._learned_score(), eta, temperature) if abs(a - 5.0) < 1e-9 else None
        return out

    def draw(self, data: dict, values: dict) -> None:
        if not hasattr(self, "art"):
            self._setup()
        n = values["steps"]
        for row in self._rows():
            run = data[row]
            art = self.art[row]
            if run is None:
                art["points"].set_offsets(np.zeros((0, 2)))
                for line in art["lines"]:
                    line.set_data([], [])
                art["note"].set_text("the learned NCSN was trained at a = 5:\nset the separation to 5")
                art["target"].set_data([], [])
                art["bars"].set_data(np.zeros(56))
                continue
            x = run["snaps"][n]
            self._draw_row(row, {"x": x, "upper": _upper(x)}, data["a"], data["T"], run["paths"][: n + 1])
        self._suptitle.set_text(f"Langevin, eta = {data['eta']:.3g}, {n} steps, T = {data['T']:g}, "
                                f"modes at \u00b1({data['a']:g}, {data['a']:g}), weights 0.2 / 0.8")

    def update(self, **values: Any) -> Any:
        data = super().update(**values)
        if data is None:
            return None
        n = self.values["steps"]
        res = {}
        for row in self._rows():
            run = data[row]
            res[row] = None if run is None else {"x": run["snaps"][n], "upper": _upper(run["snaps"][n]),
                                                "paths": run["paths"][: n + 1]}
        return {**res, "eta": data["eta"], "T": data["T"], "a": data["a"], "steps": n}


class _TabledModel:
    """A FieldModel for dl.dynamics.annealed_langevin whose score at level t is a ScoreTable (cached per t)."""

    def __init__(self, score_at, schedule):
        self.schedule, self._score_at, self._tables = schedule, score_at, {}

    def predict(self, x, t, kind="score", c=None):
        if kind != "score":
            raise ValueError("this tabulated model gives the score only")
        key = round(float(t), 12)
        if key not in self._tables:
            self._tables[key] = self._score_at(key)
        return self._tables[key](x)


class AnnealedLangevinExplorer(_TwoModes):
    """Annealed Langevin dynamics of NCSN (§3.4.3) on 0.2 N((-5,-5), I) + 0.8 N((5,5), I): L geometric levels
    from sigma_L = 20 down to sigma_1 = 0.1 (L = 1: sigma_1 alone, and the chains start from N(0, sigma_1^2 I),
    where K steps of the smallest step barely move them), K steps per level with
    eta_l = delta sigma_l^2 / sigma_1^2, chains started from N(0, sigma_L^2 I) (dl.dynamics.annealed_langevin).

    Controls: L, K, log10 of delta / sigma_1^2.  With enough levels the heavier mode gets its 0.8.
    With `model` (the zoo's ncsn_2modes) the learned noise-conditional score runs in the second row.
    """

    compute_keys = ("L", "K", "log_ratio")
    plane_title = "final points (red), modes (x)"
    sigma_min, sigma_max, a = 0.1, 20.0, 5.0

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"L": W.IntSlider(value=10, min=1, max=10, description="levels L", continuous_update=False),
                "K": W.IntSlider(value=30, min=1, max=30, description="steps K", continuous_update=False),
                "log_ratio": W.FloatSlider(value=-1.0, min=-2.5, max=0.0, step=0.25,
                                           description="log10 \u03b4/\u03c3\u2081\u00b2", continuous_update=False,
                                           style={"description_width": "initial"})}

    def sigmas(self, L: int) -> torch.Tensor:
        """The ladder sigma_1 < ... < sigma_L (L = 1: sigma_1 only)."""
        if L == 1:
            return torch.tensor([self.sigma_min], dtype=torch.float64)
        return geometric_sigmas(self.sigma_min, self.sigma_max, L)

    def _models(self):
        if not hasattr(self, "_exact"):
            sched = EDM(self.sigma_max)
            mix = two_mode_mixture(self.a)
            self._exact = _TabledModel(lambda t: isotropic_score(mix, t * self.sigma_max), sched)
            if self.model is not None:
                m = self.model
                self._learned = _TabledModel(
                    lambda t: ScoreTable(lambda x: m.predict(x, t, "score"), 8.0 + 3.0 * t * self.sigma_max, 49),
                    m.schedule)
        return [("exact", self._exact)] + ([("learned", self._learned)] if self.model is not None else [])

    def compute(self, L: int, K: int, log_ratio: float) -> dict:
        sig = self.sigmas(L)
        times = (sig / self.sigma_max).flip(0).tolist()
        delta = 10.0 ** log_ratio * self.sigma_min ** 2
        out = {"L": L, "K": K, "delta": delta, "sigmas": sig}
        for row, model in self._models():
            g = torch.Generator().manual_seed(0)
            x0 = float(sig[-1]) * torch.randn(self.n_chains, 2, generator=g, dtype=torch.float64)
            if L == 1:                       # one level: plain Langevin on p_{sigma_1} with eta = delta
                x = dynamics.langevin(lambda y, m=model, t=times[0]: m.predict(y, t, "score"), x0, K, delta,
                                      generator=g)
            else:
                x = dynamics.annealed_langevin(model, x0, times, n_steps=K, delta=delta, generator=g)
            if not torch.isfinite(x).all():
                raise InvalidSelection("the chains diverged: lower delta")
            out[row] = {"x": x, "upper": _upper(x)}
        return out

    def draw(self, data: dict, values: dict) -> None:
        if not hasattr(self, "art"):
            self._setup()
        for row in self._rows():
            self._draw_row(row, data[row], self.a, 1.0, None)
        self._suptitle.set_text(f"annealed Langevin: L = {data['L']} levels (\u03c3 from "
                                f"{float(data['sigmas'][-1]):.3g} to {self.sigma_min:g}), K = {data['K']} steps each, "
                                f"\u03b4 = {data['delta']:.2g}  (target weight of the heavier mode 0.8)")
