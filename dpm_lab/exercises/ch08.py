"""Chapter 08 (guidance, inverse problems and alignment): the checks of its exercises.

Under construction.
"""

__all__: list[str] = []
