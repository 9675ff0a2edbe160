"""Tests of the exercise machinery (dpm_lab/exercises/_base.py) and of the package face of dl.exercises:
the checker never raises, stubs read "not attempted yet", and every chapter's checks are registered."""
import importlib

import numpy as np
import pytest
import torch

import dpm_lab as dl
from dpm_lab.exercises import _base

CHAPTERS = ("00", "01", "02")


def test_call_maps_stubs_to_not_attempted():
    for stub in (None, lambda: None, lambda: ...):
        with pytest.raises(_base.NotAttempted):
            _base.call(stub)

    def unfinished(x):
        raise NotImplementedError
    with pytest.raises(_base.NotAttempted):
        _base.call(unfinished, 1)
    assert _base.call(lambda x, y: x + y, 2, 3) == 5
    assert _base.call(0.25) == 0.25                       # a plain value (a prediction) is the answer itself
    with pytest.raises(KeyError):                        # other errors reach the checker, which reports them
        _base.call(lambda: {}["k"])


def test_close_needs_same_shape_and_finite_values():
    assert _base.close(torch.ones(3), np.ones(3))
    assert _base.close([1.0, 2.0], (1.0 + 1e-7, 2.0))
    assert not _base.close(torch.ones(3), torch.ones(3, 1))          # broadcasting is not agreement
    assert not _base.close(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, float("nan")]))
    assert not _base.close(1.0, 1.01)
    assert _base.close(1.0, 1.01, rtol=0.02)


def test_as_scalar_names_what_to_return():
    assert _base.as_scalar(torch.tensor([2.5])) == 2.5 and _base.as_scalar(np.float32(1.0)) == 1.0
    with pytest.raises(_base.WrongAnswer, match=r"return the mean; you returned 3 numbers \(shape \(3,\)\)"):
        _base.as_scalar(torch.zeros(3), "the mean")


def test_as_array_and_fmt():
    a = _base.as_array((torch.tensor([1.0, 2.0]), [3.0, 4.0]))
    assert a.dtype == np.float64 and a.shape == (2, 2) and a[1, 1] == 4.0
    assert _base.fmt(torch.tensor(0.123456)) == "0.1235"
    assert _base.fmt(np.arange(3.0)) == "[0., 1., 2.]"
    assert _base.fmt(np.arange(6.0)).endswith(" ...") and "4." not in _base.fmt(np.arange(6.0))


def test_example_pair_is_seeded_float64_on_the_cpu():
    x0, eps = _base.example_pair(7)
    g = torch.Generator().manual_seed(7)
    assert torch.equal(x0, torch.randn(5, 2, generator=g, dtype=torch.float64))
    assert torch.equal(eps, torch.randn(5, 2, generator=g, dtype=torch.float64))
    assert x0.device.type == "cpu" and not torch.equal(x0, _base.example_pair(8)[0])


@pytest.fixture
def toy_check():
    """A throwaway check registered under a test name, removed afterwards."""
    @_base.checker("toy_double", "99")
    def check_toy_double(fn):
        """fn(x) -> 2 x."""
        got = _base.call(fn, 3.0)
        return got == 6.0, "doubled" if got == 6.0 else f"got {got}"
    yield check_toy_double
    del _base.EXERCISES["toy_double"]


def test_checker_wraps_registers_and_reports(toy_check, capsys):
    assert toy_check.__name__ == "check_toy_double" and toy_check.__doc__ == "fn(x) -> 2 x."
    assert toy_check.chapter == "99" and _base.EXERCISES["toy_double"] == ("99", toy_check)
    assert toy_check(lambda x: 2 * x) is True
    assert capsys.readouterr().out == f"{_base.OK} toy_double: doubled\n"
    assert toy_check(lambda x: x) is False
    assert capsys.readouterr().out == f"{_base.NO} toy_double: got 3.0\n"
    assert toy_check() is False                           # no answer at all
    assert "toy_double: not attempted yet" in capsys.readouterr().out
    assert toy_check(lambda x: [][1]) is False
    out = capsys.readouterr().out
    assert out.startswith(_base.NO) and "raised IndexError" in out


def test_checker_reports_a_wrong_kind_of_answer(capsys):
    @_base.checker("toy_scalar", "99")
    def check_toy_scalar(fn):
        """fn() -> 1.0."""
        got = _base.as_scalar(_base.call(fn), "one number")
        return got == 1.0, "ok"
    try:
        assert check_toy_scalar(lambda: [1.0, 2.0]) is False
        assert capsys.readouterr().out == f"{_base.NO} toy_scalar: return one number; you returned 2 numbers (shape (2,))\n"
    finally:
        del _base.EXERCISES["toy_scalar"]


