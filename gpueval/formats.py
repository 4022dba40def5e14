"""Result files in the layouts that challenge platforms read (``gpueval score --format``).

* ``gpueval`` — the result JSON of ``shared/specs/cli.md`` (the default).
* ``grand-challenge`` — the ``metrics.json`` a grand-challenge.org evaluation container writes
  (the evalutils convention): ``{"case": {<metric>: {<item id>: value}}, "aggregates":
  {<metric>: {"count", "mean", "std", "min", "25%", "50%", "75%", "max"}}}``. ``case`` is the
  per-item table column by column (pandas ``DataFrame.to_dict()``), keyed by the item's ``id``
  rather than a row number so a case can be found; ``aggregates`` is pandas ``describe()`` of
  the numeric columns (``std`` with one degree of freedom, NaN left out of ``count``). The
  challenge's own aggregate metrics that are not item columns (e.g. REFUGE's ``auc``, CellMap's
  ``overall_score``) are added to ``aggregates`` as plain numbers, and so is the headline
  ``score`` — the leaderboard numbers exactly as the official scorer computes them, which an
  average of the cases is not always. NaN is written as ``null``.
* ``cellmap`` — the ``result.json`` of CellMap's ``csc evaluate`` (the official public view,
  ``shared/specs/cellmap.md`` §6): ``label_scores`` (per class with at least one submitted crop,
  without ``tp``/``fp``/``fn``), ``overall_instance_score``, ``overall_semantic_score``,
  ``overall_score``, ``total_evals``, ``num_evals_done``. CellMap results only.
* ``medsegfm-csv`` — the official per-case CSV of the result's track
  (:func:`gpueval.challenges.medsegfm.write_official_csv`). MedSegFM results only.

A rejected submission has no platform layout: only ``gpueval`` writes one (with ``status`` and
``error``); the others write nothing and the command exits 3, which is how a platform's
evaluation container reports a failed evaluation.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpueval.errors import UsageError
from gpueval.result import Result, to_jsonable

#: ``--format`` name → the challenges it applies to (``None``: every challenge)
FORMATS: dict[str, tuple[str, ...] | None] = {
    "gpueval": None,
    "grand-challenge": None,
    "cellmap": ("cellmap",),
    "medsegfm-csv": ("medsegfm",),
}

#: the statistics of pandas ``describe()``, in its order
DESCRIBE_KEYS = ("count", "mean", "std", "min", "25%", "50%", "75%", "max")


def check_format(name: str, challenge: str) -> None:
    """Refuse a format that does not exist or does not apply to ``challenge``.

    Raises
    ------
    UsageError
        Unknown format, or a platform format of another challenge (exit 2, before scoring).
    """
    if name not in FORMATS:
        raise UsageError(f"--format {name}: unknown; choose one of {', '.join(FORMATS)}")
    only = FORMATS[name]
    if only is not None and challenge not in only:
        raise UsageError(f"--format {name} is for {', '.join(only)} results, not {challenge}; "
                         "use --format gpueval or grand-challenge")


def render(result: Result, name: str) -> str:
    """The text of ``result`` in format ``name``.

    Parameters
    ----------
    result : a scored result (``status == "ok"``; ``gpueval`` also renders a rejected one).
    name : one of :data:`FORMATS`.

    Returns
    -------
    str
        JSON (strict: NaN as ``null``) or, for ``medsegfm-csv``, CSV text.

    Raises
    ------
    UsageError
        ``name`` does not apply to the result's challenge, or the result is rejected and
        ``name`` is not ``gpueval``.
    """
    check_format(name, result.challenge)
    if name == "gpueval":
        return result.to_json()
    if result.status != "ok":
        raise UsageError(f"--format {name}: a rejected submission has no {name} result")
    writer: Callable[[Result], Any] = _WRITERS[name]
    out = writer(result)
    if isinstance(out, str):
        return out
    return json.dumps(to_jsonable(out), indent=2, allow_nan=False) + "\n"


def write(result: Result, name: str, path: str | Path) -> None:
    """Write ``result`` in format ``name`` to ``path`` (see :func:`render`)."""
    Path(path).write_text(render(result, name))


def grand_challenge(result: Result) -> dict[str, Any]:
    """``{"case": ..., "aggregates": ...}`` as a grand-challenge evaluation writes it.

    Parameters
    ----------
    result : a scored result.

    Returns
    -------
    dict
        ``case``: ``{metric: {item id: value}}`` for every numeric item column; ``aggregates``:
        ``{metric: describe-statistics}`` for those columns, plus the result's other
        ``metrics`` and ``score`` as plain numbers.
    """
    import pandas as pd

    rows = {str(it["id"]): {k: v for k, v in it.items() if k != "id" and _is_number(v)}
            for it in result.items}
    frame = pd.DataFrame.from_dict(rows, orient="index", dtype=float)
    case = {col: {idx: _number(v) for idx, v in frame[col].items()} for col in frame.columns}
    aggregates: dict[str, Any] = {}
    if len(frame.columns):
        stats = frame.describe()
        for col in frame.columns:
            aggregates[col] = {k: _number(stats.at[k, col]) for k in DESCRIBE_KEYS}
    for key, value in result.metrics.items():
        if key not in aggregates and (value is None or _is_number(value)):
            aggregates[key] = _number(value)
    aggregates.setdefault("score", _number(result.score))
    return {"case": case, "aggregates": aggregates}


def cellmap_result(result: Result) -> dict[str, Any]:
    """CellMap's official ``result.json`` (the public view the official scorer writes)."""
    public = result.extra.get("public_scores")
    if not isinstance(public, dict):
        raise UsageError("--format cellmap: this result carries no CellMap public scores")
    return public


def medsegfm_csv(result: Result) -> str:
    """MedSegFM's official per-case CSV, from the medsegfm module's writer."""
    from gpueval.challenges.medsegfm import write_official_csv

    return write_official_csv(result)


_WRITERS: dict[str, Callable[[Result], Any]] = {
    "grand-challenge": grand_challenge, "cellmap": cellmap_result, "medsegfm-csv": medsegfm_csv,
}


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and type(v).__name__ != "bool_"


def _number(v: Any) -> float | int | None:
    if v is None:
        return None
    f = float(v)
    if not math.isfinite(f):
        return None
    return int(f) if isinstance(v, numbers.Integral) else f
