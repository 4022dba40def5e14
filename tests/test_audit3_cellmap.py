"""Third audit of the CellMap scorer against ``shared/specs/cellmap.md`` (sentence by sentence).

Only rules the fixtures, ``test_audit_cellmap.py`` and ``test_audit2_cellmap.py`` leave
without a hand-computed assertion: the min-cost-flow's preference for more matched pairs at
equal total IoU (§5.1.5), GT ids not relabelled (§5.1.1), the size-ratio guard's boundary and
that it aborts the submission (§4.2), D_max from the shortest *physical* side (§5.1.9), and
the 2025 variant's per-crop formulas (§10: unmatched predictions cost nothing, one missed GT
instance zeroes the crop) and its volume weighting. Every expected value is derived by hand
in the docstring or comment next to it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from cellmap_cases import counts, h_norm, put, run

from gpueval.api import score
from gpueval.metrics.matching import match_max_total_iou


# --------------------------------------------------------------- §5.1.5 min-cost flow
def _line(values, shape=(6, 6, 6)) -> np.ndarray:
    """``values`` written along x at z = y = 0 of a zero volume."""
    v = np.zeros(shape, np.uint16)
    v[0, 0, : len(values)] = values
    return v


def test_mcf_matches_more_pairs_at_equal_total_iou():
    """§5.1.5: costs int((1−IoU)·S), unmatched GT S+1. GT x-profile [0,1,1,1,2,2], prediction
    [5,5,6,6,6,0] (cc3d ids 1 = value 5, 2 = value 6). IoU(g1,c2) = 2/4, IoU(g1,c1) = 1/4,
    IoU(g2,c2) = 1/4. Both {g1–c2} and {g1–c1, g2–c2} total IoU 0.5, but the flow costs are
    500000 + 1000001 vs 750000 + 750000: the two-pair matching wins by 1."""
    g, p = match_max_total_iou(np.array([1, 1, 2]), np.array([2, 1, 2]),
                               np.array([0.5, 0.25, 0.25], np.float32))
    assert sorted(zip(g.tolist(), p.tolist(), strict=True)) == [(1, 1), (2, 2)]


def test_mcf_more_pairs_end_to_end(tmp_path):
    """The same profile scored end to end on a 6³ crop at 8 nm (D_max = 48/2 = 24 nm):
    tp 2, fp 0, fn 0 (a max-IoU solver free to pick {g1–c2} would give 1, 1, 1).
    Hausdorff, remapped c1 → 1 (x 0..1), c2 → 2 (x 2..4): GT 1 = x 1..3: x 3 is 16 nm from
    x 1, x 0 is 8 nm from x 1 → 16; GT 2 = x 4..5: x 5 is 8 nm from x 4, x 2 is 16 nm from
    x 4 → 16 (both directions of the symmetric maximum are exercised)."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    put(truth, "crop1", "mito", _line([0, 1, 1, 1, 2, 2]))
    put(sub, "crop1", "mito", _line([5, 5, 6, 6, 6, 0]))
    _, items = run(truth, sub)
    it = items["crop1/mito"]
    assert counts(it) == (2, 0, 0) and it["n_hausdorff"] == 2
    assert it["hausdorff_norm_sum"] == pytest.approx(2 * h_norm(16.0), rel=1e-9)


