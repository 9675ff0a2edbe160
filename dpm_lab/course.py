"""Build the student and instructor copies of the chapters (tooling: not imported by `import dpm_lab`).

    python -m dpm_lab.course student    [--out DIR] [--chapters DIR] [--execute]
    python -m dpm_lab.course instructor [--out DIR] [--chapters DIR] [--execute]

Code cells tagged `solution` (cell metadata "tags": ["solution"]) hold the worked answers.
The student copy replaces each with a stub: every top-level `def` keeps its signature and
docstring and its body becomes `# YOUR CODE HERE` + `return None`; every top-level
assignment `name = ...` becomes `name = None  # YOUR CODE HERE`. A cell may give its own
stub text in its metadata ("stub": "..."). The instructor copy keeps the solutions. Both
copies have their outputs cleared (or re-executed with --execute), and the checks in
`dl.exercises` print "not attempted yet" on stubs, so the student copy runs end to end.
"""
from __future__ import annotations

import argparse
import ast
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import nbformat
from nbformat import NotebookNode

__all__ = ["SOLUTION_TAG", "is_solution", "make_stub", "student_notebook", "instructor_notebook",
           "build", "execute_notebook", "main"]

SOLUTION_TAG = "solution"
STUB_LINE = "# YOUR CODE HERE"


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


def student_notebook(nb: dict[str, Any]) -> NotebookNode:
    """A copy of `nb` with solution cells replaced by stubs and outputs cleared."""
    nb = nbformat.from_dict(nb)
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    for cell in nb.cells:
        if is_solution(cell):
            cell.source = cell.metadata.get("stub") or make_stub(cell.source)
            cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t != SOLUTION_TAG] + ["exercise"]
            cell.metadata.pop("stub", None)
    return _clean(nb)


def instructor_notebook(nb: dict[str, Any]) -> NotebookNode:
    """A copy of `nb` with solutions kept and outputs cleared."""
    nb = nbformat.reads(nbformat.writes(nbformat.from_dict(nb)), as_version=4)
    return _clean(nb)


def execute_notebook(nb: NotebookNode, *, cwd: str | pathlib.Path | None = None, timeout: int = 600) -> NotebookNode:
    """Execute a notebook in place with nbclient and return it."""
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd or ".")}}).execute()
    return nb


def build(kind: str, out: str | pathlib.Path | None = None, chapters: str | pathlib.Path | None = None,
          *, execute: bool = False, pattern: str = "[0-9][0-9]_*.ipynb") -> list[pathlib.Path]:
    """Write the student or instructor copies of every chapter; returns the written paths."""
    if kind not in ("student", "instructor"):
        raise ValueError(f"kind must be 'student' or 'instructor', got {kind!r}")
    src = pathlib.Path(chapters) if chapters else pathlib.Path(__file__).resolve().parent.parent / "chapters"
    dst = pathlib.Path(out) if out else pathlib.Path(f"build/{kind}")
    if not src.is_dir():
        raise ValueError(f"chapters folder not found: {src}")
    dst.mkdir(parents=True, exist_ok=True)
    make = student_notebook if kind == "student" else instructor_notebook
    written = []
    for path in sorted(src.glob(pattern)):
        nb = make(nbformat.read(path, as_version=4))
        if execute:
            execute_notebook(nb, cwd=dst)
        target = dst / path.name
        nbformat.write(nb, target)
        written.append(target)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: build the copies, print what was written; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m dpm_lab.course", description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["student", "instructor"])
    p.add_argument("--out", default=None, help="output folder (default build/<kind>)")
    p.add_argument("--chapters", default=None, help="source chapters folder (default: the repo's chapters/)")
    p.add_argument("--execute", action="store_true", help="execute each copy after building it")
    args = p.parse_args(argv)
    paths = build(args.kind, args.out, args.chapters, execute=args.execute)
    for path in paths:
        print(f"wrote {path}")
    n = sum(is_solution(c) for path in paths for c in nbformat.read(path, as_version=4).cells)
    print(f"{len(paths)} {args.kind} notebook(s); {n} solution cell(s) left in")
    return 0


if __name__ == "__main__":
    sys.exit(main())
