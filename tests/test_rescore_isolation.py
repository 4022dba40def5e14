"""Isolation of ``rescore``: crashes, hangs, memory hogs, scorer errors and bad truth.

The submissions here drive a test-only scorer, :func:`fake_score` (this module, imported by the
child process by name), whose behaviour each submission file names.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from gpueval.db import connect
from gpueval.errors import Rejected, TruthError
from gpueval.rescore import leaderboard, rescore
from gpueval.result import Result

SCORER = f"{Path(__file__).stem}:fake_score"


def fake_score(challenge, truth, submission, *, config, device="cpu"):
    """A scorer whose behaviour is the submission file's text (see the tests)."""
    what = Path(submission).read_text().strip()
    version = str(config["metric_version"])
    offset = float(os.environ.get("GPUEVAL_FAKE_OFFSET", "0"))
    if what.startswith("ok:"):
        s = float(what[3:]) + offset
        return Result(challenge, version, score=s, metrics={"f1": s})
    if what == "reject":
        return Result.rejected(challenge, version, str(Rejected("a.tiff: not a TIFF")))
    if what == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if what == "hang":
        time.sleep(120)
    if what == "memory":
        import numpy as np

        hog = []
        for _ in range(60):  # up to 3 GB, 50 MB at a time, touched
            hog.append(np.ones(50_000_000 // 8))
            time.sleep(0.02)
    if what == "raise":
        raise ValueError("boom at line 3")
    if what == "truth":
        raise TruthError("gt/: no GT images")
    raise AssertionError(f"unknown fake submission {what!r}")


@pytest.fixture
def child_imports_tests(monkeypatch):
    """Let the child processes import this module."""
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", here + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _batch(root: Path, contents: dict[str, str]) -> tuple[Path, Path]:
    truth = root / "gt"
    truth.mkdir()
    (truth / "a.png").write_bytes(b"gt")
    subs = root / "subs"
    subs.mkdir()
    for name, text in contents.items():
        (subs / name).write_text(text)
    return truth, subs


def test_bad_submissions_are_recorded_and_the_batch_goes_on(tmp_path, child_imports_tests):
    truth, subs = _batch(tmp_path, {
        "1-good": "ok:0.75", "2-reject": "reject", "3-crash": "crash", "4-hang": "hang",
        "5-memory": "memory", "6-raise": "raise", "7-good": "ok:0.5"})
    url = f"sqlite:///{tmp_path}/r.sqlite"
    t0 = time.perf_counter()
    # on a loaded 2-core machine touching memory runs at ~100 MB/s (page faults): a limit
    # not far above the warm child's own resident set, and a time limit the hog cannot reach
    # first
    s = rescore("urisc", truth, subs, db=url, scorer=SCORER, timeout=8,
                memory_limit="400MiB", progress=False)
    assert time.perf_counter() - t0 < 60  # the hang was cut short
    # over the time or memory limit: the submission's verdict (rejected, with the reason);
    # a crash or a scorer exception: failed (not the submission's verdict, retried)
    assert (s.ok, s.rejected, s.failed, s.skipped) == (2, 3, 2, 0)
    with connect(url) as d:
        rows = {r.submission_name: r for r in d.latest("urisc")}
    assert len(rows) == 7
    assert rows["1-good"].score == 0.75 and rows["7-good"].score == 0.5
    assert rows["2-reject"].status == "rejected" and "not a TIFF" in rows["2-reject"].error
    assert rows["3-crash"].status == "failed" and "SIGSEGV" in rows["3-crash"].error
    assert rows["4-hang"].status == "rejected" and "time limit of 8 s" in rows["4-hang"].error
    assert rows["5-memory"].status == "rejected"
    assert "memory limit of 400 MiB" in rows["5-memory"].error
    assert "ValueError: boom at line 3" in rows["6-raise"].error
    for r in rows.values():  # every row holds a full result JSON with the contract's keys
        assert set(r.result) >= {"challenge", "metric_version", "status", "error", "score",
                                 "metrics", "items", "runtime"}
        assert r.result["status"] == r.status

    # a second run skips the verdicts (ok, rejected) and retries the failures, keeping both
    s2 = rescore("urisc", truth, subs, db=url, scorer=SCORER, timeout=2,
                 memory_limit="400MiB", progress=False)
    assert s2.skipped == 5 and s2.failed == 2 and s2.ok == 0
    with connect(url) as d:
        crash = next(r for r in d.latest("urisc") if r.submission_name == "3-crash")
        assert [h.revision for h in d.history(crash.key)] == [0, 1]
        board = leaderboard(d, "urisc")
    ranked = [(r["name"], r["rank"]) for r in board.rows if r["rank"] is not None]
    assert ranked == [("1-good", 1), ("7-good", 2)]
    assert {r["name"] for r in board.rows if r["rank"] is None} == {
        "2-reject", "3-crash", "4-hang", "5-memory", "6-raise"}


def test_unusable_truth_stops_the_batch(tmp_path, child_imports_tests):
    truth, subs = _batch(tmp_path, {"a": "truth", "b": "ok:0.5"})
    with pytest.raises(TruthError, match="no GT images"):
        rescore("urisc", truth, subs, db=f"sqlite:///{tmp_path}/r.sqlite", scorer=SCORER,
                progress=False)
    with connect(f"sqlite:///{tmp_path}/r.sqlite") as d:
        assert all(r.submission_name != "a" for r in d.latest("urisc"))
    with pytest.raises(TruthError, match="not found"):
        rescore("urisc", tmp_path / "nope", subs, db=f"sqlite:///{tmp_path}/r.sqlite",
                scorer=SCORER, progress=False)


def test_changed_results_conflict_unless_forced(tmp_path, child_imports_tests, monkeypatch):
    truth, subs = _batch(tmp_path, {"a": "ok:0.5", "b": "ok:0.25", "c": "ok:0.25"})
    url = f"sqlite:///{tmp_path}/r.sqlite"
    s = rescore("urisc", truth, subs, db=url, scorer=SCORER, progress=True)  # a tqdm bar
    assert s.ok == 2 and s.duplicates == {"c": "b"}  # same content: scored once
    # same metric_version, another configuration: scored again to check; same result → kept
    s = rescore("urisc", truth, subs, db=url, scorer=SCORER, progress=False,
                overrides=["band_bytes=1000000"])
    assert s.unchanged == 2 and not s.conflicts
    # a changed result under the same key is refused ...
    monkeypatch.setenv("GPUEVAL_FAKE_OFFSET", "0.125")
    s = rescore("urisc", truth, subs, db=url, scorer=SCORER, progress=False,
                overrides=["band_bytes=2000000"])
    assert len(s.conflicts) == 2 and "--force" in s.conflicts[0]
    with connect(url) as d:
        assert sorted(r.score for r in d.latest("urisc")) == [0.25, 0.5]
        assert d.count() == 2
    # ... and kept beside the old one with --force
    s = rescore("urisc", truth, subs, db=url, scorer=SCORER, progress=False, force=True)
    assert s.ok == 2 and not s.conflicts
    with connect(url) as d:
        assert sorted(r.score for r in d.latest("urisc")) == [0.375, 0.625]
        assert d.count() == 4


def test_start_up_is_not_counted_in_the_timeout(tmp_path, child_imports_tests):
    # importing Python, NumPy, dask and the challenge takes longer than this limit on a busy
    # machine; only the scoring itself is timed
    truth, subs = _batch(tmp_path, {"a": "ok:0.5", "b": "ok:0.25"})
    s = rescore("urisc", truth, subs, db=f"sqlite:///{tmp_path}/r.sqlite", scorer=SCORER,
                timeout=0.3, progress=False)
    assert (s.ok, s.failed) == (2, 0)
