"""JupyterLab in headless Chromium: the machinery of the browser tests (tests/browser) and of
`benchmarks/widget_latency.py --browser`.

    with Lab({"ch.ipynb": "chapters/00_tour.ipynb"}) as lab:
        page = lab.open("ch.ipynb")           # a new page; the notebook is untrusted
        lab.run_all(page)                    # Run > Run All Cells, then wait for the kernel to go idle
        views = explorer_views(page)         # every Explorer's controls, as the page shows them
        ms = change(page, view, control, 0)  # one change from the page, timed to the new picture

The server runs on a free local port with a random token, in a scratch folder holding copies of
the notebooks (the committed files are never touched), with its own Jupyter data folder (so no
notebook is trusted: the trust database is empty), its own lab settings (no windowing, so every
output is in the DOM; no news popup) and its own IPython folder whose startup file instruments
every `dl.widgets.Explorer` in the kernel (see KERNEL_HOOK): each live view gets the DOM class
`dpm-explorer-<n>`, and every browser change appends a line (the control, the kernel's ms, the
values, the SHA-256 of the PNG it sent, an error's traceback) to a log the test reads.

Chromium: Debian's `chromium` (Playwright cannot download browsers here), or the executable named
by DPM_LAB_CHROMIUM.  `unavailable()` says why the browser cannot run (and how to enable it).
"""
from __future__ import annotations

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
import urllib.request
from typing import Any

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ENABLE = ("to enable them: `apt-get install chromium` (or set DPM_LAB_CHROMIUM=/path/to/chromium) and "
          "`pip install -e \".[browser]\"` (Playwright); .ci/run does both")
EXPLORER_CLASS = "dpm-explorer"


