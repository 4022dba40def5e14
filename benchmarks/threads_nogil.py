"""1 → 2 threads on one CellMap instance label (issue #18, session 7: EDT without the GIL).

Scores the uint32 instance label of ``cellmap_dense``'s synthetic crop (built by
``benchmarks/percore_profile.py`` under ``--data``), or with ``--crop 600`` the
``cellmap_600`` workload's crop (built under ``--data`` on first use), with Dask's threaded
scheduler at
``limits.threads`` 1 and 2, alternating, and prints wall and CPU seconds per run and the
efficiency ``t1 / (2 · t2)`` of each pair. Run it with ``PYTHONPATH`` at the tree to measure
(any commit: it only calls ``score_instance``).

    PYTHONPATH=$PWD python benchmarks/threads_nogil.py --data /tmp/dense512 --pairs 3
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    from gpueval.bench import dense
    from gpueval.challenges.cellmap.scoring_2026 import score_instance
    from gpueval.limits import Limits, use_limits

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--crop", choices=("dense", "600"), default="dense")
    args = ap.parse_args()
    if args.crop == "600":
        import dask.array as da

        from gpueval.bench import cellmap

        cellmap.cellmap_600_crop(args.data)
        gt, pred = (da.from_zarr(f"{args.data}/{k}") for k in ("gt", "pred"))
        consts = cellmap.CONSTS
    else:
        gt, pred = (dense._open(f"{args.data}/{k}", None) for k in ("gt", "pred"))
        consts = dense.CONSTS
    vs = (8.0, 8.0, 8.0)
    with use_limits(Limits(threads=1)):  # warm: Numba cache, imports, page cache
        score_instance(gt, pred, vs, consts)
    for i in range(args.pairs):
        wall = {}
        for threads in (1, 2):
            load = os.getloadavg()[0]
            with use_limits(Limits(threads=threads)):
                c0, t0 = time.process_time(), time.perf_counter()
                r = score_instance(gt, pred, vs, consts)
                cpu, wall[threads] = time.process_time() - c0, time.perf_counter() - t0
            print(f"pair {i + 1} threads {threads}: wall {wall[threads]:.2f} s cpu {cpu:.2f} s "
                  f"load {load:.2f} tp {r['tp']} fp {r['fp']} fn {r['fn']} "
                  f"hd_sum {r['hausdorff_norm_sum']!r}")
        print(f"pair {i + 1} efficiency 1 -> 2 threads: {wall[1] / (2 * wall[2]):.0%}")


if __name__ == "__main__":
    main()
