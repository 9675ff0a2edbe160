"""The explorers of chapter 10 (distillation).

Under construction.
"""

__all__: list[str] = []