def chromium_path() -> str | None:
    """The Chromium executable: $DPM_LAB_CHROMIUM, else chromium / chromium-browser on PATH."""
    named = os.environ.get("DPM_LAB_CHROMIUM")
    if named:
        return named if os.access(named, os.X_OK) else None
    for exe in ("chromium", "chromium-browser"):
        found = shutil.which(exe)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def unavailable() -> str | None:
    """None when the browser tests can run, else why not and how to enable them."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"Playwright is not installed; {ENABLE}"
    if chromium_path() is None:
        return f"no Chromium found{' at $DPM_LAB_CHROMIUM' if os.environ.get('DPM_LAB_CHROMIUM') else ''}; {ENABLE}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The kernel's instrumentation, run at kernel start (IPython startup file).  Test-only: it wraps
# Explorer.widget (a DOM class per live view) and Explorer._on_change (the browser's path: timing,
# state and errors), and records cells that raised.
KERNEL_HOOK = r'''
import hashlib, json, time, traceback
_LOG = {log!r}
def _dpm_write(rec):
    with open(_LOG, "a") as f:
        f.write(json.dumps(rec, default=repr) + "\n")
try:
    from dpm_lab.widgets import base as _dpm_base
except Exception as e:  # noqa: BLE001 - the test reports it
    _dpm_write({{"kind": "hook", "error": repr(e)}})
else:
    _dpm_ids = {{}}
    _dpm_widget = _dpm_base.Explorer.widget
    def _dpm_view(self, _f=_dpm_widget):
        view = _f(self)
        if id(self) not in _dpm_ids:
            _dpm_ids[id(self)] = len(_dpm_ids)
            view.add_class("{cls}")
            view.add_class("{cls}-%d" % _dpm_ids[id(self)])
            _dpm_write({{"kind": "view", "id": _dpm_ids[id(self)], "explorer": type(self).__name__,
                        "controls": list(self.controls)}})
        return view
    _dpm_base.Explorer.widget = _dpm_view
    _dpm_change = _dpm_base.Explorer._on_change
    def _dpm_on_change(self, change, _f=_dpm_change):
        if self._silent or id(self) not in _dpm_ids:
            return _f(self, change)
        t0 = time.perf_counter()
        err = None
        try:
            _f(self, change)
        except BaseException:
            err = traceback.format_exc()
            raise
        finally:
            ms = 1e3 * (time.perf_counter() - t0)
            img = self._image.value if self._image is not None else b""
            ctl = {{k: {{"value": w.value, "label": getattr(w, "label", None), "disabled": bool(getattr(w, "disabled", False))}}
                   for k, w in self.controls.items()}}
            _dpm_write({{"kind": "change", "id": _dpm_ids[id(self)], "explorer": type(self).__name__,
                        "control": next((k for k, w in self.controls.items() if w is change["owner"]), None),
                        "ms": ms, "controls": ctl, "agrees": self._drawn_key == self._values_key() or self.message is not None,
                        "message": self.message, "traceback": err or self.last_traceback,
                        "png_sha256": hashlib.sha256(img).hexdigest()}})
    _dpm_base.Explorer._on_change = _dpm_on_change
def _dpm_cell(result):
    _dpm_write({{"kind": "cell"}})
    if result.error_in_exec is not None or result.error_before_exec is not None:
        e = result.error_in_exec or result.error_before_exec
        _dpm_write({{"kind": "cell_error", "error": "%s: %s" % (type(e).__name__, e),
                    "cell": (result.info.raw_cell or "").strip().splitlines()[:1]}})
get_ipython().events.register("post_run_cell", _dpm_cell)
'''


class Lab:
    """A JupyterLab server and a headless Chromium, for a `with` block (see the module docstring).

    notebooks: name in the scratch folder -> path of the notebook to copy there (or a notebook dict).
    settings: further lab settings, (extension, plugin, value) each, e.g. a short autosave interval.
    """

    def __init__(self, notebooks: dict[str, Any], start_timeout: float = 120.0,
                 settings: tuple[tuple[str, str, dict], ...] = ()) -> None:
        self.notebooks = notebooks
        self.settings = settings
        self.start_timeout = start_timeout
        self.work = tempfile.mkdtemp(prefix="dpm_lab_browser_")
        self.log = os.path.join(self.work, "kernel.jsonl")
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.server = None
        self._pw = None
        self.browser = None
        self.context = None

    # -- start and stop ---------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self._start_server()
            self._start_browser()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _write(self, rel: str, text: str) -> str:
        path = os.path.join(self.work, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def _start_server(self) -> None:
        for name, src in self.notebooks.items():
            if isinstance(src, dict):
                self._write(os.path.join("nb", name), json.dumps(src))
            else:
                os.makedirs(os.path.dirname(os.path.join(self.work, "nb", name)), exist_ok=True)
                shutil.copyfile(src, os.path.join(self.work, "nb", name))
        settings = os.path.join(self.work, "config", "lab-settings")
        for ext, name, value in (("@jupyterlab/notebook-extension", "tracker", {"windowingMode": "none"}),
                                 ("@jupyterlab/apputils-extension", "notification",
                                  {"fetchNews": "false", "checkForUpdates": False}), *self.settings):
            self._write(os.path.join(settings, ext, f"{name}.jupyterlab-settings"), json.dumps(value))
        self._write(os.path.join("ipython", "profile_default", "startup", "00-dpm-lab-browser.py"),
                    KERNEL_HOOK.format(log=self.log, cls=EXPLORER_CLASS))
        bindir = os.path.dirname(sys.executable)   # notebook kernels start "python" through PATH
        env = dict(os.environ, OMP_NUM_THREADS="1", DPM_LAB_THREADS="1",
                   PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
                   JUPYTER_CONFIG_DIR=os.path.join(self.work, "config"), JUPYTERLAB_SETTINGS_DIR=settings,
                   JUPYTER_DATA_DIR=os.path.join(self.work, "data"), JUPYTER_RUNTIME_DIR=os.path.join(self.work, "run"),
                   JUPYTERLAB_WORKSPACES_DIR=os.path.join(self.work, "workspaces"),
                   IPYTHONDIR=os.path.join(self.work, "ipython"))
        for k in ("JUPYTER_PLATFORM_DIRS", "MPLBACKEND"):   # the kernel's own inline backend, not the tests' Agg
            env.pop(k, None)
        self.server_log = open(os.path.join(self.work, "server.log"), "w")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={self.port}", "--ServerApp.ip=127.0.0.1",
             f"--IdentityProvider.token={self.token}", "--allow-root", f"--ServerApp.root_dir={self.work}/nb",
             "--LabApp.news_url=", "--ServerApp.open_browser=False", "--MappingKernelManager.cull_idle_timeout=0"],
            env=env, stdout=subprocess.DEVNULL, stderr=self.server_log, cwd=self.work)
        t_end = time.time() + self.start_timeout
        while True:
            try:
                self.api("GET", "status")
                return
            except Exception:  # noqa: BLE001 - still starting
                if self.server.poll() is not None:
                    raise RuntimeError(f"JupyterLab exited with {self.server.returncode}: {self.server_tail()}") from None
                if time.time() > t_end:
                    raise RuntimeError(f"JupyterLab did not answer within {self.start_timeout:.0f} s: "
                                       f"{self.server_tail()}") from None
                time.sleep(0.5)

    def _start_browser(self) -> None:
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])

    def close(self) -> None:
        for step in (lambda: self.browser and self.browser.close(), lambda: self._pw and self._pw.stop()):
            try:
                step()
            except Exception:  # noqa: BLE001 - closing what is left
                pass
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(15)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(5)

    def server_tail(self, n: int = 2000) -> str:
        self.server_log.flush()
        with open(os.path.join(self.work, "server.log")) as f:
            return f.read()[-n:]

    # -- the server's REST API --------------------------------------------------------------------
    def api(self, method: str, path: str, timeout: float = 10.0) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Every session and kernel ended (one already on its way out may answer 404 or 500)."""
        import urllib.error

        for kind in ("sessions", "kernels"):
            try:
                items = self.api("GET", kind)
            except urllib.error.HTTPError:          # the listing itself can fail while a kernel is dying
                continue
            for item in items:
                try:
                    self.api("DELETE", f"{kind}/{item['id']}", timeout=30.0)
                except urllib.error.HTTPError:
                    pass

    # -- pages ------------------------------------------------------------------------------------
    def open(self, name: str, timeout: float = 120.0, kernel: bool = True):
        """A new page with notebook `name` open and (kernel=True) its
        kernel idle; kernel=False returns once the cells are shown (a reader's view)."""
        if self.context is None:                  # one context: JupyterLab's scripts come from its cache
            self.context = self.browser.new_context(viewport={"width": 1400, "height": 1000})
        page = self.context.new_page()
        page.set_default_timeout(timeout * 1000)
        page.goto(f"http://127.0.0.1:{self.port}/lab/tree/{name}?reset&token={self.token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        if not kernel:
            return page
        t_end = time.time() + timeout
        while not self._kernel_idle(name):       # a "Select Kernel" dialog may ask first: accept its default
            accept = page.locator(".jp-Dialog .jp-mod-accept")
            if accept.count():
                accept.first.click()
            if time.time() > t_end:
                shot = self.screenshot(page, "no_kernel")
                raise TimeoutError(f"no idle kernel for {name} after {timeout:.0f} s (screenshot {shot})")
            time.sleep(0.5)
        wait_idle(page, timeout)
        return page

    def _kernel_idle(self, name: str) -> bool:
        return any(s["path"].endswith(name) and s.get("kernel") and s["kernel"].get("execution_state") == "idle"
                   for s in self.api("GET", "sessions"))

    def add_notebook(self, name: str, nb: dict) -> None:
        """Put a notebook (a dict) into the scratch folder, beside the copies."""
        self._write(os.path.join("nb", name), json.dumps(nb))

    def copy_of(self, name: str) -> str:
        """The path of the scratch copy of notebook `name` (what the page shows)."""
        return os.path.join(self.work, "nb", name)

    def kernel_log(self) -> list[dict]:
        """Every line the kernel hook wrote so far."""
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return [json.loads(line) for line in f if line.strip()]

    def run_all(self, page, timeout: float) -> float:
        """Run > Run All Cells; returns when the kernel has run every (non-empty) code cell and is
        idle, or when a cell raised (JupyterLab then stops) and nothing is left running; seconds taken."""
        t0, start = time.time(), len(self.kernel_log())
        page.locator("li.lm-MenuBar-item", has_text="Run").first.click()
        page.locator("li.lm-Menu-item", has_text="Run All Cells").first.click()
        while True:
            state = page.evaluate(_RUN_STATE)
            if state["idle"] and state["queued"] == 0:
                log = self.kernel_log()[start:]
                ran = sum(r["kind"] == "cell" for r in log)
                if ran >= state["cells"] or any(r["kind"] == "cell_error" for r in log):
                    return time.time() - t0
            if time.time() - t0 > timeout:
                shot = self.screenshot(page, "run_all_timeout")
                raise TimeoutError(f"the notebook's cells had not all run after {timeout:.0f} s: {state} "
                                   f"(screenshot {shot})")
            time.sleep(0.5)

    def screenshot(self, page, name: str) -> str:
        path = os.path.join(self.work, f"{name}.png")
        try:
            page.screenshot(path=path, full_page=True)
        except Exception:  # noqa: BLE001 - a screenshot is a courtesy
            return "(none)"
        return path


# the kernel's state, the cells waiting to run ("[*]") and the code cells that will run (not empty)
_RUN_STATE = """() => {
  const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  return {idle: !!status && status.getAttribute('data-status') === 'idle',
          queued: cells.filter(c => (c.querySelector('.jp-InputArea-prompt') || {}).textContent.includes('*')).length,
          cells: cells.filter(c => (c.querySelector('.cm-content') || {}).textContent.trim() !== '').length};
}"""


def wait_idle(page, timeout: float) -> None:
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout * 1000)


