"""Which kernels of the CellMap chunk passes hold the GIL (issue #18: thread scaling).

A probe thread counts in a pure-Python loop while the main thread calls a kernel again and
again; the probe's rate beside the kernel, relative to its rate beside ``time.sleep``, says how
much of the time the kernel lets other Python threads run: ~1 = it releases the GIL (two
threads can overlap it), ~0 = it holds the GIL for its whole run (threads serialise on it and
only processes, ``--workers N``, run it in parallel). On a busy machine the probe also loses
its core to other processes: read the rows against the ``np.sort`` control of the same run.

Usage: ``python benchmarks/gil_probe.py [--json OUT]`` (about 20 s on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time

import numpy as np


def threads_wall(fn, calls: int, threads: int) -> float:
    """Wall seconds of ``calls`` calls of ``fn`` shared among ``threads`` threads."""

    def work() -> None:
        for _ in range(calls // threads):
            fn()
    ts = [threading.Thread(target=work) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.perf_counter() - t0


def probe_rate(call, seconds: float = 1.0) -> tuple[float, int]:
    """(probe counts per second while ``call`` runs repeatedly for ``seconds``, calls made)."""
    stop = threading.Event()
    count = 0

    def counter() -> None:
        nonlocal count
        while not stop.is_set():
            count += 1

    thread = threading.Thread(target=counter)
    t0 = time.perf_counter()
    thread.start()
    calls = 0
    while time.perf_counter() - t0 < seconds:
        call()
        calls += 1
    elapsed = time.perf_counter() - t0
    stop.set()
    thread.join()
    return count / elapsed, calls


def kernels() -> dict[str, object]:
    """The per-chunk and per-pair calls of a CellMap instance score, on typical inputs."""
    import cc3d
    import edt
    import fastremap
    import scipy.ndimage as ndi
    from numcodecs import Zstd

    from gpueval.kernels.regions import chunk_region_stats

    rng = np.random.default_rng(0)
    labels = (rng.random((128, 128, 128)) < 0.4).astype(np.uint32)
    labels *= rng.integers(1, 50, labels.shape, dtype=np.uint32)
    box = np.zeros((40, 40, 40), bool)
    box[8:32, 10:30, 6:34] = True
    zstd = Zstd(level=1)  # the carry's codec (kernels/throughput_carry.py)
    packed = zstd.encode(labels)
    chunk_region_stats(labels)  # compile / load the Numba cache outside the timing
    return {
        "np.sort (control: releases the GIL)": lambda: np.sort(rng.random(1_000_000)),
        "edt.edt 40³ box": lambda: edt.edt(~box, anisotropy=(8.0, 8.0, 8.0),
                                           black_border=False),
        "scipy distance_transform_edt 40³": lambda: ndi.distance_transform_edt(
            ~box, sampling=(8.0, 8.0, 8.0)),
        "cc3d.connected_components 128³": lambda: cc3d.connected_components(labels),
        "fastremap.renumber 128³": lambda: fastremap.renumber(labels),
        "zstd compress 128³ uint32 (numcodecs)": lambda: zstd.encode(labels),
        "zstd decompress 128³ uint32 (numcodecs)": lambda: zstd.decode(packed),
        "regions.chunk_region_stats 128³ (Numba)": lambda: chunk_region_stats(labels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the rows and the machine here")
    parser.add_argument("--seconds", type=float, default=1.5, help="time per kernel")
    args = parser.parse_args()
    idle, _ = probe_rate(lambda: time.sleep(0.05), args.seconds)
    rows = []
    for name, call in kernels().items():
        rate, calls = probe_rate(call, args.seconds)
        rows.append({"kernel": name, "probe_rate": rate / idle, "calls": calls,
                     "seconds_per_call": args.seconds / max(calls, 1)})
        print(f"{name:42s} probe at {rate / idle:5.2f} of idle  "
              f"({args.seconds / max(calls, 1) * 1e3:7.2f} ms per call)")
    if args.json:
        record = {"machine": {"cpu": platform.processor() or platform.machine(),
                              "cores": os.cpu_count(), "load_average": os.getloadavg(),
                              "python": platform.python_version()},
                  "rows": rows}
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=1)


if __name__ == "__main__":
    main()
