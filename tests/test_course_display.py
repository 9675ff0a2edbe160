"""What a learner sees in a notebook: a check prints its line and shows no stray True/False (its value is
still returned), while every other cell's True still shows."""
from nbformat.v4 import new_code_cell, new_notebook

import dpm_lab.course as course
from dpm_lab.exercises._base import OK

RIGHT = "import math\ndef my_alpha(t):\n    return math.exp(-0.5 * (0.1 * t + 0.5 * 19.9 * t * t))"


def test_a_check_shows_its_line_and_no_stray_true(tmp_path):
    nb = new_notebook(cells=[new_code_cell(s) for s in (
        "import dpm_lab as dl", RIGHT,
        "dl.exercises.check_vp_alpha(my_alpha)",                     # 2: the line only
        "from dpm_lab.exercises import check_vp_alpha\ncheck_vp_alpha(None)",   # 3: the line only
        "ok = dl.exercises.check_vp_alpha(my_alpha)\nok",             # 4: the learner asks for the value: shown
        "1 + 1 == 2",                                                 # 5: an ordinary True: shown
        "dl.exercises.check_vp_alpha(my_alpha)\n3 > 2",               # 6: the last expression is not the check
        "assert dl.exercises.check_vp_alpha(my_alpha)",               # 7: the value is there for assert
    )])
    course.execute_notebook(nb, cwd=tmp_path)
    results = [[o["data"]["text/plain"] for o in c.outputs if o.output_type == "execute_result"] for c in nb.cells]
    streams = ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in nb.cells]
    assert results[2] == [] and f"{OK} vp_alpha" in streams[2]
    assert results[3] == [] and "not attempted yet" in streams[3]
    assert results[4] == ["True"] and results[5] == ["True"] and results[6] == ["True"]
    assert not any(o.output_type == "error" for c in nb.cells for o in c.outputs)


SQUARE = '''import dpm_lab as dl
class Square(dl.widgets.Explorer):
    compute_keys = ("x",)
    figsize = (2.0, 1.5)
    def _make_controls(self):
        W = self._W
        return {"x": W.FloatSlider(value=1.0, min=-2, max=2, description="x"),
                "span": W.FloatRangeSlider(value=(0.0, 1.0), min=0, max=1, description="span")}
    def compute(self, x):
        return {"x": x, "y": x * x, "grid": list(range(500))}
    def draw(self, data, values):
        self.fig.axes[0].plot([data["x"]], [data["y"]], "o")
ex = Square()'''


def test_explorer_update_shows_nothing_long_and_says_the_range(tmp_path):
    nb = new_notebook(cells=[new_code_cell(s) for s in (
        SQUARE,
        "ex.update(x=1.5)",                                             # 1: nothing displayed
        "d = ex.update(x=0.5)\nprint(d['y'], type(d).__mro__[1].__name__, d == {'x': 0.5, 'y': 0.25, 'grid': list(range(500))})",
        "try:\n    ex.update(x=3.0)\nexcept ValueError as e:\n    print(e)\nprint(ex.values['x'])",
        "try:\n    ex.update(span=(0.5, 1.5))\nexcept ValueError as e:\n    print(e)",
    )])
    course.execute_notebook(nb, cwd=tmp_path)
    assert not any(o.output_type == "error" for c in nb.cells for o in c.outputs)
    assert nb.cells[1].outputs == []
    text = ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in nb.cells]
    assert text[2] == "0.25 dict True\n"                                 # still the data, a dict
    assert text[3] == "control 'x' takes values from -2 to 2; got 3.0\n0.5\n"   # not clamped to 2, not moved
    assert text[4] == "control 'span' takes values from 0 to 1; got 1.5\n"


def test_python_m_zoo_starts_without_a_runtime_warning(tmp_path):
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    r = subprocess.run([sys.executable, "-m", "dpm_lab.zoo", "list"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" not in r.stderr and "8g_vp_eps" in r.stdout


def test_nbval_agrees_with_a_normalised_check_cell_from_before(tmp_path):
    """A chapter executed while checks still displayed True fails nbval now; normalised, it passes."""
    import os
    import pathlib
    import subprocess
    import sys

    import nbformat
    from nbformat.v4 import new_output

    nb = new_notebook(cells=[new_code_cell("import dpm_lab as dl"), new_code_cell(RIGHT),
                             new_code_cell("# NBVAL_CHECK_OUTPUT\ndl.exercises.check_vp_alpha(my_alpha)")])
    course.execute_notebook(nb, cwd=tmp_path)
    nb.cells[2].outputs.append(new_output("execute_result", data={"text/plain": "True"}, execution_count=3))
    old, new = tmp_path / "old.ipynb", tmp_path / "new.ipynb"
    nbformat.write(nb, old)
    nbformat.write(nb, new)
    course.normalize_files([new])
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(__file__).resolve().parent.parent))
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax"]
    assert subprocess.run([*run, str(old)], cwd=tmp_path, env=env, capture_output=True, timeout=300).returncode != 0
    r = subprocess.run([*run, str(new)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:]
