"""``cellmap_600`` at 1 and 2 threads, 3 rounds in one process: per task kind, the summed wall
time and thread CPU time (``time.thread_time``) of the scorer's chunk and global tasks (issue
#18: where the 1 -> 2 threads efficiency goes). Wall above CPU is waiting (the GIL, a core);
CPU growing with threads is contention; the run's wall above the tasks' sum is reading,
scheduling and the graph.

Usage: ``PYTHONPATH=$PWD python benchmarks/c600_task_clock.py [ROUNDS]``
"""

from __future__ import annotations

import collections
import functools
import sys
import threading
import time

from gpueval.bench.cellmap import bench_cellmap_600
from gpueval.challenges.cellmap import scoring_2026
from gpueval.kernels import components
from gpueval.limits import Limits, use_limits

#: the task functions timed, by module (looked up when the graph is built, so patched first)
TASKS = {scoring_2026: ("_stats_chunk_carried", "_hausdorff_chunk", "_hausdorff_assemble",
                        "_plan_instance", "_finish_instance"),
         components: ("_label_task", "_edges_task", "_merge_tables")}

_clock: dict[str, list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
_lock = threading.Lock()


def _timed(name: str, inner):
    @functools.wraps(inner)
    def timed(*args, **kwargs):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
            with _lock:
                _clock[name][0] += wall
                _clock[name][1] += cpu
    return timed


def main(rounds: int) -> None:
    for module, names in TASKS.items():
        for name in names:
            setattr(module, name, _timed(name, getattr(module, name)))
    for rnd in range(rounds):
        for threads in (1, 2):
            _clock.clear()
            with use_limits(Limits(threads=threads)):
                rec = bench_cellmap_600("cpu", 1.0)
            wall = sum(w for w, _ in _clock.values())
            cpu = sum(c for _, c in _clock.values())
            kinds = {k: (round(w, 2), round(c, 2))
                     for k, (w, c) in sorted(_clock.items(), key=lambda kv: -kv[1][0])}
            print(f"round {rnd} threads {threads}: run {rec['seconds']:.2f} s, tasks' wall "
                  f"{wall:.2f} s, tasks' CPU {cpu:.2f} s; (wall, CPU) per kind {kinds}",
                  flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
