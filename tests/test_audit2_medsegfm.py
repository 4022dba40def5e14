"""Second independent audit of the MedSegFM scorer against ``shared/specs/medsegfm.md``.

Targets what ``test_audit_medsegfm.py`` and the fixtures leave open: float32 spacing at the
2 mm tie, the spacing/axis pairing, the many-class surface path, the DSC > 0.2 gate at
exactly 0.2, the "no box" rule of the interactive track, the order of the text track's uint8
cast (before the class set, before the "binary prediction" test), a binary prediction whose
only component wraps to background, a GT without instances, and label dtypes.

Expected values are hand computed or come from the ``surface-distance`` package (the
DeepMind implementation the spec names as identical to the official ``SurfaceDice.py``),
called directly on whole masks — never from gpueval.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import surface_distance as sd

from gpueval.api import score

TAU = 2.0


# ----------------------------------------------------------------------------- helpers
def ref_nsd(g: np.ndarray, p: np.ndarray, spacing) -> float:
    """§3 through DeepMind's package (spacing passed as stored, float32 stays float32)."""
    dist = sd.compute_surface_distances(g.astype(bool), p.astype(bool), spacing)
    return float(sd.compute_surface_dice_at_tolerance(dist, TAU))


def ref_dsc(g: np.ndarray, p: np.ndarray) -> float:
    return 2 * int((g & p).sum()) / (int(g.sum()) + int(p.sum()))


def _case_dir(tmp_path: Path, gt, seg, spacing, *, prompts=None, extra=None):
    truth, sub = tmp_path / "gt", tmp_path / "sub"
    truth.mkdir(parents=True)
    sub.mkdir()
    kw = dict(extra or {})
    if prompts is not None:
        kw["text_prompts_json"] = np.array(json.dumps(prompts))
    np.savez(truth / "c.npz", gts=gt, spacing=np.asarray(spacing), **kw)
    if isinstance(seg, list):  # interactive steps
        (sub / "c").mkdir()
        for k, (s, t) in enumerate(seg, start=1):
            np.savez(sub / "c" / f"step_{k}.npz", segs=s, running_time=np.float64(t))
    else:
        np.savez(sub / "c.npz", segs=seg)
    return truth, sub


def _score(tmp_path, gt, seg, spacing, *overrides, **kw):
    truth, sub = _case_dir(tmp_path, gt, seg, spacing, **kw)
    res = score("medsegfm", truth, sub, overrides=list(overrides))
    assert res.status == "ok", res.error
    return res


