"""Image diffusion recipes: U-Nets for the 8x8 digits and MNIST-5k, and `generate` to sample them.

    model = dl.zoo.load("mnist5k_cond")                           # a nets.Predictor (v-prediction, VP)
    x = dl.recipes.images.generate(model, labels, omega=2.0, nfe=20)   # CFG + DPM-Solver++(2M)

Recipes come in a "cpu" size (trains on a 2-core laptop CPU in minutes; the shipped checkpoints)
and a "gpu" size (wider, longer; registered but not shipped: build it on a GPU with
`python -m dpm_lab.zoo build mnist5k_cond_gpu`).  On CUDA the loss runs under bfloat16 autocast.

Design choices: v-prediction (Salimans & Ho) on the linear-beta VP schedule, so every
prediction stays well conditioned at both ends (x0 = alpha x - sigma v); conditional recipes
drop the label with probability 0.1 (label 10 = null) for classifier-free guidance (§8.3).
Builder version "unet/1": bump it when _model, _data or _loss change what a spec means.
"""
from __future__ import annotations

import contextlib

import torch

from .. import images, losses, nets, samplers, zoo
from ..grids import time_grid
from ..guidance import CFG
from ..schedules import get_schedule
from ..zoo import Recipe, register

__all__ = ["BUILDER", "N_CLASSES", "SHAPES", "IMAGE_RECIPES", "generate"]

BUILDER = "unet/1"
N_CLASSES = 10
SHAPES = {"digits8": (1, 8, 8), "mnist5k": (1, 28, 28)}
_LOADERS = {"digits8": images.load_digits8, "mnist5k": images.load_mnist5k}
_SIZES = {
    ("digits8", "cpu"): {"net": {"base": 32, "mults": [1, 2]}, "train": {"steps": 3000, "batch": 128, "lr": 2e-3}},
    ("mnist5k", "cpu"): {"net": {"base": 32, "mults": [1, 2, 2]}, "train": {"steps": 2500, "batch": 64, "lr": 2e-3}},
    ("mnist5k", "gpu"): {"net": {"base": 64, "mults": [1, 2, 2]}, "train": {"steps": 30000, "batch": 128, "lr": 1e-3}},
}


def _model(spec: dict) -> nets.Predictor:
    """A U-Net Predictor (1 channel, spec['net'] widths) predicting spec['kind'] under spec['schedule']."""
    net = nets.UNet(1, spec["net"]["base"], tuple(spec["net"]["mults"]), n_classes=spec["n_classes"])
    return nets.Predictor(net, get_schedule(**spec["schedule"]), spec["kind"])


def _data(spec: dict):
    """The training split of spec['data']: images (N, 1, H, W), with labels (N,) if conditional."""
    x, c = _LOADERS[spec["data"]]("train")
    return (x, c) if spec["n_classes"] else x


def _loss(spec: dict):
    """losses.DiffusionLoss from spec['loss'] (label dropout to null label n_classes); bf16 autocast on CUDA."""
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
    n_classes = N_CLASSES if conditional else 0
    spec = {"data": data, "size": size, "schedule": {"name": "vp"}, "kind": "v", "seed": 0,
            "n_classes": n_classes, "net": cfg["net"],
            "loss": {"p_time": {"name": "uniform", "t_min": 1e-3, "t_max": 1.0},
                     "p_uncond": 0.1 if conditional else 0.0},
            "train": {**cfg["train"], "lr_schedule": "cosine", "warmup": 100, "ema": 0.999, "clip": 1.0}}
    what = "class-conditional (CFG label dropout 0.1)" if conditional else "unconditional"
    return register(Recipe(name, BUILDER, spec, _model, _data, _loss, shape=SHAPES[data], n_classes=n_classes,
                           description=f"{data}, U-Net ({size} size), VP schedule, v-prediction, {what}",
                           shipped=size == "cpu"))


IMAGE_RECIPES = [_recipe(d, s, cond) for (d, s) in _SIZES for cond in (False, True)]


def _labels(labels, n: int | None, n_classes: int) -> torch.Tensor | None:
    """Checked (N,) long labels, or None for an unconditional model."""
    if labels is None:
        if n is None or isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"give labels (N,) for a conditional model or a positive int n, got n={n!r}")
        return torch.zeros(n, dtype=torch.long) if n_classes else None
    if not n_classes:
        raise ValueError("labels given, but this model is unconditional (n_classes = 0); pass n instead")
    labels = torch.as_tensor(labels).long()
    if labels.dim() != 1 or len(labels) == 0 or labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must be a non-empty (N,) tensor of classes in [0, {n_classes}), "
                         f"got shape {tuple(labels.shape)}")
    return labels


@torch.no_grad()
def generate(model, labels=None, *, n: int | None = None, omega: float = 1.0, nfe: int = 20,
             method: str = "dpmpp_2m", grid: str = "lambda", generator: torch.Generator | None = None,
             batch: int = 500, lam_interval=None, shape: tuple[int, ...] | None = None,
             n_classes: int | None = None) -> torch.Tensor:
    """Sample images (N, C, H, W) in [-1, 1] from an image Predictor, with CFG when labels are given.

    The guided field is omega * conditional + (1 - omega) * unconditional (§8.3), integrated from
    the prior at t = 1 to t = 0 with `method` on an nfe-matched grid, then denoised and clamped.

    Args:
        model: a Predictor from a zoo recipe (its shape and class count come from zoo.recipe_of).
        labels: (N,) classes for a conditional model (None: unconditional, then give n).
        n: number of samples for an unconditional model.
        omega: CFG weight (book convention, 1 = conditional).
        nfe: network evaluations per sample (CFG counts one batched call per step).
        method: a sampler name (samplers.SOLVERS).  grid: a time-grid kind (grids.GRIDS).
        generator: drives the prior and any sampler noise.  batch: samples per solver call.
        lam_interval: guide only where lambda_t lies in it (guidance.CFG); None guides everywhere.
        shape, n_classes: (C, H, W) and class count for a model that does not come from a recipe.
    """
    if shape is None or n_classes is None:
        recipe = zoo.recipe_of(model)
        shape = recipe.shape if shape is None else shape
        n_classes = recipe.n_classes if n_classes is None else n_classes
    labels = _labels(labels, n, n_classes)
    N = len(labels) if labels is not None else n
    ts = time_grid(model.schedule, samplers.steps_for_nfe(method, nfe), grid)
    field = CFG(model, omega, n_classes, lam_interval=lam_interval) if labels is not None else model
    dev = next(model.parameters()).device
    out = []
    for start in range(0, N, batch):
        m = min(batch, N - start)
        x = model.schedule.sample_prior((m, *shape), generator=generator).to(dev)
        c = labels[start:start + m].to(dev) if labels is not None else None
        out.append(samplers.solve(field, x, ts, method, c=c, generator=generator, denoise=True).clamp(-1, 1).cpu())
    return torch.cat(out)
