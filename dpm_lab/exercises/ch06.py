"""Chapter 06: its exercise checks."""
from __future__ import annotations

__all__: list[str] = []
