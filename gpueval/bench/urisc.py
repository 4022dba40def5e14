"""Workload ``urisc``: one 10000 × 10000 GT/prediction TIFF pair on disk, scored end to end.

The official ``eval.py`` (spec §7 anchor, 2 cores, *not* rerun here) takes 14.7 s and 1.82 GiB
peak RSS at radius 0 (22.2 s at radius 3): it decodes both images whole and runs a full
``np.unique`` sort for its format check. gpueval streams row bands (halo = radius) and counts
values with two comparisons per band.

The pair is written band by band (``os.pwrite`` into an uncompressed contiguous TIFF made by
``tifffile.memmap``), so building it does not raise the peak RSS either. Content: a membrane
grid (period 40 px, 3 px thick; 14.4 % membrane) and a prediction shifted by one row and
column with its own grid phase, so every count is known in closed form (``check``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from gpueval import api
from gpueval.bench import workload

OFFICIAL_SECONDS = {0: 14.7, 3: 22.2}
PERIOD, THICK = 40, 3


def _side(scale: float) -> int:
    """Image side for ``scale`` (pixels ∝ scale), a whole number of grid periods."""
    return PERIOD * max(2, int(round(10_000 * scale**0.5 / PERIOD)))


def _line(n: int, shift: int) -> np.ndarray:
    return ((np.arange(n) - shift) % PERIOD) < THICK


def _write_tiff(path: Path, rows: int, cols: int, shift: int, band: int = 512) -> None:
    mm = tifffile.memmap(path, shape=(rows, cols), dtype=np.uint8)
    del mm  # only the header is written; data go in with pwrite (no resident pages)
    with tifffile.TiffFile(path) as tf:
        offset = int(tf.pages[0].dataoffsets[0])
    bx = _line(cols, shift)
    fd = os.open(path, os.O_WRONLY)
    try:
        for a in range(0, rows, band):
            ay = _line(rows, shift)[a:a + band]
            membrane = ay[:, None] | bx[None, :]
            os.pwrite(fd, np.where(membrane, 0, 255).astype(np.uint8).tobytes(),
                      offset + a * cols)
    finally:
        os.close(fd)


def _expected(rows: int, cols: int, shift_gt: int, shift_pred: int) -> dict[str, int]:
    """Closed-form pixel counts for radius 0 (membrane = row line OR column line)."""
    ay, ay2 = _line(rows, shift_gt), _line(rows, shift_pred)
    bx, bx2 = _line(cols, shift_gt), _line(cols, shift_pred)
    ny = {(a, b): int(np.sum((ay == a) & (ay2 == b))) for a in (0, 1) for b in (0, 1)}
    nx = {(a, b): int(np.sum((bx == a) & (bx2 == b))) for a in (0, 1) for b in (0, 1)}
    tp = n_gt = n_pred = 0
    for (a, a2), cy in ny.items():
        for (b, b2), cx in nx.items():
            g, p = bool(a or b), bool(a2 or b2)
            tp += cy * cx * (g and p)
            n_gt += cy * cx * g
            n_pred += cy * cx * p
    return {"tp": tp, "n_gt": n_gt, "n_pred": n_pred}


def run_pair(rows: int, cols: int, *, radius: int = 0, device: str = "cpu") -> dict:
    """Build the pair in a temp folder, score it, return timings and the check."""
    with tempfile.TemporaryDirectory(prefix="gpueval-bench-urisc-") as tmp:
        gt_dir, sub_dir = Path(tmp, "gt"), Path(tmp, "sub")
        gt_dir.mkdir()
        sub_dir.mkdir()
        _write_tiff(gt_dir / "img.tif", rows, cols, shift=0)
        _write_tiff(sub_dir / "img.tiff", rows, cols, shift=1)
        sets = ["variant=bold", f"radius={radius}"] if radius else []
        t0 = time.perf_counter()
        result = api.score("urisc", gt_dir, sub_dir, overrides=sets, device=device)
        seconds = time.perf_counter() - t0
    item = result.items[0] if result.items else {}
    exp = _expected(rows, cols, 0, 1)
    check = (result.status == "ok" and (radius > 0 or all(item.get(k) == v
                                                         for k, v in exp.items())))
    return {"voxels": rows * cols, "seconds": seconds, "f1": result.score, "check": check,
            "status": result.status, "error": result.error}


@workload("urisc", "U-RISC: one 10000×10000 TIFF pair on disk, radius 0 (official: 14.7 s, "
                   "1.82 GiB on 2 cores)")
def bench_urisc(device: str, scale: float) -> dict:
    n = _side(scale)
    rec = run_pair(n, n, radius=0, device=device)
    rec["reference"] = "official eval.py, spec anchor on 2 cores (not rerun here)"
    rec["reference_seconds"] = OFFICIAL_SECONDS[0] * (n * n) / 1e8
    rec["notes"] = ("uncompressed contiguous TIFFs, page cache warm after writing; threads; "
                    "reference_seconds scaled linearly from the 10000² anchor")
    return rec


@workload("urisc_r3", "U-RISC bold metric, radius 3, 10000×10000 TIFF pair (official 22.2 s)")
def bench_urisc_r3(device: str, scale: float) -> dict:
    n = _side(scale)
    rec = run_pair(n, n, radius=3, device=device)
    rec["reference"] = "official eval.py bound_pix=3, spec anchor on 2 cores (not rerun)"
    rec["reference_seconds"] = OFFICIAL_SECONDS[3] * (n * n) / 1e8
    return rec


# ---------------------------------------------------------------------------------------------
# official formats against the decode floor (issue #19)

#: the floor: decode both TIFFs whole with tifffile, strips in parallel on every core, as fast
#: as any library reads them (argv[1:] are the files)
URISC_FLOOR = """
import os, sys
import tifffile
for path in sys.argv[1:]:
    tifffile.imread(path, maxworkers=os.cpu_count())
