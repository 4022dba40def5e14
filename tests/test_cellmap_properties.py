"""Property tests: chunked == unchunked, label permutations, and 2025 hand checks."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpueval.challenges.cellmap.scoring_2025 import score_instance_2025, score_semantic_2025
from gpueval.challenges.cellmap.scoring_2026 import score_instance, score_semantic

CONSTS = dict(final_instance_ratio_cutoff=10, initial_instance_ratio_cutoff=50,
              instance_ratio_factor=5, max_overlap_edges=5_000_000, mcmf_cost_scale=1_000_000)
SHAPE = (12, 14, 10)


def _boxes(rng, n, shape=SHAPE, ids=None):
    out = np.zeros(shape, np.uint32)
    for k in range(n):
        lo = [int(rng.integers(0, s - 2)) for s in shape]
        size = [int(rng.integers(1, 6)) for _ in shape]
        out[tuple(slice(a, min(a + b, s)) for a, b, s in zip(lo, size, shape, strict=True))] = \
            (ids[k] if ids is not None else k + 1)
    return out


def _pair(seed):
    rng = np.random.default_rng(seed)
    gt = _boxes(rng, int(rng.integers(0, 8)))
    pred = _boxes(rng, int(rng.integers(0, 9)), ids=rng.integers(1, 5, 9))
    return gt, pred


def _strip(r):
    r = dict(r)
    r.pop("_detail", None)
    return r


chunk_axis = st.integers(2, 14)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1), chunk_axis, chunk_axis, chunk_axis)
def test_instance_chunked_equals_unchunked(seed, c0, c1, c2):
    gt, pred = _pair(seed)
    whole = _strip(score_instance(gt, pred, (8.0, 6.0, 4.0), CONSTS))
    chunks = (min(c0, SHAPE[0]), min(c1, SHAPE[1]), min(c2, SHAPE[2]))
    part = _strip(score_instance(da.from_array(gt, chunks=chunks),
                                 da.from_array(pred, chunks=chunks), (8.0, 6.0, 4.0), CONSTS,
                                 scheduler="sync"))
    assert part.keys() == whole.keys()
    for key, value in whole.items():  # numbers to 1e-12, the status string exactly
        assert part[key] == (pytest.approx(value, rel=1e-12)
                             if isinstance(value, int | float) else value), key


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), chunk_axis, chunk_axis)
def test_semantic_chunked_equals_unchunked(seed, c0, c1):
    gt, pred = _pair(seed)
    whole = score_semantic(gt, pred)
    part = score_semantic(da.from_array(gt, chunks=(c0, c1, 5)),
                          da.from_array(pred, chunks=(c0, c1, 5)))
    assert part == whole
    g, p = gt > 0, pred > 0
    assert whole["tp"] == int((g & p).sum()) and whole["fp"] == int((p & ~g).sum())


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_prediction_id_permutation_changes_nothing(seed):
    gt, pred = _pair(seed)
    rng = np.random.default_rng(seed + 1)
    ids = np.unique(pred)
    new = np.zeros(int(ids.max()) + 1, np.uint64)
    k = int((ids > 0).sum())
    new[ids[ids > 0]] = rng.permutation(k).astype(np.uint64) * np.uint64(2**33) + \
        np.uint64(12345)  # distinct 64-bit ids in shuffled order
    perm = new[pred]
    # relabelling by connected components makes the submitted id values irrelevant
    assert _strip(score_instance(gt, perm, (8, 8, 8), CONSTS)) == \
        pytest.approx(_strip(score_instance(gt, pred, (8, 8, 8), CONSTS)))


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_gt_id_permutation_keeps_counts(seed):
    # Hausdorff may change (the ID-collision quirk depends on GT id values); counts may not
    gt, pred = _pair(seed)
    ids = np.unique(gt)
    lut = np.zeros(int(ids.max()) + 1, np.uint32)
    lut[ids[ids > 0]] = np.random.default_rng(seed).permutation(
        np.arange(1, 1 + int((ids > 0).sum()), dtype=np.uint32) * 7)
    a = score_instance(gt, pred, (8, 8, 8), CONSTS)
    b = score_instance(lut[gt], pred, (8, 8, 8), CONSTS)
    assert (a["tp"], a["fp"], a["fn"], a["n_hausdorff"]) == \
        (b["tp"], b["fp"], b["fn"], b["n_hausdorff"])


def test_hand_checked_instance():
    # one GT cube, prediction = same cube shifted by one voxel along x (8 nm voxels)
    gt = np.zeros((10, 10, 10), np.uint8)
    gt[2:5, 2:5, 2:5] = 1
    pred = np.zeros_like(gt)
    pred[2:5, 2:5, 3:6] = 9
    r = score_instance(gt, pred, (8.0, 8.0, 8.0), CONSTS)
    assert (r["tp"], r["fp"], r["fn"], r["n_hausdorff"]) == (1, 0, 0, 1)
    # Hausdorff = 8 nm (one voxel); h = 1.01^(-8/sqrt(192))
    assert r["hausdorff_norm_sum"] == pytest.approx(1.01 ** (-8 / np.sqrt(192)))
    # an extra blob: fp 1 with D_max = 10*8/2 = 40 nm
    pred[8, 8, 8] = 3
    r = score_instance(gt, pred, (8.0, 8.0, 8.0), CONSTS)
    assert r["fp"] == 1 and r["n_hausdorff"] == 2
    assert r["hausdorff_norm_sum"] == pytest.approx(1.01 ** (-8 / np.sqrt(192))
                                                    + 1.01 ** (-40 / np.sqrt(192)))


def test_2025_hand_checked():
    gt = np.zeros((8, 8, 8), np.uint8)
    gt[1:3, 1:3, 1:3] = 1
    gt[5:7, 5:7, 5:7] = 2
    r = score_instance_2025(gt, gt.copy(), (4, 4, 4), 50)
    assert r["accuracy"] == 1.0 and r["combined_score"] == 1.0
    pred = gt.copy()
    pred[gt == 2] = 0  # one GT missed: mean Hausdorff inf -> combined 0
    r = score_instance_2025(gt, pred, (4, 4, 4), 50)
    assert r["hausdorff_distance"] == np.inf and r["combined_score"] == 0.0
    assert r["accuracy"] == pytest.approx(1 - 8 / 512)
    s = score_semantic_2025(np.zeros(4), np.zeros(4))
    assert s["iou"] == 1.0 and s["dice"] == 1.0
    s = score_semantic_2025(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0]))
    assert s["iou"] == pytest.approx(1 / 3) and s["dice"] == pytest.approx(0.5)
