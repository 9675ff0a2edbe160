"""The nbgrader export (dpm_lab/course/nbgrader_export.py), checked with nbgrader itself: generate_assignment,
then autograde a class of three (a right, a half-wrong and a blank submission) and read the scores."""
import os
import pathlib
import shutil
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import dpm_lab.course as course
from dpm_lab.course.nbgrader_export import BEGIN, END, assert_checks, solution_with_markers

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))

ALPHA = "    return math.exp(-0.5 * (0.1 * t + 0.5 * 19.9 * t * t))"
NOISE = "    return dl.utils.expand_t(schedule.alpha(t), x0) * x0 + dl.utils.expand_t(schedule.sigma(t), x0) * eps"


def _solution(src):
    cell = new_code_cell(src)
    cell.metadata["tags"] = ["solution"]
    return cell


def _tiny():
    nb = new_notebook(cells=[
        new_markdown_cell("# tiny"), new_code_cell("import dpm_lab as dl"),
        _solution(f'import math\n\ndef my_alpha(t):\n    """alpha of VP."""\n{ALPHA}'),
        new_code_cell("# NBVAL_CHECK_OUTPUT\ndl.exercises.check_vp_alpha(my_alpha)"),
        _solution(f"def my_forward_noise(x0, eps, t, schedule):\n{NOISE}"),
        new_code_cell("dl.exercises.check_forward_noise(my_forward_noise)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_markers_and_asserts():
    src = 'import math\n\ndef f(t):\n    """Doc."""\n    y = t\n    return y\n\nanswer = 42\n'
    out = solution_with_markers(src)
    assert out == (f'import math\n\ndef f(t):\n    """Doc."""\n    {BEGIN}\n    y = t\n    return y\n    {END}\n\n'
                   f"{BEGIN}\nanswer = 42\n{END}\n")
    compile(out, "<cell>", "exec")
    assert assert_checks("# c\nex.check_a(my_a)\nx = 1\n") == "# c\nassert ex.check_a(my_a)\nx = 1\n"
    two = assert_checks("dl.exercises.check_b(\n    my_b)\n")
    assert two == "assert (dl.exercises.check_b(\n    my_b))\n"
    compile(two, "<cell>", "exec")


def test_every_chapter_exports_with_a_test_cell_per_check(tmp_path, capsys):
    assert course.main(["nbgrader", str(tmp_path / "c")]) == 0
    assert "next: cd" in capsys.readouterr().out
    for path in CHAPTERS:
        original = nbformat.read(path, as_version=4)
        nb = nbformat.read(tmp_path / "c" / "source" / path.stem / path.name, as_version=4)
        meta = [c.metadata.get("nbgrader") for c in nb.cells]
        answers = [m for m in meta if m and m["solution"]]
        tests = [m for m in meta if m and m["grade"]]
        assert len(answers) == sum(course.is_solution(c) for c in original.cells), path.name
        assert len(tests) == sum(course.calls_check(c) for c in original.cells) and all(m["points"] >= 1 for m in tests)
        ids = [m["grade_id"] for m in meta if m]
        assert len(ids) == len(set(ids)), path.name
        for cell, m in zip(nb.cells, meta):
            if m and m["solution"]:
                assert BEGIN in cell.source and END in cell.source
                compile(cell.source, path.name, "exec")
            if m and m["grade"]:
                assert "assert " in cell.source
        assert all(not c.get("outputs") for c in nb.cells) and "widgets" not in nb.metadata
    assert (tmp_path / "c" / "nbgrader_config.py").exists()


def test_bad_input_leaves_the_instructors_folder_alone(tmp_path, capsys):
    course_dir = tmp_path / "c"
    (course_dir / "source" / "mine").mkdir(parents=True)
    (course_dir / "source" / "mine" / "mine.ipynb").write_text("instructor's own")
    assert course.main(["nbgrader", str(course_dir)]) == 2
    assert "already exists and is not empty: nothing was written" in capsys.readouterr().err
    assert sorted(p.name for p in course_dir.rglob("*")) == ["mine", "mine.ipynb", "source"]
    assert course.main(["nbgrader", str(tmp_path / "d"), "--only", "42"]) == 2
    assert "valid chapters: 00 (00_tour)" in capsys.readouterr().err and not (tmp_path / "d").exists()


def _nbgrader(*args, cwd):
    exe = shutil.which("nbgrader", path=os.path.dirname(sys.executable)) or shutil.which("nbgrader")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


@pytest.mark.slow
def test_nbgrader_generate_and_autograde_a_class(tmp_path):
    pytest.importorskip("nbgrader", reason="nbgrader is in the test extra: pip install -e '.[test]'")
    src = tmp_path / "chapters"
    src.mkdir()
    nbformat.write(_tiny(), src / "07_tiny.ipynb")
    out = tmp_path / "course"
    assert course.main(["nbgrader", str(out), "--chapters", str(src), "--points", "2"]) == 0
    _nbgrader("generate_assignment", "07_tiny", cwd=out)
    released = nbformat.read(out / "release" / "07_tiny" / "07_tiny.ipynb", as_version=4)
    text = "\n".join(c.source for c in released.cells)
    assert "raise NotImplementedError()" in text and "19.9" not in text and '"""alpha of VP."""' in text
    for student, answers in (("right", (ALPHA, NOISE)), ("half", (ALPHA, "    return x0 + eps")), ("blank", ())):
        nb = nbformat.reads(nbformat.writes(released), as_version=4)
        stubs = [c for c in nb.cells if "raise NotImplementedError()" in c.source]
        for cell, body in zip(stubs, answers):
            cell.source = cell.source.replace("    # YOUR CODE HERE\n    raise NotImplementedError()", body)
        folder = out / "submitted" / student / "07_tiny"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "07_tiny.ipynb")
    _nbgrader("autograde", "07_tiny", "--create", cwd=out)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{out / 'gradebook.db'}") as gb:
        scores = {s: (gb.find_submission("07_tiny", s).score, gb.find_submission("07_tiny", s).max_score)
                  for s in ("right", "half", "blank")}
    assert scores == {"right": (4, 4), "half": (2, 4), "blank": (0, 4)}
