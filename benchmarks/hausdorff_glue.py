"""The per-pair glue of the CellMap 2026 Hausdorff stage, alone (issue #18, session 9, h9-p).

Scores the uint32 instance label of the dense crop under ``--data`` (built by
``benchmarks/percore_profile.py``) ``--repeat`` times in one process (1 thread, sync) and
prints, per run, the CPU seconds (``time.process_time``) of the Hausdorff stage's tasks
(``scoring_2026._hausdorff_chunk`` and ``_hausdorff_assemble``), of the pair distances inside
them (``_pair_hausdorff``), and their difference: the glue (masks, packing, unpacking, the
rules around the distance). The first run includes any Numba compilation; read the minimum.
Works on any checkout on ``PYTHONPATH`` (it wraps the module's functions by name):

    PYTHONPATH=/path/to/checkout python benchmarks/hausdorff_glue.py --data /tmp/dense512v2
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import time

import numpy as np


def main() -> None:
    from percore_profile import _open_label  # benchmarks/ is the script's folder

    from gpueval.bench import dense
    from gpueval.challenges.cellmap import scoring_2026 as s
    from gpueval.limits import Limits, use_limits

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the dense crop (percore_profile.py --data)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    spent = {"stage": 0.0, "pairs": 0.0}
    depth = [0]

    def wrap(func, key):
        @functools.wraps(func)
        def timed(*a, **k):
            if depth[0]:  # a pair inside a stage task is counted once, as a pair
                return func(*a, **k)
            depth[0] += 1
            c0 = time.process_time()
            try:
                return func(*a, **k)
            finally:
                spent[key] += time.process_time() - c0
                depth[0] -= 1
        return timed

    def wrap_pair(func):
        @functools.wraps(func)
        def timed(*a, **k):
            c0 = time.process_time()
            try:
                return func(*a, **k)
            finally:
                spent["pairs"] += time.process_time() - c0
        return timed

    s._hausdorff_chunk = wrap(s._hausdorff_chunk, "stage")
    s._hausdorff_assemble = wrap(s._hausdorff_assemble, "stage")
    s._pair_hausdorff = wrap_pair(s._pair_hausdorff)
    gt, pred = (_open_label(f"{args.data}/{k}", "gpueval") for k in ("gt", "pred"))
    for _ in range(args.repeat):
        spent.update(stage=0.0, pairs=0.0)
        with use_limits(Limits(threads=1)):
            c0 = time.process_time()
            r = s.score_instance(gt, pred, (8.0, 8.0, 8.0), dense.CONSTS, scheduler="sync")
            total = time.process_time() - c0
        hd = np.asarray(r["_detail"]["hausdorff_per_gt"], np.float32)
        print(f"scoring {total:.3f} CPU-s  stage {spent['stage']:.3f}  pairs "
              f"{spent['pairs']:.3f}  glue {spent['stage'] - spent['pairs']:.3f}  "
              f"tp {r['tp']} fp {r['fp']} fn {r['fn']}  "
              f"md5 {hashlib.md5(hd.tobytes()).hexdigest()[:12]}", flush=True)


if __name__ == "__main__":
    main()
