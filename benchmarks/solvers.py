"""Benchmark: PF-ODE solver error against a DOP853 reference on exact mixture fields (Ch. 9).

For every deterministic solver, schedule and time grid, run at NFE 5, 10, 20, 50, 100 from the
same x_T ~ p_{t_max} and report the per-coordinate RMS error sqrt(mean (x - x_ref)^2) at t_min.
Problems: a 2D anisotropic 3-component mixture and a 64-dimensional 8-component mixture with
random anisotropic covariances.  Everything runs in float64 with exact fields, so the numbers
are discretisation error only.

    OMP_NUM_THREADS=1 python benchmarks/solvers.py            # full table (a few minutes on 1 core)
    OMP_NUM_THREADS=1 python benchmarks/solvers.py --quick    # 2D only, NFE <= 50
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from dpm_lab import gmm, grids, samplers, schedules  # noqa: E402

SOLVERS = ["euler", "heun", "rk4", "ddim", "dpm_solver_2", "dpm_solver_3", "deis", "dpmpp_2s", "dpmpp_2m",
           "dpmpp_3m", "edm"]
NFES = [5, 10, 20, 50, 100]
GRIDS = ["uniform", "lambda", "edm"]
HIGH_NFES = [200, 500, 1000, 2000, 4000]                    # float64 floor check, lambda grid only
HIGH_SOLVERS = ["dpmpp_2m", "dpm_solver_3", "deis", "dpmpp_3m", "rk4"]


def mixture_2d() -> gmm.GaussianMixture:
    covs = [[[0.3, 0.1], [0.1, 0.15]], [[0.1, 0.0], [0.0, 0.4]], [[0.02, 0.0], [0.0, 0.2]]]
    return gmm.GaussianMixture([0.3, 0.5, 0.2], [[-1.0, 0.5], [1.0, -0.3], [0.2, 1.5]], covs)


def mixture_64d(seed: int = 0, K: int = 8, D: int = 64) -> gmm.GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(K, D, generator=g, dtype=torch.float64) * 0.5
    q, _ = torch.linalg.qr(torch.randn(K, D, D, generator=g, dtype=torch.float64))
    evals = torch.exp(torch.empty(K, D, dtype=torch.float64).uniform_(math.log(0.01), math.log(0.5), generator=g))
    covs = q @ torch.diag_embed(evals) @ q.transpose(1, 2)
    covs = 0.5 * (covs + covs.transpose(1, 2))
    return gmm.GaussianMixture(torch.full((K,), 1.0 / K), means, covs)


def setups(quick: bool):
    out = [("vp", schedules.VPLinear(), 1.0), ("edm", schedules.EDM(), 1.0)]
    if not quick:
        out.append(("flow", schedules.RectifiedFlow(), 1 - 1e-4))  # lambda/edm grids need alpha_{t_max} > 0
    return out


def run(mix, sched, t_max: float, batch: int, nfes, gen, grid_kinds=GRIDS, solvers=SOLVERS) -> dict:
    """errors[(grid, solver)] = [RMS error at each NFE] (nan where one step needs more NFE), and the
    same with the median over samples of the per-sample RMS instead of the mean."""
    model = mix.model(sched)
    x_T = mix.sample_marginal(batch, t_max, sched, generator=gen, dtype=torch.float64)
    t_min = sched.t_eps
    ref = samplers.solve(model, x_T, [t_max, t_min], "dop853", rtol=1e-13, atol=1e-13)
    errors, medians = {}, {}
    for kind in grid_kinds:
        for name in solvers:
            row, med = [], []
            for nfe in nfes:
                per = samplers.SOLVERS[name].nfe_per_step
                if nfe < per:
                    row.append(float("nan"))
                    med.append(float("nan"))
                    continue
                grid = grids.time_grid(sched, nfe // per, kind, t_min=t_min, t_max=t_max)
                per_sample = ((samplers.solve(model, x_T, grid, name) - ref) ** 2).mean(1)   # (B,)
                row.append(per_sample.mean().sqrt().item())
                med.append(per_sample.median().sqrt().item())
            errors[(kind, name)], medians[(kind, name)] = row, med
    return errors, medians


def fitted_order(nfes, row) -> float:
    """Least-squares slope of -log(error) against log(NFE) over the last three NFEs."""
    pts = [(math.log(n), math.log(e)) for n, e in zip(nfes[-3:], row[-3:]) if e == e and e > 0]
    if len(pts) < 2:
        return float("nan")
    mx, my = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    return -sum((a - mx) * (b - my) for a, b in pts) / sum((a - mx) ** 2 for a, _ in pts)


def print_table(title: str, errors: dict, nfes) -> None:
    print(f"\n## {title}   (per-coordinate RMS error vs DOP853; order = slope over the last 3 NFEs)")
    head = "| grid | solver | " + " | ".join(f"NFE {n}" for n in nfes) + " | order |"
    print(head)
    print("|" + "---|" * (len(nfes) + 3))
    for (kind, name), row in errors.items():
        cells = " | ".join("-" if e != e else f"{e:.1e}" for e in row)
        print(f"| {kind} | {name} | {cells} | {fitted_order(nfes, row):.2f} |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2D problem, VP and EDM, NFE <= 50")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    nfes = NFES[:-1] if args.quick else NFES
    problems = [("2D mixture", mixture_2d())] + ([] if args.quick else [("64D mixture", mixture_64d())])
    summary = []
    start = time.time()
    for pname, mix in problems:
        for sname, sched, t_max in setups(args.quick):
            gen = torch.Generator().manual_seed(0)
            errors, medians = run(mix, sched, t_max, args.batch, nfes, gen)
            print_table(f"{pname}, schedule {sname}, t in [{sched.t_eps:g}, {t_max:g}]", errors, nfes)
            if not args.quick:
                high, _ = run(mix, sched, t_max, args.batch, HIGH_NFES, torch.Generator().manual_seed(0),
                           grid_kinds=["lambda"], solvers=HIGH_SOLVERS)
                print_table(f"{pname}, schedule {sname}: high NFE (float64 floor)", high, HIGH_NFES)
                errors.update({("lambda@high", k[1]): v for k, v in high.items()})
            i10 = nfes.index(10)
            ddim = errors[("uniform", "ddim")][i10]
            best = min((row[i10], f"{name} ({kind})") for (kind, name), row in errors.items()
                       if "@" not in kind and row[i10] == row[i10])
            med_ratio = min(row[i10] for row in medians.values() if row[i10] == row[i10]) / \
                medians[("uniform", "ddim")][i10]
            floor = min(e for row in errors.values() for e in row if e == e)
            summary.append((pname, sname, ddim, best, med_ratio, floor))
    print("\n## Goal: best solver at NFE 10 vs DDIM on the uniform grid; smallest error at any NFE")
    print("| problem | schedule | DDIM uniform @10 | best @10 | ratio | ratio of medians | min error |")
    print("|---|---|---|---|---|---|---|")
    for pname, sname, ddim, (err, who), med, floor in summary:
        print(f"| {pname} | {sname} | {ddim:.2e} | {err:.2e} {who} | {err / ddim:.3f} | {med:.3f} | {floor:.1e} |")
    print(f"\n(total {time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
