"""CellMap workloads.

* ``cellmap_instance``: one 256³ instance crop at 8 nm with 300 GT instances. The official
  ``score_instance`` takes 486 s and 13.4 GB on 2 cores for this size (``cellmap.md`` §7: ≈
  two whole-crop EDTs per GT instance). gpueval scores the same crop chunk by chunk (128³
  chunks): chunked 26-connected relabelling, chunked contingency, min-cost-flow-equivalent
  matching, and bounding-box-sized Hausdorff tasks. ``check`` compares the chunked result with
  the same scorer run on one whole-crop chunk (identical numbers).
* ``cellmap_600``: the typical test crop, 600³ with 2,000 instances, read from zarr v2 through
  gpueval's own reader (as ``gpueval score cellmap`` reads a submission).
* ``cellmap_ooc``: a whole submission in the official zarr v2 layout, 12 crops of 2048³
  (1.03·10¹¹ voxels, an instance and a semantic label each), mostly never-written chunks,
  scored end to end through :func:`gpueval.api.score` (peak RSS < 4 GiB is part of
  ``check``).

Data: random balls (radius 4–9 voxels) as GT ids; the prediction moves most of them by a
voxel or two, drops some, adds extra blobs and splits a few in two.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import tempfile
import time

import dask.array as da
import numpy as np
import zarr

from gpueval.api import score
from gpueval.bench import workload
from gpueval.challenges.cellmap.scoring_2026 import score_instance, score_semantic
from gpueval.io.arrays import open_volume

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


def _write_zarr(path, data: np.ndarray | None, shape, chunks, dtype, offset=None,
                attrs=None) -> None:
    """A zarr v2 array of ``shape``; ``data`` written at ``offset`` only (the rest of the
    chunks are never written, i.e. the fill value 0, as in a sparse official submission)."""
    a = zarr.create_array(str(path), shape=shape, chunks=chunks, dtype=dtype, zarr_format=2,
                          fill_value=0, config={"write_empty_chunks": False})
    if data is not None:
        off = offset or (0,) * len(shape)
        a[tuple(slice(o, o + s) for o, s in zip(off, data.shape, strict=True))] = data
    a.attrs.update(attrs or {})


def _peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@workload("cellmap_600",
          "CellMap score_instance: one 600^3 test-size crop at 8 nm with 2,000 GT instances, "
          "read from zarr v2 in 256^3 chunks, whole crop as one lazy graph")
def bench_cellmap_600(device: str, scale: float) -> dict:
    """The typical CellMap test crop: 600³ voxels with 2,000 instances, scored from disk.

    ``check``: every GT id is a tp or a fn, every prediction component a tp or a fp, and
    one Hausdorff term per GT id and unmatched component (the exact equality with the
    whole-volume path is the ``cellmap_instance`` workload's and the tests' job).
    """
    side = max(32, int(round(600 * scale ** (1 / 3))))
    n = max(5, int(round(2000 * scale)))
    chunk = min(256, side)
    with tempfile.TemporaryDirectory(prefix="bench-cellmap600-") as tmp:
        # the crop is built and written in a child process, so that this process's peak RSS
        # is the scorer's alone
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(1) as pool:
            n_gt_ids = pool.apply(_build_600, (tmp, side, n, chunk))
        g, p = (_open_label(f"{tmp}/{name}", chunk) for name in ("gt", "pred"))
        t0 = time.perf_counter()
        res = score_instance(g, p, (8.0, 8.0, 8.0), CONSTS, device=device)
        seconds = time.perf_counter() - t0
    d = res.pop("_detail", {})
    keys = ("tp", "fp", "fn", "n_hausdorff", "status")
    ok = (res["status"] == "scored" and res["tp"] + res["fn"] == n_gt_ids
          and res["tp"] + res["fp"] == int(d.get("n_pred_cc", -1))
          and res["n_hausdorff"] == res["tp"] + res["fn"] + res["fp"])
    return {"voxels": side ** 3, "seconds": seconds,
            "result": {k: res[k] for k in (*keys, "hausdorff_norm_sum")},
            "check": bool(ok), "peak_rss_bytes": _peak_rss_bytes(),
            "notes": f"{side}^3 uint32 from zarr, {n} GT instances ({n_gt_ids} ids left after "
                     f"overlaps), {chunk}^3 chunks; seconds exclude writing the zarr (done in a "
                     "child process: peak RSS is the scorer's)"}


def _open_label(path: str, chunk: int) -> da.Array:
    """A zarr v2 label as ``gpueval score cellmap`` reads a submission: gpueval's own reader
    (:func:`gpueval.io.arrays.open_volume`; its direct v2 path for these arrays), rechunked
    to the processing chunk as the CellMap layout does."""
    data = open_volume(path, finite=False).data
    want = (chunk,) * data.ndim
    return data if data.chunksize == want else data.rechunk(want)


def cellmap_600_crop(path: str) -> str:
    """``cellmap_600``'s crop (600³, 2,000 instances, 256³ zarr v2 chunks: ``path/gt`` and
    ``path/pred``), built into ``path`` unless it is there already; returns ``path``. For the
    scripts in ``benchmarks/`` that time the same crop many times."""
    if not (os.path.isdir(os.path.join(path, "gt")) and os.path.isdir(os.path.join(path, "pred"))):
        os.makedirs(path, exist_ok=True)
        _build_600(path, 600, 2000, 256)
    return path


def _build_600(tmp: str, side: int, n: int, chunk: int) -> int:
    gt, pred = build_crop(side, n, seed=1)
    _write_zarr(f"{tmp}/gt", gt, gt.shape, (chunk,) * 3, gt.dtype)
    _write_zarr(f"{tmp}/pred", pred, pred.shape, (chunk,) * 3, pred.dtype)
    return int(len(np.unique(gt)) - 1)


OOC_SIDE = 2048        # crop side: 2048^3 = 8.6e9 voxels per crop
OOC_DENSE = 192        # side of the dense (written) region of every crop
OOC_OFFSET = 960       # dense region start: straddles the 1024 chunk border on every axis
OOC_CHUNK = 256


@workload("cellmap_ooc",
          "MEMORY TEST (not throughput: mostly fill chunks, skipped unread). "
          "CellMap out of core: a zarr v2 submission of 12 crops of 2048^3 (1.03e11 voxels "
          "per label; instance + semantic label each), mostly never-written chunks, "
          "scored end to end with peak RSS < 4 GiB")
def bench_cellmap_ooc(device: str, scale: float) -> dict:
    """A whole submission in the official layout, ≥ 10¹¹ voxels of crops (scale 1).

    Every crop is ``2048³`` at 8 nm with a ``192³`` dense region (about 2·10³ instances per
    10⁷ voxels, a semantic label derived from them) at voxel 960, i.e. across the 1024 chunk
    border on every axis; all other ``256³`` chunks are never written (fill value 0), so the
    scorer's exact missing-chunk fast path skips them. ``check``: status ok, peak RSS < 4 GiB,
    and tp/fp/fn and the number of Hausdorff terms of every (crop, label) equal the same
    scorer run on the dense region alone in memory (the zero surroundings change only the
    Hausdorff cap ``D_max``, not the counts).
    """
    n_crops = max(1, int(round(12 * scale)))
    shape = (OOC_SIDE,) * 3
    chunks = (OOC_CHUNK,) * 3
    off = (OOC_OFFSET,) * 3
    attrs = {"voxel_size": [8.0, 8.0, 8.0], "translation": [0.0, 0.0, 0.0]}
    tmp = tempfile.mkdtemp(prefix="bench-cellmap-ooc-")
    expected = {}
    try:
        for c in range(1, n_crops + 1):
            gt, pred = build_crop(OOC_DENSE, 150, seed=100 + c)
            sem_g, sem_p = (gt > 0).astype(np.uint8), (np.roll(pred, 1, 0) > 0).astype(np.uint8)
            for root, inst, sem in (("truth", gt, sem_g), ("sub.zarr", pred, sem_p)):
                _write_zarr(f"{tmp}/{root}/crop{c}/mito", inst, shape, chunks, np.uint32,
                            off, attrs)
                _write_zarr(f"{tmp}/{root}/crop{c}/er", sem, shape, chunks, np.uint8, off,
                            attrs)
            r_i = score_instance(gt, pred, (8.0, 8.0, 8.0), CONSTS)
            r_s = score_semantic(sem_g, sem_p)
            expected[f"crop{c}/mito"] = (r_i["tp"], r_i["fp"], r_i["fn"], r_i["n_hausdorff"])
            expected[f"crop{c}/er"] = (r_s["tp"], r_s["fp"], r_s["fn"], None)
            del gt, pred, sem_g, sem_p
        t0 = time.perf_counter()
        res = score("cellmap", f"{tmp}/truth", f"{tmp}/sub.zarr", device=device,
                    overrides=[f"chunk=[{OOC_CHUNK},{OOC_CHUNK},{OOC_CHUNK}]"])
        seconds = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rss = _peak_rss_bytes()
    got = {it["id"]: (it["tp"], it["fp"], it["fn"], it.get("n_hausdorff"))
           for it in res.items}
    ok = res.status == "ok" and got == expected and rss < 4 * 2**30
    return {"voxels": int(res.runtime.get("voxels", 0)), "seconds": seconds,
            "check": bool(ok), "peak_rss_bytes": rss,
            "result": {"status": res.status, "score": res.score, "error": res.error},
            "notes": f"{n_crops} crops x 2 labels of {OOC_SIDE}^3 ({n_crops * OOC_SIDE ** 3:.3g} "
                     f"crop voxels, each scored for 2 labels), {OOC_DENSE}^3 dense region per "
                     f"crop, {OOC_CHUNK}^3 zarr v2 chunks, the rest never written; seconds "
                     "exclude writing the data; peak RSS is the whole workload process"}
