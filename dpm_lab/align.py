"""Alignment of diffusion models with preferences (book §8.5): Bradley-Terry reward models, DPO and
Diffusion-DPO, held against the exact KL-regularised target pi_ref e^{r/beta} / Z.

Under construction for chapter 08 (issue 17).
"""

__all__: list[str] = []
