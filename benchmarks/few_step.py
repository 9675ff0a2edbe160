"""The few-step bake-off: every few-step method of the course on the same data, one metric per data set, one table.

    OMP_NUM_THREADS=1 python benchmarks/few_step.py                  # moons and 8g_to_moons, n = 2000
    OMP_NUM_THREADS=1 python benchmarks/few_step.py --n 1000 --csv few_step.csv
    OMP_NUM_THREADS=1 python benchmarks/few_step.py --images         # also MNIST-5k (conditional), n_images = 1000
    OMP_NUM_THREADS=1 python benchmarks/few_step.py --images --only-images

Rows come from each chapter's `few_step_entries()` where the module exists and has it (recipes.distill:
KD, PD, VSD/DMD; recipes.transport: OT-CFM and other Ch. 7 couplings; recipes.flowmaps: CD, CT, CTM,
MeanFlow), from chapter 05's reflow rounds (8g_moons_rf1/rf2, one Euler step per NFE on the rectified-flow
path; eight Gaussians -> moons only) and from two solvers on the zoo teacher of each data set (moons_flow,
8g_to_moons): DDIM and DPM-Solver++(2M) (the package default and Ch. 9's best measured), at the same NFE and at 50.

Metric: exact W2 between n samples and n fresh target points, beside the floor (W2 of two independent target
draws, averaged over --repeats pairs); ratio = W2 / floor (1 = indistinguishable at this n).  Each entry is
{"data", "method", "sample"(n, nfe, generator) -> (n, 2), "train_s"}; a sampler raises ValueError for an NFE
it cannot do, and the cell is left out.  train_s is the recipe's one-thread CPU time where the zoo recorded it
(train_cpu_seconds), else its wall time.

Images (--images): entries with data "mnist5k" have "sample"(n, nfe, generator, labels) -> (n, 1, 28, 28) in
[-1, 1], conditioned on labels (n,) (the requested digits, 0..9 in turn).  Every image student distills the same
teacher, the zoo's mnist5k_cond under CFG with omega = TEACHER_OMEGA on the whole path (guidance.CFG), and the
teacher rows are that field under DDIM and DPM-Solver++(2M).  Metric: FDD (digit_eval) beside its floor at the
same n, and the fraction of samples the zoo's digit classifier reads as the requested digit.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import math
import time

import torch

import dpm_lab as dl

DATA = ("moons", "8g_to_moons")
IMAGE_DATA = ("mnist5k",)
TEACHERS = {"moons": ("moons_flow", None), "8g_to_moons": ("8g_to_moons", "eight_gaussians")}
NFES = (1, 2, 4)
TEACHER_OMEGA = 2.0          # the guided teacher every MNIST student distills: CFG(mnist5k_cond, 2.0), all t


def train_s(entry: dict) -> float:
    """A zoo manifest entry's training time: one-thread CPU seconds where recorded, else wall seconds."""
    return float(entry.get("train_cpu_seconds", entry.get("train_seconds", math.nan)))


def image_teacher_field():
    """The guided field every MNIST-5k student distills (one Model; two network calls per evaluation)."""
    return dl.guidance.CFG(dl.zoo.load("mnist5k_cond"), TEACHER_OMEGA, 10)


def image_labels(n: int) -> torch.Tensor:
    """The requested digits of an image cell: 0, 1, ..., 9, 0, 1, ..."""
    return torch.arange(n) % 10


def _source(name: str | None, n: int, g: torch.Generator) -> torch.Tensor:
    return (dl.datasets.sample_2d(name, n, generator=g).float() if name else torch.randn(n, 2, generator=g))


