"""The tests every chapter's exercise checks face, written once (tests/test_exercises_chNN.py call it).

    globals().update(chapter_suite("01", SOLUTIONS, WRONG, STUBS))

SOLUTIONS: check name -> a right answer.  WRONG: (check name, wrong answer, words its message must
contain), at least three per check.  STUBS: check name -> a stub answer (default: None and a
function returning None, for every check).
"""
from __future__ import annotations

import pytest

import dpm_lab as dl
from dpm_lab.exercises._base import NO, OK, TODO


def run_check(name: str, answer, capsys) -> tuple[bool, str]:
    """Call check `name` on `answer`; return what it returned and what it printed."""
    ok = dl.exercises.EXERCISES[name][1](answer)
    return ok, capsys.readouterr().out


def chapter_suite(chapter: str, solutions: dict, wrong: list, stubs: dict | None = None) -> dict:
    """The four shared tests of a chapter's checks, as module-level test functions."""
    stub_cases = ([(n, s) for n, s in sorted(stubs.items())] if stubs is not None else
                  [(n, s) for n in sorted(solutions) for s in (None, lambda *a: None)])

    def test_every_check_has_a_solution_a_stub_and_three_wrong_answers():
        mine = {n for n, (ch, _) in dl.exercises.EXERCISES.items() if ch == chapter}
        assert set(solutions) == mine == {n for n, _ in stub_cases}
        assert {w[0] for w in wrong} == mine
        for name in mine:
            assert sum(w[0] == name for w in wrong) >= 3, name

    @pytest.mark.parametrize("name", sorted(solutions))
    def test_correct_answer_passes(name, capsys):
        ok, out = run_check(name, solutions[name], capsys)
        assert ok is True and out.startswith(OK), out

    @pytest.mark.parametrize("name, stub", stub_cases, ids=[f"{n}-{i}" for i, (n, _) in enumerate(stub_cases)])
    def test_stub_is_not_attempted_yet(name, stub, capsys):
        ok, out = run_check(name, stub, capsys)
        assert ok is False and out.startswith(TODO) and "not attempted yet" in out, out

    @pytest.mark.parametrize("name, answer, words", wrong, ids=[f"{w[0]}-{i}" for i, w in enumerate(wrong)])
    def test_wrong_answer_gets_its_hint(name, answer, words, capsys):
        ok, out = run_check(name, answer, capsys)
        assert ok is False and out.startswith(NO), out
        for w in words:
            assert w in out, f"{name}: {w!r} not in {out!r}"

    return {f.__name__: f for f in (test_every_check_has_a_solution_a_stub_and_three_wrong_answers,
                                    test_correct_answer_passes, test_stub_is_not_attempted_yet,
                                    test_wrong_answer_gets_its_hint)}
