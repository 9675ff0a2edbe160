"""Builds: the student and instructor copies of the chapters and problem sets.

Code cells tagged `solution` (cell metadata "tags": ["solution"]) hold the worked answers.
The student copy replaces each with a stub: every top-level `def` keeps its signature and
docstring and its body becomes `# YOUR CODE HERE` + `return None`; every top-level
assignment `name = ...` becomes `name = None  # YOUR CODE HERE`. A cell may give its own
stub text in its metadata ("stub": "..."). The instructor copy keeps the solutions. Both
copies have their outputs cleared (or re-executed with --execute), and the checks in
`dl.exercises` print "not attempted yet" on stubs, so the student copy runs end to end.
`student_notebook(nb, keep_outputs=True)` (the learner's workspace) keeps every output but
those of the solution cells and of the cells that call a check, so figures and widget
pictures show before anything runs.

Problem sets (`problems/chNN.md`, written questions and derivations) go to `<out>/problem_sets/`:
the text between a line `<!-- solution -->` and a line `<!-- end solution -->` is kept in the
instructor copy and left out of the student copy.
"""
from __future__ import annotations

import ast
import pathlib
import re
from collections.abc import Sequence
from typing import Any

import nbformat
from nbformat import NotebookNode

__all__ = ["SOLUTION_TAG", "STUB_LINE", "ROOT", "CHAPTER_GLOB", "course_folder", "is_solution", "calls_check",
           "make_stub", "student_notebook", "instructor_notebook", "execute_notebook", "build", "problem_set",
           "build_problem_sets", "chapter_notebook", "SOLUTION_BEGIN", "SOLUTION_END", "last_line"]

SOLUTION_TAG = "solution"
STUB_LINE = "# YOUR CODE HERE"
ROOT = pathlib.Path(__file__).resolve().parents[2]   # a checkout: chapters/, problems/ beside dpm_lab/
PACKAGED = pathlib.Path(__file__).resolve().parents[1] / "_course"   # the same folders inside an installed wheel

CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"


def course_folder(name: str) -> pathlib.Path:
    """The course's `name` folder ("chapters", "problems", "data"): the checkout's, else the installed wheel's."""
    here = ROOT / name
    if here.is_dir() or not (PACKAGED / name).is_dir():
        return here
    return PACKAGED / name


CHECK_CALL = re.compile(r"\bcheck_\w+\s*\(")


def calls_check(cell: dict[str, Any]) -> bool:
    """True for a code cell that calls an exercise check (its stored output would give the result away)."""
    return cell.get("cell_type") == "code" and bool(CHECK_CALL.search(cell.get("source", "")))