def solver_entries() -> list[dict]:
    """DDIM and DPM-Solver++(2M) on each data set's zoo teacher (train_s: the teacher's own training time)."""
    manifest = dl.store.read_manifest(dl.store.zoo_dir())
    out = []
    for data, (name, src) in TEACHERS.items():
        for label, method in (("DDIM (teacher)", "ddim"), ("DPM-Solver++(2M) (teacher)", "dpmpp_2m")):
            def sample(n, nfe, generator=None, *, _name=name, _src=src, _m=method):
                model = dl.zoo.load(_name)
                with torch.no_grad():
                    return dl.solve(model, _source(_src, n, generator), nfe=nfe, method=_m, spacing="uniform")
            out.append({"data": data, "method": label, "sample": sample,
                        "train_s": train_s(manifest.get(name, {})), "nfes": NFES + (50,)})
    if "mnist5k_cond" in manifest:
        for label, method in (("DDIM (teacher)", "ddim"), ("DPM-Solver++(2M) (teacher)", "dpmpp_2m")):
            def sample(n, nfe, generator=None, labels=None, *, _m=method):
                field = image_teacher_field()
                x_T = dl.utils.randn((n, 1, 28, 28), generator=generator)
                with torch.no_grad():
                    return dl.solve(field, x_T, nfe=nfe, method=_m, c=labels).clamp(-1, 1)
            out.append({"data": "mnist5k", "method": label, "sample": sample,
                        "train_s": train_s(manifest["mnist5k_cond"]), "nfes": NFES + (50,)})
    return out


def reflow_entries() -> list[dict]:
    """Chapter 05's reflow rounds on eight Gaussians -> moons: k Euler steps for NFE k."""
    manifest = dl.store.read_manifest(dl.store.zoo_dir())
    out = []
    for name in ("8g_moons_rf1", "8g_moons_rf2"):
        if name not in manifest:
            continue

        def sample(n, nfe, generator=None, *, _name=name):
            model = dl.zoo.load(_name)
            grid = torch.linspace(1.0, 0.0, nfe + 1).tolist()
            with torch.no_grad():
                return dl.solve(model, _source("eight_gaussians", n, generator), grid, "euler")
        out.append({"data": "8g_to_moons", "method": f"reflow {name[-3:]} (Euler)", "sample": sample,
                    "train_s": train_s(manifest[name])})
    return out


def chapter_entries() -> list[dict]:
    """Every recipes module's few_step_entries(), where it exists (the table fills as chapters land)."""
    out = []
    for mod in ("distill", "transport", "flowmaps"):
        try:
            module = importlib.import_module(f"dpm_lab.recipes.{mod}")
        except ImportError:
            continue
        entries = getattr(module, "few_step_entries", lambda: [])
        try:
            out.extend(entries())
        except Exception as err:           # a chapter's entries must not stop the table
            print(f"# recipes.{mod}.few_step_entries() failed: {type(err).__name__}: {err}")
    return out


def target(data: str, n: int, g: torch.Generator) -> torch.Tensor:
    return dl.datasets.sample_2d("moons", n, generator=g).float()   # both data sets end at moons


def _cells(entries: list[dict], kinds: tuple[str, ...], n: int, seed: int, *extra):
    """(entry, nfe, generator, samples, start time) for every entry of these data sets at each of its NFEs; the
    generator, seeded per NFE, drew the samples and draws the cell's reference; an NFE the sampler refuses is skipped."""
    for e in entries:
        if e["data"] not in kinds:
            continue
        for nfe in e.get("nfes", NFES):
            gen = torch.Generator().manual_seed(seed + nfe)
            t0 = time.perf_counter()
            try:
                x = e["sample"](n, nfe, gen, *extra)
            except ValueError:
                continue
            yield e, nfe, gen, x, t0


def image_rows(entries: list[dict], n: int, seed: int) -> list[dict]:
    """FDD beside its floor and class accuracy for every MNIST-5k entry at its NFEs (n samples per cell)."""
    labels, rows = image_labels(n), []
    for e, nfe, _, x, t0 in _cells(entries, IMAGE_DATA, n, seed, labels):
        r = dl.digit_eval.evaluate(x.float(), labels, generator=torch.Generator().manual_seed(seed), verbose=False)
        rows.append({"data": e["data"], "method": e["method"], "nfe": nfe, "metric": "FDD",
                     "value": round(r["fdd"], 3), "floor": round(r["fdd_floor"], 3),
                     "ratio": round(r["fdd"] / r["fdd_floor"], 3), "accuracy": round(r["conditional_accuracy"], 3),
                     "train_s": round(float(e.get("train_s", math.nan)), 1)})
        print(f"{e['data']:12s} {e['method']:32s} NFE {nfe:3d}  FDD {r['fdd']:.2f}  ratio "
              f"{rows[-1]['ratio']:.2f}  acc {r['conditional_accuracy']:.3f}  ({time.perf_counter() - t0:.1f} s)",
              flush=True)
    return rows


