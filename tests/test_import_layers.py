"""The package's imports form layers without cycles (issue #25).

* No cycle among module-level imports of ``gpueval`` modules.
* Nothing below the report layer imports it: the challenges, kernels, metrics, io, engine and
  the rest never import ``report``/``report_images``/``leaderboard_page``/``board_html``/``cli``.
* Below the entry points, no function-local import of a ``gpueval`` module (such imports
  exist only to hide a cycle), except the lazy challenge registry (allow-listed below). The
  entry points (``cli``, ``api``, ``rescore``, ``demo``, ``bench``, the package ``__init__``)
  import the module a command needs when it runs, so ``gpueval score urisc`` never imports
  what CellMap needs (start-up time, issue #19). Heavy third-party modules may likewise be
  imported on first use, for the same reason; optional ones (CuPy, psycopg, pyarrow,
  neuroglancer, torch) must be.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "gpueval"

#: the report layer and the entry points above it: nothing in the package below imports them
TOP = {"gpueval.cli", "gpueval.__main__", "gpueval.report", "gpueval.report_images",
       "gpueval.leaderboard_page", "gpueval.board_html", "gpueval.viewer", "gpueval.formats",
       "gpueval.rescore", "gpueval.demo", "gpueval.api", "gpueval.arrays", "gpueval.bench"}
BELOW = ("gpueval.challenges", "gpueval.kernels", "gpueval.metrics", "gpueval.io",
         "gpueval.engine", "gpueval.limits", "gpueval.pictures", "gpueval.config",
         "gpueval.result", "gpueval.notices", "gpueval.backend", "gpueval.errors",
         "gpueval.resources", "gpueval.progress")

#: (module, imported module) pairs allowed inside a function, and why
LAZY_ALLOWED = {
    ("gpueval.config", "gpueval.challenges"): "the lazy challenge registry",
}



def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = ast.parse(path.read_text(), str(path))
    return out


MODULES = _modules()


def _target(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        pkg = module.split(".")
        is_pkg = (PKG.parent / Path(*pkg) / "__init__.py").exists()
        anchor = pkg if is_pkg else pkg[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    names = []
    for a in node.names:
        full = f"{base}.{a.name}"
        names.append(full if full in MODULES else base)
    return names


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(module: str, tree: ast.Module):
    """(target, local) for every import; local = inside a function."""
    def walk(node, local):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                for t in _target(module, child):
                    yield t, local
            else:
                inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                yield from walk(child, inner)
    yield from walk(tree, False)


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, local in _imports(m, tree) if not local and t in MODULES and t != m}
            for m, tree in MODULES.items()}


def test_no_import_cycles():
    graph, state, cycles = _graph(), {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_nothing_below_imports_the_report_layer():
    bad = [(m, t) for m, tree in MODULES.items() if m.startswith(BELOW)
           for t, _ in _imports(m, tree)
           if t in MODULES and any(t == top or t.startswith(top + ".") for top in TOP)]
    assert not bad, bad


def test_no_function_local_gpueval_imports_below_the_entry_points():
    bad = [(m, t) for m, tree in MODULES.items() if m.startswith(BELOW) or m == "gpueval.db"
           for t, local in _imports(m, tree)
           if local and t.startswith("gpueval")
           and not any(m == a and (t == b or t.startswith(b + ".")) for a, b in LAZY_ALLOWED)]
    assert not bad, "function-local imports:\n" + "\n".join(f"{m}: {t}" for m, t in bad)


@pytest.mark.parametrize("layer", ["gpueval.engine"])
def test_engine_does_not_import_limits(layer):
    assert "gpueval.limits" not in _graph()[layer]
