"""Chapter 05 recipes: flow matching, rectified flow and reflow models, normalizing flows.

    model = dl.zoo.load("ring_rf2")                    # the second reflow round on the ring pair
    dl.recipes.flows.retrain("ring_rf1", progress=True)  # a recipe trained live (no file written)

Names (builder "flows/1"; the moons CFM model is a "toy/1" recipe):
    moons_cfm                 the chapter's CFM model on two moons (linear path, Gaussian noise at t = 1)
    ring_rf0, ring_rf1, ring_rf2   rectified flow between the rings of datasets.ring_pair (source radius 4 at
                              t = 1, target radius 1.1 at t = 0): round 0 on independent pairs, round k on the
                              coupling of round k-1's flow map (warm-started from its weights)
    ring_ot                   the same network trained on the exact OT coupling (the Ch. 7 reference)
    8g_moons_rf1, 8g_moons_rf2  reflow rounds on top of the toy recipe 8g_to_moons (eight Gaussians -> moons)
    moons_planar, moons_coupling  normalizing flows (32 planar layers; 8 affine couplings) trained by MLE
"""
from __future__ import annotations

import torch

from .. import datasets, nflows, ot, reflow, zoo
from ..train import fit
from ..zoo import Recipe, register
from .toy import _model, toy_recipe

__all__ = ["BUILDER", "FLOW_RECIPES", "RING_ROUNDS", "MOONS_ROUNDS", "retrain", "ring_source", "coupling_data"]

BUILDER = "flows/1"
_NET = {"dim": 2, "hidden": 128, "depth": 3, "n_classes": 0}
_TRAIN = {"batch": 256, "lr": 3e-3, "lr_schedule": "cosine", "ema": 0.999, "clip": 1.0}
N_PAIRS = 20000            # points in each round's coupling
RING_ROUNDS = ["ring_rf0", "ring_rf1", "ring_rf2"]
MOONS_ROUNDS = ["8g_to_moons", "8g_moons_rf1", "8g_moons_rf2"]


