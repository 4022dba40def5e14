"""Second independent audit of the REFUGE scorer against ``shared/specs/refuge.md``.

Each test targets a spec statement the fixtures and the first audit (``test_audit_refuge.py``)
leave open. Expected values are worked out by hand in the comments, or come from
scikit-learn / SciPy applied to the spec's formula — never from gpueval's own output.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from emulated.audit_device import DEVICE, _emulated_cupy  # noqa: F401  (autouse)
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gpueval import api
from gpueval.challenges import refuge

EPS = 1e-7  # spec §2: vCDR = d_cup / (d_disc + 1e-7)


# ----------------------------------------------------------------------------- helpers
def _truth(root: Path, masks: dict[str, np.ndarray], labels: dict[str, object] | None = None,
           ) -> Path:
    (root / "Disc_Cup_Masks").mkdir(parents=True)
    for name, m in masks.items():
        Image.fromarray(m).save(root / "Disc_Cup_Masks" / name)
    if labels is not None:
        with open(root / "glaucoma_labels.csv", "w") as f:
            f.write("filename,label\n" + "".join(f"{n},{v}\n" for n, v in labels.items()))
    return root


def _submission(root: Path, masks: dict[str, np.ndarray],
                scores: dict[str, float] | None = None) -> Path:
    (root / "segmentation").mkdir(parents=True)
    for name, m in masks.items():
        Image.fromarray(m).save(root / "segmentation" / name)
    if scores is not None:
        with open(root / "classification_results.csv", "w") as f:
            f.write("FileName,Glaucoma Risk\n" +
                    "".join(f"{n},{s!r}\n" for n, s in scores.items()))
    return root


def _nan(x) -> bool:
    return x is None or math.isnan(x)


def _items(res) -> dict[str, dict]:
    return {it["id"]: it for it in res.items}


def _disc_cup(shape, disc, cup) -> np.ndarray:
    """Background 255, ``disc`` slices set to 128, then ``cup`` slices set to 0."""
    m = np.full(shape, 255, np.uint8)
    if disc is not None:
        m[disc] = 128
    if cup is not None:
        m[cup] = 0
    return m


# ----------------------------------------------------------------------------- §1/§2 values
def test_cup_is_exactly_zero_and_disc_is_below_255():
    """§1: 'any value other than 0 counts as not cup, any value other than 255 as disc'.
    Near-black (1, 2) and near-white (254) pixels must not be thresholded."""
    pred = np.array([[0, 1, 2, 127, 254, 255]], np.uint8)
    gt = np.array([[0, 0, 0, 128, 128, 128]], np.uint8)
    c = refuge.mask_counts(pred, gt)
    # cup: pred {0}, gt {0,1,2}: |S|=1, |G|=3, overlap 1 -> Dice 2/4
    assert (c.cup_pred, c.cup_gt, c.cup_both) == (1, 3, 1)
    # disc: pred = first five pixels (< 255), gt all six: overlap 5 -> Dice 10/11
    assert (c.disc_pred, c.disc_gt, c.disc_both) == (5, 6, 5)
    item = refuge.segmentation_item("x", c)
    assert item["cup_dice"] == 0.5
    assert item["disc_dice"] == 10 / 11


def test_vcdr_takes_cup_and_disc_diameters_from_different_columns():
    """§2: each vertical diameter is the largest per-column count of its own mask (rows are
    the vertical axis); 'cup and disc may come from different columns'."""
    m = np.full((5, 4), 255, np.uint8)
    m[:, 0] = 128      # disc column of 5 pixels
    m[1:4, 2] = 0      # cup column of 3 pixels (also disc: 0 < 255)
    m[0, 3] = 0        # a lone cup pixel elsewhere
    other = np.full((5, 4), 255, np.uint8)
    other[2, :] = 128  # one horizontal line of disc: vertical diameter 1, no cup
    c = refuge.mask_counts(m, other)
    assert (c.cup_diameter_pred, c.disc_diameter_pred) == (3, 5)
    assert (c.cup_diameter_gt, c.disc_diameter_gt) == (0, 1)
    item = refuge.segmentation_item("x", c)
    # vCDR(pred) = 3 / (5 + 1e-7), not the per-column ratio 3/3; vCDR(gt) = 0 / (1 + 1e-7)
    assert item["vcdr_pred"] == 3 / (5 + EPS)
    assert item["vcdr_gt"] == 0.0
    assert item["vcdr_error"] == 3 / (5 + EPS)
    # transposed, "vertical" is the other axis: rows of m hold at most 2 disc pixels, the
    # line of `other` becomes a column of 4
    t = refuge.mask_counts(m.T, other.T)
    assert (t.disc_diameter_pred, t.disc_diameter_gt) == (2, 4)


def test_palette_bmp_reads_palette_red_channel_not_luminance(tmp_path):
    """§1: the 2018 reader is scipy.misc.imread, whose fromimage() turns a palette image into
    RGB before np.array, and a 3-D array keeps channel 0. Colours chosen so that the
    luminance (convert('L')) or the raw palette index would give other classes."""
    idx = np.array([[0, 1, 2], [1, 2, 0]], np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette([0, 200, 200,    # red 0 -> cup (luminance 140 would be disc)
                   128, 0, 255,    # red 128 -> disc
                   255, 0, 0])     # red 255 -> background (luminance 76 would be disc)
    im.save(tmp_path / "p.bmp")
    assert Image.open(tmp_path / "p.bmp").mode == "P"
    np.testing.assert_array_equal(refuge.read_mask(tmp_path / "p.bmp"),
                                  [[0, 128, 255], [128, 255, 0]])


def test_ground_truth_rgb_keeps_channel_0(tmp_path):
    """§1 'a 3-D array keeps channel 0 only' applies to the ground truth as well."""
    gt = _disc_cup((8, 6), (slice(1, 7), slice(1, 5)), (slice(3, 5), slice(2, 4)))
    noise = np.random.default_rng(0).integers(0, 256, (8, 6, 2), dtype=np.uint8)
    truth = _truth(tmp_path / "t", {"A.bmp": np.dstack([gt, noise])})
    sub = _submission(tmp_path / "s", {"A.bmp": gt})
    res = api.score("refuge", truth, sub, device=DEVICE)
    assert res.status == "ok", res.error
    m = res.metrics
    assert (m["mean_disc_dice"], m["mean_cup_dice"], m["vcdr_mae"]) == (1.0, 1.0, 0.0)


# ----------------------------------------------------------------------------- §2 averaging
def test_means_are_per_image_not_pooled_over_images_of_different_sizes(tmp_path):
    """§2: 'arithmetic means over the images ... (per-image averaging, not pooled pixels)';
    test images come in two sizes (Zeiss / Canon), so pooling would weight by size."""
    small = _disc_cup((4, 4), (slice(1, 3), slice(1, 3)), (slice(1, 2), slice(1, 2)))
    big_gt = _disc_cup((8, 8), (slice(0, 4), slice(0, 4)), (slice(1, 3), slice(1, 3)))
    big_pr = _disc_cup((8, 8), (slice(4, 8), slice(4, 8)), (slice(4, 8), slice(5, 6)))
    truth = _truth(tmp_path / "t", {"S.bmp": small, "L.bmp": big_gt})
    sub = _submission(tmp_path / "s", {"S.bmp": small, "L.bmp": big_pr})
    res = api.score("refuge", truth, sub, device=DEVICE)
    assert res.status == "ok", res.error
    it = _items(res)
    # S: identical -> Dice 1, 1, error 0. L: no overlap -> Dice 0, 0;
    # vCDR gt = 2/(4+eps) (cup rows 1-2), pred = 4/(4+eps) (cup column of 4): error 2/(4+eps)
    assert (it["S.bmp"]["disc_dice"], it["S.bmp"]["cup_dice"]) == (1.0, 1.0)
    assert (it["L.bmp"]["disc_dice"], it["L.bmp"]["cup_dice"]) == (0.0, 0.0)
    err = abs(4 / (4 + EPS) - 2 / (4 + EPS))
    assert it["L.bmp"]["vcdr_error"] == pytest.approx(err, abs=1e-15)
    m = res.metrics
    assert m["mean_disc_dice"] == 0.5  # pooled: 2*4 / (4 + 4 + 16 + 16) = 0.2
    assert m["mean_cup_dice"] == 0.5
    assert m["vcdr_mae"] == pytest.approx(err / 2, abs=1e-15)


def test_non_bmp_files_in_segmentation_are_ignored(tmp_path):
    """§1: 'one .bmp per image ... (lower-case extension; other extensions are ignored)'.
    The ignored files would lower the means (all cup) or, lacking ground truth, make the
    official segmentation NaN, if they were read."""
    gt = _disc_cup((6, 6), (slice(1, 5), slice(1, 5)), (slice(2, 4), slice(2, 4)))
    truth = _truth(tmp_path / "t", {"A.bmp": gt, "B.bmp": gt})
    sub = _submission(tmp_path / "s", {"A.bmp": gt})
    zeros = np.zeros_like(gt)
    Image.fromarray(zeros).save(sub / "segmentation" / "B.png")
    Image.fromarray(zeros).save(sub / "segmentation" / "B.jpg")
    Image.fromarray(zeros).save(sub / "segmentation" / "X.png")  # no ground truth either
    res = api.score("refuge", truth, sub, device=DEVICE)
    assert res.status == "ok", res.error
    assert [it["id"] for it in res.items] == ["A.bmp"]  # B not submitted: not scored
    m = res.metrics
    assert (m["mean_disc_dice"], m["mean_cup_dice"], m["vcdr_mae"]) == (1.0, 1.0, 0.0)


def test_zip_with_macosx_entries_next_to_top_level_parts(tmp_path):
    """§1: '__MACOSX ... tolerated' (here without a wrapping folder: macOS then writes
    __MACOSX/segmentation/._<name>.bmp, which must not count as a mask)."""
    gt = _disc_cup((6, 6), (slice(1, 5), slice(1, 5)), (slice(2, 4), slice(2, 4)))
    truth = _truth(tmp_path / "t", {"A.bmp": gt})
    sub = _submission(tmp_path / "s", {"A.bmp": gt})
    z = tmp_path / "sub.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(sub / "segmentation" / "A.bmp", "segmentation/A.bmp")
        zf.writestr("__MACOSX/segmentation/._A.bmp", b"\x00\x05\x16\x07junk")
        zf.writestr("__MACOSX/._segmentation", b"\x00\x05\x16\x07junk")
    res = api.score("refuge", truth, z, device=DEVICE)
    assert res.status == "ok", res.error
    assert res.metrics["mean_cup_dice"] == 1.0
    assert [it["id"] for it in res.items] == ["A.bmp"]


# ----------------------------------------------------------------------------- §2 0/0 Dice
def test_both_discs_empty_is_zero_by_zero(tmp_path):
    """§2: 'Both masks empty -> ZeroDivisionError ... makes the whole segmentation entry of
    the submission NaN' — for the disc as well as the cup (an all-background image)."""
    good = _disc_cup((6, 6), (slice(1, 5), slice(1, 5)), (slice(2, 4), slice(2, 4)))
    empty = np.full((6, 6), 255, np.uint8)
    truth = _truth(tmp_path / "t", {"A.bmp": good, "E.bmp": empty})
    sub = _submission(tmp_path / "s", {"A.bmp": good, "E.bmp": empty})
    res = api.score("refuge", truth, sub, device=DEVICE)
    assert res.status == "ok", res.error
    m = res.metrics
    assert _nan(m["mean_disc_dice"]) and _nan(m["mean_cup_dice"]) and _nan(m["vcdr_mae"])
    # vCDR of an empty disc is 0 ('Empty disc -> 0'), so the per-image error is 0 still
    assert _items(res)["E.bmp"]["vcdr_error"] == 0.0
    res = api.score("refuge", truth, sub, overrides=["compat=corrected"], device=DEVICE)
    m = res.metrics
    assert (m["mean_disc_dice"], m["mean_cup_dice"], m["vcdr_mae"]) == (1.0, 1.0, 0.0)