"""


def _write_lzw(path: Path, rows: int, cols: int, shift: int) -> None:
    """The image as OpenCV writes TIFF: LZW, one row per strip. Built whole (100 MB at
    10000²: this bench process's memory, not the measured children's)."""
    image = np.where(_line(rows, shift)[:, None] | _line(cols, shift)[None, :], 0, 255)
    tifffile.imwrite(path, image.astype(np.uint8), compression="lzw", rowsperstrip=1,
                     photometric="minisblack", maxworkers=os.cpu_count())


def run_lzw_pair(rows: int, cols: int, repeat: int = 3) -> dict:
    """Whole-process ``gpueval score urisc`` and the decode floor on an LZW TIFF pair."""
    from gpueval.bench.floor import score_argv, side_by_side

    with tempfile.TemporaryDirectory(prefix="gpueval-bench-urisc-lzw-") as tmp:
        gt_dir, sub_dir = Path(tmp, "gt"), Path(tmp, "sub")
        gt_dir.mkdir()
        sub_dir.mkdir()
        t0 = time.perf_counter()
        _write_lzw(gt_dir / "img.tif", rows, cols, shift=0)
        _write_lzw(sub_dir / "img.tiff", rows, cols, shift=1)
        build = time.perf_counter() - t0
        out = Path(tmp, "result.json")
        argv = score_argv("urisc", gt_dir, sub_dir, out)
        rec = side_by_side(argv, URISC_FLOOR.replace("sys.argv[1:]", repr(
            [str(gt_dir / "img.tif"), str(sub_dir / "img.tiff")])), repeat,
            OFFICIAL_SECONDS[0] * rows * cols / 1e8)
        result = json.loads(out.read_text())
    item = (result.get("items") or [{}])[0]
    exp = _expected(rows, cols, 0, 1)
    rec.update(voxels=rows * cols, build_seconds=build, f1=result.get("score"),
               check=result.get("status") == "ok" and all(item.get(k) == v
                                                          for k, v in exp.items()))
    return rec


@workload("urisc_lzw", "U-RISC 10000² pair as OpenCV writes it (LZW, one row per strip): "
                       "whole-process gpueval score vs the decode floor, min of 3")
def bench_urisc_lzw(device: str, scale: float) -> dict:
    n = _side(scale)
    rec = run_lzw_pair(n, n)
    rec["notes"] = ("whole process (python -m gpueval score, --device cpu) and floor "
                    "(python -c tifffile.imread(maxworkers=all cores)) interleaved, min of 3; "
                    "spec_anchor_seconds: official eval.py on uncompressed input, other load, "
                    "scaled linearly from the 10000² anchor")
    return rec
