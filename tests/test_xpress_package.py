"""The XPRESS package behind the challenge protocol (issue 25): its surface and its imports."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

import gpueval.challenges.xpress as xpress
from gpueval.challenges import Challenge, get_challenge
from gpueval.config import load_config

PACKAGE = Path(xpress.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))

#: every public name of the single-module scorer before the split, plus the picture names
#: that lived in gpueval/report_images.py: all must stay importable from the package
OLD_PUBLIC = ("CHALLENGE", "COMPAT", "FRESH", "METRIC_NAMES", "ROI_NAMES", "SUFFIXES_H5",
              "NodeTable", "Submission", "evaluate_table", "node_table", "open_submission",
              "rand_voi_nodes", "report_images", "score", "validate", "node_outcomes",
              "xpress_images")


def _imports(path: Path) -> list[tuple[ast.AST, str, bool]]:
    """(node, imported module, inside a function?) for every import of a source file."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[ast.AST, str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((child, a.name, inner) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                found.append((child, child.module, inner))
            visit(child, inner)

    visit(tree, False)
    return found


def test_protocol():
    assert isinstance(xpress, Challenge)
    assert get_challenge("xpress") is xpress
    assert xpress.name == "xpress" == xpress.CHALLENGE
    assert isinstance(xpress.config_resource, Path) and xpress.config_resource.is_file()
    assert xpress.config_resource.name == "xpress.yaml"
    # ``score`` is the function, not the submodule of the same name
    assert inspect.isfunction(xpress.score)
    assert xpress.score is sys.modules["gpueval.challenges.xpress.score"].score
    assert inspect.signature(xpress.report_images).parameters["config"].default is None


def test_public_names_kept():
    assert set(OLD_PUBLIC) <= set(xpress.__all__)
    for name in xpress.__all__:
        assert getattr(xpress, name) is not None, name


@given(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=6))
def test_resolve_config_is_an_idempotent_copy(cfg):
    once = xpress.resolve_config(cfg)
    assert once == cfg and once is not cfg
    assert xpress.resolve_config(once) == once


def test_resolve_config_of_the_shipped_config():
    cfg = load_config("xpress")
    assert xpress.resolve_config(cfg) == cfg
    assert xpress._settings(xpress.resolve_config(cfg))["roi"] == "test"


def test_no_function_local_imports():
    # nothing optional (CuPy, psycopg, pyarrow, neuroglancer) is used by this package
    local = [f"{p.name}:{node.lineno} {mod}" for p in MODULES for node, mod, inner
             in _imports(p) if inner]
    assert not local


def test_below_the_report_layer():
    # the pictures draw with gpueval.pictures; the report layer sits above and calls the protocol
    upward = [f"{p.name}: {mod}" for p in MODULES for _, mod, _ in _imports(p)
              if mod in ("gpueval.report", "gpueval.report_images", "gpueval.cli",
                         "gpueval.api")]
    assert not upward


def test_submodules_form_a_chain():
    # layout -> grid, score -> layout, images -> score/layout: no module imports one that
    # (directly or through others) imports it back
    prefix = "gpueval.challenges.xpress."
    graph = {p.stem: {mod[len(prefix):] for _, mod, _ in _imports(p) if mod.startswith(prefix)}
             for p in MODULES}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert graph["grid"] == set() and graph["layout"] == {"grid"}
    assert not [m for m in graph if reaches(m, m, set())]
