"""Third audit of the MedSegFM scorer against ``shared/specs/medsegfm.md`` (and cli.md).

Covers rules the first two audits and the fixtures leave open: the "binary prediction" test
when neither value is 0 (cc3d labels the prediction itself: one component per label region),
a single-valued prediction (not binary: one instance), DSC_TP and F1 with an unmatched
prediction, the uint8 cast of negative labels, prompt keys read with ``int()``, the text CSV's
4-decimal rounding of np.float64 values, the interactive time limit at equality, ``num_class``
for a GT without background, an interactive case whose GT has no class, the absence of the
uint8 cast on interactive steps, and a missing interactive step (spec: zeros; the official
loop's stale output file: ``interactive.missing_step=previous``).

Every expected value is computed by hand in the docstring or comment next to it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from gpueval.api import score
from gpueval.challenges import medsegfm as M
from gpueval.errors import TruthError
from gpueval.result import Result

UNIT = (1.0, 1.0, 1.0)


def _case_dir(tmp_path: Path, gt, seg, spacing=UNIT, *, prompts=None):
    truth, sub = tmp_path / "gt", tmp_path / "sub"
    truth.mkdir(parents=True)
    sub.mkdir()
    kw = {}
    if prompts is not None:
        kw["text_prompts_json"] = np.array(json.dumps(prompts))
    np.savez(truth / "c.npz", gts=gt, spacing=np.asarray(spacing), **kw)
    if isinstance(seg, list):  # interactive: [(segs or None, running_time), ...]
        (sub / "c").mkdir()
        for k, (s, t) in enumerate(seg, start=1):
            if s is not None:
                np.savez(sub / "c" / f"step_{k}.npz", segs=s, running_time=np.float64(t))
    else:
        np.savez(sub / "c.npz", segs=seg)
    return truth, sub


def _score(tmp_path, gt, seg, *overrides, spacing=UNIT, prompts=None):
    truth, sub = _case_dir(tmp_path, gt, seg, spacing, prompts=prompts)
    res = score("medsegfm", truth, sub, overrides=list(overrides))
    assert res.status == "ok", res.error
    return res


INSTANCE = {"1": "cells", "instance_label": 1}


# ----------------------------------------------------------------------------- §6 instance
def test_binary_prediction_without_zero_splits_per_label(tmp_path):
    """§6.1 'exactly two distinct values' → cc3d on the prediction itself (multi-label): in
    [3, 3, 5, 5] the runs of 3 and of 5 are two components (ids 1+5, 2+5), matching GT
    [1, 1, 2, 2] one to one: F1 = 1, DSC_TP = 1. (Labelling ``segs != 0`` instead would give
    one instance of IoU 2/4 with each GT cell: TP 1, FN 1, F1 2/3.)"""
    gt = np.array([1, 1, 2, 2], np.int64).reshape(1, 1, 4)
    seg = np.array([3, 3, 5, 5], np.int64).reshape(1, 1, 4)
    res = _score(tmp_path, gt, seg, "track=text", prompts=INSTANCE)
    inst = res.extra["cases"]["c"]
    assert (inst["tp"], inst["fp"], inst["fn"]) == (2, 0, 0)
    assert (res.items[0]["f1"], res.items[0]["dsc_tp"]) == (1.0, 1.0)


def test_single_valued_prediction_is_one_instance(tmp_path):
    """§6.1 applies to exactly two values only: [7, 7, 7, 7] has one value, so it is one
    instance covering the volume. GT [1, 1, 0, 0]: IoU 2/4 = 0.5 ≥ 0.5 → TP 1, F1 1;
    DSC_TP = 2·2/(2+4) = 2/3."""
    gt = np.array([1, 1, 0, 0], np.int64).reshape(1, 1, 4)
    seg = np.full_like(gt, 7)
    res = _score(tmp_path, gt, seg, "track=text", prompts=INSTANCE)
    assert res.items[0]["f1"] == 1.0
    assert res.items[0]["dsc_tp"] == pytest.approx(2 / 3, abs=1e-12)


def test_dsc_tp_and_f1_by_hand(tmp_path):
    """§6.4–6.6. GT cells A (4 voxels) and B (2); predictions P (3 voxels inside A: IoU 3/4,
    Dice 6/7), Q (B plus one voxel: IoU 2/3, Dice 4/5), R (1 voxel elsewhere, unmatched).
    TP 2, FP 1, FN 0: precision 2/3, recall 1, F1 = 2·(2/3)/(5/3) = 0.8;
    DSC_TP = (6/7 + 4/5)/2 (mean over matched pairs only)."""
    gt = np.zeros((1, 3, 8), np.int64)
    gt[0, 0, 0:4] = 1
    gt[0, 2, 0:2] = 2
    seg = np.zeros_like(gt)
    seg[0, 0, 0:3] = 4
    seg[0, 2, 0:3] = 9
    seg[0, 1, 7] = 6
    res = _score(tmp_path, gt, seg, "track=text", prompts=INSTANCE)
    inst = res.extra["cases"]["c"]
    assert (inst["tp"], inst["fp"], inst["fn"]) == (2, 1, 0)
    assert res.items[0]["f1"] == pytest.approx(0.8, abs=1e-12)
    assert res.items[0]["dsc_tp"] == pytest.approx((6 / 7 + 4 / 5) / 2, abs=1e-12)


# ----------------------------------------------------------------------------- §4 text cast
@pytest.mark.parametrize("compat, expect", [("official", 1.0), ("corrected", 0.0)])
def test_text_cast_wraps_negative_labels(tmp_path, compat, expect):
    """§4 'casts both gts and segs to uint8': a predicted −255 is uint8 1, so predicting −255
    where the GT has 1 is perfect (DSC = NSD = 1); without the cast it is no class 1 (0)."""
    gt = np.zeros((3, 4, 4), np.int64)
    gt[1, 1:3, 1:3] = 1
    seg = np.where(gt == 1, -255, 0)
    res = _score(tmp_path, gt, seg, "track=text", f"compat={compat}",
                 prompts={"1": "organ", "instance_label": 0})
    assert (res.items[0]["dsc"], res.items[0]["nsd"]) == (expect, expect)


def test_prompt_keys_are_read_with_int(tmp_path):
    """§4 'integer keys of text_prompts': the script takes ``int(k)``, so '+1' is class 1 and
    ' 2' class 2. Class 1 perfect (DSC 1), class 2 absent from the prediction (DSC 0):
    case DSC = 0.5. A key int() refuses ('liver') names no class."""
    gt = np.zeros((2, 4, 4), np.int64)
    gt[0, 1:3, 1:3] = 1
    gt[1, 1:3, 1:3] = 2
    seg = np.where(gt == 1, 1, 0)
    res = _score(tmp_path, gt, seg, "track=text",
                 prompts={"+1": "a", " 2": "b", "liver": "c", "instance_label": 0})
    assert res.extra["cases"]["c"]["classes"] == [1, 2]
    assert res.items[0]["dsc"] == 0.5


def test_text_csv_rounds_as_numpy_rounds_float64():
    """§6 CSV 'rounded to 4 decimals' by ``round(x, 4)`` on np.float64 values, i.e. np.round
    (x·10⁴, rint half-even, /10⁴): 0.12345·10⁴ = 1234.5 → 1234 → 0.1234 (Python's round on a
    float gives 0.1235); 0.33335·10⁴ = 3333.5 after the float multiply → 3334 → 0.3334
    (Python: 0.3333, the double 0.33335 being just below the half)."""
    assert round(0.12345, 4) == 0.1235 and round(0.33335, 4) == 0.3333  # what we must not do
    res = Result("medsegfm", "v", items=[
        {"id": "a", "running_time": 1.0, "dsc": 0.12345, "nsd": 0.33335, "f1": math.nan,
         "dsc_tp": math.nan}])
    res.extra["track"] = "text"
    row = next(csv.DictReader(io.StringIO(M.write_official_csv(res))))
    assert (row["DSC"], row["NSD"], row["F1"], row["DSC_TP"]) == ("0.1234", "0.3334", "", "")
    assert 0.33335 * 10**4 == 3333.5  # the premise of the second value, by hand


# ----------------------------------------------------------------------------- §5 interactive
def _cube():
    gt = np.zeros((3, 4, 4), np.int64)
    gt[1, 1:3, 1:3] = 1
    return gt


@pytest.mark.parametrize("per_step, exceeded", [(15.0, False), (15.5, True)])
def test_interactive_time_limit_is_strict(tmp_path, per_step, exceeded):
    """§5 'Limit: 90 s × (number of GT classes)', exceeded when the total is *above* it:
    6 × 15 s = 90 s with one class is within; 6 × 15.5 = 93 s is not."""
    gt = _cube()
    res = _score(tmp_path, gt, [(gt, per_step)] * 6, "track=interactive")
    it = res.items[0]
    assert it["total_running_time"] == 6 * per_step
    assert (it["runtime_upperbound"], it["num_class"]) == (90, 1)
    assert it["time_limit_exceeded"] is exceeded
    assert (it["dsc_final"], it["nsd_auc"]) == (1.0, 4.0)  # flag only: scores untouched


@pytest.mark.parametrize("compat, classes", [("official", [2]), ("corrected", [1, 2])])
def test_interactive_gt_without_background(tmp_path, compat, classes):
    """§4 quirk on the interactive track: GT {1, 2} without a 0 voxel → the script's class
    list and num_class = len(unique) − 1 = 1 (upper bound 90 s); class 2 predicted perfectly,
    class 1 as 0 → official DSC 1 (class 1 dropped), corrected (1 + 0)/2 = 0.5."""
    gt = np.ones((2, 3, 3), np.int64)
    gt[1] = 2
    seg = np.where(gt == 2, 2, 0)
    res = _score(tmp_path, gt, [(seg, 0.0)] * 6, "track=interactive", f"compat={compat}")
    it = res.items[0]
    assert res.extra["cases"]["c"]["classes"] == classes
    assert it["num_class"] == len(classes) and it["runtime_upperbound"] == 90 * len(classes)
    assert it["dsc_final"] == (1.0 if compat == "official" else 0.5)


def test_interactive_gt_without_classes(tmp_path):
    """§4 'Empty class set → NaN' with the interactive script: DSC_k = mean([]) = NaN,
    NaN > 0.2 is false so NSD_k = 0; DSC AUC NaN, NSD AUC 0; num_class 0, upper bound 0 s,
    so any running time (6 × 1 s) exceeds it."""
    gt = np.zeros((2, 3, 3), np.int64)
    seg = np.ones_like(gt)
    res = _score(tmp_path, gt, [(seg, 1.0)] * 6, "track=interactive")
    it = res.items[0]
    assert all(math.isnan(it[f"dsc_{k}"]) and it[f"nsd_{k}"] == 0.0 for k in range(1, 7))
    assert math.isnan(it["dsc_auc"]) and it["nsd_auc"] == 0.0
    assert math.isnan(it["dsc_final"]) and it["nsd_final"] == 0.0
    assert (it["num_class"], it["runtime_upperbound"]) == (0, 0)
    assert it["time_limit_exceeded"] is True


def test_interactive_steps_are_not_cast_to_uint8(tmp_path):
    """§4: only the text track casts. An interactive step predicting 257 where the GT has 1
    is no class 1: DSC_k = 0 and NSD_k = 0 at every step."""
    gt = _cube()
    res = _score(tmp_path, gt, [(np.where(gt == 1, 257, 0), 0.0)] * 6, "track=interactive")
    it = res.items[0]
    assert all(it[f"dsc_{k}"] == 0.0 and it[f"nsd_{k}"] == 0.0 for k in range(1, 7))


@pytest.mark.parametrize("mode, dsc_4, dsc_auc", [("zeros", 0.0, 3.0), ("previous", 1.0, 4.0)])
def test_interactive_missing_step(tmp_path, mode, dsc_4, dsc_auc):
    """§5 'Failed step → all zeros': steps 1–3, 5, 6 perfect, step 4 missing → DSC_4 = 0,
    DSC AUC = ½·1 + 1 + 0 + 1 + ½·1 = 3. With ``missing_step=previous`` (the official loop
    leaves step 3's file in its output folder and scores it) DSC_4 = 1, AUC = 4."""
    gt = _cube()
    steps = [(gt, 2.0)] * 3 + [(None, 0.0)] + [(gt, 2.0)] * 2
    res = _score(tmp_path, gt, steps, "track=interactive",
                 f"interactive.missing_step={mode}")
    it = res.items[0]
    assert (it["dsc_4"], it["nsd_4"]) == (dsc_4, dsc_4)
    assert (it["dsc_auc"], it["nsd_auc"]) == (dsc_auc, dsc_auc)
    assert it["running_time_4"] == 0.0 and it["total_running_time"] == 10.0
    if mode == "previous":
        assert res.extra["cases"]["c"]["steps"]["4"]["reused_step"] == 3


def test_interactive_missing_first_steps_are_zeros_either_way(tmp_path):
    """With no earlier output file there is nothing to reuse: steps 1–2 missing score 0 in
    both modes; steps 3–6 perfect → DSC AUC = ½·0 + 1 + 1 + 1 + ½·1 = 3.5."""
    gt = _cube()
    steps = [(None, 0.0)] * 2 + [(gt, 0.0)] * 4
    for mode in ("zeros", "previous"):
        res = _score(tmp_path / mode, gt, steps, "track=interactive",
                     f"interactive.missing_step={mode}")
        it = res.items[0]
        assert (it["dsc_1"], it["dsc_2"], it["dsc_auc"]) == (0.0, 0.0, 3.5)


def test_missing_step_setting_is_checked(tmp_path):
    gt = _cube()
    truth, sub = _case_dir(tmp_path, gt, [(gt, 0.0)] * 6)
    with pytest.raises(TruthError, match="missing_step"):
        score("medsegfm", truth, sub,
              overrides=["track=interactive", "interactive.missing_step=last"])
