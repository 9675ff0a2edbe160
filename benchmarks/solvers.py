"""Benchmark: PF-ODE solver error against a DOP853 reference on exact mixture fields (Ch. 9).

For every deterministic solver, schedule and time grid, run at NFE 5, 10, 20, 50, 100 from the
same x_T ~ p_{t_max} and report the per-coordinate RMS error sqrt(mean (x - x_ref)^2) at t_min.
Problems: a 2D anisotropic 3-component mixture and a 64-dimensional 8-component mixture with
random anisotropic covariances.  Everything runs in float64 with exact fields, so the numbers
are discretisation error only.

    OMP_NUM_THREADS=1 python benchmarks/solvers.py            # full table (a few minutes on 1 core)
    OMP_NUM_THREADS=1 python benchmarks/solvers.py --quick    # 2D only, NFE <= 50
    OMP_NUM_THREADS=1 python benchmarks/solvers.py --policies # grids x lower-order-final: the defaults' evidence
    OMP_NUM_THREADS=1 python benchmarks/solvers.py --diffusers  # side by side with diffusers' schedulers
    OMP_NUM_THREADS=1 python benchmarks/solvers.py --orders     # Ch. 9: measured order per solver, asymptotic window
    OMP_NUM_THREADS=1 python benchmarks/solvers.py --paradigms  # Ch. 9: ParaDiGMS sweeps and evaluations vs sequential

Every run uses the package's plans (lower-order final steps, order schedules) at the number of steps
`samplers.steps_for_nfe(method, nfe)` gives.

--policies measures DPM-Solver++(2M), DPM-Solver++(3M) and DEIS on the four grids (uniform, lambda,
edm, quadratic), with and without lower-order final steps, on the 2D mixture under VP, EDM and flow;
the per-sample RMSE sqrt(mean_b ||x_b - x_ref,b||^2) at NFE 5, 10, 20.  This is what chose
grids.default_spacing and the multistep plans.

--diffusers (needs `pip install diffusers`, a benchmark-only dependency that the package and the
tests never import; it does not pull a new torch: check with `pip install --dry-run diffusers`)
drives diffusers' DDIMScheduler, DPMSolverMultistepScheduler (orders 2 and 3),
UniPCMultistepScheduler and DEISMultistepScheduler with the EXACT eps of the 2D mixture under
dl.VPLinear(), and prints the per-sample RMSE against the exact PF-ODE solution (the mixture's
flow_map, DOP853 at rtol 1e-12) beside ours at NFE 5, 10, 20.  How times are matched:
  * diffusers' 1000 training steps are given trained_betas with alphas_cumprod[k] = alpha_{t}^2 at
    t = (k + 1)/1000 of VPLinear (beta_k = 1 - alpha_{t_{k+1}}^2 / alpha_{t_k}^2, t_k = k/1000), so
    diffusers' index k is our continuous time t = (k + 1)/1000 and its sigma_k = sqrt((1 -
    alphas_cumprod[k]) / alphas_cumprod[k]) is our sigma_t / alpha_t = exp(-lambda_t);
  * before each step the model output is our exact eps*(x, t) at the time the scheduler is at:
    t = VPLinear.inv_lam(-log sigma) from the scheduler's own `sigmas[i]` (DDIM, which has none, at
    t = (timestep + 1)/1000); diffusers' x_t is in the same variance-preserving units as ours;
  * the run starts at the scheduler's first time (t = 1 for 'linspace' spacing, 0.901 for DDIM's
    'leading' spacing at 10 steps) from a draw of p_t there, and ends at its final sigma: 0 (t = 0)
    for final_sigmas_type='zero' and DDIM's set_alpha_to_one, 1e-3 for 'sigma_min'; the reference is
    the exact flow map from that start to that end.  Ours runs dl.solve(model, x, nfe=N, method=...)
    from t = 1 to t_eps = 1e-3 (grids.default_spacing, lower-order final steps).
  * diffusers' defaults are kept except DDIM's clip_sample=True, which clips x0_hat to [-1, 1] (an
    image-range assumption that this mixture breaks), set to False.  NFE = inference steps (one model
    call per step in all five).
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
GRIDS = list(grids.GRIDS)                               # uniform, lambda, edm, quadratic
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
                try:
                    n = samplers.steps_for_nfe(name, nfe)
                except ValueError:                       # one step needs more than nfe evaluations
                    row.append(float("nan"))
                    med.append(float("nan"))
                    continue
                grid = grids.time_grid(sched, n, kind, t_min=t_min, t_max=t_max)
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
    ap.add_argument("--policies", action="store_true", help="grids x lower-order final steps (defaults' evidence)")
    ap.add_argument("--diffusers", action="store_true", help="side by side with diffusers' schedulers")
    ap.add_argument("--orders", action="store_true", help="Ch. 9 table: measured order of every solver")
    ap.add_argument("--paradigms", action="store_true", help="Ch. 9: ParaDiGMS sweeps and evaluations")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.orders or args.paradigms:
        if args.orders:
            print_orders(args.batch)
        if args.paradigms:
            print_paradigms()
        return
    if args.policies or args.diffusers:
        if args.policies:
            print_policies()
        if args.diffusers:
            print_diffusers()
        return
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


# -- Ch. 9: measured orders and ParaDiGMS ------------------------------------------------------------------
ORDER_SOLVERS = ["euler", "ddim", "heun", "dpm_solver_2", "dpm_solver_3", "deis", "dpmpp_2s", "dpmpp_2m", "dpmpp_3m",
                 "edm", "rk4"]


def print_orders(batch: int = 64) -> None:
    """The §9.6 table as measured orders: the 2D mixture under VP, lambda grid, 32/64/128 steps (the asymptotic
    window) and NFE 4/8/16 (pre-asymptotic); the slope of log error against log NFE (widgets.solvers.fitted_order)."""
    from dpm_lab.widgets.solvers import convergence, fitted_order
    mix, sch = mixture_2d(), schedules.VPLinear()
    model = mix.model(sch)
    x_T = mix.sample_marginal(batch, 1.0, sch, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = mix.flow_map(x_T, 1.0, sch.t_eps, sch, rtol=1e-12, atol=1e-12)
    print(f"\n## Measured orders (2D mixture, VP, lambda grid, {batch} points; per-sample RMSE vs DOP853 rtol 1e-12)")
    print("| solver | declared | window NFEs | errors | measured | NFE 4-16 slope | within 0.2 |")
    print("|---|---|---|---|---|---|---|")
    for name in ORDER_SOLVERS:
        solver = samplers.get_solver(name)
        nfes = [n * solver.nfe_per_step for n in (32, 64, 128)]
        errs = convergence(model, x_T, ref, name, nfes)
        p = fitted_order(nfes, errs)
        low = fitted_order([4, 8, 16], convergence(model, x_T, ref, name, [4, 8, 16]))
        print(f"| {name} | {solver.order} | {nfes} | {', '.join(f'{e:.1e}' for e in errs)} | {p:.2f} | {low:.2f} | "
              f"{abs(p - solver.order) <= 0.2} |")


def print_paradigms(n: int = 100) -> None:
    """ParaDiGMS (fast_solvers.paradigms) on the 2D mixture under VP, quadratic grid of n Euler steps: sweeps (rounds
    of batched calls) and model evaluations against the n sequential steps, and the distance to sequential Euler."""
    from dpm_lab import fast_solvers
    mix, sch = mixture_2d(), schedules.VPLinear()
    model = mix.model(sch)
    x_T = mix.sample_marginal(64, 1.0, sch, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grid = grids.time_grid(sch, n, "quadratic")
    seq = fast_solvers.euler_path(model, x_T, grid)
    print(f"\n## ParaDiGMS vs {n} sequential Euler steps (2D mixture, VP, quadratic grid, 64 points)")
    print("| window | tol | sweeps | evaluations | RMSE to sequential | wall s (this CPU) |")
    print("|---|---|---|---|---|---|")
    for window in (n, 20, 5):
        for tol in (0.0, 1e-6, 1e-3):
            start = time.perf_counter()
            res = fast_solvers.paradigms(model, x_T, grid, window=window, tol=tol)
            wall = time.perf_counter() - start
            print(f"| {window} | {tol:g} | {res.sweeps} | {res.evaluations} | {rmse(res.x, seq[-1]):.1e} | {wall:.3f} |")
    start = time.perf_counter()
    fast_solvers.euler_path(model, x_T, grid)
    print(f"| sequential | - | {n} | {n} | 0 | {time.perf_counter() - start:.3f} |")


# -- the defaults' evidence: grids x lower-order final steps -----------------------------------------------
def rmse(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Per-sample RMSE sqrt(mean_b ||x_b - ref_b||^2) (the comparison metric of --policies and --diffusers)."""
    return ((x.double() - ref.double()) ** 2).sum(1).mean().sqrt().item()


