"""The course's tooling: student and instructor builds, grading, figure export (not imported by `import dpm_lab`).

    python -m dpm_lab.course student    [--out DIR] [--chapters DIR] [--problems DIR] [--execute]
    python -m dpm_lab.course instructor [--out DIR] [--chapters DIR] [--problems DIR] [--execute]
    python -m dpm_lab.course grade DIR  [--csv FILE] [--timeout S] [--executed DIR]
    python -m dpm_lab.course figures CHAPTER --out DIR [--chapters DIR] [--dpi N]

Code cells tagged `solution` (cell metadata "tags": ["solution"]) hold the worked answers.
The student copy replaces each with a stub: every top-level `def` keeps its signature and
docstring and its body becomes `# YOUR CODE HERE` + `return None`; every top-level
assignment `name = ...` becomes `name = None  # YOUR CODE HERE`. A cell may give its own
stub text in its metadata ("stub": "..."). The instructor copy keeps the solutions. Both
copies have their outputs cleared (or re-executed with --execute), and the checks in
`dl.exercises` print "not attempted yet" on stubs, so the student copy runs end to end.

Problem sets (`problems/chNN.md`, written questions and derivations) go to `<out>/problem_sets/`:
the text between a line `<!-- solution -->` and a line `<!-- end solution -->` is kept in the
instructor copy and left out of the student copy.

`grade DIR` executes every student's notebooks, one folder per student (DIR/<student>/NN_*.ipynb,
the chapter read from the file name's two leading digits), and writes one CSV row per student,
notebook and exercise check (the checks report machine-readably through $DPM_LAB_CHECK_RESULTS,
see dl.exercises._base), plus a printed summary. A notebook that fails to run is a row saying
which cell failed and the error's last line; the checks it never reached read "not run".

`figures CHAPTER --out DIR` executes the chapter (with its solutions) and saves every figure it
displays, matplotlib figures and widget pictures, as PNG and SVG named
<chapter>_cellNN_figK.{png,svg} (NN the cell's position counted from 1, markdown included).
"""
from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import pathlib
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import nbformat
from nbformat import NotebookNode

__all__ = ["SOLUTION_TAG", "is_solution", "make_stub", "student_notebook", "instructor_notebook",
           "build", "execute_notebook", "problem_set", "build_problem_sets", "NotebookGrade", "grade_notebook",
           "grade", "write_grades", "summary", "chapter_notebook", "export_figures", "main"]

SOLUTION_TAG = "solution"
STUB_LINE = "# YOUR CODE HERE"
ROOT = pathlib.Path(__file__).resolve().parent.parent
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"


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


def execute_notebook(nb: NotebookNode, *, cwd: str | pathlib.Path | None = None, timeout: int = 600,
                     env: dict[str, str] | None = None, **client_options: Any) -> NotebookNode:
    """Execute a notebook in place with nbclient and return it.

    `timeout` is per cell; `env` is the kernel's whole environment (default: this process's);
    `client_options` go to nbclient.NotebookClient (hooks such as on_cell_start, timeout_func).
    """
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd or ".")}}, **client_options)
    client.execute(**({"env": env} if env is not None else {}))
    return nb


def build(kind: str, out: str | pathlib.Path | None = None, chapters: str | pathlib.Path | None = None,
          *, execute: bool = False, pattern: str = CHAPTER_GLOB) -> list[pathlib.Path]:
    """Write the student or instructor copies of every chapter; returns the written paths."""
    if kind not in ("student", "instructor"):
        raise ValueError(f"kind must be 'student' or 'instructor', got {kind!r}")
    src = pathlib.Path(chapters) if chapters else ROOT / "chapters"
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
    src = pathlib.Path(problems) if problems else ROOT / "problems"
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


# -- grading ------------------------------------------------------------------------------------
NOT_RUN = "not run"          # the notebook stopped (error, timeout) before the check's cell
NOT_CALLED = "not called"    # the notebook ran to the end but never called the check
GRADE_COLUMNS = ("student", "chapter", "notebook", "check", "status", "run", "message")
SUMMARY_COLUMNS = ("student", "chapter", "notebook", "run", "seconds", "passed", "failed", "not attempted",
                   "not run", "checks")


