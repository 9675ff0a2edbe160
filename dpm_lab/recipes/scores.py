"""Chapter 03 recipes: energy-based and score models (EBM, score matching, NCSN)."""
from __future__ import annotations

__all__: list[str] = []
