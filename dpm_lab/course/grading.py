"""Grading without JupyterHub: execute each student's notebooks and grade every exercise check.

    python -m dpm_lab.course grade DIR [--csv FILE] [--timeout S] [--jobs N] [--expect 00 02] [--restart]

DIR holds one folder per student with their notebooks (DIR/<student>/NN_name.ipynb; the chapter
comes from the two leading digits, or, for a renamed file, from the checks it calls). Every
notebook is executed to its end: a cell that raises is recorded (cell number, first line, error)
and the run goes on, so each check is graded on its own merits; a check whose own cell raised is
"not run", naming that cell. The checks report through $DPM_LAB_CHECK_RESULTS (see
dl.exercises._base), never through printed text. A chapter a student did not hand in is
"missing". Students are graded in parallel (--jobs, default the CPU count) with a progress bar;
each finished notebook is recorded in <csv>_progress.jsonl, so an interrupted run resumes where
it stopped (a changed notebook is graded again; --restart grades everything again).

Written beside each other: FILE (default DIR/grades.csv), one row per student, chapter and check
with its status and points; FILE_summary.csv, one row per notebook; FILE_gradebook.csv, one row
per student with a column per chapter (points) and the total. Student code runs with your
permissions: grade in a sandbox (a container or a throwaway account).
"""
from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import os
import pathlib
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from typing import Any

import nbformat
from nbformat import NotebookNode

from .builds import CHECK_CALL, chapter_notebook, course_folder, execute_notebook
from .builds import last_line as _last_line

__all__ = ["NOT_RUN", "NOT_CALLED", "MISSING", "NotebookGrade", "grade_notebook", "grade", "write_grades",
           "write_gradebook", "summary", "main_grade"]

NOT_RUN = "not run"          # the check's cell raised, or the notebook stopped (timeout) before it
NOT_CALLED = "not called"    # the notebook ran to the end but never called the check
MISSING = "missing"          # the student handed in no notebook for the chapter
GRADE_COLUMNS = ("student", "chapter", "notebook", "check", "status", "points", "out of", "run", "message")
SUMMARY_COLUMNS = ("student", "chapter", "notebook", "run", "seconds", "passed", "failed", "not attempted",
                   "not run", "missing", "checks", "points", "out of")


