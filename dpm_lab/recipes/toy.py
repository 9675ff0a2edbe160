"""The 2D toy recipes: MLP Predictors on eight Gaussians and moons, under VP and flow schedules.

    model = dl.zoo.load("8g_vp_eps")              # one of the names registered below
    TOY_RECIPES                                   # their Recipe objects

Names: {8g, moons}_vp_{x0, eps, score, velocity} (VP linear-beta schedule, one per prediction
kind; x0 with EDM preconditioning), {8g, moons}_flow (rectified-flow path, CFM, §5.2),
8g_to_moons (transport eight Gaussians -> moons) and 8g_cond (class-conditional, CFG dropout).
Chapter 02's twins on the book's 100-step DDPM chain (beta_i^2 = linspace(1e-3, 0.2, 100), beta a
standard deviation), all trained with i uniform on 1..100: 8g_ddpm100_eps (L_simple, Eq. 2.2.10),
8g_ddpm100_x0 (x0 with EDM preconditioning, a skip connection) and 8g_ddpm100_x0_noskip (a plain
x0 network, unweighted: the chapter's example of a failure).
Builder version "toy/1": bump it when _model, _data or _loss change what a spec means.
"""
from __future__ import annotations

from .. import datasets, losses, nets
from ..schedules import get_schedule
from ..zoo import Recipe, register

__all__ = ["BUILDER", "TOY_RECIPES", "DDPM100", "toy_recipe"]

BUILDER = "toy/1"
_TRAIN = {"steps": 3000, "batch": 256, "lr": 3e-3, "lr_schedule": "cosine", "ema": 0.999, "clip": 1.0}
_LOSS_BY_KIND = {"x0": "none", "eps": "none", "score": "sigma2", "velocity": "none"}
_VP_STEPS = {"x0": 4000, "eps": 3000, "score": 5000, "velocity": 3000}   # score nets must output ~1/sigma: slower


def _ddpm100() -> dict:
    """The schedule spec of chapter 02's chain: L = 100 book-convention betas, beta_i^2 = linspace(1e-3, 0.2, 100)."""
    import torch

    betas = torch.linspace(1e-3, 0.2, 100, dtype=torch.float64).sqrt()
    return {"name": "discrete", "betas": betas.tolist(), "beta_is": "std"}


DDPM100 = _ddpm100()


def _model(spec: dict) -> nets.Predictor:
    """An MLP Predictor: nets.MLP(**spec['net']) under spec['schedule'], predicting spec['kind']."""
    net = nets.MLP(**spec["net"])
    return nets.Predictor(net, get_schedule(**spec["schedule"]), spec["kind"], precond=spec.get("precond"),
                          sigma_data=spec.get("sigma_data", 1.0), noise_input=spec.get("noise_input", "lambda"))


def _data(spec: dict):
    """data(n, *, generator) -> (n, 2) points of spec['data'] (with labels for the labelled mixture)."""
    name = spec["data"]
    if name == "eight_gaussians_labelled":
        mix = datasets.eight_gaussians_mixture()
        return lambda n, *, generator=None: mix.sample(n, generator=generator, return_labels=True)
    return lambda n, *, generator=None: datasets.sample_2d(name, n, generator=generator)


def _loss(spec: dict):
    """losses.DiffusionLoss from spec['loss']; with spec['source'], the source set replaces the noise."""
    cfg = dict(spec["loss"])
    p_time = losses.TimeDist(**cfg.pop("p_time"))
    loss = losses.DiffusionLoss(get_schedule(**spec["schedule"]), spec["kind"], p_time=p_time, **cfg)
    source = spec.get("source")
    if source is None:
        return loss
    # transport source -> data: the source plays the noise end, x_t = (1 - t) x_data + t x_source
    return lambda model, x0, c=None, *, generator=None: loss(
        model, x0, c, eps=datasets.sample_2d(source, x0.shape[0], generator=generator).to(x0.device), generator=generator)


