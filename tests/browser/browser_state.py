"""The browser tests' shared state: the chapters they run, the latency rows and timings they
collect, and the table the terminal summary prints."""
from __future__ import annotations

import glob
import os
import statistics

from lab_driver import ROOT

CHAPTERS = sorted(glob.glob(os.path.join(ROOT, "chapters", "[0-9][0-9]_*.ipynb")))
LATENCY: list[dict] = []          # one row per browser change: chapter, widget, control, ms, kernel_ms
TIMINGS: dict[str, float] = {}    # what took how long (s), for the summary


def chapter_name(path: str) -> str:
    return os.path.basename(path)[:-len(".ipynb")]


def budget(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def latency_table(rows: list[dict]) -> str:
    """Per widget and control: n, median and worst ms from the change in the page to its new picture,
    and the kernel's share; then per widget (all its controls)."""
    def group(keys):
        out: dict[tuple, list[dict]] = {}
        for r in rows:
            out.setdefault(tuple(r[k] for k in keys), []).append(r)
        return out

    head = f"{'chapter':<26}{'widget':<28}{'control':<18}{'n':>4}{'median ms':>11}{'worst ms':>10}{'kernel med':>12}{'kernel worst':>13}"
    lines = [head, "-" * len(head)]
    for (ch, w, c), rs in group(("chapter", "widget", "control")).items():
        ms, ks = [r["ms"] for r in rs], [r["kernel_ms"] for r in rs if r.get("kernel_ms") is not None]
        flag = "" if statistics.median(ms) <= 150 and max(ms) <= 300 else "   over 150/300"
        lines.append(f"{ch:<26}{w:<28}{c:<18}{len(ms):>4}{statistics.median(ms):>11.0f}{max(ms):>10.0f}"
                     f"{(statistics.median(ks) if ks else float('nan')):>12.0f}{(max(ks) if ks else float('nan')):>13.0f}{flag}")
    lines += ["", f"{'chapter':<26}{'widget (all controls)':<46}{'n':>4}{'median ms':>11}{'worst ms':>10}", "-" * 97]
    for (ch, w), rs in group(("chapter", "widget")).items():
        ms = [r["ms"] for r in rs]
        lines.append(f"{ch:<26}{w:<46}{len(ms):>4}{statistics.median(ms):>11.0f}{max(ms):>10.0f}")
    return "\n".join(lines)
