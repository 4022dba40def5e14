"""CellMap out of core: one graph per submission, and the never-written-chunk fast path is
exactly the materialised path."""

from __future__ import annotations

import importlib

import dask.array as da
import numpy as np
import pytest
import zarr

from gpueval.api import score
from gpueval.challenges.cellmap.scoring_2026 import score_instance, score_semantic

# the module, not the package's ``score`` function of the same name: the fast path's helpers
# are patched where the score looks them up
cm = importlib.import_module("gpueval.challenges.cellmap.score")

CONSTS = dict(final_instance_ratio_cutoff=10, initial_instance_ratio_cutoff=50,
              instance_ratio_factor=5, max_overlap_edges=5_000_000, mcmf_cost_scale=1_000_000)


def _strip(r):
    r = dict(r)
    r.pop("_detail", None)
    return r


def _sparse_pair(seed=0, side=32, chunk=8):
    """gt/pred ids with blobs in a few chunks only (the other chunks are all 0)."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((side,) * 3, np.uint32)
    pred = np.zeros_like(gt)
    for i in range(1, 7):
        c = rng.integers(3, chunk * 2 - 3, 3)  # all blobs inside the first 2x2x2 chunks
        gt[tuple(slice(int(x) - 2, int(x) + 2) for x in c)] = i
        pred[tuple(slice(int(x) - 1, int(x) + 3) for x in c)] = 100 + i
    return gt, pred


def _zero_chunks(*arrays, chunk):
    grid = tuple(s // chunk for s in arrays[0].shape)
    out = np.zeros(grid, bool)
    for idx in np.ndindex(*grid):
        sl = tuple(slice(i * chunk, (i + 1) * chunk) for i in idx)
        out[idx] = all(not a[sl].any() for a in arrays)
    return out


def test_instance_fast_path_equals_materialised():
    gt, pred = _sparse_pair()
    g, p = da.from_array(gt, chunks=8), da.from_array(pred, chunks=8)
    missing = _zero_chunks(gt, pred, chunk=8)
    assert missing.sum() > 50
    fast = score_instance(g, p, (8, 8, 8), CONSTS, missing=missing,
                          fills=(np.uint32(0), np.uint32(0)))
    slow = score_instance(g, p, (8, 8, 8), CONSTS)
    whole = score_instance(gt, pred, (8, 8, 8), CONSTS)
    assert _strip(fast) == pytest.approx(_strip(slow))
    assert _strip(fast) == pytest.approx(_strip(whole))
    assert fast["tp"] + fast["fn"] == len(np.unique(gt)) - 1 and fast["tp"] > 0


def test_instance_nonzero_fill_map_is_ignored():
    gt, pred = _sparse_pair(1)
    g, p = da.from_array(gt, chunks=8), da.from_array(pred, chunks=8)
    missing = _zero_chunks(gt, pred, chunk=8)
    # a wrong claim with a non-zero fill must not be trusted: the chunks are read
    r = score_instance(g, p, (8, 8, 8), CONSTS, missing=missing, fills=(1, 0))
    assert _strip(r) == pytest.approx(_strip(score_instance(gt, pred, (8, 8, 8), CONSTS)))


@pytest.mark.parametrize("fg,fp", [(0, 0), (3, 0), (0, 2), (5, 7)])
def test_semantic_fast_path_equals_materialised(fg, fp):
    rng = np.random.default_rng(fg * 10 + fp)
    gt = np.full((24, 24, 24), fg, np.uint8)
    pred = np.full_like(gt, fp)
    gt[:8, :8, :8] = rng.integers(0, 2, (8, 8, 8))
    pred[:8, :8, :16] = rng.integers(0, 2, (8, 8, 16))
    missing = np.ones((3, 3, 3), bool)
    missing[0, 0, :2] = False
    g, p = da.from_array(gt, chunks=8), da.from_array(pred, chunks=8)
    fast = score_semantic(g, p, missing=missing, fills=(np.uint8(fg), np.uint8(fp)))
    gb, pb = gt > 0, pred > 0
    assert fast["tp"] == int((gb & pb).sum())
    assert fast["fp"] == int((pb & ~gb).sum())
    assert fast["fn"] == int((gb & ~pb).sum())


def test_any_stored_with_unaligned_chunks():
    stored = np.zeros((4, 4), bool)
    stored[1, 2] = True  # storage chunks of 10: voxels [10:20, 20:30]
    out = cm._any_stored(stored, [10, 10], ((15, 15, 10), (25, 15)))
    want = np.array([[True, True], [True, True], [False, False]])  # [20,30) meets both
    assert (out == want).all()


def _write(root, crop, label, data, chunks=(8, 8, 8)):
    g = zarr.open_group(str(root), mode="a", zarr_format=2)
    a = g.require_group(crop).create_array(label, shape=data.shape, dtype=data.dtype,
                                           chunks=chunks, config={"write_empty_chunks": False})
    a[:] = data
    a.attrs["voxel_size"] = [8.0, 8.0, 8.0]
    a.attrs["translation"] = [0.0, 0.0, 0.0]


def _build(tmp_path):
    truth, sub = tmp_path / "truth", tmp_path / "sub.zarr"
    gt, pred = _sparse_pair(2)
    _write(truth, "crop1", "mito", gt)
    _write(sub, "crop1", "mito", pred)
    _write(truth, "crop1", "er", (gt > 0).astype(np.uint8))
    _write(sub, "crop1", "er", (pred > 0).astype(np.uint8))
    _write(truth, "crop2", "mito", gt[::-1].copy())  # no prediction: missing label
    return truth, sub


def test_stored_chunk_grid_lists_written_chunks(tmp_path):
    truth, _ = _build(tmp_path)
    stored = cm.stored_chunk_grid(truth / "crop1" / "mito")
    gt, _ = _sparse_pair(2)
    assert (stored == ~_zero_chunks(gt, chunk=8)).all()


def test_e2e_fast_path_equals_materialised_in_one_graph(tmp_path, monkeypatch):
    truth, sub = _build(tmp_path)
    over = ["chunk=[8,8,8]"]
    calls = []
    real_missing = cm._missing_chunks

    def spy(*a, **k):
        out = real_missing(*a, **k)
        calls.append(out[0] is not None and bool(out[0].any()))
        return out

    import gpueval.engine as engine
    real_compute = engine.compute
    computes = []

    def counting(*objs, **kw):
        computes.append(len(objs))
        return real_compute(*objs, **kw)

    monkeypatch.setattr(cm, "_missing_chunks", spy)
    monkeypatch.setattr(engine, "compute", counting)
    fast = score("cellmap", truth, sub, device="cpu", overrides=over)
    assert fast.status == "ok", fast.error
    assert calls and all(calls)  # the fast path was taken for every label
    assert computes == [3]  # all (crop, label) jobs in ONE compute
    monkeypatch.setattr(cm, "stored_chunk_grid", lambda node: None)
    slow = score("cellmap", truth, sub, device="cpu", overrides=over)
    assert fast.items == slow.items
    assert fast.metrics == pytest.approx(slow.metrics)
    items = {i["id"]: i for i in fast.items}
    assert items["crop2/mito"]["status"] == "missing" and items["crop2/mito"]["fn"] == \
        len(np.unique(_sparse_pair(2)[0])) - 1
