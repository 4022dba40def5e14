"""``gpueval demo``: score a built-in synthetic instance pair, no data, no GPU, no network.

The truth is a cube of Voronoi cells carved by one-voxel membranes; the prediction is the same
cells under new random 64-bit ids with a known number of *splits* (a cell cut in two by a plane)
and *merges* (two touching cells given one id). Both are written as chunked zarr arrays and
scored through the out-of-core engine: one contingency table reduced over chunks, then Rand/VOI,
IoU ≥ 0.5 instance matching, and split/merge detection — which must find exactly what was
planted.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from gpueval.backend import resolve_device
from gpueval.engine import map_reduce
from gpueval.io.arrays import open_volume
from gpueval.kernels.stats import Contingency, contingency
from gpueval.metrics.overlap import f1, rand_voi
from gpueval.result import Result

N_SPLITS = 3
N_MERGES = 3
#: share of an object another label must cover to count as a split/merge partner
PARTNER_SHARE = 0.2


def synthetic_pair(size: int = 96, n_cells: int = 40, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Truth and prediction (uint64) with ``N_SPLITS`` splits and ``N_MERGES`` merges."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, size, (n_cells, 3))
    grid = np.indices((size,) * 3).reshape(3, -1).T
    dist, nearest = cKDTree(seeds).query(grid, k=2)
    truth = (nearest[:, 0] + 1).astype(np.uint64)
    truth[dist[:, 1] - dist[:, 0] < 1.0] = 0  # membranes between cells
    truth = truth.reshape((size,) * 3)

    ids = rng.permutation(np.arange(1, n_cells + 1))
    new_id = dict(zip(range(1, n_cells + 1),
                      rng.integers(1, 2**63, n_cells, dtype=np.uint64), strict=True))
    pred = np.zeros_like(truth)
    for t, v in new_id.items():
        pred[truth == t] = v
    for t in ids[:N_SPLITS]:  # split: the half above the cell's centre plane gets a new id
        where = np.nonzero(truth == t)
        upper = where[0] > np.median(where[0])
        pred[tuple(w[upper] for w in where)] = rng.integers(1, 2**63, dtype=np.uint64)
    merged = 0
    for t in ids[N_SPLITS:]:  # merge: a cell takes the id of its largest touching neighbour
        if merged == N_MERGES:
            break
        partner = _touching_neighbour(truth, t, exclude=set(ids[:N_SPLITS]))
        if partner is not None:
            pred[truth == t] = new_id[partner]
            merged += 1
    return truth, pred


def _touching_neighbour(truth: np.ndarray, t: int, exclude: set) -> int | None:
    from scipy import ndimage

    ring = ndimage.binary_dilation(truth == t, iterations=2) & (truth != t) & (truth != 0)
    ids, counts = np.unique(truth[ring], return_counts=True)
    for i in ids[np.argsort(-counts)]:
        if int(i) not in exclude:
            exclude.update({int(i), int(t)})
            return int(i)
    return None


def run_demo(size: int = 96, device: str = "cpu", chunk: int = 32,
             report: str | None = None) -> Result:
    """Write the synthetic pair to zarr, score it through the engine, return the result;
    with ``report``, also write the HTML report with slices through the planted errors."""
    import zarr

    dev = resolve_device(device)
    t0 = time.perf_counter()
    truth, pred = synthetic_pair(size)
    with tempfile.TemporaryDirectory() as tmp:
        for name, arr in (("truth", truth), ("pred", pred)):
            z = zarr.create_array(Path(tmp) / f"{name}.zarr", shape=arr.shape, dtype=arr.dtype,
                                  chunks=(chunk,) * 3)
            z[:] = arr
        a = open_volume(Path(tmp) / "truth.zarr").data
        b = open_volume(Path(tmp) / "pred.zarr").data
        table = map_reduce(contingency, [a, b], Contingency.combine, device=dev)
    result = score_instances(table)
    result.runtime.update(seconds=time.perf_counter() - t0, device=dev, voxels=truth.size)
    result.metrics["splits_planted"] = N_SPLITS
    result.metrics["merges_planted"] = N_MERGES
    status = {it.pop("truth_id"): it["status"] for it in result.items}
    if report:
        from gpueval.report import write_report

        write_report(result, report, images=demo_images(truth, pred, status))
    return result


def demo_images(truth: np.ndarray, pred: np.ndarray, status: dict[int, str]
                ) -> list[tuple[str, np.ndarray]]:
    """Truth, prediction and outcome on the slice that shows the most errors: each truth
    object coloured by what became of it (grey matched, orange split, magenta merged)."""
    colours = {"matched": (170, 170, 170), "split": (245, 140, 20), "merged": (200, 40, 200),
               "missed": (40, 90, 230)}
    n = int(truth.max()) + 1
    bad = np.array([status.get(t, "matched") != "matched" for t in range(n)])
    z = int(np.argmax(bad[truth].sum(axis=(1, 2))))
    t, p = truth[z], pred[z]
    outcome = np.zeros(t.shape + (3,), np.uint8)
    for name, rgb in colours.items():
        ids = [k for k, v in status.items() if v == name]
        outcome[np.isin(t, ids)] = rgb
    return [(f"truth (slice z={z})", _colour(t)), ("prediction", _colour(p)),
            ("outcome: grey matched, orange split, magenta merged", outcome)]


def _colour(labels: np.ndarray) -> np.ndarray:
    ids, inv = np.unique(labels, return_inverse=True)
    lut = np.random.default_rng(7).integers(40, 255, (len(ids), 3)).astype(np.uint8)
    lut[ids == 0] = 0
    return lut[inv.reshape(labels.shape)]


def score_instances(table: Contingency) -> Result:
    """Matching, splits and merges of every truth object from one contingency table."""
    fg = table.drop(a=0, b=0)
    ids_a, size_a = table.drop(a=0).sizes_a()
    ids_b, size_b = table.drop(b=0).sizes_b()
    sa = dict(zip(ids_a.tolist(), size_a.tolist(), strict=True))
    sb = dict(zip(ids_b.tolist(), size_b.tolist(), strict=True))
    inter = fg.counts.astype(float)
    union = np.array([sa[x] + sb[y] for x, y in zip(fg.ids_a.tolist(), fg.ids_b.tolist(),
                                                     strict=True)]) - inter
    iou = inter / union
    matched = iou > 0.5  # one-to-one by construction above 0.5
    share_a = inter / np.array([sa[x] for x in fg.ids_a.tolist()])
    share_b = inter / np.array([sb[y] for y in fg.ids_b.tolist()])
    split_parts = _count_by(fg.ids_a[share_a >= PARTNER_SHARE])
    merge_parts = _count_by(fg.ids_b[share_b >= PARTNER_SHARE])
    tp = int(matched.sum())
    items = []
    for k, t in enumerate(ids_a.tolist()):
        rows = fg.ids_a == t
        best = float(iou[rows].max()) if rows.any() else 0.0
        partners = fg.ids_b[rows & (share_a >= PARTNER_SHARE)].tolist()
        merged = any(merge_parts.get(p, 0) > 1 for p in partners)
        status = ("split" if split_parts.get(t, 0) > 1 else "merged" if merged
                  else "matched" if best > 0.5 else "missed")
        items.append({"id": f"object{k + 1}", "voxels": sa[t], "best_iou": best,
                      "status": status, "truth_id": t})
    metrics = {
        "n_truth": len(ids_a), "n_pred": len(ids_b), "tp": tp,
        "fp": len(ids_b) - tp, "fn": len(ids_a) - tp,
        "f1": f1(tp, len(ids_b) - tp, len(ids_a) - tp, empty=1.0),
        "splits_found": sum(1 for v in split_parts.values() if v > 1),
        "merges_found": sum(1 for v in merge_parts.values() if v > 1),
    }
    metrics.update({k: v for k, v in rand_voi(table).items() if k != "nid"})
    items.sort(key=lambda it: (it["status"] == "matched", it["best_iou"]))
    return Result("demo", "demo-1", score=metrics["f1"], metrics=metrics, items=items)


def _count_by(ids: np.ndarray) -> dict[int, int]:
    u, c = np.unique(ids, return_counts=True)
    return dict(zip(u.tolist(), c.tolist(), strict=True))
