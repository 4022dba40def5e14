"""What the rescore tests share: a fast test-double scorer that the batch's child processes
import by name (:data:`SCORER`), and the folders a batch reads.

The double's score is the number written in the submission, so every expected score in those
tests is one the test wrote.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from gpueval.result import Result

#: ``module:function`` for ``rescore(..., scorer=SCORER)``; the child finds this module through
#: the PYTHONPATH that :func:`let_children_import_tests` sets
SCORER = f"{Path(__file__).stem}:fake_score"

#: the two warnings a ``warn X`` submission yields
WARNINGS = ["b.tiff: ignored (no such image)", "c.tiff: ignored"]


def fake_score(challenge: str, truth: str | Path, submission: str | Path, *,
               config: dict, device: str = "cpu") -> Result:
    """Score a submission whose text (a file, or ``score.txt`` in a folder) is the score.

    Parameters
    ----------
    challenge, truth, config, device
        As the real scorers take them; ``truth`` and ``device`` are ignored.
    submission
        A file or a folder holding ``score.txt``: ``0.5`` scores 0.5; ``reject`` is rejected;
        ``warn 0.5`` scores 0.5 with :data:`WARNINGS`; ``hang`` sleeps past any timeout.

    Returns
    -------
    Result
        ``f1`` and ``mean_precision`` are the score, ``mean_recall`` is 1.
    """
    path = Path(submission)
    text = (path / "score.txt" if path.is_dir() else path).read_text().strip()
    version = str(config["metric_version"])
    if text == "hang":
        time.sleep(60)
    if text == "reject":
        return Result.rejected(challenge, version, "a.tiff: not a TIFF")
    warnings = []
    if text.startswith("warn "):
        text, warnings = text[5:], list(WARNINGS)
    s = float(text)
    result = Result(challenge, version, score=s,
                    metrics={"f1": s, "mean_precision": s, "mean_recall": 1.0})
    result.warnings = warnings
    return result


def let_children_import_tests(monkeypatch) -> None:
    """Put this folder on the PYTHONPATH of the child processes that import :data:`SCORER`."""
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", here + os.pathsep + os.environ.get("PYTHONPATH", ""))


def batch_folders(root: Path) -> tuple[Path, Path]:
    """Make ``root/gt`` (a one-image truth the double ignores) and an empty ``root/subs``.

    Returns
    -------
    (truth, submissions)
    """
    truth, subs = root / "gt", root / "subs"
    truth.mkdir()
    (truth / "a.png").write_bytes(b"gt")
    subs.mkdir()
    return truth, subs
