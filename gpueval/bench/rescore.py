"""Workload ``rescore_urisc``: batch re-scoring throughput (submissions per minute).

At scale 1: 100 U-RISC-sized submissions, each a folder of 3 TIFF predictions of 1024 × 1024
pixels, against a 3-image GT folder, re-scored into a fresh SQLite results database with
:func:`gpueval.rescore.rescore`: once in-process, once on a dask ``LocalCluster`` with 1
worker and once with 2 workers. ``scale`` multiplies the pixels scored: the number of
submissions by ``sqrt(scale)`` (at least 4), the image area by ``sqrt(scale)`` (side at least
64, a multiple of 16).

Reported: ``seconds`` = the 2-worker run, ``reference_seconds`` = the 1-worker run (so
``speedup_vs_reference`` is the 2-vs-1-worker scaling), submissions per minute of every run,
and ``check``: every run recorded the same score for every submission, and all were ``ok``.
``steady_submissions_per_min_*``: between the first and the last result of a run (without
cluster start-up and hashing).
Each submission costs one round trip to its worker's warm scoring process plus its content
hash; cluster start-up is included in the timings (it is part of a real run).

Workload ``rescore_resume_urisc``: the per-entry overhead of re-running ``rescore`` on a folder
of 1,000 submissions (``scale`` multiplies the number) whose results are all recorded — list,
check, hash (memoised digests), sync the names, skip — and of building the leaderboard of
every name (console, CSV, HTML). 2026-12-05, this 2-core shared machine under load: 0.84 s
resume + 1.04 s leaderboard for 1,000.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gpueval.bench import workload

if TYPE_CHECKING:
    from gpueval.rescore import Summary

IMAGES = 3


def sizes(scale: float) -> tuple[int, int]:
    """``(number of submissions, image side)`` for ``scale``."""
    n = max(4, int(round(100 * scale**0.5)))
    side = max(64, 16 * int(round(1024 * scale**0.25 / 16)))
    return n, side


def make_batch(root: Path, n: int, side: int, seed: int = 0) -> tuple[Path, Path]:
    """A GT folder and ``n`` distinct submission folders (valid U-RISC membrane maps)."""
    import tifffile
    from PIL import Image

    gt_dir, subs = root / "gt", root / "subs"
    gt_dir.mkdir(parents=True)
    subs.mkdir()
    yy, xx = np.mgrid[:side, :side]
    gts = []
    for k in range(IMAGES):
        period = 16 + 4 * k  # 12-19 % membrane: under the 1/6 format limit
        gt = np.where((yy % period == 0) | (xx % period == 0), 0, 255).astype(np.uint8)
        Image.fromarray(gt).save(gt_dir / f"img{k}.png")
        gts.append(gt)
    rng = np.random.default_rng(seed)
    for i in range(n):
        d = subs / f"team_{i:03d}"
        d.mkdir()
        for k, gt in enumerate(gts):
            pred = gt.copy()
            m = int(pred.size * 0.002 * (1 + i % 10))  # a distinct, valid map per team
            idx = rng.integers(0, pred.size, m)
            pred.flat[idx] = 255 - pred.flat[idx]
            tifffile.imwrite(d / f"img{k}.tiff", pred)
    return gt_dir, subs


def timed_rescore(gt: Path, subs: Path, db: str, device: str,
                  **kwargs: Any) -> tuple[Summary, float]:
    """Run ``rescore`` of the U-RISC batch ``subs`` quietly (no bars, no lines).

    Parameters
    ----------
    gt, subs, db, device
        As :func:`gpueval.rescore.rescore` takes them.
    **kwargs
        Further arguments of :func:`gpueval.rescore.rescore` (``workers``, ``overrides``, …).

    Returns
    -------
    (summary, seconds)
        The run's summary and its wall-clock seconds.
    """
    from gpueval.rescore import rescore

    t0 = time.perf_counter()
    summary = rescore("urisc", gt, subs, db=db, device=device, progress=False,
                      echo=lambda s: None, **kwargs)
    return summary, time.perf_counter() - t0


def run_batch(gt: Path, subs: Path, db: str, workers: int, device: str) -> dict[str, Any]:
    """One timed ``rescore`` run; returns seconds, throughput and the recorded scores."""
    from gpueval.db import connect

    stamps: list[float] = []
    summary, seconds = timed_rescore(gt, subs, db, device, workers=workers,
                                     on_record=lambda rec: stamps.append(time.perf_counter()))
    # steady state: between the first and the last result (no start-up, no hashing)
    steady = ((len(stamps) - 1) / (stamps[-1] - stamps[0]) * 60
              if len(stamps) > 1 and stamps[-1] > stamps[0] else None)
    with connect(db) as store:
        scores = {r.submission_name: (r.status, r.score) for r in store.latest("urisc")}
    return {"seconds": seconds, "per_min": summary.processed / seconds * 60,
            "steady_per_min": steady, "ok": summary.ok, "scores": scores}


@workload("rescore_urisc", "rescore 100 U-RISC submissions (3 x 1024^2 TIFFs each): "
                           "submissions/min in-process, 1 vs 2 LocalCluster workers")
def rescore_urisc(device: str, scale: float) -> dict[str, Any]:
    n, side = sizes(scale)
    with tempfile.TemporaryDirectory(prefix="gpueval-bench-rescore-") as tmp:
        root = Path(tmp)
        gt, subs = make_batch(root, n, side)
        runs = {w: run_batch(gt, subs, f"sqlite:///{root}/w{w}.sqlite", w, device)
                for w in (0, 1, 2)}
    first = runs[0]["scores"]
    check = (all(r["scores"] == first for r in runs.values()) and len(first) == n
             and all(s == "ok" for s, _ in first.values()))
    return {
        "voxels": n * IMAGES * side * side,
        "seconds": runs[2]["seconds"],
        "reference": "1 worker",
        "reference_seconds": runs[1]["seconds"],
        "submissions": n,
        "image_side": side,
        "submissions_per_min_in_process": runs[0]["per_min"],
        "submissions_per_min_1_worker": runs[1]["per_min"],
        "submissions_per_min_2_workers": runs[2]["per_min"],
        "steady_submissions_per_min_in_process": runs[0]["steady_per_min"],
        "steady_submissions_per_min_1_worker": runs[1]["steady_per_min"],
        "steady_submissions_per_min_2_workers": runs[2]["steady_per_min"],
        "check": bool(check),
        "notes": "timings include LocalCluster start-up and content hashing",
    }


def seed_results(gt: Path, subs: Path, db: str) -> int:
    """Record a result for every submission of ``subs`` as if a batch had scored them
    (scores made up, keys exact), so that the next ``rescore`` finds them all cached."""
    import json

    from gpueval.config import load_config
    from gpueval.db import Record, config_hash, connect, utc_now
    from gpueval.rescore import content_hash, escape_name

    cfg = load_config("urisc")
    version, cfg_hash = str(cfg["metric_version"]), config_hash(cfg)
    with connect(db) as store:
        truth_hash = content_hash(gt, store)
        entries = sorted(subs.iterdir())
        for i, p in enumerate(entries):
            h, name, s, now = (content_hash(p, store), escape_name(p.name),
                               i / len(entries), utc_now())
            result = {"challenge": "urisc", "metric_version": version, "status": "ok",
                      "error": None, "score": s, "metrics": {"f1": s}, "items": [],
                      "runtime": {"seconds": 0.0, "device": "cpu", "voxels": 0},
                      "warnings": []}
            store.insert(Record("urisc", version, h, truth_hash, name, "ok", None, s,
                                json.dumps(result), 0.0, "cpu", "bench", cfg_hash, now, now))
    return len(entries)


@workload("rescore_resume_urisc", "resume a fully scored batch of 1,000 U-RISC submissions "
                                  "(every result cached) and build its leaderboard "
                                  "(console, CSV, HTML)")
def rescore_resume_urisc(device: str, scale: float) -> dict[str, Any]:
    """What an organiser pays to re-run ``rescore`` on a folder already scored: list, check
    and hash every entry (file digests memoised), sync the names, skip everything; then the
    leaderboard of every name. ``scale`` multiplies the number of submissions (at least 4);
    the images are small (64²): only the per-entry overhead is measured."""
    from gpueval.db import connect
    from gpueval.rescore import (
        export_board,
        format_board,
        leaderboard,
        write_board_html,
    )

    n = max(4, int(round(1000 * scale)))
    with tempfile.TemporaryDirectory(prefix="gpueval-bench-resume-") as tmp:
        root = Path(tmp)
        gt, subs = make_batch(root, n, 64)
        db = f"sqlite:///{root}/r.sqlite"
        seed_results(gt, subs, db)
        summary, resume_s = timed_rescore(gt, subs, db, device)
        t0 = time.perf_counter()
        with connect(db) as store:
            board = leaderboard(store, "urisc")
            text = format_board(board)
            export_board(board, root / "board.csv")
            write_board_html(board, root / "board.html")
        board_s = time.perf_counter() - t0
    check = (summary.skipped == n and summary.processed == 0 and len(board.rows) == n
             and len(text.splitlines()) >= n)
    return {"voxels": n * IMAGES * 64 * 64, "seconds": resume_s + board_s,
            "submissions": n, "resume_seconds": resume_s, "leaderboard_seconds": board_s,
            "check": bool(check),
            "notes": "resume: every entry hashed (memo warm from the seeding), all skipped"}


@workload("rescore_impact_urisc", "re-score 1,000 U-RISC submissions under a changed metric "
                                  "version (all cached under the old one) and build the "
                                  "metric-change impact report (console, JSON, CSV, HTML)")
def rescore_impact_urisc(device: str, scale: float) -> dict[str, Any]:
    """What an organiser pays after a metric change: every submission has a result under the
    old version (``variant=bold``, ``radius=1``: scored for real, untimed, so the items are
    real); ``rescore`` under the current version (``2019-12-25``) lists and hashes the folder
    (memoised digests), finds nothing cached for the new version and scores all of them (timed:
    ``rescore_seconds``); then the leaderboard compared with the old version and its impact
    report — Δscore, Δrank, τ, ρ and the top items of every rank change — printed, exported
    (JSON, CSV) and written as the HTML page (timed: ``impact_seconds``). ``scale`` multiplies
    the number of submissions (at least 4); images are 3 × 64² per submission."""
    import json

    from gpueval.db import connect
    from gpueval.rescore import (
        analyse_board,
        analyses_json,
        export_analyses,
        export_board,
        format_board,
        format_impact,
        leaderboard,
        write_board_html,
    )

    n = max(4, int(round(1000 * scale)))
    old = ["variant=bold", "radius=1"]
    with tempfile.TemporaryDirectory(prefix="gpueval-bench-impact-") as tmp:
        root = Path(tmp)
        gt, subs = make_batch(root, n, 64)
        db = f"sqlite:///{root}/r.sqlite"
        first, old_s = timed_rescore(gt, subs, db, device, overrides=old)
        summary, rescore_s = timed_rescore(gt, subs, db, device)
        t0 = time.perf_counter()
        with connect(db) as store:
            board = leaderboard(store, "urisc", compare=first.metric_version)
        analyse_board(board)
        text = format_board(board) + "\n" + format_impact(board.impact)
        export_board(board, root / "board.csv")
        export_analyses(board, root / "board.csv")
        (root / "board.json").write_text(json.dumps(analyses_json(board)))
        write_board_html(board, root / "board.html")
        impact_s = time.perf_counter() - t0
        with connect(db) as store:
            old_rows = len(store.latest("urisc", first.metric_version))
    report = board.impact
    check = (first.ok == n and summary.processed == n and summary.ok == n
             and old_rows == n and report.n_compared == n
             and all(r.top_items for r in report.changed)
             and len(text.splitlines()) >= 2 * n)
    return {"voxels": n * IMAGES * 64 * 64, "seconds": rescore_s + impact_s,
            "submissions": n, "old_version_seconds": old_s, "rescore_seconds": rescore_s,
            "impact_seconds": impact_s,
            "submissions_per_min": n / rescore_s * 60,
            "rank_changes": len(report.changed),
            "kendall_tau": report.kendall_tau, "spearman_rho": report.spearman_rho,
            "check": bool(check),
            "notes": "old version scored for real (untimed); seconds = re-score under the "
                     "new version + impact report"}
