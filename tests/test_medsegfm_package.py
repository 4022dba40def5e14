"""The MedSegFM package: the challenge protocol, the former public names, and its import rules
(no function-local imports, nothing from the report layer, no cycle between its modules)."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

import gpueval.challenges.medsegfm as medsegfm
from gpueval.challenges import Challenge, get_challenge
from gpueval.config import load_config

PKG = Path(medsegfm.__file__).parent
PREFIX = "gpueval.challenges.medsegfm"

#: every public name of the former module ``gpueval/challenges/medsegfm.py``
FORMER_PUBLIC = (
    "CHALLENGE", "MAX_PROMPT_BYTES", "STEP_RE", "SUFFIXES", "TRACKS", "class_set",
    "class_surfaces", "instance_scores", "load_prediction", "load_text_prompts",
    "load_truth_case", "pair_table", "report_images", "score", "semantic_scores",
    "trapezoid_auc", "truth_cases", "validate", "write_official_csv",
)
PROTOCOL = ("name", "config_resource", "score", "validate", "resolve_config", "report_images")


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PKG.glob("*.py"))}


def _imports(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            out.append((node.module or "", node))
    return out


def test_protocol_and_registry():
    assert isinstance(medsegfm, Challenge)
    assert get_challenge("medsegfm") is medsegfm
    assert medsegfm.name == "medsegfm"
    assert isinstance(medsegfm.config_resource, Path) and medsegfm.config_resource.is_file()
    assert medsegfm.config_resource.stem == medsegfm.name
    # the functions, not the submodule score.py of the same name
    assert callable(medsegfm.score) and medsegfm.score.__module__ == f"{PREFIX}.score"
    assert medsegfm.report_images.__module__ == f"{PREFIX}.images"


def test_former_public_names_and_all():
    missing = [n for n in FORMER_PUBLIC + PROTOCOL if not hasattr(medsegfm, n)]
    assert not missing
    assert set(medsegfm.__all__) == set(FORMER_PUBLIC) | set(PROTOCOL)
    assert len(medsegfm.__all__) == len(set(medsegfm.__all__))


@given(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=6))
def test_resolve_config_is_an_idempotent_copy(cfg):
    once = medsegfm.resolve_config(cfg)
    assert once == cfg and once is not cfg
    assert medsegfm.resolve_config(once) == once


def test_resolve_config_of_the_shipped_config_and_variants():
    for overrides in ([], ["track=text"], ["variant=interactive"]):
        cfg = load_config("medsegfm", overrides=overrides)
        assert medsegfm.resolve_config(cfg) == cfg


def test_no_function_local_imports():
    # the package has no optional dependency, so every import sits at module level
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
    assert graph["__init__"] >= {"score", "layout", "images"}
    assert "__init__" not in set().union(*(graph[m] for m in graph if m != "__init__"))
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
