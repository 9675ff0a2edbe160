"""Every schedule once, for parametrised tests: `from schedule_cases import SCHEDULES, SCHED_IDS`.

(Not in conftest.py: tests/browser has a conftest.py of its own, and `from conftest import` would
find whichever conftest pytest imported last.)
"""
import torch

import dpm_lab as dl


def all_schedules():
    """One instance of every schedule, the discrete one in both beta conventions."""
    return [dl.VPLinear(), dl.Cosine(), dl.VEGeometric(), dl.EDM(), dl.RectifiedFlow(), dl.Trig(sigma_d=0.5),
            dl.DiscreteSchedule(torch.linspace(0.02, 0.3, 40), beta_is="std"),
            dl.DiscreteSchedule.linear(100, 1e-3, 0.1)]


SCHEDULES = all_schedules()
SCHED_IDS = [f"{s.name}-{getattr(s, 'beta_is', '')}" for s in SCHEDULES]
