"""The zoo: registry, fingerprints, build/load round trip, clear errors, and every shipped checkpoint."""
import json
from dataclasses import replace

import pytest
import torch

from dpm_lab import store, zoo

TINY = "test_tiny_flow"


def _tiny_recipe(**changes) -> zoo.Recipe:
    """The 8g_flow recipe shrunk to 20 steps and 16 hidden units (not shipped)."""
    base = zoo.get("8g_flow")
    spec = json.loads(json.dumps(base.spec))
    spec["train"]["steps"], spec["net"]["hidden"] = 20, 16
    return replace(base, name=TINY, spec=spec, shipped=False, **changes)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    """TINY registered for this module and built into a temporary zoo folder."""
    zoo.register(_tiny_recipe(), replace=True)
    root = tmp_path_factory.mktemp("zoo")
    zoo.build(TINY, root=root)
    yield root
    zoo._REGISTRY.pop(TINY, None)


@pytest.fixture
def swapped(tiny_root):
    """Register a variant of TINY for one test, then put the original back."""
    original = zoo.get(TINY)
    yield lambda recipe: zoo.register(recipe, replace=True)
    zoo.register(original, replace=True)


def _copy(root, tmp_path):
    for f in root.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    return tmp_path


def _flip_byte(path, at=-100):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_registry_lookups_and_errors():
    assert {"8g_flow", "moons_flow", "mnist5k_cond", "digit_classifier_mnist5k"} <= set(zoo.names())
    assert zoo.names() == sorted(zoo.names())
    with pytest.raises(ValueError, match="already registered"):
        zoo.register(zoo.get("8g_flow"))
    with pytest.raises(ValueError, match="unknown zoo model 'nope'"):
        zoo.get("nope")
    with pytest.raises(TypeError, match="needs a Recipe"):
        zoo.register({"name": "x"})


@pytest.mark.parametrize("change,match", [
    ({"builder": "toy"}, "builder must be a 'family/version'"),
    ({"shape": [2]}, "shape must be a non-empty tuple"),
    ({"shape": (0,)}, "shape must be a non-empty tuple"),
    ({"n_classes": -1}, "n_classes must be an int >= 0"),
    ({"spec": {"f": print}}, "spec must be JSON-able"),
])
def test_register_checks_the_recipe(change, match):
    with pytest.raises(ValueError, match=match):
        zoo.register(replace(_tiny_recipe(), name="test_bad", **change))
    assert "test_bad" not in zoo.names()


def test_fingerprint_is_spec_builder_shape_and_classes_not_module_paths():
    recipe = zoo.get("8g_flow")
    fp = json.loads(recipe.fingerprint())
    assert fp == {"builder": "toy/1", "spec": recipe.spec, "shape": [2], "n_classes": 0}
    assert "dpm_lab." not in recipe.fingerprint()
    moved = replace(recipe, model=lambda spec: recipe.model(spec), loss=lambda spec: recipe.loss(spec))
    assert moved.fingerprint() == recipe.fingerprint()                  # moving a builder changes nothing
    assert replace(recipe, builder="toy/2").fingerprint() != recipe.fingerprint()


def test_new_model_is_seeded_and_names_its_recipe():
    recipe = _tiny_recipe()
    state = torch.random.get_rng_state()
    a, b = recipe.new_model(), recipe.new_model()
    assert torch.equal(state, torch.random.get_rng_state())               # the global RNG is untouched
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert a.recipe_name == TINY
    with pytest.raises(ValueError, match="does not come from a zoo recipe"):
        zoo.recipe_of(torch.nn.Linear(2, 2))


def test_round_trip(tiny_root):
    model = zoo.load(TINY, root=tiny_root)
    blob = torch.load(tiny_root / f"{TINY}.pt", weights_only=True)
    assert blob["format"] == zoo.FORMAT and blob["recipe"] == zoo.get(TINY).fingerprint()
    for k, v in model.state_dict().items():
        assert torch.equal(v, blob["state_dict"][k])
    assert not model.training and model.kind == "velocity" and zoo.recipe_of(model) is zoo.get(TINY)
    entry = store.read_manifest(tiny_root)[TINY]
    assert entry["sha256"] == store.sha256_file(tiny_root / f"{TINY}.pt") and entry["builder"] == "toy/1"
    assert entry["final_loss"] > 0


def test_flipped_byte_is_a_damaged_error(tiny_root, tmp_path):
    root = _copy(tiny_root, tmp_path)
    _flip_byte(root / f"{TINY}.pt")
    with pytest.raises(store.DamagedFileError, match=rf"{TINY}\.pt is damaged.*python -m dpm_lab.zoo build {TINY}"):
        zoo.load(TINY, root=root)


def test_truncated_missing_or_unlisted_checkpoint_is_a_clear_error(tiny_root, tmp_path):
    root = _copy(tiny_root, tmp_path)
    path = root / f"{TINY}.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(zoo.ZooError, match="damaged"):
        zoo.load(TINY, root=root)
    with pytest.raises(zoo.ZooError, match="damaged .*cannot be read"):
        zoo.load(TINY, root=root, check_hash=False)
    path.unlink()
    for check_hash in (True, False):
        with pytest.raises(store.MissingFileError, match=f"missing; rebuild it with: python -m dpm_lab.zoo build {TINY}"):
            zoo.load(TINY, root=root, check_hash=check_hash)
    (root / store.MANIFEST).unlink()
    with pytest.raises(zoo.ZooError, match="no entry in"):
        zoo.load(TINY, root=root)