def log_console_messages(page) -> str:
    """The log console's status item: empty while nothing was logged, else its count of messages."""
    return page.evaluate("() => { const s = document.querySelector('.jp-LogConsoleStatusItem');"
                         " return s ? s.textContent.trim() : ''; }")


# Each Explorer's live view in the page: its id (the kernel hook's class) and its controls (kind,
# shown value, disabled, hidden).  A control kind the test cannot drive is 'unknown'.
_VIEWS = """(cls) => [...document.querySelectorAll('.' + cls)].map(box => {
  const id = +[...box.classList].find(c => c.startsWith(cls + '-')).slice(cls.length + 1);
  const hbox = box.querySelector(':scope > .widget-hbox');
  const status = box.querySelector(':scope > .widget-html');
  const controls = [...(hbox ? hbox.children : [])].map((el, i) => {
    const label = (el.querySelector('.widget-label') || {}).textContent || '';
    const hidden = getComputedStyle(el).display === 'none';
    let kind = 'unknown', value = null, disabled = false, options = null, readout = null;
    if (el.querySelector('.noUi-handle')) {
      kind = 'slider'; const h = el.querySelector('.noUi-handle');
      value = +h.getAttribute('aria-valuenow'); readout = ((el.querySelector('.widget-readout') || {}).textContent || '').trim();
      disabled = !!el.querySelector('.noUi-target[disabled]');
    } else if (el.classList.contains('widget-select-multiple')) {
      kind = 'multi'; const s = el.querySelector('select');
      options = [...s.options].map(o => o.textContent); value = [...s.selectedOptions].map(o => o.textContent);
      disabled = s.disabled;
    } else if (el.querySelector('select')) {
      kind = 'select'; const s = el.querySelector('select');
      options = [...s.options].map(o => o.textContent); value = s.selectedIndex >= 0 ? s.options[s.selectedIndex].textContent : null;
      disabled = s.disabled;
    } else if (el.querySelector('input[type=checkbox]')) {
      kind = 'checkbox'; const c = el.querySelector('input[type=checkbox]'); value = c.checked; disabled = c.disabled;
    } else if (el.querySelector('input[type=number], input[type=text]')) {
      kind = 'text'; const t = el.querySelector('input'); value = t.value; disabled = t.disabled;
    }
    return {index: i, label: label.trim(), kind, value, readout, disabled, hidden, options};
  });
  const img = box.querySelector(':scope > img.widget-image');
  return {id, controls, status: status && getComputedStyle(status).display !== 'none' ? status.textContent.trim() : '',
          picture: !!img && img.naturalWidth > 0};
})"""


