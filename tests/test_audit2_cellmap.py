"""Second independent audit of the CellMap scorer against ``shared/specs/cellmap.md``.

Hand-checkable cases for spec statements the fixtures and the first audit
(``test_audit_cellmap.py``) leave untested or only hit by chance: aggregation corner cases
(§6: skipped / empty / missing-with-empty-GT crops, empty class groups, pooled vs mean),
translation snapping off the target grid (§4.4), the ``allclose`` resampling switch and the
``> 0`` vs ``> 0.5`` rule (§4.3/§4.5), prediction dtypes of the semantic resampling (§4.3:
bool → float32, others as skimage converts them), masking before relabelling (§4.6 + §5.1.1 +
the ID-collision quirk §5.1.9), the overlap-edge guard boundary (§5.1.4), the crop/label
discovery rules of §2/§5.3 and zarr v2 only (§2). Every expected value is worked out by hand
in the test (or is ``skimage.transform.rescale`` called as the spec describes).
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
from cellmap_cases import V8, counts, h_norm, put, run

from gpueval.api import score
from gpueval.challenges.cellmap.scoring_2026 import INSTANCE_CLASSES, combine_scores


# ------------------------------------------------------------------------ §6 aggregation
def _entry(tp, fp, fn, h=None, n=None, status="scored"):
    e = {"tp": tp, "fp": fp, "fn": fn, "status": status}
    if h is not None:
        e.update(hausdorff_norm_sum=h, n_hausdorff=n)
    return e


def test_combine_pools_counts_and_handles_empty_classes():
    """§6: pooled sums (not a mean of per-crop scores); an instance class whose pooled
    2TP+FP+FN and N are 0 (here: only a skipped crop) scores 1.0; a semantic class with
    TP+FP+FN = 0 scores IoU 1.0; a skipped crop adds nothing to its class."""
    per_crop = {
        "crop1": {"mito": _entry(2, 1, 1, 2.5, 4), "er": _entry(1, 0, 0),
                  "nuc": _entry(0, 0, 0, 0.0, 0, "skipped_too_many_instances"),
                  "ecs": _entry(0, 0, 0)},
        "crop2": {"mito": _entry(0, 0, 0, 0.0, 0, "skipped_too_many_instances"),
                  "er": _entry(1, 3, 0)},
    }
    got = combine_scores(per_crop, INSTANCE_CLASSES)
    ls = got["label_scores"]
    f1, hd = 4 / 6, 2.5 / 4  # 2·2 / (2·2 + 1 + 1); H / N
    assert ls["mito"]["f1"] == pytest.approx(f1, rel=1e-12)
    assert ls["mito"]["normalized_hausdorff_distance"] == pytest.approx(hd, rel=1e-12)
    assert ls["mito"]["combined_score"] == pytest.approx(math.sqrt(f1 * hd), rel=1e-12)
    assert ls["nuc"] == {**ls["nuc"], "f1": 1.0, "normalized_hausdorff_distance": 1.0,
                         "combined_score": 1.0}
    assert ls["er"]["iou"] == pytest.approx(2 / 5, rel=1e-12)  # pooled, not (1 + 0.25)/2
    assert ls["ecs"]["iou"] == 1.0
    oi = (math.sqrt(f1 * hd) + 1.0) / 2
    osem = (2 / 5 + 1.0) / 2
    assert got["overall_instance_score"] == pytest.approx(oi, rel=1e-12)
    assert got["overall_semantic_score"] == pytest.approx(osem, rel=1e-12)
    assert got["overall_score"] == pytest.approx(math.sqrt(oi * osem), rel=1e-12)


def test_combine_f1_zero_denominator_with_hausdorff_entries():
    """§6: 2TP+FP+FN = 0 but N > 0 is not the "nothing here" case: F1 = 0 (denominator 0),
    combined = 0. (Reachable only through hand-made entries; guards the 'and'.)"""
    got = combine_scores({"c": {"mito": _entry(0, 0, 0, 1.5, 2)}}, INSTANCE_CLASSES)
    s = got["label_scores"]["mito"]
    assert (s["f1"], s["combined_score"]) == (0.0, 0.0)
    assert s["normalized_hausdorff_distance"] == pytest.approx(0.75)


def test_combine_empty_group_scores_zero_overall():
    """§6: 'overall_… 0 if a group is empty; overall = sqrt(instance · semantic)'."""
    only_inst = combine_scores({"c": {"mito": _entry(1, 0, 0, 1.0, 1)}}, INSTANCE_CLASSES)
    assert only_inst["overall_instance_score"] == 1.0
    assert only_inst["overall_semantic_score"] == 0.0 and only_inst["overall_score"] == 0.0
    only_sem = combine_scores({"c": {"er": _entry(3, 0, 0)}}, INSTANCE_CLASSES)
    assert only_sem["overall_semantic_score"] == 1.0
    assert only_sem["overall_instance_score"] == 0.0 and only_sem["overall_score"] == 0.0


def test_found_scores_drop_classes_that_are_only_missing():
    """§6 update_scores: the run without missing entries has no class made only of
    missing entries (and its means skip them)."""
    per_crop = {"c1": {"er": _entry(1, 1, 0), "cyto": _entry(0, 0, 9, status="missing"),
                       "mito": _entry(0, 0, 2, 0.0, 2, "missing")}}
    got = combine_scores(per_crop, INSTANCE_CLASSES, include_missing=False)
    assert set(got["label_scores"]) == {"er"}
    assert got["overall_semantic_score"] == pytest.approx(0.5)
    assert got["overall_instance_score"] == 0.0
    full = combine_scores(per_crop, INSTANCE_CLASSES, include_missing=True)
    assert full["label_scores"]["cyto"]["iou"] == 0.0
    assert full["label_scores"]["mito"]["combined_score"] == 0.0
    assert full["overall_semantic_score"] == pytest.approx(0.25)


# ------------------------------------------------------------------- end to end, by hand
def test_skipped_only_instance_class_scores_one_end_to_end(tmp_path):
    """§5.1.3 + §5.1.6 + §6: one GT instance (nG = 1, R(1) = 50.94) against 51 isolated
    predicted voxels → skipped; the class then pools to 2TP+FP+FN = N = 0 → 1.0 (a crop
    whose prediction is absurd contributes neither reward nor penalty)."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    gt = np.zeros((1, 1, 102), np.uint16)
    gt[0, 0, 0] = 1
    pred = np.zeros_like(gt)
    pred[0, 0, ::2] = 3  # 51 components (isolated voxels, same value)
    put(truth, "crop1", "mito", gt, chunks=(1, 1, 16))
    put(sub, "crop1", "mito", pred, chunks=(1, 1, 16))
    sem = np.ones((1, 1, 102), np.uint8)
    put(truth, "crop1", "er", sem, chunks=(1, 1, 16))
    put(sub, "crop1", "er", sem, chunks=(1, 1, 16))
    res, items = run(truth, sub)
    it = items["crop1/mito"]
    assert it["status"] == "skipped_too_many_instances"
    assert counts(it) == (0, 0, 0) and it["n_hausdorff"] == 0
    assert res.metrics["mito_combined_score"] == 1.0
    assert res.score == 1.0