# ------------------------------------------------------------ §5.1.1 GT not relabelled
def test_gt_id_on_two_blobs_stays_one_instance(tmp_path):
    """§5.1.1 'GT is not relabelled': GT id 1 on x 0..1 and x 3 (two blobs) is one instance;
    the prediction (same id on both) is two cc3d components, c1 (x 0..1) with IoU 2/3 and
    c2 (x 3) with IoU 1/3 → c1 matched: tp 1, fp 1, fn 0. c2 keeps id 2 (no GT 2). GT 1 vs
    x 0..1: x 3 is 16 nm from x 1 → 16 (< D_max 24); plus one D_max entry for c2."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    put(truth, "crop1", "mito", _line([1, 1, 0, 1]))
    put(sub, "crop1", "mito", _line([9, 9, 0, 9]))
    _, items = run(truth, sub)
    it = items["crop1/mito"]
    assert counts(it) == (1, 1, 0) and it["n_hausdorff"] == 2
    assert it["hausdorff_norm_sum"] == pytest.approx(h_norm(16.0) + h_norm(24.0), rel=1e-9)


# -------------------------------------------------------------------- §5.1.9 D_max
def test_d_max_is_half_the_shortest_physical_side(tmp_path):
    """§5.1.9 D_max = min_axis(v·shape)/2: shape (10, 4, 4) at v = (2, 8, 8) nm has sides
    (20, 32, 32) nm → D_max = 10 nm (half the fewest voxels, 4·8/2 = 16, would be wrong).
    The prediction misses GT 1 entirely: one FN entry of D_max; ‖v‖ = √132."""
    vs = (2.0, 8.0, 8.0)
    gt = np.zeros((10, 4, 4), np.uint8)
    gt[0, 0, 0] = 1
    truth, sub = tmp_path / "t", tmp_path / "s"
    put(truth, "crop1", "nuc", gt, vs=vs)
    put(sub, "crop1", "nuc", np.zeros_like(gt), vs=vs)
    _, items = run(truth, sub)
    it = items["crop1/nuc"]
    assert counts(it) == (0, 0, 1) and it["n_hausdorff"] == 1
    assert it["hausdorff_norm_sum"] == pytest.approx(h_norm(10.0, math.sqrt(132.0)),
                                                     rel=1e-9)


# ------------------------------------------------------------------- §4.2 size guard
@pytest.mark.parametrize(("n_src", "ok"), [(16, True), (17, False)])
def test_size_ratio_guard_is_strictly_more_than_and_aborts(tmp_path, n_src, ok):
    """§4.2 'source voxels / target voxels > MAX_VOLUME_SIZE_RATIO → error (counts as a
    failed label → the whole submission raises)', also without resampling: target 2³ = 8
    voxels, ratio limit 2 → a 16-voxel source passes (16/8 = 2, pasted at the origin: it
    covers x 0..1 of row (0, 0) → tp 2 of the 8 GT voxels), 17 voxels are refused."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    put(truth, "crop1", "er", np.ones((2, 2, 2), np.uint8))
    put(sub, "crop1", "er", np.ones((1, 1, n_src), np.uint8), chunks=(1, 1, 8))
    res = score("cellmap", truth, sub, overrides=["max_volume_size_ratio=2"], device="cpu")
    if ok:
        assert res.status == "ok", res.error
        assert counts(res.items[0]) == (2, 0, 6)
    else:
        assert res.status == "rejected" and res.score is None


# ------------------------------------------------------------------------ §10 (2025)
def test_2025_unmatched_prediction_costs_nothing_but_2026_counts_it(tmp_path):
    """§10: matched predictions painted with the GT id, unmatched dropped; accuracy over all
    voxels; Hausdorff mean over GT ids → an extra far-away prediction changes nothing:
    accuracy 1, Hausdorff 0, combined 1. §5.1/§6 (2026-06) count it: tp 2, fp 1 → F1 4/5,
    H = (1 + 1 + h(D_max = 24))/3, combined = sqrt(F1 · H)."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    gt = _line([1, 1, 0, 2, 2])
    pred = _line([4, 4, 0, 7, 7])
    pred[5, 5, 5] = 3  # isolated, overlaps nothing
    put(truth, "crop1", "mito", gt)
    put(sub, "crop1", "mito", pred)
    put(truth, "crop1", "er", (gt > 0).astype(np.uint8))
    put(sub, "crop1", "er", (gt > 0).astype(np.uint8))
    old, items = run(truth, sub, "version=2025")
    it = items["crop1/mito"]
    assert it["accuracy"] == 1.0 and it["hausdorff_distance"] == 0.0
    assert it["combined_score"] == 1.0 and old.score == 1.0
    new, items = run(truth, sub)
    assert counts(items["crop1/mito"]) == (2, 1, 0)
    hd = (2 + h_norm(24.0)) / 3
    assert new.metrics["mito_f1"] == pytest.approx(0.8, rel=1e-12)
    assert new.metrics["mito_combined_score"] == pytest.approx(math.sqrt(0.8 * hd), rel=1e-9)


def test_2025_one_missed_instance_zeroes_the_crop_and_volume_weights(tmp_path):
    """§10: an unmatched GT gets Hausdorff inf, so the per-crop mean is inf, normalized 0 and
    combined 0 (crop A: GT 1 and 2, only 1 predicted); crop B is perfect (combined 1).
    Class score = mean weighted by physical volume prod(v)·voxels: A 6³ at 8 nm
    (512·216 = 110592), B 4³ at 4 nm (64·64 = 4096) → 4096 / 114688 = 1/28.
    Semantic: crop A 'er' missing → IoU 0 with weight 110592, crop B perfect → 1/28 too."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    gt_a = _line([1, 1, 0, 2, 2])
    put(truth, "crop1", "mito", gt_a)
    put(sub, "crop1", "mito", _line([1, 1]))
    gt_b = np.zeros((4, 4, 4), np.uint8)
    gt_b[1:3, 1:3, 1:3] = 5
    put(truth, "crop2", "mito", gt_b, vs=(4.0, 4.0, 4.0))
    put(sub, "crop2", "mito", gt_b, vs=(4.0, 4.0, 4.0))
    put(truth, "crop1", "er", (gt_a > 0).astype(np.uint8))
    put(truth, "crop2", "er", (gt_b > 0).astype(np.uint8), vs=(4.0, 4.0, 4.0))
    put(sub, "crop2", "er", (gt_b > 0).astype(np.uint8), vs=(4.0, 4.0, 4.0))
    res, items = run(truth, sub, "version=2025")
    a = items["crop1/mito"]
    assert math.isinf(a["hausdorff_distance"]) and a["combined_score"] == 0.0
    # accuracy: 2 of 216 voxels (GT 2 at x 3..4) are wrong
    assert a["accuracy"] == pytest.approx(214 / 216, rel=1e-12)
    assert items["crop2/mito"]["combined_score"] == 1.0
    assert items["crop1/er"]["status"] == "missing" and items["crop1/er"]["iou"] == 0.0
    assert res.metrics["mito_combined_score"] == pytest.approx(1 / 28, rel=1e-12)
    assert res.metrics["er_iou"] == pytest.approx(1 / 28, rel=1e-12)
    assert res.score == pytest.approx(1 / 28, rel=1e-12)


