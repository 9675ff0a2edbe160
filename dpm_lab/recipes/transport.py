"""Chapter 07 recipes: OT-CFM flows (minibatch OT couplings) and a learned Schroedinger bridge.

    model = dl.zoo.load("moons_otcfm")
    dl.recipes.transport.few_step_entries()        # the OT-CFM models for chapter 11's few-step bake-off

Names (builder "transport/1"):
    moons_otcfm       Gaussian noise (t = 1) -> moons (t = 0), OT-CFM: each batch's noise re-paired with its data by
                      the exact minibatch OT plan (dl.ot.minibatch_ot_pairs); otherwise moons_flow's spec exactly
                      (the independent-coupling twin: same net, steps, batch, lr, EMA, seed)
    8g_moons_otcfm    eight Gaussians (t = 1) -> moons (t = 0), OT-CFM; the twin of the toy recipe 8g_to_moons
    gauss_sb          a learned Schroedinger bridge between two 2-D Gaussians (GAUSS_SB) by bridge matching on
                      minibatch entropic-OT pairs (below); ground truth: dl.ot.gaussian_bridge_marginal

The learned bridge.  §7.3.1: the Schroedinger bridge with reference sqrt(sigma2) dW is the entropic-OT plan (eps =
2 sigma2) with Brownian bridges between the end points.  Its Markov drift is the average pull of those bridges,
u_t(x) = E[(X1 - X_t) / (1 - t) | X_t = x], so a network is fitted by regression (bridge matching): draw a batch
from each end, pair it by a sample of the batch's Sinkhorn plan, draw X_t on the Brownian bridge, regress
u(X_t, t) on (X1 - X_t) / (1 - t) with weight (1 - t) (the target's variance grows like 1 / (1 - t); the weight
keeps it bounded and leaves the minimiser unchanged).  Chosen over iterative proportional fitting (DSB), which
alternates two networks and simulates the SDE every round: bridge matching is simulation-free, one network, a
few minutes on a CPU; its error is the minibatch coupling's (the batch plan is not the population plan).
Time runs from the bridge's start (t = 0) to its end (t = 1), the book's Ch. 7 convention; no noise end here.
"""
from __future__ import annotations

import torch

from .. import datasets, nets, ot, reflow, zoo
from ..utils import rand, randn
from ..zoo import Recipe, register
from . import toy

__all__ = ["BUILDER", "TRANSPORT_RECIPES", "GAUSS_SB", "OTCFM_TWINS", "BridgeDrift", "few_step_entries", "otcfm_source",
           "bridge_pairs", "retrain"]

BUILDER = "transport/1"
# the bridge's two ends: non-commuting covariances, so its coupling is not a simple rescaling
GAUSS_SB = {"m0": [-2.0, 0.0], "S0": [[0.3, 0.2], [0.2, 1.0]], "m1": [2.0, 0.5], "S1": [[1.0, -0.4], [-0.4, 0.5]],
            "sigma2": 0.5}
OTCFM_TWINS = {"moons_otcfm": "moons_flow", "8g_moons_otcfm": "8g_to_moons"}   # OT-CFM model -> independent twin


# -- OT-CFM ---------------------------------------------------------------------------------------------------------
def otcfm_source(name: str):
    """The source sampler (t = 1) of an OT-CFM recipe: source(n, generator) -> (n, 2) float32."""
    spec = zoo.get(name).spec
    if spec["source"] is None:
        return lambda n, generator=None: randn((n, 2), generator=generator)
    return lambda n, generator=None: datasets.sample_2d(spec["source"], n, generator=generator)


def _otcfm_loss(spec: dict):
    """The toy CFM loss with each batch's source points re-paired by the batch's exact OT plan."""
    base = toy._loss({**spec, "source": None})

    def loss(model, x0: torch.Tensor, c=None, *, generator=None) -> torch.Tensor:
        if spec["source"] is None:
            x1 = randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        else:
            x1 = datasets.sample_2d(spec["source"], x0.shape[0], generator=generator).to(x0)
        x0, x1 = ot.minibatch_ot_pairs(x0, x1)
        return base(model, x0, c, eps=x1, generator=generator)

    return loss


def _otcfm_recipe(name: str, twin: str, description: str) -> Recipe:
    spec = {**zoo.get(twin).spec, "coupling": "minibatch_ot"}
    return register(Recipe(name, BUILDER, spec, toy._model, toy._data, _otcfm_loss, shape=(2,),
                           description=description))


