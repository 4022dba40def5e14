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


def format_table(result: Result, max_items: int = 20) -> str:
    """A readable plain-text summary: headline, aggregate metrics, the first items."""
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
        cols = [k for k in result.items[0] if k != "id"][:8]
        rows = [[str(it.get("id"))] + [format_value(it.get(c)) for c in cols]
                for it in result.items[:max_items]]
        header = ["id"] + cols
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        lines.append("")
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        if len(result.items) > max_items:
            lines.append(f"... {len(result.items) - max_items} more items (see --json)")
    rt = result.runtime
    lines.append("")
    lines.append(f"{rt.get('voxels', 0):,} voxels in {rt.get('seconds', 0):.2f} s "
                 f"on {rt.get('device', 'cpu')}")
    return "\n".join(lines)


def format_value(v: Any) -> str:
    """A number for people: 6 significant digits, ``null`` for missing, ``nan`` kept."""
    if v is None:
        return "null"
    if isinstance(v, float | np.floating):
        return "nan" if not math.isfinite(v) else f"{v:.6g}"
    return str(v)
