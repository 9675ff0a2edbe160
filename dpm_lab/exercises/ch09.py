"""Chapter 09 (fast solvers): the checks of its exercises.

Under construction.
"""

__all__: list[str] = []
