"""Chapter 07 (optimal transport and the Schroedinger bridge): the checks of its exercises.

Under construction.
"""

__all__: list[str] = []
