"""Challenge configuration: ``configs/<challenge>.yaml``, ``--config FILE``, ``--set KEY=VALUE``.

Every constant of a metric lives in its YAML file together with a ``metric_version``; a run
echoes the fully resolved configuration in its result (``extra.config``) for provenance.

``--set`` takes a dotted key and a YAML scalar (``--set radius=2``, ``--set limits.max_voxels=1e9``,
``--set variant=bold``). A file may name ``variants:`` — a mapping from a variant name to the
keys it overrides (including its own ``metric_version``); ``variant=<name>`` applies it.

Key names are checked, not only values (issue #21: a misspelt ``--set radious=2`` used to be
ignored silently). The known keys of a challenge (:func:`known_keys`) are every dotted path of its
shipped ``configs/<challenge>.yaml``, of its variants, the :class:`~gpueval.limits.Limits` keys
under ``limits.``, and ``variant``/``metric_version``/``challenge``. An unknown key in ``--set``,
in a ``--config`` file or in the API's ``overrides`` is a :class:`~gpueval.errors.UsageError`
(exit 2) naming the closest known key. Every known key has a one-line description
(:func:`describe_key`; ``configs/keys.yaml``), printed by ``gpueval config CHALLENGE``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from gpueval import limits
from gpueval.errors import TruthError, UsageError
from gpueval.limits import Limits
from gpueval.resources import config_dir

#: the built-in challenges (installed ones are found through :mod:`gpueval.challenges`)
CHALLENGES = ("urisc", "xpress", "cellmap", "medsegfm", "refuge")


def shipped_config(challenge: str) -> Path:
    """The YAML a challenge ships: ``configs/<name>.yaml`` for a built-in, the module's
    ``config_resource`` for an installed one."""
    if challenge in CHALLENGES:
        return config_dir() / f"{challenge}.yaml"
    # the lazy challenge registry: importing a challenge module here at import time would cycle
    from gpueval.challenges import get_challenge

    return Path(get_challenge(challenge).config_resource)


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
    shipped = shipped_config(challenge)
    path = Path(path) if path else shipped
    try:
        # the shipped file is parsed once per process (_shipped, libyaml); a copy is changed
        cfg = copy.deepcopy(_shipped(challenge)) if path == shipped else \
            yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as e:
        raise TruthError(f"config file {path} not found") from e
    except yaml.YAMLError as e:
        raise TruthError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(cfg, dict):
        raise TruthError(f"config file {path} must hold a mapping")
    known = known_keys(challenge)
    if path != shipped:
        for key in unknown_file_keys(cfg, known):
            raise UsageError(f"config file {path.name}: unknown key {key!r}"
                             f"{_closest_hint(key, known, challenge)}")
    cfg = apply_overrides(challenge, cfg, overrides)
    if "metric_version" not in cfg:
        raise TruthError(f"config file {path} has no metric_version")
    cfg["challenge"] = challenge
    return cfg


def apply_overrides(
    challenge: str,
    cfg: dict[str, Any],
    overrides: Iterable[str] | dict[str, Any] = (),
) -> dict[str, Any]:
    """``cfg`` with ``overrides`` applied (a copy when there are any), keys checked.

    Parameters
    ----------
    challenge : whose known keys (:func:`known_keys`) the override keys must be.
    cfg : a loaded config mapping (not modified).
    overrides : ``"key=value"`` strings (dotted keys), or a mapping key → value; ``variant``
        is applied first so the other keys win over the variant's values.

    Raises
    ------
    UsageError
        An unknown key (naming the closest known one), an unknown variant, ``KEY`` without
        ``=VALUE``.
    """
    pairs = list(overrides.items() if isinstance(overrides, dict) else map(_split, overrides))
    if not pairs:
        return cfg
    known = known_keys(challenge)
    for key, _ in pairs:
        check_key(challenge, key, known)
    cfg = copy.deepcopy(cfg)
    for key, value in pairs:
        if key == "variant":
            cfg = apply_variant(cfg, value)
    for key, value in pairs:
        if key != "variant":
            set_dotted(cfg, key, value)
    return cfg


# --------------------------------------------------------------------------------------------
# Known keys and their descriptions

# keys every challenge accepts besides those of its YAML file
_ALWAYS_KNOWN = ("metric_version", "variant", "challenge", "limits", "variants")


@functools.cache
def known_keys(challenge: str) -> frozenset[str]:
    """Every dotted key ``--set`` and a ``--config`` file may name for ``challenge``.

    Parameters
    ----------
    challenge : one of :data:`CHALLENGES`.

    Returns
    -------
    frozenset of dotted paths: each key of the shipped ``configs/<challenge>.yaml`` at every
    nesting level (``interactive``, ``interactive.n_steps``), each key a variant sets, the
    :class:`~gpueval.limits.Limits` fields as ``limits.<field>``, and ``metric_version``,
    ``variant``, ``challenge``, ``limits``, ``variants``.
    """
    shipped = _shipped(challenge)
    keys = set(_ALWAYS_KNOWN)
    keys.update(_paths({k: v for k, v in shipped.items() if k != "variants"}))
    for overrides in (shipped.get("variants") or {}).values():
        for dotted in (overrides or {}):
            # a variant's keys are dotted already (set_dotted applies them)
            parts = str(dotted).split(".")
            keys.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    keys.update(f"limits.{f.name}" for f in dataclasses.fields(Limits))
    return frozenset(keys)


def known_leaf(challenge: str, key: str) -> bool:
    """Whether ``key`` is known and holds a value (not a mapping) in the shipped config."""
    return key in known_keys(challenge) and not any(
        k.startswith(key + ".") for k in known_keys(challenge))


def check_key(challenge: str, key: str, known: Iterable[str] | None = None) -> None:
    """Refuse a key that no config, variant or limit of ``challenge`` defines.

    Raises
    ------
    UsageError
        ``unknown config key 'radious' for urisc; did you mean 'radius'? ...`` (exit 2).
    """
    known = known_keys(challenge) if known is None else known
    if key not in known:
        raise UsageError(f"unknown config key {key!r} for {challenge}"
                         f"{_closest_hint(key, known, challenge)}")


def unknown_file_keys(cfg: Mapping[str, Any], known: Iterable[str]) -> list[str]:
    """The dotted keys of a config mapping (a ``--config`` file) that are not in ``known``.

    A mapping under a key the shipped config holds as a value (XPRESS ``roi: {begin, shape}``)
    is that key's value, not more keys; a variant's keys are checked like top-level keys.
    """
    known = set(known)
    leaves = {k for k in known if not any(o.startswith(k + ".") for o in known)}
    bad: list[str] = []

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for k, v in node.items():
            path = f"{prefix}{k}"
            if path not in known:
                bad.append(path)
            elif isinstance(v, Mapping) and path not in leaves:
                walk(v, path + ".")

    walk({k: v for k, v in cfg.items() if k != "variants"}, "")
    variants = cfg.get("variants")
    if isinstance(variants, Mapping):
        for overrides in variants.values():
            if isinstance(overrides, Mapping):
                bad += [str(k) for k in overrides if str(k) not in known]
    return list(dict.fromkeys(bad))


def _closest_hint(key: str, known: Iterable[str], challenge: str) -> str:
    candidates = sorted(k for k in known if k not in ("challenge", "variants"))
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.0)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (`gpueval config {challenge}` lists every key)"


def describe_key(challenge: str, key: str) -> str | None:
    """One line saying what ``key`` does and which values it takes, or ``None``.

    Looked up in ``configs/keys.yaml`` (the challenge's section, then ``common``), then in the
    :mod:`gpueval.limits` docstring table for ``limits.<field>``, then in the comment on (or just
    above) the key's line in the shipped YAML, so keys added to a YAML with a comment are
    described even before ``keys.yaml`` names them.
    """
    table = _descriptions()
    for section in (challenge, "common"):
        text = (table.get(section) or {}).get(key)
        if text:
            return " ".join(str(text).split())
    if key.startswith("limits."):
        text = _limits_doc().get(key.split(".", 1)[1])
        if text:
            return text
    return _yaml_comments(challenge).get(key)


def iter_described(challenge: str, cfg: Mapping[str, Any]) -> Iterator[tuple[str, Any, str]]:
    """``(dotted key, value, description)`` for every key of a resolved config, in file order.

    Mappings yield their own line (value ``None``) before their keys; ``variants`` is left out.
    """
    leaves = {k for k in known_keys(challenge) if known_leaf(challenge, k)}

    def walk(node: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any, str]]:
        for k, v in node.items():
            path = f"{prefix}{k}"
            if path == "variants":
                continue
            desc = describe_key(challenge, path) or ""
            if isinstance(v, Mapping) and path not in leaves:
                yield path, None, desc
                yield from walk(v, path + ".")
            else:
                yield path, v, desc

    yield from walk(cfg, "")


def format_config(challenge: str, cfg: Mapping[str, Any]) -> str:
    """The resolved config as YAML (usable as ``--config``) with each key's description as a
    comment, then the variants' names and the limit keys left at their defaults."""
    lines = [f"# gpueval config {challenge}: resolved configuration; every key can be set with "
             "--set KEY=VALUE (dotted)"]
    for path, value, desc in iter_described(challenge, cfg):
        depth = path.count(".")
        leaf = path.rsplit(".", 1)[-1]
        text = f"{'  ' * depth}{_yaml_key(leaf)}:"
        if value is not None or not isinstance(_get(cfg, path), Mapping):
            text += " " + _yaml_scalar(value)
        lines.append(f"{text:<44}  # {desc}" if desc else text)
    variants = cfg.get("variants") or {}
    if variants:
        lines.append(f"# variants (--set variant=NAME): {', '.join(map(str, variants))}")
        lines.append(yaml.safe_dump({"variants": variants}, sort_keys=False,
                                    default_flow_style=False).rstrip())
    present = set(_paths(cfg))
    rest = sorted(k for k in known_keys(challenge)
                  if k.startswith("limits.") and k not in present)
    if rest:
        lines.append("# limits left at their defaults (--set limits.KEY=VALUE):")
        lines += [f"#   {k}: {describe_key(challenge, k) or ''}" for k in rest]
    return "\n".join(lines)


def _get(cfg: Mapping[str, Any], path: str) -> Any:
    return get_dotted(dict(cfg), path)


def _yaml_key(key: str) -> str:
    return yaml.safe_dump(key, default_flow_style=True).split("\n", 1)[0]


def _yaml_scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text[:-4].rstrip() if text.endswith("\n...") else text.removesuffix("...").strip()


def _paths(node: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for k, v in node.items():
        path = f"{prefix}{k}"
        yield path
        if isinstance(v, Mapping):
            yield from _paths(v, path + ".")


def _load_shipped_yaml(text: str) -> Any:
    """The shipped YAML, parsed by libyaml's safe loader where PyYAML has it (~40x faster than
    the pure-Python one, the same documents: ~15 ms of every process's start-up per parse)."""
    if hasattr(yaml, "CSafeLoader"):
        return yaml.load(text, Loader=yaml.CSafeLoader)
    return yaml.load(text, Loader=yaml.SafeLoader)


@functools.cache
def _shipped(challenge: str) -> dict[str, Any]:
    path = shipped_config(challenge)
    try:
        cfg = _load_shipped_yaml(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise TruthError(f"shipped config {path.name} is unreadable: {e}") from e
    return cfg if isinstance(cfg, dict) else {}


@functools.lru_cache(maxsize=1)
def _descriptions() -> dict[str, dict[str, str]]:
    path = config_dir() / "keys.yaml"
    try:
        data = _load_shipped_yaml(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return {str(s): {str(k): str(v) for k, v in (keys or {}).items()}
            for s, keys in data.items() if isinstance(keys, dict)}


@functools.lru_cache(maxsize=1)
def _limits_doc() -> dict[str, str]:
    """``key -> meaning`` from the table in :mod:`gpueval.limits`' docstring."""
    out: dict[str, str] = {}
    for line in (limits.__doc__ or "").splitlines():
        m = re.match(r"^``(\w+)``\s+(.+?)\s{2,}(.+)$", line)
        if m:
            out[m.group(1)] = f"{m.group(3).strip()} (default {m.group(2).strip()})"
    return out


@functools.cache
def _yaml_comments(challenge: str) -> dict[str, str]:
    try:
        return yaml_key_comments(shipped_config(challenge).read_text())
    except OSError:
        return {}


def yaml_key_comments(text: str) -> dict[str, str]:
    """``dotted key -> comment`` of a YAML document: the comment on the key's line, else the
    comment lines just above it (indentation gives the nesting).

    >>> yaml_key_comments("# the radius\\nradius: 0\\nlimits:\\n  a: 1  # one\\n")
    {'radius': 'the radius', 'limits.a': 'one'}
    """
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        m = re.match(r"^(\s*)([\"']?)([\w.-]+)\2\s*:(.*)$", line)
        if not m or stripped.startswith("-"):
            above = [] if not stripped else above
            continue
        indent, key, rest = len(m.group(1)), m.group(3), m.group(4)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([p for _, p in stack] + [key])
        stack.append((indent, key))
        comment = rest.split(" #", 1)[1].strip() if " #" in rest else " ".join(above)
        if comment and path not in out:
            out[path] = " ".join(comment.split())
        above = []
    return out


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
