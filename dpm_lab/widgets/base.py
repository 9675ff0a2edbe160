"""The `Explorer` base every widget of the course is built on (ipywidgets + matplotlib).

An Explorer separates three things:

    controls            ipywidgets, one per named value (sliders, dropdowns)
    update(**values)    the DATA to draw, a dict, cached on the values that matter
    draw(data, values)  matplotlib drawing into ONE figure that is reused on every change

so `update` runs without a browser (tests call it directly and compare with gmm/schedules),
moving a slider back to a position already seen costs nothing, and a notebook shows the
static picture with `explorer.figure()` even where widgets do not render.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

__all__ = ["Explorer"]


def _key_value(v: Any) -> Any:
    """A hashable, rounding-stable form of a control value for the cache key."""
    if isinstance(v, float):
        return round(v, 9)
    if isinstance(v, (list, tuple)):
        return tuple(_key_value(u) for u in v)
    return v


class Explorer:
    """Base class: subclasses define `_make_controls`, `compute(**values)` and `draw(data, values)`.

    Attributes:
        controls: OrderedDict name -> ipywidget.
        compute_keys: the control names the data depends on (others only change the drawing);
            None means all of them.
        cache_size: how many computed states are kept (least recently used are dropped).
        figsize: the figure's size in inches, kept across redraws.
    """

    compute_keys: tuple[str, ...] | None = None
    cache_size = 64
    figsize = (9.0, 3.2)

    def __init__(self, **initial: Any) -> None:
        import ipywidgets as W

        self._W = W
        self.controls: OrderedDict[str, Any] = OrderedDict(self._make_controls())
        for name, value in initial.items():
            self.set_value(name, value)
        self._cache: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.fig: Figure | None = None
        self._out = None
        for w in self.controls.values():
            w.observe(self._on_change, names="value")

    # -- subclass hooks ----------------------------------------------------------------------
    def _make_controls(self) -> dict[str, Any]:
        raise NotImplementedError

    def compute(self, **values: Any) -> dict[str, Any]:
        """The data to draw for the compute_keys' values (called on a cache miss only)."""
        raise NotImplementedError

    def draw(self, data: dict[str, Any], values: dict[str, Any]) -> None:
        """Draw `data` (from compute) with the current control `values` into self.fig."""
        raise NotImplementedError

    def _make_figure(self) -> Figure:
        return plt.subplots(1, 3, figsize=self.figsize)[0]

    # -- values and the cache ----------------------------------------------------------------
    @property
    def values(self) -> dict[str, Any]:
        """The current value of every control."""
        return {k: w.value for k, w in self.controls.items()}

    def set_value(self, name: str, value: Any) -> None:
        """Set one control (as a learner would by moving it); unknown names raise ValueError."""
        if name not in self.controls:
            raise ValueError(f"unknown control {name!r}; controls: {', '.join(self.controls)}")
        self.controls[name].value = value

    def update(self, **values: Any) -> dict[str, Any]:
        """The data for the controls' current values overridden by `values` (cached).

        Passing values also moves the controls (silently: the live figure is redrawn on the next
        control change or `figure()` call, so update() never writes output and stays testable).
        """
        for k in values:
            if k not in self.controls:
                raise ValueError(f"unknown control {k!r}; controls: {', '.join(self.controls)}")
        if values:
            self._silent = True
            try:
                for k, v in values.items():
                    self.set_value(k, v)
            finally:
                self._silent = False
        vals = self.values
        keys = self.compute_keys if self.compute_keys is not None else tuple(vals)
        key = tuple((k, _key_value(vals[k])) for k in keys)
        if key in self._cache:
            self.hits += 1
            self._cache.move_to_end(key)
        else:
            self.misses += 1
            self._cache[key] = self.compute(**{k: vals[k] for k in keys})
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return self._cache[key]

    # -- drawing -------------------------------------------------------------------------------
    def figure(self) -> Figure:
        """Draw the current state into the explorer's figure and return it (a static picture)."""
        if self.fig is None:
            self.fig = self._make_figure()
            plt.close(self.fig)  # we display it ourselves; keep pyplot from showing it twice
        for ax in self.fig.axes:
            ax.cla()
        self.draw(self.update(), self.values)
        self.fig.tight_layout()
        return self.fig

    def _redraw(self, data: Any = None) -> None:
        from IPython.display import display

        fig = self.figure()
        with self._out:
            self._out.clear_output(wait=True)
            display(fig)

    _silent = False

    def _on_change(self, change: dict) -> None:
        if self._silent or self._out is None:
            return
        self._redraw()

    def widget(self) -> Any:
        """The controls above an output area holding the live figure (an ipywidgets.VBox)."""
        W = self._W
        if self._out is None:
            self._out = W.Output()
            self._redraw()
        return W.VBox([W.HBox(list(self.controls.values()), layout=W.Layout(flex_flow="row wrap")), self._out])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())
