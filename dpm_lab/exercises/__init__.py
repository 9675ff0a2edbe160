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
from ._base import EXERCISES
from .ch00 import check_eps_from_x0, check_forward_noise, check_score_from_eps, check_vp_alpha
from .ch01 import (
    check_forward_kl_fit,
    check_gaussian_nll,
    check_gaussian_score,
    check_js_grid,
    check_kl_grid,
    check_tv_grid,
)
from .ch02 import check_alpha_bar, check_ddpm_posterior, check_eps_mean, check_gaussian_kl, check_vae_kl

__all__ = ["EXERCISES", "check_vp_alpha", "check_forward_noise", "check_eps_from_x0", "check_score_from_eps",
           "check_gaussian_nll", "check_kl_grid", "check_js_grid", "check_tv_grid", "check_gaussian_score",
           "check_forward_kl_fit", "check_alpha_bar", "check_ddpm_posterior", "check_eps_mean",
           "check_vae_kl", "check_gaussian_kl"]
