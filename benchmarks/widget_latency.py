"""Benchmark: latency of every control of every explorer in dl.widgets (the widget standard:
at most 150 ms median and 300 ms worst from a change to the new picture, on a 2-core CPU).

In-process: a fresh explorer with its live view built, then each control swept over its range
by setting the control's value as the browser does (`widget.value = v`: the observer recomputes
(cached), redraws, renders the PNG and hands it to the view's ipywidgets.Image).  Each change is
timed in wall-clock and in CPU time of the thread (CPU time discounts other processes on a
loaded machine).  Cold caches: every value is new to the explorer.

In the browser (--browser, needs Chromium and `pip install -e ".[browser]"`; the machinery is the
browser tests' tests/browser/lab_driver.py): JupyterLab on a free local port with a token, a
notebook displaying each explorer run in headless Chromium, then each control changed from the
page (keyboard on a slider's handle, a <select>'s change event, a checkbox click, a number typed
into a text box) and timed from the event to the `load` of the widget's new picture: the comm
round trip, the kernel's work and the decoding.  The browser tests (bash run.sh test) print the
same table for every widget of every chapter.

    OMP_NUM_THREADS=1 python benchmarks/widget_latency.py              # in-process table
    OMP_NUM_THREADS=1 python benchmarks/widget_latency.py --browser    # and the in-browser table
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import dpm_lab as dl  # noqa: E402

BUDGET = (150.0, 300.0)        # ms: median, worst


def explorers(only: list[str] | None = None) -> dict[str, tuple[str, object]]:
    """name -> (the constructor call as code, the explorer); `only`: these names (a prefix matches)."""
    code = {"ScheduleExplorer": "dl.widgets.ScheduleExplorer()",
            "FieldExplorer": "dl.widgets.FieldExplorer()",
            "FieldExplorer+model": "dl.widgets.FieldExplorer(model=dl.datasets.eight_gaussians_mixture()"
                                   ".model(dl.VPLinear()))",
            "TrajectoryExplorer": "dl.widgets.TrajectoryExplorer()",
            # the chapters' own explorers, with the learned rows the chapters show
            "LangevinExplorer+model": "dl.widgets.LangevinExplorer(model=dl.zoo.load('ncsn_2modes'))",
            "AnnealedLangevinExplorer+model": "dl.widgets.AnnealedLangevinExplorer(model=dl.zoo.load('ncsn_2modes'))",
            "ThreeDynamicsExplorer": "dl.widgets.ThreeDynamicsExplorer()",
            "FokkerPlanckExplorer": "dl.widgets.FokkerPlanckExplorer()",
            "ConditionalPathExplorer": "dl.widgets.ConditionalPathExplorer()",
            "ReflowExplorer": "dl.widgets.ReflowExplorer()",
            "FourPredictionsExplorer": "dl.widgets.FourPredictionsExplorer()",
            "WeightingExplorer": "dl.widgets.WeightingExplorer()",
            "GammaFamilyExplorer": "dl.widgets.GammaFamilyExplorer()",
            # chapter 10's two explorers take the chapter's rounds, teachers and snapshots (built in its cells):
            # their latency is in tests/test_widgets_distill.py's and the browser tests' tables, not here
            "SinkhornExplorer": "dl.widgets.SinkhornExplorer()",
            "PFODEMapExplorer": "dl.widgets.PFODEMapExplorer()",
            "GuidanceExplorer": "dl.widgets.GuidanceExplorer()",
            "InverseExplorer": "dl.widgets.InverseExplorer()",
            "SolverLab": "dl.widgets.SolverLab()",
            "StepAnatomyExplorer": "dl.widgets.StepAnatomyExplorer()",
            "EtaExplorer": "dl.widgets.EtaExplorer()",
            "FlowMapExplorer": "dl.widgets.FlowMapExplorer()",
            "GammaSamplingExplorer": "dl.widgets.GammaSamplingExplorer()",
            "CorruptionExplorer": "dl.widgets.CorruptionExplorer()",
            "ReverseSamplingExplorer+model": "dl.widgets.ReverseSamplingExplorer(learned=dl.zoo.load('masked_chain4'))"}
    if only:
        unknown = [o for o in only if not any(n.startswith(o) for n in code)]
        if unknown:
            raise SystemExit(f"--only: no explorer named {unknown}; known: {', '.join(code)}")
        code = {n: c for n, c in code.items() if any(n.startswith(o) for o in only)}
    return {name: (c, eval(c, {"dl": dl})) for name, c in code.items()}  # noqa: S307 - our own constants


def sweep(w, n: int = 12) -> list:
    """Values over a control's whole range (each different from the one before)."""
    import ipywidgets as W

    if isinstance(w, (W.FloatSlider, W.IntSlider)):
        lo, hi, step = w.min, w.max, w.step
        k = int(round((hi - lo) / step))
        idx = sorted({int(round(i * k / (n - 1))) for i in range(n)})
        vals = [lo + i * step for i in idx]
        vals = [round(v, 10) if isinstance(w, W.FloatSlider) else int(v) for v in vals]
        return [v for v in vals if v != w.value] + [w.value]
    if isinstance(w, W.SelectionSlider):
        opts = [o[1] if isinstance(o, tuple) else o for o in w.options]
        return [o for o in opts if o != w.value] + [w.value]
    if isinstance(w, W.SelectMultiple):
        opts = [o[1] if isinstance(o, tuple) else o for o in w.options]
        return [tuple(opts[i:i + 2]) for i in range(0, len(opts) - 1)] + [tuple(opts[:1]), w.value]
    if isinstance(w, W.Dropdown):
        opts = [o[1] if isinstance(o, tuple) else o for o in w.options]
        return [o for o in opts if o != w.value] + [w.value]
    if isinstance(w, W.Checkbox):
        return [not w.value, w.value]
    if isinstance(w, W.IntText):
        return [w.value + i for i in range(1, 6)] + [w.value]
    return []


