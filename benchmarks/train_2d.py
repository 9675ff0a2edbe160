"""Benchmark: training time of the 2D zoo recipes until their samples are within 1.3x of the W2 floor.

    OMP_NUM_THREADS=1 python benchmarks/train_2d.py                 # all 2D recipes + the reference loop
    OMP_NUM_THREADS=1 python benchmarks/train_2d.py --recipes 8g_to_moons moons_flow --ref-steps 20000
    OMP_NUM_THREADS=1 python benchmarks/train_2d.py --quick          # a smoke run: 8g_flow, 500 steps

For each recipe, train with dpm_lab.train.fit and every `--every` steps sample 2,000 points from the
EMA model with a Heun PF-ODE solver (our own small loop, NFE = 2 x steps) and compute the exact W2
(optimal assignment) against 2,000 fresh target points.  The floor is W2 between two independent
2,000-point target draws (mean of 10 pairs); the model's W2 is the mean over 3 blocks of 2,000.  Reported: the first step and the training seconds (evaluation
excluded) at which W2 <= 1.3 x floor, and the best ratio.

Reference: a plain flow-matching loop in the configuration of the torchcfm tutorial (MLP 3 x 64 SELU on
[x, t], batch 256, Adam 1e-3 constant, 20k steps, source eight Gaussians -> target moons, linear
interpolant, no EMA), timed the same way.  Convention note: the package puts data at t = 0, so for
transport the *source* plays the noise end: x_t = (1 - t) x_moons + t x_8g, sampled from t = 1 to 0.
The reference loop uses torchcfm's own convention (t = 0 source), which is the same path with t -> 1 - t.

Timings are wall-clock on one CPU thread of a shared machine: read the ratios, not the seconds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # run from a checkout without installing
from dpm_lab import datasets, metrics, zoo
from dpm_lab.grids import time_grid
from dpm_lab.recipes.toy import TOY_RECIPES
from dpm_lab.train import fit

N_EVAL = 2000
REPEATS = 3          # W2 at n = 2000 is noisy (mode counts fluctuate): average 3 blocks; floor over 10 pairs


@torch.no_grad()
def heun(velocity, x, grid):
    """Heun's method for dx/dt = velocity(x, t) along the grid (any direction); last step Euler if it hits t = 0."""
    for t, s in zip(grid[:-1], grid[1:]):
        t, s = float(t), float(s)
        h = s - t
        v = velocity(x, t)
        x_e = x + h * v
        x = x + 0.5 * h * (v + velocity(x_e, s)) if s > 0 else x_e
    return x


def recipe_sampler(name):
    recipe = zoo.get(name)
    spec = recipe.spec
    target = recipe.data(spec)
    if spec["data"] == "eight_gaussians_labelled":
        mix = datasets.eight_gaussians_mixture()
        target = lambda n, generator=None: mix.sample(n, generator=generator)   # noqa: E731

    def source(n, generator):
        """Start points at t = 1 and labels (conditional recipes: labels drawn like the data's)."""
        c = None
        if spec["data"] == "eight_gaussians_labelled":
            c = datasets.eight_gaussians_mixture().sample(n, generator=generator, return_labels=True)[1]
        if spec.get("source"):
            return datasets.sample_2d(spec["source"], n, generator=generator), c
        return torch.randn(n, 2, generator=generator), c

    return recipe, target, source


def sample_model(model, source, g, n, n_steps=50):
    sched = model.schedule
    grid = time_grid(sched, n_steps, "uniform", t_min=0.0) if sched.name == "flow" else time_grid(sched, n_steps, "lambda")
    x1, c = source(n, g)
    return heun(lambda x, t: model.velocity(x, t, c), x1, grid)


def w2_ratio(samples, target, g, fl):
    """Mean exact W2 of REPEATS blocks of N_EVAL model samples vs fresh target draws, over the floor."""
    ws = [metrics.w2_exact(block, _x(target(N_EVAL, generator=g))) for block in samples.split(N_EVAL)]
    return sum(ws) / len(ws) / fl


def bench_recipe(name, every, floors, steps=None):
    recipe, target, source = recipe_sampler(name)
    spec = recipe.spec
    if spec["data"] not in floors:
        g = torch.Generator().manual_seed(999)
        floors[spec["data"]] = metrics.floor(metrics.w2_exact, lambda n, generator: _x(target(n, generator=generator)),
                                             N_EVAL, generator=g, repeats=10)
    fl = floors[spec["data"]]
    model = recipe.new_model()
    kw = {**spec["train"], **({"steps": steps} if steps else {})}
    g_eval = torch.Generator().manual_seed(7)
    hit, best = None, (float("inf"), 0, 0.0)
    for rec in fit(model, recipe.loss(spec), recipe.data(spec), seed=spec["seed"], device="cpu", log_every=every, **kw):
        with rec.ema.applied(model):
            ratio = w2_ratio(sample_model(model, source, g_eval, REPEATS * N_EVAL), target, g_eval, fl)
        if ratio < best[0]:
            best = (ratio, rec.step, rec.elapsed)
        if hit is None and ratio <= 1.3:
            hit = (rec.step, rec.elapsed)
    return {"name": name, "floor": fl, "hit": hit, "best": best, "steps": kw["steps"], "total": rec.elapsed}


