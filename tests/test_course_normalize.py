"""The normaliser (dpm_lab/course/normalize.py): notebooks stored as JupyterLab saves them. The browser
test tests/browser/test_chapters_stay_clean.py holds it against JupyterLab itself."""
import json
import pathlib
import shutil

import nbformat
import pytest

import dpm_lab.course as course
from dpm_lab.course.normalize import ends_in_check, integral_numbers

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


def test_integral_numbers_as_javascript_writes_them():
    got = integral_numbers({"a": 3.0, "b": [0.5, -0.0, 1e300, float("nan")], "c": "3.0", "d": True, "e": 2})
    assert got == {"a": 3, "b": [0.5, 0, 1e300, None], "c": "3.0", "d": True, "e": 2}
    assert type(got["a"]) is int and type(got["b"][1]) is int and type(got["b"][2]) is float and got["d"] is True


def test_normalised_chapters_in_a_temp_folder(tmp_path, capsys):
    for path in CHAPTERS[:2]:
        shutil.copyfile(path, tmp_path / path.name)
    files = sorted(tmp_path.glob("*.ipynb"))
    course.main(["normalize", *map(str, files)])
    capsys.readouterr()
    for path, original in zip(files, CHAPTERS[:2]):
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        assert nb["metadata"]["kernelspec"] == {"display_name": "Python 3 (ipykernel)", "language": "python",
                                                "name": "python3"}
        assert text.endswith("}\n") and text.startswith('{\n "cells": [\n  {\n')     # indent 1, keys sorted
        assert not _integral_floats(nb)
        before = nbformat.read(original, as_version=4)
        after = nbformat.read(path, as_version=4)
        assert [c.source for c in after.cells] == [c.source for c in before.cells]   # content unchanged
        kept = [[o for o in c.get("outputs", []) if not (ends_in_check(c.source) and o["output_type"] == "execute_result")]
                for c in before.cells]
        assert [len(c.get("outputs", [])) for c in after.cells] == [len(k) for k in kept]  # only a check's True dropped
    assert course.main(["normalize", "--check", *map(str, files)]) == 0              # idempotent
    assert "already stored as JupyterLab saves it" in capsys.readouterr().out


def _integral_floats(value):
    if isinstance(value, float):
        return [value] if value.is_integer() else []
    if isinstance(value, dict):
        return [x for v in value.values() for x in _integral_floats(v)]
    if isinstance(value, list):
        return [x for v in value for x in _integral_floats(v)]
    return []


def test_check_mode_and_bad_files(tmp_path, capsys):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells[0].metadata["scale"] = 2.0
    path = tmp_path / "a.ipynb"
    nbformat.write(nb, path)
    before = path.read_text()
    assert course.main(["normalize", "--check", str(path)]) == 1 and path.read_text() == before   # nothing written
    assert "would change" in capsys.readouterr().out
    assert course.main(["normalize", str(path)]) == 0 and '"scale": 2\n' in path.read_text()
    (tmp_path / "bad.ipynb").write_text("{not json")
    assert course.main(["normalize", str(tmp_path / "bad.ipynb")]) == 2
    assert "bad.ipynb is not a readable notebook" in capsys.readouterr().err
    assert (tmp_path / "bad.ipynb").read_text() == "{not json"
    with pytest.raises(ValueError, match="no notebook at"):
        course.normalize_files([tmp_path / "missing.ipynb"])


def test_committed_chapters_are_normalised():
    """Cheap twin of the browser test: after `python -m dpm_lab.course normalize`, nothing would change."""
    would = course.normalize_files(CHAPTERS, check=True)
    assert not would, f"run `python -m dpm_lab.course normalize` and commit: {[p.name for p in would]}"


def test_a_check_cell_s_stored_true_is_dropped_as_a_run_now_gives(tmp_path):
    from nbformat.v4 import new_code_cell, new_output

    cells = [new_code_cell("# NBVAL_CHECK_OUTPUT\ndl.exercises.check_vp_alpha(my_alpha)"),
             new_code_cell("1 == 1"), new_code_cell("ok = ex.check_b(f)\nok")]
    for c in cells:
        c.outputs = [new_output("stream", text="line\n"), new_output("execute_result", data={"text/plain": "True"},
                                                                     execution_count=1)]
    nb = course.normalize_notebook(nbformat.v4.new_notebook(cells=cells), info={})
    assert [o["output_type"] for o in nb.cells[0].outputs] == ["stream"]                  # the check's True: gone
    assert [len(c.outputs) for c in nb.cells[1:]] == [2, 2]                              # any other True: kept
