"""Opening a committed chapter in JupyterLab and leaving it open past autosave changes nothing.

JupyterLab autosaves an open notebook (every 120 s by default; here every 2 s, a lab setting of this
test's own server): it stores the kernel's kernelspec and language_info and sends every number
through the browser's JSON (3.0 comes back as 3). `python -m dpm_lab.course normalize` stores the
chapters that way, so a learner who opens the reference chapters leaves `git status` clean. All the
chapters are opened at once, each in its own page with its kernel started, then left past several
autosave intervals and closed; each file must then be byte for byte the committed one. A first test
shows the setup can fail: a notebook stored the old way ("Python 3", 3.0) is rewritten, and its
normalised form is not.
"""
from __future__ import annotations

import json
import os
import time

import pytest
from browser_state import CHAPTERS, TIMINGS
from lab_driver import ROOT, Lab, unavailable

pytestmark = pytest.mark.browser

AUTOSAVE_S = 2
SETTINGS = (("@jupyterlab/docmanager-extension", "plugin", {"autosave": True, "autosaveInterval": AUTOSAVE_S}),)
_DIRTY = "document.querySelectorAll('.jp-mod-dirty').length"


def _old_style(nb: dict) -> dict:
    """A copy stored as before the normaliser: kernelspec 'Python 3', integral numbers as floats."""
    out = json.loads(json.dumps(nb))
    out["metadata"]["kernelspec"]["display_name"] = "Python 3"
    out["metadata"].setdefault("widgets", {})["application/vnd.jupyter.widget-state+json"] = {
        "state": {"m": {"model_name": "FloatSliderModel", "state": {"max": 1.0, "min": 0.0, "value": 3.0}}},
        "version_major": 2, "version_minor": 0}
    return out


def _tiny() -> dict:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    from dpm_lab.course import normalize_notebook

    nb = new_notebook(cells=[new_markdown_cell("# tiny"), new_code_cell("x = 1")])
    return json.loads(nbformat.writes(normalize_notebook(nb)))


@pytest.fixture(scope="module")
def clean_lab():
    why = unavailable()
    if why:
        pytest.skip(f"browser tests skipped: {why}")
    from dpm_lab.course import normalized_text

    tiny = _tiny()
    files = {os.path.basename(p): p for p in CHAPTERS}
    files["zz_old_style.ipynb"] = _old_style(tiny)
    t0 = time.time()
    with Lab(files, settings=SETTINGS) as lab:
        with open(lab.copy_of("zz_normalised.ipynb"), "w", encoding="utf-8") as f:
            f.write(normalized_text(_old_style(tiny)))
        yield lab
    TIMINGS["chapters stay clean (open, autosave, close)"] = time.time() - t0


def _open_all_and_autosave(lab: Lab, names: list[str], timeout: float = 180.0) -> None:
    """Open every notebook in its own page, wait for every kernel to be idle and several autosaves, close."""
    pages = [lab.open(name, kernel=False) for name in names]
    t_end = time.time() + timeout
    while not all(lab._kernel_idle(name) for name in names):
        for page in pages:                      # a "Select Kernel" dialog may ask first: accept its default
            accept = page.locator(".jp-Dialog .jp-mod-accept")
            if accept.count():
                accept.first.click()
        assert time.time() < t_end, f"kernels not idle after {timeout:.0f} s"
        time.sleep(0.5)
    time.sleep(3 * AUTOSAVE_S + 2)             # several autosave intervals after the kernels' metadata arrived
    while any(page.evaluate(_DIRTY) for page in pages):
        assert time.time() < t_end, "a notebook stayed unsaved (dirty) past the autosave interval"
        time.sleep(0.5)
    for page in pages:
        page.close()
    lab.shutdown_kernels()


def test_autosave_rewrites_an_old_style_notebook_but_not_a_normalised_one(clean_lab):
    names = ["zz_old_style.ipynb", "zz_normalised.ipynb"]
    before = {n: open(clean_lab.copy_of(n), encoding="utf-8").read() for n in names}
    _open_all_and_autosave(clean_lab, names)
    after = {n: open(clean_lab.copy_of(n), encoding="utf-8").read() for n in names}
    assert after["zz_old_style.ipynb"] != before["zz_old_style.ipynb"], "autosave did not run: the test cannot fail"
    assert '"display_name": "Python 3 (ipykernel)"' in after["zz_old_style.ipynb"]
    assert after["zz_normalised.ipynb"] == before["zz_normalised.ipynb"]
    assert after["zz_old_style.ipynb"] == before["zz_normalised.ipynb"]     # the normaliser writes what JupyterLab does


def test_committed_chapters_stay_clean_when_opened(clean_lab):
    names = [os.path.basename(p) for p in CHAPTERS]
    _open_all_and_autosave(clean_lab, names)
    changed = [n for n in names
               if open(clean_lab.copy_of(n), "rb").read() != open(os.path.join(ROOT, "chapters", n), "rb").read()]
    assert not changed, (f"JupyterLab rewrote {changed} on autosave: run `python -m dpm_lab.course normalize` "
                         "and commit the chapters")
