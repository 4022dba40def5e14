"""The two Hausdorff passes of ``cellmap_600`` alone, at 1 and 2 threads (issue #18, session 10).

One score (one thread, the synchronous scheduler) captures the inputs of every
``_hausdorff_chunk`` task and the truth chunk and local labels each one takes from the carry;
then the chunk tasks and the assembling tasks run again from those inputs in a thread pool of
1 and of 2 threads, alternating, ``ROUNDS`` times (reads, labelling and statistics left out,
so the passes' own scaling shows). Every repeat must give the score's
``hausdorff_norm_sum``. Prints the medians: wall and process CPU seconds of each pass at
each thread count, and ``t1 / (2 t2)``.

Usage: ``PYTHONPATH=$PWD python benchmarks/c600_threads_phases.py [ROUNDS] [CROP]``
(``CROP`` as in ``c600_threads_ab.py``, built there when missing).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gpueval.bench.cellmap import CONSTS, _open_label, cellmap_600_crop
from gpueval.challenges.cellmap import scoring_2026 as s26
from gpueval.heap import keep_freed_memory
from gpueval.limits import Limits, use_limits


def capture(crop: str) -> tuple[list[tuple], dict, dict]:
    """The chunk tasks' arguments, their carried chunks, and the score."""
    calls, chunks = [], {}
    truth_and_local, chunk_task = s26._truth_and_local, s26._hausdorff_chunk

    def keep_chunks(holder, cell, index, carry, *, last):
        out = truth_and_local(holder, cell, index, carry, last=last)
        if last:
            chunks[index] = (out[0].copy(), out[1].copy())
        return out

    def keep_call(*args):
        calls.append(args)
        return chunk_task(*args)

    s26._truth_and_local, s26._hausdorff_chunk = keep_chunks, keep_call
    try:
        gt, pred = (_open_label(f"{crop}/{name}", 256) for name in ("gt", "pred"))
        with use_limits(Limits(threads=1)):
            score = s26.score_instance(gt, pred, (8.0,) * 3, CONSTS, device="cpu",
                                       scheduler="sync")
    finally:
        s26._truth_and_local, s26._hausdorff_chunk = truth_and_local, chunk_task
    return calls, chunks, score


def passes(calls, chunks, score, threads: int) -> tuple[float, float, float, float]:
    """(chunk pass wall, CPU, assembling pass wall, CPU) seconds at ``threads``."""
    plan, vs = calls[0][0], calls[0][6]
    saved = s26._truth_and_local
    s26._truth_and_local = lambda holder, cell, index, carry, *, last: (*chunks[index], 0.0)
    try:
        with ThreadPoolExecutor(threads) as pool:
            t0, c0 = time.perf_counter(), time.process_time()
            results = list(pool.map(lambda args: s26._hausdorff_chunk(*args), calls))
            t1, c1 = time.perf_counter(), time.process_time()
            buckets = list(pool.map(lambda j: s26._hausdorff_assemble(plan, j, results, vs),
                                    range(len(plan["buckets"]))))
            t2, c2 = time.perf_counter(), time.process_time()
    finally:
        s26._truth_and_local = saved
    out = s26._finish_instance(plan, results, buckets, vs, CONSTS)
    if out["hausdorff_norm_sum"] != score["hausdorff_norm_sum"]:
        raise AssertionError(f"{out['hausdorff_norm_sum']} != {score['hausdorff_norm_sum']}")
    return t1 - t0, c1 - c0, t2 - t1, c2 - c1


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    crop = sys.argv[2] if len(sys.argv) > 2 else "/tmp/c600"
    keep_freed_memory()
    cellmap_600_crop(crop)
    calls, chunks, score = capture(crop)
    passes(calls, chunks, score, 1)
    passes(calls, chunks, score, 2)
    rows: dict[int, list] = {1: [], 2: []}
    for _ in range(rounds):
        for threads in (1, 2):
            rows[threads].append(passes(calls, chunks, score, threads))
    med = {n: np.median(np.array(r), axis=0) for n, r in rows.items()}
    for n, m in med.items():
        print(f"threads {n}: chunk pass {m[0]:.3f} s ({m[1]:.3f} CPU-s), assembling pass "
              f"{m[2]:.3f} s ({m[3]:.3f} CPU-s)")
    one, two = med[1], med[2]
    print(f"1 -> 2 threads: chunk pass {one[0] / (2 * two[0]):.1%}, assembling pass "
          f"{one[2] / (2 * two[2]):.1%}, both {(one[0] + one[2]) / (2 * (two[0] + two[2])):.1%}"
          f"; hausdorff_norm_sum {score['hausdorff_norm_sum']}, load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