@dataclass
class NotebookGrade:
    """One student's notebook: how its run went, the cells that raised, each check's (status, message)."""
    student: str
    chapter: str
    notebook: str
    run: str = "ok"             # "ok", "ran with errors: ...", or what stopped it (timeout, unreadable, missing)
    seconds: float = 0.0
    checks: dict[str, tuple[str, str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)   # "cell 9 of 40 ('x = 1 / 0'): ZeroDivisionError: ..."
    note: str = ""              # e.g. "renamed by the student; graded as chapter 02"
    points_per_check: float = 1.0

    def count(self, status: str) -> int:
        return sum(s == status for s, _ in self.checks.values())

    @property
    def points(self) -> float:
        return self.points_per_check * self.count("passed")

    @property
    def out_of(self) -> float:
        return self.points_per_check * len(self.checks)


@functools.cache
def _expected_checks(chapter: str, chapters: str | None = None) -> tuple[str, ...]:
    """The checks a chapter ("02") asks for, in the order its exercise file defines them: the registered
    checks of that chapter that the course's own notebook calls (all of them if it has no notebook)."""
    from ..exercises import EXERCISES

    registered = [name for name, (ch, _) in EXERCISES.items() if ch == chapter]
    src = pathlib.Path(chapters) if chapters else course_folder("chapters")
    books = sorted(src.glob(f"{chapter}_*.ipynb"))
    if not books:
        return tuple(registered)
    code = "\n".join(c.source for c in nbformat.read(books[0], as_version=4).cells if c.cell_type == "code")
    called = set(re.findall(r"check_(\w+)\s*\(", code))
    return tuple(name for name in registered if name in called)


def _where(nb: NotebookNode, index: int | None) -> str:
    """ "cell 12 of 40 ('first line')": counted from 1, markdown included, test markers skipped."""
    if index is None:
        return "before the first cell"
    lines = [ln.strip() for ln in nb.cells[index].source.splitlines() if ln.strip() and not ln.startswith("# NBVAL")]
    return f"cell {index + 1} of {len(nb.cells)}" + (f" ({lines[0][:60]!r})" if lines else "")


def _cell_errors(nb: NotebookNode) -> dict[int, str]:
    """cell index -> "ExcName: last line" for every cell whose outputs hold an error."""
    out = {}
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if o.get("output_type") == "error":
                out[i] = f"{o.get('ename', 'Error')}: {_last_line(o.get('evalue', ''))}"
    return out


def grade_notebook(path: str | pathlib.Path, student: str, *, timeout: float = 600,
                   save_to: str | pathlib.Path | None = None, chapter: str | None = None,
                   points: float = 1.0) -> NotebookGrade:
    """Execute one student notebook to its end and grade its checks; never raises on the notebook's faults.

    `timeout` is for the whole notebook, in seconds. The kernel runs in the notebook's folder with
    $DPM_LAB_CHECK_RESULTS set, so each check appends its result as one JSON line (the last call
    of a check counts). Cells that raise are listed in `errors` and the run goes on; a check whose
    calling cell raised before it reported is "not run", naming the cell. `chapter` overrides the
    file name's two digits. `save_to` (a file) keeps the executed notebook, outputs and errors included.
    """
    path = pathlib.Path(path)
    grade = NotebookGrade(student, chapter or path.name[:2], path.name, points_per_check=points)
    fd, results = tempfile.mkstemp(prefix="dpm_lab_checks_", suffix=".jsonl")
    os.close(fd)
    start = time.monotonic()
    nb = None
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a row, not a crash
        grade.run = (f"unreadable notebook ({type(exc).__name__}: {_last_line(exc)}): ask the student to hand in "
                     "the file again (File > Download in JupyterLab)")
    else:
        grade.run = _run_for_grading(nb, path.parent, timeout, results)
        errors = _cell_errors(nb)
        grade.errors = [f"{_where(nb, i)}: {e}" for i, e in errors.items()]
        if grade.run == "ok" and errors:
            grade.run = f"ran with errors in {len(errors)} cell(s): {grade.errors[0]}" + (
                f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
        if save_to is not None:
            pathlib.Path(save_to).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, save_to)
    grade.seconds = time.monotonic() - start
    recorded = _read_results(pathlib.Path(results))
    for name in _expected_checks(grade.chapter):
        grade.checks[name] = recorded.pop(name, None) or _unreported(nb, name, grade.run)
    grade.checks.update(recorded)   # checks of other chapters the notebook called, too
    return grade


def _unreported(nb: NotebookNode | None, name: str, run: str) -> tuple[str, str]:
    """The (status, message) of a check that reported nothing: its cell raised, the run stopped, or never called."""
    if nb is None:
        return NOT_RUN, run
    errors = _cell_errors(nb)
    calls = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and re.search(rf"\bcheck_{name}\s*\(", c.source)]
    for i in calls:
        if i in errors:
            return NOT_RUN, f"its {_where(nb, i)} raised {errors[i]}"
    if run.startswith(("timed out", "the kernel died", "could not run")):
        return NOT_RUN, run
    return NOT_CALLED, "" if calls else "the notebook has no cell that calls this check"