@dataclass
class NotebookGrade:
    """One student's notebook: how its run went and each check's (status, message)."""
    student: str
    chapter: str
    notebook: str
    run: str = "ok"             # "ok", or what stopped it: the cell and the error's last line
    seconds: float = 0.0
    checks: dict[str, tuple[str, str]] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(s == status for s, _ in self.checks.values())


def _expected_checks(chapter: str, chapters: str | pathlib.Path | None = None) -> list[str]:
    """The checks a chapter ("02") asks for, in the order its exercise file defines them: the registered
    checks of that chapter that the course's own notebook calls (all of them if it has no notebook)."""
    from dpm_lab.exercises import EXERCISES

    registered = [name for name, (ch, _) in EXERCISES.items() if ch == chapter]
    src = pathlib.Path(chapters) if chapters else ROOT / "chapters"
    books = sorted(src.glob(f"{chapter}_*.ipynb"))
    if not books:
        return registered
    code = "\n".join(c.source for c in nbformat.read(books[0], as_version=4).cells if c.cell_type == "code")
    called = set(re.findall(r"check_(\w+)\s*\(", code))
    return [name for name in registered if name in called]


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _where(nb: NotebookNode, index: int | None) -> str:
    """ "cell 12 of 40 ('first line')": counted from 1, markdown included, test markers skipped."""
    if index is None:
        return "before the first cell"
    lines = [ln.strip() for ln in nb.cells[index].source.splitlines() if ln.strip() and not ln.startswith("# NBVAL")]
    return f"cell {index + 1} of {len(nb.cells)}" + (f" ({lines[0][:60]!r})" if lines else "")


def grade_notebook(path: str | pathlib.Path, student: str, *, timeout: float = 600,
                   save_to: str | pathlib.Path | None = None) -> NotebookGrade:
    """Execute one student notebook and collect its checks' results; never raises on the notebook's faults.

    `timeout` is for the whole notebook, in seconds. The kernel runs in the notebook's folder with
    $DPM_LAB_CHECK_RESULTS set, so each check appends its result as one JSON line (the last call
    of a check counts). A failure to run sets `run` to the cell (counted from 1, markdown
    included, with its first line) and the error's last line. `save_to` (a file) keeps the
    executed notebook, outputs and error included.
    """
    path = pathlib.Path(path)
    grade = NotebookGrade(student, path.name[:2], path.name)
    fd, results = tempfile.mkstemp(prefix="dpm_lab_checks_", suffix=".jsonl")
    os.close(fd)
    start = time.monotonic()
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a row, not a crash
        grade.run = f"unreadable notebook: {type(exc).__name__}: {_last_line(exc)}"
    else:
        grade.run = _run_for_grading(nb, path.parent, timeout, results)
        if save_to is not None:
            pathlib.Path(save_to).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, save_to)
    grade.seconds = time.monotonic() - start
    recorded = _read_results(pathlib.Path(results))
    missing = NOT_CALLED if grade.run == "ok" else NOT_RUN
    for name in _expected_checks(grade.chapter):
        grade.checks[name] = recorded.pop(name, (missing, ""))
    grade.checks.update(recorded)   # checks of other chapters the notebook called, too
    return grade


