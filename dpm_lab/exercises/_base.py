"""The machinery shared by every chapter's checks: the checker decorator, "not attempted yet",
closeness, message formatting and the registry `EXERCISES`.

A check body returns `(ok, message)` and may raise `NotAttempted` (through `call`) when the
learner has not answered yet; `checker` turns it into a function that prints one friendly line
and returns True or False, and never raises. In a notebook, a check that is its cell's last
expression shows only its line, not a stray `True` below it (see `_quiet_result`); the value is
still returned (tests, the grader and `assert check_...(...)` rely on it).

For grading (`python -m dpm_lab.course grade`): when the environment variable named by
`RESULTS_ENV` (DPM_LAB_CHECK_RESULTS) holds a file path, every check also appends one JSON line
to that file, {"chapter", "check", "status", "message"}, status one of `STATUSES`; the printed
line is the same with or without it.
"""
from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..utils import randn

__all__ = ["OK", "NO", "TODO", "CPU", "EXERCISES", "RESULTS_ENV", "STATUSES", "NotAttempted", "WrongAnswer", "Check", "checker", "call",
           "as_array", "as_scalar", "close", "fmt", "example_pair", "make_use"]

OK = "\u2713"      # check mark (text glyphs, in ordinary fonts: no emoji font needed)
NO = "\u2717"      # ballot x
TODO = "\u2192"    # arrow: not attempted yet
CPU = torch.device("cpu")   # check inputs are made here whatever torch's default device is

Check = Callable[..., bool]

RESULTS_ENV = "DPM_LAB_CHECK_RESULTS"   # names a JSON-lines file each check appends its result to
STATUSES = ("passed", "failed", "not attempted")

# name -> (chapter, check); filled by @checker as the chapter files are imported
EXERCISES: dict[str, tuple[str, Check]] = {}


class NotAttempted(Exception):
    """Raised inside a check body when the learner's answer is a stub (None, ..., NotImplementedError)."""


class WrongAnswer(Exception):
    """Raised inside a check body to fail at once with its message (an answer of the wrong kind or shape)."""


def fmt(x: Any) -> str:
    """Format a number or a small array compactly for messages (at most four entries)."""
    a = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=float)
    if a.size == 1:
        return f"{a.item():.4g}"
    return np.array2string(a.ravel()[:4], precision=3, separator=", ") + (" ..." if a.size > 4 else "")


def call(fn: Any, *args: Any) -> Any:
    """The learner's answer: fn(*args) when fn is callable, else fn itself.

    None, Ellipsis, a function returning either, or one raising NotImplementedError mean "no answer
    yet" and raise NotAttempted; any other error propagates (the checker reports it as advice).
    """
    if fn is None:
        raise NotAttempted
    if not callable(fn):
        return fn
    try:
        out = fn(*args)
    except NotImplementedError:
        raise NotAttempted from None
    if out is None or out is Ellipsis:
        raise NotAttempted
    return out