def test_disc_predicted_on_empty_truth_still_divides_cup_by_zero(tmp_path):
    """GT all background, prediction has a disc but no cup: disc Dice = 2·0/(4+0) = 0 (no
    error), cup Dice 0/0 -> the official entry is NaN all the same."""
    empty = np.full((4, 4), 255, np.uint8)
    disc_only = _disc_cup((4, 4), (slice(1, 3), slice(1, 3)), None)
    truth = _truth(tmp_path / "t", {"E.bmp": empty})
    sub = _submission(tmp_path / "s", {"E.bmp": disc_only})
    res = api.score("refuge", truth, sub, device=DEVICE)
    assert _nan(res.metrics["mean_disc_dice"]) and _nan(res.metrics["vcdr_mae"])
    assert _items(res)["E.bmp"]["disc_dice"] == 0.0
    res = api.score("refuge", truth, sub, overrides=["compat=corrected"], device=DEVICE)
    assert (res.metrics["mean_disc_dice"], res.metrics["mean_cup_dice"]) == (0.0, 1.0)
    assert res.metrics["vcdr_mae"] == 0.0  # both vCDR 0 (no cup anywhere)


# ----------------------------------------------------------------------------- §4
def _sk_reference(labels, scores, at=0.85):
    """§4 literally: roc_auc_score, and interp1d(1 - fpr, tpr)(at) on sklearn's roc_curve."""
    from scipy.interpolate import interp1d
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    return float(roc_auc_score(labels, scores)), float(interp1d(1 - fpr, tpr)(at))


