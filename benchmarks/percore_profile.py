"""Per-core CPU profile of one dense CellMap instance label (issue #18, sessions 7 and 8).

Scores the uint32 instance label of ``cellmap_dense``'s synthetic crop (``--scale``, default
0.5 = 512³) under ``--data`` with the sync scheduler (one thread), reading it as
``gpueval score cellmap`` reads a submission: zarr v2 through gpueval's own reader
(``open_volume``), in the scorer's 256³ processing chunks. Prints the CPU seconds, MVx/s per
core, this process's user and system CPU seconds and minor page faults
(``resource.getrusage``: of the scoring, and of the whole process so far) and, with
``--profile N``, a cProfile summary; ``--out`` writes the result (tp/fp/fn and every per-GT
Hausdorff value) for a bit-identity comparison.

Data: when ``--data`` holds no ``gt`` array it is built — the whole crop (6 arrays, minutes),
or with ``--copy-from DIR`` only ``gt`` and ``pred`` copied chunk by chunk from an existing
crop (e.g. session 7's zarr v3 one) into zarr v2 zstd-3 arrays of the same chunks and values.
``--reader zarr`` reads with ``da.from_zarr`` instead (session 7's way, any zarr format).

The opening is written out here (the same as ``gpueval.bench.dense._open``) so this script
also runs against an older checkout of ``gpueval`` for before/after runs.

    PYTHONPATH=$PWD python benchmarks/percore_profile.py --data /tmp/dense512v2 \\
        --copy-from /tmp/dense512 --out r.json
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import time

import numpy as np

CHUNK = 256  # the CellMap scorer's default processing chunk (and the data's storage chunk)


def _open_label(path: str, reader: str):
    """The label at ``path`` as the CellMap scorer reads it (``reader="gpueval"``), or with
    zarr-python (``"zarr"``)."""
    if reader == "zarr":
        import dask.array as da

        return da.from_zarr(path)
    from gpueval.io.arrays import open_volume

    data = open_volume(path, finite=False).data
    want = (CHUNK,) * data.ndim
    return data if data.chunksize == want else data.rechunk(want)


def _copy_v2(src: str, dest: str) -> None:
    """``src``'s ``gt`` and ``pred`` as zarr v2 zstd-3 arrays under ``dest``, chunk by chunk
    (same chunks, same values, every chunk written)."""
    import zarr
    from numcodecs import Zstd

    for name in ("gt", "pred"):
        a = zarr.open_array(f"{src}/{name}", mode="r")
        b = zarr.create_array(f"{dest}/{name}", shape=a.shape, chunks=a.chunks, dtype=a.dtype,
                              zarr_format=2, fill_value=0, compressors=Zstd(level=3),
                              config={"write_empty_chunks": True})
        for idx in np.ndindex(*(-(-s // c) for s, c in zip(a.shape, a.chunks, strict=True))):
            sl = tuple(slice(i * c, min((i + 1) * c, s))
                       for i, c, s in zip(idx, a.chunks, a.shape, strict=True))
            b[sl] = a[sl]


def _usage() -> tuple[float, float, int]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime, ru.ru_minflt


def main() -> None:
    from gpueval.bench import dense
    from gpueval.challenges.cellmap.scoring_2026 import score_instance
    from gpueval.limits import Limits, use_limits

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--copy-from", help="build --data's gt/pred as zarr v2 from this crop")
    ap.add_argument("--reader", choices=("gpueval", "zarr"), default="gpueval")
    ap.add_argument("--out")
    ap.add_argument("--profile", type=int, default=0, help="print the top N functions")
    args = ap.parse_args()
    side = max(64, int(round(1024 * args.scale)))
    n = max(8, int(round(1e4 * (side / 1024) ** 3)))
    if not os.path.isdir(os.path.join(args.data, "gt")):
        if args.copy_from:
            _copy_v2(args.copy_from, args.data)
        else:
            dense._build_dense(args.data, side, n, 5)
    gt, pred = (_open_label(f"{args.data}/{k}", args.reader) for k in ("gt", "pred"))
    vs = (8.0, 8.0, 8.0)
    prof = cProfile.Profile() if args.profile else None
    with use_limits(Limits(threads=1)):
        u0, s0, f0 = _usage()
        c0, t0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        r = score_instance(gt, pred, vs, dense.CONSTS, scheduler="sync")
        if prof:
            prof.disable()
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        u1, s1, f1 = _usage()
    det = r["_detail"]
    label_vox = int(np.prod(gt.shape))
    print(f"cpu {cpu:.2f} s wall {wall:.2f} s  {label_vox / cpu / 1e6:.1f} MVx/s per core "
          f"(label voxels, scoring)  load {os.getloadavg()[0]:.2f}  reader {args.reader}")
    print(f"scoring: user {u1 - u0:.2f} s system {s1 - s0:.2f} s minor faults {f1 - f0}; "
          f"whole process so far: user {u1:.2f} s system {s1:.2f} s minor faults {f1}")
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
