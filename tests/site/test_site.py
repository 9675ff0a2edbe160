"""The reading site (docs/site/, `bash run.sh site`), built from the committed notebooks' stored
outputs and checked in headless Chromium, page by page: the landing page (the README), one page
per chapter notebook (picked up by glob, as the builder does) and the documents the README links to.

On every page: it loads with no console error, no failed request and nothing asked of another
host; MathJax (served by the site) has typeset the math, with no TeX error and no raw `$$`,
`\\(` or `\\[` left in the text; every <img> has loaded (naturalWidth > 0); every internal link
resolves, to the page and to the #anchor it names.  On a chapter page also: the sidebar lists
every chapter and the page's sections with the book's section numbers, and every stored picture
(figures, the widgets' static PNGs) is shown, with no `VBox(...)` text in its place.

The site is built once for this module into a scratch folder (at most 5 minutes), or taken from
DPM_LAB_SITE_DIR (a folder `bash run.sh site` or docs/site/build.py --out wrote) to skip the build.
"""
from __future__ import annotations

import functools
import glob
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILDER = ROOT / "docs" / "site" / "build.py"
BUILD_BUDGET_S = 300            # the number: the site builds in at most 5 minutes on CI (2 cores)
ENABLE = ("to enable it: `pip install -e \".[site,browser]\"` (bash run.sh test installs the site tools), "
          "`apt-get install chromium` (or set DPM_LAB_CHROMIUM=/path/to/chromium); .ci/run does the browser part")