def _x(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def bench_reference(steps, every, fl):
    """The torchcfm-tutorial configuration, written plainly (t = 0 source, t = 1 target)."""
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(3, 64), nn.SELU(), nn.Linear(64, 64), nn.SELU(), nn.Linear(64, 64), nn.SELU(),
                            nn.Linear(64, 2))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    g_eval = torch.Generator().manual_seed(7)
    best, elapsed, hit = (float("inf"), 0, 0.0), 0.0, None
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        x0 = datasets.sample_2d("eight_gaussians", 256, generator=g)
        x1 = datasets.sample_2d("moons", 256, generator=g)
        t = torch.rand(256, 1, generator=g)
        xt = (1 - t) * x0 + t * x1
        loss = ((net(torch.cat([xt, t], 1)) - (x1 - x0)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        elapsed += time.perf_counter() - t0
        if step % every == 0:
            grid = torch.linspace(0, 1, 51)
            vel = lambda x, tt: net(torch.cat([x, torch.full((x.shape[0], 1), tt)], 1))   # noqa: E731
            with torch.no_grad():
                xs = heun(vel, datasets.sample_2d("eight_gaussians", REPEATS * N_EVAL, generator=g_eval), grid)
            ratio = w2_ratio(xs, lambda n, generator: datasets.sample_2d("moons", n, generator=generator), g_eval, fl)
            if ratio < best[0]:
                best = (ratio, step, elapsed)
            if hit is None and ratio <= 1.3:
                hit = (step, elapsed)
    return {"name": "reference (torchcfm cfg)", "floor": fl, "best": best, "hit": hit, "total": elapsed, "steps": steps}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--recipes", nargs="*", default=None)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--ref-steps", type=int, default=20000)
    p.add_argument("--ref-every", type=int, default=1000)
    p.add_argument("--steps", type=int, default=None, help="override every recipe's training steps")
    p.add_argument("--quick", action="store_true", help="smoke run: 8g_flow and the reference, 500 steps each")
    args = p.parse_args()
    if args.quick:
        args.recipes, args.steps, args.ref_steps, args.ref_every = args.recipes or ["8g_flow"], 500, 500, 250
    torch.set_num_threads(1)
    names = args.recipes or [r.name for r in TOY_RECIPES]
    floors, rows = {}, []
    for n in names:
        rows.append(bench_recipe(n, args.every, floors, args.steps))
        r = rows[-1]
        print(f"  {n}: hit={r['hit']} best={r['best'][0]:.2f}x at step {r['best'][1]}", flush=True)
    ref = None
    if args.ref_steps:
        fl = floors.get("moons") or metrics.floor(metrics.w2_exact, lambda n, generator: datasets.sample_2d(
            "moons", n, generator=generator), N_EVAL, generator=torch.Generator().manual_seed(999), repeats=10)
        ref = bench_reference(args.ref_steps, args.ref_every, fl)
    print(f"\n{'recipe':26s} {'floor':>6s} {'steps@1.3x':>10s} {'sec@1.3x':>8s} {'best/floor':>10s} "
          f"{'total s':>7s} {'speedup':>8s}")
    for r in rows:
        s, sec = (r["hit"] if r["hit"] else ("-", float("nan")))
        speed = f"{ref['best'][2] / sec:.1f}x" if ref and r["hit"] else "-"
        print(f"{r['name']:26s} {r['floor']:6.3f} {s!s:>10s} {sec:8.1f} {r['best'][0]:10.2f} {r['total']:7.1f} {speed:>8s}")
    if ref:
        s, sec = ref["hit"] if ref["hit"] else ("-", float("nan"))
        print(f"{ref['name']:26s} {ref['floor']:6.3f} {s!s:>10s} {sec:8.1f} {ref['best'][0]:10.2f} {ref['total']:7.1f}")
        print(f"reference: best {ref['best'][0]:.2f}x floor at step {ref['best'][1]} after {ref['best'][2]:.1f} s")
        print("speedup = reference seconds to its best W2 / recipe seconds to 1.3x floor")


if __name__ == "__main__":
    main()
