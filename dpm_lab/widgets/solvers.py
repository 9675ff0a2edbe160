"""The explorers of chapter 09 (fast solvers).

Under construction.
"""

__all__: list[str] = []
