"""Workload ``cellmap_instance``: one 256³ instance crop at 8 nm with 300 GT instances.

The official ``score_instance`` takes 486 s and 13.4 GB on 2 cores for this size
(``cellmap.md`` §7: ≈ two whole-crop EDTs per GT instance). gpueval scores the same crop
chunk by chunk (128³ chunks): chunked 26-connected relabelling, chunked contingency,
min-cost-flow-equivalent matching, and one bounding-box-sized Hausdorff task per instance.

Data: random balls (radius 4–9 voxels) as GT ids 1..300; the prediction moves most of them
by a voxel or two, drops some, adds extra blobs and splits a few in two. ``check`` compares
the chunked result with the same scorer run on one whole-crop chunk (identical numbers).
"""

from __future__ import annotations

import time

import dask.array as da
import numpy as np

from gpueval.bench import workload

CONSTS = dict(final_instance_ratio_cutoff=10, initial_instance_ratio_cutoff=50,
              instance_ratio_factor=5, max_overlap_edges=5_000_000, mcmf_cost_scale=1_000_000)


def build_crop(side: int, n_instances: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A GT id volume and an imperfect prediction of it (uint32)."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((side,) * 3, np.uint32)
    pred = np.zeros_like(gt)
    r_max = max(2, min(9, side // 12))
    for i in range(1, n_instances + 1):
        r = int(rng.integers(max(1, r_max // 2), r_max + 1))
        c = rng.integers(r, side - r, 3)
        sl = tuple(slice(int(x - r), int(x + r + 1)) for x in c)
        zz, yy, xx = np.ogrid[-r:r + 1, -r:r + 1, -r:r + 1]
        ball = zz * zz + yy * yy + xx * xx <= r * r
        gt[sl][ball] = i
        roll = rng.random()
        if roll < 0.05:
            continue  # missed instance
        shift = rng.integers(-2, 3, 3)
        c2 = np.clip(c + shift, r, side - r - 1)
        sl2 = tuple(slice(int(x - r), int(x + r + 1)) for x in c2)
        pid = int(rng.integers(1, 2**31))
        pred[sl2][ball] = pid
        if roll > 0.95:  # split: second half another id
            half = (slice(sl2[0].start, int(c2[0])),) + sl2[1:]
            pred[half][ball[: r]] = pid + 1
    for _ in range(max(1, n_instances // 20)):  # extra blobs
        c = rng.integers(3, side - 3, 3)
        pred[tuple(slice(int(x - 2), int(x + 3)) for x in c)] = int(rng.integers(1, 2**31))
    return gt, pred


@workload("cellmap_instance",
          "CellMap score_instance: 256^3 crop at 8 nm, 300 GT instances, 128^3 chunks")
def bench_cellmap_instance(device: str, scale: float) -> dict:
    from gpueval.challenges._cellmap_scoring import score_instance

    side = max(32, int(round(256 * scale ** (1 / 3))))
    n = max(5, int(round(300 * scale)))
    gt, pred = build_crop(side, n)
    chunk = min(128, side)
    g = da.from_array(gt, chunks=chunk)
    p = da.from_array(pred, chunks=chunk)
    t0 = time.perf_counter()
    res = score_instance(g, p, (8.0, 8.0, 8.0), CONSTS, device=device)
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    ref = score_instance(gt, pred, (8.0, 8.0, 8.0), CONSTS, device=device)
    ref_seconds = time.perf_counter() - t1
    keys = ("tp", "fp", "fn", "n_hausdorff", "status")
    same = all(res[k] == ref[k] for k in keys) and \
        abs(res["hausdorff_norm_sum"] - ref["hausdorff_norm_sum"]) <= 1e-9
    out = {k: res[k] for k in (*keys, "hausdorff_norm_sum")}
    return {"voxels": int(gt.size), "seconds": seconds, "result": out,
            "reference": "same scorer on one whole-crop chunk (cc3d whole volume)",
            "reference_seconds": ref_seconds, "check": bool(same),
            "notes": f"{side}^3 uint32, {n} GT instances, {chunk}^3 chunks; official "
                     "score_instance 486 s / 13.4 GB at scale 1 (2 cores, spec §7)"}
