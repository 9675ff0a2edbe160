"""The model zoo: a registry of named recipes and their hash-checked checkpoints.

    model = dl.zoo.load("moons_flow")             # eval mode, after SHA-256, format and recipe checks
    dl.zoo.names()                                # what is registered
    dl.zoo.recipe_of(model).shape                 # what sampling needs: data shape, number of classes
    python -m dpm_lab.zoo list | build NAME ... | build --all

A Recipe is a JSON spec plus builders that read it (model, data, loss, optionally its own training
loop) and what sampling needs (data shape, number of classes).  The recipes themselves live in
`dpm_lab.recipes` (toy, images, classifiers); this module only registers, builds and loads.

Checkpoints live in store.zoo_dir() (data/zoo/NAME.pt) and its manifest.json records each file's
SHA-256.  A checkpoint carries its recipe's fingerprint: the spec, the declared shape and classes and
an explicit builder version (e.g. "toy/1"), never module paths, so code can move freely; bump the
version when a builder's meaning changes.  `load` refuses a file that is missing, damaged, in another
format or from another recipe, with a message saying how to rebuild it.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import store
from .train import fit

__all__ = ["Recipe", "ZooError", "FORMAT", "register", "names", "get", "recipe_of", "load", "build"]

FORMAT = "dpm_lab.zoo/1"
ZooError = store.StoreError     # missing, damaged, wrong format or built from another recipe (a ValueError)
Trainer = Callable[..., dict]


@dataclass(frozen=True)
class Recipe:
    """A reproducible model: a JSON-able spec, the builders that read it, and what sampling needs.

    Args:
        name: the registry name (and checkpoint file name).
        builder: the builders' name and version, e.g. "toy/1"; part of the fingerprint.
        spec: JSON-able dict; "seed" seeds the initial weights, "train" holds train.fit's keywords.
        model: model(spec) -> nn.Module.  data: data(spec) -> data for train.fit.
        loss: loss(spec) -> per-sample loss(model, x0, c, *, generator).
        shape: the shape D of one sample, e.g. (2,) or (1, 8, 8).
        n_classes: number of class labels (0: unconditional).
        trainer: trainer(model, recipe, *, device, progress) -> manifest fields (with "final_loss");
            None: train.fit on data and loss with spec["train"].
        shipped: False for a recipe registered without a checkpoint in data/zoo (e.g. GPU-sized).
    """

    name: str
    builder: str
    spec: dict
    model: Callable[[dict], torch.nn.Module]
    data: Callable[[dict], object]
    loss: Callable[[dict], Callable]
    shape: tuple[int, ...]
    n_classes: int = 0
    description: str = ""
    trainer: Trainer | None = None
    shipped: bool = True

    def fingerprint(self) -> str:
        """Canonical JSON of spec, builder version, shape and n_classes; a checkpoint must carry the same.

        Floats are written to 12 significant digits: a spec computed by torch (the DDPM betas) can differ
        in its last bit between CPUs (vectorised kernels), and that must not invalidate a checkpoint."""
        return _canonical({"builder": self.builder, "spec": self.spec, "shape": list(self.shape),
                           "n_classes": self.n_classes})

    def new_model(self) -> torch.nn.Module:
        """The untrained model, initialised from spec['seed'] without touching the global RNG.

        The model carries `recipe_name` (see recipe_of)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.spec.get("seed", 0)))
            model = self.model(self.spec)
        model.recipe_name = self.name
        return model


def _rounded(obj):
    """obj with every float rounded to 12 significant digits (lists and dicts walked)."""
    if isinstance(obj, float):
        return float(f"{obj:.12g}")
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    return obj


def _canonical(fingerprint: dict) -> str:
    return json.dumps(_rounded(fingerprint), sort_keys=True)


_REGISTRY: dict[str, Recipe] = {}


