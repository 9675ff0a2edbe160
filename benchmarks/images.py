"""Image-model benchmark: Frechet digit distance (FDD) and conditional accuracy against NFE for
DDIM, DPM-Solver++(2M) and Euler-Maruyama on the shipped zoo checkpoints, plus training throughput.

    OMP_NUM_THREADS=1 python benchmarks/images.py [--quick] [--n 500] [--nfe 10 20 50] [--omega 2.0]
    OMP_NUM_THREADS=1 python benchmarks/images.py --solvers [--n 400] [--seeds 3] [--parts uncond why guided everywhere]
                                                  [--solver-nfe 5 10 20]   # Ch. 9: every fast solver at NFE 5, 10, 20

--solvers (Ch. 9) runs DDIM, DEIS, DPM-Solver-2, DPM-Solver++(2M) and DPM-Solver++(3M) on the
zoo's mnist5k_uncond and mnist5k_cond (CFG omega 2 inside the lambda interval; DDIM and 2M also with CFG everywhere) at NFE 5, 10, 20 on the
package's default grid for the schedule, the same x_T for every solver, and prints FDD (mean +- std over
--seeds noise draws, every solver on the same draws) beside its floor (mean +- std over 5 pairs of real
draws at the same n).  It adds intervention rows on the unconditional model at NFE 5 and 10: DPM-Solver++(2S)
(the midpoint scheme on x0 instead of eps) and DPM-Solver-2 / 2M on the lambda grid.

The FDD is printed beside its floor (held-out real vs training real at the same n).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch

import dpm_lab  # noqa: F401  (registers every recipe in the zoo)
from dpm_lab import digit_eval, zoo
from dpm_lab.recipes.images import generate
from dpm_lab.train import fit


def row(cells, widths):
    return " | ".join(str(c).rjust(w) for c, w in zip(cells, widths))


INTERVAL = (-1.69, 1.27)   # lambda range of Kynkaenniemi et al. (sigma/alpha in (0.28, 5.42])


def evaluate_cell(model, name, labels, n, omega, nfe, method, interval, floor, widths):
    g = torch.Generator().manual_seed(1)
    start = time.perf_counter()
    grid = "uniform" if method == "euler_maruyama" else "lambda"
    x = generate(model, labels, n=n, omega=omega, nfe=nfe, method=method, grid=grid, generator=g,
                 lam_interval=interval)
    res = digit_eval.evaluate(x, labels, generator=torch.Generator().manual_seed(2), verbose=False)
    acc = f"{res['conditional_accuracy']:.3f}" if labels is not None else "-"
    cfg = "-" if labels is None else (f"{omega:g} all t" if interval is None else f"{omega:g} interval")
    print(row([name, method, nfe, cfg, f"{res['fdd']:.2f}", f"{floor:.2f}", f"{res['fdd'] / floor:.2f}", acc],
              widths) + f"   ({time.perf_counter() - start:.0f} s)", flush=True)


def throughput(recipe_name: str, steps: int = 10, device: str | None = None) -> float:
    """Training throughput of a recipe in images per second on this machine.

    Times the recipe's own train.fit step (its loss, AdamW, clipping, EMA) over `steps` steps after
    2 warm-up steps: steps * batch / (elapsed at the last record - elapsed after warm-up).

    Args:
        recipe_name: a zoo recipe trained with train.fit.  steps: timed steps.  device: default "cpu".
    """
    recipe = zoo.get(recipe_name)
    batch = recipe.spec["train"]["batch"]
    records = list(fit(recipe.new_model(), recipe.loss(recipe.spec), recipe.data(recipe.spec), steps=steps + 2,
                       batch=batch, lr=1e-4, ema=0.999, seed=0, device=device or "cpu"))
    return steps * batch / (records[-1].elapsed - records[1].elapsed)


CH9_SOLVERS = ("ddim", "deis", "dpm_solver_2", "dpmpp_2m", "dpmpp_3m")
# Ch. 9 interventions on the unconditional model (why DPM-Solver-2 leads there): the same single-step
# midpoint scheme on x0 (dpmpp_2s: noise vs data prediction), and DPM-Solver-2 / 2M on the lambda grid.
CH9_WHY = [("dpmpp_2s", None), ("dpm_solver_2", "lambda"), ("dpmpp_2m", "lambda")]


PARTS = ("uncond", "why", "guided", "everywhere")


def _cells(nfes, cond_models=("mnist5k_cond",), parts=PARTS):
    """The runs (model, CFG interval, NFE, method, grid or None for the default), part by part in the order of `parts`:
    uncond (every solver, unconditional), why (the intervention rows, NFE <= 10), guided (CFG inside the interval),
    everywhere (CFG at every step, DDIM and 2M)."""
    cells = {"uncond": [("mnist5k_uncond", None, nfe, m, None) for nfe in nfes for m in CH9_SOLVERS],
             "why": [("mnist5k_uncond", None, nfe, m, g) for nfe in nfes if nfe <= 10 for m, g in CH9_WHY],
             "guided": [(c, INTERVAL, nfe, m, None) for c in cond_models for nfe in nfes for m in CH9_SOLVERS],
             "everywhere": [(c, None, nfe, m, None) for c in cond_models for nfe in nfes for m in ("ddim", "dpmpp_2m")]}
    for p in parts:
        if p not in cells:
            raise ValueError(f"unknown part {p!r}; parts: {', '.join(PARTS)}")
    return [cell for p in parts for cell in cells[p]]


def solver_table(n: int = 400, nfes=(5, 10, 20), omega: float = 2.0, seeds: int = 1, parts=PARTS) -> None:
    """Ch. 9: FDD of every fast solver at NFE 5, 10, 20 on mnist5k_uncond and mnist5k_cond.

    Each cell is run with `seeds` noise draws (seed k: prior and sampler noise from seed 1 + 10 k, the
    training images the FDD compares against from seed 2 + 10 k; every solver sees the same draws) and
    prints mean +- std over them, with the per-seed values; seed 0 is the single run of earlier tables.
    """
    from dpm_lab.grids import default_spacing
    widths = [15, 13, 7, 4, 12, 14, 7, 6]
    floor, spread = digit_eval.fdd_floor(n, "mnist5k", repeats=5, return_std=True,
                                         generator=torch.Generator().manual_seed(0))
    print(f"FDD floor at n = {n}: {floor:.2f} +- {spread:.2f} (real held-out vs real training, 5 pairs); "
          f"{seeds} seed(s) per cell\n")
    print(row(["model", "method", "grid", "NFE", "CFG omega", "FDD mean+-std", "ratio", "acc"], widths)
          + "   per seed")
    print("-" * 110)
    models = {}
    for name, interval, nfe, method, grid in _cells(nfes, parts=parts):
        model = models.setdefault(name, zoo.load(name))
        cond = zoo.recipe_of(model).n_classes > 0
        labels = torch.arange(n) % 10 if cond else None
        grid = grid or default_spacing(model.schedule)
        start = time.perf_counter()
        fdds, accs = [], []
        for k in range(seeds):
            with torch.no_grad():
                x = generate(model, labels, n=n, omega=omega if cond else 1.0, nfe=nfe, method=method, grid=grid,
                             generator=torch.Generator().manual_seed(1 + 10 * k), lam_interval=interval, batch=n)
            res = digit_eval.evaluate(x, labels, generator=torch.Generator().manual_seed(2 + 10 * k), verbose=False)
            fdds.append(res["fdd"])
            accs.append(res.get("conditional_accuracy", float("nan")))
        f = torch.tensor(fdds, dtype=torch.float64)
        std = float(f.std()) if seeds > 1 else float("nan")
        acc = f"{sum(accs) / seeds:.3f}" if cond else "-"
        cfg = "-" if not cond else (f"{omega:g} all t" if interval is None else f"{omega:g} interval")
        print(row([name, method, grid, nfe, cfg, f"{float(f.mean()):.1f}+-{std:.1f}", f"{float(f.mean()) / floor:.2f}",
                   acc], widths) + "   " + " ".join(f"{v:.1f}" for v in fdds)
              + f"   ({time.perf_counter() - start:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="n = 200 and NFE 10, 20 only")
    parser.add_argument("--n", type=int, default=500, help="samples per cell (<= 1000; digits8 uses <= 359)")
    parser.add_argument("--nfe", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--omega", type=float, default=2.0, help="CFG weight for conditional models")
    parser.add_argument("--models", nargs="+", default=["mnist5k_cond", "digits8_cond", "mnist5k_uncond", "digits8_uncond"])
    parser.add_argument("--solvers", action="store_true", help="Ch. 9: every fast solver at NFE 5, 10, 20")
    parser.add_argument("--seeds", type=int, default=1, help="--solvers: noise draws per cell (mean +- std)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), help=f"--solvers: which rows, in this order {PARTS}")
    parser.add_argument("--solver-nfe", type=int, nargs="+", default=[5, 10, 20], help="--solvers: the NFEs")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.solvers:
        solver_table(min(args.n, 1000) if args.n != 500 else 400, nfes=args.solver_nfe, seeds=args.seeds, parts=args.parts)
        return
    n, nfes = (200, [10, 20]) if args.quick else (args.n, args.nfe)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, cpu; "
          f"CFG interval = lambda in {INTERVAL}\n")
    widths = [15, 15, 4, 12, 7, 7, 7, 6]
    print(row(["model", "method", "NFE", "CFG omega", "FDD", "floor", "ratio", "acc"], widths))
    print("-" * 90)
    for name in args.models:
        try:
            model = zoo.load(name)
        except zoo.ZooError as err:
            print(f"{name}: not available ({err})")
            continue
        recipe = zoo.recipe_of(model)
        data = recipe.spec["data"]
        n_eff = min(n, 359) if data == "digits8" else min(n, 1000)
        floor = digit_eval.fdd_floor(n_eff, data, repeats=5, generator=torch.Generator().manual_seed(0))
        cond = recipe.n_classes > 0
        labels = torch.arange(n_eff) % 10 if cond else None
        for method in ("dpmpp_2m", "ddim", "euler_maruyama"):
            for nfe in nfes:
                for interval in ((None, INTERVAL) if cond and method == "dpmpp_2m" else (INTERVAL if cond else None,)):
                    evaluate_cell(model, name, labels, n_eff, args.omega if cond else 1.0, nfe, method, interval,
                                  floor, widths)
    print("\ntraining throughput (images / s, this machine, after warm-up):")
    for name in ("digits8_cond", "mnist5k_cond"):
        for threads in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(threads)
            print(f"  {name:14s} {threads} thread(s): {throughput(name, steps=5 if args.quick else 20):7.0f}")


if __name__ == "__main__":
    main()
