"""Recipes for chapter 08's classifiers and aligned models.

Under construction.
"""

__all__: list[str] = []
