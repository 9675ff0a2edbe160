"""Every chapter in JupyterLab in headless Chromium (see lab_driver.py and conftest.py).

1. The committed notebook, opened untrusted (a fresh clone's state): every widget cell shows an
   image (the static picture stored beside the widget), no "VBox(...)" text, and every animation
   shows its GIF.
2. The chapter run in the page (Run All Cells): no cell raises; then every control of every
   Explorer is changed from the page a bounded number of times, and each change must bring a new
   picture within DPM_LAB_BROWSER_WAIT_MS, with nothing in the log console and no error in the
   kernel's update; afterwards the page's controls equal the kernel's, and the picture shown is
   the PNG the kernel drew for them.  Each change's latency goes into the summary table.
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter

import pytest
from browser_checks import agreement_problems, change_problems, kernel_problems, static_problems
from browser_state import CHAPTERS, LATENCY, TIMINGS, budget, chapter_name
from lab_driver import change, explorer_views, log_console_messages, picture_sha256, plan

pytestmark = pytest.mark.browser

# per cell of the page: its outputs' mime type, images (size, src prefix) and text
_DOM_CELLS = """() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].map(c =>
  [...c.querySelectorAll('.jp-OutputArea-output')].map(o => ({
    mime: o.getAttribute('data-mime-type') || '',
    imgs: [...o.querySelectorAll('img')].map(i => [i.naturalWidth, i.naturalHeight, i.src.slice(0, 40)]),
    text: (o.textContent || '').trim().slice(0, 200)})))"""
# every cell in the page and every image in it loaded (or failed)
_SHOWN = """(n) => document.querySelectorAll('.jp-Notebook .jp-Cell').length >= n &&
  [...document.querySelectorAll('.jp-Notebook img')].every(i => i.complete)"""


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_name)
def test_committed_chapter_opened_untrusted_shows_every_widget_picture(path, lab, notebook_page):
    chapter = chapter_name(path)
    with open(lab.copy_of(os.path.basename(path))) as f:      # the copy the page shows, made at the start
        nb = json.load(f)
    t0 = time.time()
    page = notebook_page(os.path.basename(path), kernel=False)     # a reader's view: nothing runs
    page.wait_for_function(_SHOWN, arg=len(nb["cells"]), timeout=120_000, polling=250)
    live = page.evaluate("document.querySelectorAll('.jp-Notebook .jupyter-widgets').length")
    problems = static_problems(chapter, nb, page.evaluate(_DOM_CELLS), live)
    TIMINGS[f"{chapter}: untrusted view"] = time.time() - t0
    assert not problems, "\n".join(problems)


def _widget_names(views: list[dict], explorers: dict[int, str]) -> dict[int, str]:
    """view id -> the explorer's class, numbered when a chapter shows the class more than once."""
    count = Counter(explorers.get(v["id"], "?") for v in views)
    seen: Counter = Counter()
    names = {}
    for v in views:
        cls = explorers.get(v["id"], "?")
        seen[cls] += 1
        names[v["id"]] = cls if count[cls] == 1 else f"{cls} #{seen[cls]}"
    return names


def _view(page, view_id: int) -> dict:
    return next(v for v in explorer_views(page) if v["id"] == view_id)


