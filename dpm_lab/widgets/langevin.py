"""Chapter 03 explorers: Langevin dynamics and annealed Langevin."""
from __future__ import annotations

__all__: list[str] = []
