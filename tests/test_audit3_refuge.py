"""Third independent audit of the REFUGE scorer against ``shared/specs/refuge.md`` and the
refuge rows of ``shared/specs/cli.md``.

Only rules the fixtures and the first two audits leave without a hand-checked test are
covered here. Every expected value is worked out by hand in the comments.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from emulated.audit_device import DEVICE, _emulated_cupy  # noqa: F401  (autouse)
from PIL import Image

from gpueval import api
from gpueval.metrics.classification import roc_auc, sensitivity_at_specificity
from gpueval.metrics.ranking import refuge_leaderboard


# ----------------------------------------------------------------------------- helpers
def _nan(x) -> bool:
    return x is None or math.isnan(x)


def _mask() -> np.ndarray:
    """6x6: disc rows/cols 1-4 (128), cup rows/cols 2-3 (0), background 255."""
    m = np.full((6, 6), 255, np.uint8)
    m[1:5, 1:5] = 128
    m[2:4, 2:4] = 0
    return m


def _xlsx(path: Path, rows: list[list]) -> None:
    wb = openpyxl.Workbook()
    for r in rows:
        wb.active.append(r)
    wb.save(path)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- §4 ties
def test_all_scores_tied():
    """§4 with one threshold only: the ROC is (0,0) -> (1,1). AUC: every positive/negative
    pair ties, each counts 1/2 -> 0.5. Official sensitivity: the points sorted by
    specificity are (spec 0, sens 1), (spec 1, sens 0); at 0.85: 1 + 0.85·(0 - 1) = 0.15.
    Tie-robust: the same diagonal segment, at specificity 0.85 -> 0.15."""
    labels = [0] * 7 + [1] * 3
    scores = [0.4] * 10
    assert roc_auc(labels, scores) == 0.5
    assert sensitivity_at_specificity(labels, scores, 0.85) == pytest.approx(0.15, abs=1e-15)
    assert sensitivity_at_specificity(labels, scores, 0.85, rule="tie-robust") == \
        pytest.approx(0.15, abs=1e-15)


def test_sensitivity_rule_is_a_config_key_end_to_end(tmp_path):
    """cli.md: `--set sensitivity=official|tie-robust`. 10 negatives, 2 positives, scores
    P 0.9 > N 0.8 > P 0.7 > 9 N at 0.1. ROC: (0,0) (0,.5) (.1,.5) (.1,1) (1,1).
    Official (interp1d, stable sort by specificity): spec 0.85 lies between 0.0 (sens 1) and
    the spec-0.9 group [(0.9, 0.5), (0.9, 1)]: from (0, 1) to the group's first point
    (0.9, 0.5): 1 + (0.85/0.9)·(0.5 - 1) = 1 - 0.85/1.8. Tie-robust: the vertical segment at
    fpr 0.1 (spec 0.9 >= 0.85) reaches 1. AUC by hand: positive 0.9 beats 10 negatives,
    0.7 beats 9 -> 19/20."""
    truth = tmp_path / "t"
    names = ["P1", "N1", "P2"] + [f"N{i}" for i in range(2, 11)]
    labels = [1, 0, 1] + [0] * 9
    scores = [0.9, 0.8, 0.7] + [0.1] * 9
    _write(truth / "glaucoma_labels.csv", "filename,label\n" +
           "".join(f"{n}.jpg,{lab}\n" for n, lab in zip(names, labels, strict=True)))
    sub = tmp_path / "s"
    _write(sub / "classification_results.csv", "FileName,Glaucoma Risk\n" +
           "".join(f"{n}.jpg,{s}\n" for n, s in zip(names, scores, strict=True)))
    res = api.score("refuge", truth, sub, device=DEVICE)
    assert res.status == "ok", res.error
    assert res.score is None
    assert res.metrics["auc"] == pytest.approx(19 / 20, abs=1e-15)
    assert res.metrics["sensitivity_at_085_specificity"] == pytest.approx(1 - 0.85 / 1.8,
                                                                          abs=1e-15)
    assert _nan(res.metrics["mean_cup_dice"]) and _nan(res.metrics["fovea_mean_distance"])
    res = api.score("refuge", truth, sub, overrides=["sensitivity=tie-robust"], device=DEVICE)
    assert res.metrics["sensitivity_at_085_specificity"] == 1.0
    assert res.metrics["auc"] == pytest.approx(19 / 20, abs=1e-15)


# ----------------------------------------------------------------------------- §4 rows
def test_classification_unknown_row_and_gt_xlsx_names(tmp_path):
    """§4: GT.xlsx column A name with its last 3 characters replaced by 'jpg', column B
    label > 0; submission names compared upper-cased, any order. A row naming an image
    not in the ground truth: the official code raises -> classification NaN; corrected
    ignores it. Labels: A.png 2 -> 1, B.bmp 0, C.tif -1 -> 0, D.jpg 1. Scores a .8, b .3,
    c .5, d .4 -> positives .8 and .4 against negatives .3 and .5: pairs won 2 + 1 = 3 of 4
    -> AUC 0.75."""
    truth = tmp_path / "t"
    truth.mkdir()
    _xlsx(truth / "GT.xlsx", [["ImgName", "Label"], ["A.png", 2], ["B.bmp", 0],
                              ["C.tif", -1], ["D.jpg", 1]])
    body = "d.JPG,0.4\nA.jpg,0.8\nc.jpg,0.5\nB.JPG,0.3\n"
    sub = _write(tmp_path / "s" / "classification_results.csv", "FileName,Glaucoma Risk\n" +
                 body).parent
    res = api.score("refuge", truth, sub, device=DEVICE)
    assert res.status == "ok", res.error
    assert res.metrics["auc"] == 0.75
    # also with an extra row naming an image without a label
    _write(sub / "classification_results.csv", "FileName,Glaucoma Risk\n" + body +
           "E.jpg,0.9\n")
    res = api.score("refuge", truth, sub, device=DEVICE)
    assert res.status == "ok", res.error
    assert _nan(res.metrics["auc"]) and _nan(res.metrics["sensitivity_at_085_specificity"])
    res = api.score("refuge", truth, sub, overrides=["compat=corrected"], device=DEVICE)
    assert res.metrics["auc"] == 0.75


# ----------------------------------------------------------------------------- §2 names
def test_segmentation_names_are_case_sensitive(tmp_path):
    """§2: the image list comes from segmentation/; the ground truth is looked up by the
    same file name, so 'a.bmp' has no ground truth when the truth holds 'A.bmp' -> official
    NaN (the code raises), corrected ignores it (then nothing is left -> NaN too). The
    correctly named mask scores Dice 1 / error 0."""
    truth = tmp_path / "t"
    (truth / "Disc_Cup_Masks").mkdir(parents=True)
    Image.fromarray(_mask()).save(truth / "Disc_Cup_Masks" / "A.bmp")
    Image.fromarray(_mask()).save(truth / "Disc_Cup_Masks" / "B.bmp")
    sub = tmp_path / "s"
    (sub / "segmentation").mkdir(parents=True)
    Image.fromarray(_mask()).save(sub / "segmentation" / "a.bmp")
    res = api.score("refuge", truth, sub, device=DEVICE)
    assert res.status == "ok", res.error
    assert _nan(res.metrics["mean_cup_dice"]) and _nan(res.metrics["vcdr_mae"])
    res = api.score("refuge", truth, sub, overrides=["compat=corrected"], device=DEVICE)
    assert _nan(res.metrics["mean_cup_dice"]) and res.items == []
    Image.fromarray(_mask()).save(sub / "segmentation" / "B.bmp")
    res = api.score("refuge", truth, sub, overrides=["compat=corrected"], device=DEVICE)
    m = res.metrics
    assert (m["mean_disc_dice"], m["mean_cup_dice"], m["vcdr_mae"]) == (1.0, 1.0, 0.0)
    assert [it["id"] for it in res.items] == ["B.bmp"]


def test_vcdr_of_hand_mask_and_mean_over_two_images(tmp_path):
    """§2 end to end with hand values. GT = _mask(): every disc column holds 4 pixels, every
    cup column 2 -> vCDR 2/(4 + 1e-7). Prediction X = GT. Prediction Y adds cup pixels
    (1,2) and (4,2): cup {rows 1-4 of column 2, rows 2-3 of column 3} = 6 pixels, GT cup 4,
    overlap 4 -> cup Dice 8/10; disc unchanged -> Dice 1; vCDR 4/(4 + 1e-7) -> error
    2/(4 + 1e-7). Per-image means: disc 1, cup (1 + 0.8)/2 = 0.9, MAE 1/(4 + 1e-7)."""
    truth = tmp_path / "t"
    (truth / "Disc_Cup_Masks").mkdir(parents=True)
    for n in ("X.bmp", "Y.bmp"):
        Image.fromarray(_mask()).save(truth / "Disc_Cup_Masks" / n)
    sub = tmp_path / "s"
    (sub / "segmentation").mkdir(parents=True)
    Image.fromarray(_mask()).save(sub / "segmentation" / "X.bmp")
    p = _mask()
    p[1:5, 2] = 0
    Image.fromarray(p).save(sub / "segmentation" / "Y.bmp")
    res = api.score("refuge", truth, sub, device=DEVICE)
    assert res.status == "ok", res.error
    items = {it["id"]: it for it in res.items}
    assert items["Y.bmp"]["cup_dice"] == 0.8 and items["Y.bmp"]["disc_dice"] == 1.0
    assert items["Y.bmp"]["vcdr_error"] == pytest.approx(2 / (4 + 1e-7), abs=1e-15)
    m = res.metrics
    assert m["mean_disc_dice"] == 1.0
    assert m["mean_cup_dice"] == pytest.approx(0.9, abs=1e-15)
    assert m["vcdr_mae"] == pytest.approx(1 / (4 + 1e-7), abs=1e-15)
    assert res.runtime["voxels"] == 2 * 36


# ----------------------------------------------------------------------------- §3 fovea
FOVEA_SUB = ("ImageName,Fovea_X,Fovea_Y\n"
             "A.jpg,1003.5,2004.25\n"   # GT (1000.5, 2000.25): (3, 4) -> 5 pixels
             "B.jpg,6,8\n")             # GT (0, 0): (6, 8) -> 10 pixels


def _fovea_sub(tmp_path: Path, body: str = FOVEA_SUB) -> Path:
    return _write(tmp_path / "s" / "fovea_location_results.csv", body).parent


@pytest.mark.parametrize("layout", ["test", "training", "test_no_header_names"])
def test_fovea_xlsx_columns_and_pixel_units(tmp_path, layout):
    """§3: Euclidean distance in pixels, no scaling; test file Fovea_locations.xlsx uses
    columns 2, 4, 5 (column 3 is the glaucoma label, a decoy here), training file
    Fovea_location.xlsx columns 2-4. Mean (5 + 10)/2 = 7.5. Column C (the label 1/0) read
    as x would give other distances."""
    truth = tmp_path / "t"
    truth.mkdir()
    if layout == "training":
        _xlsx(truth / "Fovea_location.xlsx", [["ID", "ImgName", "Fovea_X", "Fovea_Y"],
                                              [1, "A.jpg", 1000.5, 2000.25],
                                              [2, "B.jpg", 0, 0]])
    else:
        head = (["ID", "ImgName", "Glaucoma Label", "Fovea_X", "Fovea_Y"] if layout == "test"
                else ["c1", "c2", "c3", "c4", "c5"])
        _xlsx(truth / "Fovea_locations.xlsx", [head, [1, "A.jpg", 1, 1000.5, 2000.25],
                                               [2, "B.jpg", 0, 0, 0]])
    res = api.score("refuge", truth, _fovea_sub(tmp_path), device=DEVICE)
    assert res.status == "ok", res.error
    assert res.metrics["fovea_mean_distance"] == 7.5
    assert res.extra["fovea_distances"] == {"A.jpg": 5.0, "B.jpg": 10.0}


def test_fovea_missing_rows_not_scored_and_duplicates(tmp_path):
    """§3: the mean runs over the submitted rows (GT image C without a row is not scored);
    a name listed twice is scored twice under compat=official (GT A (0,0): rows (3,4) and
    (6,8) -> (5 + 10 + 0)/3 with B exact); compat=corrected rejects the duplicate."""
    truth = tmp_path / "t"
    _write(truth / "fovea_locations.csv", "filename,x,y\nA.jpg,0,0\nB.jpg,1,1\nC.jpg,9,9\n")
    sub = _fovea_sub(tmp_path, "ImageName,Fovea_X,Fovea_Y\nA.jpg,3,4\nB.jpg,1,1\n")
    res = api.score("refuge", truth, sub, device=DEVICE)
    assert res.metrics["fovea_mean_distance"] == 2.5  # (5 + 0) / 2, C not scored
    _write(sub / "fovea_location_results.csv",
           "ImageName,Fovea_X,Fovea_Y\nA.jpg,3,4\nA.jpg,6,8\nB.jpg,1,1\n")
    res = api.score("refuge", truth, sub, device=DEVICE)
    assert res.status == "ok", res.error
    assert res.metrics["fovea_mean_distance"] == 5.0
    res = api.score("refuge", truth, sub, overrides=["compat=corrected"], device=DEVICE)
    assert res.status == "rejected" and "twice" in res.error


# ----------------------------------------------------------------------------- §5 ranking
def test_leaderboards_hand_case_with_cyclic_ranks():
    """§5 by hand, with rank permutations that are not their own inverse (so using the
    argsort itself as the rank would fail).
      cup   A .80 B .90 C .85 -> B0 C1 A2
      disc  A .95 B .93 C .94 -> A0 C1 B2
      MAE   A .05 B .07 C .03 -> C0 A1 B2
      score A .35·2 + .25·0 + .4·1 = 1.1, B 0 + .5 + .8 = 1.3, C .35 + .25 + 0 = 0.6
      -> segmentation C (1.6), A (2.1), B (2.3); D (no segmentation) dropped.
      AUC   A .90 B .95 C NaN D .99 -> classification D, B, A (C dropped).
      final (C and D are on one board only): A .6·2 + .4·3 = 2.4, B .6·3 + .4·2 = 2.6."""
    nan = float("nan")
    res = {
        "A": {"mean_cup_dice": .80, "mean_disc_dice": .95, "vcdr_mae": .05, "auc": .90},
        "B": {"mean_cup_dice": .90, "mean_disc_dice": .93, "vcdr_mae": .07, "auc": .95},
        "C": {"mean_cup_dice": .85, "mean_disc_dice": .94, "vcdr_mae": .03, "auc": nan},
        "D": {"mean_cup_dice": nan, "mean_disc_dice": nan, "vcdr_mae": nan, "auc": .99},
    }
    b = refuge_leaderboard(res)
    seg = b["segmentation"]
    assert seg["teams_in_order"] == ["C", "A", "B"]
    np.testing.assert_allclose([r[:4] for r in seg["scores"]],
                               [[1.6, 2, 2, 1], [2.1, 3, 1, 2], [2.3, 1, 3, 3]], atol=1e-12)
    assert b["classification"]["teams_in_order"] == ["D", "B", "A"]
    assert b["final"]["teams_in_order"] == ["A", "B"]
    np.testing.assert_allclose(b["final"]["scores"], [[2.4, 2, 3], [2.6, 3, 2]], atol=1e-12)
    assert b["fovea"]["teams_in_order"] == []
