"""Energy-based models (Ch. 3, §3.1-3.2): energies, contrastive divergence, log p from a score by line integrals."""

__all__: list[str] = []
