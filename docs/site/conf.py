"""Sphinx configuration of dpm-lab's reading site (built by docs/site/build.py, never by hand).

The site is Sphinx + MyST-NB + sphinx-book-theme (Jupyter Book 1's stack, all from PyPI), built
from the notebooks' stored outputs: nothing is executed and nothing is fetched from the network.
Math is typeset in the browser by MathJax 3 served from the site itself (the files come from
the PyPI package sphinx-mathjax-offline).
"""

import importlib.util
import os
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent

project = "dpm-lab"
author = "dpm-lab contributors"
copyright = "dpm-lab contributors (MIT licence)"

extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
templates_path = [str(HERE / "_templates")]
html_static_path = [str(HERE / "_static")]
html_css_files = ["site.css"]

# --- notebooks: stored outputs only -------------------------------------------------------
nb_execution_mode = "off"
# a widget output carries the widget view, a PNG of its current state and a 'VBox(...)' line;
# without a kernel the view cannot render, so drop it and let the PNG win
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_ipywidgets_js = {}            # no require.js / widget manager from a CDN
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_dmath_double_inline = True   # "$$...$$" inside a paragraph (no blank line before it) is display math, as in Jupyter
myst_heading_anchors = 3         # README's '#section' links resolve
suppress_warnings = ["myst.header"]   # chapters may jump from '#' to '###' (exercise headings)

# --- math: MathJax 3 from the site, not a CDN ---------------------------------------------
mathjax_path = "mathjax/tex-chtml.js"
# what of MathJax the pages use: the TeX->CommonHTML bundle, its lazily loaded TeX extensions,
# its fonts, and the menu's / accessibility pieces it may load (the speech engine is left out)
MATHJAX_PARTS = ["tex-chtml.js", "input/tex/extensions", "output/chtml", "a11y", "ui", "adaptors"]

# --- theme ----------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "dpm-lab"
html_favicon = str(HERE / "_static" / "favicon.svg")   # else the browser asks for /favicon.ico (a 404)
html_last_updated_fmt = None
html_context = {"default_mode": "light"}   # the theme logs an error on a first visit without it
html_theme_options = {
    "home_page_in_toc": True,
    "show_navbar_depth": 1,          # chapters listed; the open chapter shows its headings
    "max_navbar_depth": 3,
    "show_toc_level": 2,             # 'Contents' on the right: the page's sections and exercises
    "use_download_button": False,
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
}
html_sidebars = {"**": ["navbar-logo.html", "search-button-field.html", "sbt-sidebar-nav.html"]}
html_copy_source = False
html_show_sourcelink = False


def mathjax_dir() -> Path:
    """The MathJax 3 tree shipped by the PyPI package sphinx-mathjax-offline."""
    spec = importlib.util.find_spec("sphinx-mathjax-offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("MathJax is missing: pip install -e '.[site]' (it brings sphinx-mathjax-offline)")
    return Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax"


def copy_mathjax(app, exc):
    if exc is not None or app.builder.format != "html":
        return
    src, dst = mathjax_dir(), Path(app.outdir) / "_static" / "mathjax"
    for part in MATHJAX_PARTS:
        target = dst / part
        if (src / part).is_dir():
            shutil.copytree(src / part, target, dirs_exist_ok=True)
        else:
            os.makedirs(target.parent, exist_ok=True)
            shutil.copy2(src / part, target)


def setup(app):
    mathjax_dir()                    # fail at the start, not after the whole build
    app.connect("build-finished", copy_mathjax)
