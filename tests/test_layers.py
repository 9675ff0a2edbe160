"""The house rules of DESIGN.md, held by a test: imports point down the layer table, no cycles,
one test file per module, and notebooks spell the package one way."""
from __future__ import annotations

import ast
import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PKG = ROOT / "dpm_lab"

# DESIGN.md's table, bottom up: a module may import its own layer (without cycles) and the layers below.
LAYERS = [
    ("math core", {"utils", "schedules", "grids", "param"}),
    ("ground truth", {"gmm"}),
    ("data and storage", {"store", "datasets", "images"}),
    ("learning", {"nets", "losses", "train", "zoo", "ebm", "nflows"}),
    ("sampling", {"steps", "dynamics", "fast_solvers", "guidance", "samplers", "likelihood", "fokker_planck"}),
    ("beyond", {"metrics", "digit_eval", "ot", "reflow", "align", "distill", "flowmaps", "discrete"}),
    ("recipes", {"recipes"}),
    ("seeing", {"viz", "notebook", "widgets", "exercises"}),
    ("tooling", {"course"}),
]
LEVEL = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}


def modules() -> dict[str, pathlib.Path]:
    """Every module of the package by dotted name below dpm_lab ('samplers', 'widgets.base', ...)."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


def room(dotted: str) -> str:
    """The layer-table entry of a module: its top-level name ('widgets.base' -> 'widgets')."""
    return dotted.split(".")[0]


def imports_of(dotted: str, path: pathlib.Path) -> set[str]:
    """The package modules a file imports (top-level and inside functions alike)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = dotted.split(".") if path.name == "__init__.py" else dotted.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dpm_lab."):
                    found.add(alias.name[len("dpm_lab."):])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.startswith("dpm_lab"):
                    base = node.module[len("dpm_lab"):].lstrip(".").split(".") if node.module != "dpm_lab" else []
                else:
                    continue
            else:
                up = here[: len(here) - (node.level - 1)] if node.level > 1 else list(here)
                base = up + (node.module.split(".") if node.module else [])
            if base:
                found.add(".".join(p for p in base if p))
            else:                                   # "from . import a, b" names modules
                found.update(alias.name for alias in node.names)
    found.discard("")
    return {m for m in found if room(m) != room(dotted) or m != dotted}


MODULES = modules()
GRAPH = {m: imports_of(m, p) for m, p in MODULES.items()}


def test_every_module_has_a_layer():
    missing = sorted({room(m) for m in MODULES if m and room(m) not in LEVEL})
    assert not missing, f"add these modules to DESIGN.md's layer table and to LAYERS here: {missing}"


def test_imports_point_down_the_layer_table():
    wrong = []
    for m, deps in GRAPH.items():
        if not m:                                   # the package face may import every layer but tooling
            wrong += [f"dpm_lab/__init__ imports {d} (tooling)" for d in deps if LEVEL.get(room(d)) == LEVEL["course"]]
            continue
        for d in deps:
            if room(d) in LEVEL and room(m) in LEVEL and LEVEL[room(d)] > LEVEL[room(m)]:
                wrong.append(f"{m} ({LAYERS[LEVEL[room(m)]][0]}) imports {d} ({LAYERS[LEVEL[room(d)]][0]})")
    assert not wrong, "imports that point up the layer table:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles_between_rooms():
    # a room is a top-level module or folder; within a folder, files may use each other
    edges = {room(m): set() for m in MODULES if m}
    for m, deps in GRAPH.items():
        if m:
            edges[room(m)] |= {room(d) for d in deps if room(d) != room(m) and room(d) in edges}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_layer_test_catches_an_upward_import(tmp_path):
    bad = tmp_path / "schedules.py"
    bad.write_text("from .samplers import sample\nfrom . import gmm\n")
    deps = imports_of("schedules", bad)
    assert deps == {"samplers", "gmm"}
    assert all(LEVEL[d] > LEVEL["schedules"] for d in deps)


def test_tests_mirror_the_modules():
    tests = {p.stem for p in (ROOT / "tests").glob("test_*.py")}
    rooms = sorted({room(m) for m in MODULES if m})
    missing = [r for r in rooms if not any(t == f"test_{r}" or t.startswith(f"test_{r}_") for t in tests)]
    assert not missing, f"modules without a tests/test_<module>.py: {missing}"


CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_notebooks_spell_the_package_one_way(path):
    nb = json.loads(path.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    odd = re.findall(r"^\s*(?:from dpm_lab\b.*|import dpm_lab\.\S+.*|import dpm_lab(?! as dl\b).*)$", code, re.M)
    assert "import dpm_lab as dl" in code
    assert not odd, f"use `import dpm_lab as dl` and dl.<module>.<name>; found: {odd}"