def run_and_sweep(lab, page, chapter: str, per_control: int, wait_ms: float, run_s: float) -> tuple[list[str], list[dict]]:
    """Run All Cells in the page, then change every control of every Explorer from the page;
    (the problems found, each naming chapter / widget / control; one latency row per change)."""
    start = len(lab.kernel_log())
    TIMINGS[f"{chapter}: run all cells"] = lab.run_all(page, run_s)
    log = lab.kernel_log()[start:]
    problems = [f"{chapter}: the kernel hook failed: {r['error']}" for r in log if r["kind"] == "hook"]
    problems += [f"{chapter}: a cell raised {r['error']} (cell starting {r['cell']})" for r in log if r["kind"] == "cell_error"]
    if log_console_messages(page) not in ("", "0"):
        problems.append(f"{chapter}: the log console has messages after Run All Cells")
    if problems:
        return problems, []
    views = explorer_views(page)
    shown = page.evaluate("document.querySelectorAll('.jp-OutputArea-output .widget-vbox:has(> img.widget-image)').length")
    if shown != len({v["id"] for v in views}):
        return [f"{chapter}: {shown} explorer views in the page, {len(views)} of them seen by the kernel hook"], []
    explorers = {r["id"]: r["explorer"] for r in log if r["kind"] == "view"}
    controls = {r["id"]: r["controls"] for r in log if r["kind"] == "view"}
    names = _widget_names(views, explorers)
    rows: list[dict] = []
    t0 = time.time()
    for v in views:
        vid, widget = v["id"], names[v["id"]]
        first = len(lab.kernel_log())
        timed: list[dict] = []
        for c in v["controls"]:
            cname = controls[vid][c["index"]]
            where = f"{chapter} / {widget} / {cname}"
            if c["hidden"]:
                continue
            if c["kind"] == "unknown":
                problems.append(f"{where}: a control the browser test cannot drive yet (add its kind in lab_driver.py)")
                continue
            for step, arg in enumerate(plan(c, per_control)):
                if _view(page, vid)["controls"][c["index"]]["disabled"]:
                    break                          # disabled by another control (eta outside ddim)
                ms = change(page, vid, c["index"], arg, wait_ms)
                problems += change_problems(f"{where} (change {step + 1})", ms, wait_ms, log_console_messages(page))
                if ms >= 0:
                    timed.append({"chapter": chapter, "widget": widget, "control": cname, "ms": ms})
                time.sleep(0.1)
        time.sleep(0.5)                            # the kernel's last record follows its last picture
        records = [r for r in lab.kernel_log()[first:] if r["kind"] == "change" and r["id"] == vid]
        by_control: dict[str, list[float]] = {}
        for r in records:
            by_control.setdefault(r["control"], []).append(r["ms"])
        for row in timed:                          # the kernel's share, change by change
            ks = by_control.get(row["control"], [])
            row["kernel_ms"] = ks.pop(0) if ks else None
        rows += timed
        after = _view(page, vid)
        problems += kernel_problems(f"{chapter} / {widget}", records, after["status"])
        problems += agreement_problems(f"{chapter} / {widget}", after, records[-1] if records else None,
                                       picture_sha256(page, vid))
    TIMINGS[f"{chapter}: control sweep"] = time.time() - t0
    return problems, rows


@pytest.mark.parametrize("path", CHAPTERS, ids=chapter_name)
def test_chapter_widgets_update_their_picture_in_the_browser(path, lab, notebook_page):
    chapter = chapter_name(path)
    page = notebook_page(os.path.basename(path))
    problems, rows = run_and_sweep(lab, page, chapter, int(budget("DPM_LAB_BROWSER_CHANGES", 4)),
                                   budget("DPM_LAB_BROWSER_WAIT_MS", 10000), budget("DPM_LAB_BROWSER_RUN_S", 480))
    LATENCY.extend(rows)
    assert not problems, "\n".join(problems)


# A notebook with one sound explorer and one with three faults: a control that leaves the picture
# as it was, a selection whose compute raises, and an observer that raises outside the explorer
# (its traceback goes to the log console).  The sweep must name each fault, and nothing of Sound.
FAULTS = r'''
import dpm_lab as dl

class Sound(dl.widgets.Explorer):
    figsize, axes_grid, compute_keys = (3.0, 2.0), (1, 1), ("x",)
    def _make_controls(self):
        return {"x": self._W.IntSlider(value=0, min=0, max=10, description="x", continuous_update=False)}
    def compute(self, x):
        return {"x": x}
    def draw(self, data, values):
        self.fig.axes[0].plot([0, data["x"]], [0, 1])

class Faulty(Sound):
    compute_keys = ("x", "mode")
    def _make_controls(self):
        W = self._W
        return {**super()._make_controls(), "mode": W.Dropdown(options=["fine", "boom"], description="mode"),
                "inert": W.Checkbox(value=False, description="inert")}
    def compute(self, x, mode):
        if mode == "boom":
            raise RuntimeError("boom: a selection that fails")
        return {"x": x}

def _noisy(change):
    if change["new"] == 10:
        raise RuntimeError("an observer's error")

sound, faulty = Sound(), Faulty()
faulty.controls["x"].observe(_noisy, names="value")
display(sound)
faulty
'''


def test_the_sweep_catches_each_fault_in_the_browser(lab):
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": FAULTS}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    lab.add_notebook("faults.ipynb", nb)
    page = lab.open("faults.ipynb")
    try:
        problems, rows = run_and_sweep(lab, page, "faults", per_control=3, wait_ms=1500, run_s=120)
    finally:
        page.close()
        lab.shutdown_kernels()
    text = "\n".join(problems)
    assert "Sound" not in text and {r["widget"] for r in rows} >= {"Sound", "Faulty"}, text
    assert "faults / Faulty / inert (change 1): no new picture within 1500 ms" in text, text
    assert "faults / Faulty / mode: the update raised" in text and "boom: a selection that fails" in text, text
    assert any(p.startswith("faults / Faulty / x (change") and "the log console has" in p for p in problems), text
