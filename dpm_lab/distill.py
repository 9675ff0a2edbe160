"""Distillation (book Ch. 10): knowledge distillation, progressive distillation and score distillation
(VSD/DMD, SDS); every student plugs into `dl.sample` as a model or a solver object.

Under construction for chapter 10 (issue 19).
"""

__all__: list[str] = []
