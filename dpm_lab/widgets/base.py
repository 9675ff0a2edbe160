"""The `Explorer` base every widget of the course is built on (ipywidgets + matplotlib).

An Explorer separates three things:

    controls               ipywidgets, one per named value (sliders, dropdowns, checkboxes)
    compute(**values)      the DATA to draw, a dict, cached on the values that matter (compute_keys)
    draw(data, values)     matplotlib drawing into ONE fixed-size figure, reused on every change

and has ONE code path from a change to the picture, whoever made the change:

    ex.update(t=0.5)       a cell: moves the controls, recomputes (cached), redraws, returns the data
    moving a slider        the browser: the same path (the control's observer calls it)

so the picture always matches the controls.  The live view is the controls above an
`ipywidgets.Image` holding the figure as PNG bytes of a fixed pixel size (no inline-backend
shrinking, no `bbox_inches="tight"`), and displaying an Explorer gives ONE output whose bundle
holds both the widget view and a static `image/png` of the current picture.  JupyterLab renders
the richest mimetype it may: in a trusted notebook the widget view (rank 0, an unsafe renderer),
in an untrusted one only safe renderers are allowed, so the PNG; GitHub and nbviewer show the PNG.
The output has a display id: a later `ex.update(...)` from a cell refreshes its PNG too, so the
stored picture is the picture of the last cell's state.  `ex.figure()` returns the matplotlib
figure and `ex.png()` its PNG bytes.

Writing an explorer:

    class Square(dl.widgets.Explorer):
        compute_keys = ("x",)                 # drawing-only controls (colour) do not recompute
        figsize = (4.0, 3.0)                  # inches; pixels = figsize * dpi, fixed

        def _make_controls(self):
            W = self._W
            return {"x": W.FloatSlider(value=1.0, min=-2, max=2, description="x", continuous_update=False),
                    "colour": W.Dropdown(options=["C0", "C1"], description="colour")}

        def _make_figure(self):               # optional: default is one row of `axes_grid` axes
            return self.new_figure(1, 1)

        def compute(self, x):
            if x == 0:
                raise dl.widgets.InvalidSelection("x = 0 has no square root to show")
            return {"x": x, "y": x * x}

        def draw(self, data, values):         # axes are cleared before each draw (clear_axes = True)
            self.fig.axes[0].plot([data["x"]], [data["y"]], "o", color=values["colour"])

Set `clear_axes = False` to keep the artists between draws and update them in place (set_data,
set_offsets, set_UVC, im.set_data): faster, and the layout never moves.  `sync_controls(values)`
may adjust other controls' ranges before each compute (a scrubber's max following the NFE).
A selection with nothing to show raises `InvalidSelection("what to do instead")` from compute,
sync_controls or draw: the message is drawn in the picture and `update` returns None.  Any other
error of a browser change is shown in the widget as "TypeError: ..." (and re-raised by `update`,
so a cell's mistake still stops the cell).
"""
from __future__ import annotations

import base64
import io
import numbers
import traceback
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["Explorer", "InvalidSelection"]


