"""Benchmark: latency of every control of every explorer in dl.widgets (the widget standard:
at most 150 ms median and 300 ms worst from a change to the new picture, on a 2-core CPU).

In-process: a fresh explorer with its live view built, then each control swept over its range
by setting the control's value as the browser does (`widget.value = v`: the observer recomputes
(cached), redraws, renders the PNG and hands it to the view's ipywidgets.Image).  Each change is
timed in wall-clock and in CPU time of the thread (CPU time discounts other processes on a
loaded machine).  Cold caches: every value is new to the explorer.

In the browser (--browser, needs Chromium at /usr/bin/chromium and `pip install playwright`):
JupyterLab on a free local port with a token, a notebook displaying each explorer run in
Chromium, then each control changed from the page (keyboard on a slider's handle, a <select>'s
change event, a checkbox click, a number typed into a text box) and timed from the event to the
`load` of the widget's new picture: the comm round trip, the kernel's work and the decoding.

    OMP_NUM_THREADS=1 python benchmarks/widget_latency.py              # in-process table
    OMP_NUM_THREADS=1 python benchmarks/widget_latency.py --browser    # and the in-browser table
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import dpm_lab as dl  # noqa: E402

BUDGET = (150.0, 300.0)        # ms: median, worst


def explorers() -> dict[str, tuple[str, object]]:
    """name -> (the constructor call as code, the explorer)."""
    code = {"ScheduleExplorer": "dl.widgets.ScheduleExplorer()",
            "FieldExplorer": "dl.widgets.FieldExplorer()",
            "FieldExplorer+model": "dl.widgets.FieldExplorer(model=dl.datasets.eight_gaussians_mixture()"
                                   ".model(dl.VPLinear()))",
            "TrajectoryExplorer": "dl.widgets.TrajectoryExplorer()"}
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


def in_process() -> list[dict]:
    rows = []
    for name, (_, ex) in explorers().items():
        ex.widget()
        for cname, w in ex.controls.items():
            if w.layout.display == "none":
                continue                          # a hidden control (one option): nothing to time
            walls, cpus = [], []
            if cname == "eta":
                ex.update(sampler="ddim")        # eta is ddim's
            for v in sweep(w):
                if w.disabled:
                    break
                t0, c0 = time.perf_counter(), time.thread_time()
                w.value = v                       # the browser's path: observer -> compute -> draw -> PNG
                walls.append(1e3 * (time.perf_counter() - t0))
                cpus.append(1e3 * (time.thread_time() - c0))
                assert ex.message is None, (name, cname, v, ex.message)
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


# -- in the browser ---------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The kernel's share: each control change's time inside the kernel (observer to the PNG handed to
# the view), appended to a log by a wrapper installed before the explorers are made.
_KERNEL_LOG = """
import json, time
from dpm_lab.widgets import base as _base
_on_change = _base.Explorer._on_change
def _timed(self, change, _f=_on_change):
    if self._silent or not hasattr(self, "_bench_name"):
        return _f(self, change)
    t0 = time.perf_counter()
    _f(self, change)
    name = next(k for k, w in self.controls.items() if w is change["owner"])
    with open({log!r}, "a") as f:
        f.write(json.dumps({{"explorer": self._bench_name, "control": name,
                            "ms": 1e3 * (time.perf_counter() - t0)}}) + "\\n")
