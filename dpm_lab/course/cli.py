"""The command line: `python -m dpm_lab.course ...` and the console command `dpm-lab ...` (see the package docstring)."""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Sequence

import nbformat

from . import builds, figures, grading, normalize, workspace

__all__ = ["main"]

COMMANDS = "{workspace,lab,student,instructor,normalize,grade,nbgrader,figures}"


def _parser(prog: str) -> argparse.ArgumentParser:
    from . import __doc__ as doc

    p = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar=COMMANDS)
    w = sub.add_parser("workspace", help="make or update your own copies of the chapters (exercises as stubs)")
    w.add_argument("--out", default="workspace", help="the workspace folder (default ./workspace)")
    w.add_argument("--fresh", nargs="+", default=[], metavar="CHAPTER",
                   help="replace these chapters (02 or 02_vae_to_ddpm) with fresh copies; yours are kept as .bak files")
    w.add_argument("--chapters", default=None, help="source chapters folder (default: the course's)")
    lab = sub.add_parser("lab", help="make or update the workspace, then open JupyterLab on it")
    lab.add_argument("--out", default="workspace", help="the workspace folder (default ./workspace)")
    lab.epilog = "Any further options (--port 8889, --no-browser, ...) go to jupyter lab."
    for kind in ("student", "instructor"):
        b = sub.add_parser(kind, help=f"build the {kind} copies of the chapters and problem sets")
        b.add_argument("--out", default=None, help=f"output folder (default build/{kind})")
        b.add_argument("--chapters", default=None, help="source chapters folder (default: the course's chapters/)")
        b.add_argument("--problems", default=None, help="source problem sets folder (default: the course's problems/)")
        b.add_argument("--execute", action="store_true", help="execute each copy after building it")
        b.add_argument("--only", nargs="+", default=None, metavar="CHAPTER", help="only these chapters, e.g. 00 02")
    n = sub.add_parser("normalize", help="store notebooks as JupyterLab saves them (opening them then changes nothing)")
    n.add_argument("notebooks", nargs="*", help="notebooks to normalise in place (default: every chapter)")
    n.add_argument("--check", action="store_true", help="change nothing; exit 1 if a notebook would change")
    g = sub.add_parser("grade", help="execute students' notebooks, grade every exercise check, write a gradebook",
                       description=grading.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("dir", help="folder with one subfolder of notebooks per student")
    g.add_argument("--csv", default=None, help="the per-check table to write (default DIR/grades.csv; the summary "
                   "and the gradebook go beside it as <name>_summary.csv and <name>_gradebook.csv)")
    g.add_argument("--timeout", type=float, default=600, help="seconds per notebook (default 600)")
    g.add_argument("--executed", default=None, help="also save each executed notebook under this folder")
    g.add_argument("--jobs", type=int, default=None, help="students graded at once (default: the CPU count)")
    g.add_argument("--expect", nargs="+", default=None, metavar="CHAPTER",
                   help="chapters every student must hand in, e.g. 00 02 (default: those any student handed in)")
    g.add_argument("--restart", action="store_true", help="grade everything again (default: resume, keeping the "
                   "results of an earlier, interrupted run for notebooks that have not changed)")
    nb = sub.add_parser("nbgrader", help="write an nbgrader course folder (source/<chapter>/<chapter>.ipynb)")
    nb.add_argument("out", help="the nbgrader course folder to create (must not exist yet)")
    nb.add_argument("--only", nargs="+", default=None, metavar="CHAPTER", help="chapters to export, e.g. 00 02 "
                    "(default all)")
    nb.add_argument("--chapters", default=None, help="source chapters folder (default: the course's chapters/)")
    nb.add_argument("--points", type=float, default=1.0, help="points per check (default 1)")
    f = sub.add_parser("figures", help="export a chapter's figures as PNG and SVG for slides")
    f.add_argument("chapter", help="chapter number or name: 02 or 02_vae_to_ddpm")
    f.add_argument("--out", required=True, help="folder for <chapter>_cellNN_figK.png/.svg")
    f.add_argument("--chapters", default=None, help="source chapters folder (default: the course's chapters/)")
    f.add_argument("--dpi", type=int, default=200, help="PNG resolution (default 200)")
    f.add_argument("--timeout", type=int, default=600, help="seconds per cell (default 600)")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "python -m dpm_lab.course") -> int:
    """The command line (see the package docstring); returns the exit status."""
    parser = _parser(prog)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.lab_args = extra
    run = {"grade": _main_grade, "figures": _main_figures, "workspace": _main_workspace, "lab": _main_lab,
           "normalize": _main_normalize, "nbgrader": _main_nbgrader}.get(args.command, _main_build)
    try:
        return run(args)
    except (ValueError, RuntimeError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def console() -> int:
    """The `dpm-lab` console command. From an installed wheel (no checkout around the package) the data
    folder is the wheel's own, for this process and the notebook kernels it starts."""
    data = builds.course_folder("data")
    if data != builds.ROOT / "data" and "DPM_LAB_DATA" not in os.environ:
        os.environ["DPM_LAB_DATA"] = str(data)
    return main(prog="dpm-lab")


def _main_build(args: argparse.Namespace) -> int:
    paths = builds.build(args.command, args.out, args.chapters, execute=args.execute, only=args.only)
    for path in paths:
        print(f"wrote {path}")
    n = sum(builds.is_solution(c) for path in paths for c in nbformat.read(path, as_version=4).cells)
    print(f"{len(paths)} {args.command} notebook(s); {n} solution cell(s) left in")
    if args.problems or builds.course_folder("problems").is_dir():
        sets = builds.build_problem_sets(args.command, args.out or f"build/{args.command}", args.problems)
        for path in sets:
            print(f"wrote {path}")
        print(f"{len(sets)} problem set(s), solutions {'kept' if args.command == 'instructor' else 'left out'}")
    return 0


def _main_workspace(args: argparse.Namespace) -> int:
    report = workspace.make_workspace(args.out, chapters=args.chapters, fresh=args.fresh)
    print("\n".join(report.lines()))
    return 0


def _main_lab(args: argparse.Namespace) -> int:
    report = workspace.make_workspace(args.out)
    print("\n".join(report.lines()))
    if not _has_jupyterlab():
        raise RuntimeError("JupyterLab is not installed here: pip install jupyterlab")
    folder = pathlib.Path(args.out).resolve()
    root = ["--allow-root"] if hasattr(os, "getuid") and os.getuid() == 0 else []   # containers, cloud machines
    print(f"starting JupyterLab on {folder} with 00_tour.ipynb open (Ctrl+C twice to stop); "
          f"the worked solutions are in {builds.course_folder('chapters').resolve()}", flush=True)
    os.chdir(folder)                                       # the lab shows the workspace, and only it
    bindir = os.path.dirname(sys.executable)               # kernels start "python" through PATH: this one
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    os.execv(sys.executable, [sys.executable, "-m", "jupyter", "lab", *root, *args.lab_args, "00_tour.ipynb"])
    return 0   # not reached


def _has_jupyterlab() -> bool:
    import importlib.util

    return importlib.util.find_spec("jupyterlab") is not None


def _main_normalize(args: argparse.Namespace) -> int:
    changed = normalize.normalize_files(args.notebooks or None, check=args.check)
    for path in changed:
        print(f"{'would change' if args.check else 'normalised'} {path}")
    if not changed:
        print("every notebook is already stored as JupyterLab saves it")
    return 1 if args.check and changed else 0


def _main_grade(args: argparse.Namespace) -> int:
    return grading.main_grade(args)


def _main_nbgrader(args: argparse.Namespace) -> int:
    from . import nbgrader_export

    paths = nbgrader_export.export(args.out, chapters=args.only, source=args.chapters, points=args.points)
    for path in paths:
        print(f"wrote {path}")
    first = paths[0].parent.name
    print(f"{len(paths)} assignment(s) with {args.points:g} point(s) per check; next: cd {args.out} && "
          f"nbgrader generate_assignment {first}  (then nbgrader autograde {first})")
    return 0


def _main_figures(args: argparse.Namespace) -> int:
    paths = figures.export_figures(args.chapter, args.out, chapters=args.chapters, dpi=args.dpi, timeout=args.timeout)
    for path in paths:
        print(f"wrote {path}")
    print(f"{len(paths) // 2} figure(s) as PNG and SVG")
    return 0
