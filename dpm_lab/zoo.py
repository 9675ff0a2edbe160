"""The model zoo: named recipes for the small models the chapters need, and their checkpoints.

    model = dl.zoo.load("moons_velocity")        # a nets.Predictor in eval mode (exact recipe + SHA-256 check)
    dl.zoo.names()                                # what is registered
    python -m dpm_lab.zoo list | build NAME ... | build --all

A Recipe is a JSON spec (schedule, net, kind, loss, data, training budget, seed) plus three
builders that read it: model(spec) -> Predictor, data(spec) -> data callable, loss(spec) -> loss.
Checkpoints live in data/zoo/NAME.pt (EMA weights, float32, with the spec) and
data/zoo/manifest.json records their SHA-256.  `load` refuses a file whose hash, format or
recipe does not match, with a message saying how to rebuild.  Other modules add recipes with
`register(Recipe(...))` (e.g. image models).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from . import datasets, losses, nets
from .images import sha256_file
from .schedules import get_schedule
from .train import fit, save_atomic

__all__ = ["Recipe", "register", "names", "get", "load", "build", "zoo_dir", "ZooError"]

FORMAT = "dpm_lab.zoo/1"


class ZooError(ValueError):
    """A zoo checkpoint is missing, altered, truncated or does not match its recipe."""


@dataclass(frozen=True)
class Recipe:
    """A reproducible model: spec (JSON-able dict) + builders that read it.

    spec keys used by `build`: "seed" and "train" (keyword arguments of train.fit: steps, batch, lr, ...).
    model(spec) -> nn.Module (a nets.Predictor); data(spec) -> data for fit; loss(spec) -> per-sample loss.
    """

    name: str
    spec: dict
    model: Callable[[dict], torch.nn.Module]
    data: Callable[[dict], object]
    loss: Callable[[dict], Callable]
    description: str = ""
    shipped: bool = True          # False: registered (e.g. a GPU-sized recipe) but no checkpoint in data/zoo

    def fingerprint(self) -> str:
        """A canonical JSON string of the spec and builder names; a checkpoint must carry the same one."""
        names = {k: f"{f.__module__}.{f.__qualname__}" for k, f in
                 (("model", self.model), ("data", self.data), ("loss", self.loss))}
        return json.dumps({"spec": self.spec, "builders": names}, sort_keys=True)

    def new_model(self) -> torch.nn.Module:
        """The untrained model, initialised from spec['seed'] without touching the global RNG."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.spec.get("seed", 0)))
            return self.model(self.spec)


_REGISTRY: dict[str, Recipe] = {}


def register(recipe: Recipe, *, replace: bool = False) -> Recipe:
    """Add a recipe to the zoo under recipe.name (replace=True to redefine one)."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"register needs a Recipe, got {type(recipe).__name__}")
    json.dumps(recipe.spec)                                   # must be JSON-able
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


def zoo_dir(root: str | os.PathLike | None = None) -> Path:
    """The checkpoint folder: `root`, else $DPM_LAB_ZOO, else <repo>/data/zoo."""
    root = root or os.environ.get("DPM_LAB_ZOO") or Path(__file__).resolve().parent.parent / "data" / "zoo"
    return Path(root)


def _manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write_manifest(folder: Path, manifest: dict) -> None:
    tmp = folder / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, folder / "manifest.json")


def build(name: str, *, root=None, progress: bool = False, device=None) -> Path:
    """Train recipe `name` from its seed and store data/zoo/NAME.pt plus its manifest entry."""
    recipe = get(name)
    folder = zoo_dir(root)
    model = recipe.new_model()
    kw = dict(recipe.spec.get("train", {}))
    kw.setdefault("device", device or "cpu")
    start = time.perf_counter()
    records = list(fit(model, recipe.loss(recipe.spec), recipe.data(recipe.spec), seed=int(recipe.spec.get("seed", 0)),
                       progress=progress, log_every=max(1, kw.get("steps", 1000) // 20), **kw))
    seconds = time.perf_counter() - start
    state = {k: v.detach().float().cpu().clone() if v.is_floating_point() else v.cpu().clone()
             for k, v in model.state_dict().items()}
    path = folder / f"{name}.pt"
    save_atomic({"format": FORMAT, "name": name, "recipe": recipe.fingerprint(), "state_dict": state}, path)
    manifest = _manifest(folder)
    manifest[name] = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
                      "train_seconds": round(seconds, 1), "final_loss": round(records[-1].ema_loss, 5),
                      "description": recipe.description}
    _write_manifest(folder, manifest)
    return path


def _read_checked(name: str, folder: Path, check_hash: bool) -> dict:
    rebuild = f"rebuild it with: python -m dpm_lab.zoo build {name}"
    path = folder / f"{name}.pt"
    if not path.exists():
        raise ZooError(f"no checkpoint for zoo model {name!r} at {path}; {rebuild}")
    if check_hash:
        entry = _manifest(folder).get(name)
        if entry is None:
            raise ZooError(f"zoo model {name!r} has no entry in {folder / 'manifest.json'}; {rebuild}")
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise ZooError(f"checkpoint {path} is altered, truncated or corrupt: its SHA-256 {digest[:12]}... "
                           f"differs from the manifest's {entry['sha256'][:12]}...; {rebuild}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ZooError(f"checkpoint {path} is truncated or corrupt and cannot be read ({type(err).__name__}); "
                       f"{rebuild}") from err
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ZooError(f"{path} is not a {FORMAT} checkpoint; {rebuild}")
    return blob


def load(name: str, *, root=None, device=None, check_hash: bool = True) -> torch.nn.Module:
    """Load zoo model `name` (eval mode): verify SHA-256, format and that the stored recipe equals the code's."""
    recipe = get(name)
    blob = _read_checked(name, zoo_dir(root), check_hash)
    if blob["recipe"] != recipe.fingerprint():
        old, new = json.loads(blob["recipe"]), json.loads(recipe.fingerprint())
        diff = sorted(k for k in set(old["spec"]) | set(new["spec"]) if old["spec"].get(k) != new["spec"].get(k))
        diff += ["builders"] if old["builders"] != new["builders"] else []
        raise ZooError(f"the checkpoint of {name!r} was built from a different recipe (changed: {', '.join(diff)}); "
                       f"rebuild it with: python -m dpm_lab.zoo build {name}")
    model = recipe.new_model()
    model.load_state_dict(blob["state_dict"])
    return model.to(device or "cpu").eval()


