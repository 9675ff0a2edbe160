"""Chapter 04 explorers: the three dynamics with one marginal, and the Fokker-Planck equation."""
from __future__ import annotations

__all__: list[str] = []
