"""The Hausdorff and contingency rows of the per-core profile, alone (issue #18, session 9).

Two steps, so that one set of pairs times any checkout:

``dump``
    scores the uint32 instance label of the dense crop under ``--data`` (built by
    ``benchmarks/percore_profile.py``) once, recording the masks of every pair the scorer
    measures (each call of ``scoring_2026._pair_hausdorff``: compact pairs and the ones lost in
    a large box), bit-packed into ``--out`` (npz).
``time``
    CPU seconds (``time.process_time``, min of ``--repeat``) of ``_pair_hausdorff`` over those
    pairs through the checkout on ``PYTHONPATH`` (its own kernel and its own box/k-d tree
    rule), with the md5 of the float32 values for a bit-identity check; with ``--data``
    also ``stats.contingency`` of the label's 256³ chunks (truth × local component labels,
    as pass 2 counts them).
``cases``
    CPU milliseconds (min of 5) of ``distance.hausdorff_max`` on constructed pairs where
    the offset search is least at home — a ball with half or two-thirds missing (a split),
    an ellipsoid inside a ball, a filled ball against its 2-voxel shell, a half box over one
    plane, a full box against one corner voxel — and one where it is most (30 % noise).

    PYTHONPATH=$PWD python benchmarks/hausdorff_pairs.py dump --data /tmp/dense512v2 \\
        --out /tmp/pairs.npz
    PYTHONPATH=/path/to/checkout python benchmarks/hausdorff_pairs.py time /tmp/pairs.npz \\
        --data /tmp/dense512v2
    PYTHONPATH=/path/to/checkout python benchmarks/hausdorff_pairs.py cases
"""

from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np

CHUNK = 256


def dump(data: str, out: str) -> None:
    """Score the label once and save every measured pair (packed masks and their shapes)."""
    from percore_profile import _open_label  # benchmarks/ is the script's folder

    from gpueval.bench import dense
    from gpueval.challenges.cellmap import scoring_2026
    from gpueval.limits import Limits, use_limits

    recorded: list[tuple[np.ndarray, np.ndarray]] = []
    measure = scoring_2026._pair_hausdorff

    def recording(a, b, voxel_size, **known):  # known: the masks' counts (h9-p)
        recorded.append((np.array(a, bool), np.array(b, bool)))
        return measure(a, b, voxel_size, **known)

    scoring_2026._pair_hausdorff = recording
    try:
        gt, pred = (_open_label(f"{data}/{k}", "gpueval") for k in ("gt", "pred"))
        with use_limits(Limits(threads=1)):
            scoring_2026.score_instance(gt, pred, (8.0, 8.0, 8.0), dense.CONSTS,
                                        scheduler="sync")
    finally:
        scoring_2026._pair_hausdorff = measure
    arrays = {}
    for i, (a, b) in enumerate(recorded):
        arrays[f"a{i}"], arrays[f"b{i}"] = np.packbits(a), np.packbits(b)
        arrays[f"shape{i}"] = np.asarray(a.shape, np.int64)
    np.savez_compressed(out, n=len(recorded), **arrays)
    print(f"{len(recorded)} pairs -> {out}")


def _pairs(path: str) -> list[tuple[np.ndarray, np.ndarray]]:
    f = np.load(path)
    out = []
    for i in range(int(f["n"])):
        shape = tuple(int(s) for s in f[f"shape{i}"])
        n = int(np.prod(shape))
        out.append(tuple(np.unpackbits(f[key], count=n).view(bool).reshape(shape)
                         for key in (f"a{i}", f"b{i}")))
    return out


def _best(fn, repeat: int) -> tuple[float, object]:
    fn()  # compiled / cached before timing
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out


