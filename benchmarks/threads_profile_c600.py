"""``cellmap_600`` under Dask's ``Profiler`` at N threads (issue #18: why 1 → 2 threads stays
near 75 % on this crop while the dense crops reach 93–98 %).

Prints the wall time, each thread's busy time, the concurrency per 0.25 s and the summed task
time per function: with idle threads the concurrency drops; with tasks slowing each other down
(GIL hand-offs, shared caches) it stays at N while the task time grows against 1 thread.

Usage: ``python benchmarks/threads_profile_c600.py N [DIR]`` (builds the crop into DIR once,
default ``/tmp/gpueval-c600``; about 10 s per run on 2 cores).
"""

from __future__ import annotations

import collections
import sys
import time

import dask.array as da
import numpy as np
from dask.diagnostics import Profiler

from gpueval.bench.cellmap import CONSTS, cellmap_600_crop
from gpueval.challenges.cellmap.scoring_2026 import score_instance
from gpueval.limits import Limits, use_limits

BUCKET = 0.25  # seconds per concurrency bucket


def _task_name(task) -> str:
    fn = getattr(task, "func", None) or (task[0] if isinstance(task, tuple) and task else None)
    return getattr(fn, "__name__", type(task).__name__)


def main() -> None:
    threads = int(sys.argv[1])
    root = sys.argv[2] if len(sys.argv) > 2 else "/tmp/gpueval-c600"
    cellmap_600_crop(root)
    gt, pred = da.from_zarr(f"{root}/gt"), da.from_zarr(f"{root}/pred")
    with use_limits(Limits(threads=threads)), Profiler() as prof:
        t0 = time.perf_counter()
        res = score_instance(gt, pred, (8.0,) * 3, CONSTS, device="cpu")
        wall = time.perf_counter() - t0
    print(f"wall {wall:.2f} s, tp {res['tp']} fp {res['fp']} fn {res['fn']}")
    rows = prof.results
    start, stop = min(r.start_time for r in rows), max(r.end_time for r in rows)
    busy: dict[int, float] = collections.defaultdict(float)
    by_function: dict[str, float] = collections.defaultdict(float)
    edges = np.arange(start, stop + BUCKET, BUCKET)
    concurrency = np.zeros(len(edges))
    for r in rows:
        busy[r.worker_id] += r.end_time - r.start_time
        by_function[_task_name(r.task)] += r.end_time - r.start_time
        lo = np.maximum(edges, r.start_time)
        hi = np.minimum(edges + BUCKET, r.end_time)
        concurrency += np.clip(hi - lo, 0, None) / BUCKET
    print(f"profiled span {stop - start:.2f} s; busy per thread",
          [round(v, 2) for v in busy.values()])
    print("concurrency per 0.25 s:", " ".join(f"{c:.1f}" for c in concurrency))
    top = sorted(by_function.items(), key=lambda kv: -kv[1])[:12]
    print("task seconds by function:", {k: round(v, 2) for k, v in top})


if __name__ == "__main__":
    main()
