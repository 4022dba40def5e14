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
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from gpueval.bench import workload

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


def run_batch(gt: Path, subs: Path, db: str, workers: int, device: str) -> dict[str, Any]:
    """One timed ``rescore`` run; returns seconds, throughput and the recorded scores."""
    from gpueval.db import connect
    from gpueval.rescore import rescore

    stamps: list[float] = []
    t0 = time.perf_counter()
    summary = rescore("urisc", gt, subs, db=db, workers=workers, device=device,
                      progress=False, echo=lambda s: None,
                      on_record=lambda rec: stamps.append(time.perf_counter()))
    seconds = time.perf_counter() - t0
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