def test_exact_specificity_hit_returns_the_highest_of_three_tied_points():
    """§4: 'if some ROC points have specificity exactly 0.85, the last (highest) sensitivity
    among them is returned'. 20 negatives, 3 above every positive -> fpr 0.15; then three
    positives with distinct scores climb the vertical segment to tpr 3/10 at fpr 0.15.
    sklearn drops the two collinear middle points; the bottom (0.15, 0) and the top
    (0.15, 0.3) remain at specificity 0.85, and the rule returns 0.3 (not 0)."""
    from gpueval.metrics.classification import sensitivity_at_specificity

    neg = [0.99, 0.98, 0.97] + [0.1] * 17
    pos = [0.9, 0.8, 0.7] + [0.05] * 7
    labels = np.r_[np.zeros(20), np.ones(10)].astype(int)
    scores = np.array(neg + pos)
    assert sensitivity_at_specificity(labels, scores, 0.85) == pytest.approx(0.3, abs=1e-15)
    assert _sk_reference(labels, scores)[1] == pytest.approx(0.3, abs=1e-15)


def test_sensitivity_between_tie_groups_uses_lowest_point_of_upper_group():
    """§4: 0.85 strictly between specificities: interpolate from the last point of the lower
    group to the first (lowest-sensitivity) point of the upper group. 10 negatives: one above
    every positive (fpr 0.1 after it), 4 positives of 5 next (tpr 0.8 at fpr 0.1), then a
    negative (fpr 0.2), the last positive, the other negatives. ROC points (after sklearn's
    drop): (0,0) (0.1,0) (0.1,0.8) (0.2,0.8) (0.2,1) (1,1). Specificity 0.85 lies between
    0.8 (group sens 0.8, 1) and 0.9 (group sens 0, 0.8): from (0.8, 1) to (0.9, 0):
    1 + (0.85 - 0.8)/(0.9 - 0.8)·(0 - 1) = 0.5."""
    from gpueval.metrics.classification import sensitivity_at_specificity

    labels = np.array([0, 1, 1, 1, 1, 0, 1] + [0] * 8)
    scores = np.array([10, 9, 8, 7, 6, 5, 4] + [1] * 8, float)
    assert sensitivity_at_specificity(labels, scores, 0.85) == pytest.approx(0.5, abs=1e-12)
    assert _sk_reference(labels, scores)[1] == pytest.approx(0.5, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_neg=st.sampled_from([20, 40, 100, 360]),
       levels=st.sampled_from([0, 2, 5, 10, 100]))
