"""The browser tests: JupyterLab in headless Chromium (see lab_driver.py).  Deselect with -m "not browser".

Without Chromium or Playwright they skip, saying how to enable them.  Knobs (environment):
    DPM_LAB_CHROMIUM            the Chromium executable (default: chromium on PATH)
    DPM_LAB_BROWSER_CHANGES     changes per control in the sweep (default 4; a select: its options once round, at most this many)
    DPM_LAB_BROWSER_WAIT_MS     the time budget of one change: its new picture must have loaded by then (default 10000)
    DPM_LAB_BROWSER_RUN_S       the time budget of a chapter's Run All Cells (default 480)
    DPM_LAB_BROWSER_TOTAL_S     the browser tests' budget in all (default 1500): past it, each further one fails at once
    DPM_LAB_BROWSER_REPORT      write the latency rows (JSON) to this file
At the end of the run the terminal summary prints each control's latency (median and worst).
"""
from __future__ import annotations

import json
import os

import pytest
from browser_state import CHAPTERS, LATENCY, TIMINGS, budget, latency_table
from lab_driver import Lab, unavailable


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: needs JupyterLab in headless Chromium (tests/browser); "
                                       "deselect with -m 'not browser'")


@pytest.fixture(scope="module")
def lab():
    """One JupyterLab and one Chromium for the module that uses it, with a copy of every chapter.

    Module scope, not session: Playwright's sync API allows one running instance per process, and
    tests/site starts its own after this one has stopped."""
    why = unavailable()
    if why:
        pytest.skip(f"browser tests skipped: {why}")
    import time

    t0 = time.time()
    with Lab({os.path.basename(p): p for p in CHAPTERS}) as server:
        TIMINGS["server and browser start"] = time.time() - t0
        server.started = t0
        yield server
    TIMINGS["browser tests in all"] = time.time() - t0


@pytest.fixture
def notebook_page(lab):
    """Opens a chapter in a new page; closes it and shuts its kernel down afterwards."""
    import time

    spent, total = time.time() - lab.started, budget("DPM_LAB_BROWSER_TOTAL_S", 1500)
    if spent > total:
        pytest.fail(f"the browser tests have taken {spent:.0f} s, past their budget of {total:.0f} s "
                    "(DPM_LAB_BROWSER_TOTAL_S): CI must stay within its time; see the timings in the summary")
    pages = []

    def open_(name: str, kernel: bool = True):
        page = lab.open(name, kernel=kernel)
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.close()
    lab.shutdown_kernels()


def pytest_terminal_summary(terminalreporter):
    if not LATENCY and not TIMINGS:
        return
    tr = terminalreporter
    tr.section("widget latency in the browser (event in the page -> new picture loaded)")
    load = os.getloadavg()
    tr.write_line(f"{os.cpu_count()} CPU cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} (1, 5, 15 min) "
                  f"at the end; budget of the widget standard: 150 ms median, 300 ms worst (measured, not asserted)")
    if LATENCY:
        tr.write_line(latency_table(LATENCY))
    for what, s in TIMINGS.items():
        tr.write_line(f"{what}: {s:.1f} s")
    out = os.environ.get("DPM_LAB_BROWSER_REPORT")
    if out:
        with open(out, "w") as f:
            json.dump({"load_average": load, "rows": LATENCY, "timings": TIMINGS}, f, indent=1)