def _run_for_grading(nb: NotebookNode, folder: pathlib.Path, timeout: float, results: str) -> str:
    """Execute `nb` in `folder` with the results file set; "ok" or what stopped it (cell and error)."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    from dpm_lab.exercises._base import RESULTS_ENV

    current: dict[str, int | None] = {"cell": None}
    deadline = time.monotonic() + timeout

    def on_cell_start(cell: Any = None, cell_index: int | None = None, **_: Any) -> None:
        current["cell"] = cell_index

    try:
        execute_notebook(nb, cwd=folder, env=dict(os.environ, **{RESULTS_ENV: results}), on_cell_start=on_cell_start,
                         timeout_func=lambda cell: max(1, int(deadline - time.monotonic())))
    except CellTimeoutError:
        return f"timed out (over {timeout:g} s for the notebook) in {_where(nb, current['cell'])}"
    except CellExecutionError as exc:
        error = f"{exc.ename}: {_last_line(exc.evalue)}" if getattr(exc, "ename", "") else _last_line(exc)
        return f"error in {_where(nb, current['cell'])}: {error}"
    except DeadKernelError as exc:
        return f"the kernel died in {_where(nb, current['cell'])}: {_last_line(exc)}"
    except Exception as exc:  # noqa: BLE001 - a kernel that cannot start, a missing kernelspec, ...
        return f"could not run: {type(exc).__name__}: {_last_line(exc)}"
    return "ok"


def _read_results(path: pathlib.Path) -> dict[str, tuple[str, str]]:
    """check name -> (status, message) from a results file (the last line of a check wins); removes the file."""
    out: dict[str, tuple[str, str]] = {}
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                out[row["check"]] = (row["status"], row.get("message", ""))
            except (ValueError, KeyError, TypeError):
                continue   # a line cut short by a killed kernel
    finally:
        path.unlink(missing_ok=True)
    return out


def _student_notebooks(folder: pathlib.Path) -> tuple[list[tuple[str, pathlib.Path]], list[pathlib.Path]]:
    """(student, notebook) pairs of DIR/<student>/NN_*.ipynb, and the notebooks ignored (wrong place or name)."""
    found, ignored = [], []
    for path in sorted(folder.rglob("*.ipynb")):
        rel = path.relative_to(folder)
        if ".ipynb_checkpoints" in rel.parts:
            continue
        if len(rel.parts) == 2 and re.fullmatch(r"[0-9]{2}_.*\.ipynb", path.name):
            found.append((rel.parts[0], path))
        else:
            ignored.append(path)
    return found, ignored


def grade(folder: str | pathlib.Path, *, timeout: float = 600, executed: str | pathlib.Path | None = None,
          progress: Callable[[str], Any] | None = None) -> list[NotebookGrade]:
    """Grade every DIR/<student>/NN_*.ipynb (see grade_notebook); `executed` also keeps the executed copies."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise ValueError(f"grade: folder not found: {folder}")
    found, ignored = _student_notebooks(folder)
    for path in ignored:
        (progress or (lambda _: None))(f"ignored {path}: expected DIR/<student>/NN_name.ipynb")
    grades = []
    for student, path in found:
        keep = pathlib.Path(executed) / student / path.name if executed else None
        g = grade_notebook(path, student, timeout=timeout, save_to=keep)
        grades.append(g)
        if progress:
            progress(f"graded {student}/{path.name}: {g.run} ({g.seconds:.0f} s)")
    return grades


