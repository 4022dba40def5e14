"""Challenge configuration: ``configs/<challenge>.yaml``, ``--config FILE``, ``--set KEY=VALUE``.

Every constant of a metric lives in its YAML file together with a ``metric_version``; a run
echoes the fully resolved configuration in its result (``extra.config``) for provenance.

``--set`` takes a dotted key and a YAML scalar (``--set radius=2``, ``--set limits.max_voxels=1e9``,
``--set variant=bold``). A file may name ``variants:`` — a mapping from a variant name to the
keys it overrides (including its own ``metric_version``); ``variant=<name>`` applies it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from gpueval.errors import TruthError, UsageError
from gpueval.resources import config_dir

CHALLENGES = ("urisc", "xpress", "cellmap", "medsegfm", "refuge")


def load_config(
    challenge: str,
    path: str | Path | None = None,
    overrides: Iterable[str] | dict[str, Any] = (),
) -> dict[str, Any]:
    """Load a challenge's configuration and apply ``--set`` overrides.

    Parameters
    ----------
    challenge : one of :data:`CHALLENGES`.
    path : a YAML file replacing ``configs/<challenge>.yaml``.
    overrides : ``"key=value"`` strings (dotted keys), or a mapping key → value.

    Returns
    -------
    dict with at least ``metric_version``.
    """
    if challenge not in CHALLENGES:
        raise UsageError(f"unknown challenge {challenge!r}; choose one of {', '.join(CHALLENGES)}")
    path = Path(path) if path else config_dir() / f"{challenge}.yaml"
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as e:
        raise TruthError(f"config file {path} not found") from e
    except yaml.YAMLError as e:
        raise TruthError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(cfg, dict):
        raise TruthError(f"config file {path} must hold a mapping")
    pairs = overrides.items() if isinstance(overrides, dict) else map(_split, overrides)
    pairs = list(pairs)
    # A variant is applied first, so explicit --set keys win over the variant's defaults.
    for key, value in pairs:
        if key == "variant":
            cfg = apply_variant(cfg, value)
    for key, value in pairs:
        if key != "variant":
            set_dotted(cfg, key, value)
    if "metric_version" not in cfg:
        raise TruthError(f"config file {path} has no metric_version")
    cfg["challenge"] = challenge
    return cfg


def apply_variant(cfg: dict[str, Any], name: Any) -> dict[str, Any]:
    variants = cfg.get("variants") or {}
    name = str(name)
    if name not in variants:
        known = ", ".join(map(str, variants)) or "none"
        raise UsageError(f"unknown variant {name!r}; known: {known}")
    out = copy.deepcopy(cfg)
    for key, value in (variants[name] or {}).items():
        set_dotted(out, key, value)
    out["variant"] = name
    return out


def set_dotted(cfg: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise UsageError(f"--set {key}: {p} is not a mapping")
    node[leaf] = value


def get_dotted(cfg: dict[str, Any], key: str, default: Any = None) -> Any:
    node: Any = cfg
    for p in key.split("."):
        if not isinstance(node, dict) or p not in node:
            return default
        node = node[p]
    return node


def _split(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    # keep version-like strings ("2026-06" parses as a date or int in YAML) as text
    if key.endswith(("version", "variant")) or key in ("compat", "track", "roi", "dataset"):
        value = raw
    return key.strip(), value