def test_missing_instance_label_with_empty_gt_adds_nothing(tmp_path):
    """§5.3: a missing instance label scores fn = #unique non-zero GT ids = 0 and
    n_hausdorff = 0 when its GT is empty, so its class keeps the other crop's score; a
    missing semantic label counts every voxel (GT background included) as FN."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    gt = np.zeros((2, 2, 4), np.uint8)
    gt[:, :, :2] = 7  # one instance, id 7
    put(truth, "crop1", "mito", gt)
    put(sub, "crop1", "mito", gt.astype(np.uint32) * 3)  # perfect, other id
    put(truth, "crop2", "mito", np.zeros((2, 2, 2), np.uint8))  # empty GT, not submitted
    er = np.zeros((2, 2, 2), np.uint8)
    er[0, 0, 0] = 1
    put(truth, "crop1", "er", np.ones((2, 2, 4), np.uint8))
    put(sub, "crop1", "er", np.ones((2, 2, 4), np.uint8))
    put(truth, "crop2", "er", er)  # crop2/er missing: fn = 8 (all voxels), not 1
    put(sub, "crop1", "foo", np.ones((2, 2, 4), np.uint8))  # not in the GT: ignored
    put(sub, "crop9", "er", np.ones((2, 2, 2), np.uint8))  # extra crop: ignored
    res, items = run(truth, sub)
    assert set(items) == {"crop1/mito", "crop1/er", "crop2/mito", "crop2/er"}
    m2 = items["crop2/mito"]
    assert m2["status"] == "missing" and counts(m2) == (0, 0, 0) and m2["n_hausdorff"] == 0
    assert counts(items["crop2/er"]) == (0, 0, 8)
    assert res.metrics["mito_combined_score"] == 1.0
    assert res.metrics["er_iou"] == pytest.approx(16 / (16 + 8))
    assert res.score == pytest.approx(math.sqrt(16 / 24))


def test_crop_prefix_retry_only_when_nothing_matches(tmp_path):
    """§2: the 'crop' prefix is prepended only when *no* top-level folder names a GT
    crop; a bare '2' beside a matching 'crop1' is therefore not crop2 (crop2 is missing)."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    ones = np.ones((2, 2, 2), np.uint8)
    for c in ("crop1", "crop2"):
        put(truth, c, "er", ones)
    put(sub, "crop1", "er", ones)
    put(sub, "2", "er", ones)
    _, items = run(truth, sub)
    assert items["crop1/er"]["status"] == "scored"
    assert items["crop2/er"]["status"] == "missing"


