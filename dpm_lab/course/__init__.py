"""The course's tooling: the learner's workspace, student and instructor builds, grading, nbgrader export,
figure export and the notebook normaliser (not imported by `import dpm_lab`). One file per job:

    workspace.py  python -m dpm_lab.course workspace [--out DIR] [--fresh CHAPTER ...]   (and `lab`: then JupyterLab)
    builds.py     python -m dpm_lab.course student|instructor [--out DIR] [--chapters DIR] [--problems DIR] [--execute]
    normalize.py  python -m dpm_lab.course normalize [NOTEBOOK ...] [--check]
    grading.py    python -m dpm_lab.course grade DIR [--csv FILE] [--timeout S] [--jobs N] [--expect CH ...] [--restart]
    nbgrader_export.py  python -m dpm_lab.course nbgrader OUT [--only CH ...] [--points P]
    figures.py    python -m dpm_lab.course figures CHAPTER --out DIR [--chapters DIR] [--dpi N]
    cli.py        the command line (also the `dpm-lab` console command of an installed wheel)

Each file's docstring says what its job does.
"""
from __future__ import annotations

from .builds import (CHAPTER_GLOB, ROOT, SOLUTION_BEGIN, SOLUTION_END, SOLUTION_TAG, STUB_LINE, build,
                     build_problem_sets, calls_check, chapter_notebook, course_folder, execute_notebook,
                     instructor_notebook, is_solution, make_stub, problem_set, student_notebook)
from .cli import console, main
from .figures import export_figures
from .grading import (MISSING, NOT_CALLED, NOT_RUN, NotebookGrade, _expected_checks, _read_results, grade,
                      grade_notebook, summary, write_gradebook, write_grades)
from .normalize import normalize_files, normalize_notebook, normalized_text
from .workspace import make_workspace

__all__ = ["SOLUTION_TAG", "STUB_LINE", "ROOT", "CHAPTER_GLOB", "SOLUTION_BEGIN", "SOLUTION_END", "is_solution",
           "calls_check", "make_stub", "student_notebook", "instructor_notebook", "build", "execute_notebook",
           "problem_set", "build_problem_sets", "course_folder", "chapter_notebook", "NOT_RUN", "NOT_CALLED",
           "MISSING", "NotebookGrade", "grade_notebook", "grade", "write_grades", "write_gradebook", "summary",
           "export_figures", "normalize_files", "normalize_notebook", "normalized_text", "make_workspace",
           "main", "console", "_expected_checks", "_read_results"]