def in_process(only: list[str] | None = None) -> list[dict]:
    rows = []
    for name, (_, ex) in explorers(only).items():
        ex.widget()
        for cname, w in ex.controls.items():
            if w.layout.display == "none":
                continue                          # a hidden control (one option): nothing to time
            walls, cpus = [], []
            if cname == "eta" and "sampler" in ex.controls:
                ex.update(sampler="ddim")        # eta is ddim's
            for v in sweep(w):
                if w.disabled:
                    break
                t0, c0 = time.perf_counter(), time.thread_time()
                w.value = v                       # the browser's path: observer -> compute -> draw -> PNG
                walls.append(1e3 * (time.perf_counter() - t0))
                cpus.append(1e3 * (time.thread_time() - c0))
                assert ex.message is None, (name, cname, v, ex.message)
            if not walls:
                continue                          # a control kind sweep() does not know: nothing timed
            rows.append({"explorer": name, "control": cname, "n": len(walls),
                         "median": statistics.median(walls), "worst": max(walls),
                         "cpu_median": statistics.median(cpus), "cpu_worst": max(cpus)})
    return rows


def table(rows: list[dict], cpu: bool) -> str:
    head = f"{'explorer':<22}{'control':<12}{'n':>4}{'median ms':>11}{'worst ms':>10}"
    head += f"{'cpu med':>9}{'cpu worst':>10}" if cpu else f"{'kernel med':>12}{'kernel worst':>13}"
    lines = [head, "-" * len(head)]
    for r in rows:
        ok = r["median"] <= BUDGET[0] and r["worst"] <= BUDGET[1]
        line = f"{r['explorer']:<22}{r['control']:<12}{r['n']:>4}{r['median']:>11.0f}{r['worst']:>10.0f}"
        line += (f"{r['cpu_median']:>9.0f}{r['cpu_worst']:>10.0f}" if cpu else
                 f"{r['kernel_median']:>12.0f}{r['kernel_worst']:>13.0f}")
        lines.append(line + ("" if ok else "   over budget"))
    return "\n".join(lines)


# -- in the browser (the machinery of tests/browser: lab_driver) --------------------------------------