# ------------------------------------------------------------------- §4.4 translation
@pytest.mark.parametrize(("gt_tr", "sub_tr", "shift"), [
    (4.0, 12.0, 0),    # t' = 8, t' − T = 4 nm: floor(4/8) = 0 → no shift (half a voxel lost)
    (4.0, 20.0, 1),    # t' = 16, 12 nm → 1 voxel
    (4.0, 15.9, 0),    # t' = 8 (snapped down), 4 nm → 0
    (0.0, -3.0, -1),   # t' = −8 → −1 voxel (first plane cropped away)
    (0.0, -8.0, -1),
    (0.0, 7.9, 0),     # snapped to 0
    (4.0, -4.0, -1),   # t' = −8, −12 nm → sign · floor(12/8) = −1
])
def test_translation_snaps_down_then_truncates_toward_zero(tmp_path, gt_tr, sub_tr, shift):
    """§4.4 on a target grid whose own origin is off the 8 nm lattice (T = 4 nm): the
    source origin is snapped *down* to multiples of the voxel size and the remaining offset
    truncated toward zero; hand-computed shifts along x."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    gt = np.zeros((1, 1, 6), np.uint8)
    gt[0, 0, 2] = 1
    pred = gt.copy()  # same pattern, written at another origin
    put(truth, "crop1", "er", gt, tr=(0.0, 0.0, gt_tr))
    put(sub, "crop1", "er", pred, tr=(0.0, 0.0, sub_tr))
    _, items = run(truth, sub)
    want = (1, 0, 0) if shift == 0 else (0, 1, 1)  # the voxel lands at x = 2 + shift
    assert counts(items["crop1/er"]) == want


def test_prediction_entirely_outside_the_crop(tmp_path):
    """§4.4 'no overlap at all → an all-zero prediction', then §5.1 with nP = 0: every GT
    id is a FN with a D_max entry (D_max = min(8·[1, 2, 10])/2 = 4 nm), and semantic
    fn = |G|."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    gt = np.zeros((1, 2, 10), np.uint16)
    gt[0, 0, 1:3] = 4
    gt[0, 1, 6:9] = 9
    put(truth, "crop1", "nuc", gt)
    put(sub, "crop1", "nuc", gt, tr=(0.0, 0.0, 80.0))  # 10 voxels right: outside
    sem = (gt > 0).astype(np.uint8)
    put(truth, "crop1", "er", sem)
    put(sub, "crop1", "er", sem, tr=(0.0, -16.0, 0.0))  # 2 voxels up: outside
    _, items = run(truth, sub)
    it = items["crop1/nuc"]
    assert counts(it) == (0, 0, 2) and it["n_hausdorff"] == 2
    assert it["hausdorff_norm_sum"] == pytest.approx(2 * h_norm(4.0), rel=1e-9)
    assert counts(items["crop1/er"]) == (0, 0, 5)


