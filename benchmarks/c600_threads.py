"""``cellmap_600`` at 1 and 2 threads, alternating in one process (issue #18: parallel
efficiency 1 → 2 threads), optionally with each connected-components labeller.

Every round runs the ``cellmap_600`` workload (``gpueval.bench.cellmap.bench_cellmap_600``:
the crop is built in a child process, ``seconds`` is the score alone) at 1 thread and then at
2, once per labeller: ``nogil`` is gpueval's (``kernels/cc_nogil.py``), ``cc3d`` puts
``cc3d.connected_components`` back in its place for the run (session 7's labeller; equal ids,
so equal scores). Each record keeps the wall seconds, the process CPU seconds including the
build's parent side, the summed wall and thread-CPU time of the ``_label_task`` chunk tasks
(over both threads),
the result and the load average; the efficiency is ``t1 / (2 · t2)`` of the same round.

Usage: ``PYTHONPATH=$PWD python benchmarks/c600_threads.py OUT.json [ROUNDS] [LABELLERS]``
(``LABELLERS``: comma-separated, default ``nogil``; e.g. ``nogil,cc3d`` to alternate).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
import types

import cc3d
import fastremap
import numpy as np

from gpueval.bench.cellmap import bench_cellmap_600
from gpueval.kernels import components
from gpueval.limits import Limits, use_limits


def _cc3d_labeller(labels: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """cc3d as ``components._cc3d`` called it before session 8 (uint64 ≥ 2⁶³ renumbered)."""
    if labels.dtype == np.uint64 and labels.size and labels.max() >= np.uint64(2**63):
        labels, _ = fastremap.renumber(labels, start=1, preserve_zero=True, in_place=False)
    out, n = cc3d.connected_components(labels, connectivity=connectivity, return_N=True)
    return out, int(n)


LABELLERS = {"nogil": components.cc_nogil,
             "cc3d": types.SimpleNamespace(connected_components=_cc3d_labeller)}


class _TaskClock:
    """Sums the wall time of every ``components._label_task`` call (all threads), and the
    CPU time of the threads running them (``time.thread_time``: time spent waiting for the
    GIL or a core is in the first, not the second)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.calls = 0
        self._lock = threading.Lock()
        self._inner = components._label_task

    def __call__(self, *args, **kwargs):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return self._inner(*args, **kwargs)
        finally:
            with self._lock:
                self.seconds += time.perf_counter() - t0
                self.cpu_seconds += time.thread_time() - c0
                self.calls += 1


def run(threads: int, labeller: str) -> dict:
    clock = _TaskClock()
    saved = components.cc_nogil, components._label_task
    components.cc_nogil, components._label_task = LABELLERS[labeller], clock
    gc.collect()  # as c600_threads_ab.py: no collection carried over from the last run
    c0 = time.process_time()
    try:
        with use_limits(Limits(threads=threads)):
            rec = bench_cellmap_600("cpu", 1.0)
    finally:
        components.cc_nogil, components._label_task = saved
    return {"seconds": rec["seconds"], "cpu_seconds_incl_build": time.process_time() - c0,
            "label_task_seconds": clock.seconds, "label_task_cpu_seconds": clock.cpu_seconds,
            "label_tasks": clock.calls,
            "result": rec["result"], "check": rec["check"],
            "peak_rss_bytes": rec["peak_rss_bytes"], "load": os.getloadavg()}


def main() -> None:
    out_path = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    labellers = sys.argv[3].split(",") if len(sys.argv) > 3 else ["nogil"]
    out: dict = {lab: {"1": [], "2": []} for lab in labellers}
    for _ in range(rounds):
        for lab in labellers:
            for n in (1, 2):
                rec = run(n, lab)
                out[lab][str(n)].append(rec)
                print(lab, n, round(rec["seconds"], 2), "label_task",
                      round(rec["label_task_seconds"], 2), "cpu",
                      round(rec["label_task_cpu_seconds"], 2), rec["result"],
                      "load", rec["load"][0], flush=True)
            one, two = out[lab]["1"][-1]["seconds"], out[lab]["2"][-1]["seconds"]
            print(f"{lab}: efficiency 1 -> 2 threads {one / (2 * two):.0%}", flush=True)
    with open(out_path, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
