"""Chapter 12 recipe: masked diffusion on short sequences whose law is known exactly.

    uniform_chain4   the same data under uniform corruption: a t-conditioned x0-prediction MLP
                     (discrete.UniformDenoiser) trained by cross-entropy on every token
    masked_chain4    an MDLM-style x0-prediction MLP (discrete.MaskedDenoiser) on sequences of L = 4 tokens
                     from V = 3 symbols drawn by a small Markov chain (CHAIN_LAW), trained on the masked ELBO
                     (a cross-entropy on the masked tokens weighted by 1/t, alpha_t = 1 - t)

The data law is enumerable (81 sequences), so the sampler's law is computed exactly
(discrete.sampler_law) and its KL to the data needs no sampling.
Builder version "discrete/1": bump it when _model, _data or _loss change what a spec means.
"""
from __future__ import annotations

from .. import zoo
from ..discrete import MarkovLaw, MaskedDenoiser, UniformDenoiser, masked_elbo, uniform_cross_entropy
from ..zoo import Recipe, register

__all__ = ["BUILDER", "CHAIN_SPEC", "DISCRETE_RECIPES", "chain_law", "retrain"]

BUILDER = "discrete/1"
# a sticky three-symbol chain: tokens repeat often, so neighbours are strongly dependent
CHAIN_SPEC = {"init": [0.6, 0.3, 0.1], "trans": [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]], "L": 4}


def chain_law(spec: dict | None = None) -> MarkovLaw:
    """The chapter's data law (CHAIN_SPEC unless a spec's 'law' says otherwise)."""
    law = (spec or {}).get("law", CHAIN_SPEC)
    return MarkovLaw(law["init"], law["trans"], law["L"])


def _model(spec: dict) -> MaskedDenoiser | UniformDenoiser:
    law = chain_law(spec)
    net = UniformDenoiser if spec.get("kernel", "masked") == "uniform" else MaskedDenoiser
    return net(law.V, law.L, **spec["net"])


def _data(spec: dict):
    law = chain_law(spec)
    return lambda n, *, generator=None: law.sample(n, generator=generator)


def _loss(spec: dict):
    V = chain_law(spec).V
    loss = uniform_cross_entropy if spec.get("kernel", "masked") == "uniform" else masked_elbo
    return lambda model, x0, c=None, *, generator=None: loss(model, x0, V, generator=generator)


def _register_all() -> list[Recipe]:
    spec = {"law": CHAIN_SPEC, "seed": 0, "net": {"width": 128, "depth": 3},
            "train": {"steps": 3000, "batch": 1024, "lr": 2e-3, "lr_schedule": "cosine", "ema": 0.999, "clip": 1.0}}
    uniform = {**spec, "kernel": "uniform"}
    return [register(Recipe("masked_chain4", BUILDER, spec, _model, _data, _loss, shape=(CHAIN_SPEC["L"],),
                            description="masked diffusion (MDLM-style x0-prediction MLP, masked ELBO) on 4-token "
                                        "sequences of a 3-symbol Markov chain")),
            register(Recipe("uniform_chain4", BUILDER, uniform, _model, _data, _loss, shape=(CHAIN_SPEC["L"],),
                            description="uniform diffusion (t-conditioned x0-prediction MLP, cross-entropy on every "
                                        "token) on the same sequences"))]


DISCRETE_RECIPES = _register_all()


def retrain(name: str = "masked_chain4", *, progress: bool = True) -> MaskedDenoiser:
    """Train recipe `name` live (a notebook's RETRAIN flag) without touching the zoo; returns it in eval mode."""
    recipe = zoo.get(name)
    model = recipe.new_model()
    zoo._fit(model, recipe, device="cpu", progress=progress)
    return model.eval()