# ------------------------------------------------------------- §4.3 / §4.5 resampling
@pytest.mark.parametrize(("sub_vs", "want"), [
    (8.00001, (8, 0, 0)),   # allclose(8.00001, 8) → no resampling → raw 0.3 > 0 counts
    (8.001, (0, 0, 8)),     # resampled (scale 1.000125, same shape) → ≤ 0.3, not > 0.5
])
def test_threshold_depends_on_allclose_voxel_size(tmp_path, sub_vs, want):
    """§4.3 'resampling when … not allclose to the target' and §4.5 'no threshold if no
    resampling': probability 0.3 everywhere is foreground (> 0) on the target grid but
    background (≤ 0.5) once resampled (linear interpolation of a constant, clipped to the
    source range, stays ≤ 0.3)."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    put(truth, "crop1", "er", np.ones((2, 2, 2), np.uint8))
    put(sub, "crop1", "er", np.full((2, 2, 2), 0.3, np.float32), vs=(sub_vs,) * 3)
    _, items = run(truth, sub)
    assert counts(items["crop1/er"]) == want


def _skimage_semantic(pred: np.ndarray, scale: float) -> np.ndarray:
    """§4.3 semantic resampling as the spec states it: bool → float32 first (other dtypes
    as given), skimage ``rescale(order=1, mode="constant", preserve_range=True)`` with its
    default anti-aliasing, then ``> 0.5``."""
    from skimage.transform import rescale

    img = pred.astype(np.float32) if pred.dtype == bool else pred
    return rescale(img, scale, order=1, mode="constant", preserve_range=True) > 0.5


@pytest.mark.parametrize("dtype", [bool, np.float64, np.int16, np.float16])
@pytest.mark.parametrize("factor", [2, 0.5])
def test_semantic_resampling_by_dtype_matches_skimage(tmp_path, dtype, factor):
    """§4.3 for the prediction dtypes the first audit does not draw (bool, float64, int16,
    float16): coarser (factor 2: upsampled) and finer (0.5: anti-aliased downsampling)."""
    rng = np.random.default_rng(7)
    shape = (4, 6, 5)
    gt = (rng.random(shape) < 0.4).astype(np.uint8)
    n_src = tuple(int(round(s / factor)) for s in shape)
    if dtype is bool:
        pred = rng.random(n_src) < 0.5
    elif dtype is np.int16:
        pred = rng.integers(-1, 3, n_src).astype(np.int16)
    else:
        pred = rng.uniform(-0.2, 1.0, n_src).astype(dtype)
    aligned = _skimage_semantic(pred, factor)
    out = np.zeros(shape, bool)  # paste at the origin, crop/pad to the crop
    sl = tuple(slice(0, min(a, b)) for a, b in zip(aligned.shape, shape, strict=True))
    out[sl] = aligned[sl]
    g = gt > 0
    want = (int((g & out).sum()), int((out & ~g).sum()), int((g & ~out).sum()))
    truth, sub = tmp_path / "t", tmp_path / "s"
    put(truth, "crop1", "er", gt, vs=(4.0, 4.0, 4.0))
    put(sub, "crop1", "er", pred, vs=(4.0 * factor,) * 3)
    _, items = run(truth, sub)
    assert counts(items["crop1/er"]) == want


def test_semantic_resampling_with_nan_matches_skimage(tmp_path):
    """§4.7 'NaN = background for semantic' also after resampling: skimage's clip uses
    ``nanmin`` when the source holds NaN, so an all-positive source still floors every
    finite output at its minimum (here 0.6 > 0.5: foreground) while NaN stays background."""
    rng = np.random.default_rng(3)
    pred = rng.uniform(0.6, 1.0, (3, 3, 3)).astype(np.float32)
    pred[1, 1, 1] = np.nan
    out = _skimage_semantic(pred, 2.0)  # (6, 6, 6), upsampled: no smoothing
    truth, sub = tmp_path / "t", tmp_path / "s"
    put(truth, "crop1", "er", np.ones((6, 6, 6), np.uint8), vs=(4.0, 4.0, 4.0))
    put(sub, "crop1", "er", pred, vs=(8.0, 8.0, 8.0))
    _, items = run(truth, sub)
    assert counts(items["crop1/er"]) == (int(out.sum()), 0, int((~out).sum()))


# ------------------------------------------------------------- §4.6 mask, then §5.1
def test_mask_applies_before_relabelling_and_collision_quirk(tmp_path):
    """§4.6 + §5.1: the mask cuts one predicted bar into two cc3d components (ids 1 at
    x = 0..1 and 2 at x = 3..6); GT 1 (masked: x ∈ {0,1,3..6}, size 6) overlaps them with
    IoU 2/6 and 4/6 → matched to component 2 (tp 1, fp 1, fn 0). The unmatched component
    keeps cc3d id 1 = the GT id, so GT 1 is compared with both pieces = itself: distance 0
    (§5.1.9 quirk); the unmatched prediction adds D_max = min(8, 8, 56)/2 = 4 nm."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    gt = np.ones((1, 1, 7), np.uint32)
    pred = np.full((1, 1, 7), 5, np.uint32)
    mask = np.ones((1, 1, 7), np.uint8)
    mask[0, 0, 2] = 0
    put(truth, "crop1", "mito", gt)
    put(truth, "crop1", "mito_mask", mask)
    put(sub, "crop1", "mito", pred)
    _, items = run(truth, sub)
    it = items["crop1/mito"]
    assert counts(it) == (1, 1, 0) and it["n_hausdorff"] == 2
    assert it["hausdorff_norm_sum"] == pytest.approx(1.0 + h_norm(4.0), rel=1e-9)
    # official mode: the mask array is itself a (semantic, never submitted) label
    assert counts(items["crop1/mito_mask"]) == (0, 0, 7)


