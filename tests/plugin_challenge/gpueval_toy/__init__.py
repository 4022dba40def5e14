"""A sixth challenge living outside gpueval, registered as an entry point.

``toy`` scores a text file of whitespace-separated integer labels against the truth's: the
score is the fraction of positions that agree (``limits.max_labels`` bounds the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpueval.errors import Rejected, TruthError
from gpueval.notices import warn
from gpueval.result import Result

name = "toy"
config_resource = Path(__file__).with_name("toy.yaml")


def _read(path: str | Path, error: type[Exception], limit: int) -> list[int]:
    try:
        words = Path(path).read_text().split()
    except (OSError, UnicodeDecodeError) as e:
        raise error(f"{Path(path).name}: unreadable ({type(e).__name__})") from e
    if len(words) > limit:
        raise error(f"{Path(path).name}: {len(words)} labels, at most {limit} allowed")
    try:
        return [int(w) for w in words]
    except ValueError as e:
        raise error(f"{Path(path).name}: labels must be integers") from e


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    return dict(config)


def validate(submission, config, *, truth=None) -> list[str]:
    labels = _read(submission, Rejected, int(config["max_labels"]))
    return [f"{len(labels)} labels"]


def score(truth, submission, config, *, device="cpu", scheduler=None, progress=True) -> Result:
    t = _read(truth, TruthError, int(config["max_labels"]))
    s = _read(submission, Rejected, int(config["max_labels"]))
    if len(s) != len(t):
        raise Rejected(f"{len(s)} labels submitted, the truth has {len(t)}")
    if not t:
        warn("the truth holds no labels: the score is undefined")
    agree = sum(a == b for a, b in zip(t, s, strict=True))
    accuracy = agree / len(t) if t else None
    return Result(name, str(config["metric_version"]), score=accuracy,
                  metrics={"accuracy": accuracy},
                  items=[{"id": str(i), "agree": int(a == b)}
                         for i, (a, b) in enumerate(zip(t, s, strict=True))],
                  runtime={"seconds": 0.0, "device": device, "voxels": len(t)})


def report_images(result, truth, submission, config=None) -> list:
    return []
