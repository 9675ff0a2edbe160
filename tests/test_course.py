"""Tests of dpm_lab.course (tooling): stubs replace solutions, both copies execute end to end, and
`python -m dpm_lab.course` works although `import dpm_lab` does not import it."""
import ast
import os
import pathlib
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import dpm_lab.course as course

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


@pytest.mark.slow
def test_real_chapter_student_copy_executes(tmp_path):
    nb = course.student_notebook(nbformat.read(CHAPTER, as_version=4))
    course.execute_notebook(nb, cwd=tmp_path, timeout=300)   # raises CellExecutionError on any failure
    out = _stdout(nb)
    assert out.count("not attempted yet") >= 4
    assert "\u2705" not in out
