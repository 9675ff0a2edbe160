"""Normalise: store a notebook exactly as JupyterLab would save it, so opening a chapter changes nothing.

JupyterLab rewrites a notebook it opens as soon as it autosaves (every two minutes by default): it
stores the running kernel's kernelspec and language_info, and every number goes through the
browser's JSON, so an integral float (3.0, as Python's json writes widget state) comes back as an
int (3); the server then writes the JSON with nbformat (indent 1, keys sorted, non-ASCII kept, a
trailing newline). `normalize_notebook` makes those same changes, so a normalised chapter opened
in JupyterLab and autosaved is byte for byte what is committed (tests/browser checks it).

    python -m dpm_lab.course normalize [NOTEBOOK ...] [--check]

With no notebooks it normalises every chapter; --check changes nothing and exits 1 when a file
would change (for CI). It also drops the stored `True`/`False` result of a cell that ends in a bare
check call (`dl.exercises.check_x(my_x)`): the checks no longer display it (dl.exercises._base), so
a notebook executed before that change stores what a run now gives, and nbval agrees with it.
"""
from __future__ import annotations

import ast
import json
import math
import pathlib
import re
from collections.abc import Iterable
from typing import Any

import nbformat

from .builds import CHAPTER_GLOB, course_folder

__all__ = ["KERNELSPEC", "language_info", "integral_numbers", "normalize_notebook", "normalized_text",
           "normalize_files"]

# what JupyterLab stores for the course's kernel (ipykernel's default kernelspec)
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def language_info() -> dict[str, Any]:
    """The language_info the course's kernel (ipykernel in this Python) reports, as JupyterLab stores it."""
    from ipykernel.ipkernel import IPythonKernel

    return json.loads(json.dumps(IPythonKernel.language_info))


def integral_numbers(value: Any) -> Any:
    """`value` with every float that is a whole number made an int (3.0 -> 3), and NaN/inf made None,
    as a round trip through JavaScript's JSON does; dicts and lists are walked, other values kept."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return int(value) if value.is_integer() and abs(value) < 1e21 else value
    if isinstance(value, dict):
        return {k: integral_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral_numbers(v) for v in value]
    return value


def ends_in_check(source: str | list[str]) -> bool:
    """True when a code cell's last statement is a bare check call (`...check_name(...)`)."""
    try:
        last = ast.parse("".join(source) if isinstance(source, list) else source).body[-1]
    except (SyntaxError, IndexError):
        return False
    return (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
            and re.search(r"(^|\.)check_\w+$", ast.unparse(last.value.func)) is not None)


def _drop_check_results(cell: dict[str, Any]) -> None:
    if cell.get("cell_type") == "code" and ends_in_check(cell.get("source", "")):
        cell["outputs"] = [o for o in cell.get("outputs", []) if not (
            o.get("output_type") == "execute_result"
            and "".join(o.get("data", {}).get("text/plain", "")) in ("True", "False"))]


def normalize_notebook(nb: dict[str, Any], *, info: dict[str, Any] | None = None) -> nbformat.NotebookNode:
    """A copy of `nb` as JupyterLab saves it: the ipykernel kernelspec, this kernel's language_info, and
    integral numbers as ints everywhere (metadata, widget state, outputs); a check cell's stored True/False
    result dropped (see the module docstring)."""
    data = integral_numbers(json.loads(json.dumps(nb)))
    for cell in data.get("cells", []):
        _drop_check_results(cell)
    data.setdefault("metadata", {})
    data["metadata"]["kernelspec"] = dict(KERNELSPEC)
    data["metadata"]["language_info"] = info if info is not None else language_info()
    return nbformat.from_dict(data)


def normalized_text(nb: dict[str, Any], **kwargs: Any) -> str:
    """The file text JupyterLab's server writes for `nb` (nbformat's writer plus a trailing newline)."""
    text = nbformat.writes(normalize_notebook(nb, **kwargs), version=nbformat.NO_CONVERT)
    return text if text.endswith("\n") else text + "\n"


def normalize_files(paths: Iterable[str | pathlib.Path] | None = None, *, check: bool = False) -> list[pathlib.Path]:
    """Normalise the notebooks at `paths` (default: every chapter) in place; returns those that changed
    (with check=True: those that would change, none written). A file that is not a notebook raises
    ValueError naming it."""
    files = [pathlib.Path(p) for p in paths] if paths else sorted(course_folder("chapters").glob(CHAPTER_GLOB))
    info = language_info()
    changed = []
    for path in files:
        if not path.is_file():
            raise ValueError(f"no notebook at {path}")
        old = path.read_text(encoding="utf-8")
        try:
            new = normalized_text(json.loads(old), info=info)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a readable notebook ({type(exc).__name__}: {exc}); "
                             "fix or restore it (git checkout -- FILE) and run again") from None
        if new != old:
            changed.append(path)
            if not check:
                path.write_text(new, encoding="utf-8")
    return changed