# ------------------------------------------------------------------ §5.1.4 edge guard
@pytest.mark.parametrize(("limit", "skipped"), [(3, False), (2, True)])
def test_overlap_edge_guard_is_strictly_more_than(tmp_path, limit, skipped):
    """§5.1.4 'More than MAX_OVERLAP_EDGES distinct pairs': GT 1 overlaps three predicted
    components (3 pairs) → scored at a limit of 3, skipped at 2."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    gt = np.ones((1, 1, 5), np.uint8)
    pred = np.array([[[1, 0, 1, 0, 1]]], np.uint8)
    put(truth, "crop1", "mito", gt)
    put(sub, "crop1", "mito", pred)
    _, items = run(truth, sub, f"max_overlap_edges={limit}")
    it = items["crop1/mito"]
    if skipped:
        assert it["status"] == "skipped_too_many_instances" and counts(it) == (0, 0, 0)
    else:
        assert it["status"] == "scored" and counts(it) == (1, 2, 0)


# ---------------------------------------------------------------------- §2 zarr v2 only
def test_zarr_v3_label_is_missing_in_official_mode(tmp_path):
    """§2 'Only zarr v2 is read' (zarr<3 pinned): the official ``array_keys()`` does not see
    a zarr v3 array, so such a label scores as missing; ``compat=corrected`` reads it."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    ones = np.ones((2, 2, 2), np.uint8)
    put(truth, "crop1", "er", ones)
    put(truth, "crop1", "cyto", ones)
    put(sub, "crop1", "er", ones)                  # v2: scored
    put(sub / "v3", "crop1", "cyto", ones, fmt=3)  # moved beside it below
    shutil.move(str(sub / "v3" / "crop1" / "cyto"), str(sub / "crop1" / "cyto"))
    shutil.rmtree(sub / "v3")
    _, items = run(truth, sub)
    assert items["crop1/er"]["status"] == "scored"
    assert items["crop1/cyto"]["status"] == "missing" and counts(items["crop1/cyto"]) == (
        0, 0, 8)
    _, fixed = run(truth, sub, "compat=corrected")
    assert counts(fixed["crop1/cyto"]) == (8, 0, 0)
    from gpueval.api import validate

    assert any("zarr v3" in n for n in validate("cellmap", sub, truth=truth))


# -------------------------------------------------------------- §5.1.1 prediction dtypes
@pytest.mark.parametrize("kind", ["inf", "bool", "negative"])
def test_instance_prediction_values_are_cc3d_labels(tmp_path, kind):
    """§5.1.1 cc3d multi-label mode on whatever the array holds: ±inf are ordinary float ids
    (§4.7 leaves only NaN unknown), a bool mask is one label, negative ints are labels.
    GT: ids 1 (x = 0..1) and 2 (x = 4..5) on a (2, 2, 7) crop (D_max = min(16, 16, 56)/2
    = 8 nm); the prediction holds the same two blobs → tp = 2. For 'inf' and 'negative' a
    third value at x = 2 touches the first blob but is its own component, cc3d id 2
    (raster order), unmatched: it keeps id 2, so GT 2 is compared with x ∈ {2, 4, 5}
    (§5.1.9 quirk): 16 nm capped at 8; plus one D_max entry for the unmatched one."""
    gt = np.zeros((2, 2, 7), np.uint16)
    gt[..., 0:2] = 1
    gt[..., 4:6] = 2
    if kind == "inf":
        pred = np.zeros(gt.shape, np.float32)
        pred[..., 0:2], pred[..., 2], pred[..., 4:6] = np.inf, 1.0, -np.inf
        want_fp = 1
    elif kind == "bool":
        pred = gt > 0
        want_fp = 0
    else:
        pred = np.zeros(gt.shape, np.int32)
        pred[..., 0:2], pred[..., 2], pred[..., 4:6] = -1, 1, -7
        want_fp = 1
    truth, sub = tmp_path / "t", tmp_path / "s"
    put(truth, "crop1", "mito", gt)
    put(sub, "crop1", "mito", pred)
    _, items = run(truth, sub)
    it = items["crop1/mito"]
    d_max = min(16.0, 16.0, 56.0) / 2
    assert counts(it) == (2, want_fp, 0) and it["n_hausdorff"] == 2 + want_fp
    want_h = 2.0 if not want_fp else 1.0 + h_norm(min(16.0, d_max)) + h_norm(d_max)
    assert it["hausdorff_norm_sum"] == pytest.approx(want_h, rel=1e-9)


