"""Chapter 05 recipes: registered with their specs, checkpoints load, the trainers run (a few steps), and the
shipped models are as good as the chapter says (against the W2 floor, with the sample sizes stated)."""
import dataclasses

import pytest
import torch

import dpm_lab as dl
from dpm_lab.recipes import flows

NAMES = ["moons_cfm", *flows.RING_ROUNDS, "ring_ot", "8g_moons_rf1", "8g_moons_rf2", "moons_planar", "moons_coupling"]


def test_registered_and_loadable():
    for name in NAMES:
        model = dl.zoo.load(name)
        assert dl.zoo.recipe_of(model).name == name
    assert dl.zoo.get("ring_rf2").spec["parent"] == "ring_rf1"
    assert dl.zoo.get("8g_moons_rf1").spec["parent"] == "8g_to_moons"


def _tiny(name, steps=3):
    recipe = dl.zoo.get(name)
    spec = {**recipe.spec, "train": {**recipe.spec["train"], "steps": steps, "batch": 16}}
    return dataclasses.replace(recipe, spec=spec)


@pytest.mark.parametrize("name", ["ring_rf0", "ring_rf1", "moons_planar"])
def test_trainers_run(name, monkeypatch):
    monkeypatch.setattr(flows, "N_PAIRS", 2000)
    recipe = _tiny(name)
    model = recipe.new_model()
    info = (recipe.trainer or dl.zoo._fit)(model, recipe, device="cpu", progress=False)
    assert torch.isfinite(torch.tensor(info["final_loss"]))


def test_reflow_coupling_data_come_from_the_parent_flow_map(monkeypatch):
    monkeypatch.setattr(flows, "N_PAIRS", 50)
    parent = dl.zoo.load("ring_rf0")
    x_target, x_source = flows.coupling_data(dl.zoo.get("ring_rf1").spec, parent)
    assert torch.allclose(x_target, dl.reflow.couple(parent, x_source, 64)[1])


@pytest.mark.slow
def test_ot_coupling_data_are_optimal_blocks(monkeypatch):
    monkeypatch.setattr(flows, "N_PAIRS", 2000)
    x_target, x_source = flows.coupling_data(dl.zoo.get("ring_ot").spec)
    assert dl.reflow.crossings(x_source[:300], x_target[:300]) == 0.0


@pytest.mark.slow
def test_second_reflow_round_one_step_quality():
    # W2 of 1000 one-step samples against 1000 target points over the floor at n = 1000 (3 pairs): the benchmark's
    # goal is 2x at n = 2000; 2.5x leaves room for the smaller sample's noise
    g = torch.Generator().manual_seed(4)
    target = lambda n, generator=None: dl.datasets.ring_pair(n, generator=generator)[1]   # noqa: E731
    floor = dl.metrics.floor(dl.metrics.w2_exact, target, 1000, generator=g)
    model = dl.zoo.load("ring_rf2")
    x = dl.solve(model, flows.ring_source(1000, generator=g), dl.reflow.flow_grid(model, 1), "euler")
    assert dl.metrics.w2_exact(x, target(1000, generator=g)) / floor < 2.5


def test_normalizing_flows_beat_a_gaussian_fit():
    x = dl.datasets.sample_2d("moons", 2000, generator=torch.Generator().manual_seed(5))
    gauss = dl.GaussianMixture([1.0], x.double().mean(0, keepdim=True), covs=torch.cov(x.double().T)[None])
    base = float(-gauss.log_prob(x.double()).mean())
    with torch.no_grad():
        nll = {n: float(-dl.zoo.load(n).log_prob(x).mean()) for n in ("moons_planar", "moons_coupling")}
    assert nll["moons_coupling"] < nll["moons_planar"] < base
