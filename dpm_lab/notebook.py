"""Notebook setup: seeding, the thread count that makes small models fast, plotting defaults.

    import dpm_lab as dl
    dl.setup_notebook()      # first cell of every chapter
"""
from __future__ import annotations

import os
import time

import torch

from .utils import device, randn, seed


def _mlp_step_ms(threads: int, steps: int = 10) -> float:
    """Quick timing of a 3x64 MLP training step at batch 256 with `threads` threads (milliseconds)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.SiLU(), torch.nn.Linear(64, 64),
                                  torch.nn.SiLU(), torch.nn.Linear(64, 2))
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        x = randn((256, 3), generator=g)
        y = randn((256, 2), generator=g)
        start = time.perf_counter()
        for i in range(steps + 2):
            if i == 2:  # two warm-up steps are not timed
                start = time.perf_counter()
            opt.zero_grad()
            ((net(x) - y) ** 2).mean().backward()
            opt.step()
        return (time.perf_counter() - start) / steps * 1e3
    finally:
        torch.set_num_threads(old)


def choose_threads(verbose: bool = False) -> int:
    """Time a small-model step with 1 thread and with the default count; keep the faster.

    On small machines PyTorch's default OpenMP threads can make tiny steps 20-100x slower.
    The environment variable DPM_LAB_THREADS (a positive integer) overrides the measurement.
    Returns the thread count now set in torch.
    """
    forced = os.environ.get("DPM_LAB_THREADS")
    if forced:
        try:
            n = int(forced)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"DPM_LAB_THREADS must be a positive integer, got {forced!r}")
    else:
        default = torch.get_num_threads()
        one = _mlp_step_ms(1)
        many = _mlp_step_ms(default) if default > 1 else one
        n = 1 if one <= many else default
        if verbose:
            print(f"small-model step: 1 thread {one:.2f} ms, {default} threads {many:.2f} ms")
    torch.set_num_threads(n)
    return n


def _inline_figures() -> bool:
    """In a Jupyter kernel, draw figures inline whatever $MPLBACKEND says (a non-interactive backend such as
    Agg, set for test runs, would make every plt.show() a silent no-op and the stored notebook lose its
    figures).  Returns True when the inline backend was switched on."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None or type(ip).__name__ != "ZMQInteractiveShell":
        return False
    ip.run_line_magic("matplotlib", "inline")
    return True


def setup_notebook(seed_value: int = 0, *, threads: bool = True, verbose: bool = True) -> dict[str, object]:
    """One call at the top of every chapter: seed, pick threads, inline figures, set plotting defaults.

    Args:
        seed_value: seed for Python, NumPy and torch's global generators (`dl.seed`).
        threads: measure and set the thread count (`choose_threads`); False keeps torch's.
        verbose: print one line with the device.
    Returns a dict with the device, thread count and torch version.
    """
    import matplotlib

    _inline_figures()
    seed(seed_value)
    n = choose_threads() if threads else torch.get_num_threads()
    matplotlib.rcParams.update({"figure.dpi": 80, "axes.grid": True, "grid.alpha": 0.3,
                                "figure.figsize": (6.0, 4.0)})
    info = {"device": str(device()), "threads": n, "torch": torch.__version__.split("+")[0]}
    if verbose:
        print(f"dpm_lab ready: device={info['device']}")
    return info
