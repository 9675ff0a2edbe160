"""Chapter 06 explorers: the four predictions, the loss weighting, the gamma family of reverse SDEs."""
from __future__ import annotations

__all__: list[str] = []