def test_classification_matches_sklearn_scipy_at_challenge_sizes(seed, n_neg, levels):
    """§4 on test-set-like data (10 % prevalence, up to 400 images; rounded scores give
    ties): AUC and the interpolated sensitivity equal scikit-learn + scipy.interp1d."""
    from gpueval.metrics.classification import roc_auc, sensitivity_at_specificity

    rng = np.random.default_rng(seed)
    n_pos = max(1, n_neg // 9)
    labels = rng.permutation(np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(int))
    scores = rng.normal(size=labels.size) + labels * rng.uniform(-0.5, 3.0)
    if levels:
        scores = np.round(scores * levels) / levels
    auc, sens = _sk_reference(labels, scores)
    assert roc_auc(labels, scores) == pytest.approx(auc, abs=1e-13)
    assert sensitivity_at_specificity(labels, scores, 0.85) == pytest.approx(sens, abs=1e-13)


def test_label_is_glaucoma_iff_positive_and_specificity_override(tmp_path):
    """§4: 'label > 0' (so -1 and 0 are non-glaucoma, 0.5 and 2 glaucoma); names matched
    upper-cased after the truth's last three characters become 'jpg'. The reference
    specificity is a config constant (--set specificity=...)."""
    m = _disc_cup((4, 4), (slice(1, 3), slice(1, 3)), (slice(1, 2), slice(1, 2)))
    raw = {"A.bmp": -1, "B.png": 2, "C.jpg": 0, "D.tif": 0.5, "E.bmp": 0, "F.bmp": -3}
    truth = _truth(tmp_path / "t", {"A.bmp": m}, labels=raw)
    scores = {"a.JPG": 0.4, "B.jpg": 0.3, "c.jpg": 0.35, "D.JPG": 0.9, "e.jpg": 0.1,
              "F.jpg": 0.35}
    sub = _submission(tmp_path / "s", {"A.bmp": m}, scores=scores)
    y = np.array([0, 1, 0, 1, 0, 0])  # A..F by 'label > 0'
    s = np.array(list(scores.values()))
    auc, sens = _sk_reference(y, s)
    # by hand: positives 0.3 and 0.9 against negatives 0.4, 0.35, 0.1, 0.35
    assert auc == pytest.approx((1 / 4 + 4 / 4) / 2)
    res = api.score("refuge", truth, sub, device=DEVICE)
    assert res.status == "ok", res.error
    assert res.metrics["auc"] == pytest.approx(auc, abs=1e-15)
    assert res.metrics["sensitivity_at_085_specificity"] == pytest.approx(sens, abs=1e-15)
    res = api.score("refuge", truth, sub, overrides=["specificity=0.6"], device=DEVICE)
    assert res.metrics["sensitivity_at_085_specificity"] == pytest.approx(
        _sk_reference(y, s, 0.6)[1], abs=1e-15)
