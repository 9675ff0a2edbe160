"""Recipes for chapter 10's students.

Under construction.
"""

__all__: list[str] = []
