"""cc3d vs the GIL-free connected components kernel (``gpueval/kernels/cc_nogil.py``), per call
and beside other threads (issue #18, session 8).

For each volume — (a) random 256³ uint32 multi-label noise (40 % foreground, ids 1..49: what
``gil_probe.py`` labels), (b) a 256³ chunk of ``cellmap_dense`` (the ellipsoids of
``gpueval.bench.dense``, chunk (1, 1, 1) of the 1024³ prediction), (c) the same chunk as a
uint8 semantic mask, (d) the middle 256³ chunk of ``cellmap_600``'s prediction (sparse: ~1 %
foreground, what that workload's label tasks see) — it measures, cc3d and the kernel
alternating in every repetition:

* **one call**: CPU seconds (``time.process_time``) of one call, min over repetitions;
* **probe**: the rate of a pure-Python counting thread beside calls made back to back,
  relative to its rate beside ``time.sleep`` (``gil_probe.probe_rate``): ~1 = the call lets
  other Python threads run, ~0 = it holds the GIL;
* **two threads**: wall seconds of two calls at once in two threads, against the same two
  calls one after the other (min over repetitions; 2.0× would be perfect on two free cores).

Both outputs are checked equal (voxels and N) on every volume. The machine is shared: read
the numbers against the load average in the record, and prefer the minima.

Usage: ``PYTHONPATH=$PWD python benchmarks/cc_nogil_bench.py [--json OUT] [--reps N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cc3d
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gil_probe import probe_rate, threads_wall  # noqa: E402

from gpueval.bench.cellmap import build_crop  # noqa: E402
from gpueval.bench.dense import _cells, _paint  # noqa: E402
from gpueval.kernels.cc_nogil import connected_components as cc_nogil  # noqa: E402

CONNECTIVITY = 26


def volumes() -> dict[str, np.ndarray]:
    """The four 256³ volumes of the module docstring."""
    rng = np.random.default_rng(0)
    shape = (256, 256, 256)
    noise = (rng.random(shape) < 0.4).astype(np.uint32)
    noise *= rng.integers(1, 50, shape, dtype=np.uint32)
    _, pred = _paint(_cells(1024, 10_000, 5), (256, 256, 256), (512, 512, 512))
    _, crop = build_crop(600, 2000, seed=1)  # cellmap_600's prediction
    return {"random multilabel 256³ uint32": noise,
            "cellmap_dense chunk 256³ uint32": pred,
            "cellmap_dense chunk 256³ uint8 semantic": (pred > 0).astype(np.uint8),
            "cellmap_600 chunk 256³ uint32": np.ascontiguousarray(crop[256:512, 256:512,
                                                                        256:512])}


def kernels() -> dict[str, object]:
    return {"cc3d": lambda a: cc3d.connected_components(a, connectivity=CONNECTIVITY,
                                                        return_N=True),
            "cc_nogil": lambda a: cc_nogil(a, CONNECTIVITY)}


def cpu_seconds(call) -> float:
    t0 = time.process_time()
    call()
    return time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the record here")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per measurement")
    parser.add_argument("--probe-seconds", type=float, default=1.5)
    args = parser.parse_args()
    loads = [os.getloadavg()]
    vols = volumes()
    ks = kernels()
    for a in vols.values():  # compile / load the Numba cache, and check equality once
        (o1, n1), (o2, n2) = (k(a) for k in ks.values())
        assert n1 == n2 and np.array_equal(o1, o2), "cc_nogil differs from cc3d"
    idle, _ = probe_rate(lambda: time.sleep(0.05), args.probe_seconds)
    rows = []
    for vname, a in vols.items():
        per = {k: {"cpu": [], "serial_wall": [], "two_threads_wall": []} for k in ks}
        for _ in range(args.reps):  # alternate the kernels in every repetition
            for kname, k in ks.items():
                per[kname]["cpu"].append(cpu_seconds(lambda k=k, a=a: k(a)))
                per[kname]["serial_wall"].append(threads_wall(lambda k=k, a=a: k(a), 2, 1))
                per[kname]["two_threads_wall"].append(threads_wall(lambda k=k, a=a: k(a), 2, 2))
        for kname, k in ks.items():
            rate, calls = probe_rate(lambda k=k, a=a: k(a), args.probe_seconds)
            m = {key: min(v) for key, v in per[kname].items()}
            row = {"volume": vname, "kernel": kname, "foreground": float((a != 0).mean()),
                   "cpu_seconds_min": m["cpu"], "serial_two_calls_wall_min": m["serial_wall"],
                   "two_threads_two_calls_wall_min": m["two_threads_wall"],
                   "threads_speedup": m["serial_wall"] / m["two_threads_wall"],
                   "probe_rate": rate / idle, "probe_calls": calls, "samples": per[kname]}
            rows.append(row)
            print(f"{vname:42s} {kname:9s} cpu {m['cpu']:.3f} s  serial x2 "
                  f"{m['serial_wall']:.3f} s  2 threads {m['two_threads_wall']:.3f} s "
                  f"({row['threads_speedup']:.2f}x)  probe {row['probe_rate']:.2f}", flush=True)
        loads.append(os.getloadavg())
    if args.json:
        record = {"machine": {"cpu": platform.processor() or platform.machine(),
                              "cores": os.cpu_count(), "python": platform.python_version(),
                              "cc3d": getattr(cc3d, "__version__", None)},
                  "load_average_during": loads, "connectivity": CONNECTIVITY,
                  "reps": args.reps, "rows": rows}
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=1)


if __name__ == "__main__":
    main()
