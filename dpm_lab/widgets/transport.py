"""The explorers of chapter 07 (optimal transport and the Schroedinger bridge).

Under construction.
"""

__all__: list[str] = []
