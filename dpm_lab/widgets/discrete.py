"""Chapter 12 explorers: forward corruption of discrete states, and masked-diffusion sampling with its exact law.

    CorruptionExplorer        masked or uniform corruption at time t: the exact marginal of a small chain beside a
                              Gillespie simulation, a few token sequences corrupted with the same random numbers at
                              every t (so the picture moves continuously), and the signal alpha_t
    ReverseSamplingExplorer   k-step masked-diffusion sampling (exact or learned denoiser, temperature, tokens
                              fixed for infilling): the sampler's exact law beside the data law, KL against the
                              number of steps, and sample sequences

Conventions of dl.discrete: t = 0 data, t = 1 noise; the mask is the token one past the vocabulary.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from matplotlib.colors import ListedColormap

from .. import discrete as D
from ..recipes.discrete import chain_law
from ..utils import rand
from .base import Explorer, InvalidSelection

__all__ = ["CorruptionExplorer", "ReverseSamplingExplorer", "INFILLS"]

_TOKEN_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
_MASK_COLOUR = "#c8c8c8"


def _token_cmap(V: int) -> ListedColormap:
    """Colours for tokens 0..V-1 and grey for the mask (V)."""
    return ListedColormap(_TOKEN_COLOURS[:V] + [_MASK_COLOUR])


def _draw_tokens(ax, x: np.ndarray, V: int, title: str, artists: dict | None = None) -> dict:
    """Sequences as rows of coloured cells, the token written in each (the mask as '?').  The first call makes
    the artists; later calls (with the dict it returned) update them in place, which is much faster."""
    if artists is None:
        im = ax.imshow(x, cmap=_token_cmap(V), vmin=-0.5, vmax=V + 0.5, aspect="auto", interpolation="nearest")
        texts = {(i, j): ax.text(j, i, "", ha="center", va="center", fontsize=8) for (i, j), _ in np.ndenumerate(x)}
        ax.set_xticks(range(x.shape[1]), [f"x{j + 1}" for j in range(x.shape[1])])
        ax.set_yticks([])
        artists = {"image": im, "texts": texts}
    artists["image"].set_data(x)
    for (i, j), v in np.ndenumerate(x):
        artists["texts"][i, j].set_text("?" if v == V else str(v))
        artists["texts"][i, j].set_color("black" if v == V else "white")
    ax.set_title(title, fontsize=10)
    return artists


class CorruptionExplorer(Explorer):
    """Forward corruption (§12): masked (absorbing) or uniform kernel, at time t.

    Left: the exact marginal p_t of a three-symbol chain (closed form; the masked kind has a fourth
    state, the mask) with the frequencies of `n_particles` Gillespie paths at t.  Middle: sequences of
    the chapter's law corrupted at t; each token keeps one uniform number for all t, so a token once
    hidden stays hidden as t grows.  Right: alpha_t, the probability that a token still shows its data.
    Controls: kind ("masked", "uniform"), t.  `update()` returns 'p_t', 'simulated', 'tokens', 'alpha'.
    """

    compute_keys = ("kind", "t")
    clear_axes = False                                # artists made once and updated in place (latency)
    figsize = (10.5, 3.4)
    axes_grid = (1, 3)
    margins = {"left": 0.06, "right": 0.98, "bottom": 0.16, "top": 0.86, "wspace": 0.32}
    times = np.round(np.linspace(0.0, 1.0, 51), 2)

    def __init__(self, law: D.MarkovLaw | None = None, *, p0=(0.6, 0.3, 0.1), n_particles: int = 4000,
                 n_sequences: int = 10, seed: int = 0, **initial: Any) -> None:
        self.law = chain_law() if law is None else law
        p0 = torch.as_tensor(p0, dtype=torch.float64)
        self.chains = {"masked": D.CTMC.masked(len(p0) + 1, schedule="linear", floor=1e-6),
                       "uniform": D.CTMC.uniform(len(p0), schedule="linear", floor=1e-6)}
        self.p0 = {"masked": torch.cat([p0, torch.zeros(1, dtype=torch.float64)]), "uniform": p0}
        g = torch.Generator().manual_seed(seed)
        self.paths = {kind: self._simulate(chain, self.p0[kind], n_particles, g) for kind, chain in self.chains.items()}
        self.x0 = self.law.sample(n_sequences, generator=g)
        self.u_hide = rand(self.x0.shape, generator=g, dtype=torch.float64)
        self.noise = (rand(self.x0.shape, generator=g) * self.law.V).long().clamp_max(self.law.V - 1)
        super().__init__(**initial)

    def _simulate(self, chain: D.CTMC, p0: torch.Tensor, n: int, g: torch.Generator) -> np.ndarray:
        """Frequencies of n Gillespie paths at every time of `times` (each leg continues the last), (T, K)."""
        x = torch.searchsorted(p0.cumsum(0), rand((n,), generator=g, dtype=torch.float64)).clamp_max(len(p0) - 1)
        out, s = [], 0.0
        for t in self.times:
            x = chain.simulate(x, float(t), s=s, generator=g)
            out.append(torch.bincount(x, minlength=chain.K).double().numpy() / n)
            s = float(t)
        return np.array(out)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"kind": W.Dropdown(options=["masked", "uniform"], value="masked", description="kernel"),
                "t": W.FloatSlider(value=0.4, min=0.0, max=1.0, step=0.02, description="t", continuous_update=False)}

    def compute(self, kind: str, t: float) -> dict[str, Any]:
        chain, t = self.chains[kind], float(t)
        k = int(np.argmin(np.abs(self.times - t)))
        alpha = chain.alpha(t)
        keep = self.u_hide < alpha                    # the same numbers at every t: monotone corruption
        tokens = torch.where(keep, self.x0, self.law.V if kind == "masked" else self.noise)
        return {"p_t": chain.marginal(self.p0[kind], t).numpy(), "simulated": self.paths[kind][k],
                "tokens": tokens.numpy(), "alpha": alpha,
                "alpha_curve": np.array([chain.alpha(float(s)) for s in self.times])}

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        ax_p, ax_x, ax_a = self.fig.axes
        kind, t = values["kind"], float(values["t"])
        K = len(data["p_t"])
        n_max = max(c.K for c in self.chains.values())
        art = getattr(self, "_art", None)
        if art is None:                               # first draw: the artists, for the larger of the two chains
            art = self._art = {
                "bars": ax_p.bar(range(n_max), np.zeros(n_max), color="#9ecae1", label="exact p_t"),
                "sim": ax_p.plot(range(n_max), np.zeros(n_max), "k_", ms=22, mew=2, label="Gillespie paths")[0],
                "curve": ax_a.plot(self.times, data["alpha_curve"], color="C2")[0],
                "dot": ax_a.plot([t], [data["alpha"]], "o", color="C2")[0], "tokens": None}
            ax_p.set_xticks(range(n_max))
            ax_p.set_ylim(0, 1)
            ax_p.set_xlabel("state")
            ax_p.set_ylabel("probability")
            ax_p.legend(fontsize=8, loc="upper right")
            ax_a.set_xlim(0, 1)
            ax_a.set_ylim(0, 1.02)
            ax_a.set_xlabel("t")
            ax_a.set_ylabel("alpha_t")
        labels = [str(i) for i in range(K)] if kind == "uniform" else [*map(str, range(K - 1)), "mask"]
        heights = np.zeros(n_max)
        heights[:K] = data["p_t"]
        for bar, h in zip(art["bars"], heights):
            bar.set_height(h)
        art["sim"].set_data(np.arange(K), data["simulated"])
        ax_p.set_xticklabels(labels + [""] * (n_max - K))
        ax_p.set_xlim(-0.6, K - 0.4)                  # the uniform chain has no mask: its spare bar stays out of view
        ax_p.set_title(f"{kind} chain: marginal at t = {t:.2f}", fontsize=10)
        art["tokens"] = _draw_tokens(ax_x, data["tokens"], self.law.V, "sequences at t ('?' = mask)" if kind == "masked"
                                     else "sequences at t (noised tokens redrawn)", art["tokens"])
        art["curve"].set_ydata(data["alpha_curve"])
        art["dot"].set_data([t], [data["alpha"]])
        ax_a.set_title(f"signal kept: alpha_t = {data['alpha']:.2f}", fontsize=10)


INFILLS = {"none": None, "x2 = 2": (-1, 2, -1, -1), "x1 = 0, x4 = 2": (0, -1, -1, 2)}
STEPS = (1, 2, 4, 8, 16, 32, 64)


class ReverseSamplingExplorer(Explorer):
    """Masked-diffusion sampling with k steps (§12), judged by its exact law.

    Left: the 12 most likely sequences of the target (the data law, or its conditional given the fixed
    tokens) beside the probability the sampler gives them.  Middle: KL(target || sampler law) against the
    number of steps, for the chosen denoiser, temperature and infill (the current steps marked).  Right:
    sequences drawn from the sampler's law.  Everything is exact (dl.discrete.sampler_law), no sampling noise.
    Controls: denoiser ("exact", "learned"), steps (1..64), temperature (0.5..2), infill (INFILLS).
    `update()` returns 'target', 'law', 'kl', 'kl_curve', 'samples'.
    """

    compute_keys = ("denoiser", "steps", "temperature", "infill")
    clear_axes = False                                # artists made once and updated in place (latency)
    figsize = (10.5, 3.5)
    axes_grid = (1, 3)
    margins = {"left": 0.07, "right": 0.98, "bottom": 0.2, "top": 0.86, "wspace": 0.35}

    def __init__(self, law: D.MarkovLaw | None = None, learned=None, *, n_samples: int = 10, seed: int = 0, **initial: Any) -> None:
        self.law = law = chain_law() if law is None else law
        self.denoisers = {"exact": D.exact_denoiser(law)}
        if learned is not None:
            self.denoisers["learned"] = learned
        self.seed, self.n_samples = seed, n_samples
        super().__init__(**initial)

    def _make_controls(self) -> dict[str, Any]:
        W = self._W
        return {"denoiser": W.Dropdown(options=list(self.denoisers), value="exact", description="denoiser"),
                "steps": W.SelectionSlider(options=list(STEPS), value=4, description="steps", continuous_update=False),
                "temperature": W.FloatSlider(value=1.0, min=0.5, max=2.0, step=0.05, description="temperature",
                                             continuous_update=False),
                "infill": W.Dropdown(options=list(INFILLS), value="none", description="fixed")}

    def _target(self, fixed) -> torch.Tensor:
        if fixed is None:
            return self.law.probs
        f = torch.tensor(fixed)
        ok = ((self.law.sequences == f) | (f < 0)).all(1)
        w = self.law.probs * ok
        return w / w.sum()

    def compute(self, denoiser: str, steps: int, temperature: float, infill: str) -> dict[str, Any]:
        if denoiser not in self.denoisers:
            raise InvalidSelection(f"no {denoiser} denoiser was given to this explorer")
        fixed = INFILLS[infill]
        den = D.tempered(self.denoisers[denoiser], float(temperature))
        target = self._target(fixed)
        laws = D.sampler_laws(den, self.law, STEPS, fixed=None if fixed is None else torch.tensor(fixed))
        q = laws[int(steps)]
        g = torch.Generator().manual_seed(self.seed)
        idx = torch.multinomial(q.float(), self.n_samples, replacement=True, generator=g)
        return {"target": target.numpy(), "law": q.numpy(), "kl": D.kl(target, q),
                "kl_curve": np.array([D.kl(target, laws[k]) for k in STEPS]),
                "samples": self.law.sequences[idx].numpy()}

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        ax_l, ax_k, ax_s = self.fig.axes
        top = np.argsort(-data["target"])[:12]
        pos = np.arange(len(top))
        names = ["".join(map(str, self.law.sequences[i].tolist())) for i in top]
        curve = np.maximum(data["kl_curve"], 1e-6)
        art = getattr(self, "_art", None)
        if art is None:                               # first draw: the artists; later draws move them
            art = self._art = {
                "target": ax_l.bar(pos - 0.2, np.zeros(len(pos)), 0.4, color="#9ecae1", label="target"),
                "law": ax_l.bar(pos + 0.2, np.zeros(len(pos)), 0.4, color="#fdae6b", label="sampler"),
                "curve": ax_k.loglog(STEPS, curve, "o-", color="C1")[0],
                "mark": ax_k.loglog([1], [1], "o", ms=11, mfc="none", mec="k")[0], "tokens": None}
            ax_l.set_xticks(pos, names, rotation=70, fontsize=7)
            ax_l.set_ylabel("probability")
            art["legend"] = ax_l.legend(fontsize=8)
            ax_l.set_title("most likely sequences", fontsize=10)
            ax_k.set_xlabel("steps")
            ax_k.set_ylabel("KL(target || sampler), nats")
            ax_k.grid(True, which="both", alpha=0.3)
        for bars, h in ((art["target"], data["target"][top]), (art["law"], data["law"][top])):
            for bar, v in zip(bars, h):
                bar.set_height(v)
        ax_l.set_xticklabels(names)
        ax_l.set_ylim(0, 1.1 * max(data["target"][top].max(), data["law"][top].max()))
        steps = f"{values['steps']} step" + ("s" if values["steps"] > 1 else "")
        art["legend"].get_texts()[1].set_text(f"sampler, {steps}")
        art["curve"].set_ydata(curve)
        art["mark"].set_data([values["steps"]], [max(data["kl"], 1e-6)])
        ax_k.set_ylim(curve.min() / 2, curve.max() * 2)
        ax_k.set_title(f"KL = {data['kl']:.4f} nats at {steps}", fontsize=10)
        art["tokens"] = _draw_tokens(ax_s, data["samples"], self.law.V, "strings drawn from the sampler's law",
                                     art["tokens"])
