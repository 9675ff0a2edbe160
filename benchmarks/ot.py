"""Chapter 07 benchmark: log-domain Sinkhorn against POT, and the exact solver against POT's network simplex.

    OMP_NUM_THREADS=1 python benchmarks/ot.py [--n 1000] [--eps 0.01] [--sizes 500 1000 2000] [--device cpu|cuda]

1. Sinkhorn at eps = 0.01 on n vs n unit-scale points (N(0, I) against a shifted, squeezed Gaussian), float64:
   dl.ot.sinkhorn's entropic cost <C, P> against the exact OT cost, its iterations, its time, beside POT's
   ot.bregman.sinkhorn_log on the same problem with the same stopping threshold (POT checks the row marginal every
   10 iterations, as we do).  2. The exact solver (Hungarian for equal weights; HiGHS LP for unequal ones) against
   ot.emd for n = 500, 1000, 2000.  Times are wall-clock seconds of one run; say the machine's load beside them.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import dpm_lab as dl


def _pot():
    """POT (the `ot` package), imported without this file shadowing it (it is also named ot.py)."""
    import importlib
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    saved = sys.path[:]
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        mod = sys.modules.get("ot")
        if mod is not None and os.path.dirname(os.path.abspath(getattr(mod, "__file__", "") or "")) == here:
            del sys.modules["ot"]
        return importlib.import_module("ot")
    finally:
        sys.path = saved


def clouds(n: int, seed: int = 0, device: str = "cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=torch.float64)
    y = 0.5 * torch.randn(n, 2, generator=g, dtype=torch.float64) + torch.tensor([1.0, 0.5], dtype=torch.float64)
    return x.to(device), y.to(device)


def sinkhorn_table(n: int, eps: float, device: str) -> None:
    pot = _pot()
    x, y = clouds(n, device=device)
    exact = dl.ot.exact_ot(x.cpu(), y.cpu())[1]
    t = time.perf_counter()
    r = dl.ot.sinkhorn(x, y, eps, tol=1e-6, max_iter=20000)
    if device != "cpu":
        torch.cuda.synchronize()
    ours = time.perf_counter() - t
    M = pot.dist(x.cpu().numpy(), y.cpu().numpy())
    w = np.full(n, 1.0 / n)
    t = time.perf_counter()
    P, log = pot.bregman.sinkhorn_log(w, w, M, eps, numItermax=20000, stopThr=1e-6, log=True)
    theirs = time.perf_counter() - t
    print(f"Sinkhorn, eps = {eps}, {n} vs {n} points, float64, device {device}")
    print(f"  exact OT cost                 {exact:.5f}")
    print(f"  dl.ot.sinkhorn   <C, P> {float(r.cost):.5f} ({100 * (float(r.cost) / exact - 1):+.2f}% of exact), "
          f"{r.n_iter} iterations, marginal error {r.marginal_err:.1e}, {ours:.2f} s")
    print(f"  POT sinkhorn_log <C, P> {float((P * M).sum()):.5f} ({100 * (float((P * M).sum()) / exact - 1):+.2f}%), "
          f"{log['niter']} iterations, {theirs:.2f} s")
    print(f"  time ratio POT / ours: {theirs / ours:.2f}")


def exact_table(sizes: list[int]) -> None:
    pot = _pot()
    print("exact OT: dl.ot.exact_ot (uniform weights: Hungarian, scipy) against ot.emd (network simplex)")
    print(f"  {'n':>6} {'ours s':>8} {'POT s':>8} {'|cost diff|':>12}")
    for n in sizes:
        x, y = clouds(n, seed=1)
        t = time.perf_counter()
        _, c = dl.ot.exact_ot(x, y)
        ours = time.perf_counter() - t
        M = pot.dist(x.numpy(), y.numpy())
        w = np.full(n, 1.0 / n)
        t = time.perf_counter()
        c_pot = pot.emd2(w, w, M, numItermax=10_000_000)
        theirs = time.perf_counter() - t
        print(f"  {n:>6} {ours:>8.2f} {theirs:>8.2f} {abs(c - c_pot):>12.1e}")
    n = 300                                                     # unequal weights: the LP
    x, y = clouds(n, seed=2)
    a = torch.rand(n, generator=torch.Generator().manual_seed(3), dtype=torch.float64) + 0.1
    a = a / a.sum()
    t = time.perf_counter()
    _, c = dl.ot.exact_ot(x, y, a)
    ours = time.perf_counter() - t
    M = pot.dist(x.numpy(), y.numpy())
    t = time.perf_counter()
    c_pot = pot.emd2(a.numpy(), np.full(n, 1.0 / n), M)
    theirs = time.perf_counter() - t
    print(f"  unequal weights, n = {n}: HiGHS LP {ours:.2f} s, POT emd {theirs:.2f} s, |cost diff| {abs(c - c_pot):.1e}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--eps", type=float, default=0.01)
    p.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000])
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    import sys
    sys.stdout.reconfigure(line_buffering=True)          # each row is printed as soon as it is measured
    print(f"torch threads {torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"load average {os.getloadavg()[0]:.1f}")
    sinkhorn_table(args.n, args.eps, args.device)
    exact_table(args.sizes)


if __name__ == "__main__":
    main()
