"""The few-step bake-off: every few-step method of the course on the same 2D data, one metric, one table.

    OMP_NUM_THREADS=1 python benchmarks/few_step.py                  # moons and 8g_to_moons, n = 2000
    OMP_NUM_THREADS=1 python benchmarks/few_step.py --n 1000 --csv few_step.csv

Rows come from each chapter's `few_step_entries()` where the module exists and has it (recipes.distill:
KD, PD, VSD/DMD; recipes.transport: OT-CFM and other Ch. 7 couplings; recipes.flowmaps: CD, CT, CTM,
MeanFlow), from chapter 05's reflow rounds (8g_moons_rf1/rf2, one Euler step per NFE on the rectified-flow
path; eight Gaussians -> moons only) and from two solvers on the zoo teacher of each data set (moons_flow,
8g_to_moons): DDIM and DPM-Solver++(2M) (the package default and Ch. 9's best measured), at the same NFE and at 50.

Metric: exact W2 between n samples and n fresh target points, beside the floor (W2 of two independent target
draws, averaged over --repeats pairs); ratio = W2 / floor (1 = indistinguishable at this n).  Each entry is
{"data", "method", "sample"(n, nfe, generator) -> (n, 2), "train_s"}; a sampler raises ValueError for an NFE
it cannot do, and the cell is left out.  Images (MNIST-5k, FDD and class accuracy) are not covered yet.
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
TEACHERS = {"moons": ("moons_flow", None), "8g_to_moons": ("8g_to_moons", "eight_gaussians")}
NFES = (1, 2, 4)


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
                        "train_s": float(manifest.get(name, {}).get("train_seconds", math.nan)), "nfes": NFES + (50,)})
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
                    "train_s": float(manifest[name].get("train_seconds", math.nan))})
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


def run(n: int, repeats: int, seed: int) -> list[dict]:
    entries = solver_entries() + reflow_entries() + chapter_entries()
    g = torch.Generator().manual_seed(seed)
    moons_floor = dl.metrics.floor(dl.metrics.w2_exact, lambda m, generator=None: target("moons", m, generator), n,
                                   repeats=repeats, generator=g)
    floors = dict.fromkeys(DATA, moons_floor)         # both data sets end at moons: one floor
    rows = []
    for e in entries:
        if e["data"] not in DATA:
            continue
        for nfe in e.get("nfes", NFES):
            gen = torch.Generator().manual_seed(seed + nfe)
            t0 = time.perf_counter()
            try:
                x = e["sample"](n, nfe, gen)
            except ValueError:
                continue
            w2 = dl.metrics.w2_exact(x.float(), target(e["data"], n, gen))
            rows.append({"data": e["data"], "method": e["method"], "nfe": nfe, "metric": "W2", "value": round(w2, 4),
                         "floor": round(floors[e["data"]], 4), "ratio": round(w2 / floors[e["data"]], 3),
                         "accuracy": "", "train_s": round(float(e.get("train_s", math.nan)), 1)})
            print(f"{e['data']:12s} {e['method']:32s} NFE {nfe:3d}  W2 {w2:.3f}  ratio {w2 / floors[e['data']]:.2f}  "
                  f"({time.perf_counter() - t0:.1f} s)", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    """One markdown table: a row per (data, method), W2 / floor at NFE 1, 2, 4 (and 50 for the solvers)."""
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
        out.append(f"| {d} | {m} | " + " | ".join(f"{cell[c]['ratio']:.2f}" if c in cell else "-" for c in cols)
                   + f" | {train:g} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="samples per cell (W2 is exact: O(n^3))")
    ap.add_argument("--repeats", type=int, default=3, help="target pairs averaged for the floor")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", help="write the rows (data, method, nfe, metric, value, floor, ratio, accuracy, train_s)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = run(args.n, args.repeats, args.seed)
    floors = {r["data"]: r["floor"] for r in rows}
    print(f"\nW2 / floor at n = {args.n} (floors: " + ", ".join(f"{d} {f:.3f}" for d, f in floors.items()) + ")")
    print(table(rows))
    for d in DATA:
        best = {k: min((r["ratio"] for r in rows if r["data"] == d and r["nfe"] == k
                        and "teacher" not in r["method"]), default=math.nan) for k in (1, 4)}
        print(f"{d}: best one-step ratio {best[1]:.2f} (goal <= 1.5), best four-step {best[4]:.2f} (goal <= 1.15)")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["data", "method", "nfe", "metric", "value", "floor", "ratio",
                                              "accuracy", "train_s"])
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
