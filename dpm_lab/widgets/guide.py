"""The explorers of chapter 08 (guidance, inverse problems and alignment).

Under construction.
"""

__all__: list[str] = []
