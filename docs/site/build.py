"""Build dpm-lab's reading site from the committed notebooks' stored outputs (nothing is executed).

    python docs/site/build.py [--out build/site] [--clean]      (or: bash run.sh site)

1. stage the sources into <out>-src: the README as the landing page (with the chapters'
   table of contents appended), every chapters/[0-9][0-9]_*.ipynb (picked up by glob), and the
   Markdown documents the README links to, the site's own pages in docs/site/live/
   (explorers that run in the page from closed forms, with no kernel), and each chapter's
   problem set (problems/chNN.md without its solutions, as problems/chNN.md; the chapter's page
   ends with a link to it);
2. run Sphinx (conf.py beside this file) on them into <out>.

Staging changes the copies only, never the repository's files:
- notebooks: the widget state is dropped (a page has no kernel; each widget output's stored PNG
  is shown instead, with a line under it saying so), and stylesheets/scripts that an output would load from the network are
  removed (matplotlib's animation player links a Font Awesome stylesheet on a CDN; the theme
  ships Font Awesome itself);
- Markdown: a relative link to a repository file that is not on the site becomes its path in
  code font, and the README's chapter table links each chapter's page.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = Path(__file__).resolve().parent
CHAPTER_GLOB = "chapters/[0-9][0-9]_*.ipynb"
LIVE_DIR = CONF_DIR / "live"      # the site's own pages: kernel-free explorers (staged as live/NAME.md)
PROBLEM_GLOB = "problems/ch[0-9][0-9].md"
SOLUTION_BEGIN, SOLUTION_END = "<!-- solution -->", "<!-- end solution -->"   # as in dpm_lab/course/builds.py

# <link ... href="http(s)://..."> and <script src="http(s)://..."></script>: things a page would fetch
REMOTE_LINK = re.compile(r"""<link\b[^>]*\bhref=["']https?://[^>]*>\s*""", re.I)
REMOTE_SCRIPT = re.compile(r"""<script\b[^>]*\bsrc=["']https?://[^>]*>\s*</script>\s*""", re.I)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("<p class=\"dpm-widget-note\">Above: an explorer's picture at its stored settings. Its controls "
               "move in a running notebook (<code>bash run.sh lab</code>).</p>")
MD_LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(([^)\s]+)\)")

TOC = """

```{{toctree}}
:hidden:
:caption: Chapters

{chapters}
```
"""
TOC_LIVE = """
```{{toctree}}
:hidden:
:caption: Live, without a kernel

{live}
```
"""
TOC_PROBLEMS = """
```{{toctree}}
:hidden:
:caption: Problem sets

{problems}
```
"""
PROBLEM_LINK = ("**Problem set.** Derivations and written questions for this chapter: "
                "[problem set {nn}](../problems/ch{nn}.md) (the worked solutions are in `problems/ch{nn}.md` "
                "of the repository).")
TOC_DOCS = """
```{{toctree}}
:hidden:
:caption: Reference

{docs}
```
"""


def chapters() -> list[str]:
    """Repository-relative paths of every chapter notebook, in order."""
    return sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob(CHAPTER_GLOB))


def problem_sets() -> list[str]:
    """Repository-relative paths of every chapter's problem set, in order."""
    return sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob(PROBLEM_GLOB))


def without_solutions(text: str, name: str = "<text>") -> str:
    """A problem set's Markdown with every block between `<!-- solution -->` and `<!-- end solution -->`
    lines left out (markers included); an unclosed block raises SystemExit naming the file and line."""
    out, opened = [], 0
    for n, line in enumerate(text.splitlines(), start=1):
        marker = line.strip()
        if marker == SOLUTION_BEGIN:
            opened = n
        elif marker == SOLUTION_END:
            opened = 0
        elif not opened:
            out.append(line)
    if opened:
        raise SystemExit(f"{name}:{opened}: {SOLUTION_BEGIN} is never closed by {SOLUTION_END}")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip() + "\n"


def link_problem_set(text: str, nn: str) -> str:
    """A staged chapter with a last Markdown cell linking its problem set's page."""
    nb = json.loads(text)
    cell = {"cell_type": "markdown", "metadata": {}, "source": PROBLEM_LINK.format(nn=nn)}
    if nb.get("nbformat", 4) > 4 or nb.get("nbformat_minor", 0) >= 5:
        cell["id"] = "dpm-site-problem-set"
    nb["cells"].append(cell)
    return json.dumps(nb, indent=1, ensure_ascii=False)


def clean_output_html(html: str) -> str:
    return REMOTE_SCRIPT.sub("", REMOTE_LINK.sub("", html))


def stage_notebook(text: str) -> str:
    """A chapter for the site: no widget state, no remote stylesheets or scripts in outputs."""
    nb = json.loads(text)
    nb.get("metadata", {}).pop("widgets", None)
    cells = []
    for cell in nb.get("cells", []):
        cells.append(cell)
        widget_pictures = 0
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/html" in data:
                html = data["text/html"]
                html = "".join(html) if isinstance(html, list) else html
                data["text/html"] = clean_output_html(html)
            if WIDGET_VIEW in data and "image/png" in data:
                widget_pictures += 1
        if widget_pictures:                  # say what the reader sees, and where it moves
            note = {"cell_type": "markdown", "metadata": {}, "source": WIDGET_NOTE}
            if nb.get("nbformat", 4) > 4 or nb.get("nbformat_minor", 0) >= 5:    # cell ids since nbformat 4.5
                note["id"] = f"dpm-site-widget-note-{len(cells)}"
            cells.append(note)
    nb["cells"] = cells
    return json.dumps(nb, indent=1, ensure_ascii=False)