def test_every_check_is_registered_under_its_chapter():
    names = [n for n in dir(dl.exercises) if n.startswith("check_")]
    assert sorted(names) == sorted(f"check_{n}" for n in dl.exercises.EXERCISES)
    assert sorted(dl.exercises.__all__) == sorted(["EXERCISES", *names])
    for ch in CHAPTERS:
        mod = importlib.import_module(f"dpm_lab.exercises.ch{ch}")
        in_file = {n.removeprefix("check_") for n in mod.__all__ if n.startswith("check_")}
        registered = {n for n, (c, _) in dl.exercises.EXERCISES.items() if c == ch}
        assert in_file == registered and len(registered) >= 4, ch
        for n in in_file:
            check = getattr(dl.exercises, f"check_{n}")
            assert check is getattr(mod, f"check_{n}") and check.chapter == ch and check.__module__ == mod.__name__


@pytest.mark.parametrize("name", sorted(dl.exercises.EXERCISES))
@pytest.mark.parametrize("stub", [None, lambda *a: None, lambda *a: ...], ids=["none", "return-none", "ellipsis"])
def test_stub_is_not_attempted(name, stub, capsys):
    assert dl.exercises.EXERCISES[name][1](stub) is False
    out = capsys.readouterr().out
    assert "not attempted yet" in out and _base.OK not in out


@pytest.mark.parametrize("name", sorted(dl.exercises.EXERCISES))
def test_crashing_answer_is_reported(name, capsys):
    def boom(*args):
        raise KeyError("oops")
    assert dl.exercises.EXERCISES[name][1](boom) is False
    assert "raised KeyError" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(dl.exercises.EXERCISES))
def test_wrong_type_does_not_raise(name, capsys):
    assert dl.exercises.EXERCISES[name][1](lambda *a: "x") is False
    assert dl.exercises.EXERCISES[name][1](lambda *a: torch.zeros(7, 3)) is False
    assert _base.OK not in capsys.readouterr().out


def test_results_file_records_each_check_and_prints_the_same(toy_check, capsys, tmp_path, monkeypatch):
    """With $DPM_LAB_CHECK_RESULTS set, each call appends one JSON line; the printed line does not change."""
    import json

    answers = (lambda x: 2 * x, lambda x: x, None, lambda x: [][1])
    monkeypatch.delenv(_base.RESULTS_ENV, raising=False)
    plain = [(toy_check(a), capsys.readouterr().out) for a in answers]
    path = tmp_path / "results.jsonl"
    monkeypatch.setenv(_base.RESULTS_ENV, str(path))
    logged = [(toy_check(a), capsys.readouterr().out) for a in answers]
    assert logged == plain
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["status"] for r in rows] == ["passed", "failed", "not attempted", "failed"]
    assert {r["chapter"] for r in rows} == {"99"} and {r["check"] for r in rows} == {"toy_double"}
    assert [r["message"] + "\n" for r in rows] == [out for _, out in plain]
    assert set(_base.STATUSES) == {r["status"] for r in rows}


def test_results_file_that_cannot_be_written_is_ignored(toy_check, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(_base.RESULTS_ENV, str(tmp_path))        # a folder: open() fails, the check does not
    assert toy_check(lambda x: 2 * x) is True
    assert capsys.readouterr().out == f"{_base.OK} toy_double: doubled\n"


def test_make_use_falls_back_while_a_stub_and_names_the_exercises():
    from dpm_lab.exercises._base import make_use

    use = make_use({"double": lambda x: 2 * x})
    assert use("double", None)(3) == 6                       # the stub: the package's version stands in
    assert use("double", lambda x: 3 * x)(3) == 9            # a wrong answer is used as it is
    with pytest.raises(ValueError, match="no package version for 'half'; names: double"):
        use("half", None)
    assert "Names: double." in use.__doc__


def test_a_check_name_belongs_to_one_chapter():
    from dpm_lab.exercises._base import EXERCISES, checker
    name, (chapter, _) = next(iter(EXERCISES.items()))
    other = "99" if chapter != "99" else "98"
    with pytest.raises(ValueError, match="already chapter"):
        checker(name, other)
    assert EXERCISES[name][0] == chapter                       # the first registration stands