# -- the 2D recipes ----------------------------------------------------------------------------------------
def _toy_model(spec: dict) -> nets.Predictor:
    net = nets.MLP(**spec["net"])
    return nets.Predictor(net, get_schedule(**spec["schedule"]), spec["kind"], precond=spec.get("precond"),
                          sigma_data=spec.get("sigma_data", 1.0), noise_input=spec.get("noise_input", "lambda"))


def _toy_data(spec: dict):
    name = spec["data"]
    if name == "eight_gaussians_labelled":
        mix = datasets.eight_gaussians_mixture()
        return lambda n, *, generator=None: mix.sample(n, generator=generator, return_labels=True)
    return lambda n, *, generator=None: datasets.sample_2d(name, n, generator=generator)


def _toy_loss(spec: dict):
    cfg = dict(spec["loss"])
    p_time = losses.TimeDist(**cfg.pop("p_time"))
    loss = losses.DiffusionLoss(get_schedule(**spec["schedule"]), spec["kind"], p_time=p_time, **cfg)
    source = spec.get("source")
    if source is None:
        return loss
    # transport source -> data: the source plays the noise end, x_t = (1 - t) x_data + t x_source
    return lambda model, x0, c=None, *, generator=None: loss(
        model, x0, c, eps=datasets.sample_2d(source, x0.shape[0], generator=generator).to(x0.device), generator=generator)


_TRAIN = {"steps": 3000, "batch": 256, "lr": 3e-3, "lr_schedule": "cosine", "ema": 0.999, "clip": 1.0}
_LOSS_BY_KIND = {"x0": "none", "eps": "none", "score": "sigma2", "velocity": "none"}


def _toy_recipe(name, data, kind, schedule, *, source=None, n_classes=0, p_uncond=0.0, weighting=None,
                p_time=None, train=None, precond=None, seed=0, description=""):
    sched = {"name": schedule}
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
    return register(Recipe(name, spec, _toy_model, _toy_data, _toy_loss, description))


_VP_STEPS = {"x0": 4000, "eps": 3000, "score": 5000, "velocity": 3000}   # score nets must output ~1/sigma: slower
for _data, _short in (("eight_gaussians", "8g"), ("moons", "moons")):
    for _kind in ("x0", "eps", "score", "velocity"):
        _edm = _kind == "x0"        # x0-prediction with EDM preconditioning and weighting (App. D.6)
        _toy_recipe(f"{_short}_vp_{_kind}", _data, _kind, "vp", precond="edm" if _edm else None,
                    weighting="edm" if _edm else None, train={"steps": _VP_STEPS[_kind]},
                    description=f"{_data}, VP (linear beta) schedule, network predicts {_kind}"
                    + (" (EDM preconditioning, sigma_data = 1)" if _edm else ""))
    _toy_recipe(f"{_short}_flow", _data, "velocity", "flow",
                description=f"{_data}, rectified-flow path (1 - t, t), velocity (CFM, §5.2)")
_toy_recipe("8g_to_moons", "moons", "velocity", "flow", source="eight_gaussians",
            description="transport eight Gaussians (t = 1) -> moons (t = 0), x_t = (1 - t) x_moons + t x_8g")
_toy_recipe("8g_cond", "eight_gaussians_labelled", "velocity", "flow", n_classes=8, p_uncond=0.1,
            description="class-conditional eight Gaussians (label = mode, 8 = null), CFG label dropout 0.1")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dpm_lab.zoo", description="list or rebuild zoo checkpoints")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    b = sub.add_parser("build")
    b.add_argument("names", nargs="*")
    b.add_argument("--all", action="store_true", help="every shipped recipe (image models take tens of minutes)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.cmd == "list":
        manifest = _manifest(zoo_dir())
        for n in names():
            e = manifest.get(n, {})
            where = "" if get(n).shipped else "  (not shipped: build it yourself, ideally on a GPU)"
            print(f"{n:20s} {e.get('bytes', 0) / 1024:7.1f} KB  {e.get('train_seconds', '-')!s:>6}s  "
                  f"{get(n).description}{where}")
        return
    todo = [n for n in names() if get(n).shipped] if args.all else args.names
    if not todo:
        parser.error("build needs NAME ... or --all")
    for n in todo:
        t0 = time.perf_counter()
        path = build(n)
        print(f"built {n} -> {path} ({path.stat().st_size / 1024:.1f} KB, {time.perf_counter() - t0:.1f}s)")


if __name__ == "__main__":
    from dpm_lab import zoo as _zoo         # the importable module, so builders are named dpm_lab.zoo.*
    _zoo.main()