CMP_NFES = [5, 10, 20]


def print_policies(batch: int = 128) -> None:
    """Print DPM-Solver++(2M/3M) and DEIS on every grid with and without lower-order final steps."""
    mix = mixture_2d()
    for sname, sched in [("vp", schedules.VPLinear()), ("edm", schedules.EDM()), ("flow", schedules.RectifiedFlow())]:
        model = mix.model(sched)
        x_T = mix.sample_marginal(batch, 1.0, sched, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        ref = mix.flow_map(x_T, 1.0, sched.t_eps, sched, rtol=1e-12, atol=1e-12)
        print(f"\n## 2D mixture, schedule {sname}, t from 1 to {sched.t_eps:g}: per-sample RMSE "
              f"(default spacing: {grids.default_spacing(sched)})")
        print("| method | grid | lower-order final | " + " | ".join(f"NFE {n}" for n in CMP_NFES) + " |")
        print("|---|---|---|" + "---|" * len(CMP_NFES))
        for name in ["dpmpp_2m", "dpmpp_3m", "deis"]:
            for kind in grids.GRIDS:
                for lof in (False, True):
                    cells = []
                    for nfe in CMP_NFES:
                        try:
                            x = samplers.solve(model, x_T, nfe=nfe, method=name, spacing=kind, lower_order_final=lof)
                            cells.append(f"{rmse(x, ref):.4f}")
                        except ValueError:               # lambda/edm grids need alpha_1 > 0; deis needs alpha_s > 0
                            cells.append("-")
                    print(f"| {name} | {kind} | {'yes' if lof else 'no'} | " + " | ".join(cells) + " |")


# -- side by side with diffusers -----------------------------------------------------------------------------
def _diffusers_betas(sched, L: int = 1000):
    """trained_betas whose alphas_cumprod[k] is sched's alpha^2 at t = (k + 1)/L."""
    ts = torch.arange(L + 1, dtype=torch.float64) / L
    a2 = sched.alpha(ts) ** 2
    return (1 - a2[1:] / a2[:-1]).numpy()


def run_diffusers(cls, nfe: int, mix, sched, *, batch: int = 256, seed: int = 0,
                  **config) -> tuple[float, float, float]:
    """Drive a diffusers scheduler with the mixture's exact eps; return (RMSE, t_start, t_end)."""
    L = 1000
    sch = cls(num_train_timesteps=L, trained_betas=_diffusers_betas(sched, L), **config)
    sch.set_timesteps(nfe)
    sigmas = getattr(sch, "sigmas", None)

    def t_of_sigma(sig: float) -> float:
        return 0.0 if sig == 0 else min(1.0, float(sched.inv_lam(torch.tensor(-math.log(sig), dtype=torch.float64))))

    if sigmas is not None:
        times = [t_of_sigma(float(v)) for v in sigmas]           # n + 1 times, the last one the end
    else:                                                        # DDIM: index k is t = (k + 1)/L, the end t = 0
        times = [(int(k) + 1) / L for k in sch.timesteps] + [0.0 if sch.config.set_alpha_to_one else 1 / L]
    model = mix.model(sched)
    x_T = mix.sample_marginal(batch, times[0], sched, generator=torch.Generator().manual_seed(seed),
                              dtype=torch.float64)
    x = x_T.float()
    for i, k in enumerate(sch.timesteps):
        eps = model.predict(x.double(), times[i], "eps").float()
        x = sch.step(eps, k, x).prev_sample
    ref = mix.flow_map(x_T, times[0], times[-1], sched, rtol=1e-12, atol=1e-12)
    return rmse(x, ref), times[0], times[-1]


def run_ours(nfe: int, mix, sched, method=None, *, batch: int = 256, seed: int = 0, **opts) -> float:
    """dl.solve(model, x_T, nfe=nfe, method=method, **opts) from t = 1 to t_eps; per-sample RMSE."""
    model = mix.model(sched)
    x_T = mix.sample_marginal(batch, 1.0, sched, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ref = mix.flow_map(x_T, 1.0, sched.t_eps, sched, rtol=1e-12, atol=1e-12)
    return rmse(samplers.solve(model, x_T, nfe=nfe, method=method, **opts), ref)


OLD_DEFAULT = {"method": "dpmpp_2m", "spacing": "uniform", "lower_order_final": False, "max_step_ratio": None}


def print_diffusers() -> None:
    """Print our solvers beside diffusers' schedulers on the exact-score VP problem, and the defaults before/after."""
    try:
        import diffusers
    except ImportError:
        print("diffusers is not installed; it is a benchmark-only dependency: pip install diffusers "
              "(check first with pip install --dry-run diffusers that it leaves torch alone)")
        return
    mix, sched = mixture_2d(), schedules.VPLinear()
    rows = [("DDIMScheduler", diffusers.DDIMScheduler, {"clip_sample": False}, "ddim", {}),
            ("DPMSolverMultistep (order 2)", diffusers.DPMSolverMultistepScheduler, {}, "dpmpp_2m", {}),
            ("DPMSolverMultistep (order 3)", diffusers.DPMSolverMultistepScheduler, {"solver_order": 3}, "dpmpp_3m",
             {}),
            ("DPMSolverMultistep, final sigma_min", diffusers.DPMSolverMultistepScheduler,
             {"final_sigmas_type": "sigma_min"}, "dpmpp_2m", {}),
            ("UniPCMultistep (bh2, order 2)", diffusers.UniPCMultistepScheduler, {}, "dpmpp_2m", {}),
            ("DEISMultistep (order 2)", diffusers.DEISMultistepScheduler, {}, "deis", {"order": 2}),
            ("DEISMultistep (order 3)", diffusers.DEISMultistepScheduler, {"solver_order": 3}, "deis", {})]
    print(f"\n## Exact-score VP problem (2D 3-component anisotropic mixture, dl.VPLinear(), 256 points), diffusers "
          f"{diffusers.__version__}: per-sample RMSE vs the exact PF-ODE solution; ratio = ours / diffusers")
    print("| diffusers scheduler | diffusers t at NFE 10: start -> end | ours | " +
          " | ".join(f"NFE {n}: ours / diffusers / ratio" for n in CMP_NFES) + " |")
    print("|---|---|---|" + "---|" * len(CMP_NFES))
    for label, cls, config, ours, opts in rows:
        cells, span = [], ""
        for nfe in CMP_NFES:
            d, t0, t1 = run_diffusers(cls, nfe, mix, sched, **config)
            o = run_ours(nfe, mix, sched, ours, **opts)
            cells.append(f"{o:.4f} / {d:.4f} / {o / d:.2f}")
            span = f"{t0:.3g} -> {t1:.3g}" if nfe == 10 else span
        name = ours + "".join(f" {k}={v}" for k, v in opts.items())
        print(f"| {label} | {span} | {name} | " + " | ".join(cells) + " |")
    print("\n## Defaults before and after, beside diffusers' default DPMSolverMultistepScheduler (same problem)")
    print("| run | " + " | ".join(f"NFE {n}: RMSE (ratio to diffusers)" for n in CMP_NFES) + " |")
    print("|---|" + "---|" * len(CMP_NFES))
    ref = [run_diffusers(diffusers.DPMSolverMultistepScheduler, n, mix, sched)[0] for n in CMP_NFES]
    old = [run_ours(n, mix, sched, **OLD_DEFAULT) for n in CMP_NFES]
    new = [run_ours(n, mix, sched) for n in CMP_NFES]
    for label, row in [("old default: dpmpp_2m, uniform-t grid, no lower-order final", old),
                       (f"new default: dl.solve(model, x, nfe=N) = dpmpp_2m, {grids.default_spacing(sched)} grid, "
                        f"lower-order final", new),
                       ("diffusers DPMSolverMultistepScheduler() (t 1 -> 0)", ref)]:
        print(f"| {label} | " + " | ".join(f"{e:.4f} ({e / r:.2f}x)" for e, r in zip(row, ref)) + " |")


if __name__ == "__main__":
    main()
