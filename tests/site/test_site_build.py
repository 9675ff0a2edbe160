"""The site builder's staging (docs/site/build.py), without Sphinx or a browser: what it changes in
the copies it hands to Sphinx.  The rendered site itself is checked in tests/site/test_site.py."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def b():
    spec = importlib.util.spec_from_file_location("dpm_site_build", ROOT / "docs" / "site" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_remote_stylesheets_and_scripts_are_dropped_inline_ones_kept(b):
    html = ('<link rel="stylesheet"\nhref="https://cdn.example/fa.css">\n<script src="https://cdn.example/x.js"></script>'
            '<script>var a = 1;</script><img src="data:image/gif;base64,R0lG"><link rel="stylesheet" href="local.css">')
    out = b.clean_output_html(html)
    assert "https://" not in out
    assert "<script>var a = 1;</script>" in out and "data:image/gif" in out and 'href="local.css"' in out


def test_links(b):
    on_site = {"README.md", "docs/DESIGN.md", "chapters/00_tour.ipynb"}
    md = ("[web](https://example.org) [here](#two-commands) [design](docs/DESIGN.md#layers) "
          "[tour](chapters/00_tour.ipynb) [`run.sh`](run.sh) [code](dpm_lab/gmm.py)")
    out = b.rewrite_links(md, "README.md", on_site)
    for kept in ("[web](https://example.org)", "[here](#two-commands)", "[design](docs/DESIGN.md#layers)",
                 "[tour](chapters/00_tour.ipynb)"):
        assert kept in out
    assert "(run.sh)" not in out and "`run.sh`" in out                 # a repository file: its path, no link
    assert "code (`dpm_lab/gmm.py`)" in out
    back = b.rewrite_links("[the README](../README.md#chapters)", "docs/DESIGN.md", on_site)
    assert back == "[the README](../index.md#chapters)"                # the README is staged as index.md


def test_notebook_staging(b):
    png = "iVBORw0KGgo="
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"widgets": {"state": {}}}, "cells": [
        {"cell_type": "code", "id": "a", "metadata": {}, "source": "w", "execution_count": 1, "outputs": [
            {"output_type": "display_data", "metadata": {}, "data": {
                b.WIDGET_VIEW: {"model_id": "m"}, "image/png": png, "text/plain": "VBox(children=...)"}}]},
        {"cell_type": "code", "id": "b", "metadata": {}, "source": "f", "execution_count": 2, "outputs": [
            {"output_type": "display_data", "metadata": {}, "data": {"image/png": png, "text/plain": "<Figure>"}}]},
    ]}
    out = json.loads(b.stage_notebook(json.dumps(nb)))
    assert "widgets" not in out["metadata"]
    kinds = [c["cell_type"] for c in out["cells"]]
    assert kinds == ["code", "markdown", "code"], "one note after the widget cell, none after the figure"
    assert out["cells"][1]["source"] == b.WIDGET_NOTE and out["cells"][1]["id"]
    assert out["cells"][0]["outputs"] == nb["cells"][0]["outputs"]      # the picture itself is untouched


def test_staging_picks_every_chapter_by_glob(b, tmp_path):
    staged = b.stage(tmp_path)
    chapters = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("chapters/[0-9][0-9]_*.ipynb"))
    assert chapters and [s for s in staged if s.startswith("chapters/")] == chapters
    index = (tmp_path / "index.md").read_text(encoding="utf-8")
    for ch in chapters:
        assert (tmp_path / ch).is_file()
        assert f"\n{ch[:-len('.ipynb')]}\n" in index, f"{ch} is not in the landing page's table of contents"
    assert not (tmp_path / "README.md").exists(), "the README is the landing page, index.md"
    (tmp_path / "chapters" / "99_gone.ipynb").write_text("{}")      # a chapter removed since the last build
    b.stage(tmp_path)
    assert not (tmp_path / "chapters" / "99_gone.ipynb").exists()


def test_problem_sets_are_pages_without_solutions_linked_from_their_chapter(b, tmp_path):
    staged = b.stage(tmp_path)
    problems = sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("problems/ch[0-9][0-9].md"))
    assert problems and [s for s in staged if s.startswith("problems/")] == problems
    index = (tmp_path / "index.md").read_text(encoding="utf-8")
    assert ":caption: Problem sets" in index
    for ps in problems:
        page = (tmp_path / ps).read_text(encoding="utf-8")
        source = (ROOT / ps).read_text(encoding="utf-8")
        assert f"\n{ps[:-len('.md')]}\n" in index
        assert "<!--" not in page and "**Solution" not in page                     # no worked solution on the site
        assert page.count("## Problem") == source.count("## Problem") >= 3
        nn = ps[-5:-3]
        chapter = next(tmp_path.glob(f"chapters/{nn}_*.ipynb"), None)
        if chapter is not None:                                                    # the chapter links its set
            last = json.loads(chapter.read_text(encoding="utf-8"))["cells"][-1]
            assert last["cell_type"] == "markdown" and f"(../problems/ch{nn}.md)" in last["source"]
    assert b.without_solutions("a\n<!-- solution -->\nsecret\n<!-- end solution -->\nb\n") == "a\nb\n"
    with pytest.raises(SystemExit, match="x.md:1"):
        b.without_solutions("<!-- solution -->\nopen", "x.md")
