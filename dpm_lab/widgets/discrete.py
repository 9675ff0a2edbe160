"""The explorers of chapter 12 (discrete diffusion).

Under construction.
"""

__all__: list[str] = []
