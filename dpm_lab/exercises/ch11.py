"""Chapter 11 (flow maps): the checks of its exercises.

Under construction.
"""

__all__: list[str] = []
