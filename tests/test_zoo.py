"""The zoo: registry, checkpoint round trip, clear errors for bad files, and the shipped 2D models."""
import json
from dataclasses import replace

import pytest
import torch

import dpm_lab as dl
from dpm_lab import zoo

TINY = "test_tiny_flow"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """A 20-step recipe registered for the tests and built into a temporary zoo folder."""
    base = zoo.get("8g_flow")
    spec = json.loads(json.dumps(base.spec))
    spec["train"]["steps"], spec["net"]["hidden"] = 20, 16
    zoo.register(replace(base, name=TINY, spec=spec), replace=True)
    root = tmp_path_factory.mktemp("zoo")
    zoo.build(TINY, root=root)
    return root


def test_registry():
    assert {"8g_flow", "moons_flow", "8g_to_moons", "8g_cond"} <= set(zoo.names())
    assert {f"{d}_vp_{k}" for d in ("8g", "moons") for k in ("x0", "eps", "score", "velocity")} <= set(zoo.names())
    with pytest.raises(ValueError, match="already registered"):
        zoo.register(zoo.get("8g_flow"))
    with pytest.raises(ValueError, match="unknown zoo model"):
        zoo.get("nope")


def test_round_trip(tiny_root):
    model = zoo.load(TINY, root=tiny_root)
    blob = torch.load(tiny_root / f"{TINY}.pt", weights_only=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, blob["state_dict"][k])
    assert not model.training and model.kind == "velocity"
    assert model.eps(torch.zeros(2, 2), 0.5).shape == (2, 2)


def _copy(root, tmp_path):
    for f in root.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    return tmp_path


def test_truncated_or_altered_checkpoint_is_a_clear_error(tiny_root, tmp_path):
    root = _copy(tiny_root, tmp_path)
    path = root / f"{TINY}.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(zoo.ZooError, match="altered, truncated or corrupt.*python -m dpm_lab.zoo build"):
        zoo.load(TINY, root=root)
    with pytest.raises(zoo.ZooError, match="truncated or corrupt and cannot be read"):
        zoo.load(TINY, root=root, check_hash=False)
    path.write_bytes(data[:-9] + bytes(b ^ 0xFF for b in data[-9:]))
    with pytest.raises(zoo.ZooError, match="SHA-256"):
        zoo.load(TINY, root=root)
    (root / f"{TINY}.pt").unlink()
    with pytest.raises(zoo.ZooError, match="no checkpoint"):
        zoo.load(TINY, root=root)


def test_changed_recipe_is_a_clear_error(tiny_root):
    recipe = zoo.get(TINY)
    spec = json.loads(json.dumps(recipe.spec))
    spec["train"]["lr"] = 1e-4
    zoo.register(replace(recipe, spec=spec), replace=True)
    try:
        with pytest.raises(zoo.ZooError, match=r"different recipe \(changed: train\)"):
            zoo.load(TINY, root=tiny_root)
    finally:
        zoo.register(recipe, replace=True)


TOY = [n for n in zoo.names() if zoo.get(n).spec.get("net", {}).get("dim") == 2 and n != TINY]   # the 2D recipes


@pytest.mark.parametrize("name", TOY)
def test_shipped_checkpoints_load_and_are_small(name):
    entry = json.loads((zoo.zoo_dir() / "manifest.json").read_text())[name]
    assert entry["bytes"] < 300_000
    assert isinstance(zoo.load(name), dl.nets.Predictor)


@pytest.mark.parametrize("name,kind", [("8g_flow", "velocity"), ("8g_vp_eps", "eps"), ("8g_vp_x0", "eps")])
def test_shipped_models_match_the_exact_field(name, kind):
    """At t = 0.5, on samples of p_t, relative RMS error to the mixture's closed form below 0.15."""
    model, mix = zoo.load(name), dl.datasets.eight_gaussians_mixture()
    x_t = mix.sample_marginal(2000, 0.5, model.schedule, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model.predict(x_t, 0.5, kind)
    true = mix.predict(x_t, 0.5, model.schedule, kind)
    rel = ((got - true) ** 2).sum(1).mean().sqrt() / (true ** 2).sum(1).mean().sqrt()
    assert rel < 0.15, f"relative RMS error {rel:.3f}"


def test_conditional_model_follows_its_label():
    model, mix = zoo.load("8g_cond"), dl.datasets.eight_gaussians_mixture()
    x_t = mix.sample_marginal(1000, 0.5, model.schedule, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model.predict(x_t, 0.5, "x0", c=3)
    true = mix.x0(x_t, 0.5, model.schedule, c=3)
    assert ((got - true) ** 2).sum(1).mean().sqrt() < 0.15 * (true ** 2).sum(1).mean().sqrt()