def run(n: int, repeats: int, seed: int, *, n_images: int = 0, two_d: bool = True) -> list[dict]:
    entries = solver_entries() + reflow_entries() + chapter_entries()
    rows = run_2d(entries, n, repeats, seed) if two_d else []
    return rows + (image_rows(entries, n_images, seed) if n_images else [])


def run_2d(entries: list[dict], n: int, repeats: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    moons_floor = dl.metrics.floor(dl.metrics.w2_exact, lambda m, generator=None: target("moons", m, generator), n,
                                   repeats=repeats, generator=g)
    floors = dict.fromkeys(DATA, moons_floor)         # both data sets end at moons: one floor
    rows = []
    for e, nfe, gen, x, t0 in _cells(entries, DATA, n, seed):
        w2 = dl.metrics.w2_exact(x.float(), target(e["data"], n, gen))
        rows.append({"data": e["data"], "method": e["method"], "nfe": nfe, "metric": "W2", "value": round(w2, 4),
                     "floor": round(floors[e["data"]], 4), "ratio": round(w2 / floors[e["data"]], 3),
                     "accuracy": "", "train_s": round(float(e.get("train_s", math.nan)), 1)})
        print(f"{e['data']:12s} {e['method']:32s} NFE {nfe:3d}  W2 {w2:.3f}  ratio {w2 / floors[e['data']]:.2f}  "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
    return rows


def _cell(r: dict) -> str:
    return f"{r['ratio']:.2f}" + (f" ({100 * r['accuracy']:.0f}%)" if r["accuracy"] != "" else "")


def table(rows: list[dict]) -> str:
    """One markdown table: a row per (data, method), metric / floor at NFE 1, 2, 4 (and 50 for the solvers);
    image rows add the class accuracy after the ratio."""
    keys = []
    for r in rows:
        if (r["data"], r["method"]) not in keys:
            keys.append((r["data"], r["method"]))
    cols = (1, 2, 4, 50)
    out = ["| data | method | " + " | ".join(f"NFE {c}" for c in cols) + " | train s |",
           "|---|---|" + "---|" * len(cols) + "---|"]
    for d, m in keys:
        cell = {r["nfe"]: r for r in rows if r["data"] == d and r["method"] == m}
        train = next(iter(cell.values()))["train_s"]
        out.append(f"| {d} | {m} | " + " | ".join(_cell(cell[c]) if c in cell else "-" for c in cols)
                   + f" | {train:g} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="samples per cell (W2 is exact: O(n^3))")
    ap.add_argument("--repeats", type=int, default=3, help="target pairs averaged for the floor")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", help="write the rows (data, method, nfe, metric, value, floor, ratio, accuracy, train_s)")
    ap.add_argument("--images", action="store_true", help="also the MNIST-5k rows (FDD, accuracy; minutes)")
    ap.add_argument("--only-images", action="store_true", help="with --images: skip the 2D rows")
    ap.add_argument("--n-images", type=int, default=1000, help="samples per image cell")
    args = ap.parse_args(argv)
    if args.only_images and not args.images:
        ap.error("--only-images needs --images")
    torch.set_num_threads(1)
    rows = run(args.n, args.repeats, args.seed, n_images=args.n_images if args.images else 0,
               two_d=not args.only_images)
    floors = {r["data"]: r["floor"] for r in rows}
    print(f"\nmetric / floor (W2 at n = {args.n} for 2D, FDD at n = {args.n_images} for images, class accuracy in "
          "brackets; floors: " + ", ".join(f"{d} {f:.3f}" for d, f in floors.items()) + ")")
    print(table(rows))
    goals = {"moons": (1.5, 1.15), "8g_to_moons": (1.5, 1.15), "mnist5k": (5.0, 2.5)}
    for d in floors:
        best = {k: min((r["ratio"] for r in rows if r["data"] == d and r["nfe"] == k
                        and "teacher" not in r["method"]), default=math.nan) for k in (1, 4)}
        print(f"{d}: best one-step ratio {best[1]:.2f} (goal <= {goals[d][0]}), best four-step {best[4]:.2f} "
              f"(goal <= {goals[d][1]})")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["data", "method", "nfe", "metric", "value", "floor", "ratio",
                                              "accuracy", "train_s"])
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
