"""Chapter 12 (discrete diffusion): the checks of its exercises.

Under construction.
"""

__all__: list[str] = []