def explorer_views(page) -> list[dict]:
    return page.evaluate(_VIEWS, EXPLORER_CLASS)


# One change of control `ci` of the explorer view `id` to `arg` (an item of plan()), resolved with
# the ms from the event to the load of the view's new picture, or -1 after `wait` ms.
_CHANGE = """async ([cls, id, ci, arg, wait]) => {
  const box = document.querySelector('.' + cls + '-' + id);
  const img = box.querySelector(':scope > img.widget-image');
  const ctrl = box.querySelector(':scope > .widget-hbox').children[ci];
  box.scrollIntoView({block: 'center'});
  const before = img.src;
  const done = new Promise(res => {
    const t = setTimeout(() => { img.removeEventListener('load', onload); res(-1); }, wait);
    function onload() { if (img.src !== before) { clearTimeout(t); img.removeEventListener('load', onload);
                                                   res(performance.now()); } }
    img.addEventListener('load', onload);
  });
  const t0 = performance.now();
  if (ctrl.querySelector('.noUi-handle')) {   // PageUp to the end, then PageDown back: every key moves it
    const h = ctrl.querySelector('.noUi-handle'); h.focus();
    const now = +h.getAttribute('aria-valuenow'), lo = +h.getAttribute('aria-valuemin'), hi = +h.getAttribute('aria-valuemax');
    window.__dpmDirs = window.__dpmDirs || {}; const key = id + '/' + ci;
    let d = window.__dpmDirs[key] || 1;
    if (d > 0 && now >= hi) d = -1;
    if (d < 0 && now <= lo) d = 1;
    window.__dpmDirs[key] = d;
    h.dispatchEvent(new KeyboardEvent('keydown', {key: d > 0 ? 'PageUp' : 'PageDown', bubbles: true, cancelable: true}));
  } else if (ctrl.classList.contains('widget-select-multiple')) {
    const s = ctrl.querySelector('select');
    for (let i = 0; i < s.options.length; i++) s.options[i].selected = arg.includes(i);
    s.dispatchEvent(new Event('change', {bubbles: true}));
  } else if (ctrl.querySelector('select')) {
    const s = ctrl.querySelector('select'); s.selectedIndex = arg; s.dispatchEvent(new Event('change', {bubbles: true}));
  } else if (ctrl.querySelector('input[type=checkbox]')) {
    ctrl.querySelector('input[type=checkbox]').click();
  } else {
    const i = ctrl.querySelector('input'); i.value = String(arg); i.dispatchEvent(new Event('change', {bubbles: true}));
  }
  const t1 = await done;
  return t1 < 0 ? -1 : t1 - t0;
}"""