def rewrite_links(md: str, here: str, on_site: set[str]) -> str:
    """Keep links to the web, to anchors and to staged documents; a link to any other repository
    file becomes its path in code font (the site carries only the chapters and the documents)."""
    def fix(m: re.Match) -> str:
        text, target = m.group(1), m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            return m.group(0)
        path = (Path(here).parent / target.split("#")[0]).as_posix()
        path = _normalise(path)
        if path == "README.md":                     # the landing page is staged as index.md
            rel = os.path.relpath("index.md", os.path.dirname(here) or ".")
            return f"[{text}]({rel}{'#' + target.split('#', 1)[1] if '#' in target else ''})"
        if path in on_site:
            return m.group(0)
        return text if text.strip("`") == target.strip("`") and text.startswith("`") else f"{text} (`{path}`)"
    return MD_LINK.sub(fix, md)


def _normalise(path: str) -> str:
    parts: list[str] = []
    for p in path.split("/"):
        if p in ("", "."):
            continue
        if p == ".." and parts:
            parts.pop()
        else:
            parts.append(p)
    return "/".join(parts)


def linked_docs(md: str, here: str) -> list[str]:
    """Repository Markdown documents that `md` (at repository path `here`) links to."""
    found = []
    for _, target in MD_LINK.findall(md):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        path = _normalise((Path(here).parent / target.split("#")[0]).as_posix())
        if path.endswith(".md") and (ROOT / path).is_file() and path != "README.md":
            found.append(path)
    return found


def landing_page(readme: str, chs: list[str], docs: list[str], on_site: set[str], live: list[str],
                 problems: list[str] = ()) -> str:
    md = rewrite_links(readme, "README.md", on_site)
    for ch in chs:                    # the chapter table names `NN_name`: make it a link
        stem = Path(ch).stem
        md = re.sub(rf"^\|\s*`{re.escape(stem)}`\s*\|", f"| [`{stem}`]({ch}) |", md, flags=re.M)
    md += TOC.format(chapters="\n".join(Path(c).with_suffix("").as_posix() for c in chs))
    if problems:
        md += TOC_PROBLEMS.format(problems="\n".join(Path(p).with_suffix("").as_posix() for p in problems))
    if live:
        md += TOC_LIVE.format(live="\n".join(Path(p).with_suffix("").as_posix() for p in live))
    if docs:
        md += TOC_DOCS.format(docs="\n".join(Path(d).with_suffix("").as_posix() for d in docs))
    return md


def write_if_changed(path: Path, text: str) -> None:
    """Keep the mtime of an unchanged source, so that a rebuild reads only what changed."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def stage(src: Path) -> list[str]:
    """Write the site's sources into `src`; returns the staged repository paths."""
    chs = chapters()
    if not chs:
        raise SystemExit(f"no chapter notebooks match {CHAPTER_GLOB} under {ROOT}")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    docs, todo = [], linked_docs(readme, "README.md")
    while todo:                       # documents the README links to, and the ones they link to
        d = todo.pop(0)
        if d not in docs:
            docs.append(d)
            todo += linked_docs((ROOT / d).read_text(encoding="utf-8"), d)
    live = {f"live/{p.name}": p.read_text(encoding="utf-8") for p in sorted(LIVE_DIR.glob("*.md"))}
    problems = problem_sets()
    on_site = set(chs) | set(docs) | set(problems) | {"README.md"}
    staged = {"index.md": landing_page(readme, chs, docs, on_site, list(live), problems), **live}
    for ps in problems:
        staged[ps] = rewrite_links(without_solutions((ROOT / ps).read_text(encoding="utf-8"), ps), ps, on_site)
    for ch in chs:
        staged[ch] = stage_notebook((ROOT / ch).read_text(encoding="utf-8"))
        nn = Path(ch).name[:2]
        if f"problems/ch{nn}.md" in problems:
            staged[ch] = link_problem_set(staged[ch], nn)
    for d in docs:
        staged[d] = rewrite_links((ROOT / d).read_text(encoding="utf-8"), d, on_site)
    for rel, text in staged.items():
        write_if_changed(src / rel, text)
    for old in [p for p in src.rglob("*") if p.is_file()]:    # a chapter renamed or removed
        if old.relative_to(src).as_posix() not in staged:
            old.unlink()
    return ["README.md", *chs, *problems, *docs, *live]


def build(out: Path, clean: bool = False, quiet: bool = True) -> Path:
    """Stage and build the site into `out`; returns the landing page's path."""
    from sphinx.cmd.build import build_main

    out = out.resolve()
    src, doctrees = out.with_name(out.name + "-src"), out.with_name(out.name + "-doctrees")
    if clean:
        for d in (out, src, doctrees):
            shutil.rmtree(d, ignore_errors=True)
    staged = stage(src)
    # -a: write every page (a new chapter changes every page's sidebar; Sphinx would rewrite only the changed ones)
    args = ["-a", "-b", "html", "-c", str(CONF_DIR), "-d", str(doctrees), str(src), str(out)]
    rc = build_main((["-q"] if quiet else []) + args)
    if rc != 0:
        raise SystemExit(f"sphinx-build failed (exit {rc})")
    print(f"site: {len(staged)} pages ({', '.join(staged)}) -> {out / 'index.html'}")
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="output folder (default build/site)")
    ap.add_argument("--clean", action="store_true", help="rebuild everything from scratch")
    ap.add_argument("--verbose", action="store_true", help="show Sphinx's progress")
    a = ap.parse_args(argv)
    t0, c0 = time.perf_counter(), time.process_time()
    build(a.out, clean=a.clean, quiet=not a.verbose)
    print(f"built in {time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
