#!/usr/bin/env bash
# dpm-lab's one entry point.
#   bash run.sh lab    install what is missing, make your workspace (workspace/, your own copies of the
#                      chapters, exercises to fill in) on first run, then open JupyterLab on it
#   bash run.sh workspace [--fresh 02]   make or update the workspace only (--fresh: a fresh copy of a chapter)
#   bash run.sh test   install what is missing, then run every test (package + notebooks + the site's check)
#   bash run.sh site   install what is missing, then build the reading site into build/site (docs/site/build.py)
# Everything goes into ./.venv (created with access to packages you already have). One line per step;
# pip's own output goes to .venv/install.log and is shown only when a step fails.
set -euo pipefail
cd "$(dirname "$0")"

say() { echo "dpm-lab: $*" >&2; }
quiet_pip() {   # quiet_pip ARGS...: pip install ARGS, its output in the log; the log's tail if it fails
  if ! "$PY" -m pip install --disable-pip-version-check "$@" >>.venv/install.log 2>&1; then
    say "pip install $* failed; the end of .venv/install.log:"
    tail -n 25 .venv/install.log >&2
    return 1
  fi
}

# what the reading site needs (the `site` extra); `test` installs it too, with Playwright (the `browser`
# extra), for tests/site and tests/browser (they skip, saying so, where the OS has no Chromium)
SITE_PROBE="import sphinx, myst_nb, sphinx_book_theme, importlib.util as u; assert u.find_spec('sphinx-mathjax-offline')"

ensure_env() {   # ensure_env [EXTRAS [PROBE]]: install .[EXTRAS] unless the package and PROBE's modules are there
  local extras="${1:-test}" probe="${2:-pass}"
  if [ ! -x .venv/bin/python ]; then
    say "creating the environment in .venv (once)"
    "${PYTHON:-python3}" -m venv --system-site-packages .venv
  fi
  PY="$PWD/.venv/bin/python"
  # notebook kernels start "python" through PATH: make that the venv's, not a system one
  export PATH="$PWD/.venv/bin:$PATH" VIRTUAL_ENV="$PWD/.venv"
  if ! "$PY" -c "import torch" 2>/dev/null; then
    # a plain 'torch' requirement would pull several GB of CUDA packages on Linux;
    # the CPU build is enough for the course (a GPU is used when present)
    say "installing PyTorch (the CPU build; a few minutes, once)"
    quiet_pip "torch==2.13.0" || quiet_pip torch --index-url https://download.pytorch.org/whl/cpu
  fi
  # probe from outside the repository, so that a local ./dpm_lab folder does not answer for the install
  local here="$PWD" found
  found=$(cd / && "$PY" -c 'import dpm_lab, os; print(os.path.dirname(os.path.dirname(os.path.abspath(dpm_lab.__file__))))' 2>/dev/null || true)
  # (ipywidgets 8.1.9 renders no widgets in VS Code: pyproject excludes it, so an install that has it is redone)
  if ! (cd / && "$PY" -c "import nbval, hypothesis, ipywidgets, jupyterlab, sklearn, scipy, tqdm, matplotlib, ruff, ot; assert ipywidgets.__version__ != '8.1.9'; $probe") 2>/dev/null \
     || [ "$found" != "$here" ]; then
    say "installing the course and the packages it uses (.[$extras]; a few minutes the first time)"
    quiet_pip -e ".[$extras]"
  fi
}

case "${1:-}" in
  lab)
    ensure_env
    # your copies in workspace/ (made once; a notebook you changed is never overwritten), then JupyterLab
    # on that folder with 00_tour.ipynb open; the solved chapters stay in chapters/ as the reference
    say "making your workspace, then starting JupyterLab"
    exec .venv/bin/python -m dpm_lab.course lab --out workspace "${@:2}"
    ;;
  workspace)
    ensure_env
    exec .venv/bin/python -m dpm_lab.course workspace --out workspace "${@:2}"
    ;;
  test)
    ensure_env test,site,browser "$SITE_PROBE; import playwright, nbgrader, build"
    export OMP_NUM_THREADS=1 DPM_LAB_THREADS=1 MPLBACKEND=Agg PYTHONHASHSEED=0
    exec .venv/bin/python -m pytest -p no:cacheprovider --nbval-lax tests chapters "${@:2}"
    ;;
  site)
    ensure_env test,site "$SITE_PROBE"
    exec .venv/bin/python docs/site/build.py "${@:2}"   # --clean, --out DIR; prints where the site is
    ;;
  *)
    echo "usage: bash run.sh lab | bash run.sh workspace [--fresh 02] | bash run.sh test | bash run.sh site" >&2
    exit 2
    ;;
esac