class InvalidSelection(ValueError):
    """Raised by an explorer's compute/draw for a selection with nothing to show; the message is
    shown in the widget instead of a picture (and nothing is raised to the learner)."""


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
        cache_size: how many computed states (and rendered pictures) are kept, least recent dropped.
        figsize, dpi: the figure's size in inches and its resolution; the picture is always
            figsize * dpi pixels.
        axes_grid: (rows, cols) of the default figure.
        clear_axes: clear every axes before `draw` (True, simplest) or keep the artists so that
            `draw` updates them in place (False).
        relayout: recompute the layout (tight_layout) at every draw; False (default) lays the
            figure out once, after the first successful draw, so axes never move.
        margins: a fixed layout, `fig.subplots_adjust(**margins)`, set once instead of tight_layout.
        message: None, or the message shown instead of a picture (an impossible selection or an error).
    """

    compute_keys: tuple[str, ...] | None = None
    cache_size = 64
    figsize: tuple[float, float] = (9.0, 3.2)
    dpi = 90
    axes_grid: tuple[int, int] = (1, 3)
    clear_axes = True
    relayout = False
    margins: dict[str, float] | None = None   # fixed subplots_adjust(**margins) instead of tight_layout
    backgrounds_kept = 8              # static backgrounds cached (one per static_key and axes limits)
    png_compress_level = 1            # zlib level of the live PNG (1: fast; the bytes stay local)

    def __init__(self, **initial: Any) -> None:
        import ipywidgets as W

        self._W = W
        self.controls: OrderedDict[str, Any] = OrderedDict(self._make_controls())
        self._check_names(initial)
        self._cache: OrderedDict = OrderedDict()
        self._pictures: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.fig: Figure | None = None
        self.message: str | None = None
        self.last_traceback: str | None = None
        self._data: Any = None
        self._drawn_key: Any = None          # the values key the figure shows, None: not drawn
        self._laid_out = False
        self._silent = 0
        self._view = None
        self._displays: list = []
        self._animated: list = []
        self._backgrounds: OrderedDict = OrderedDict()
        self._labels_fixed = False
        self._image = None
        self._status = None
        with self._hold():
            for name, value in initial.items():
                self.controls[name].value = value
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

    def sync_controls(self, values: dict[str, Any]) -> None:
        """Adjust controls that follow others (ranges, enabled state) before compute; silent."""

    def static_key(self, data: Any, values: dict[str, Any]) -> Any:
        """With animated artists: what the static background (everything not animated) depends on
        besides the axes' limits and scales; the background is re-rendered when it changes."""
        return None

    def _make_figure(self) -> Figure:
        return self.new_figure(*self.axes_grid)

    def animated(self, *artists: Any) -> Any:
        """Mark artists that change on every update (points, an image, a time line, a title):
        the picture is then the cached static background plus these artists (blitting), which
        keeps an update fast.  Returns the (first) artist."""
        for a in artists:
            if a not in self._animated:
                self._animated.append(a)
        return artists[0] if artists else None

    def new_figure(self, rows: int = 1, cols: int = 1, **subplots_kw: Any) -> Figure:
        """A figure of figsize at dpi with a rows x cols grid of axes, outside pyplot (never
        shown twice by the inline backend, never closed by plt.close('all'))."""
        fig = Figure(figsize=self.figsize, dpi=self.dpi)
        FigureCanvasAgg(fig)
        fig.subplots(rows, cols, squeeze=False, **subplots_kw)
        return fig

    # -- values and the cache ----------------------------------------------------------------
    @property
    def values(self) -> dict[str, Any]:
        """The current value of every control."""
        return {k: w.value for k, w in self.controls.items()}

    def _check_names(self, values: dict[str, Any]) -> None:
        for k in values:
            if k not in self.controls:
                raise ValueError(f"unknown control {k!r}; controls: {', '.join(self.controls)}")

    @contextmanager
    def _hold(self):
        """Control changes inside do not trigger a redraw (they are batched into one)."""
        self._silent += 1
        try:
            yield
        finally:
            self._silent -= 1

    def set_value(self, name: str, value: Any) -> Any:
        """Set one control (as a learner would by moving it) and redraw; unknown names raise ValueError."""
        return self.update(**{name: value})

    def compute_values(self, values: dict[str, Any]) -> dict[str, Any]:
        """The arguments of compute for the controls' `values` (default: the compute_keys' values).
        Override to drop a value that does not matter for the current selection (cache hits)."""
        keys = self.compute_keys if self.compute_keys is not None else tuple(values)
        return {k: values[k] for k in keys}

    def data(self) -> Any:
        """The data for the current values: cached, computed on a miss."""
        args = self.compute_values(self.values)
        key = tuple((k, _key_value(v)) for k, v in args.items())
        if key in self._cache:
            self.hits += 1
            self._cache.move_to_end(key)
        else:
            self.misses += 1
            self._cache[key] = self.compute(**args)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return self._cache[key]

    def clear_cache(self) -> None:
        """Forget computed data and rendered pictures (after changing what compute reads)."""
        self._cache.clear()
        self._pictures.clear()
        self._backgrounds.clear()
        self._drawn_key = None

    # -- the one path from a change to the picture ---------------------------------------------
    def update(self, **values: Any) -> Any:
        """Move the controls to `values`, recompute (cached) and redraw; returns the data drawn.

        The figure (and the live view, when shown) then matches the controls.  An impossible
        selection (InvalidSelection) shows its message in the widget and returns None; any other
        error is shown in the widget and raised.  A value outside a control's range raises
        ValueError naming the range (a slider would silently clamp it).  In a notebook, the data
        returned by a cell ending in `explorer.update(...)` is not displayed (the widget shows it).
        """
        self._check_names(values)
        with self._hold():
            for k, v in values.items():
                self._set_control(k, v)
        try:
            data = self._refresh(raise_errors=True)
        finally:
            self._update_displays()
        return _Drawn(data) if type(data) is dict else data

    def _set_control(self, name: str, value: Any) -> None:
        w = self.controls[name]
        _check_range(name, w, value)
        try:
            w.value = value
        except Exception as e:  # noqa: BLE001 - say which control and what it takes
            raise ValueError(f"control {name!r} cannot take {value!r}: {e}") from None

    def _on_change(self, change: dict) -> None:
        if self._silent:
            return
        self._refresh(raise_errors=False)     # a browser change: errors are shown, never raised

    def _values_key(self) -> tuple:
        return tuple((k, _key_value(v)) for k, v in self.values.items())

    def _refresh(self, raise_errors: bool) -> Any:
        try:
            with self._hold():
                self.sync_controls(self.values)
            data = self.data()
            self._draw(data)
        except InvalidSelection as e:
            self.last_traceback = None
            self._show_message(str(e))
            return None
        except Exception as e:  # noqa: BLE001 - shown in the widget instead of the log console
            self.last_traceback = traceback.format_exc()
            self._show_message(f"{type(e).__name__}: {e}", error=True)
            if raise_errors:
                raise
            return None
        self._push()
        return data

    def _ensure_figure(self) -> Figure:
        if self.fig is None:
            fig = self._make_figure()
            import matplotlib.pyplot as plt

            plt.close(fig)                         # a pyplot figure (subclass): we show it ourselves
            if not isinstance(fig.canvas, FigureCanvasAgg):
                FigureCanvasAgg(fig)
            fig.set_dpi(self.dpi)
            fig.set_size_inches(*self.figsize)
            self.fig = fig
        return self.fig

    def _draw(self, data: Any) -> None:
        fig = self._ensure_figure()
        if self.message is not None:
            self._clear_message()
        if self.clear_axes:
            for ax in fig.axes:
                ax.cla()
        self.draw(data, self.values)
        if self.relayout or not self._laid_out:
            if self.margins is not None:
                fig.subplots_adjust(**self.margins)
            else:
                fig.tight_layout()
            self._laid_out = True
        self._data = data
        self._drawn_key = self._values_key()

    def _show_message(self, text: str, error: bool = False) -> None:
        fig = self._ensure_figure()
        self.message = text
        for ax in fig.axes:
            ax.set_visible(False)
        if getattr(self, "_message_text", None) is not None:
            self._message_text.remove()
        self._message_text = fig.text(0.5, 0.5, _wrap(text, 70), ha="center", va="center", fontsize=11,
                                      color="C3" if error else "0.2", wrap=True,
                                      bbox={"boxstyle": "round", "fc": "#fff4e5" if not error else "#fdecea",
                                            "ec": "0.7"})
        self._drawn_key = ("message", text)
        self._data = None
        self._set_status(text, error)
        self._push()

    def _set_status(self, text: str | None, error: bool = False) -> None:
        if self._status is None:
            return
        if text is None:
            self._status.value, self._status.layout.display = "", "none"
        else:
            self._status.value = (f"<div style='color:{'#b00020' if error else '#8a5300'};font-size:13px'>"
                                  f"{_html_escape(text)}</div>")
            self._status.layout.display = None

    def _clear_message(self) -> None:
        self.message = None
        if getattr(self, "_message_text", None) is not None:
            self._message_text.remove()
            self._message_text = None
        for ax in self.fig.axes:
            ax.set_visible(True)
        self.last_traceback = None
        self._set_status(None)

    # -- the picture --------------------------------------------------------------------------
    def figure(self) -> Figure:
        """The static picture: the explorer's figure drawn for the current controls."""
        if self._drawn_key is None or (self.message is None and self._drawn_key != self._values_key()):
            self._refresh(raise_errors=True)
        return self.fig

    def png(self, compress_level: int | None = None) -> bytes:
        """The current picture as PNG bytes (figsize * dpi pixels), cached per control values."""
        self.figure()
        level = self.png_compress_level if compress_level is None else compress_level
        key = (self._drawn_key, level)
        if key in self._pictures:
            self._pictures.move_to_end(key)
            return self._pictures[key]
        fig = self.fig
        self._render()
        w, h = fig.canvas.get_width_height(physical=True)
        from PIL import Image

        img = Image.frombuffer("RGBA", (w, h), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format="png", compress_level=level)
        png = buf.getvalue()
        self._pictures[key] = png
        while len(self._pictures) > self.cache_size:
            self._pictures.popitem(last=False)
        return png

    def _render(self) -> None:
        """Render the figure into its Agg canvas: the cached background plus the animated artists,
        or everything when the background is out of date (or nothing is animated)."""
        fig, canvas = self.fig, self.fig.canvas
        live = [a for a in self._animated if _in_figure(a, fig)]   # removed or replaced ones drop out
        self._animated = live
        if not live or self.message is not None:
            canvas.draw()
            return
        key = (self.static_key(self._data, self.values),
               tuple((ax.get_position().bounds, ax.get_xlim(), ax.get_ylim(), ax.get_xscale(), ax.get_yscale(),
                      ax.get_visible()) for ax in fig.axes))
        for a in live:
            a.set_animated(True)
        try:
            if key in self._backgrounds:          # a background seen before (an earlier selection)
                self._backgrounds.move_to_end(key)
                canvas.restore_region(self._backgrounds[key])
            else:
                canvas.draw()                      # animated artists are left out of the background
                if not self._labels_fixed:         # axis labels stay where the first draw put them
                    self._fix_label_positions()
                    canvas.draw()
                self._backgrounds[key] = canvas.copy_from_bbox(fig.bbox)
                while len(self._backgrounds) > self.backgrounds_kept:
                    self._backgrounds.popitem(last=False)
            renderer = canvas.get_renderer()
            drawn_in: list = []
            for a in sorted(live, key=lambda a: (fig.axes.index(a.axes) if a.axes in fig.axes else -1,
                                                  a.get_zorder())):
                if a.get_visible() and (a.axes is None or a.axes.get_visible()):
                    a.draw(renderer)
                    if a.axes is not None and a.axes not in drawn_in:
                        drawn_in.append(a.axes)
            for ax in drawn_in:                    # the frame on top of what was drawn over it
                for sp in ax.spines.values():
                    if sp.get_visible():
                        sp.draw(renderer)
        finally:
            for a in live:                         # outside a render the figure is an ordinary one
                a.set_animated(False)

    def _fix_label_positions(self) -> None:
        """Pin each axis label at the place the first draw chose (in axes coordinates), which
        spares matplotlib re-measuring the tick labels on every background (a third of its cost)."""
        self._labels_fixed = True
        renderer = self.fig.canvas.get_renderer()
        for ax in self.fig.axes:
            inv = ax.transAxes.inverted()
            for axis, corner in ((ax.xaxis, "x"), (ax.yaxis, "y")):
                label = axis.label
                if not label.get_text() or not label.get_visible() or not getattr(axis, "_autolabelpos", True):
                    continue
                bb = label.get_window_extent(renderer)
                if corner == "x":                  # anchored at its top centre
                    x, y = inv.transform(((bb.x0 + bb.x1) / 2, bb.y1))
                else:                              # vertical, anchored at its right middle
                    x, y = inv.transform((bb.x1, (bb.y0 + bb.y1) / 2))
                axis.set_label_coords(x, y)

    @property
    def pixel_size(self) -> tuple[int, int]:
        """(width, height) of the picture in pixels."""
        return round(self.figsize[0] * self.dpi), round(self.figsize[1] * self.dpi)

    def _push(self) -> None:
        """Send the current picture to the live view (when one exists)."""
        if self._image is not None:
            self._image.value = self.png()

    # -- the live view and the display bundle ---------------------------------------------------
    def widget(self) -> Any:
        """The live view: the controls above the picture (an ipywidgets.VBox, built once)."""
        if self._view is None:
            W = self._W
            w, _ = self.pixel_size
            self._status = W.HTML(value="", layout=W.Layout(display="none"))
            if self.message is not None:
                self._set_status(self.message, self.last_traceback is not None)
            self._image = W.Image(format="png", layout=W.Layout(width=f"{w}px", max_width="100%", height="auto"))
            if self._drawn_key is None:
                self._refresh(raise_errors=False)  # an error is shown in the picture, not raised
            self._image.value = self.png()
            controls = W.HBox(list(self.controls.values()), layout=W.Layout(flex_flow="row wrap"))
            self._view = W.VBox([controls, self._status, self._image])
        return self._view

    def _ipython_display_(self) -> None:
        """Display the bundle below with a display id, so that a later `update()` from a cell
        also refreshes the stored static picture (what a reader without a kernel sees)."""
        from IPython.display import display

        handle = display(self._repr_mimebundle_(), raw=True, display_id=True)
        if handle is not None:
            self._displays.append(handle)

    def _update_displays(self) -> None:
        """After a cell's update(): the displayed outputs' static PNG follows (not on browser
        changes, which must stay fast; the live view shows those)."""
        for handle in self._displays:
            try:
                handle.update(self._repr_mimebundle_(), raw=True)
            except Exception:  # noqa: BLE001 - no display machinery (plain Python): nothing to refresh
                pass

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, Any]:
        """The widget view AND a static PNG of the current picture in one output bundle: the live
        widget where the kernel's widget state is there, the picture everywhere else."""
        view = self.widget()
        bundle = dict(view._repr_mimebundle_(**kwargs) or {})
        bundle["image/png"] = base64.b64encode(self.png(compress_level=6)).decode("ascii")
        bundle["text/plain"] = f"<{type(self).__name__}: {_describe(self.values)}>"
        return bundle


class _Drawn(dict):
    """The data `Explorer.update` returns: a plain dict that a notebook does not display (the widget shows it)."""

    def _ipython_display_(self) -> None:
        pass


def _check_range(name: str, control: Any, value: Any) -> None:
    """ValueError when a number (or each end of a range) lies outside a control's min..max."""
    lo, hi = getattr(control, "min", None), getattr(control, "max", None)
    if lo is None or hi is None:
        return
    ends = value if isinstance(value, (tuple, list)) else (value,)
    for v in ends:
        if isinstance(v, numbers.Real) and not isinstance(v, bool) and not lo <= v <= hi:
            raise ValueError(f"control {name!r} takes values from {lo:g} to {hi:g}; got {v!r}")


def _in_figure(a: Any, fig: Figure) -> bool:
    ax = a.axes
    if ax is not None:
        return ax in fig.axes and a in ax.get_children()
    return a in fig.get_children()


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.fill(line, width) for line in text.splitlines() or [""])


def _html_escape(text: str) -> str:
    import html

    return html.escape(text)
