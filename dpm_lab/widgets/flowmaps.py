"""The explorers of chapter 11 (flow maps).

Under construction.
"""

__all__: list[str] = []