def change(page, view_id: int, ci: int, arg: Any, wait_ms: float = 10000.0) -> float:
    """Change control `ci` of the explorer view `view_id` once from the page (to `arg`, an item of
    plan()); the ms from the event to its new picture, -1 if none came within wait_ms."""
    return page.evaluate(_CHANGE, [EXPLORER_CLASS, view_id, ci, arg, wait_ms])


def plan(control: dict, per_control: int) -> list[Any]:
    """The changes the sweep makes of a control (as the page describes it), ending where it began
    where it can: a select's next options (at most per_control) then its first one again, a
    checkbox on and off, a number up per_control - 1 times and back, a slider per_control keys
    (PageUp to its end, then PageDown)."""
    kind, opts = control["kind"], control.get("options") or []
    if kind == "select":
        i0 = opts.index(control["value"]) if control["value"] in opts else 0
        return [(i0 + k) % len(opts) for k in range(1, min(len(opts), per_control + 1))] + ([i0] if len(opts) > 1 else [])
    if kind == "multi":
        start = [opts.index(v) for v in control["value"]]
        return [[k % len(opts), (k + 1) % len(opts)] for k in range(min(len(opts), per_control))] + [start]
    if kind == "checkbox":
        return [None, None]
    if kind == "text":
        v = float(control["value"] or 0)
        v = int(v) if v.is_integer() else v
        return [v + k for k in range(1, per_control)] + [v]
    if kind == "slider":
        return [None] * per_control
    return []


def picture_sha256(page, view_id: int) -> str:
    """SHA-256 of the PNG bytes the view's picture shows (its blob URL fetched in the page)."""
    return page.evaluate("""async ([cls, id]) => {
      const img = document.querySelector('.' + cls + '-' + id + ' > img.widget-image');
      const buf = await (await fetch(img.src)).arrayBuffer();
      const h = await crypto.subtle.digest('SHA-256', buf);
      return [...new Uint8Array(h)].map(b => b.toString(16).padStart(2, '0')).join('');
    }""", [EXPLORER_CLASS, view_id])


def summarize(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """Group latency rows ({..., 'ms': float}) by `keys`: n, median, worst (ms) per group."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r["ms"])
    return [dict(zip(keys, k), n=len(v), median=statistics.median(v), worst=max(v)) for k, v in groups.items()]
