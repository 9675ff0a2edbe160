"""The learner's workspace: a folder of their own copies of the chapters, made from the student build.

    python -m dpm_lab.course workspace [--out workspace] [--fresh CHAPTER ...]

Each chapter becomes the student copy with its stored outputs kept (`student_notebook(...,
keep_outputs=True)`): exercises are stubs, every figure and widget picture shows before anything
runs. The folder is the learner's: a run never overwrites a notebook they changed. A chapter added
to the course later is added; a copy the learner never changed is brought up to date when the
course's chapter changes (the hash of what was written is kept in `.dpm_lab_workspace.json`).
`--fresh 02` gives a fresh copy of chapter 02 and keeps the learner's as
`02_name.ipynb.bak-<time>.ipynb` beside it. Problem sets go to `problem_sets/` (without solutions)
on the same terms.
"""
from __future__ import annotations

import hashlib
import json
import pathlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import nbformat

from .builds import CHAPTER_GLOB, chapter_notebook, course_folder, problem_set, student_notebook
from .normalize import language_info, normalized_text

__all__ = ["MANIFEST", "WorkspaceReport", "make_workspace"]

MANIFEST = ".dpm_lab_workspace.json"   # file name -> SHA-256 of the text the workspace last wrote there
README = """\
# Your workspace

These are your own copies of the course's chapters: edit and run them freely; nothing here is
tracked by git, and `bash run.sh lab` (or `dpm-lab lab`) never overwrites a notebook you changed.

- Start with `00_tour.ipynb`. Exercises are the cells that say `# YOUR CODE HERE`; the check
  below each one tells you whether your answer is right.
- Stuck, or done? The worked solutions are the course's own chapters (the reference):
  {solutions}
- Problem sets (written questions) are in `problem_sets/`.
- A fresh copy of a chapter: `python -m dpm_lab.course workspace --fresh 02` (yours is kept as a
  `.bak-...` file beside it).
"""


@dataclass
class WorkspaceReport:
    """What one run did, by file name: created, updated (unchanged by the learner), kept (changed by the
    learner, or already current), refreshed (--fresh, with the backup's name)."""
    folder: pathlib.Path
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    refreshed: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"workspace: {self.folder}"]
        if self.created:
            out.append(f"  new: {', '.join(self.created)}")
        if self.updated:
            out.append(f"  updated (you had not changed them): {', '.join(self.updated)}")
        for name, backup in self.refreshed:
            out.append(f"  fresh copy of {name}; yours is kept as {backup}")
        mine = [n for n in self.kept if n.endswith(".ipynb")]
        if mine:
            out.append(f"  kept as they are: {len(mine)} notebook(s)")
        return out


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_manifest(folder: pathlib.Path) -> dict[str, str]:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _place(folder: pathlib.Path, name: str, text: str, manifest: dict[str, str], report: WorkspaceReport) -> None:
    """Write `text` to folder/name unless the learner's copy there differs from what was last written."""
    target = folder / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        manifest[name] = _sha(text)
        report.created.append(name)
        return
    current = _sha(target.read_text(encoding="utf-8", errors="replace"))
    if current == _sha(text):
        manifest[name] = current
        report.kept.append(name)
    elif manifest.get(name) == current:          # ours, untouched by the learner: bring it up to date
        target.write_text(text, encoding="utf-8")
        manifest[name] = _sha(text)
        report.updated.append(name)
    else:                                        # the learner's work: never overwritten
        report.kept.append(name)


def _student_text(path: pathlib.Path, info: dict) -> str:
    """The workspace copy of a chapter, stored as JupyterLab saves it (so opening it changes nothing)."""
    return normalized_text(student_notebook(nbformat.read(path, as_version=4), keep_outputs=True), info=info)


def make_workspace(out: str | pathlib.Path = "workspace", *, chapters: str | pathlib.Path | None = None,
                   problems: str | pathlib.Path | None = None, fresh: Sequence[str] = ()) -> WorkspaceReport:
    """Make or bring up to date the learner's workspace `out` (see the module docstring); never
    overwrites a notebook the learner changed. `fresh`: chapter names ("02") to replace with a fresh
    copy, the learner's kept as a .bak file. A bad chapter name raises ValueError listing the valid ones."""
    folder = pathlib.Path(out)
    src = pathlib.Path(chapters) if chapters else course_folder("chapters")
    if not src.is_dir():
        raise ValueError(f"chapters folder not found: {src}")
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder: name another folder with --out")
    targets = [chapter_notebook(name, src) for name in fresh]      # every name checked before anything is written
    folder.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(folder)
    report = WorkspaceReport(folder)
    info = language_info()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in targets:
        mine = folder / path.name
        if mine.exists():
            backup = f"{path.name}.bak-{stamp}.ipynb"
            mine.rename(folder / backup)
            report.refreshed.append((path.name, backup))
        manifest.pop(path.name, None)
    for path in sorted(src.glob(CHAPTER_GLOB)):
        _place(folder, path.name, _student_text(path, info), manifest, report)
    report.created = [n for n in report.created if n not in {name for name, _ in report.refreshed}]
    psrc = pathlib.Path(problems) if problems else course_folder("problems")
    if psrc.is_dir():
        for path in sorted(psrc.glob("ch[0-9][0-9].md")):
            text = problem_set(path.read_text(encoding="utf-8"), "student", name=str(path))
            _place(folder, f"problem_sets/{path.name}", text, manifest, report)
    _place(folder, "README.md", README.format(solutions=src.resolve()), manifest, report)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return report