def _notebook(codes: list[str]) -> dict:
    """A notebook displaying each explorer in its own cell, in order."""
    cells = [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
              "source": "import torch\ntorch.set_num_threads(1)\nimport dpm_lab as dl"}]
    cells += [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
               "source": f"ex{i} = {c}\nex{i}"} for i, c in enumerate(codes)]
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                        "language": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def in_browser(timeout_s: float = 240.0, per_control: int = 12, only: list[str] | None = None) -> list[dict]:
    """Each explorer's controls changed from the page, `per_control` times each (a select: its
    options once round), timed from the event to the load of the new picture; the kernel's share
    from the kernel hook's records."""
    sys.path.insert(0, os.path.join(ROOT, "tests", "browser"))
    from lab_driver import Lab, change, explorer_views, plan

    exs = explorers(only)
    rows = []
    with Lab({"bench.ipynb": _notebook([c for c, _ in exs.values()])}) as lab:
        page = lab.open("bench.ipynb")
        lab.run_all(page, timeout_s)
        views = sorted(explorer_views(page), key=lambda v: v["id"])   # ids in display order: the cells'
        if len(views) != len(exs):
            shot = lab.screenshot(page, "failed")
            raise RuntimeError(f"{len(views)} explorer views rendered, {len(exs)} expected; see {shot}")
        names = {r["id"]: r["controls"] for r in lab.kernel_log() if r["kind"] == "view"}
        for name, v in zip(exs, views):
            times: dict[str, list[float]] = {}
            for c in v["controls"]:
                if c["hidden"] or c["kind"] == "unknown":
                    continue
                cname = names[v["id"]][c["index"]]
                for arg in plan(c, per_control):
                    if next(x for x in explorer_views(page) if x["id"] == v["id"])["controls"][c["index"]]["disabled"]:
                        break                                  # eta outside ddim
                    times.setdefault(cname, []).append(change(page, v["id"], c["index"], arg))
                    time.sleep(0.15)
            for cname, ts in times.items():
                good = [t for t in ts if t >= 0]
                rows.append({"explorer": name, "id": v["id"], "control": cname, "n": len(good),
                             "timeouts": len(ts) - len(good),
                             "median": statistics.median(good) if good else float("nan"),
                             "worst": max(good) if good else float("nan")})
        lab.screenshot(page, "page")
        kernel: dict[tuple[int, str], list[float]] = {}
        for r in lab.kernel_log():
            if r["kind"] == "change":
                kernel.setdefault((r["id"], r["control"]), []).append(r["ms"])
        print(f"(browser work folder: {lab.work})")
    for r in rows:
        ks = kernel.get((r.pop("id"), r["control"]), [])
        r["kernel_median"] = statistics.median(ks) if ks else float("nan")
        r["kernel_worst"] = max(ks) if ks else float("nan")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--browser", action="store_true", help="also measure in JupyterLab in Chromium")
    ap.add_argument("--no-in-process", action="store_true")
    ap.add_argument("--json", help="write the rows to this file")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these explorers (name prefixes)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("DPM_LAB_THREADS", "1")))
    machine = f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start"
    out = {"machine": machine}
    print(f"machine: {machine}; budget: {BUDGET[0]:.0f} ms median, {BUDGET[1]:.0f} ms worst\n")
    if not args.no_in_process:
        rows = in_process(args.only)
        out["in_process"] = rows
        print("in-process: control.value = v -> compute (cached) -> draw -> PNG in the view\n")
        print(table(rows, cpu=True))
    if args.browser:
        sys.path.insert(0, os.path.join(ROOT, "tests", "browser"))
        from lab_driver import unavailable

        why = unavailable()
        if why:
            print(f"\nbrowser measurement skipped: {why}")
        else:
            rows = in_browser(only=args.only)
            out["browser"] = rows
            print("\nin the browser: event in the page -> load of the widget's new picture\n")
            print(table(rows, cpu=False))
            bad = sum(r.get("timeouts", 0) for r in rows)
            if bad:
                print(f"\n{bad} change(s) gave no new picture within 10 s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
