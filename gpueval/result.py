"""The result of scoring one submission, and its strict-JSON and table views.

The shape is fixed by ``shared/specs/cli.md``::

    {"challenge", "metric_version", "status", "error", "score",
     "metrics": {name: number|null}, "items": [{"id": ..., name: number|null}],
     "runtime": {"seconds", "device", "voxels"}, "warnings": [str]}

NaN and ±inf become ``null``; NumPy scalars become Python numbers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Result:
    challenge: str
    metric_version: str
    status: str = "ok"
    error: str | None = None
    score: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    runtime: dict[str, Any] = field(
        default_factory=lambda: {"seconds": 0.0, "device": "cpu", "voxels": 0}
    )
    warnings: list[str] = field(default_factory=list)
    """What a person must know that did not reject the submission (see :mod:`gpueval.notices`)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything beyond the contract (extended views, resolved config); written under ``extra``."""

    @classmethod
    def rejected(cls, challenge: str, metric_version: str, error: str) -> Result:
        return cls(challenge, metric_version, status="rejected", error=error)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "challenge": self.challenge,
            "metric_version": self.metric_version,
            "status": self.status,
            "error": self.error,
            "score": self.score,
            "metrics": self.metrics,
            "items": self.items,
            "runtime": self.runtime,
            "warnings": list(self.warnings),
        }
        if self.extra:
            d["extra"] = self.extra
        return to_jsonable(d)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def write_json(self, path: str | Path) -> None:
        """Write atomically (temp file + rename) so a reader never sees half a result."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json() + "\n")
        tmp.replace(path)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        keys = ("challenge", "metric_version", "status", "error", "score", "metrics", "items",
                "runtime", "warnings", "extra")
        return cls(**{k: d[k] for k in keys if k in d})


