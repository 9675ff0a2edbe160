"""Interactive explorers (ipywidgets + matplotlib) with cached, testable updates.

`base.Explorer` is the base every widget of the course is built on: `compute(**controls)` returns
the data (cached), `draw` updates one fixed-size figure (in place, with blitting, in the shared
explorers), `update(**controls)` moves the controls, redraws and returns the data (the one path
a browser change takes too), so the picture always matches the controls and tests run without a
browser.  `InvalidSelection("message")` raised by compute/draw shows the message in the widget.
Displaying an explorer gives the live widget and a static PNG of its picture in one output.
One file per explored object, reused across chapters:

    schedule.py     ScheduleExplorer    alpha_t, sigma_t, SNR, lambda_t and forward noising
    field.py        FieldExplorer       the four exact (and learned) fields over p_t
    trajectory.py   TrajectoryExplorer  sampler paths with a time scrubber
    langevin.py, sde.py, flows.py, lens.py   the explorers of chapters 03, 04, 05 and 06
    transport.py, guide.py, solvers.py, distill.py, flowmaps.py, discrete.py   chapters 07-12

    ex = dl.widgets.ScheduleExplorer()
    ex                                   # in a notebook: the controls and the live figure
    ex.update(t=0.5)["alpha_t"]["vp"]    # the numbers behind the picture
"""
from . import discrete, distill, flowmaps, flows, guide, langevin, lens, sde, solvers, transport
from .base import Explorer, InvalidSelection
from .field import FIELD_KINDS, FieldExplorer
from .schedule import ScheduleExplorer, digit_image
from .trajectory import TrajectoryExplorer

# the chapter explorers (langevin: Ch 03, sde: Ch 04, flows: Ch 05, lens: Ch 06, transport: Ch 07, guide: Ch 08,
# solvers: Ch 09, distill: Ch 10, flowmaps: Ch 11, discrete: Ch 12) at the top level too
CHAPTER_MODULES = (langevin, sde, flows, lens, transport, guide, solvers, distill, flowmaps, discrete)
for _module in CHAPTER_MODULES:
    globals().update({n: getattr(_module, n) for n in _module.__all__})

__all__ = ["Explorer", "InvalidSelection", "ScheduleExplorer", "FieldExplorer", "TrajectoryExplorer", "digit_image", "FIELD_KINDS",
           *(n for m in CHAPTER_MODULES for n in m.__all__)]