def write_grades(grades: Sequence[NotebookGrade], path: str | pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Write the long table (one row per check) to `path` and the per-notebook summary beside it (_summary.csv)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(GRADE_COLUMNS)
        for g in grades:
            for name, (status, message) in g.checks.items():
                w.writerow([g.student, g.chapter, g.notebook, name, status, g.run, message])
            if not g.checks:
                w.writerow([g.student, g.chapter, g.notebook, "", "", g.run, ""])
    summary_path = path.with_name(path.stem + "_summary.csv")
    with open(summary_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SUMMARY_COLUMNS)
        for g in grades:
            w.writerow([g.student, g.chapter, g.notebook, g.run, f"{g.seconds:.1f}", g.count("passed"),
                        g.count("failed"), g.count("not attempted"), g.count(NOT_RUN) + g.count(NOT_CALLED),
                        len(g.checks)])
    return path, summary_path


def summary(grades: Sequence[NotebookGrade]) -> str:
    """The printed summary: one line per student and notebook, then every failed check and failed run."""
    head = ("student", "chapter", "notebook", "passed", "failed", "not attempted", "not run", "run")
    rows = [(g.student, g.chapter, g.notebook, f"{g.count('passed')}/{len(g.checks)}", str(g.count("failed")),
             str(g.count("not attempted")), str(g.count(NOT_RUN) + g.count(NOT_CALLED)),
             "ok" if g.run == "ok" else "STOPPED") for g in grades]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    problems = []
    for g in grades:
        if g.run != "ok":
            problems.append(f"{g.student} {g.notebook}: did not run to the end: {g.run}")
        for name, (status, message) in g.checks.items():
            if status in ("failed", NOT_CALLED):
                problems.append(f"{g.student} {g.chapter} {name}: {status}" + (f": {message}" if message else ""))
    if problems:
        lines += ["", "Needs a look:", *(f"  {p}" for p in problems)]
    return "\n".join(lines)


# -- figures for slides -------------------------------------------------------------------------
_FIGURE_HOOK = '''\
def _dpm_lab_figure_hook(out, stem, cells, dpi):
    # Installed first in the kernel by `python -m dpm_lab.course figures`: every matplotlib figure and
    # widget picture the chapter displays is also saved as PNG and SVG, named by cell and figure.
    import pathlib
    import sys

    from IPython import get_ipython

    ip, out = get_ipython(), pathlib.Path(out)
    state = {"cell": None, "next": 0, "saved": []}

    def pre_run_cell(info):
        for j in range(state["next"], len(cells)):
            if cells[j][1] == info.raw_cell:
                state.update(cell=cells[j][0], next=j + 1, saved=[])
                return
        state.update(cell=None, saved=[])

    fmt = ip.display_formatter.format

    def format(obj, include=None, exclude=None):
        from matplotlib.figure import Figure

        base = sys.modules.get("dpm_lab.widgets.base")
        try:
            fig = obj if isinstance(obj, Figure) else None
            if base is not None and isinstance(obj, base.Explorer):
                fig = obj.figure()
            if fig is not None and state["cell"] is not None and all(f is not fig for f in state["saved"]):
                state["saved"].append(fig)
                name = f"{stem}_cell{state['cell']:02d}_fig{len(state['saved'])}"
                for ext in ("png", "svg"):
                    fig.savefig(out / f"{name}.{ext}", dpi=dpi, bbox_inches="tight")
        except Exception as exc:  # the export must never break the chapter's own run
            print(f"figure export failed in cell {state['cell']}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return fmt(obj, include=include, exclude=exclude)

    ip.events.register("pre_run_cell", pre_run_cell)
    ip.display_formatter.format = format
'''


def chapter_notebook(name: str, chapters: str | pathlib.Path | None = None) -> pathlib.Path:
    """The chapter file for `name`: "02", "2", "02_vae_to_ddpm" or "02_vae_to_ddpm.ipynb"; a bad name lists the valid ones."""
    src = pathlib.Path(chapters) if chapters else ROOT / "chapters"
    paths = sorted(src.glob(CHAPTER_GLOB))
    key = str(name).removesuffix(".ipynb")
    if key.isdigit():
        key = key.zfill(2)
    hits = [p for p in paths if p.stem == key or p.name[:2] == key]
    if len(hits) != 1:
        valid = ", ".join(f"{p.name[:2]} ({p.stem})" for p in paths) or f"none in {src}"
        raise ValueError(f"no chapter {name!r}; valid chapters: {valid}")
    return hits[0]


def export_figures(name: str, out: str | pathlib.Path, *, chapters: str | pathlib.Path | None = None,
                   dpi: int = 200, timeout: int = 600) -> list[pathlib.Path]:
    """Execute a chapter (solutions in) and save each figure it displays as PNG and SVG in `out`.

    Files are `<chapter>_cellNN_figK.png/.svg`: NN the cell's position in the notebook counted
    from 1 (markdown included), K the figure's order within the cell. Matplotlib figures and the
    widgets' pictures (as they are when displayed) are saved; HTML animations are not.
    Returns the written paths, sorted; a chapter that fails to run raises RuntimeError saying why.
    """
    path = chapter_notebook(name, chapters)
    out = pathlib.Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    nb = instructor_notebook(nbformat.read(path, as_version=4))
    cells = [(i + 1, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    for old in out.glob(f"{path.stem}_cell*_fig*.*"):   # a previous export of this chapter
        if old.suffix in (".png", ".svg"):
            old.unlink()
    hook = nbformat.v4.new_code_cell(_FIGURE_HOOK + f"_dpm_lab_figure_hook({str(out)!r}, {path.stem!r}, "
                                     f"{cells!r}, {int(dpi)})\ndel _dpm_lab_figure_hook")
    nb.cells.insert(0, hook)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}   # the inline backend displays figures
    try:
        execute_notebook(nb, cwd=path.parent, timeout=timeout, env=env)
    except Exception as exc:  # noqa: BLE001 - the chapter's own error, said in one line
        from nbclient.exceptions import CellExecutionError

        error = f"{exc.ename}: {_last_line(exc.evalue)}" if isinstance(exc, CellExecutionError) else _last_line(exc)
        done = len(list(out.glob(f"{path.stem}_cell*_fig*.png")))
        raise RuntimeError(f"{path.name} did not run to the end ({error}); {done} figure(s) saved before it") from None
    return sorted(p for p in out.glob(f"{path.stem}_cell*_fig*.*") if p.suffix in (".png", ".svg"))


# -- the command line ---------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module docstring); returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m dpm_lab.course", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="{student,instructor,grade,figures}")
    for kind in ("student", "instructor"):
        b = sub.add_parser(kind, help=f"build the {kind} copies of the chapters and problem sets")
        b.add_argument("--out", default=None, help=f"output folder (default build/{kind})")
        b.add_argument("--chapters", default=None, help="source chapters folder (default: the repo's chapters/)")
        b.add_argument("--problems", default=None, help="source problem sets folder (default: the repo's problems/)")
        b.add_argument("--execute", action="store_true", help="execute each copy after building it")
    g = sub.add_parser("grade", help="execute students' notebooks and tabulate every exercise check",
                       description="Execute every DIR/<student>/NN_name.ipynb (one folder per student, the "
                       "chapter from the file name's two leading digits, e.g. DIR/alice/02_vae_to_ddpm.ipynb) "
                       "and write one CSV row per student, notebook and check (status: passed, failed, "
                       "not attempted, not run, not called), a per-notebook summary CSV beside it, and a "
                       "printed summary. Student code runs with your permissions: grade in a sandbox.")
    g.add_argument("dir", help="folder with one subfolder of notebooks per student")
    g.add_argument("--csv", default=None, help="the table to write (default DIR/grades.csv; the summary goes "
                   "to <name>_summary.csv beside it)")
    g.add_argument("--timeout", type=float, default=600, help="seconds per notebook (default 600)")
    g.add_argument("--executed", default=None, help="also save each executed notebook under this folder")
    f = sub.add_parser("figures", help="export a chapter's figures as PNG and SVG for slides")
    f.add_argument("chapter", help="chapter number or name: 02 or 02_vae_to_ddpm")
    f.add_argument("--out", required=True, help="folder for <chapter>_cellNN_figK.png/.svg")
    f.add_argument("--chapters", default=None, help="source chapters folder (default: the repo's chapters/)")
    f.add_argument("--dpi", type=int, default=200, help="PNG resolution (default 200)")
    f.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    args = p.parse_args(argv)
    try:
        return {"grade": _main_grade, "figures": _main_figures}.get(args.command, _main_build)(args)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _main_build(args: argparse.Namespace) -> int:
    paths = build(args.command, args.out, args.chapters, execute=args.execute)
    for path in paths:
        print(f"wrote {path}")
    n = sum(is_solution(c) for path in paths for c in nbformat.read(path, as_version=4).cells)
    print(f"{len(paths)} {args.command} notebook(s); {n} solution cell(s) left in")
    if args.problems or (ROOT / "problems").is_dir():
        sets = build_problem_sets(args.command, args.out or f"build/{args.command}", args.problems)
        for path in sets:
            print(f"wrote {path}")
        print(f"{len(sets)} problem set(s), solutions {'kept' if args.command == 'instructor' else 'left out'}")
    return 0


def _main_grade(args: argparse.Namespace) -> int:
    grades = grade(args.dir, timeout=args.timeout, executed=args.executed, progress=print)
    if not grades:
        print(f"error: no notebooks found as {args.dir}/<student>/NN_name.ipynb", file=sys.stderr)
        return 2
    table, summary_csv = write_grades(grades, args.csv or pathlib.Path(args.dir) / "grades.csv")
    print()
    print(summary(grades))
    print(f"\nwrote {table} and {summary_csv}")
    return 0


def _main_figures(args: argparse.Namespace) -> int:
    paths = export_figures(args.chapter, args.out, chapters=args.chapters, dpi=args.dpi, timeout=args.timeout)
    for path in paths:
        print(f"wrote {path}")
    print(f"{len(paths) // 2} figure(s) as PNG and SVG")
    return 0


if __name__ == "__main__":
    sys.exit(main())