def time_pairs(path: str, data: str | None, repeat: int) -> None:
    from gpueval.challenges.cellmap.scoring_2026 import _pair_hausdorff

    pairs = _pairs(path)
    vs = (8.0, 8.0, 8.0)
    seconds, values = _best(lambda: [_pair_hausdorff(a, b, vs) for a, b in pairs], repeat)
    digest = hashlib.md5(np.float32(values).tobytes()).hexdigest()
    print(f"pair Hausdorff: {len(pairs)} pairs, {sum(a.size for a, _ in pairs) / 1e6:.1f} M box "
          f"voxels, {seconds:.3f} CPU-s (min of {repeat}); float32 md5 {digest}")
    if data is None:
        return
    import zarr

    from gpueval.kernels import components, stats

    gt, pred = (zarr.open_array(f"{data}/{k}", mode="r") for k in ("gt", "pred"))
    chunks = []
    for cell in np.ndindex(*(-(-s // CHUNK) for s in gt.shape)):
        sl = tuple(slice(CHUNK * c, CHUNK * (c + 1)) for c in cell)
        local, n = components.connected_components(np.ascontiguousarray(pred[sl]), 26)
        chunks.append((gt[sl], components.narrowest(local, n)))
    seconds, tables = _best(lambda: [stats.contingency(g, p) for g, p in chunks], repeat)
    print(f"contingency: {len(chunks)} chunks, {sum(g.size for g, _ in chunks) / 1e6:.1f} M "
          f"voxels, {seconds:.3f} CPU-s (min of {repeat}); {sum(len(t) for t in tables)} rows")


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for r in (20, 40):
        n = 2 * r + 3
        z, y, x = np.ogrid[:n, :n, :n]
        c = n // 2
        ball = (z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2 <= r * r
        out[f"ball r={r} vs its lower half"] = (ball, ball & (z < c))
        out[f"ball r={r} vs its lower third"] = (ball, ball & (z < c - r // 2))
        out[f"ball r={r} vs an inner ellipsoid"] = (
            ball, ((z - c) / r) ** 2 + ((y - c) / (r / 2)) ** 2 + ((x - c) / (r / 3)) ** 2 <= 1)
    n = 128
    z, y, x = np.ogrid[:n, :n, :n]
    radius = np.sqrt((z - n / 2) ** 2 + (y - n / 2) ** 2 + (x - n / 2) ** 2)
    out["ball 128^3 vs its 2-voxel shell"] = (radius < 0.45 * n,
                                             (radius < 0.45 * n) & (radius > 0.45 * n - 2))
    half, plane = np.zeros((n, n, n), bool), np.zeros((n, n, n), bool)
    half[n // 2:] = True
    plane[0] = True
    out["half of 128^3 over one plane"] = (half, plane)
    corner = np.zeros((n, n, n), bool)
    corner[0, 0, 0] = True
    out["full 128^3 vs one corner voxel"] = (np.ones((n, n, n), bool), corner)
    rng = np.random.default_rng(0)
    out["30 % noise, 128^3"] = (rng.random((n, n, n)) < 0.3, rng.random((n, n, n)) < 0.3)
    return out


def time_cases(repeat: int) -> None:
    from gpueval.kernels.distance import hausdorff_max

    for name, (a, b) in _cases().items():
        seconds, value = _best(lambda a=a, b=b: hausdorff_max(a, b, (8.0, 8.0, 8.0)), repeat)
        print(f"{name}: {seconds * 1e3:.2f} ms (min of {repeat}), value {value}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="step", required=True)
    d = sub.add_parser("dump", help="score the label once, save every measured pair")
    d.add_argument("--data", required=True, help="the dense crop (percore_profile.py --data)")
    d.add_argument("--out", required=True, help="npz file for the pairs")
    t = sub.add_parser("time", help="CPU seconds of the checkout on PYTHONPATH")
    t.add_argument("pairs", help="npz written by dump")
    t.add_argument("--data", help="also time the contingency of this crop's chunks")
    t.add_argument("--repeat", type=int, default=5, help="runs; the minimum is printed")
    c = sub.add_parser("cases", help="CPU ms of constructed hard and easy pairs")
    c.add_argument("--repeat", type=int, default=5, help="runs; the minimum is printed")
    args = ap.parse_args()
    if args.step == "dump":
        dump(args.data, args.out)
    elif args.step == "time":
        time_pairs(args.pairs, args.data, args.repeat)
    else:
        time_cases(args.repeat)


if __name__ == "__main__":
    main()
