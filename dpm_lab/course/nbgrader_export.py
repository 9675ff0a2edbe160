"""nbgrader export: the chapters as an nbgrader course folder.

    python -m dpm_lab.course nbgrader OUT [--only 00 02] [--points 1] [--chapters DIR]

writes OUT/source/<chapter>/<chapter>.ipynb for each chapter and OUT/nbgrader_config.py. In each
notebook every exercise (a `solution` cell) becomes an nbgrader *autograded answer* cell: the
worked answer between nbgrader's `### BEGIN SOLUTION` / `### END SOLUTION` markers (inside each
function's body, after its signature and docstring, so the released stub keeps them), and every
cell that calls a check becomes an *autograder tests* cell worth `points` per check, the call
turned into `assert check_...(...)` (a check returns a true or false result and prints its message).
Outputs and widget state are cleared. Then, in OUT: `nbgrader generate_assignment <chapter>`,
`nbgrader autograde <chapter>` on submitted/<student>/<chapter>/<chapter>.ipynb.

OUT must not exist yet (or be empty): an instructor's existing course folder is never overwritten.
"""
from __future__ import annotations

import ast
import pathlib
from collections.abc import Sequence
from typing import Any

import nbformat
from nbformat import NotebookNode

from .builds import CHAPTER_GLOB, CHECK_CALL, calls_check, chapter_notebook, course_folder, is_solution

__all__ = ["BEGIN", "END", "solution_with_markers", "assert_checks", "nbgrader_notebook", "export"]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SCHEMA = 3
CONFIG = '''\
# nbgrader's configuration for the dpm-lab course (written by `python -m dpm_lab.course nbgrader`)
c = get_config()  # noqa: F821 - nbgrader defines it
c.CourseDirectory.course_id = "dpm-lab"
c.ExecutePreprocessor.timeout = {timeout}
'''


def solution_with_markers(source: str) -> str:
    """A solution cell's source with nbgrader's solution markers: each top-level function's body (after
    its docstring) between them, every other statement but imports between them too."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return f"{BEGIN}\n{source.rstrip()}\n{END}\n"
    lines = source.splitlines()
    out: list[str] = []
    loose: list[str] = []          # consecutive statements to wrap as one block

    def flush() -> None:
        if loose:
            out.append("\n".join([BEGIN, *loose, END]))
            loose.clear()

    for node in tree.body:
        start = (node.decorator_list[0].lineno if getattr(node, "decorator_list", None) else node.lineno) - 1
        segment = lines[start:node.end_lineno]
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            flush()
            out.append("\n".join(segment))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            flush()
            body = node.body
            has_doc = ast.get_docstring(node, clean=False) is not None and isinstance(body[0], ast.Expr)
            first = body[1] if has_doc and len(body) > 1 else body[0]
            if has_doc and len(body) == 1:      # only a docstring: nothing to hide
                out.append("\n".join(segment))
                continue
            indent = " " * first.col_offset
            head = lines[start:first.lineno - 1]
            rest = lines[first.lineno - 1:node.end_lineno]
            out.append("\n".join([*head, f"{indent}{BEGIN}", *rest, f"{indent}{END}"]))
        else:
            loose.extend(segment)
    flush()
    return "\n\n".join(out) + "\n"


def assert_checks(source: str) -> str:
    """A check cell's source with each top-level `...check_name(...)` call made `assert ...check_name(...)`,
    so nbgrader's autograder counts a failed check as a failed test."""
    tree = ast.parse(source)
    lines = source.splitlines()
    for node in reversed(tree.body):
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and CHECK_CALL.search(ast.get_source_segment(source, node.value.func) + "(")):
            i = node.lineno - 1
            lines[i] = lines[i][:node.col_offset] + "assert " + lines[i][node.col_offset:]
            if node.end_lineno != node.lineno:      # a call over several lines: keep it one expression
                lines[i] = lines[i][:node.col_offset] + "assert (" + lines[i][node.col_offset + len("assert "):]
                lines[node.end_lineno - 1] += ")"
    return "\n".join(lines) + ("\n" if source.endswith("\n") else "")


def _meta(cell: NotebookNode, grade_id: str, *, solution: bool, grade: bool, points: float = 0) -> None:
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution, "schema_version": SCHEMA,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    cell.metadata["nbgrader"] = meta


def nbgrader_notebook(nb: dict[str, Any], *, points: float = 1.0) -> NotebookNode:
    """The nbgrader source version of a chapter (see the module docstring); returns a new notebook."""
    nb = nbformat.reads(nbformat.writes(nbformat.from_dict(nb)), as_version=4)
    answers = tests = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if is_solution(cell):
            answers += 1
            cell.source = solution_with_markers(cell.source)
            cell.metadata.pop("stub", None)
            _meta(cell, f"answer_{answers:02d}", solution=True, grade=False)
        elif calls_check(cell):
            n = len(CHECK_CALL.findall(cell.source))
            names = [m.group(0)[6:].rstrip("( ") for m in CHECK_CALL.finditer(cell.source)]
            tests += 1
            cell.source = assert_checks(cell.source)
            _meta(cell, f"check_{names[0]}" if n == 1 else f"checks_{tests:02d}", solution=False, grade=True,
                  points=points * n)
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    return nb


def export(out: str | pathlib.Path, *, chapters: Sequence[str] | None = None, source: str | pathlib.Path | None = None,
           points: float = 1.0, timeout: int = 600) -> list[pathlib.Path]:
    """Write the nbgrader course folder `out` (see the module docstring); returns the notebooks written.

    `out` must not exist or be empty (FileExistsError otherwise, nothing written); a bad chapter name
    raises ValueError listing the valid ones, before anything is written."""
    out = pathlib.Path(out)
    src = pathlib.Path(source) if source else course_folder("chapters")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not empty: nothing was written. Name a new folder, "
                              "or add chapters to an existing course by exporting to a new folder and copying "
                              "source/<chapter>/ across")
    paths = [chapter_notebook(c, src) for c in chapters] if chapters else sorted(src.glob(CHAPTER_GLOB))
    if not paths:
        raise ValueError(f"no chapters found in {src}")
    if points <= 0:
        raise ValueError(f"points must be positive, got {points}")
    written = []
    for path in paths:
        nb = nbgrader_notebook(nbformat.read(path, as_version=4), points=points)
        target = out / "source" / path.stem / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        written.append(target)
    (out / "nbgrader_config.py").write_text(CONFIG.format(timeout=int(timeout)), encoding="utf-8")
    return written
