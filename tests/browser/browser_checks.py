"""What the browser tests assert, as plain functions of what the page and the kernel showed (so
that each check is itself tested without a browser, in test_checks.py).  Each returns a list of
problems, each naming the chapter, the widget (or cell) and the control."""
from __future__ import annotations

import math

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# what an output shows where the widget's picture is missing: its text fallback or a placeholder
NOT_A_PICTURE = ("VBox(", "HBox(", "Loading widget", "Error displaying widget", "Image(value=")


# -- committed notebooks, untrusted -----------------------------------------------------------------

def picture_cells(nb: dict) -> dict[int, str]:
    """Cells of a stored notebook whose outputs hold a widget or an animation: index -> what it is
    (the widget's text/plain, or 'animation')."""
    found = {}
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data:
                found[i] = "".join(data.get("text/plain", "widget"))
            elif "data:image/gif;base64" in "".join(data.get("text/html", "")):
                found[i] = "animation"
    return found


def gif_frames(html: str) -> int:
    """Frames of the first base64 GIF in an output's HTML (0 when there is none or it does not decode)."""
    import base64
    import io
    import re

    from PIL import Image

    m = re.search(r"data:image/gif;base64,([A-Za-z0-9+/=]+)", html)
    if m is None:
        return 0
    try:
        return getattr(Image.open(io.BytesIO(base64.b64decode(m.group(1)))), "n_frames", 1)
    except Exception:  # noqa: BLE001 - not a GIF
        return 0


def stored_html(nb: dict, i: int) -> str:
    return "".join("".join(o.get("data", {}).get("text/html", "")) for o in nb["cells"][i].get("outputs", []))


def executed(nb: dict) -> bool:
    return any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")


def static_problems(chapter: str, nb: dict, dom_cells: list[list[dict]], widgets_rendered: int) -> list[str]:
    """The committed notebook opened untrusted: every widget cell shows a loaded image, not text.

    dom_cells: per cell of the page, its outputs as {"mime", "imgs": [[width, height, src prefix]], "text"}.
    widgets_rendered: live widget views in the page (an untrusted notebook must render none).
    """
    if not executed(nb):
        return [f"{chapter}: the committed notebook has no outputs (execute it before committing)"]
    problems = []
    if len(dom_cells) != len(nb["cells"]):
        problems.append(f"{chapter}: the page shows {len(dom_cells)} cells, the notebook has {len(nb['cells'])}")
    if widgets_rendered:
        problems.append(f"{chapter}: {widgets_rendered} live widget view(s) rendered: the notebook was not opened untrusted")
    for i, what in picture_cells(nb).items():
        outs = dom_cells[i] if i < len(dom_cells) else []
        imgs = [im for o in outs for im in o["imgs"]]
        texts = [o["text"] for o in outs if any(o["text"].lstrip().startswith(t) for t in NOT_A_PICTURE)]
        if texts:
            problems.append(f"{chapter}: cell {i} ({what}) shows text instead of its picture: {texts[0][:80]!r}")
        if not any(w > 0 and h > 0 for w, h, _ in imgs):
            problems.append(f"{chapter}: cell {i} ({what}) shows no loaded image "
                            f"(outputs: {[o['mime'] for o in outs] or 'none'})")
        elif what == "animation" and not any(src.startswith("data:image/gif") and w > 0 for w, _, src in imgs):
            problems.append(f"{chapter}: cell {i} (animation) has no loaded GIF: a reader without scripts sees it still")
        if what == "animation" and gif_frames(stored_html(nb, i)) < 2:
            problems.append(f"{chapter}: cell {i} (animation): its stored GIF has fewer than 2 frames (it does not play)")
    return problems


# -- live widgets -------------------------------------------------------------------------------------

def change_problems(where: str, ms: float, wait_ms: float, log_console: str) -> list[str]:
    """One change from the page: its picture changed within the budget and nothing reached the
    log console (JupyterLab's place for a kernel's output outside a cell: a widget callback's error)."""
    problems = []
    if ms < 0:
        problems.append(f"{where}: no new picture within {wait_ms:.0f} ms of the change")
    if log_console and log_console != "0":
        problems.append(f"{where}: the log console has {log_console} new message(s) (output or an error from the kernel)")
    return problems


def kernel_problems(where: str, records: list[dict], widget_status: str) -> list[str]:
    """The kernel's records of a widget's changes (the hook's): an update that raised is an error
    (the widget then shows it as its message, widget_status)."""
    problems = []
    for rec in records:
        if rec.get("traceback"):
            problems.append(f"{where} / {rec['control']}: the update raised (the widget shows "
                            f"{widget_status[:120]!r}):\n{rec['traceback']}")
            break
    return problems


def _readout_close(shown: str, value: float) -> bool:
    """A slider's readout (rounded, e.g. '0.50', '1.0e-02') against the kernel's value."""
    shown = shown.replace("\u2212", "-")              # the readout's minus sign is U+2212
    try:
        x = float(shown)
    except ValueError:
        return False
    digits = shown.split("e")[0]
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    scale = 10 ** int(shown.split("e")[1]) if "e" in shown else 1.0
    return math.isclose(x, value, rel_tol=1e-9, abs_tol=0.51 * 10 ** -decimals * scale + 1e-12)


def _text(label: str | None) -> str | None:
    """An option's label as a comparable string (the page shows spaces as no-break spaces)."""
    return None if label is None else label.replace("\xa0", " ")


def control_agrees(dom: dict, kernel: dict) -> bool:
    """The control as the page shows it (kind, value) against the kernel's value and label."""
    v = kernel["value"]
    if dom["kind"] == "slider":
        return _readout_close(str(dom.get("readout", "")), float(v))
    if dom["kind"] == "select":
        return _text(dom["value"]) == _text(kernel["label"])
    if dom["kind"] == "multi":
        return [_text(x) for x in dom["value"]] == [_text(x) for x in kernel["label"] or ()]
    if dom["kind"] == "checkbox":
        return bool(dom["value"]) == bool(v)
    if dom["kind"] == "text":
        try:
            return math.isclose(float(dom["value"]), float(v), rel_tol=1e-9, abs_tol=1e-12)
        except ValueError:
            return False
    return False


def agreement_problems(where: str, dom_view: dict, last: dict | None, shown_sha256: str) -> list[str]:
    """After the sweep: the page's controls equal the kernel's, the kernel drew for those values,
    and the page shows the very PNG the kernel sent last.  last: the hook's last record of the widget."""
    if last is None:
        return [f"{where}: the kernel recorded no change from the page"]
    problems = []
    names = list(last["controls"])
    for c in dom_view["controls"]:
        if c["hidden"] or c["index"] >= len(names):
            continue
        name = names[c["index"]]
        if not control_agrees(c, last["controls"][name]):
            shown = c["readout"] if c["kind"] == "slider" else c["value"]
            problems.append(f"{where}: control {name!r} shows {shown!r} in the page, "
                            f"the kernel has {last['controls'][name]['value']!r}")
    if not last["agrees"]:
        problems.append(f"{where}: the kernel's figure was drawn for other values than its controls'")
    if shown_sha256 != last["png_sha256"]:
        problems.append(f"{where}: the page's picture is not the last PNG the kernel sent")
    return problems