def _check_recipe(recipe: Recipe) -> None:
    if not isinstance(recipe, Recipe):
        raise TypeError(f"register needs a Recipe, got {type(recipe).__name__}")
    try:
        json.dumps(recipe.spec)
    except TypeError as err:
        raise ValueError(f"recipe {recipe.name!r}: spec must be JSON-able ({err})") from err
    if not isinstance(recipe.builder, str) or "/" not in recipe.builder:
        raise ValueError(f"recipe {recipe.name!r}: builder must be a 'family/version' string, got {recipe.builder!r}")
    shape = recipe.shape
    if not isinstance(shape, tuple) or not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"recipe {recipe.name!r}: shape must be a non-empty tuple of positive ints, got {shape!r}")
    if isinstance(recipe.n_classes, bool) or not isinstance(recipe.n_classes, int) or recipe.n_classes < 0:
        raise ValueError(f"recipe {recipe.name!r}: n_classes must be an int >= 0, got {recipe.n_classes!r}")


def register(recipe: Recipe, *, replace: bool = False) -> Recipe:
    """Add a recipe to the zoo under recipe.name (replace=True to redefine one)."""
    _check_recipe(recipe)
    if recipe.name in _REGISTRY and not replace:
        raise ValueError(f"a recipe named {recipe.name!r} is already registered (use replace=True)")
    _REGISTRY[recipe.name] = recipe
    return recipe


def names() -> list[str]:
    """Registered recipe names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> Recipe:
    """The recipe registered as `name`."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown zoo model {name!r}; registered: {', '.join(names())}")
    return _REGISTRY[name]


def recipe_of(model: torch.nn.Module) -> Recipe:
    """The recipe a model was made from (Recipe.new_model and load set model.recipe_name)."""
    name = getattr(model, "recipe_name", None)
    if name is None:
        raise ValueError(f"model {type(model).__name__} does not come from a zoo recipe (no recipe_name)")
    return get(name)