def as_array(x: Any) -> np.ndarray:
    """A float64 NumPy copy of a tensor, a number, or a (nested) tuple or list of them."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    if isinstance(x, (tuple, list)):
        return np.asarray([as_array(v) for v in x], dtype=float)
    return np.asarray(x, dtype=float)


def as_scalar(x: Any, what: str = "one number") -> float:
    """x as a float; an answer with more than one entry raises WrongAnswer saying what to return."""
    a = as_array(x)
    if a.size != 1:
        raise WrongAnswer(f"return {what}; you returned {a.size} numbers (shape {a.shape})")
    return float(a.reshape(()))


def close(a: Any, b: Any, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    """True when a and b have the same shape, a is finite, and they agree to rtol/atol."""
    a, b = as_array(a), as_array(b)
    return a.shape == b.shape and bool(np.all(np.isfinite(a))) and np.allclose(a, b, rtol=rtol, atol=atol)


def checker(name: str, chapter: str) -> Callable[[Callable[..., tuple[bool, str]]], Check]:
    """Decorator: a check body returns (ok, message); this adds the friendly wrapping and registers it.

    The wrapped `check_<name>(answer, ...)` prints one line (pass, fail with a hint, "not attempted
    yet", or the learner's exception as advice) and returns True or False; it never raises. A body
    may raise WrongAnswer(message) to fail early (an answer of the wrong kind or shape).
    """

    if name in EXERCISES and EXERCISES[name][0] != chapter:
        # one registry key per check: dl.exercises.check_<name> and the grader must find the right chapter's
        raise ValueError(f"check name {name!r} of chapter {chapter} is already chapter {EXERCISES[name][0]}'s; "
                         "choose another name")

    def wrap(body: Callable[..., tuple[bool, str]]) -> Check:
        def check(answer: Any = None, *args: Any, **kwargs: Any) -> bool:
            status, line = _outcome(name, body, (answer, *args), kwargs)
            print(line)
            _record(chapter, name, status, line)
            _quiet_result()
            return status == "passed"

        check.__name__ = check.__qualname__ = f"check_{name}"
        check.__doc__, check.__module__ = body.__doc__, body.__module__
        check.chapter = chapter
        EXERCISES[name] = (chapter, check)
        return check

    return wrap


def _outcome(name: str, body: Callable[..., tuple[bool, str]], args: tuple, kwargs: dict[str, Any]) -> tuple[str, str]:
    """(status, the line to print) of one run of a check body; never raises."""
    try:
        ok, msg = body(*args, **kwargs)
    except NotAttempted:
        return STATUSES[2], (f"{TODO} {name}: not attempted yet. Fill in the cell above (replace its `None`) "
                             "and run this check again.")
    except WrongAnswer as wrong:
        return STATUSES[1], f"{NO} {name}: {wrong}"
    except Exception as exc:  # a learner's bug should read as advice, not a traceback
        return STATUSES[1], (f"{NO} {name}: your code raised {type(exc).__name__}: {exc}. "
                             "Check the shapes and types of what you return.")
    return (STATUSES[0] if ok else STATUSES[1]), f"{OK if ok else NO} {name}: {msg}"


_CELL: dict[str, str | None] = {"source": None}   # the IPython cell now running (see _watch_cells)


def _watch_cells() -> None:
    """In IPython, remember each cell's source as it starts (pre_run_cell fires for every run, with or
    without history, as under nbval); installed once per shell, at import."""
    try:
        from IPython import get_ipython

        ip = get_ipython()
    except ImportError:
        return
    if ip is None or getattr(ip, "_dpm_lab_watches_cells", False):
        return

    def pre_run_cell(info: Any) -> None:
        _CELL["source"] = getattr(info, "raw_cell", None)

    ip.events.register("pre_run_cell", pre_run_cell)
    ip._dpm_lab_watches_cells = True


def _quiet_result() -> None:
    """In IPython, when the running cell ends with a bare check call, its True/False is not displayed.

    A one-shot display printer for bool is installed for this cell only (removed by the first bool it
    hides, or when the cell ends), so any other cell's True/False still shows. Outside IPython, or for
    `ok = check_...(...)`, `assert check_...(...)`, nothing changes."""
    try:
        from IPython import get_ipython

        ip = get_ipython()
        cell = _CELL["source"] if _CELL["source"] is not None else ip.history_manager.input_hist_raw[-1]
        last = ast.parse(ip.transform_cell(cell)).body[-1] if cell.strip() else None
    except Exception:  # noqa: BLE001 - no IPython, a cell with syntax only IPython knows: show as usual
        return
    if not (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
            and re.search(r"(^|\.)check_\w+$", ast.unparse(last.value.func))):
        return
    shown = ip.display_formatter.ipython_display_formatter

    def hide(_: bool) -> None:
        shown.type_printers.pop(bool, None)

    def cleanup(*_: Any) -> None:
        shown.type_printers.pop(bool, None)
        ip.events.unregister("post_run_cell", cleanup)

    shown.for_type(bool, hide)
    ip.events.register("post_run_cell", cleanup)


_watch_cells()


def _record(chapter: str, name: str, status: str, line: str) -> None:
    """Append the result as one JSON line to the file named by $DPM_LAB_CHECK_RESULTS, if set."""
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    row = {"chapter": chapter, "check": name, "status": status, "message": line}
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    except OSError:  # grading bookkeeping must never break the learner's notebook
        pass


def example_pair(seed: int = 0, shape: tuple[int, ...] = (5, 2)) -> tuple[torch.Tensor, torch.Tensor]:
    """Two seeded float64 standard-normal tensors (x0, eps) of `shape`, on the CPU."""
    g = torch.Generator().manual_seed(seed)
    return randn(shape, generator=g, dtype=torch.float64), randn(shape, generator=g, dtype=torch.float64)


def make_use(references: dict[str, Callable[..., Any]]) -> Callable[[str, Any], Callable[..., Any]]:
    """A chapter's `use(name, answer)`: the function later cells call for exercise `name`.

    It is the learner's `answer`, with the package's version `references[name]` standing in while it is
    a stub (it says so once; see yours_or). A wrong answer is used as it is, so it is felt downstream.
    """
    def use(name: str, answer: Any) -> Callable[..., Any]:
        if name not in references:
            raise ValueError(f"no package version for {name!r}; names: {', '.join(references)}")
        return yours_or(answer, references[name], name)

    use.__doc__ = f"{make_use.__doc__.splitlines()[0]}\n\nNames: {', '.join(references)}."
    return use


def yours_or(fn: Any, reference: Callable[..., Any], name: str) -> Callable[..., Any]:
    """The learner's function `fn` for cells that reuse it, with `reference` standing in while fn is a stub.

    The returned function calls fn(*args, **kwargs); while fn is None, returns None or Ellipsis, or
    raises NotImplementedError, it calls reference(*args, **kwargs) instead and says so once, so the
    student copy of a chapter still runs. Any other answer, right or wrong, is used as it is, so a
    wrong answer is felt downstream.
    """
    said = False

    def use(*args: Any, **kwargs: Any) -> Any:
        nonlocal said
        out = None
        if callable(fn):
            try:
                out = fn(*args, **kwargs)
            except NotImplementedError:
                out = None
        if out is None or out is Ellipsis:
            if not said:
                print(f"{TODO} {name}: not attempted yet, so this cell uses the package's version instead.")
                said = True
            return reference(*args, **kwargs)
        return out

    use.__name__ = use.__qualname__ = f"yours_or_{name}"
    return use
