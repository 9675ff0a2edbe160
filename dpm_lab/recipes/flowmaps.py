"""Recipes for chapter 11's flow-map models.

Under construction.
"""

__all__: list[str] = []
