"""Chapter 05 recipes: flow matching, rectified flow and reflow models."""
from __future__ import annotations

__all__: list[str] = []