def to_jsonable(x: Any) -> Any:
    """Recursively convert to strict-JSON types: NaN/inf → None, NumPy → Python."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [to_jsonable(v) for v in x.tolist()]
    if isinstance(x, np.bool_ | bool):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def is_missing(item: dict[str, Any]) -> bool:
    """Whether an item was scored as missing (no prediction): ``status: "missing"`` (CellMap's
    official string, and the other challenges') or ``missing: true``."""
    return item.get("status") == "missing" or item.get("missing") is True


def item_cell(item: dict[str, Any], column: str) -> str:
    """One item value for people: a score of a missing item reads ``missing``, not a plain 0.

    Counts (integers) stay numbers; ``missing``/``status`` columns read as they are.
    """
    v = item.get(column)
    if is_missing(item) and isinstance(v, float | np.floating) and column not in ("status",):
        return "missing"
    return format_value(v)


def per_class_rows(result: Result) -> list[dict[str, Any]]:
    """Per-class metrics where the result has them, one row per class.

    * MedSegFM (``extra.cases[<case>].per_class``, or the last step's ``per_class`` on the
      interactive track): for each class label, the mean over the cases scoring it of ``dsc``,
      ``nsd`` (at the configured tolerance), ``hd95_finite_mm`` (the mean of the finite HD95
      values: an empty prediction's is infinite) and the number of ``cases``.
    * Challenges whose item ids are ``<crop>/<label>`` with ``<label>_<metric>`` aggregates in
      ``metrics`` (CellMap): one row per label holding those metrics.

    Returns
    -------
    list of dicts with ``class`` first; empty when the result has no per-class values.
    """
    per_case = per_case_class_rows(result)
    if per_case:
        by_class: dict[str, list[dict[str, Any]]] = {}
        for row in per_case:
            by_class.setdefault(str(row["class"]), []).append(row)
        rows = []
        for cls in sorted(by_class, key=_natural):
            group = by_class[cls]
            row: dict[str, Any] = {"class": cls}
            for col, name in (("dsc", "dsc"), ("nsd", "nsd"), ("hd95_mm", "hd95_finite_mm")):
                # HD95 is infinite for an empty prediction: its mean is over finite cases only,
                # and the column's name says so
                vals = [float(r[col]) for r in group if _finite(r.get(col))]
                if any(r.get(col) is not None for r in group):
                    row[name] = float(np.mean(vals)) if vals else None
            row["cases"] = len(group)
            rows.append(row)
        return rows
    labels = list(dict.fromkeys(str(it.get("id", "")).rsplit("/", 1)[1]
                                for it in result.items if "/" in str(it.get("id", ""))))
    rows = []
    # longest label first, so "er" does not claim "er_mem_iou"
    claimed: set[str] = set()
    for label in sorted(labels, key=len, reverse=True):
        keys = [k for k in result.metrics if k.startswith(label + "_") and k not in claimed]
        claimed.update(keys)
        if keys:
            rows.append({"class": label, **{k[len(label) + 1:]: result.metrics[k] for k in keys}})
    order = {name: i for i, name in enumerate(labels)}
    return sorted(rows, key=lambda r: order[r["class"]])


def per_case_class_rows(result: Result) -> list[dict[str, Any]]:
    """MedSegFM's per-case, per-class values: ``case``, ``class``, ``dsc``, ``nsd``,
    ``hd95_mm`` and ``missing`` (the case had no prediction); empty for other results."""
    cases = (result.extra or {}).get("cases")
    if not isinstance(cases, dict):
        return []
    missing = {str(it.get("id")) for it in result.items if is_missing(it)}
    rows = []
    for case, ext in cases.items():
        if not isinstance(ext, dict):
            continue
        per_class = ext.get("per_class")
        steps = ext.get("steps")
        if not per_class and isinstance(steps, dict) and steps:
            last = max(steps, key=_natural)  # the final step's classes
            per_class = (steps[last] or {}).get("per_class")
        if not isinstance(per_class, dict):
            continue
        for cls, v in per_class.items():
            if not isinstance(v, dict):
                continue
            nsd_key = next((k for k in v if k.startswith("nsd")), None)
            rows.append({"case": str(case), "class": str(cls), "dsc": v.get("dsc"),
                         "nsd": v.get(nsd_key) if nsd_key else None,
                         "hd95_mm": v.get("hd95_mm"), "missing": str(case) in missing})
    return rows


def _finite(v: Any) -> bool:
    return isinstance(v, int | float | np.number) and not isinstance(v, bool) \
        and math.isfinite(float(v))


def _natural(name: Any) -> tuple:
    text = str(name)
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


def _rows_table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return lines


def format_table(result: Result, max_items: int = 20) -> str:
    """A readable plain-text summary: headline, aggregate metrics, the first items (a missing
    item's scores read ``missing``), per-class metrics where the result has them, and the first
    of the scorer's ``extra.notes``.

    Warnings are not included: the command line prints them on stderr.
    """
    lines = [
        f"{result.challenge} ({result.metric_version}) — status: {result.status}",
    ]
    if result.error:
        lines.append(f"error: {result.error}")
    lines.append(f"score: {format_value(result.score)}")
    if result.metrics:
        width = max(len(k) for k in result.metrics)
        lines.append("")
        lines += [f"  {k:<{width}}  {format_value(v)}" for k, v in result.metrics.items()]
    if result.items:
        cols = [k for k in result.items[0] if k not in ("id", "missing")][:8]
        n_missing = sum(is_missing(it) for it in result.items)
        if n_missing and "status" not in cols:
            cols.append("status")
        rows = [[str(it.get("id"))] + [_status_cell(it) if c == "status" else item_cell(it, c)
                                       for c in cols]
                for it in result.items[:max_items]]
        lines.append("")
        lines += _rows_table(rows, ["id"] + cols)
        if len(result.items) > max_items:
            lines.append(f"... {len(result.items) - max_items} more items (see --json)")
        if n_missing:
            lines.append(f"{n_missing} of {len(result.items)} item(s) missing (no prediction): "
                         "each is scored as an empty prediction")
    classes = per_class_rows(result)
    if classes:
        cols = list(dict.fromkeys(k for r in classes for k in r if k != "class"))[:8]
        rows = [[str(r["class"])] + [format_value(r.get(c)) for c in cols]
                for r in classes[:max_items]]
        lines.append("")
        lines.append("per class" + (" (mean over cases)" if "cases" in cols else ""))
        lines += _rows_table(rows, ["class"] + cols)
        if len(classes) > max_items:
            lines.append(f"... {len(classes) - max_items} more classes (see --json)")
    notes = [n for n in (result.extra or {}).get("notes") or [] if isinstance(n, str)]
    if notes:  # explanations a scorer computed (e.g. why a metric is NaN) are shown, not buried
        lines.append("")
        lines += [f"note: {n}" for n in notes[:5]]
        if len(notes) > 5:
            lines.append(f"... {len(notes) - 5} more notes (see --json, extra.notes)")
    rt = result.runtime
    lines.append("")
    lines.append(f"{rt.get('voxels', 0):,} voxels in {rt.get('seconds', 0):.2f} s "
                 f"on {rt.get('device', 'cpu')}")
    return "\n".join(lines)


def _status_cell(item: dict[str, Any]) -> str:
    if "status" in item:
        return str(item["status"])
    return "missing" if is_missing(item) else "scored"


def format_value(v: Any) -> str:
    """A number for people: 6 significant digits, ``null`` for missing, ``nan`` kept."""
    if v is None:
        return "null"
    if isinstance(v, float | np.floating):
        return "nan" if not math.isfinite(v) else f"{v:.6g}"
    return str(v)
