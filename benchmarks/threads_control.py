"""How well this machine itself scales from 1 to 2 threads, measured beside gpueval's runs.

Three GIL-free NumPy controls, each timed with a pool of 1 and then 2 threads (issue #18's
efficiency goals are read against them: a shared VM whose second vCPU is busy, or whose
memory bandwidth is the limit, cannot give 2x to anything):

* ``sort``: ``np.sort`` of sixteen 4 M float64 arrays (compute-bound; sorts/s);
* ``stream``: eight tasks adding 1 to a 64 MiB uint32 array 20 times (memory-bound, far
  beyond the caches; seconds);
* ``cached``: the same work on 256 KiB arrays (cache-resident; seconds).

Usage: ``python benchmarks/threads_control.py [OUT.json]`` (prints one line per control).
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def _sort(arrays: list[np.ndarray]):
    def task(i: int) -> None:
        np.sort(arrays[i % len(arrays)])
    return task, 16


def _adds(nbytes: int, repeats: int):
    def task(_i: int) -> None:
        a = np.ones(nbytes // 4, np.uint32)
        b = np.empty_like(a)
        for _ in range(repeats):
            np.add(a, 1, out=b)
            np.add(b, 1, out=a)
    return task, 8


def _timed(task, n_tasks: int, threads: int) -> float:
    with ThreadPoolExecutor(threads) as ex:
        t0 = time.perf_counter()
        list(ex.map(task, range(n_tasks)))
        return time.perf_counter() - t0


def main() -> None:
    rng = np.random.default_rng(0)
    controls = {"sort": _sort([rng.random(4_000_000) for _ in range(8)]),
                "stream": _adds(64 << 20, 10),
                "cached": _adds(256 << 10, 2560)}
    out = {"cores": os.cpu_count(), "load_before": os.getloadavg()[0]}
    for name, (task, n_tasks) in controls.items():
        one, two = _timed(task, n_tasks, 1), _timed(task, n_tasks, 2)
        out[name] = {"seconds_1": one, "seconds_2": two, "speedup": one / two}
        print(f"{name:7s} 1 thread {one:.3f} s, 2 threads {two:.3f} s: {one / two:.2f}x",
              flush=True)
    out["load_after"] = os.getloadavg()[0]
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
