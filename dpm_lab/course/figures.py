"""Figures for slides: execute a chapter and save every figure and widget picture it shows.

`figures CHAPTER --out DIR` executes the chapter (with its solutions) and saves every figure it
displays, matplotlib figures and widget pictures, as PNG and SVG named
<chapter>_cellNN_figK.{png,svg} (NN the cell's position counted from 1, markdown included).
"""
from __future__ import annotations

import os
import pathlib

import nbformat

from .builds import chapter_notebook, execute_notebook, instructor_notebook
from .builds import last_line as _last_line

__all__ = ["export_figures"]

_FIGURE_HOOK = '''\
def _dpm_lab_figure_hook(out, stem, cells, dpi):
    # Installed first in the kernel by `python -m dpm_lab.course figures`: every matplotlib figure and
    # widget picture the chapter displays is also saved as PNG and SVG, named by cell and figure.
    import pathlib
    import sys

    from IPython import get_ipython

    ip, out = get_ipython(), pathlib.Path(out)
    state = {"cell": None, "next": 0, "saved": []}

    def pre_run_cell(info):
        for j in range(state["next"], len(cells)):
            if cells[j][1] == info.raw_cell:
                state.update(cell=cells[j][0], next=j + 1, saved=[])
                return
        state.update(cell=None, saved=[])

    fmt = ip.display_formatter.format

    def format(obj, include=None, exclude=None):
        from matplotlib.figure import Figure

        base = sys.modules.get("dpm_lab.widgets.base")
        try:
            fig = obj if isinstance(obj, Figure) else None
            if base is not None and isinstance(obj, base.Explorer):
                fig = obj.figure()
            if fig is not None and state["cell"] is not None and all(f is not fig for f in state["saved"]):
                state["saved"].append(fig)
                name = f"{stem}_cell{state['cell']:02d}_fig{len(state['saved'])}"
                for ext in ("png", "svg"):
                    fig.savefig(out / f"{name}.{ext}", dpi=dpi, bbox_inches="tight")
        except Exception as exc:  # the export must never break the chapter's own run
            print(f"figure export failed in cell {state['cell']}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return fmt(obj, include=include, exclude=exclude)

    ip.events.register("pre_run_cell", pre_run_cell)
    ip.display_formatter.format = format
'''


def export_figures(name: str, out: str | pathlib.Path, *, chapters: str | pathlib.Path | None = None,
                   dpi: int = 200, timeout: int = 600) -> list[pathlib.Path]:
    """Execute a chapter (solutions in) and save each figure it displays as PNG and SVG in `out`.

    Files are `<chapter>_cellNN_figK.png/.svg`: NN the cell's position in the notebook counted
    from 1 (markdown included), K the figure's order within the cell. Matplotlib figures and the
    widgets' pictures (as they are when displayed) are saved; HTML animations are not.
    Returns the written paths, sorted; a chapter that fails to run raises RuntimeError saying why.
    """
    path = chapter_notebook(name, chapters)
    out = pathlib.Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    nb = instructor_notebook(nbformat.read(path, as_version=4))
    cells = [(i + 1, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    for old in out.glob(f"{path.stem}_cell*_fig*.*"):   # a previous export of this chapter
        if old.suffix in (".png", ".svg"):
            old.unlink()
    hook = nbformat.v4.new_code_cell(_FIGURE_HOOK + f"_dpm_lab_figure_hook({str(out)!r}, {path.stem!r}, "
                                     f"{cells!r}, {int(dpi)})\ndel _dpm_lab_figure_hook")
    nb.cells.insert(0, hook)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}   # the inline backend displays figures
    try:
        execute_notebook(nb, cwd=path.parent, timeout=timeout, env=env)
    except Exception as exc:  # noqa: BLE001 - the chapter's own error, said in one line
        from nbclient.exceptions import CellExecutionError

        error = f"{exc.ename}: {_last_line(exc.evalue)}" if isinstance(exc, CellExecutionError) else _last_line(exc)
        done = len(list(out.glob(f"{path.stem}_cell*_fig*.png")))
        raise RuntimeError(f"{path.name} did not run to the end ({error}); {done} figure(s) saved before it") from None
    return sorted(p for p in out.glob(f"{path.stem}_cell*_fig*.*") if p.suffix in (".png", ".svg"))