def chromium_path() -> str | None:
    named = os.environ.get("DPM_LAB_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    for exe in ("chromium", "chromium-browser"):
        if shutil.which(exe):
            return shutil.which(exe)
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def unavailable() -> str | None:
    """None when the site can be built and checked here, else why not and how to enable it."""
    missing = [m for m in ("sphinx", "myst_nb", "sphinx_book_theme", "sphinx-mathjax-offline")
               if importlib.util.find_spec(m) is None]
    if missing and not os.environ.get("DPM_LAB_SITE_DIR"):
        return f"the site tools are not installed ({', '.join(missing)}); {ENABLE}"
    if importlib.util.find_spec("playwright") is None:
        return f"Playwright is not installed; {ENABLE}"
    if chromium_path() is None:
        return f"no Chromium found; {ENABLE}"
    return None


def chapter_stems() -> list[str]:
    return sorted(Path(p).stem for p in glob.glob(str(ROOT / "chapters" / "[0-9][0-9]_*.ipynb")))


def stored_pictures(stem: str) -> int:
    """How many pictures the chapter's outputs carry: figures, widgets' static PNGs, and the <img>s of
    HTML outputs (an animation's GIF)."""
    nb = json.loads((ROOT / "chapters" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    n = 0
    for out in (o for c in nb["cells"] for o in c.get("outputs", [])):
        data = out.get("data", {})
        if "image/png" in data or "image/svg+xml" in data:
            n += 1
        elif "text/html" in data:
            html = data["text/html"]
            n += len(re.findall(r"<img\b", "".join(html) if isinstance(html, list) else html))
    return n


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    why = unavailable()
    if why:
        pytest.skip(why)
    given = os.environ.get("DPM_LAB_SITE_DIR")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("site") / "html"
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, str(BUILDER), "--out", str(out)], cwd=ROOT, text=True,
                         capture_output=True, timeout=BUILD_BUDGET_S + 60)
    took = time.perf_counter() - t0
    assert run.returncode == 0, f"the site build failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    assert took <= BUILD_BUDGET_S, f"the site took {took:.0f} s to build (budget {BUILD_BUDGET_S} s)"
    print(run.stdout.strip())
    return out


@pytest.fixture(scope="module")
def server(site):
    """The built folder over HTTP on a free local port (pages use absolute-path-free links, but
    MathJax loads its fonts and extensions by URL, as on a real host)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield b
        b.close()


def _builder():
    spec = importlib.util.spec_from_file_location("dpm_site_build", BUILDER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)                 # imports no Sphinx until it builds
    return mod


def content_pages() -> list[str]:
    """The landing page, a page per chapter, and the documents the README links to (as staged)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    docs = [str(Path(d).with_suffix(".html")) for d in _builder().linked_docs(readme, "README.md")]
    live = [f"live/{p.stem}.html" for p in sorted((ROOT / "docs" / "site" / "live").glob("*.md"))]
    return ["index.html", *(f"chapters/{s}.html" for s in chapter_stems()), *docs, *live]


def test_every_chapter_has_a_page(site):
    stems = chapter_stems()
    assert stems, "no chapter notebooks found"
    for stem in stems:
        assert (site / "chapters" / f"{stem}.html").is_file(), f"no page for chapters/{stem}.ipynb"
    assert (site / "index.html").is_file()
    assert not list(site.rglob("*.ipynb")), "the site must not ship notebooks"


# what the page's text keeps after MathJax: code, preformatted outputs and typeset math removed
VISIBLE_TEXT = """() => {
  const body = document.querySelector('main') || document.body;
  const copy = body.cloneNode(true);
  copy.querySelectorAll('pre, code, script, style, mjx-container, .highlight').forEach(e => e.remove());
  return copy.innerText;
}"""
WAIT_IMAGES = """async () => {
  const imgs = [...document.images];
  for (const i of imgs) {
    i.loading = 'eager';
    if (!i.complete) await new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); setTimeout(r, 15000); });
  }
  return imgs.filter(i => !(i.naturalWidth > 0)).map(i => (i.currentSrc || i.src || '(no src)').slice(0, 120));
}"""
WAIT_MATH = """async () => {
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return false;
  await MathJax.startup.promise;
  return true;
}"""
RAW_MATH = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\$\\[A-Za-z]")


def page_ids(html: str) -> set[str]:
    return set(re.findall(r"""\bid=["']([^"']+)["']""", html)) | set(re.findall(r"""\bname=["']([^"']+)["']""", html))


@pytest.mark.parametrize("path", content_pages())
def test_page(path, site, server, browser):
    if not (site / path).is_file():
        pytest.fail(f"{path} is missing from the site")
    errors, foreign = [], []
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text[:300]}"))
    page.on("pageerror", lambda e: errors.append(f"page error: {str(e)[:300]}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url[:150]} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and errors.append(f"HTTP {r.status}: {r.url[:150]}"))
    page.on("request", lambda r: r.url.startswith(("http:", "https:")) and not r.url.startswith(server)
            and foreign.append(r.url[:150]))
    try:
        page.goto(f"{server}/{path}", wait_until="load", timeout=60_000)
        has_mathjax = page.evaluate(WAIT_MATH)
        broken_images = page.evaluate(WAIT_IMAGES)
        page.wait_for_timeout(200)               # late console messages
        text = page.evaluate(VISIBLE_TEXT)
        n_math = page.locator("mjx-container").count()
        n_tex_errors = page.locator("mjx-merror, mjx-container [style*='color: red']").count()
        hrefs = page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
        images_in_outputs = page.locator("div.cell_output img").count()
        nav_text = page.locator("nav.dpm-nav").inner_text() if page.locator("nav.dpm-nav").count() else ""
        nav_hrefs = page.eval_on_selector_all("nav.dpm-nav a[href]", "as => as.map(a => a.href)")
        n_nav_current = page.locator("nav.dpm-nav li.toctree-l1.current").count()
        h2s = [h.strip().rstrip("#").strip() for h in page.locator("article.bd-article h2").all_inner_texts()]
        output_text = " ".join(page.locator("div.cell_output").all_inner_texts())
    finally:
        page.close()

    assert not foreign, f"{path} asks other hosts (the site must work offline): {foreign[:5]}"
    assert not errors, f"{path}: {errors[:8]}"
    assert not broken_images, f"{path}: images that did not load: {broken_images[:5]}"
    raw = sorted({m.group(0) for m in RAW_MATH.finditer(text)})
    assert not raw, f"{path}: raw TeX left in the text: {raw} (MathJax did not typeset it)"
    assert n_tex_errors == 0, f"{path}: {n_tex_errors} formulas with TeX errors or undefined macros"

    if path.startswith("chapters/"):
        stem = Path(path).stem
        assert has_mathjax and n_math > 0, f"{path}: no typeset math (MathJax did not run)"
        n_pics = stored_pictures(stem)
        assert images_in_outputs >= n_pics, (
            f"{path}: {images_in_outputs} pictures shown, but the notebook stores {n_pics}")
        assert not re.search(r"\b[VH]Box\(", output_text), f"{path}: a widget shows as text, not its picture"
        for other in chapter_stems():            # the sidebar lists every chapter ...
            assert other == stem or any(h.endswith(f"/chapters/{other}.html") for h in nav_hrefs), (
                f"{path}: the sidebar does not link chapter {other}")
        assert n_nav_current == 1, f"{path}: the sidebar does not mark this chapter as the current page"
        for h in h2s:                            # ... and this chapter's sections, § numbers included
            assert h in nav_text, f"{path}: section {h!r} is not in the sidebar"
        assert "§" not in " ".join(h2s) or "§" in nav_text

    check_links(path, hrefs, server)


_fetched: dict[str, tuple[int, set[str]]] = {}


def check_links(path: str, hrefs: list[str], server: str) -> None:
    """Every link into the site reaches a page (HTTP 200) that has the #anchor it names."""
    bad = []
    for href in hrefs:
        if not href.startswith(server):
            continue
        url, _, frag = href.partition("#")
        if url not in _fetched:
            try:
                with urllib.request.urlopen(url, timeout=30) as r:
                    body = r.read().decode("utf-8", "replace")
                    _fetched[url] = (r.status, page_ids(body) if "html" in r.headers.get("Content-Type", "") else set())
            except urllib.error.HTTPError as err:
                _fetched[url] = (err.code, set())
        status, ids = _fetched[url]
        if status != 200:
            bad.append(f"{href} (HTTP {status})")
        elif frag and urllib.parse.unquote(frag) not in ids:
            bad.append(f"{href} (no #{frag} there)")
    assert not bad, f"{path}: broken internal links: {sorted(set(bad))[:8]}"


LIVE_PAGE = "live/noised_mixture.html"
LIVE_SCHEDULES = {"vp_linear": "VPLinear", "cosine": "Cosine", "rectified_flow": "RectifiedFlow"}


def test_live_mixture_is_the_package_s_mixture(site, server, browser):
    """The kernel-free explorer computes in JavaScript what dpm_lab computes in Python: log p_t, x0*,
    score* and v* of the eight-Gaussians mixture, at 64 points and 6 times (t = 0 and 1 included)
    for each schedule.  Both sides are float64 closed forms of the same quantities, written
    differently (the package goes through eigen-decompositions and logsumexp), so they agree to
    rounding: 1e-9 relative is a thousand times looser than what we see and far tighter than any
    slip in a formula (a wrong sign or factor moves them by O(1))."""
    import torch

    import dpm_lab as dl

    mix = dl.datasets.eight_gaussians_mixture()
    xs = dl.utils.randn((64, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2.5
    times = [0.0, 0.01, 0.3, 0.77, 0.999, 1.0]
    page = browser.new_page()
    try:
        page.goto(f"{server}/{LIVE_PAGE}", wait_until="load")
        assert page.evaluate("() => window.dpmLive.schedules") == list(LIVE_SCHEDULES)
        for name, cls in LIVE_SCHEDULES.items():
            sched = getattr(dl, cls)()
            for t in times:
                js = page.evaluate("([n, t, xs]) => window.dpmLive.fields(n, t, xs)", [name, t, xs.tolist()])
                co = sched.coeffs(torch.tensor(t, dtype=torch.float64))
                for key in ("alpha", "sigma", "d_alpha", "d_sigma2"):
                    ref = float(getattr(co, key))
                    assert abs(js[key] - ref) <= 1e-9 * (1 + abs(ref)), (name, t, key, js[key], ref)
                for key, ref in (("logp", mix.log_prob_t(xs, t, sched)), ("x0", mix.x0(xs, t, sched)),
                                 ("score", mix.score(xs, t, sched)), ("velocity", mix.velocity(xs, t, sched))):
                    got = torch.tensor(js[key], dtype=torch.float64)
                    assert torch.allclose(got, ref, rtol=1e-9, atol=1e-9), (
                        f"{name} t={t} {key}: max |js - dl| = {(got - ref).abs().max():.3g}")
        for bad, why in ((["nope", 0.5, [[0, 0]]], "schedule must be one of"), (["cosine", 1.5, [[0, 0]]], "t must lie")):
            err = page.evaluate("(a) => { try { window.dpmLive.fields(...a); return ''; } catch (e) { return e.message; } }", bad)
            assert why in err, err
    finally:
        page.close()


def test_live_mixture_redraws_on_each_control(site, server, browser):
    """Moving the t slider, changing the schedule or the arrows redraws the picture, within the
    course's widget budget (150 ms median per control in the browser; here the whole redraw,
    measured in the page), and the readout shows the package's alpha_t."""
    import torch

    import dpm_lab as dl

    page = browser.new_page()
    try:
        page.goto(f"{server}/{LIVE_PAGE}", wait_until="load")
        root = page.locator(".dpm-live-mixture")
        assert root.locator("canvas").count() == 1, "the explorer did not mount"
        moves = [("input[type=range]", "0.62"), ("select", "cosine"), ("input[type=range]", "0.05"),
                 ("select", "rectified_flow"), ("input[type=range]", "0.9"), ("input[type=checkbox]", None)]
        times_ms, pictures = [], {page.evaluate("() => document.querySelector('.dpm-live-mixture canvas').toDataURL()")}
        for sel, value in moves:
            ms = page.evaluate("""([sel, value]) => {
                const root = document.querySelector('.dpm-live-mixture'), el = root.querySelector(sel);
                if (value === null) el.checked = !el.checked; else el.value = value;
                const t0 = performance.now();
                el.dispatchEvent(new Event('input', {bubbles: true}));
                return performance.now() - t0;
            }""", [sel, value])
            times_ms.append(ms)
            pictures.add(page.evaluate("() => document.querySelector('.dpm-live-mixture canvas').toDataURL()"))
        assert len(pictures) == len(moves) + 1, "a control changed nothing in the picture"
        assert int(root.get_attribute("data-drawn")) == len(moves) + 1
        times_ms.sort()
        assert times_ms[len(times_ms) // 2] <= 150 and times_ms[-1] <= 300, f"redraw times (ms): {times_ms}"
        readout = root.locator(".dpm-live-readout").inner_text()
        alpha = float(dl.RectifiedFlow().alpha(torch.tensor(0.9, dtype=torch.float64)))
        assert f"alpha_t = {alpha:.4f}" in readout, readout
    finally:
        page.close()


def test_search_finds_a_chapter(site, server, browser):
    """The site's search (Sphinx's own index, served by the site) runs offline and finds chapter text."""
    errors = []
    page = browser.new_page()
    page.on("console", lambda m: m.type == "error" and errors.append(m.text[:300]))
    page.on("pageerror", lambda e: errors.append(str(e)[:300]))
    try:
        page.goto(f"{server}/search.html?q=ELBO", wait_until="load")
        page.wait_for_selector("#search-results li a", timeout=30_000)
        hits = page.eval_on_selector_all("#search-results li a", "as => as.map(a => a.href)")
    finally:
        page.close()
    assert not errors, errors
    assert any("/chapters/" in h for h in hits), f"searching 'ELBO' found no chapter: {hits[:5]}"
