"""Chapter 10 (distillation): the checks of its exercises.

Under construction.
"""

__all__: list[str] = []