def _cube(shape, lo, hi, value=1, dtype=np.int64):
    v = np.zeros(shape, dtype)
    v[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = value
    return v


# ----------------------------------------------------------------------------- §1, §3 NSD
def test_float32_spacing_decides_the_2mm_tie(tmp_path):
    """§1 'spacing used verbatim' + §3 'compare with ≤': 5 steps of float32 0.4 mm are
    2.0000000298 mm (> τ), 5 steps of float64 0.4 mm are exactly 2.0 (≤ τ)."""
    g = _cube((12, 6, 6), (2, 1, 1), (5, 4, 4))
    p = np.roll(g, 5, axis=0)
    s32 = np.array([0.4, 1.0, 1.0], np.float32)
    assert math.sqrt((5 * float(s32[0])) ** 2) > TAU  # the premise, by hand
    exp32 = ref_nsd(g == 1, p == 1, s32)
    assert exp32 < 0.9  # the 5-step corners fall outside the tolerance
    res = _score(tmp_path / "a", g, p, s32)
    assert res.items[0]["nsd"] == pytest.approx(exp32, abs=1e-6)
    res = _score(tmp_path / "b", g, p, np.array([0.4, 1.0, 1.0]))
    assert res.items[0]["nsd"] == pytest.approx(1.0, abs=1e-12)  # every corner within 2.0


def test_spacing_element_k_pairs_with_axis_k(tmp_path):
    """§1: spacing[k] goes with array axis k. A one-voxel shift along axis 2 with s2 = 0.5 mm
    keeps every corner within 0.5 mm of the shifted surface: NSD = 1 by hand. Along axis 0
    (s0 = 3 mm) the shifted faces are 3 mm apart: NSD < 1, equal to the reference."""
    g = _cube((8, 8, 8), (2, 2, 2), (6, 6, 6))
    spacing = (3.0, 1.0, 0.5)
    res = _score(tmp_path / "a", g, np.roll(g, 1, axis=2), spacing)
    assert res.items[0]["nsd"] == 1.0
    p0 = np.roll(g, 1, axis=0)
    exp = ref_nsd(g == 1, p0 == 1, spacing)
    assert exp < 1.0
    res = _score(tmp_path / "b", g, p0, spacing)
    assert res.items[0]["nsd"] == pytest.approx(exp, abs=1e-6)
    # the reversed pairing would score the axis-2 shift as 3 mm: a different value
    assert ref_nsd(g == 1, np.roll(g, 1, axis=2) == 1, spacing[::-1]) < 1.0


@pytest.mark.parametrize("chunk", [None, 3])
def test_many_classes_match_reference(tmp_path, chunk):
    """§2–§4 with 7 classes (gpueval's per-chunk class filter only runs for > 4 classes):
    per-class DSC and NSD and their plain mean, chunked or not."""
    rng = np.random.default_rng(7)
    shape = (7, 9, 8)
    gt = np.zeros(shape, np.int64)
    for lab in range(1, 8):
        lo = rng.integers(0, [5, 7, 6])
        hi = lo + rng.integers(1, 4, 3)
        gt[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = lab
    seg = np.roll(gt, 1, axis=int(rng.integers(0, 3)))
    seg[rng.random(shape) < 0.1] = 3
    spacing = (1.5, 0.8, 1.0)
    classes = [int(c) for c in np.unique(gt)[1:]]
    assert len(classes) > 4
    dsc = [ref_dsc(gt == c, seg == c) for c in classes]
    nsd = [ref_nsd(gt == c, seg == c, spacing) for c in classes]
    ov = [f"chunk_size={chunk}"] if chunk else []
    res = _score(tmp_path, gt, seg, spacing, *ov)
    per = res.extra["cases"]["c"]["per_class"]
    for c, d, n in zip(classes, dsc, nsd, strict=True):
        assert per[str(c)]["dsc"] == pytest.approx(d, abs=1e-12)
        assert per[str(c)]["nsd_2mm"] == pytest.approx(n, abs=1e-6)
    assert res.items[0]["dsc"] == pytest.approx(float(np.mean(dsc)), abs=1e-12)
    assert res.items[0]["nsd"] == pytest.approx(float(np.mean(nsd)), abs=1e-6)


@pytest.mark.parametrize("dtype", [np.int8, np.uint16, np.int32, np.uint64, bool])
def test_prediction_dtype_does_not_matter(tmp_path, dtype):
    """§1 'labels: integers': the same labels in any integer width (or bool) score the same;
    a uint8 GT against an int64 prediction is compared by value."""
    gt = _cube((4, 5, 6), (1, 1, 2), (3, 4, 5), dtype=np.uint8)
    seg = np.roll(gt, 1, axis=1).astype(dtype)
    res = _score(tmp_path, gt, seg, (1.0, 1.0, 1.0))
    g, p = gt == 1, seg.astype(np.int64) == 1
    assert res.items[0]["dsc"] == pytest.approx(ref_dsc(g, p), abs=1e-12)
    assert res.items[0]["nsd"] == pytest.approx(ref_nsd(g, p, (1.0, 1.0, 1.0)), abs=1e-6)


def test_no_uint8_wrap_outside_the_text_track(tmp_path):
    """§4: only the text track casts to uint8. A predicted 257 is not class 1 in the semantic
    track (DSC 0, NSD 0) but is in the text track (uint8(257) = 1: perfect)."""
    gt = _cube((3, 4, 4), (1, 1, 1), (2, 3, 3), dtype=np.uint8)
    seg = np.where(gt == 1, 257, 0).astype(np.int64)
    res = _score(tmp_path / "a", gt, seg, (1.0, 1.0, 1.0))
    assert (res.items[0]["dsc"], res.items[0]["nsd"]) == (0.0, 0.0)
    res = _score(tmp_path / "b", gt, seg, (1.0, 1.0, 1.0), "track=text",
                 prompts={"1": "organ", "instance_label": 0})
    assert (res.items[0]["dsc"], res.items[0]["nsd"]) == (1.0, 1.0)


# ----------------------------------------------------------------------------- §5 interactive
def _steps(gt, preds, times=None):
    times = times or [0.0] * len(preds)
    return list(zip(preds, times, strict=True))


def test_interactive_gate_is_strict_at_exactly_0_2(tmp_path):
    """§5 'NSD_k = case NSD only if DSC_k > 0.2 (strict)': DSC = 2·1/(5+5) = 0.2 → NSD 0;
    DSC = 2·2/(5+5) = 0.4 → the ungated NSD."""
    gt = np.zeros((1, 1, 12), np.int64)
    gt[0, 0, 0:5] = 1
    p02 = np.zeros_like(gt)
    p02[0, 0, 4:9] = 1  # overlap 1
    p04 = np.zeros_like(gt)
    p04[0, 0, 3:8] = 1  # overlap 2
    assert ref_dsc(gt == 1, p02 == 1) == 0.2 and ref_nsd(gt == 1, p02 == 1, (1, 1, 1)) > 0
    res = _score(tmp_path, gt, _steps(gt, [p02, p02, p02, p02, p04, p02]), (1.0, 1.0, 1.0),
                 "track=interactive")
    it = res.items[0]
    assert it["dsc_1"] == 0.2 and it["nsd_1"] == 0.0
    assert it["dsc_5"] == 0.4
    assert it["nsd_5"] == pytest.approx(ref_nsd(gt == 1, p04 == 1, (1, 1, 1)), abs=1e-6)
    assert it["nsd_auc"] == pytest.approx(it["nsd_5"], abs=1e-12)  # only v5 is non-zero
    assert it["dsc_auc"] == pytest.approx(0.5 * 0.2 + 0.2 + 0.2 + 0.4 + 0.5 * 0.2, abs=1e-12)


@pytest.mark.parametrize("boxes", [False, True])
def test_interactive_no_box_zeroes_step_1(tmp_path, boxes):
    """§5 'No box': an input npz without ``boxes`` → step 1 not run, DSC_1 = NSD_1 = 0,
    running time 0; steps 2–6, the AUC and the finals are unchanged. With ``boxes`` the
    (perfect) step 1 scores 1."""
    gt = _cube((4, 5, 6), (1, 1, 1), (3, 4, 5))
    extra = {"imgs": np.zeros(gt.shape, np.uint8)}
    if boxes:
        extra["boxes"] = np.array([[1, 3, 2, 1, 1, 4, 5]])
    res = _score(tmp_path, gt, _steps(gt, [gt] * 6, [5.0] * 6), (1.0, 1.0, 1.0),
                 "track=interactive", extra=extra)
    it = res.items[0]
    expect_1 = 1.0 if boxes else 0.0
    assert (it["dsc_1"], it["nsd_1"]) == (expect_1, expect_1)
    assert it["running_time_1"] == (5.0 if boxes else 0.0)
    assert it["total_running_time"] == (30.0 if boxes else 25.0)
    assert all(it[f"dsc_{k}"] == 1.0 and it[f"nsd_{k}"] == 1.0 for k in range(2, 7))
    assert (it["dsc_auc"], it["nsd_auc"], it["dsc_final"], it["nsd_final"]) == (4, 4, 1, 1)
    assert it["num_class"] == 1


# ----------------------------------------------------------------------------- §4, §6 text
def test_text_cast_precedes_the_class_set(tmp_path):
    """§4 'casts both gts and segs to uint8 before anything else': GT {1, 256} has no 0
    voxel, but uint8(256) = 0 is background, so class 1 is kept (not dropped as 'the first')
    and 256 is no class. Class 1: GT 4 voxels, prediction 2 of them → DSC 2·2/6."""
    gt = np.full((2, 3, 4), 256, np.int64)
    gt[0, 1:3, 1:3] = 1
    seg = np.zeros_like(gt)
    seg[0, 1, 1:3] = 1
    res = _score(tmp_path, gt, seg, (1.0, 1.0, 1.0), "track=text",
                 prompts={"1": "a", "256": "b", "instance_label": 0})
    assert res.extra["cases"]["c"]["classes"] == [1]
    assert res.items[0]["dsc"] == pytest.approx(4 / 6, abs=1e-12)
    assert res.items[0]["nsd"] == pytest.approx(ref_nsd(gt == 1, seg == 1, (1, 1, 1)),
                                                abs=1e-6)


def test_text_gt_without_background_drops_smallest_prompted_label(tmp_path):
    """§4 quirk on the text track: GT {1, 2} with no 0 voxel → class 1 dropped even though
    prompted; only class 2 (perfect) is scored."""
    gt = np.ones((2, 3, 4), np.int64)
    gt[1] = 2
    seg = np.where(gt == 2, 2, 0)
    res = _score(tmp_path, gt, seg, (1.0, 1.0, 1.0), "track=text",
                 prompts={"1": "a", "2": "b", "instance_label": 0})
    assert res.extra["cases"]["c"]["classes"] == [2]
    assert (res.items[0]["dsc"], res.items[0]["nsd"]) == (1.0, 1.0)


def test_text_binary_test_runs_after_the_cast(tmp_path):
    """§6 step 1 after the uint8 cast: {0, 1, 257} becomes {0, 1}, i.e. binary, so the two
    separate cubes become two instances: F1 = 1. (Tested before the cast it would be three
    values, one instance covering both cubes: IoU 0.5 each, F1 = 2/3.)"""
    gt = np.zeros((3, 3, 9), np.int64)
    gt[1, 1, 1:3] = 1
    gt[1, 1, 5:7] = 2
    seg = np.where(gt == 1, 1, np.where(gt == 2, 257, 0))
    res = _score(tmp_path, gt, seg, (1.0, 1.0, 1.0), "track=text",
                 prompts={"1": "cells", "instance_label": 1})
    assert (res.items[0]["f1"], res.items[0]["dsc_tp"]) == (1.0, 1.0)


@pytest.mark.parametrize("compat, f1", [("official", 0.0), ("corrected", 1.0)])
def test_binary_255_single_component_wraps_to_no_instance(tmp_path, compat, f1):
    """§6 steps 1 and 3: one component of a {0, 255} prediction gets id 1 + 255 = 256 ≡ 0 in
    uint8, so the prediction has no instance: TP = FP = FN = 0 and F1 = DSC_TP = 0 although
    it equals the GT. Without the cast the match is perfect."""
    gt = _cube((3, 3, 3), (1, 1, 1), (2, 2, 3))
    res = _score(tmp_path, gt, gt * 255, (1.0, 1.0, 1.0), "track=text", f"compat={compat}",
                 prompts={"1": "cells", "instance_label": 1})
    assert (res.items[0]["f1"], res.items[0]["dsc_tp"]) == (f1, f1)
    if compat == "official":
        inst = res.extra["cases"]["c"]
        assert (inst["tp"], inst["fp"], inst["fn"]) == (0, 0, 0)


def test_instance_gt_empty_prediction_not(tmp_path):
    """§7 'instance: GT empty, prediction not → F1 0 (TP 0, FN 0)', DSC_TP 0."""
    seg = np.zeros((3, 3, 5), np.int64)
    seg[1, 1, 0] = 3
    seg[1, 1, 3] = 4
    res = _score(tmp_path, np.zeros_like(seg), seg, (1.0, 1.0, 1.0), "track=text",
                 prompts={"1": "cells", "instance_label": 1})
    it, inst = res.items[0], res.extra["cases"]["c"]
    assert (it["f1"], it["dsc_tp"]) == (0.0, 0.0)
    assert (inst["tp"], inst["fp"], inst["fn"]) == (0, 2, 0)
    assert math.isnan(it["dsc"]) and math.isnan(it["nsd"])


def test_pickled_prompts_with_numpy_scalars(tmp_path):
    """§1 'text_prompts, a pickled dict': a dict written from NumPy code may hold
    ``instance_label`` as ``np.int64(1)``; it means instance scoring, like a plain 1
    (prediction equals GT: F1 1)."""
    gt = _cube((3, 3, 3), (1, 1, 1), (2, 2, 3))
    obj = np.empty((), dtype=object)
    obj[()] = {"1": "cells", "instance_label": np.int64(1)}
    res = _score(tmp_path, gt, gt, (1.0, 1.0, 1.0), "track=text",
                 extra={"text_prompts": obj})
    assert res.extra["cases"]["c"]["kind"] == "instance"
    assert (res.items[0]["f1"], res.items[0]["dsc_tp"]) == (1.0, 1.0)


@pytest.mark.parametrize("boxes", [False, True])
def test_interactive_no_box_zarr_truth(tmp_path, boxes):
    """§5 'No box' for a zarr truth group: an ``imgs`` array without a ``boxes`` attribute
    means no box (step 1 = 0); with ``boxes`` the perfect step 1 scores 1."""
    import zarr

    gt = _cube((4, 5, 6), (1, 1, 1), (3, 4, 5), dtype=np.uint8)
    truth, sub = tmp_path / "gt", tmp_path / "sub"
    group = zarr.open_group(str(truth / "c.zarr"), mode="w")
    for name, data in (("gts", gt), ("imgs", np.zeros_like(gt))):
        arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(2, 5, 6))
        arr[...] = data
    attrs = {"spacing": [1.0, 1.0, 1.0]} | ({"boxes": [[1, 3, 2, 1, 1, 4, 5]]} if boxes else {})
    group["gts"].attrs.update(attrs)
    (sub / "c").mkdir(parents=True)
    for k in range(1, 7):
        np.savez(sub / "c" / f"step_{k}.npz", segs=gt)
    res = score("medsegfm", truth, sub, overrides=["track=interactive"])
    assert res.status == "ok", res.error
    it = res.items[0]
    assert (it["dsc_1"], it["nsd_1"]) == ((1.0, 1.0) if boxes else (0.0, 0.0))
    assert (it["dsc_2"], it["dsc_final"], it["nsd_auc"]) == (1.0, 1.0, 4.0)
