"""The browser tests' checks on made-up observations (no browser needed): each can fail, and says
which chapter, widget and control."""
from browser_checks import (
    agreement_problems,
    change_problems,
    control_agrees,
    kernel_problems,
    picture_cells,
    static_problems,
)
from lab_driver import plan

WIDGET = {"output_type": "display_data", "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "m"},
                                                   "image/png": "iVBOR", "text/plain": ["<ScheduleExplorer: t=0.5>"]}}
def _gif(n: int) -> str:
    """A base64 GIF of n frames."""
    import base64
    import io

    from PIL import Image

    frames = [Image.new("RGB", (4, 4), (80 * k, 0, 0)) for k in range(n)]
    buf = io.BytesIO()
    frames[0].save(buf, format="gif", save_all=True, append_images=frames[1:], duration=100)
    return base64.b64encode(buf.getvalue()).decode()


ANIMATION = {"output_type": "execute_result", "data": {"text/html": [f'<img src="data:image/gif;base64,{_gif(3)}">']}}
NB = {"cells": [{"cell_type": "markdown", "source": "# x"},
                {"cell_type": "code", "source": "ex", "outputs": [WIDGET]},
                {"cell_type": "code", "source": "HTML(a)", "outputs": [ANIMATION]}]}
PNG = {"mime": "image/png", "imgs": [[810, 288, "data:image/png;base64,iVBOR"]], "text": ""}
GIF = {"mime": "text/html", "imgs": [[192, 192, "data:image/gif;base64,R0lG"]], "text": ""}


def test_static_check_passes_pictures_and_names_each_missing_one():
    assert picture_cells(NB) == {1: "<ScheduleExplorer: t=0.5>", 2: "animation"}
    assert static_problems("00_tour", NB, [[], [PNG], [GIF]], widgets_rendered=0) == []
    text = {"mime": "text/plain", "imgs": [], "text": "VBox(children=(HBox(children=(FloatSlider(value=0.5"}
    broken = {"mime": "text/html", "imgs": [[0, 0, "data:image/gif;base64,R0lG"]], "text": ""}
    problems = static_problems("00_tour", NB, [[], [text], [broken]], widgets_rendered=0)
    assert any("cell 1 (<ScheduleExplorer: t=0.5>) shows text instead of its picture" in p for p in problems)
    assert any("cell 1" in p and "no loaded image" in p for p in problems)
    assert any("cell 2 (animation) shows no loaded image" in p for p in problems)
    assert any("not opened untrusted" in p for p in static_problems("00_tour", NB, [[], [PNG], [GIF]], 2))
    still = {"cells": NB["cells"][:2] + [{"cell_type": "code", "source": "HTML(a)", "outputs": [
        {"output_type": "execute_result", "data": {"text/html": [f'<img src="data:image/gif;base64,{_gif(1)}">']}}]}]}
    assert static_problems("00_tour", still, [[], [PNG], [GIF]], 0) == [
        "00_tour: cell 2 (animation): its stored GIF has fewer than 2 frames (it does not play)"]
    unexecuted = {"cells": [{"cell_type": "code", "source": "ex", "outputs": []}]}
    assert "no outputs" in static_problems("03_x", unexecuted, [[]], 0)[0]


def test_change_and_kernel_checks_name_the_widget_and_control():
    assert change_problems("00_tour / ScheduleExplorer / t (change 1)", 80.0, 5000, "") == []
    (p,) = change_problems("00_tour / ScheduleExplorer / t (change 2)", -1, 5000, "")
    assert p.startswith("00_tour / ScheduleExplorer / t (change 2): no new picture within 5000 ms")
    assert "log console has 2" in change_problems("w", 50.0, 5000, "2")[0]
    recs = [{"control": "t", "traceback": None}, {"control": "curve", "traceback": "Traceback ...\nKeyError: 'x'"}]
    (p,) = kernel_problems("00_tour / ScheduleExplorer", recs, "KeyError: 'x'")
    assert p.startswith("00_tour / ScheduleExplorer / curve: the update raised") and "KeyError" in p


def test_agreement_check_compares_page_kernel_and_picture():
    kernel = {"t": {"value": 0.5, "label": None}, "curve": {"value": "snr", "label": "SNR"},
              "on": {"value": True, "label": None}, "seed": {"value": 3, "label": None},
              "which": {"value": ("a", "b c"), "label": ("a", "b c")}}
    last = {"controls": kernel, "agrees": True, "png_sha256": "abc"}
    dom = {"controls": [{"index": 0, "kind": "slider", "readout": "0.50", "value": 0.5, "hidden": False},
                        {"index": 1, "kind": "select", "value": "SNR", "hidden": False},
                        {"index": 2, "kind": "checkbox", "value": True, "hidden": False},
                        {"index": 3, "kind": "text", "value": "3", "hidden": False},
                        {"index": 4, "kind": "multi", "value": ["a", "b\xa0c"], "hidden": False}]}
    assert agreement_problems("00_tour / W", dom, last, "abc") == []
    dom["controls"][0]["readout"] = "0.60"
    problems = agreement_problems("00_tour / W", dom, dict(last, agrees=False), "abd")
    assert any("control 't' shows '0.60' in the page, the kernel has 0.5" in p for p in problems)
    assert any("drawn for other values" in p for p in problems)
    assert any("not the last PNG" in p for p in problems)
    assert agreement_problems("00_tour / W", dom, None, "abc") == ["00_tour / W: the kernel recorded no change from the page"]
    assert control_agrees({"kind": "slider", "readout": "1.0e-02"}, {"value": 0.0101})
    assert control_agrees({"kind": "slider", "readout": "\u22123.00"}, {"value": -3.0})
    assert not control_agrees({"kind": "slider", "readout": "1.0e-02"}, {"value": 0.02})


def test_sweep_plans_are_bounded_and_return_to_the_start():
    sel = {"kind": "select", "value": "b", "options": ["a", "b", "c", "d", "e", "f", "g"]}
    assert plan(sel, 4) == [2, 3, 4, 5, 1]
    assert plan({"kind": "select", "value": "x", "options": ["x", "y"]}, 4) == [1, 0]
    assert plan({"kind": "checkbox", "value": True}, 4) == [None, None]
    assert plan({"kind": "text", "value": "7"}, 4) == [8, 9, 10, 7]
    assert plan({"kind": "slider", "value": 0.5}, 3) == [None, None, None]
    assert plan({"kind": "multi", "value": ["b"], "options": ["a", "b", "c"]}, 2) == [[0, 1], [1, 2], [1]]
    assert plan({"kind": "unknown", "value": None}, 4) == []
