"""The learner's workspace (dpm_lab/course/workspace.py): the student build with its pictures kept, made
once and never overwriting the learner's work; run.sh and .gitignore point at it."""
import pathlib
import subprocess

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

import dpm_lab.course as course

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "chapters" / "01_generative_modeling.ipynb"


def _tiny(text="v1"):
    sol = new_code_cell("def my_alpha(t):\n    return 2 * t")
    sol.metadata["tags"] = ["solution"]
    sol.outputs = [new_output("stream", text="solution output")]
    nb = new_notebook(cells=[
        new_markdown_cell(f"# tiny {text}"),
        new_code_cell("x = 1", outputs=[new_output("display_data", data={"image/png": "iVBORw0KGgo=",
                                                                       "text/plain": "<Figure>"})]),
        sol,
        new_code_cell("dl.exercises.check_vp_alpha(my_alpha)", outputs=[new_output("stream", text="passed")]),
    ])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"a": {"state": {"v": 3.0}}}}}
    return nb


@pytest.fixture
def src(tmp_path):
    folder = tmp_path / "chapters"
    folder.mkdir()
    nbformat.write(_tiny(), folder / "07_tiny.ipynb")
    return folder


def test_workspace_copy_is_the_student_build_with_its_pictures(src, tmp_path):
    report = course.make_workspace(tmp_path / "ws", chapters=src, problems=tmp_path / "none")
    assert report.created == ["07_tiny.ipynb", "README.md"]
    nb = nbformat.read(tmp_path / "ws" / "07_tiny.ipynb", as_version=4)
    picture, stub, check = nb.cells[1], nb.cells[2], nb.cells[3]
    assert picture.outputs[0]["data"]["image/png"] == "iVBORw0KGgo="          # shows before anything runs
    assert "# YOUR CODE HERE" in stub.source and "2 * t" not in stub.source and stub.outputs == []
    assert check.outputs == []                                                 # no "passed" from the reference
    assert not any(course.is_solution(c) for c in nb.cells)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert state["a"]["state"]["v"] == 3 and isinstance(state["a"]["state"]["v"], int)   # stored as JupyterLab saves
    assert nb.metadata["kernelspec"]["display_name"] == "Python 3 (ipykernel)"
    readme = (tmp_path / "ws" / "README.md").read_text()
    assert "00_tour.ipynb" in readme and str(src.resolve()) in readme and "--fresh" in readme


def test_workspace_never_overwrites_the_learners_work(src, tmp_path):
    ws = tmp_path / "ws"
    course.make_workspace(ws, chapters=src)
    nbformat.write(_tiny("v2"), src / "07_tiny.ipynb")                           # the course updates chapter 07
    nbformat.write(_tiny("new"), src / "08_new.ipynb")                          # and adds chapter 08
    report = course.make_workspace(ws, chapters=src)
    assert report.updated == ["07_tiny.ipynb"] and report.created == ["08_new.ipynb"]   # untouched copy: updated
    assert "tiny v2" in (ws / "07_tiny.ipynb").read_text()
    mine = (ws / "08_new.ipynb").read_text().replace("x = 1", "x = 2  # my change")
    (ws / "08_new.ipynb").write_text(mine)                                      # the learner works in 08
    nbformat.write(_tiny("v3"), src / "08_new.ipynb")
    report = course.make_workspace(ws, chapters=src)
    assert report.updated == [] and (ws / "08_new.ipynb").read_text() == mine    # left alone
    report = course.make_workspace(ws, chapters=src, fresh=["08"])               # a fresh copy on request
    (name, backup), = report.refreshed
    assert name == "08_new.ipynb" and (ws / backup).read_text() == mine
    assert "tiny v3" in (ws / "08_new.ipynb").read_text()
    before = sorted(p.name for p in ws.iterdir())
    with pytest.raises(ValueError, match=r"no chapter '09'; valid chapters: 07 \(07_tiny\), 08 \(08_new\)"):
        course.make_workspace(ws, chapters=src, fresh=["09"])
    assert sorted(p.name for p in ws.iterdir()) == before                       # nothing written on a bad name
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        course.make_workspace(tmp_path / "afile", chapters=src)


def test_workspace_cli_on_a_real_chapter(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / CHAPTER.name).write_bytes(CHAPTER.read_bytes())
    assert course.main(["workspace", "--out", str(tmp_path / "ws"), "--chapters", str(src)]) == 0
    assert "new: 01_generative_modeling.ipynb" in capsys.readouterr().out
    original = nbformat.read(CHAPTER, as_version=4)
    mine = nbformat.read(tmp_path / "ws" / CHAPTER.name, as_version=4)
    for a, b in zip(original.cells, mine.cells):
        if course.is_solution(a) or course.calls_check(a):
            assert b.get("outputs", []) == []
        elif a.cell_type == "code":
            assert len(a.outputs) == len(b.outputs)                             # every other output kept
    assert sum(bool(c.get("outputs")) for c in mine.cells) >= 5
    assert course.main(["workspace", "--out", str(tmp_path / "ws"), "--chapters", str(src)]) == 0
    assert "kept as they are: 1 notebook(s)" in capsys.readouterr().out
    assert course.main(["workspace", "--out", str(tmp_path / "ws"), "--fresh", "42"]) == 2
    assert "valid chapters" in capsys.readouterr().err


def test_run_sh_opens_the_workspace_and_git_ignores_it():
    run = (ROOT / "run.sh").read_text()
    assert "dpm_lab.course lab --out workspace" in run and "chapters/00_tour.ipynb" not in run
    r = subprocess.run(["git", "check-ignore", "-q", "workspace/00_tour.ipynb"], cwd=ROOT)
    assert r.returncode == 0, "workspace/ must be in .gitignore"
    readme = (ROOT / "README.md").read_text().splitlines()[:12]
    assert any("bash run.sh lab" in line for line in readme) and any("00_tour" in line for line in readme)


def test_lab_makes_the_workspace_and_opens_the_tour_there(tmp_path, monkeypatch, capsys):
    import os

    calls = []
    monkeypatch.setattr(os, "execv", lambda exe, args: calls.append((os.getcwd(), args)))
    monkeypatch.chdir(tmp_path)
    assert course.main(["lab", "--out", "ws", "--port", "18999", "--no-browser"]) == 0
    (cwd, args), = calls
    assert cwd == str((tmp_path / "ws").resolve()) and (tmp_path / "ws" / "00_tour.ipynb").is_file()
    assert args[1:4] == ["-m", "jupyter", "lab"] and args[-1] == "00_tour.ipynb"
    assert "--port" in args and "18999" in args and "--no-browser" in args
    assert "the worked solutions are in" in capsys.readouterr().out
    with pytest.raises(SystemExit):                                    # other commands take no stray options
        course.main(["workspace", "--bogus"])
