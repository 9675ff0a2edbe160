"""Stand-ins the tests share: models built on exact fields that behave like trained networks."""
from dpm_lab import param


class EpsNet(param.Model):
    """A stand-in network that predicts eps only (kind 'eps'), as a trained one would: its other
    kinds come through param's conversions (its velocity needs sigma_t')."""

    kind = "eps"

    def __init__(self, mixture, schedule):
        self.mixture, self.schedule = mixture, schedule

    def raw(self, x_t, t, c=None):
        return self.mixture.eps(x_t, t, self.schedule)