_base.Explorer._on_change = _timed
"""


def _notebook(path: str, names: list[str], codes: list[str], log: str) -> None:
    cells = [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
              "source": f"import sys\nsys.path.insert(0, {ROOT!r})\nimport torch\ntorch.set_num_threads(1)\n"
                        "import dpm_lab as dl\n" + _KERNEL_LOG.format(log=log)}]
    cells += [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
               "source": f"ex{i} = {c}\nex{i}._bench_name = {n!r}\nex{i}"} for i, (n, c) in enumerate(zip(names, codes))]
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                       "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    with open(path, "w") as f:
        json.dump(nb, f)


# One action in the page: change control `ci` of the explorer in output `oi`, resolve with the ms
# from the event to the load of the widget's new picture (or -1 after 10 s).
_ACT = """
async ([oi, ci, kind, arg]) => {
  const box = document.querySelectorAll('.jp-Notebook .jp-OutputArea-output .widget-vbox')[oi];
  const img = box.querySelector('img.widget-image');
  const ctrl = box.querySelector('.widget-hbox').children[ci];
  const before = img.src;
  const done = new Promise(res => {
    const t = setTimeout(() => res(-1), 10000);
    const onload = () => { if (img.src !== before) { clearTimeout(t); img.removeEventListener('load', onload);
                                                     res(performance.now()); } };
    img.addEventListener('load', onload);
  });
  const t0 = performance.now();
  if (kind === 'slider') {       // PageUp to the end, then PageDown back: every key moves the slider
    const h = ctrl.querySelector('.noUi-handle'); h.focus();
    const now = +h.getAttribute('aria-valuenow'), lo = +h.getAttribute('aria-valuemin'),
          hi = +h.getAttribute('aria-valuemax');
    window.__dirs = window.__dirs || {}; const id = oi + '/' + ci;
    let d = window.__dirs[id] || 1;
    if (d > 0 && now >= hi) d = -1;
    if (d < 0 && now <= lo) d = 1;
    window.__dirs[id] = d;
    h.dispatchEvent(new KeyboardEvent('keydown', {key: d > 0 ? arg : 'PageDown', bubbles: true, cancelable: true}));
  } else if (kind === 'select') {
    const s = ctrl.querySelector('select'); s.selectedIndex = arg; s.dispatchEvent(new Event('change', {bubbles: true}));
  } else if (kind === 'multi') {
    const s = ctrl.querySelector('select');
    for (let i = 0; i < s.options.length; i++) s.options[i].selected = arg.includes(i);
    s.dispatchEvent(new Event('change', {bubbles: true}));
  } else if (kind === 'checkbox') {
    ctrl.querySelector('input[type=checkbox]').click();
  } else if (kind === 'text') {
    const i = ctrl.querySelector('input'); i.value = String(arg); i.dispatchEvent(new Event('change', {bubbles: true}));
  }
  const t1 = await done;
  return t1 < 0 ? -1 : t1 - t0;
}
"""


def _actions(ex, n: int = 12) -> list[tuple[int, str, str, object]]:
    """(control index, control name, kind, argument) in order; keys on a slider, indices otherwise."""
    import ipywidgets as W

    acts = []
    for ci, (name, w) in enumerate(ex.controls.items()):      # ci: the child of the controls' HBox
        if w.layout.display == "none":
            continue
        if isinstance(w, (W.FloatSlider, W.IntSlider)):
            acts += [(ci, name, "slider", "PageUp")] * n
        elif isinstance(w, W.SelectMultiple):
            m = len(w.options)
            acts += [(ci, name, "multi", [i, (i + 1) % m]) for i in range(m)] + [(ci, name, "multi", [0, 1, 2])]
        elif isinstance(w, W.Dropdown):
            m = len(w.options)
            acts += [(ci, name, "select", i) for i in list(range(1, m)) + [0]]
        elif isinstance(w, W.Checkbox):
            acts += [(ci, name, "checkbox", None)] * 4
        elif isinstance(w, W.IntText):
            acts += [(ci, name, "text", w.value + i) for i in range(1, 7)]
    return acts


def in_browser(timeout_s: float = 240.0) -> list[dict]:
    from playwright.sync_api import sync_playwright

    exs = explorers()
    work = tempfile.mkdtemp(prefix="widget_latency_")
    log = os.path.join(work, "kernel.jsonl")
    _notebook(os.path.join(work, "bench.ipynb"), list(exs), [c for c, _ in exs.values()], log)
    port, token = _free_port(), secrets.token_hex(16)
    settings = os.path.join(work, "cfg", "lab-settings")
    for ext, name, value in (("@jupyterlab/notebook-extension", "tracker", {"windowingMode": "none"}),
                             ("@jupyterlab/apputils-extension", "notification", {"fetchNews": "false"})):
        os.makedirs(os.path.join(settings, ext), exist_ok=True)
        with open(os.path.join(settings, ext, f"{name}.jupyterlab-settings"), "w") as f:
            json.dump(value, f)                   # every output in the DOM (no windowing), no news popup
    env = dict(os.environ, OMP_NUM_THREADS="1", DPM_LAB_THREADS="1", JUPYTER_CONFIG_DIR=os.path.join(work, "cfg"),
               JUPYTERLAB_SETTINGS_DIR=settings)
    server = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                               "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", "--allow-root",
                               f"--ServerApp.root_dir={work}", "--LabApp.news_url=", "--ServerApp.open_browser=False"],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            url = f"http://127.0.0.1:{port}/lab/tree/bench.ipynb?token={token}"
            t_end = time.time() + 60
            while True:
                try:
                    page.goto(url, timeout=30000)
                    break
                except Exception:  # noqa: BLE001 - the server is still starting
                    if time.time() > t_end:
                        raise
                    time.sleep(1.0)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120000)
            time.sleep(2.0)
            page.locator("li.lm-MenuBar-item", has_text="Run").first.click()
            page.locator("li.lm-Menu-item", has_text="Run All Cells").first.click()
            try:
                page.wait_for_function(f"document.querySelectorAll('.jp-Notebook .jp-OutputArea-output "
                                       f".widget-vbox img.widget-image').length >= {len(exs)}",
                                       timeout=timeout_s * 1000)
            except Exception:
                page.screenshot(path=os.path.join(work, "failed.png"), full_page=True)
                print(f"no widgets rendered; see {work}/failed.png")
                raise
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout_s * 1000)
            time.sleep(1.0)
            for oi, (name, (_, ex)) in enumerate(exs.items()):
                page.evaluate(f"document.querySelectorAll('.jp-Notebook .jp-OutputArea-output .widget-vbox')[{oi}]"
                              ".scrollIntoView()")
                times: dict[str, list[float]] = {}
                for ci, cname, kind, arg in _actions(ex):
                    if cname == "eta":
                        dis = page.evaluate(f"!!document.querySelectorAll('.jp-Notebook .jp-OutputArea-output "
                                            f".widget-vbox')[{oi}].querySelector('.widget-hbox').children[{ci}]"
                                            ".querySelector('.noUi-target[disabled]')")
                        if dis:
                            continue
                    ms = page.evaluate(_ACT, [oi, ci, kind, arg])
                    times.setdefault(cname, []).append(ms)
                    time.sleep(0.15)
                for cname, ts in times.items():
                    good = [t for t in ts if t >= 0]
                    rows.append({"explorer": name, "control": cname, "n": len(good),
                                 "timeouts": len(ts) - len(good),
                                 "median": statistics.median(good) if good else float("nan"),
                                 "worst": max(good) if good else float("nan")})
            page.screenshot(path=os.path.join(work, "page.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    kernel: dict[tuple[str, str], list[float]] = {}
    if os.path.exists(log):
        for line in open(log):
            r = json.loads(line)
            kernel.setdefault((r["explorer"], r["control"]), []).append(r["ms"])
    for r in rows:
        ks = kernel.get((r["explorer"], r["control"]), [])
        r["kernel_median"] = statistics.median(ks) if ks else float("nan")
        r["kernel_worst"] = max(ks) if ks else float("nan")
    print(f"(browser work folder: {work})")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--browser", action="store_true", help="also measure in JupyterLab in Chromium")
    ap.add_argument("--no-in-process", action="store_true")
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("DPM_LAB_THREADS", "1")))
    machine = f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start"
    out = {"machine": machine}
    print(f"machine: {machine}; budget: {BUDGET[0]:.0f} ms median, {BUDGET[1]:.0f} ms worst\n")
    if not args.no_in_process:
        rows = in_process()
        out["in_process"] = rows
        print("in-process: control.value = v -> compute (cached) -> draw -> PNG in the view\n")
        print(table(rows, cpu=True))
    if args.browser:
        if not (shutil.which("chromium") or os.path.exists("/usr/bin/chromium")):
            print("\nno Chromium at /usr/bin/chromium: browser measurement skipped")
        else:
            rows = in_browser()
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
