"""Image diffusion models: U-Net recipes for 8x8 digits and the MNIST-5k subset, in the zoo.

    model = dl.zoo.load("mnist5k_cond")                      # a nets.Predictor (v-prediction, VP schedule)
    x = dl.image_models.generate(model, labels, omega=2.0, nfe=20)   # CFG + DPM-Solver++(2M)

Recipes come in a "cpu" size (trains on a 2-core laptop CPU in minutes; the shipped checkpoints)
and a "gpu" size (wider, longer; registered but not shipped: build it on a GPU with
`python -m dpm_lab.zoo build mnist5k_cond_gpu`).  On CUDA the loss runs under bfloat16 autocast.

Design choices: v-prediction (Salimans & Ho) on the linear-beta VP schedule, so every
prediction stays well conditioned at both ends (x0 = alpha x - sigma v); conditional recipes
drop the label with probability 0.1 (label 10 = null) for classifier-free guidance (§8.3).
"""
from __future__ import annotations

import contextlib

import torch

from . import images, losses, nets, samplers
from .grids import time_grid
from .guidance import CFG
from .schedules import get_schedule
from .zoo import Recipe, register

__all__ = ["generate", "IMAGE_RECIPES", "throughput"]

N_CLASSES = 10
_SIZES = {
    ("digits8", "cpu"): {"net": {"base": 32, "mults": [1, 2]}, "train": {"steps": 3000, "batch": 128, "lr": 2e-3}},
    ("mnist5k", "cpu"): {"net": {"base": 32, "mults": [1, 2, 2]}, "train": {"steps": 2500, "batch": 64, "lr": 2e-3}},
    ("mnist5k", "gpu"): {"net": {"base": 64, "mults": [1, 2, 2]}, "train": {"steps": 30000, "batch": 128, "lr": 1e-3}},
}


def _model(spec: dict) -> nets.Predictor:
    net = nets.UNet(1, spec["net"]["base"], tuple(spec["net"]["mults"]), n_classes=spec["n_classes"])
    return nets.Predictor(net, get_schedule(**spec["schedule"]), spec["kind"])


def _data(spec: dict):
    loader = {"digits8": images.load_digits8, "mnist5k": images.load_mnist5k}[spec["data"]]
    x, c = loader("train")
    return (x, c) if spec["n_classes"] else x


def _loss(spec: dict):
    cfg = spec["loss"]
    base = losses.DiffusionLoss(get_schedule(**spec["schedule"]), spec["kind"],
                                p_time=losses.TimeDist(**cfg["p_time"]), p_uncond=cfg["p_uncond"],
                                null_label=spec["n_classes"] or None)

    def loss(model, x0, c=None, *, generator=None):
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if x0.is_cuda else contextlib.nullcontext()
        with ctx:
            return base(model, x0, c, generator=generator).float()
    return loss


def _recipe(data: str, size: str, conditional: bool) -> Recipe:
    cfg = _SIZES[(data, size)]
    name = f"{data}_{'cond' if conditional else 'uncond'}" + ("" if size == "cpu" else f"_{size}")
    spec = {"data": data, "size": size, "schedule": {"name": "vp"}, "kind": "v", "seed": 0,
            "n_classes": N_CLASSES if conditional else 0, "net": cfg["net"],
            "loss": {"p_time": {"name": "uniform", "t_min": 1e-3, "t_max": 1.0},
                     "p_uncond": 0.1 if conditional else 0.0},
            "train": {**cfg["train"], "lr_schedule": "cosine", "warmup": 100, "ema": 0.999, "clip": 1.0}}
    what = "class-conditional (CFG label dropout 0.1)" if conditional else "unconditional"
    return register(Recipe(name, spec, _model, _data, _loss,
                           f"{data}, U-Net ({size} size), VP schedule, v-prediction, {what}", shipped=size == "cpu"))


IMAGE_RECIPES = [_recipe(d, s, cond) for (d, s) in _SIZES for cond in (False, True)]


@torch.no_grad()
def generate(model, labels=None, *, n: int | None = None, omega: float = 1.0, nfe: int = 20,
             method: str = "dpmpp_2m", grid: str = "lambda", generator: torch.Generator | None = None,
             batch: int = 500, lam_interval=None) -> torch.Tensor:
    """Sample images (N, 1, H, W) in [-1, 1] from an image Predictor.

    Args:
        model: a Predictor whose net is a UNet.  labels: (N,) classes for a conditional model (None:
            unconditional, then give n).  omega: CFG weight (book convention, 1 = conditional).
        nfe: network evaluations per sample (CFG counts one batched call per step).
        method: a sampler name (samplers.SOLVERS).  grid: a time-grid kind (grids.GRIDS).
        lam_interval: guide only where lambda_t lies in it (guidance.CFG); None guides everywhere.
    """
    side = 8 if model.net.levels == 2 else 28
    n_classes = model.net.embed.n_classes if hasattr(model.net.embed, "n_classes") else 0
    if labels is None:
        if n is None:
            raise ValueError("give labels (N,) for a conditional model or n for an unconditional one")
        labels = torch.zeros(n, dtype=torch.long) if n_classes else None
    elif not n_classes:
        raise ValueError("labels given, but this model is unconditional")
    N = len(labels) if labels is not None else n
    steps = samplers.steps_for_nfe(method, nfe)
    ts = time_grid(model.schedule, steps, grid)
    field = CFG(model, omega, n_classes, lam_interval=lam_interval) if labels is not None else model
    dev = next(model.parameters()).device
    out = []
    for start in range(0, N, batch):
        m = min(batch, N - start)
        x = model.schedule.sample_prior((m, 1, side, side), generator=generator).to(dev)
        c = labels[start:start + m].to(dev) if labels is not None else None
        out.append(samplers.solve(field, x, ts, method, c=c, generator=generator, denoise=True).clamp(-1, 1).cpu())
    return torch.cat(out)


def throughput(recipe_name: str, steps: int = 10, device=None) -> float:
    """Training throughput of a recipe in images per second on this machine: the recipe's own
    train.fit step (loss, AdamW, clipping, EMA), timed after 2 warm-up steps."""
    from .train import fit
    from .zoo import get

    recipe = get(recipe_name)
    batch = recipe.spec["train"]["batch"]
    records = list(fit(recipe.new_model(), recipe.loss(recipe.spec), recipe.data(recipe.spec), steps=steps + 2,
                       batch=batch, lr=1e-4, ema=0.999, seed=0, device=device or "cpu"))
    return steps * batch / (records[-1].elapsed - records[1].elapsed)
