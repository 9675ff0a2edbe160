"""Chapter 03 recipes: an energy-based model and score networks (EBM, score matching, NCSN).

    ebm_8g_cd        an MLP energy on eight Gaussians, contrastive divergence with short-run Langevin
                     negatives (§3.1.3), 6000 steps at lr 3e-3
    ebm_8g_cd_short  the same, 1500 steps at lr 1e-3: it learns only a ring (chapter 03 shows why)
    score_8g_sm      a score MLP s_phi(x) on eight Gaussians noised by sigma = 0.1, Hyvarinen's score
                     matching with the exact Jacobian trace (§3.1.3)
    score_8g_ssm     the same network, sliced score matching (Hutchinson, one probe, §3.3.1)
    score_8g_dsm     the same network, denoising score matching at sigma = 0.1 (Vincent, §3.3)
    ncsn_2modes      a noise-conditional score network on the two-mode mixture ebm.two_mode_mixture(5),
                     DSM over sigma in [0.1, 20] (log-uniform: the limit of a fine geometric ladder), weight
                     sigma^2 (§3.4.2); an x0-network with EDM preconditioning, read as a score

The three sigma = 0.1 score nets share one schedule (EDM with sigma_max = 1, so t = sigma), one data set,
one network and one number of steps: they differ only in the objective, so their fields can be compared.
Builder version "scores/1": bump it when _model, _data or _loss change what a spec means.
"""
from __future__ import annotations

from .. import datasets, ebm, losses, nets
from ..schedules import get_schedule
from ..zoo import Recipe, register

__all__ = ["BUILDER", "SCORE_RECIPES", "SIGMA_SM", "NCSN_SIGMAS", "score_recipe"]

BUILDER = "scores/1"
SIGMA_SM = 0.1                               # the noise level of the three score-matching models
NCSN_SIGMAS = (0.1, 20.0)                    # sigma_1 and sigma_L of the NCSN
_TRAIN = {"steps": 2000, "batch": 256, "lr": 3e-3, "lr_schedule": "cosine", "ema": 0.999, "clip": 1.0}


def _model(spec: dict):
    """An ebm.Energy, or a nets.Predictor over nets.MLP(**spec['net']) under spec['schedule']."""
    if spec["family"] == "ebm":
        return ebm.Energy(**spec["net"])
    net = nets.MLP(**spec["net"])
    return nets.Predictor(net, get_schedule(**spec["schedule"]), spec["kind"], precond=spec.get("precond"),
                          sigma_data=spec.get("sigma_data", 1.0))


def _data(spec: dict):
    """data(n, *, generator) -> (n, 2) draws of spec['data']."""
    if spec["data"] == "two_modes":
        mix = ebm.two_mode_mixture(spec["a"])
        return lambda n, *, generator=None: mix.sample(n, generator=generator)
    return lambda n, *, generator=None: datasets.sample_2d(spec["data"], n, generator=generator)


def _loss(spec: dict):
    """The recipe's objective: CD, exact or sliced score matching, or DSM (one level or the NCSN range)."""
    cfg = spec["loss"]
    if spec["family"] == "ebm":
        return ebm.ContrastiveDivergence(**cfg)
    sched = get_schedule(**spec["schedule"])
    if cfg["method"] in ("exact", "sliced"):
        return losses.ScoreMatching(sched, cfg["method"], "none", losses.TimeDist("fixed", loc=cfg["t"]))
    if cfg["method"] == "dsm":
        return losses.DiffusionLoss(sched, "score", "none", losses.TimeDist("fixed", loc=cfg["t"]), factor=0.5)
    lo, hi = cfg["sigmas"]
    ladder = ebm.NoiseLadder([lo, hi], sched.sigma_max, discrete=False)
    return losses.DiffusionLoss(sched, "score", "sigma2", ladder, factor=0.5)


def score_recipe(name: str, spec: dict, description: str) -> Recipe:
    """Register a chapter 03 recipe from its spec (family 'ebm' or 'score'; see the module docstring)."""
    spec = {**spec, "train": {**_TRAIN, **spec.get("train", {})}}
    return register(Recipe(name, BUILDER, spec, _model, _data, _loss, shape=(2,), description=description))


def _register_all() -> list[Recipe]:
    ebm_spec = {"family": "ebm", "data": "eight_gaussians", "seed": 0, "net": {"dim": 2, "hidden": 64, "depth": 3},
                "loss": {"n_steps": 20, "step_size": 0.01, "noise_scale": 1.0, "box": 3.0, "reg": 0.1}}
    out = [score_recipe("ebm_8g_cd", {**ebm_spec, "train": {"steps": 6000, "batch": 128, "lr": 3e-3}},
                        "eight_gaussians, MLP energy, contrastive divergence with 20-step Langevin negatives from "
                        "uniform noise, 6000 steps at lr 3e-3: learns the eight modes"),
           score_recipe("ebm_8g_cd_short", {**ebm_spec, "train": {"steps": 1500, "batch": 128, "lr": 1e-3}},
                        "the same EBM, same negatives and regulariser, trained 1500 steps at lr 1e-3: a flat ring "
                        "(the eight modes are the last thing the network learns)")]
    sm = {"family": "score", "data": "eight_gaussians", "seed": 0, "kind": "score",
          "schedule": {"name": "edm", "sigma_max": 1.0}, "net": {"dim": 2, "hidden": 64, "depth": 3}}
    for short, method, words in (("sm", "exact", "Hyvarinen score matching, exact Jacobian trace"),
                                 ("ssm", "sliced", "sliced score matching, one Gaussian probe"),
                                 ("dsm", "dsm", "denoising score matching")):
        out.append(score_recipe(f"score_8g_{short}", {**sm, "loss": {"method": method, "t": SIGMA_SM}},
                                f"eight_gaussians noised by sigma = {SIGMA_SM}, score MLP, {words}"))
    out.append(score_recipe("ncsn_2modes", {
        "family": "score", "data": "two_modes", "a": 5.0, "seed": 0, "kind": "x0", "precond": "edm",
        "sigma_data": 5.0, "schedule": {"name": "edm", "sigma_max": NCSN_SIGMAS[1]},
        "net": {"dim": 2, "hidden": 128, "depth": 3}, "loss": {"method": "ncsn", "sigmas": list(NCSN_SIGMAS)},
        "train": {"steps": 3000}},
        "two modes 0.2 N((-5,-5), I) + 0.8 N((5,5), I), NCSN: DSM over sigma in [0.1, 20] (log-uniform), "
        "weight sigma^2, x0-network with EDM preconditioning"))
    return out


SCORE_RECIPES = _register_all()