# -- the learned bridge ----------------------------------------------------------------------------------------
class BridgeDrift(torch.nn.Module):
    """u(x, t): an MLP drift of the bridge SDE dX = u(X, t) dt + sqrt(sigma2) dW, t from 0 to 1."""

    def __init__(self, spec: dict) -> None:
        super().__init__()
        self.net = nets.MLP(**spec["net"])
        self.sigma2 = float(spec["sigma2"])

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        return self.net(x, t)

    def sample(self, x_start: torch.Tensor, n_steps: int = 100, *, generator=None) -> torch.Tensor:
        """The path (n_steps + 1, B, 2) of the learned SDE from x_start at t = 0 (Euler-Maruyama)."""
        with torch.no_grad():
            return ot.bridge_sde(lambda x, t: self(x, t), x_start, self.sigma2, n_steps, generator=generator)


def _ends(spec: dict):
    mvn = [torch.distributions.MultivariateNormal(torch.tensor(spec[m]), torch.tensor(spec[S]))
           for m, S in (("m0", "S0"), ("m1", "S1"))]

    def draw(k: int, n: int, generator=None) -> torch.Tensor:
        L = mvn[k].scale_tril
        return mvn[k].loc + randn((n, 2), generator=generator) @ L.T
    return draw


def _bridge_data(spec: dict):
    draw = _ends(spec)
    return lambda n, *, generator=None: draw(0, n, generator)


def bridge_pairs(x0: torch.Tensor, x1: torch.Tensor, sigma2: float, *, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A sample of the batch's entropic-OT plan (eps = 2 sigma2): x0_i paired with x1_j, j ~ P_i. / a_i."""
    plan = ot.sinkhorn(x0.double().cpu(), x1.double().cpu(), 2 * sigma2, tol=1e-6).plan
    j = torch.multinomial(plan / plan.sum(1, keepdim=True), 1, generator=generator).squeeze(1)
    return x0, x1[j.to(x1.device)]


def _bridge_loss(spec: dict):
    draw, s2 = _ends(spec), float(spec["sigma2"])

    def loss(model, x0: torch.Tensor, c=None, *, generator=None) -> torch.Tensor:
        x0, x1 = bridge_pairs(x0, draw(1, x0.shape[0], generator).to(x0), s2, generator=generator)
        t = 0.999 * rand((x0.shape[0], 1), generator=generator).to(x0)
        z = randn(x0.shape, generator=generator).to(x0)
        x_t = (1 - t) * x0 + t * x1 + (s2 * t * (1 - t)).sqrt() * z             # the Brownian bridge
        target = (x1 - x_t) / (1 - t)
        return (1 - t[:, 0]) * ((model(x_t, t[:, 0]) - target) ** 2).sum(1)
    return loss


def _bridge_recipe() -> Recipe:
    spec = {**GAUSS_SB, "seed": 0, "net": {"dim": 2, "hidden": 128, "depth": 3},
            "train": {"steps": 3000, "batch": 256, "lr": 3e-3, "lr_schedule": "cosine", "ema": 0.999, "clip": 1.0}}
    return register(Recipe("gauss_sb", BUILDER, spec, BridgeDrift, _bridge_data, _bridge_loss, shape=(2,),
                           description="Schroedinger bridge N(m0, S0) -> N(m1, S1), sigma2 = 0.5, by bridge matching "
                                       "on minibatch Sinkhorn pairs (eps = 2 sigma2)"))


# -- for chapter 11's bake-off ---------------------------------------------------------------------------------
def few_step_entries() -> list[dict]:
    """The OT-CFM models as few-step samplers: [{"data", "method", "sample", "train_s"}], data "moons" | "8g_to_moons".

    sample(n, nfe, generator) -> (n, 2): Euler with nfe uniform steps from the source at t = 1 (the straight
    paths are OT-CFM's point).  train_s: the manifest's training seconds.
    """
    from .. import store

    manifest = store.read_manifest(store.zoo_dir())
    out = []
    for name, data in (("moons_otcfm", "moons"), ("8g_moons_otcfm", "8g_to_moons")):
        model, source = zoo.load(name), otcfm_source(name)

        def sample(n: int, nfe: int, generator=None, model=model, source=source) -> torch.Tensor:
            return reflow.flow_path(model, source(n, generator=generator), int(nfe), "euler")[-1]
        out.append({"data": data, "method": "OT-CFM", "sample": sample,
                    "train_s": float(manifest[name]["train_seconds"])})
    return out


def retrain(name: str, *, progress: bool = True) -> torch.nn.Module:
    """Train recipe `name` live (the notebook's RETRAIN flag) and return it in eval mode (no file written)."""
    recipe = zoo.get(name)
    model = recipe.new_model()
    zoo._fit(model, recipe, device="cpu", progress=progress)
    return model.eval()


def _register_all() -> list[Recipe]:
    return [_otcfm_recipe("moons_otcfm", "moons_flow",
                          "moons_flow's spec with OT-CFM: each batch's noise re-paired by its exact OT plan"),
            _otcfm_recipe("8g_moons_otcfm", "8g_to_moons",
                          "8g_to_moons's spec with OT-CFM: each batch's 8g points re-paired by its exact OT plan"),
            _bridge_recipe()]


TRANSPORT_RECIPES = _register_all()
