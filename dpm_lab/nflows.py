"""Normalizing flows and continuous normalizing flows (Ch. 5, §5.1): planar and coupling flows, the change of variables."""

__all__: list[str] = []