def toy_recipe(name: str, data: str, kind: str, schedule: str | dict, *, source: str | None = None, n_classes: int = 0,
               p_uncond: float = 0.0, weighting: str | None = None, p_time: dict | None = None,
               train: dict | None = None, precond: str | None = None, seed: int = 0, description: str = "") -> Recipe:
    """Register a 2D recipe: an MLP (hidden 128, depth 3) trained with spec['train'] on a toy set.

    Args:
        name: registry name.  data: a datasets.sample_2d name or "eight_gaussians_labelled".
        kind: the prediction kind.  schedule: a schedules.get_schedule name, or its keywords as a dict
            (e.g. {"name": "discrete", "betas": [...], "beta_is": "std"}).
        source: a toy set that replaces the Gaussian noise end (transport).  n_classes: labels (0: none).
        p_uncond: label dropout for CFG.  weighting, p_time, precond: loss and network options.
        train: overrides of the default train.fit keywords.  seed: initial weights and training.
    """
    sched = dict(schedule) if isinstance(schedule, dict) else {"name": schedule}
    # VP: logit-normal times skewed to low noise, where thin structure (moons) is resolved; flow: uniform
    p_time = p_time or ({"name": "uniform", "t_min": 0.0, "t_max": 1.0} if schedule == "flow" else
                        {"name": "logit_normal", "loc": -0.8, "scale": 1.6, "t_min": 1e-3, "t_max": 1.0})
    spec = {"data": data, "source": source, "schedule": sched, "kind": kind, "seed": seed, "precond": precond,
            "sigma_data": 1.0,
            "net": {"dim": 2, "hidden": 128, "depth": 3, "n_classes": n_classes},
            "loss": {"weighting": weighting or _LOSS_BY_KIND[kind], "p_time": p_time, "p_uncond": p_uncond,
                     "sigma_data": 1.0,
                     "null_label": n_classes if n_classes else None},
            "train": {**_TRAIN, **(train or {})}}
    return register(Recipe(name, BUILDER, spec, _model, _data, _loss, shape=(2,), n_classes=n_classes,
                           description=description))


def _register_all() -> list[Recipe]:
    out = []
    for data, short in (("eight_gaussians", "8g"), ("moons", "moons")):
        for kind in ("x0", "eps", "score", "velocity"):
            edm = kind == "x0"        # x0-prediction with EDM preconditioning and weighting (App. D.6)
            out.append(toy_recipe(f"{short}_vp_{kind}", data, kind, "vp", precond="edm" if edm else None,
                                  weighting="edm" if edm else None, train={"steps": _VP_STEPS[kind]},
                                  description=f"{data}, VP (linear beta) schedule, network predicts {kind}"
                                  + (" (EDM preconditioning, sigma_data = 1)" if edm else "")))
        out.append(toy_recipe(f"{short}_flow", data, "velocity", "flow",
                              description=f"{data}, rectified-flow path (1 - t, t), velocity (CFM, §5.2)"))
    out.append(toy_recipe("8g_to_moons", "moons", "velocity", "flow", source="eight_gaussians",
                          description="transport eight Gaussians (t = 1) -> moons (t = 0), "
                                      "x_t = (1 - t) x_moons + t x_8g"))
    out.append(toy_recipe("8g_cond", "eight_gaussians_labelled", "velocity", "flow", n_classes=8, p_uncond=0.1,
                          description="class-conditional eight Gaussians (label = mode, 8 = null), "
                                      "CFG label dropout 0.1"))
    # chapter 02: the same network, steps and time distribution (i uniform on 1..L, DDPM's) for each twin
    ddpm = {"schedule": DDPM100, "p_time": {"name": "discrete", "L": 100}}
    out.append(toy_recipe("8g_ddpm100_eps", "eight_gaussians", "eps", **ddpm, train={"steps": 6000},
                          description="eight_gaussians, the book's 100-step DDPM chain, eps-prediction, "
                                      "L_simple (Eq. 2.2.10), i uniform"))
    out.append(toy_recipe("8g_ddpm100_x0", "eight_gaussians", "x0", **ddpm, precond="edm", weighting="edm",
                          train={"steps": 6000},
                          description="eight_gaussians, the book's 100-step DDPM chain, x0-prediction with a skip "
                                      "connection (EDM preconditioning), i uniform"))
    out.append(toy_recipe("8g_ddpm100_x0_noskip", "eight_gaussians", "x0", **ddpm, weighting="none",
                          train={"steps": 6000},
                          description="eight_gaussians, the book's 100-step DDPM chain, plain x0-prediction "
                                      "(no skip, unweighted), i uniform: the chapter's failure example"))
    return out


TOY_RECIPES = _register_all()
