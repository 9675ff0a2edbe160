"""Tests of dpm_lab.course (tooling): stubs replace solutions, both copies execute end to end, and
`python -m dpm_lab.course` works although `import dpm_lab` does not import it."""
import ast
import csv
import os
import pathlib
import re
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import dpm_lab.course as course
from dpm_lab.exercises import EXERCISES
from dpm_lab.exercises._base import NO

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "chapters" / "01_generative_modeling.ipynb"
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


def _solution(src, **meta):
    cell = new_code_cell(src)
    cell.metadata["tags"] = ["solution"]
    cell.metadata.update(meta)
    return cell


def _tiny():
    nb = new_notebook(cells=[
        new_markdown_cell("# tiny"),
        new_code_cell("import dpm_lab as dl\nimport math"),
        _solution('import math\n\ndef my_alpha(t):\n    """alpha of VP."""\n    b = 0.1 * t + 0.5 * 19.9 * t ** 2\n'
                  '    return math.exp(-0.5 * b)\n\nanswer = 42\npair_a, pair_b = 1, 2'),
        new_code_cell("ok = dl.exercises.check_vp_alpha(my_alpha)\nprint('RESULT', ok, answer)"),
        _solution("secret = 1", stub="secret = None  # fill me"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_make_stub_keeps_signature_and_docstring():
    stub = course.make_stub('def f(x, y=2):\n    """Doc."""\n    z = x + y\n    return z\n\nk = 3\na, b = 1, 2\n')
    assert 'def f(x, y=2):\n    """Doc."""\n    # YOUR CODE HERE\n    return None' in stub
    assert "k = None  # YOUR CODE HERE" in stub and "a, b = None, None  # YOUR CODE HERE" in stub
    assert "x + y" not in stub
    compile(stub, "<stub>", "exec")


def test_make_stub_decorators_and_bad_source():
    stub = course.make_stub("@staticmethod\ndef g():\n    return 1\n")
    assert stub.startswith("@staticmethod\ndef g():") and "return 1" not in stub
    assert course.make_stub("def (:") == "# YOUR CODE HERE\n"


def test_student_and_instructor_copies():
    nb = _tiny()
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="old")]
    student = course.student_notebook(nb)
    assert "0.5 * 19.9" not in student.cells[2].source and "# YOUR CODE HERE" in student.cells[2].source
    assert student.cells[4].source == "secret = None  # fill me"
    assert not any(course.is_solution(c) for c in student.cells)
    assert all(c.outputs == [] for c in student.cells if c.cell_type == "code")
    instructor = course.instructor_notebook(nb)
    assert instructor.cells[2].source == nb.cells[2].source and course.is_solution(instructor.cells[2])
    assert nb.cells[3].outputs  # the input notebook is not modified


def _stdout(nb):
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_tiny_copies_execute(tmp_path):
    student = course.execute_notebook(course.student_notebook(_tiny()), cwd=tmp_path)
    assert "not attempted yet" in _stdout(student) and "RESULT False None" in _stdout(student)
    instructor = course.execute_notebook(course.instructor_notebook(_tiny()), cwd=tmp_path)
    assert "RESULT True 42" in _stdout(instructor)


def test_build_cli_on_real_chapter(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / CHAPTER.name).write_bytes(CHAPTER.read_bytes())
    assert course.main(["student", "--out", str(tmp_path / "s"), "--chapters", str(src)]) == 0
    assert course.main(["instructor", "--out", str(tmp_path / "i"), "--chapters", str(src)]) == 0
    student = nbformat.read(tmp_path / "s" / CHAPTER.name, as_version=4)
    original = nbformat.read(CHAPTER, as_version=4)
    n_sol = sum(course.is_solution(c) for c in original.cells)
    assert n_sol >= 4
    assert sum("# YOUR CODE HERE" in c.source for c in student.cells) == n_sol
    with pytest.raises(ValueError, match="kind"):
        course.build("teacher")


def _defined(source):
    """The names a cell defines at top level (functions with their arguments, and assigned names)."""
    tree = ast.parse(source)
    out = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out.add((node.name, ast.unparse(node.args)))
        elif isinstance(node, ast.Assign):
            out.update(ast.unparse(t) for t in node.targets)
    return out


def _python(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_package_face_does_not_import_the_tooling(tmp_path):
    r = _python("-c", "import sys, dpm_lab; print('dpm_lab.course' in sys.modules, hasattr(dpm_lab, 'course'))",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]


def test_python_m_course_builds_every_chapter(tmp_path):
    r = _python("-m", "dpm_lab.course", "student", "--out", str(tmp_path / "st"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"{len(CHAPTERS)} student notebook(s); 0 solution cell(s) left in" in r.stdout
    for path in CHAPTERS:
        original = nbformat.read(path, as_version=4)
        student = nbformat.read(tmp_path / "st" / path.name, as_version=4)
        solutions = [c for c in original.cells if course.is_solution(c)]
        assert solutions, path.name
        assert [c.cell_type for c in student.cells] == [c.cell_type for c in original.cells]
        stubs = [c for c in student.cells if "exercise" in c.metadata.get("tags", [])]
        assert len(stubs) == len(solutions) and all("# YOUR CODE HERE" in c.source for c in stubs)
        for sol, stub in zip(solutions, stubs):
            assert _defined(stub.source) == _defined(sol.source), path.name   # every signature kept, valid Python
    r = _python("-m", "dpm_lab.course", "teacher", cwd=tmp_path)
    assert r.returncode != 0 and "invalid choice: 'teacher'" in r.stderr


# -- problem sets ---------------------------------------------------------------------------------
PROBLEMS = sorted((ROOT / "problems").glob("ch[0-9][0-9].md"))


def _solutions(text):
    """The solution blocks of a problem set's text."""
    return re.findall(rf"^{re.escape(course.SOLUTION_BEGIN)}\n(.*?)^{re.escape(course.SOLUTION_END)}$", text,
                      flags=re.S | re.M)


def test_problem_set_markers():
    text = "## Problem 1\nShow it.\n\n<!-- solution -->\n**Solution.** Secret step.\n<!-- end solution -->\n\nNext.\n"
    student = course.problem_set(text, "student")
    assert "Secret" not in student and "solution" not in student.lower() and "Show it." in student and "Next." in student
    instructor = course.problem_set(text, "instructor")
    assert "**Solution.** Secret step." in instructor and "<!--" not in instructor
    for bad, msg in (("<!-- solution -->\nx\n", "x.md:1: <!-- solution --> is never closed"),
                     ("x\n<!-- end solution -->\n", "x.md:2: <!-- end solution --> without"),
                     ("<!-- solution -->\n<!-- solution -->\n", "x.md:2: a solution opened inside")):
        with pytest.raises(ValueError, match=re.escape(msg)):
            course.problem_set(bad, "student", name="x.md")
    with pytest.raises(ValueError, match="kind"):
        course.problem_set(text, "teacher")


def test_every_chapter_has_a_problem_set_with_worked_solutions(tmp_path):
    assert {c.name[:2] for c in CHAPTERS} <= {p.stem[2:] for p in PROBLEMS}   # every chapter has its set
    student = course.build_problem_sets("student", tmp_path / "s")
    instructor = course.build_problem_sets("instructor", tmp_path / "i")
    assert [p.name for p in student] == [p.name for p in instructor] == [p.name for p in PROBLEMS]
    for src, st, ins in zip(PROBLEMS, student, instructor):
        text = src.read_text(encoding="utf-8")
        problems, solutions = re.findall(r"^## Problem \d+", text, flags=re.M), _solutions(text)
        assert 3 <= len(problems) <= 8 and len(solutions) == len(problems), src.name   # one worked solution each
        st_text, ins_text = st.read_text(encoding="utf-8"), ins.read_text(encoding="utf-8")
        for sol in solutions:
            assert len(sol) > 200, src.name                            # a worked solution, not a one-liner
            lines = [ln.strip() for ln in sol.splitlines() if len(ln.strip()) > 25]
            assert not any(ln in st_text for ln in lines), src.name    # no solution text in the student copy
            assert all(ln in ins_text for ln in lines), src.name
        assert "**Solution" not in st_text and "<!--" not in st_text and "<!--" not in ins_text
        assert re.findall(r"^## Problem \d+", st_text, flags=re.M) == problems


def test_cli_build_writes_problem_sets(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / CHAPTER.name).write_bytes(CHAPTER.read_bytes())
    assert course.main(["student", "--out", str(tmp_path / "s"), "--chapters", str(src)]) == 0
    assert sorted(p.name for p in (tmp_path / "s" / "problem_sets").iterdir()) == [p.name for p in PROBLEMS]


# -- grading ----------------------------------------------------------------------------------------
def _student_nb(*sources):
    nb = new_notebook(cells=[new_markdown_cell("# a learner's copy"), *(new_code_cell(s) for s in sources)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


RIGHT = "import math\ndef my_alpha(t):\n    return math.exp(-0.5 * (0.1 * t + 0.5 * 19.9 * t * t))"
WRONG = "def my_forward_noise(x0, eps, t, schedule):\n    return schedule.alpha(t) * x0 + schedule.sigma(t) ** 2 * eps"


def test_grade_right_wrong_stub_raising_and_broken(tmp_path, capsys):
    ann = tmp_path / "class" / "ann"
    ann.mkdir(parents=True)
    nbformat.write(_student_nb("import dpm_lab as dl", RIGHT, "dl.exercises.check_vp_alpha(my_alpha)",
                               WRONG, "dl.exercises.check_forward_noise(my_forward_noise)",
                               "my_eps_from_x0 = None", "dl.exercises.check_eps_from_x0(my_eps_from_x0)",
                               "x = 1 / 0  # a bug", "dl.exercises.check_score_from_eps(None)",
                               "dl.exercises.check_ddim_port(my_undefined)"),
                   ann / "00_tour.ipynb")
    (ann / "01_generative_modeling.ipynb").write_text("{not json", encoding="utf-8")
    (ann / "notes.ipynb").write_text("{}", encoding="utf-8")                   # not a chapter: ignored
    (tmp_path / "class" / "bo").mkdir()                                         # a student who handed in nothing
    out = tmp_path / "results" / "grades.csv"                                   # a folder that does not exist yet
    assert course.main(["grade", str(tmp_path / "class"), "--csv", str(out), "--timeout", "240"]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    got = {(r["student"], r["chapter"], r["check"]): r["status"] for r in rows}
    assert got[("ann", "00", "vp_alpha")] == "passed"
    assert got[("ann", "00", "forward_noise")] == "failed"
    assert got[("ann", "00", "eps_from_x0")] == "not attempted"
    assert got[("ann", "00", "score_from_eps")] == "not attempted"    # after the raising cell: graded on its merits
    assert got[("ann", "00", "ddim_port")] == "not run"             # its own cell raised (NameError)
    named = next(r["message"] for r in rows if r["check"] == "ddim_port" and r["student"] == "ann")
    assert named.startswith("its cell 11 of 11 (") and "NameError" in named
    ch00 = [n for n, (c, _) in EXERCISES.items() if c == "00"]      # the tour calls every check of ch00
    assert sorted(c for st, ch, c in got if (st, ch) == ("ann", "00")) == sorted(ch00)
    run = {r["run"] for r in rows if r["notebook"] == "00_tour.ipynb"}
    assert len(run) == 1 and run.pop().startswith(
        "ran with errors in 2 cell(s): cell 9 of 11 ('x = 1 / 0  # a bug'): ZeroDivisionError: division by zero")
    broken = {r["run"] for r in rows if r["notebook"] == "01_generative_modeling.ipynb"}
    assert len(broken) == 1 and broken.pop().startswith("unreadable notebook")
    wrong_msg = next(r["message"] for r in rows if r["check"] == "forward_noise")
    assert wrong_msg.startswith(f"{NO} forward_noise:")
    assert "ignored" in printed and "notes.ipynb" in printed
    assert "ann 00 forward_noise: failed" in printed and "error in cell 9 of 11" in printed
    assert "bo: no notebook handed in" in printed
    assert {r["status"] for r in rows if r["student"] == "bo"} == {"missing"}       # both chapters, every check
    assert {r["chapter"] for r in rows if r["student"] == "bo"} == {"00", "01"}
    assert sum(float(r["points"]) for r in rows if r["student"] == "ann") == 1
    summary = list(csv.DictReader(out.with_name("grades_summary.csv").open(encoding="utf-8")))
    first = next(r for r in summary if r["notebook"] == "00_tour.ipynb")
    assert (first["passed"], first["failed"], first["not attempted"], first["not run"]) == ("1", "1", "2", "2")   # ddim_port raised, ddim_bridges never called
    book = list(csv.DictReader(out.with_name("grades_gradebook.csv").open(encoding="utf-8")))
    n01 = len(course._expected_checks("01"))
    assert [(r["student"], r["ch00"], r["ch01"], r["total"]) for r in book] == [("ann", "1", "0", "1"), ("bo", "0", "0", "0")]
    assert book[0]["out of"] == str(len(ch00) + n01)
    # resume: a second run reuses every unchanged notebook's record and grades nothing again
    assert course.main(["grade", str(tmp_path / "class"), "--csv", str(out)]) == 0
    again = capsys.readouterr().out
    assert "resumed: 2 notebook(s)" in again and "graded ann/" not in again
    assert list(csv.DictReader(out.open(encoding="utf-8"))) == rows


def test_grade_renamed_submission_and_parallel_students(tmp_path):
    for name, student in (("my work (copy).ipynb", "cy"), ("00_tour.ipynb", "di")):
        (tmp_path / student).mkdir()
        nbformat.write(_student_nb("import dpm_lab as dl", RIGHT, "dl.exercises.check_vp_alpha(my_alpha)"),
                       tmp_path / student / name)
    messages = []
    grades = course.grade(tmp_path, timeout=240, jobs=2, progress=messages.append)
    assert [(g.student, g.chapter, g.checks["vp_alpha"][0]) for g in grades] == [("cy", "00", "passed"),
                                                                                ("di", "00", "passed")]
    assert "graded as chapter 00" in grades[0].note and any("renamed by the student" in m for m in messages)


def test_grade_timeout_and_bad_folders(tmp_path):
    bob = tmp_path / "bob"
    bob.mkdir()
    nbformat.write(_student_nb("x = 1", "import time\ntime.sleep(60)"), bob / "00_slow.ipynb")
    (g,) = course.grade(tmp_path, timeout=3)     # the kernel's start counts: a slow start times out in cell 2
    assert g.run.startswith("timed out (over 3 s for the notebook) in cell ") and g.seconds < 40
    assert g.checks["vp_alpha"][0] == "not run" and g.checks["forward_noise"][0] == "not run"
    assert g.checks["vp_alpha"][1].startswith("timed out")
    with pytest.raises(ValueError, match="folder not found"):
        course.grade(tmp_path / "nobody")
    assert course.main(["grade", str(tmp_path / "bob")]) == 2     # no student subfolders: nothing graded


def test_results_file_and_not_called(tmp_path):
    g = course.NotebookGrade("cy", "00", "00_tour.ipynb")
    results = tmp_path / "r.jsonl"
    results.write_text('{"chapter": "00", "check": "vp_alpha", "status": "failed", "message": "m1"}\n'
                       '{"chapter": "00", "check": "vp_alpha", "status": "passed", "message": "m2"}\n{"cut',
                       encoding="utf-8")
    assert course._read_results(results) == {"vp_alpha": ("passed", "m2")}   # the last call counts
    assert not results.exists()
    g.checks = {"vp_alpha": ("passed", ""), "forward_noise": (course.NOT_CALLED, "")}
    text = course.summary([g])
    assert "cy 00 forward_noise: not called" in text and "1/2" in text


@pytest.mark.slow
def test_grade_real_chapter_with_one_wrong_answer(tmp_path):
    """The student copy of chapter 01 with one right and one deliberately wrong answer: it runs end to
    end (the other eight stubs read "not attempted yet"), and the grade tells the three apart."""
    nb = course.student_notebook(nbformat.read(CHAPTER, as_version=4))
    original = nbformat.read(CHAPTER, as_version=4)
    sol = {c.source.split("(")[0]: c.source for c in original.cells if course.is_solution(c)}
    for cell in nb.cells:
        if cell.source.startswith("def my_gaussian_nll("):          # deliberately wrong: a sum, not a mean
            cell.source = ("import torch\ndef my_gaussian_nll(x, mu, sigma):\n"
                           "    return (0.5 * ((x - mu) / sigma) ** 2 + torch.log(sigma * (2 * torch.pi) ** 0.5)).sum()")
        elif cell.source.startswith("def my_optimal_discriminator("):
            cell.source = sol["def my_optimal_discriminator"]
    (tmp_path / "dee").mkdir()
    nbformat.write(nb, tmp_path / "dee" / CHAPTER.name)
    (g,) = course.grade(tmp_path, timeout=600)
    assert g.run == "ok", g.run
    assert g.checks["gaussian_nll"][0] == "failed" and g.checks["optimal_discriminator"][0] == "passed"
    # the f-divergence template is shown on the book's own generators (a worked cell, not an exercise): its three
    # checks pass in the student copy too
    shown = {"kl_grid", "js_grid", "tv_grid"}
    assert {n: g.checks[n][0] for n in shown} == dict.fromkeys(shown, "passed")
    others = {n: s for n, (s, _) in g.checks.items() if n not in {"gaussian_nll", "optimal_discriminator", *shown}}
    assert others and set(others.values()) == {"not attempted"}
    assert set(g.checks) == set(course._expected_checks("01"))       # the checks the chapter itself calls


# -- figures ----------------------------------------------------------------------------------------
def test_chapter_names():
    assert course.chapter_notebook("02").name == "02_vae_to_ddpm.ipynb"
    assert course.chapter_notebook("2") == course.chapter_notebook("02_vae_to_ddpm.ipynb")
    with pytest.raises(ValueError, match=r"no chapter '42'; valid chapters: 00 \(00_tour\), 01"):
        course.chapter_notebook("42")


def test_figures_png_and_svg(tmp_path, capsys):
    src = tmp_path / "chapters"
    src.mkdir()
    nb = _student_nb("import matplotlib.pyplot as plt", "print('no figure here')",
                     "fig, ax = plt.subplots()\nax.plot([0, 1], [1, 0])\nax.set_title('one')",
                     "for k in range(2):\n    plt.figure()\n    plt.plot([k, 1 - k])\nplt.show()")
    nbformat.write(nb, src / "07_toy.ipynb")
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "07_toy_cell99_fig1.png").write_bytes(b"stale")    # an earlier export's leftover
    assert course.main(["figures", "07", "--out", str(tmp_path / "figs"), "--chapters", str(src), "--dpi", "50"]) == 0
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == [f"07_toy_cell{c:02d}_fig{k}.{e}" for c, k in ((4, 1), (5, 1), (5, 2)) for e in ("png", "svg")]
    assert (tmp_path / "figs" / "07_toy_cell04_fig1.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in (tmp_path / "figs" / "07_toy_cell04_fig1.svg").read_text(encoding="utf-8")[:500]
    assert "3 figure(s) as PNG and SVG" in capsys.readouterr().out
    nbformat.write(_student_nb("import matplotlib.pyplot as plt\nplt.plot([1, 2])", "1 / 0"), src / "08_bad.ipynb")
    assert course.main(["figures", "08", "--out", str(tmp_path / "bad"), "--chapters", str(src)]) == 2
    assert ("08_bad.ipynb did not run to the end (ZeroDivisionError: division by zero); 1 figure(s) saved before it"
            in capsys.readouterr().err)
    assert course.main(["figures", "02_nope", "--out", str(tmp_path / "x")]) == 2
    assert "valid chapters: 00 (00_tour)" in capsys.readouterr().err


def test_course_folders_come_from_the_wheel_when_there_is_no_checkout(tmp_path, monkeypatch):
    from dpm_lab.course import builds

    packaged = tmp_path / "site-packages" / "dpm_lab" / "_course"
    (packaged / "chapters").mkdir(parents=True)
    (packaged / "chapters" / CHAPTER.name).write_bytes(CHAPTER.read_bytes())
    assert builds.course_folder("chapters") == ROOT / "chapters"                 # a checkout wins
    monkeypatch.setattr(builds, "ROOT", tmp_path / "no-checkout")
    monkeypatch.setattr(builds, "PACKAGED", packaged)
    assert builds.course_folder("chapters") == packaged / "chapters"
    assert course.chapter_notebook("01") == packaged / "chapters" / CHAPTER.name
    assert builds.course_folder("problems") == tmp_path / "no-checkout" / "problems"   # neither: the checkout's name
    setup = (ROOT / "setup.py").read_text()
    assert '"chapters"' in setup and '"problems"' in setup and '"data"' in setup and "_course" in setup
