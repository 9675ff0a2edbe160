"""Optimal transport (Ch. 7 and Ch. 5's reference): exact discrete couplings between point clouds."""

__all__: list[str] = []