def is_solution(cell: dict[str, Any]) -> bool:
    """True for a code cell tagged `solution`."""
    return cell.get("cell_type") == "code" and SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def make_stub(source: str) -> str:
    """The stub of a solution cell's source: signatures and docstrings kept, bodies removed."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return f"{STUB_LINE}\n"
    lines = source.splitlines()
    out: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(ast.get_source_segment(source, node))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first_body = node.body[0]
            header_end = first_body.lineno - 1  # lines before the body: decorators and signature
            start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
            header = lines[start:header_end]
            indent = " " * first_body.col_offset
            body = []
            doc = ast.get_docstring(node, clean=False)
            if doc is not None and isinstance(first_body, ast.Expr):
                body.extend(lines[first_body.lineno - 1:first_body.end_lineno])
            body += [f"{indent}{STUB_LINE}", f"{indent}return None"]
            out.append("\n".join(header + body))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = ", ".join(ast.get_source_segment(source, t) for t in targets)
            n = len(targets[0].elts) if isinstance(targets[0], ast.Tuple) else 1
            value = "None" if n == 1 else ", ".join(["None"] * n)
            out.append(f"{names} = {value}  {STUB_LINE}")
    if not out:
        out.append(STUB_LINE)
    return "\n\n".join(out) + "\n"


def _clean(nb: NotebookNode) -> NotebookNode:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    return nb


def student_notebook(nb: dict[str, Any], *, keep_outputs: bool = False) -> NotebookNode:
    """A copy of `nb` with solution cells replaced by stubs and outputs cleared.

    keep_outputs=True (the learner's workspace) keeps every stored output and the widget state, and
    clears only the outputs of the stubs and of the cells that call a check (they would say "passed").
    """
    nb = nbformat.from_dict(nb)
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    for cell in nb.cells:
        if is_solution(cell):
            cell.source = cell.metadata.get("stub") or make_stub(cell.source)
            cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t != SOLUTION_TAG] + ["exercise"]
            cell.metadata.pop("stub", None)
            if keep_outputs:
                cell.outputs, cell.execution_count = [], None
        elif keep_outputs and calls_check(cell):
            cell.outputs, cell.execution_count = [], None
    return nb if keep_outputs else _clean(nb)


def instructor_notebook(nb: dict[str, Any]) -> NotebookNode:
    """A copy of `nb` with solutions kept and outputs cleared."""
    nb = nbformat.reads(nbformat.writes(nbformat.from_dict(nb)), as_version=4)
    return _clean(nb)


def execute_notebook(nb: NotebookNode, *, cwd: str | pathlib.Path | None = None, timeout: int = 600,
                     env: dict[str, str] | None = None, quiet_kernel: bool = False,
                     **client_options: Any) -> NotebookNode:
    """Execute a notebook in place with nbclient and return it.

    `timeout` is per cell; `env` is the kernel's whole environment (default: this process's);
    `quiet_kernel` drops the kernel process's own stderr (ipykernel's start-up warnings; the cells'
    output is kept); `client_options` go to nbclient.NotebookClient (hooks such as on_cell_start,
    timeout_func, allow_errors).
    """
    import subprocess

    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd or ".")}}, **client_options)
    kernel: dict[str, Any] = {"env": env} if env is not None else {}
    if quiet_kernel:
        kernel["stderr"] = subprocess.DEVNULL
    client.execute(**kernel)
    return nb


def build(kind: str, out: str | pathlib.Path | None = None, chapters: str | pathlib.Path | None = None,
          *, execute: bool = False, pattern: str = CHAPTER_GLOB, only: Sequence[str] | None = None
          ) -> list[pathlib.Path]:
    """Write the student or instructor copies of every chapter (or the chapters named in `only`); returns the
    written paths. A bad name in `only` raises ValueError listing the valid ones, before anything is written."""
    if kind not in ("student", "instructor"):
        raise ValueError(f"kind must be 'student' or 'instructor', got {kind!r}")
    src = pathlib.Path(chapters) if chapters else course_folder("chapters")
    dst = pathlib.Path(out) if out else pathlib.Path(f"build/{kind}")
    if not src.is_dir():
        raise ValueError(f"chapters folder not found: {src}")
    paths = [chapter_notebook(name, src) for name in only] if only else sorted(src.glob(pattern))
    dst.mkdir(parents=True, exist_ok=True)
    make = student_notebook if kind == "student" else instructor_notebook
    written = []
    for path in paths:
        nb = make(nbformat.read(path, as_version=4))
        if execute:
            execute_notebook(nb, cwd=dst)
        target = dst / path.name
        nbformat.write(nb, target)
        written.append(target)
    return written


# -- problem sets -------------------------------------------------------------------------------
SOLUTION_BEGIN = "<!-- solution -->"
SOLUTION_END = "<!-- end solution -->"


def problem_set(text: str, kind: str, *, name: str = "<text>") -> str:
    """The student or instructor copy of a problem set's Markdown `text`.

    Solutions are the lines between a line `<!-- solution -->` and a line `<!-- end solution -->`:
    the student copy leaves them out (markers included), the instructor copy keeps them (markers
    dropped). Unbalanced or nested markers raise ValueError naming the file and line.
    """
    if kind not in ("student", "instructor"):
        raise ValueError(f"kind must be 'student' or 'instructor', got {kind!r}")
    out: list[str] = []
    opened = 0
    for n, line in enumerate(text.splitlines(), start=1):
        marker = line.strip()
        if marker == SOLUTION_BEGIN:
            if opened:
                raise ValueError(f"{name}:{n}: a solution opened inside the solution opened at line {opened}")
            opened = n
        elif marker == SOLUTION_END:
            if not opened:
                raise ValueError(f"{name}:{n}: {SOLUTION_END} without a {SOLUTION_BEGIN} before it")
            opened = 0
        elif not opened or kind == "instructor":
            out.append(line)
    if opened:
        raise ValueError(f"{name}:{opened}: {SOLUTION_BEGIN} is never closed by {SOLUTION_END}")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip() + "\n"


def build_problem_sets(kind: str, out: str | pathlib.Path, problems: str | pathlib.Path | None = None
                       ) -> list[pathlib.Path]:
    """Write `<out>/problem_sets/chNN.md` from `problems/chNN.md` (solutions kept only for the instructor)."""
    src = pathlib.Path(problems) if problems else course_folder("problems")
    if not src.is_dir():
        raise ValueError(f"problems folder not found: {src}")
    dst = pathlib.Path(out) / "problem_sets"
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(src.glob("ch[0-9][0-9].md")):
        target = dst / path.name
        target.write_text(problem_set(path.read_text(encoding="utf-8"), kind, name=str(path)), encoding="utf-8")
        written.append(target)
    return written




def chapter_notebook(name: str, chapters: str | pathlib.Path | None = None) -> pathlib.Path:
    """The chapter file for `name`: "02", "2", "02_vae_to_ddpm" or "02_vae_to_ddpm.ipynb"; a bad name lists the valid ones."""
    src = pathlib.Path(chapters) if chapters else course_folder("chapters")
    paths = sorted(src.glob(CHAPTER_GLOB))
    key = str(name).removesuffix(".ipynb")
    if key.isdigit():
        key = key.zfill(2)
    hits = [p for p in paths if p.stem == key or p.name[:2] == key]
    if len(hits) != 1:
        valid = ", ".join(f"{p.name[:2]} ({p.stem})" for p in paths) or f"none in {src}"
        raise ValueError(f"no chapter {name!r}; valid chapters: {valid}")
    return hits[0]


def last_line(text: Any) -> str:
    """The last non-blank line of `text` (an error's message), stripped."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1] if lines else ""
