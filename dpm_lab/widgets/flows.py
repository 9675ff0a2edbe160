"""Chapter 05 explorers: conditional vs marginal paths, and reflow."""
from __future__ import annotations

__all__: list[str] = []