# ------------------------------------------------------------- §4.3 threshold is '> 0.5'
def test_resampled_semantic_value_exactly_half_is_background(tmp_path):
    """§4.3 semantic: linear interpolation, then '> 0.5' (strict). Source x-profile [0, 1]
    at 12 nm along x onto an 8 nm crop: s = 1.5, 3 output planes at source coordinates
    (i + 0.5)/1.5 − 0.5 = −1/6, 0.5, 7/6 → 0 (constant 0 beyond the edge), exactly 0.5,
    and 1·(5/6) (constant 0 beyond the last sample) → only x = 2 is foreground: tp 4, fp 0,
    fn 8 against an all-foreground 2×2×3 GT. (Upsampling: no anti-aliasing.)"""
    truth, sub = tmp_path / "t", tmp_path / "s"
    put(truth, "crop1", "er", np.ones((2, 2, 3), np.uint8))
    src = np.zeros((2, 2, 2), np.float32)
    src[..., 1] = 1.0
    put(sub, "crop1", "er", src, vs=(8.0, 8.0, 12.0))
    _, items = run(truth, sub)
    assert counts(items["crop1/er"]) == (4, 0, 8)


# ---------------------------------------------------------------------- §5.3 missing
def test_missing_instance_label_counts_unique_ids_not_max(tmp_path):
    """§5.3 'fn = #unique non-zero GT ids', n_hausdorff = fn, H = 0: GT ids {3, 900} → fn 2
    (not 900), so F1 = 0, H/N = 0 → combined 0; a missing crop counts the same."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    gt = _line([3, 3, 0, 900])
    put(truth, "crop1", "nuc", gt)
    put(truth, "crop1", "er", np.ones((6, 6, 6), np.uint8))
    put(sub, "crop1", "er", np.ones((6, 6, 6), np.uint8))
    put(truth, "crop2", "nuc", gt)  # whole crop missing from the submission
    res, items = run(truth, sub)
    for crop in ("crop1", "crop2"):
        it = items[f"{crop}/nuc"]
        assert it["status"] == "missing" and counts(it) == (0, 0, 2)
        assert it["n_hausdorff"] == 2 and it["hausdorff_norm_sum"] == 0.0
        assert it["num_voxels"] == 216
    assert res.metrics["nuc_f1"] == 0.0 and res.metrics["nuc_combined_score"] == 0.0
    assert res.metrics["er_iou"] == 1.0 and res.score == 0.0
