"""The U-RISC package: the challenge protocol, its public names, and where its imports point."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

import gpueval.challenges.urisc as urisc
from gpueval.challenges import Challenge, get_challenge

PKG = Path(urisc.__file__).parent


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, is it at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, id(node) in top))
    return out


def test_registry_gives_the_package_and_it_satisfies_the_protocol():
    module = get_challenge("urisc")
    assert module is urisc
    assert isinstance(module, Challenge)
    assert module.name == "urisc"
    assert module.config_resource.is_file()
    cfg = yaml.safe_load(module.config_resource.read_text())
    assert "metric_version" in cfg
    # no selector keys: resolving is a copy, and idempotent
    resolved = module.resolve_config(cfg)
    assert resolved == cfg and resolved is not cfg
    assert module.resolve_config(resolved) == resolved


def test_every_exported_name_exists():
    for name in urisc.__all__:
        assert hasattr(urisc, name), name
    # the package's ``score`` is the function, not the submodule of the same name
    assert callable(urisc.score) and urisc.score.__module__ == "gpueval.challenges.urisc.score"


def test_no_function_local_imports_and_no_report_layer_below():
    for path in sorted(PKG.glob("*.py")):
        for module, at_top in _imports(path):
            # zarr (~0.1 s) only for TIFFs over the whole-decode budget (issue #19 start-up)
            assert at_top or module == "zarr", f"{path.name}: function-local import of {module}"
            assert module not in ("gpueval.report", "gpueval.report_images"), \
                f"{path.name} imports the report layer ({module}), which sits above challenges"