def ring_source(n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Source points of datasets.ring_pair (the radius-4 ring), (n, 2)."""
    return datasets.ring_pair(n, generator=generator)[0]


def _sources(name: str):
    if name == "ring":
        return ring_source
    return lambda n, *, generator=None: datasets.sample_2d(name, n, generator=generator)


def _targets(name: str):
    if name == "ring":
        return lambda n, *, generator=None: datasets.ring_pair(n, generator=generator)[1]
    return lambda n, *, generator=None: datasets.sample_2d(name, n, generator=generator)


def _independent(spec: dict):
    """data(n, generator) -> (x_target, x_source) drawn independently (round 0)."""
    src, tgt = _sources(spec["source"]), _targets(spec["target"])
    return lambda n, *, generator=None: (tgt(n, generator=generator), src(n, generator=generator))


def _loss(spec: dict):
    return reflow.paired_cfm()


def coupling_data(spec: dict, parent: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed pairs (x_target, x_source) a round trains on: the parent's flow map ('reflow') or exact OT ('ot')."""
    g = torch.Generator().manual_seed(int(spec["seed"]) + 1000)
    if spec["coupling"] == "ot":
        src, tgt = _sources(spec["source"]), _targets(spec["target"])
        blocks = [ot.ot_coupling(src(2000, generator=g), tgt(2000, generator=g)) for _ in range(N_PAIRS // 2000)]
        return torch.cat([b[1] for b in blocks]).float(), torch.cat([b[0] for b in blocks]).float()
    x_source = _sources(spec["source"])(N_PAIRS, generator=g).float()
    x_source, x_target = reflow.couple(parent, x_source, spec["couple_steps"])
    return x_target, x_source


def _trainer(model, recipe: Recipe, *, device, progress: bool, parent: torch.nn.Module | None = None) -> dict:
    """Round 0: fresh independent pairs every batch; a reflow round: the parent's coupling, warm-started."""
    spec = recipe.spec
    if spec["coupling"] == "independent":
        data = _independent(spec)
    else:
        if spec["coupling"] == "reflow":
            parent = parent if parent is not None else zoo.load(spec["parent"])
            model.load_state_dict(parent.state_dict())
        data = coupling_data(spec, parent)
    records = list(fit(model, _loss(spec), data, seed=int(spec["seed"]), device=device, progress=progress,
                       log_every=max(1, spec["train"]["steps"] // 20), **spec["train"]))
    return {"final_loss": round(records[-1].ema_loss, 5)}


def flow_recipe(name: str, source: str, target: str, coupling: str, *, parent: str | None = None, steps: int = 3000,
                lr: float = 3e-3, couple_steps: int = 64, seed: int = 0, description: str = "") -> Recipe:
    """Register a transport recipe source (t = 1) -> target (t = 0) on the rectified-flow path.

    coupling: 'independent' (round 0), 'reflow' (pairs from `parent`'s RK4 flow map with couple_steps steps,
    warm start from its weights, so a lower lr fine-tunes) or 'ot' (the exact OT coupling, blocks of 2000)."""
    spec = {"source": source, "target": target, "coupling": coupling, "parent": parent, "couple_steps": couple_steps,
            "seed": seed, "schedule": {"name": "flow"}, "kind": "velocity", "net": dict(_NET),
            "train": {**_TRAIN, "steps": steps, "lr": lr}}
    return register(Recipe(name, BUILDER, spec, _model, _independent, _loss, shape=(2,), description=description,
                           trainer=_trainer))


def _nf_model(spec: dict) -> nflows.Flow:
    if spec["flow"] == "planar":
        return nflows.planar_flow(spec["layers"], scale=spec["scale"], seed=spec["seed"])
    return nflows.coupling_flow(spec["layers"], hidden=spec["hidden"], scale=spec["scale"])


def _nf_data(spec: dict):
    return lambda n, *, generator=None: datasets.sample_2d(spec["data"], n, generator=generator).float()


def _nf_loss(spec: dict):
    return nflows.nll_loss


def nf_recipe(name: str, flow: str, layers: int, *, hidden: int = 64, steps: int = 3000, description: str = "") -> Recipe:
    """Register a normalizing flow on moons trained by maximum likelihood (train.fit on -log p)."""
    spec = {"data": "moons", "flow": flow, "layers": layers, "hidden": hidden, "scale": 1.5, "seed": 0,
            "train": {"steps": steps, "batch": 256, "lr": 3e-3 if flow == "coupling" else 1e-2,
                      "lr_schedule": "cosine", "ema": 0.99, "clip": 5.0}}
    return register(Recipe(name, "nflows/1", spec, _nf_model, _nf_data, _nf_loss, shape=(2,), description=description))


def retrain(name: str, *, progress: bool = True, parent: torch.nn.Module | None = None) -> torch.nn.Module:
    """Train recipe `name` live (for a notebook's RETRAIN flag) and return the model in eval mode; a reflow
    round uses `parent` (default: the zoo's checkpoint of its parent)."""
    recipe = zoo.get(name)
    model = recipe.new_model()
    if recipe.trainer is _trainer:
        _trainer(model, recipe, device="cpu", progress=progress, parent=parent)
    else:
        zoo._fit(model, recipe, device="cpu", progress=progress)
    return model.eval()


def _register_all() -> list[Recipe]:
    out = [toy_recipe("moons_cfm", "moons", "velocity", "flow", train={"steps": 2500},
                      description="chapter 05's CFM model: moons, linear path x_t = (1 - t) x0 + t eps, "
                                  "velocity eps - x0, 2500 steps")]
    out.append(flow_recipe("ring_rf0", "ring", "ring", "independent", steps=5000,
                           description="rectified flow ring(4) at t = 1 -> ring(1.1) at t = 0, independent pairs"))
    for k in (1, 2):
        out.append(flow_recipe(f"ring_rf{k}", "ring", "ring", "reflow", parent=f"ring_rf{k - 1}", steps=3000, lr=1e-3,
                               description=f"reflow round {k} on the ring pair (coupling of ring_rf{k - 1})"))
    out.append(flow_recipe("ring_ot", "ring", "ring", "ot",
                           description="the ring pair on the exact OT coupling (blocks of 2000), Ch. 7 reference"))
    for k in (1, 2):
        out.append(flow_recipe(f"8g_moons_rf{k}", "eight_gaussians", "moons", "reflow", parent=MOONS_ROUNDS[k - 1],
                               steps=3000, lr=1e-3, description=f"reflow round {k} on eight Gaussians -> moons"))
    out.append(nf_recipe("moons_planar", "planar", 32, steps=2000,
                         description="32 planar layers on moons, MLE (a weak flow: the chapter's contrast)"))
    out.append(nf_recipe("moons_coupling", "coupling", 8, steps=3000,
                         description="8 affine couplings (hidden 64) on moons, MLE"))
    return out


FLOW_RECIPES = _register_all()