def test_wrong_format_is_a_clear_error(tiny_root, tmp_path):
    root = _copy(tiny_root, tmp_path)
    store.save_atomic({"state_dict": {}}, root / f"{TINY}.pt")
    with pytest.raises(zoo.ZooError, match="is not a dpm_lab.zoo/1 checkpoint"):
        zoo.load(TINY, root=root, check_hash=False)


@pytest.mark.parametrize("change,changed", [
    (lambda r: {"spec": {**r.spec, "train": {**r.spec["train"], "lr": 1e-4}}}, "train"),
    (lambda r: {"builder": "toy/2"}, "builder"),
    (lambda r: {"n_classes": 3}, "n_classes"),
])
def test_changed_recipe_is_a_clear_error(tiny_root, swapped, change, changed):
    recipe = zoo.get(TINY)
    swapped(replace(recipe, **change(recipe)))
    with pytest.raises(zoo.ZooError, match=rf"different recipe \(changed: {changed}\)"):
        zoo.load(TINY, root=tiny_root)


def test_a_last_bit_change_in_a_float_spec_still_loads(tiny_root, swapped):
    # a spec computed by torch (the DDPM100 betas) differs in its last bit between CPUs with and
    # without AVX-512: that must not invalidate a checkpoint; a change in the 8th digit must
    recipe = zoo.get(TINY)
    lr = recipe.spec["train"]["lr"]
    swapped(replace(recipe, spec={**recipe.spec, "train": {**recipe.spec["train"], "lr": lr * (1 + 2 ** -52)}}))
    assert zoo.load(TINY, root=tiny_root).recipe_name == TINY
    swapped(replace(recipe, spec={**recipe.spec, "train": {**recipe.spec["train"], "lr": lr * (1 + 1e-8)}}))
    with pytest.raises(zoo.ZooError, match=r"different recipe \(changed: train\)"):
        zoo.load(TINY, root=tiny_root)


def test_a_moved_builder_still_loads(tiny_root, swapped):
    recipe = zoo.get(TINY)
    swapped(replace(recipe, model=lambda spec: recipe.model(spec)))
    assert zoo.load(TINY, root=tiny_root).recipe_name == TINY


def test_weights_that_do_not_fit_the_model_are_a_clear_error(tiny_root, tmp_path):
    root = _copy(tiny_root, tmp_path)
    blob = torch.load(root / f"{TINY}.pt", weights_only=True)
    blob["state_dict"].popitem()
    store.save_atomic(blob, root / f"{TINY}.pt")
    with pytest.raises(zoo.ZooError, match="does not fit its recipe's model"):
        zoo.load(TINY, root=root, check_hash=False)


def test_build_with_a_custom_trainer(tiny_root, swapped, tmp_path):
    calls = []

    def trainer(model, recipe, *, device, progress):
        calls.append((recipe.name, str(device), progress))
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(0.5)
        return {"final_loss": 0.0, "note": "custom"}

    swapped(replace(zoo.get(TINY), trainer=trainer))
    zoo.build(TINY, root=tmp_path)
    assert calls == [(TINY, "cpu", False)]
    assert store.read_manifest(tmp_path)[TINY]["note"] == "custom"
    assert all((p == 0.5).all() for p in zoo.load(TINY, root=tmp_path).parameters())


SHIPPED = [n for n in zoo.names() if zoo.get(n).shipped]


def test_the_manifest_lists_exactly_the_shipped_recipes():
    assert set(store.read_manifest(store.zoo_dir())) == set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_checkpoint_loads_with_its_hash_checked(name):
    entry = store.read_manifest(store.zoo_dir())[name]
    path = store.zoo_dir() / entry["file"]
    assert store.sha256_file(path) == entry["sha256"] and path.stat().st_size == entry["bytes"]
    assert entry["builder"] == zoo.get(name).builder
    model = zoo.load(name, check_hash=True)
    assert zoo.recipe_of(model) is zoo.get(name) and not model.training
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert "dpm_lab." not in torch.load(path, weights_only=True)["recipe"]      # no module paths


def test_a_flipped_byte_in_a_shipped_checkpoint_is_a_damaged_error(tmp_path):
    name = "digit_classifier_digits8"
    for f in (f"{name}.pt", store.MANIFEST):
        (tmp_path / f).write_bytes((store.zoo_dir() / f).read_bytes())
    _flip_byte(tmp_path / f"{name}.pt", at=5000)
    with pytest.raises(store.DamagedFileError, match=rf"{name}\.pt is damaged.*python -m dpm_lab.zoo build {name}"):
        zoo.load(name, root=tmp_path)


def test_command_line_list(capsys):
    zoo.main(["list"])
    out = capsys.readouterr().out
    assert all(n in out for n in SHIPPED) and "not shipped" in out
    with pytest.raises(SystemExit):
        zoo.main(["build"])
