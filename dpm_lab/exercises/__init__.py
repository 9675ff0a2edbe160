"""Automatic checks for the course exercises: `dl.exercises.check_<name>(your_answer)`.

Each check prints a short, specific message and returns True or False. It never raises on
an unfinished answer: a stub that returns None (or None itself) prints "not attempted yet"
and returns False, so the student copy of a chapter runs from top to bottom.

    def my_alpha(t):
        return ...
    dl.exercises.check_vp_alpha(my_alpha)      # -> prints a message, returns True/False

One file per chapter (`ch00`, `ch01`, ...) holds that chapter's checks; `_base` holds the shared
machinery (the `checker` decorator, "not attempted yet", closeness, formatting).
`dl.exercises.EXERCISES` lists every check with the chapter it belongs to.
"""
from . import ch00, ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09, ch10, ch11, ch12
from ._base import EXERCISES

CHAPTERS = (ch00, ch01, ch02, ch03, ch04, ch05, ch06, ch07, ch08, ch09, ch10, ch11, ch12)

# every chapter's checks at the top level: dl.exercises.check_<name> (other names stay in their chapter)
_CHECKS = [name for chapter in CHAPTERS for name in chapter.__all__ if name.startswith("check_")]
for _chapter in CHAPTERS:
    globals().update({n: getattr(_chapter, n) for n in _chapter.__all__ if n.startswith("check_")})

__all__ = ["EXERCISES", *_CHECKS]