def _fit(model: torch.nn.Module, recipe: Recipe, *, device, progress: bool) -> dict:
    """The default trainer: train.fit with the recipe's data, loss and spec['train']; returns final_loss."""
    kw = {"device": device, **recipe.spec.get("train", {})}
    records = list(fit(model, recipe.loss(recipe.spec), recipe.data(recipe.spec), seed=int(recipe.spec.get("seed", 0)),
                       progress=progress, log_every=max(1, kw.get("steps", 1000) // 20), **kw))
    return {"final_loss": round(records[-1].ema_loss, 5)}


def _cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().float().cpu().clone() if v.is_floating_point() else v.cpu().clone()
            for k, v in model.state_dict().items()}


def build(name: str, *, root: str | os.PathLike | None = None, progress: bool = False, device=None) -> Path:
    """Train recipe `name` from its seed; store NAME.pt (float32 weights) and its manifest entry.

    Args:
        name: a registered recipe.  root: the zoo folder (default store.zoo_dir()).
        progress: show a progress bar.  device: where to train (default "cpu").
    """
    recipe = get(name)
    folder = store.zoo_dir(root)
    model = recipe.new_model()
    start, cpu_start = time.perf_counter(), time.process_time()
    info = (recipe.trainer or _fit)(model, recipe, device=device or "cpu", progress=progress)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    path = folder / f"{name}.pt"
    store.save_atomic({"format": FORMAT, "name": name, "recipe": recipe.fingerprint(),
                       "state_dict": _cpu_state(model)}, path)
    manifest = store.read_manifest(folder)
    manifest[name] = {"file": path.name, "sha256": store.sha256_file(path), "bytes": path.stat().st_size,
                      "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
                      "description": recipe.description,
                      "builder": recipe.builder, "torch": torch.__version__, **info}
    store.write_manifest(folder, manifest)
    return path


def _rebuild(name: str) -> str:
    return f"python -m dpm_lab.zoo build {name}"


def _read_checked(name: str, folder: Path, check_hash: bool) -> dict:
    """The checkpoint dict of `name`, after the SHA-256 check (if asked) and the format check."""
    path = folder / f"{name}.pt"
    if check_hash:
        entry = store.read_manifest(folder).get(name)
        if entry is None:
            raise ZooError(f"zoo model {name!r} has no entry in {folder / store.MANIFEST}; "
                           f"rebuild it with: {_rebuild(name)}")
        store.verify(path, entry["sha256"], _rebuild(name))
    elif not path.is_file():
        raise store.MissingFileError(f"file {path} is missing; rebuild it with: {_rebuild(name)}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise store.DamagedFileError(f"file {path} is damaged (truncated or corrupt) and cannot be read "
                                     f"({type(err).__name__}); rebuild it with: {_rebuild(name)}") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ZooError(f"{path} is not a {FORMAT} checkpoint; rebuild it with: {_rebuild(name)}")
    return blob


def _changed(old: str, new: str) -> list[str]:
    """Keys of spec (and builder, shape, n_classes) that differ between two fingerprints."""
    old, new = json.loads(old), json.loads(new)
    spec_old, spec_new = old.get("spec", {}), new["spec"]
    diff = sorted(k for k in set(spec_old) | set(spec_new) if spec_old.get(k) != spec_new.get(k))
    return diff + [k for k in ("builder", "shape", "n_classes") if old.get(k) != new[k]]


def _stored_fingerprint(blob: dict) -> str | None:
    """The checkpoint's recipe fingerprint in today's canonical form (older files wrote floats in full)."""
    try:
        return _canonical(json.loads(blob["recipe"]))
    except (KeyError, TypeError, ValueError):
        return None


def load(name: str, *, root: str | os.PathLike | None = None, device=None, check_hash: bool = True) -> torch.nn.Module:
    """Load zoo model `name` in eval mode, after checking SHA-256, format and recipe fingerprint.

    Args:
        name: a registered recipe.  root: the zoo folder (default store.zoo_dir()).
        device: where to put the model (default "cpu").  check_hash: compare with the manifest's SHA-256.
    """
    recipe = get(name)
    blob = _read_checked(name, store.zoo_dir(root), check_hash)
    if _stored_fingerprint(blob) != recipe.fingerprint():
        raise ZooError(f"the checkpoint of {name!r} was built from a different recipe (changed: "
                       f"{', '.join(_changed(blob.get('recipe') or '{}', recipe.fingerprint()))}); "
                       f"rebuild it with: {_rebuild(name)}")
    model = recipe.new_model()
    try:
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise ZooError(f"the checkpoint of {name!r} does not fit its recipe's model ({err}); "
                       f"rebuild it with: {_rebuild(name)}") from err
    return model.to(device or "cpu").eval()


# `python -m dpm_lab.zoo` runs this module as __main__ after `import dpm_lab` has imported it (the package
# face needs the registry), and runpy warns about exactly that; the command is meant to work this way.
warnings.filterwarnings("ignore", message=r"'dpm_lab\.zoo' found in sys\.modules", category=RuntimeWarning)


def main(argv: list[str] | None = None) -> None:
    """`python -m dpm_lab.zoo list` prints the registry; `build NAME ...` or `build --all` rebuilds."""
    parser = argparse.ArgumentParser(prog="python -m dpm_lab.zoo", description="list or rebuild zoo checkpoints")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    b = sub.add_parser("build")
    b.add_argument("names", nargs="*")
    b.add_argument("--all", action="store_true", help="every shipped recipe (image models take tens of minutes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.cmd == "list":
        manifest = store.read_manifest(store.zoo_dir())
        for n in names():
            e = manifest.get(n, {})
            where = "" if get(n).shipped else "  (not shipped: build it yourself, ideally on a GPU)"
            print(f"{n:26s} {e.get('bytes', 0) / 1024:7.1f} KB  {e.get('train_seconds', '-')!s:>6}s wall "
                  f"{e.get('train_cpu_seconds', '-')!s:>6}s cpu  {get(n).description}{where}")
        return
    todo = [n for n in names() if get(n).shipped] if args.all else args.names
    if not todo:
        parser.error("build needs NAME ... or --all")
    for n in todo:
        t0 = time.perf_counter()
        path = build(n)
        print(f"built {n} -> {path} ({path.stat().st_size / 1024:.1f} KB, {time.perf_counter() - t0:.1f}s)")


if __name__ == "__main__":
    from dpm_lab import zoo as _zoo  # the imported module, whose registry `import dpm_lab` filled
    _zoo.main()
