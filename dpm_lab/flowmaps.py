"""Flow maps (book Ch. 11): the oracle flow map Psi_{s->t}, consistency models, CTM and MeanFlow, and the
semigroup diagnostics of §11.6; flow-map students plug into `dl.sample` as solver objects.

Under construction for chapter 11 (issue 20).
"""

__all__: list[str] = []