def test_nan_instance_prediction_is_refused(tmp_path):
    """§4.7: NaN in an instance prediction is an unknown of the official code → rejected."""
    gt = np.ones((2, 2, 2), np.uint8)
    pred = np.ones((2, 2, 2), np.float32)
    pred[1, 1, 1] = np.nan
    truth, sub = tmp_path / "t", tmp_path / "s"
    put(truth, "crop1", "mito", gt)
    put(sub, "crop1", "mito", pred)
    res = score("cellmap", truth, sub, device="cpu")
    assert res.status == "rejected" and "NaN" in res.error


# ------------------------------------------------------- §4.3 / §4.4 shape differences
@pytest.mark.parametrize("vs", [V8, None])
def test_other_shape_pasted_at_origin_or_centred(tmp_path, vs):
    """A prediction of another shape on the target grid: with a voxel size it is pasted at
    offset 0 (§4.4: the extra planes at the end are dropped); without any voxel size it is
    centre-cropped first (§4.3 'centre pad/crop to the target shape'). Source x-profile
    [1, 1, 0, 0, 1, 0] onto a 4-long crop whose GT is [1, 0, 0, 1]:
    pasted → [1, 1, 0, 0] (tp 1, fp 1, fn 1); centred (drop 1 each side) → [1, 0, 0, 1]."""
    gt = np.array([[[1, 0, 0, 1]]], np.uint8)
    pred = np.array([[[1, 1, 0, 0, 1, 0]]], np.uint8)
    truth, sub = tmp_path / "t", tmp_path / "s"
    put(truth, "crop1", "er", gt)
    put(sub, "crop1", "er", pred, vs=vs, tr=None)
    _, items = run(truth, sub)
    assert counts(items["crop1/er"]) == ((1, 1, 1) if vs else (2, 0, 0))


# ------------------------------------------------------------ shipped (official) manifest
def test_shipped_manifest_rows_do_not_override_other_crops_with_same_id(tmp_path):
    """The shipped manifest is the official 413-row one: the synthetic ids crop9001/9003
    have no row, so their attributes give the geometry (4×4×4 at 4 nm, origin 0; 32³ at
    8 nm, origin z = 16 nm); an official id reused by other data with another shape
    (crop982/ld_mem, 140×400×400 in the manifest) falls back to its attributes too, not refused
    (shape mismatch) or shifted: a prediction written at the GT's own origin is perfect."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    gt = np.zeros((4, 4, 4), np.uint8)
    gt[1:3, 1:3, 1:3] = 1
    put(truth, "crop9001", "er", gt, vs=(4.0, 4.0, 4.0))
    put(sub, "crop9001", "er", gt, vs=(4.0, 4.0, 4.0))
    # same shape as the crop9003 row (32³ at 8 nm) but origin z = 16 nm, not 0: the row's
    # origin would shift the prediction by 2 planes
    big = np.zeros((32, 32, 32), np.uint8)
    big[0:2, 0, 0] = 1
    put(truth, "crop9003", "er", big, vs=V8, tr=(16.0, 0.0, 0.0), chunks=(16, 16, 16))
    put(sub, "crop9003", "er", big, vs=V8, tr=(16.0, 0.0, 0.0), chunks=(16, 16, 16))
    put(truth, "crop982", "ld_mem", gt, vs=(4.0, 4.0, 4.0), tr=(4.0, 0.0, 0.0))
    put(sub, "crop982", "ld_mem", gt, vs=(4.0, 4.0, 4.0), tr=(4.0, 0.0, 0.0))
    _, items = run(truth, sub)
    assert counts(items["crop9001/er"]) == (8, 0, 0)
    assert counts(items["crop9003/er"]) == (2, 0, 0)
    assert counts(items["crop982/ld_mem"]) == (8, 0, 0)
