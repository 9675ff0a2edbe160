"""Recipes for chapter 07's optimal-transport and bridge models.

Under construction.
"""

__all__: list[str] = []
