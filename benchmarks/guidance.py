"""Benchmark for chapter 08: guided samplers against exact answers, and CFG / inverse problems on digits.

    OMP_NUM_THREADS=1 python benchmarks/guidance.py                    # every table (digits: minutes)
    OMP_NUM_THREADS=1 python benchmarks/guidance.py --skip-digits      # the exact 2D tables only
    OMP_NUM_THREADS=1 python benchmarks/guidance.py --n-digits 200     # fewer digit samples per setting

1. 2D inverse problems (recipes.guide.TASKS: inpaint x1, denoise, blur) on the chapter's mixture with exact
   prior scores: each method (exact posterior model, Score-SDE, ILVR, DPS, PiGDM) at NFE 20, 50, 100 (DDIM,
   n = 1000): posterior-mean error beside the Monte Carlo error sqrt(tr Cov)/sqrt(n), exact W2 to n exact
   posterior draws beside the floor (5 pairs, mean +- sd), TV of the component weights.  A method whose error
   does not fall with NFE is marked: its approximate field, not the solver, is the error.
2. The tilted-density gap: exact CFG for class 0 (DPM-Solver++(2M), NFE 50, n = 4000) against
   p(x|c)^omega p(x)^(1-omega)/Z on a 40 x 40 grid: TV beside the floor of n exact tilted draws, mean
   p(c|x), spread; plain and limited to recipes.guide.INTERVAL.
3. Digits (MNIST-5k U-Nets from the zoo): FDD beside its floor and class accuracy (dl.digit_eval) against
   omega for plain and interval CFG (NFE 20, n per setting); inpainting (top half seen, sigma_y = 0.05) PSNR
   and residual per method at NFE 20 and 50 on 32 held-out digits.

Wall seconds and the load average are printed: the machine may be shared.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import torch  # noqa: E402

import dpm_lab as dl  # noqa: E402
from dpm_lab.recipes import guide  # noqa: E402


def inverse_2d(n: int = 1000) -> None:
    mix = guide.mixture()
    print(f"\n== 2D inverse problems, exact prior scores, DDIM, n = {n} ==")
    for task in guide.TASKS:
        A, y, sy = guide.measurement(task)
        post = mix.posterior(A, y, sy)
        g = torch.Generator().manual_seed(0)
        fl = dl.metrics.floor_spread(dl.metrics.w2_exact,
                                     lambda m, generator=None, post=post: post.sample(m, generator=generator,
                                                                                  dtype=torch.float64),
                                     n, repeats=5, generator=g)
        ref = post.sample(n, generator=g, dtype=torch.float64)
        mc = float(post.cov().trace().sqrt()) / n ** 0.5
        print(f"\n{task}: exact weights {post.weights.numpy().round(3)}, MC error {mc:.3f}, "
              f"W2 floor {fl.mean:.3f} +- {fl.std:.3f}")
        print(f"{'method':>16} {'NFE':>4} | {'mean err':>8} {'W2':>7} {'mode TV':>7}")
        for method in guide.METHODS:
            errs = []
            for nfe in (20, 50, 100):
                x = guide.inverse_samples(mix, task, method, n=n, nfe=nfe)
                k = post.data_posterior(x).argmax(1)
                w = torch.bincount(k, minlength=post.n_components).double() / n
                err = float((x.mean(0) - post.mean()).norm())
                errs.append(err)
                print(f"{method:>16} {nfe:4d} | {err:8.3f} {dl.metrics.w2_exact(x, ref):7.3f} "
                      f"{float(0.5 * (w - post.weights).abs().sum()):7.3f}")
            if errs[-1] > 5 * mc and errs[-1] > 0.8 * errs[1]:
                print(f"{'':>16}      ^ {method}: the error does not fall with NFE (from 50 to 100: "
                      f"{errs[1]:.3f} -> {errs[-1]:.3f}, > 5 MC errors): the approximation, not the solver")


def tilted_gap(n: int = 4000) -> None:
    mix = guide.mixture()
    print(f"\n== the tilted-density gap: exact CFG, class 0, NFE 50, n = {n} ==")
    print(f"{'omega':>5} {'interval':>8} | {'TV':>6} {'floor':>14} | {'p(c|x)':>6} {'spread':>6}")
    g = torch.Generator().manual_seed(1)
    for omega in (0.0, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0):
        law = guide.tilted_law(mix, 0, omega)
        fm, fs = law.floor(n, repeats=5, generator=g)
        for interval in (False, True):
            x = guide.cfg_samples(mix, 0, omega, interval=interval, n=n, nfe=50)
            pc = float(mix.class_posterior(x, 0.0, guide.SCHEDULE)[:, 0].mean())
            print(f"{omega:5.1f} {str(interval):>8} | {law.tv(x):6.3f} {fm:7.3f} +- {fs:.3f} | {pc:6.3f} "
                  f"{guide.spread(x):6.3f}")


def digits(n: int) -> None:
    model = dl.zoo.load("mnist5k_cond")
    print(f"\n== MNIST-5k CFG (mnist5k_cond, DPM-Solver++(2M), NFE 20, n = {n} per setting) ==")
    print(f"{'omega':>5} {'interval':>8} | {'FDD':>7} {'floor':>14} | {'accuracy':>8}")
    labels = torch.arange(n) % 10
    for omega in (0.0, 1.0, 2.0, 3.0, 5.0):
        for interval in (False, True):
            x = dl.recipes.images.generate(model, labels, omega=omega, nfe=20,
                                           generator=torch.Generator().manual_seed(2),
                                           lam_interval=guide.INTERVAL if interval else None)
            r = dl.digit_eval.evaluate(x, labels, generator=torch.Generator().manual_seed(3), verbose=False)
            print(f"{omega:5.1f} {str(interval):>8} | {r['fdd']:7.2f} {r['fdd_floor']:7.2f} +- {r['fdd_floor_std']:.2f} | "
                  f"{r['conditional_accuracy']:8.3f}")

    prior = dl.zoo.load("mnist5k_uncond")
    truth = dl.images.load_mnist5k("heldout")[0][::31][:32]
    mask = torch.ones(1, 28, 28)
    mask[:, 14:] = 0
    A, sy = dl.guidance.mask_operator(mask), 0.05
    y = A(truth) + sy * torch.randn(truth.shape, generator=torch.Generator().manual_seed(4))
    methods = {"Score-SDE": lambda: dl.guidance.ScoreSDEProjection(prior, A, y, sy),
               "ILVR": lambda: dl.guidance.ILVRProjection(prior, A, y, sy),
               "PiGDM": lambda: dl.guidance.PiGDM(prior, A, y, sy, data_var=0.5),
               "DPS": lambda: dl.guidance.DPS(prior, A, y, sy, 20.0, normalized=True)}
    print(f"\n== MNIST-5k inpainting (top half seen, sigma_y = {sy}), mnist5k_uncond, DDIM, {len(truth)} digits ==")
    print(f"{'method':>10} {'NFE':>4} | {'PSNR dB':>7} {'residual':>8} (noise level sigma_y sqrt(M) = {sy * y[0].numel() ** 0.5:.2f})")
    for name, make in methods.items():
        for nfe in (20, 50):
            xT = torch.randn(truth.shape, generator=torch.Generator().manual_seed(5))
            with torch.no_grad():
                out = dl.samplers.solve(make(), xT, nfe=nfe, method="ddim", denoise=True).clamp(-1, 1)
            psnr = float((10 * torch.log10(4 / ((out - truth) ** 2).flatten(1).mean(1))).mean())
            resid = float((A(out) - y).flatten(1).norm(dim=1).mean())
            print(f"{name:>10} {nfe:4d} | {psnr:7.2f} {resid:8.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-digits", action="store_true")
    p.add_argument("--skip-2d", action="store_true")
    p.add_argument("--n-digits", type=int, default=500)
    args = p.parse_args()
    t0 = time.time()
    print(f"threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_2d:
        inverse_2d()
        tilted_gap()
    if not args.skip_digits:
        digits(args.n_digits)
    print(f"\nwall {time.time() - t0:.0f} s, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
