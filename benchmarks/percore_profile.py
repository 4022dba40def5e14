"""Per-core CPU profile of one dense CellMap instance label (issue #18, session 7).

Builds ``cellmap_dense``'s synthetic crop once (``--scale``, default 0.5 = 512³) under
``--data``, then scores the uint32 instance label with the sync scheduler (one thread) and
prints the CPU seconds, MVx/s per core and a cProfile summary; ``--out`` writes the result
(tp/fp/fn and every per-GT Hausdorff value) for a bit-identity comparison.

    PYTHONPATH=$PWD python benchmarks/percore_profile.py --data /tmp/dense512 --out r.json
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time

import numpy as np


def main() -> None:
    from gpueval.bench import dense
    from gpueval.challenges.cellmap.scoring_2026 import score_instance
    from gpueval.limits import Limits, use_limits

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--out")
    ap.add_argument("--profile", type=int, default=0, help="print the top N functions")
    args = ap.parse_args()
    side = max(64, int(round(1024 * args.scale)))
    n = max(8, int(round(1e4 * (side / 1024) ** 3)))
    if not os.path.isdir(os.path.join(args.data, "gt")):
        dense._build_dense(args.data, side, n, 5)
    gt, pred = (dense._open(f"{args.data}/{k}", None) for k in ("gt", "pred"))
    vs = (8.0, 8.0, 8.0)
    prof = cProfile.Profile() if args.profile else None
    with use_limits(Limits(threads=1)):
        c0, t0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        r = score_instance(gt, pred, vs, dense.CONSTS, scheduler="sync")
        if prof:
            prof.disable()
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    det = r["_detail"]
    label_vox = int(np.prod(gt.shape))
    print(f"cpu {cpu:.2f} s wall {wall:.2f} s  {label_vox / cpu / 1e6:.1f} MVx/s per core "
          f"(label voxels)  load {os.getloadavg()[0]:.2f}")
    print({k: r[k] for k in ("tp", "fp", "fn", "n_hausdorff", "hausdorff_norm_sum")})
    if args.out:
        hd = det["hausdorff_per_gt"]
        with open(args.out, "w") as f:
            json.dump({"result": {k: r[k] for k in ("tp", "fp", "fn", "n_hausdorff",
                                                     "hausdorff_norm_sum", "status")},
                       "hausdorff_per_gt": np.asarray(hd, np.float32).view(np.uint32).tolist(),
                       "truth_ids": np.asarray(det["truth_ids"]).tolist()}, f)
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