def _run_for_grading(nb: NotebookNode, folder: pathlib.Path, timeout: float, results: str) -> str:
    """Execute `nb` in `folder` with the results file set, past cells that raise; "ok" or what stopped it."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    from ..exercises._base import RESULTS_ENV

    current: dict[str, int | None] = {"cell": None}
    deadline = time.monotonic() + timeout

    def on_cell_start(cell: Any = None, cell_index: int | None = None, **_: Any) -> None:
        current["cell"] = cell_index

    try:
        execute_notebook(nb, cwd=folder, env=dict(os.environ, **{RESULTS_ENV: results}), on_cell_start=on_cell_start,
                         allow_errors=True, quiet_kernel=True, timeout_func=lambda cell: max(1, int(deadline - time.monotonic())))
    except CellTimeoutError:
        return f"timed out (over {timeout:g} s for the notebook) in {_where(nb, current['cell'])}"
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


# -- finding the submissions --------------------------------------------------------------------
@dataclass
class Submission:
    student: str
    path: pathlib.Path
    chapter: str
    note: str = ""


def _chapter_of_renamed(path: pathlib.Path) -> str | None:
    """The one chapter whose checks a notebook calls (for a file the student renamed), else None."""
    from ..exercises import EXERCISES

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - graded (and reported) as unreadable only when its name says the chapter
        return None
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    chapters = {EXERCISES[m.group(0)[6:].rstrip("( ")][0] for m in CHECK_CALL.finditer(code)
                if m.group(0)[6:].rstrip("( ") in EXERCISES}
    return chapters.pop() if len(chapters) == 1 else None


def find_submissions(folder: pathlib.Path, skip: Sequence[pathlib.Path] = ()
                     ) -> tuple[list[str], list[Submission], list[str]]:
    """(students, submissions, notes): every student folder of DIR (one with no notebook included), each
    notebook in it with its chapter, and a line for each file left out or graded under another name."""
    skip = {p.resolve() for p in skip}
    students, found, notes = [], [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        if sub.resolve() in skip:
            continue
        students.append(sub.name)
        for path in sorted(sub.rglob("*.ipynb")):
            rel = path.relative_to(sub)
            if ".ipynb_checkpoints" in rel.parts or ".bak-" in path.name:
                continue
            if re.fullmatch(r"[0-9]{2}_.*\.ipynb", path.name):
                found.append(Submission(sub.name, path, path.name[:2]))
                continue
            chapter = _chapter_of_renamed(path)
            if chapter is None:
                notes.append(f"ignored {path}: not a chapter (its name should start with the chapter's "
                             "number, e.g. 02_vae_to_ddpm.ipynb, and it calls no chapter's checks)")
            else:
                note = f"renamed by the student ({rel}); graded as chapter {chapter} from the checks it calls"
                found.append(Submission(sub.name, path, chapter, note))
                notes.append(f"{sub.name}: {note}")
    for path in sorted(folder.glob("*.ipynb")):
        notes.append(f"ignored {path}: a notebook directly in DIR; put it in DIR/<student>/")
    return students, found, notes


# -- grading a class ----------------------------------------------------------------------------
def _sha(path: pathlib.Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def _load_progress(path: pathlib.Path) -> dict[tuple[str, str], tuple[str, NotebookGrade]]:
    out = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            row = json.loads(line)
            g = row["grade"]
            g["checks"] = {k: tuple(v) for k, v in g["checks"].items()}
            out[(row["student"], row["path"])] = (row["sha256"], NotebookGrade(**g))
        except (ValueError, KeyError, TypeError):
            continue   # a line cut short by an interrupted run
    return out


def grade(folder: str | pathlib.Path, *, timeout: float = 600, executed: str | pathlib.Path | None = None,
          progress: Callable[[str], Any] | None = None, jobs: int | None = None,
          chapters: Sequence[str] | None = None, points: float = 1.0, resume_file: str | pathlib.Path | None = None,
          bar: bool = False) -> list[NotebookGrade]:
    """Grade every DIR/<student>/*.ipynb (see grade_notebook and the module docstring).

    `chapters` every student must hand in (default: every chapter any student handed in); missing ones
    are graded "missing". `jobs` students at once. `resume_file` records each finished notebook and
    reuses an earlier record of a notebook that has not changed. Returns the grades sorted by student
    and chapter."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise ValueError(f"grade: folder not found: {folder}")
    say = progress or (lambda _: None)
    students, found, notes = find_submissions(folder, [pathlib.Path(executed)] if executed else [])
    for line in notes:
        say(line)
    wanted = sorted({chapter_notebook(c).name[:2] for c in chapters} if chapters else {s.chapter for s in found})
    done = _load_progress(pathlib.Path(resume_file)) if resume_file else {}
    grades, todo = [], []
    for s in found:
        old = done.get((s.student, str(s.path)))
        if old and old[0] == _sha(s.path):
            grades.append(old[1])
        else:
            todo.append(s)
    if grades:
        say(f"resumed: {len(grades)} notebook(s) graded by an earlier run and unchanged since (--restart to redo)")
    lock = threading.Lock()
    pbar = _bar(len(todo)) if bar and todo else None

    def one(student: str) -> list[NotebookGrade]:
        out = []
        for s in (s for s in todo if s.student == student):
            keep = pathlib.Path(executed) / student / s.path.name if executed else None
            g = grade_notebook(s.path, student, timeout=timeout, save_to=keep, chapter=s.chapter, points=points)
            g.note = s.note
            out.append(g)
            with lock:
                if resume_file:
                    _remember(pathlib.Path(resume_file), {"student": student, "path": str(s.path),
                                                          "sha256": _sha(s.path), "grade": asdict(g)})
                (pbar.write if pbar else say)(f"graded {student}/{s.path.name}: {g.run} ({g.seconds:.0f} s)")
                if pbar:
                    pbar.update(1)
        return out

    names = sorted({s.student for s in todo})
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, min(jobs or cores, len(names) or 1))) as pool:
        for fut in as_completed([pool.submit(one, n) for n in names]):
            grades.extend(fut.result())
    if pbar:
        pbar.close()
    have = {(g.student, g.chapter) for g in grades}
    for student in students:
        for chapter in wanted:
            if (student, chapter) not in have:
                g = NotebookGrade(student, chapter, "", run=f"missing: no notebook for chapter {chapter} in "
                                  f"{folder / student}", points_per_check=points)
                g.checks = {name: (MISSING, "") for name in _expected_checks(chapter)}
                grades.append(g)
    for student in students:
        if not any(g.student == student and g.notebook for g in grades):
            say(f"{student}: no notebook handed in (every chapter graded as missing)")
    return sorted(grades, key=lambda g: (g.student, g.chapter, g.notebook))


def _remember(path: pathlib.Path, row: dict[str, Any]) -> None:
    """Append one finished notebook to the resume file (a failure to write only costs the resume)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    except OSError as exc:
        print(f"warning: could not record progress in {path} ({exc}); an interrupted run will start over",
              file=sys.stderr)


def _bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="notebook", desc="grading", file=sys.stderr)


# -- writing the tables -------------------------------------------------------------------------
def write_grades(grades: Sequence[NotebookGrade], path: str | pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Write the long table (one row per check) to `path` and the per-notebook summary beside it (_summary.csv)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(GRADE_COLUMNS)
        for g in grades:
            for name, (status, message) in g.checks.items():
                got = g.points_per_check if status == "passed" else 0
                w.writerow([g.student, g.chapter, g.notebook, name, status, f"{got:g}", f"{g.points_per_check:g}",
                            g.run, message])
            if not g.checks:
                w.writerow([g.student, g.chapter, g.notebook, "", "", "0", "0", g.run, g.note])
    summary_path = path.with_name(path.stem + "_summary.csv")
    with open(summary_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SUMMARY_COLUMNS)
        for g in grades:
            w.writerow([g.student, g.chapter, g.notebook, g.run + (f" [{g.note}]" if g.note else ""), f"{g.seconds:.1f}",
                        g.count("passed"), g.count("failed"), g.count("not attempted"),
                        g.count(NOT_RUN) + g.count(NOT_CALLED), g.count(MISSING), len(g.checks), f"{g.points:g}",
                        f"{g.out_of:g}"])
    return path, summary_path


def write_gradebook(grades: Sequence[NotebookGrade], path: str | pathlib.Path) -> pathlib.Path:
    """One row per student: a column per chapter (points; the best notebook when a chapter was handed in
    twice), the total and the most points possible."""
    path = pathlib.Path(path)
    chapters = sorted({g.chapter for g in grades})
    best: dict[tuple[str, str], NotebookGrade] = {}
    for g in grades:
        key = (g.student, g.chapter)
        if key not in best or g.points > best[key].points:
            best[key] = g
    out_of = {c: max((g.out_of for g in grades if g.chapter == c), default=0) for c in chapters}
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", *(f"ch{c}" for c in chapters), "total", "out of"])
        for student in sorted({g.student for g in grades}):
            pts = [best[(student, c)].points if (student, c) in best else 0 for c in chapters]
            w.writerow([student, *(f"{p:g}" for p in pts), f"{sum(pts):g}", f"{sum(out_of.values()):g}"])
    return path


def summary(grades: Sequence[NotebookGrade]) -> str:
    """The printed summary: one line per student and notebook, then every failed check and failed cell."""
    head = ("student", "chapter", "notebook", "points", "passed", "failed", "not attempted", "not run", "run")
    rows = [(g.student, g.chapter, g.notebook or "-", f"{g.points:g}/{g.out_of:g}",
             f"{g.count('passed')}/{len(g.checks)}", str(g.count("failed")),
             str(g.count("not attempted")), str(g.count(NOT_RUN) + g.count(NOT_CALLED)),
             "ok" if g.run == "ok" else ("MISSING" if g.run.startswith("missing") else
                                         "ERRORS" if g.run.startswith("ran with") else "STOPPED"))
            for g in grades]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    problems = []
    for g in grades:
        if g.run.startswith("ran with"):
            problems += [f"{g.student} {g.notebook}: error in {e}" for e in g.errors]
        elif g.run != "ok" and not g.run.startswith("missing"):
            problems.append(f"{g.student} {g.notebook}: did not run to the end: {g.run}")
        for name, (status, message) in g.checks.items():
            if status in ("failed", NOT_CALLED, NOT_RUN) and not g.run.startswith(("timed out", "unreadable")):
                problems.append(f"{g.student} {g.chapter} {name}: {status}" + (f": {message}" if message else ""))
    if problems:
        lines += ["", "Needs a look:", *(f"  {p}" for p in problems)]
    return "\n".join(lines)


def main_grade(args: argparse.Namespace) -> int:
    """`grade DIR ...` (see the module docstring)."""
    table = pathlib.Path(args.csv) if args.csv else pathlib.Path(args.dir) / "grades.csv"
    resume = table.with_name(table.stem + "_progress.jsonl")
    if getattr(args, "restart", False):
        resume.unlink(missing_ok=True)
    t0 = time.monotonic()
    grades = grade(args.dir, timeout=args.timeout, executed=args.executed, progress=print, jobs=args.jobs,
                   chapters=args.expect, resume_file=resume, bar=True)
    if not any(g.notebook for g in grades):
        print(f"error: no notebooks found as {args.dir}/<student>/NN_name.ipynb (one folder per student)",
              file=sys.stderr)
        return 2
    table, summary_csv = write_grades(grades, table)
    book = write_gradebook(grades, table.with_name(table.stem + "_gradebook.csv"))
    print()
    print(summary(grades))
    print(f"\nwrote {table}, {summary_csv} and {book} ({time.monotonic() - t0:.0f} s)")
    return 0
