"""Rectified flow and reflow (Ch. 5, §5.3): couplings, straightness, reflow rounds."""

__all__: list[str] = []
