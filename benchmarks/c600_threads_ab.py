"""``cellmap_600`` scored at 1 and then 2 threads, alternating in one process, from a crop
built once on disk (issue #18: parallel efficiency 1 -> 2 threads, session 10).

Unlike ``c600_threads.py`` (which builds the crop in a child process for every run), the crop
is read from ``CROP`` (built there by ``gpueval.bench.cellmap.cellmap_600_crop`` when missing), so a
before/after comparison interleaves two checkouts run by one driver, e.g.::

    git archive main | tar -x -C /tmp/base
    for i in 1 2 3; do for d in /tmp/base $PWD; do
      (cd $d && MALLOC_ARENA_MAX=1 PYTHONPATH=$d python $OLDPWD/benchmarks/c600_threads_ab.py \\
        $(basename $d) 3 /tmp/c600) >> out.jsonl
    done; done

Each process calls :func:`gpueval.heap.keep_freed_memory` first (as the command line does),
runs one 1-thread and one 2-thread score to warm up (Numba caches, the first use of a second
thread), then ``ROUNDS`` pairs; it prints one JSON line per pair: wall seconds, process user
and system CPU seconds of each run, ``t1 / (2 t2)``, the scores and the load average.

A full garbage collection (~40 ms here: every object of the imported modules is scanned)
falls in every other score, so with runs alternating 1, 2, 1, 2 threads it fell in the
1-thread run every time (session 11: ``gc.callbacks`` showed one in each ``t1``, none in any
``t2``; in the order 2, 1 it moved to ``t2``), ~2 points of efficiency either way. Each run
therefore starts after ``gc.collect()``, outside its timing, so whether a collection falls in
a run depends on that run's own allocations.

Usage: ``PYTHONPATH=$PWD python benchmarks/c600_threads_ab.py TAG [ROUNDS] [CROP]``
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time

from gpueval.bench.cellmap import cellmap_600_crop
from gpueval.heap import keep_freed_memory


def _score(crop: str, threads: int) -> tuple[float, float, float, dict]:
    from gpueval.bench.cellmap import CONSTS, _open_label
    from gpueval.challenges.cellmap.scoring_2026 import score_instance
    from gpueval.limits import Limits, use_limits

    gt, pred = (_open_label(f"{crop}/{name}", 256) for name in ("gt", "pred"))
    gc.collect()  # every run starts with empty GC generations (see the module text)
    with use_limits(Limits(threads=threads)):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        res = score_instance(gt, pred, (8.0,) * 3, CONSTS, device="cpu")
        seconds = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
    return seconds, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime, res


def main() -> None:
    tag = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    crop = sys.argv[3] if len(sys.argv) > 3 else "/tmp/c600"
    keep_freed_memory()
    cellmap_600_crop(crop)
    _score(crop, 1)
    _score(crop, 2)
    for _ in range(rounds):
        one, two = _score(crop, 1), _score(crop, 2)
        print(json.dumps({
            "tag": tag, "t1": one[0], "t2": two[0], "efficiency": one[0] / (2 * two[0]),
            "user1": one[1], "sys1": one[2], "user2": two[1], "sys2": two[2],
            **{k: one[3][k] for k in ("tp", "fp", "fn")},
            "hausdorff_norm_sum_1": one[3]["hausdorff_norm_sum"],
            "hausdorff_norm_sum_2": two[3]["hausdorff_norm_sum"],
            "load": os.getloadavg()[0]}), flush=True)


if __name__ == "__main__":
    main()
