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

    ex = dl.widgets.ScheduleExplorer()
    ex                                   # in a notebook: the controls and the live figure
    ex.update(t=0.5)["alpha_t"]["vp"]    # the numbers behind the picture
"""
from .base import Explorer, InvalidSelection
from .field import FIELD_KINDS, FieldExplorer
from .schedule import ScheduleExplorer, digit_image
from .trajectory import TrajectoryExplorer

__all__ = ["Explorer", "InvalidSelection", "ScheduleExplorer", "FieldExplorer", "TrajectoryExplorer", "digit_image", "FIELD_KINDS"]
