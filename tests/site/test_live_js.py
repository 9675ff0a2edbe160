"""The reading site's kernel-free pictures (docs/site/_static/live_*.js) hold the package's numbers.

Without building the site: each script is loaded into a blank page of headless Chromium (skipped,
saying why, where Chromium or Playwright is missing) and its closed forms are compared with
dpm_lab's at many times. Both sides are float64 closed forms of the same quantities, so they
agree to rounding; 1e-9 relative is far tighter than any slip in a formula.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

import dpm_lab as dl

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "docs" / "site" / "_static"
SCHEDULES = {"vp_linear": "VPLinear", "cosine": "Cosine", "rectified_flow": "RectifiedFlow"}
TIMES = [0.0, 0.001, 0.01, 0.1, 0.3, 0.5, 0.77, 0.9, 0.999, 1.0]


def _site_test():
    spec = importlib.util.spec_from_file_location("dpm_site_test", Path(__file__).with_name("test_site.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def page():
    site = _site_test()
    why = site.unavailable()
    if why:
        pytest.skip(f"live-page tests skipped: {why}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=site.chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        pg = browser.new_page()
        pg.set_content('<div class="dpm-live-schedules"></div>')
        for name in ("live_mixture.js", "live_schedules.js"):
            pg.add_script_tag(content=(STATIC / name).read_text(encoding="utf-8"))
        yield pg
        browser.close()


def test_schedule_curves_are_the_package_s(page):
    assert page.evaluate("() => window.dpmLive.schedules") == list(SCHEDULES)
    for name, cls in SCHEDULES.items():
        sched = getattr(dl, cls)()
        rows = page.evaluate("([n, ts]) => window.dpmLiveSchedules.curves(n, ts)", [name, TIMES])
        for row, t in zip(rows, TIMES):
            co = sched.coeffs(torch.tensor(t, dtype=torch.float64))
            for key in ("alpha", "sigma"):
                ref = float(getattr(co, key))
                assert abs(row[key] - ref) <= 1e-9 * (1 + abs(ref)), (name, t, key, row[key], ref)
            lam = float(co.lam)
            if math.isfinite(lam):
                assert row["lambda"] is not None and abs(row["lambda"] - lam) <= 1e-9 * (1 + abs(lam)), (name, t, lam)
            else:
                assert row["lambda"] is None, (name, t, row["lambda"])      # no finite log-SNR at the ends


def test_schedule_picture_redraws_and_reads_out(page):
    root = page.locator(".dpm-live-schedules")
    drawn = int(root.get_attribute("data-drawn"))
    root.locator("select").select_option("lambda")
    root.locator("input").fill("0.3")
    assert int(root.get_attribute("data-drawn")) >= drawn + 2
    text = root.locator(".dpm-live-readout").inner_text()
    ref = dl.VPLinear().coeffs(torch.tensor(0.3, dtype=torch.float64))
    assert text.startswith("t = 0.30") and f"alpha_t = {float(ref.alpha):.4f}" in text
    assert f"lambda_t = {float(ref.lam):.3f}" in text
    err = page.evaluate("() => { try { window.dpmLiveSchedules.curves('nope', [0.5]); return ''; }"
                        " catch (e) { return e.message; } }")
    assert "schedule must be one of" in err
