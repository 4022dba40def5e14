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
* Each challenge package is stricter: every import (third-party too) is a statement of its
  module's body, nothing in it imports the report layer, and its modules import each other
  without a cycle and without going back through the package's ``__init__``.
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

#: the built-in challenge packages
CHALLENGES = ("urisc", "xpress", "cellmap", "medsegfm", "refuge")
#: for each package, submodules its ``__init__`` must import (the protocol's functions and
#: former public names come from them), and any exact package-internal imports of a submodule
PACKAGE_EDGES = {
    "urisc": {"__init__": {"score", "layout", "images"}},
    "xpress": {"__init__": {"score", "layout", "images"}, "grid": set(), "layout": {"grid"}},
    "cellmap": {"__init__": {"score", "layout", "manifest", "images"}},
    "medsegfm": {"__init__": {"score", "layout", "images"}},
    "refuge": {"__init__": {"score", "layout", "truth", "images"}},
}

#: (module, imported module) pairs allowed inside a function, and why
LAZY_ALLOWED = {
    ("gpueval.config", "gpueval.challenges"): "the lazy challenge registry",
    **{(f"gpueval.challenges.medsegfm.{a}", f"gpueval.challenges.medsegfm.{b}"):
       "issue #19 start-up: an npz case on the CPU never imports dask.array/Numba/SciPy"
       for a, b in (("score", "chunked"), ("score", "text"), ("score", "interactive"),
                    ("semantic", "chunked"))},
    **{("gpueval.kernels.gather", t): "issue #19 start-up: XPRESS's local gather reads on a "
       "thread pool; only the Dask path needs the engine (and dask), only a bar needs progress"
       for t in ("gpueval.engine", "gpueval.progress")},
    ("gpueval.kernels.distance", "gpueval.kernels.edt_nogil"): "the GIL-free pair kernel "
        "imports Numba (~0.15 s): only a CPU Hausdorff of a pair pays for it, not every "
        "importer of kernels.distance (union boxes, the GPU path, the sparse k-d tree)",
    ("gpueval.io.align", "gpueval.kernels.rescale_nogil"): "the resampling kernels import "
        "Numba (~0.15 s): only a label at another voxel size than its crop pays for it, not "
        "every CellMap score that aligns a label to its crop",
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


def _is_top(target: str) -> bool:
    # not only modules that exist: an import of a removed one (report_images) counts too
    return any(target == top or target.startswith(top + ".") for top in TOP)


def test_nothing_below_imports_the_report_layer():
    bad = [(m, t) for m, tree in MODULES.items() if m.startswith(BELOW)
           for t, _ in _imports(m, tree) if _is_top(t)]
    assert not bad, bad


def _package(name: str) -> dict[str, ast.Module]:
    """``{submodule stem or "__init__": tree}`` of the challenge package ``name``."""
    prefix = f"gpueval.challenges.{name}"
    return {("__init__" if m == prefix else m[len(prefix) + 1:]): tree
            for m, tree in MODULES.items() if m == prefix or m.startswith(prefix + ".")}


#: the imports a challenge package makes on first use, and why (issue #19: start-up time)
PACKAGE_LAZY = {
    ("urisc", "imread", "import zarr"): "only band reads of images over the whole-decode "
                                        "budget need zarr (~0.1 s of start-up otherwise)",
    ("cellmap", "scoring_2026", "from scipy import ndimage"): "only the 2025 scorer's float64 "
        "EDT needs scipy.ndimage (~25 ms of every CellMap score's start-up otherwise)",
    **{("medsegfm", stem, stmt): "npz cases on the CPU never need the chunked path, the "
       "text/interactive tracks or dask.array (~0.5-0.9 s of start-up otherwise)"
       for stem, stmt in (
           ("score", "from gpueval.challenges.medsegfm.interactive import "
                     "_score_interactive_case"),
           ("score", "from gpueval.challenges.medsegfm.text import instance_scores"),
           ("score", "from gpueval.challenges.medsegfm import chunked"),
           ("semantic", "from gpueval.challenges.medsegfm.chunked import class_surfaces"),
           ("images", "import dask.array as da"))},
    ("urisc", "imread", "from PIL import Image"): "only PNG/BMP images need PIL (~25 ms of "
                                                  "start-up for the usual TIFFs)",
    ("refuge", "truth", "import openpyxl"): "only .xlsx truth needs openpyxl (~0.09 s of "
                                            "start-up for the CSV truth)",
    ("xpress", "layout", "import zarr"): "only .zarr submissions need zarr (~0.1 s of start-up "
                                         "for the usual HDF5)",
}


@pytest.mark.parametrize("name", CHALLENGES)
def test_challenge_package_imports_only_at_module_level(name):
    # no package uses an optional dependency directly (CuPy comes through gpueval.backend), so
    # every import, third-party or not, is a plain statement of the module body: not in a
    # function, nor under ``if``/``try`` -- except the start-up exceptions listed above
    local = [f"{stem}.py:{node.lineno} {ast.unparse(node)}"
             for stem, tree in _package(name).items() for node in ast.walk(tree)
             if isinstance(node, ast.Import | ast.ImportFrom) and node not in tree.body
             and (name, stem, ast.unparse(node)) not in PACKAGE_LAZY]
    assert not local


@pytest.mark.parametrize("name", CHALLENGES)
def test_challenge_package_does_not_import_the_report_layer(name):
    prefix = f"gpueval.challenges.{name}"
    bad = [f"{stem}: {t}" for stem, tree in _package(name).items()
           for t, _ in _imports(prefix if stem == "__init__" else f"{prefix}.{stem}", tree)
           if _is_top(t)]
    assert not bad


@pytest.mark.parametrize("name", CHALLENGES)
def test_challenge_package_modules_form_no_cycle(name):
    prefix = f"gpueval.challenges.{name}"
    modules = _package(name)

    def stem(target: str) -> str:  # the package module an import of ``target`` runs
        return "__init__" if target == prefix else target[len(prefix) + 1:].split(".")[0]

    graph = {m: {stem(t) for t, _ in _imports(prefix if m == "__init__" else f"{prefix}.{m}",
                                              tree)
                 if t == prefix or t.startswith(prefix + ".")} - {m}
             for m, tree in modules.items()}
    assert set().union(*graph.values()) <= set(graph)  # only modules that exist
    for module, deps in PACKAGE_EDGES[name].items():
        assert graph[module] >= deps if module == "__init__" else graph[module] == deps, module
    # a submodule that imports the package's __init__ runs it half-initialised
    assert not [m for m, deps in graph.items() if m != "__init__" and "__init__" in deps]
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join(path + (module,))}"
        if module in done:
            return
        for dep in sorted(graph[module]):
            visit(dep, path + (module,))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())


def test_no_function_local_gpueval_imports_below_the_entry_points():
    bad = [(m, t) for m, tree in MODULES.items() if m.startswith(BELOW) or m == "gpueval.db"
           for t, local in _imports(m, tree)
           if local and t.startswith("gpueval")
           and not any(m == a and (t == b or t.startswith(b + ".")) for a, b in LAZY_ALLOWED)]
    assert not bad, "function-local imports:\n" + "\n".join(f"{m}: {t}" for m, t in bad)


@pytest.mark.parametrize("layer", ["gpueval.engine"])
def test_engine_does_not_import_limits(layer):
    assert "gpueval.limits" not in _graph()[layer]
