"""How long ``cellmap_600``'s instance graph takes to build before its compute, and the score
at 1 and 2 threads in CPU and wall seconds (issue #18, session 9: the serial part of the
1 → 2 threads efficiency).

Builds the crop once into DIR (``gpueval.bench.cellmap.cellmap_600_crop``), opens it as the bench
does (gpueval's own zarr reader, 256³ chunks), then in one process, ROUNDS times: the graph
build alone (``scoring_2026.instance_delayed``, wall and process CPU seconds), and the score
(``score_instance``) at 1 and at 2 threads, alternating. ``--profile`` prints the top of a
cProfile of one graph build instead; ``--build-only`` times ROUNDS graph builds alone.

Usage: ``PYTHONPATH=$PWD python benchmarks/graph_build.py [DIR] [ROUNDS]
[--profile | --build-only]``
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import sys
import time

from gpueval.bench.cellmap import CONSTS, _open_label, cellmap_600_crop
from gpueval.challenges.cellmap.scoring_2026 import instance_delayed, score_instance
from gpueval.kernels import throughput_carry
from gpueval.limits import Limits, use_limits


def _build(gt, pred):
    with throughput_carry.scope():
        return instance_delayed(gt, pred, (8.0,) * 3, CONSTS, device="cpu")


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    root = args[0] if args else "/tmp/gpueval-c600"
    rounds = int(args[1]) if len(args) > 1 else 3
    cellmap_600_crop(root)
    gt, pred = (_open_label(f"{root}/{name}", 256) for name in ("gt", "pred"))
    _build(gt, pred)  # warm: imports, first-call caches
    if "--build-only" in sys.argv:  # the graph build alone, `rounds` times: CPU seconds
        cpu = []
        for _ in range(rounds):
            c0 = time.process_time()
            _build(gt, pred)
            cpu.append(time.process_time() - c0)
        print(json.dumps({"graph_build_cpu": sorted(cpu)}))
        return
    if "--profile" in sys.argv:
        prof = cProfile.Profile()
        prof.enable()
        _build(gt, pred)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        return
    for r in range(rounds):
        c0, t0 = time.process_time(), time.perf_counter()
        _build(gt, pred)
        build = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}
        rec = {"round": r, "graph_build": build}
        for threads in (1, 2):
            c0, t0 = time.process_time(), time.perf_counter()
            with use_limits(Limits(threads=threads)):
                res = score_instance(gt, pred, (8.0,) * 3, CONSTS, device="cpu")
            rec[f"threads_{threads}"] = {"wall": time.perf_counter() - t0,
                                         "cpu": time.process_time() - c0,
                                         "tp": res["tp"], "fp": res["fp"], "fn": res["fn"],
                                         "hausdorff_norm_sum": res["hausdorff_norm_sum"]}
        rec["efficiency"] = rec["threads_1"]["wall"] / (2 * rec["threads_2"]["wall"])
        rec["load"] = os.getloadavg()
        print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
