"""The CellMap package: the challenge protocol, the former public names, and its import rules
(no function-local imports, nothing from the report layer, no cycle between its modules)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpueval.challenges.cellmap as cellmap
from gpueval.challenges import Challenge, get_challenge
from gpueval.config import load_config

PKG = Path(cellmap.__file__).parent
PREFIX = "gpueval.challenges.cellmap"

#: every public name of the former module ``gpueval/challenges/cellmap.py`` (``Grid`` was
#: imported there from :mod:`gpueval.io.align` and is used through it by tests)
FORMER_PUBLIC = (
    "CROP_RE", "SAMPLE_BLOCKS", "SAMPLE_EDGE", "Grid", "Options",
    "Submission", "TruthCrop", "check_geometry", "label_warnings", "list_truth", "load_pair",
    "open_submission", "read_manifest", "report_images", "resolve_config", "score",
    "stored_chunk_grid", "submission_warnings", "target_grid", "validate", "write_manifest",
)
PROTOCOL = ("name", "config_resource", "score", "validate", "resolve_config", "report_images")
#: keys resolve_config reads (a random config without them is copied unchanged)
SELECTORS = ("version", "variant", "variants")


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PKG.glob("*.py"))}


def _imports(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    """``(imported module, node)``; ``from PKG import sub`` counts as an import of ``PKG.sub``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            subs = [a.name for a in node.names if (PKG / f"{a.name}.py").is_file()]
            if module == PREFIX and subs:
                out += [(f"{PREFIX}.{s}", node) for s in subs]
            else:
                out.append((module, node))
    return out


def test_protocol_and_registry():
    assert isinstance(cellmap, Challenge)
    assert get_challenge("cellmap") is cellmap
    assert cellmap.name == "cellmap"
    assert isinstance(cellmap.config_resource, Path) and cellmap.config_resource.is_file()
    assert cellmap.config_resource.stem == cellmap.name
    # the score function, not the submodule score.py of the same name
    assert callable(cellmap.score) and cellmap.score.__module__ == f"{PREFIX}.score"
    assert cellmap.report_images.__module__ == f"{PREFIX}.images"


def test_former_public_names_and_all():
    missing = [n for n in FORMER_PUBLIC + PROTOCOL if not hasattr(cellmap, n)]
    assert not missing
    assert set(cellmap.__all__) == set(FORMER_PUBLIC) | set(PROTOCOL)
    assert len(cellmap.__all__) == len(set(cellmap.__all__))


def test_version_scorers_side_by_side():
    assert {"scoring_2025.py", "scoring_2026.py"} <= {p.name for p in PKG.glob("*.py")}
    assert not (PKG.parent / "_cellmap_scoring.py").exists()
    assert not (PKG.parent / "_cellmap_2025.py").exists()


@given(st.dictionaries(st.text(max_size=8).filter(lambda k: k not in SELECTORS),
                       st.integers() | st.text(max_size=8), max_size=6))
def test_resolve_config_copies_a_config_without_selectors(cfg):
    once = cellmap.resolve_config(cfg)
    assert once == cfg and once is not cfg
    assert cellmap.resolve_config(once) == once


@pytest.mark.parametrize("version", [None, "2026-06", "2025"])
def test_resolve_config_of_the_shipped_config_is_idempotent(version):
    cfg = load_config("cellmap")
    if version is not None:
        cfg["version"] = version
    once = cellmap.resolve_config(cfg)
    assert cellmap.resolve_config(once) == once
    assert ("2025" in str(once["metric_version"])) == (version == "2025")


def test_no_function_local_imports():
    # the package uses no optional dependency directly (CuPy is reached through
    # gpueval.backend), so every import sits at module level
    local = [f"{mod}.py:{node.lineno} {name}" for mod, tree in _modules().items()
             for name, node in _imports(tree) if node not in tree.body]
    assert not local


def test_nothing_from_the_report_layer():
    bad = [f"{mod}: {name}" for mod, tree in _modules().items()
           for name, _ in _imports(tree)
           if name.split(".")[:2] in (["gpueval", "report"], ["gpueval", "report_images"])]
    assert not bad


def test_no_cycle_between_the_package_modules():
    def target(name: str) -> str:  # the package module an import of ``name`` runs
        return "__init__" if name == PREFIX else name[len(PREFIX) + 1:].split(".")[0]

    graph = {mod: {target(name) for name, _ in _imports(tree)
                   if name == PREFIX or name.startswith(PREFIX + ".")}
             for mod, tree in _modules().items()}
    assert graph["__init__"] >= {"score", "layout", "manifest", "images"}
    assert all(dep in graph for deps in graph.values() for dep in deps)
    done: set[str] = set()

    def visit(mod: str, path: tuple[str, ...]) -> None:
        assert mod not in path, f"import cycle: {' -> '.join(path + (mod,))}"
        if mod in done:
            return
        for dep in graph[mod]:
            visit(dep, path + (mod,))
        done.add(mod)

    for mod in graph:
        visit(mod, ())
