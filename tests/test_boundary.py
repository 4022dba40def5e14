"""Boundary kernel: U-RISC fixtures (official eval.py), banding, dilation, format check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from skimage.morphology import dilation, disk

from gpueval.kernels.boundary import (
    BoundaryCounts,
    boundary_counts,
    dilate_disk,
    disk_rows,
    format_problem,
    precision_recall_f,
    tolerance_match_counts,
    value_histogram,
)

FIX = Path(__file__).parent / "fixtures" / "urisc"
SCORES = json.loads((FIX / "scores.json").read_text())
CASES = sorted(SCORES["cases"])
REPO = ["pre_gt", "1", "2", "3"]


def _case(name):
    z = np.load(FIX / f"{name}.npz", allow_pickle=False)
    return z["gt"], z["pred"]


def _repo(name):
    z = np.load(FIX / "repo_examples.npz", allow_pickle=False)
    return z[f"gt_{name}"], z[f"pred_{name}"]


def _prf(c: BoundaryCounts):
    return precision_recall_f(c.tp_pred, c.tp_gt, c.n_pred, c.n_gt)


def _check(expected, c):
    p, r, f = _prf(c)
    assert p == pytest.approx(expected["P"], abs=1e-12)
    assert r == pytest.approx(expected["R"], abs=1e-12)
    assert f == pytest.approx(expected["F"], abs=1e-12)


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
@pytest.mark.parametrize("name", CASES)
def test_fixture_cases(name, radius):
    gt, pred = _case(name)
    exp = SCORES["cases"][name]
    _check(exp[f"official_gt_binarised_122_bound{radius}"],
           boundary_counts(gt, pred, radius=radius, gt_threshold=122))
    _check(exp[f"official_gt_as_stored_bound{radius}"],
           boundary_counts(gt, pred, radius=radius, gt_threshold=None, band_rows=50))


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
@pytest.mark.parametrize("name", REPO)
def test_repo_examples(name, radius):
    gt, pred = _repo(name)
    exp = SCORES["repo_examples"][name]
    _check(exp[f"official_gt_binarised_122_bound{radius}"],
           boundary_counts(gt, pred, radius=radius, gt_threshold=122, band_rows=300))
    _check(exp[f"official_gt_as_stored_bound{radius}"],
           boundary_counts(gt, pred, radius=radius, gt_threshold=None))


def test_repo_single_image_value():
    gt, pred = _repo("pre_gt")
    f = _prf(boundary_counts(gt, pred, radius=0, gt_threshold=None))[2]
    assert f == pytest.approx(SCORES["repo_examples"]["official_eval_on_onepic_pre_gt"], abs=1e-12)


@pytest.mark.parametrize("name", CASES + [f"repo:{r}" for r in REPO])
def test_diagnostic_counts_exact(name):
    if name.startswith("repo:"):
        gt, pred = _repo(name[5:])
        exp = SCORES["repo_examples"][name[5:]]
    else:
        gt, pred = _case(name)
        exp = SCORES["cases"][name]
    if exp["official_format_check"] == "ValueError" and len(np.unique(pred)) > 2:
        pytest.skip("diag counts of a non-binary prediction count value 0 only")
    px = boundary_counts(gt, pred, radius=0, gt_threshold=122).pixel_counts()
    assert px["n_pred"] == exp["diag_pred_membrane_px"]
    assert px["n_gt"] == exp["diag_gt_membrane_px_binarised"]
    assert px["tp_pred"] == px["tp_gt"] == exp["diag_tp_px_binarised"]
    assert len(np.unique(gt)) == exp["diag_gt_values"]


@pytest.mark.parametrize("name", CASES + [f"repo:{r}" for r in REPO])
def test_format_check_matches_official(name):
    if name.startswith("repo:"):
        _, pred = _repo(name[5:])
        expected = SCORES["repo_examples"][name[5:]]["official_format_check"]
    else:
        _, pred = _case(name)
        expected = SCORES["cases"][name]["official_format_check"]
    problem = format_problem(value_histogram(pred), "x.tiff")
    assert (problem is None) == (expected == "ok")
    if problem:
        assert problem.startswith("x.tiff: ") and "\n" not in problem


def test_format_check_ratio_boundary_and_crash_cases():
    h = np.zeros(256, np.int64)
    h[0], h[255] = 10, 50  # background = 5 x membrane: accepted (membrane exactly 1/6)
    assert format_problem(h, "a") is None
    h[255] = 49
    assert "at most 1/6" in format_problem(h, "a")
    h[:] = 0
    h[255] = 100  # no membrane: official ZeroDivisionError
    assert "no membrane" in format_problem(h, "a")
    h[:] = 0
    h[100], h[255] = 5, 100  # two values, no 0: official ZeroDivisionError
    assert "no pixel has value 0" in format_problem(h, "a")
    h[:] = 0
    h[0], h[7], h[255] = 1, 1, 100
    assert "3 grey values" in format_problem(h, "a")


def test_special_cases():
    assert precision_recall_f(0, 0, 0, 5) == (1.0, 0.0, 0.0)
    assert precision_recall_f(0, 0, 5, 0) == (0.0, 1.0, 0.0)
    assert precision_recall_f(0, 0, 0, 0) == (1.0, 1.0, 1.0)
    assert precision_recall_f(0, 0, 4, 4) == (0.0, 0.0, 0.0)
    assert precision_recall_f(1, 1, 2, 4) == (0.5, 0.25, 2 * 0.5 * 0.25 / 0.75)


def test_hand_case():
    gt = np.full((4, 5), 255, np.uint8)
    gt[1, 1:4] = 0  # three GT membrane pixels
    pred = np.full((4, 5), 255, np.uint8)
    pred[2, 1:3] = 0  # two predicted, one row below
    c = boundary_counts(gt, pred, radius=0)
    assert (c.tp_pred, c.n_pred, c.n_gt) == (0, 2 * 255, 3 * 255)
    c = boundary_counts(gt, pred, radius=1)  # disk(1) is the cross: all of pred within reach
    assert c.pixel_counts() == {"tp_pred": 2, "tp_gt": 2, "n_pred": 2, "n_gt": 3}


def test_disk_rows_match_skimage():
    for r in range(0, 8):
        fp = disk(r).astype(bool)
        built = np.zeros_like(fp)
        for dy, w in disk_rows(r):
            built[r + dy, r - w:r + w + 1] = True
        np.testing.assert_array_equal(built, fp)


@given(seed=st.integers(0, 2**31 - 1), radius=st.integers(0, 5),
       shape=st.tuples(st.integers(1, 30), st.integers(1, 30)))
def test_dilation_equals_skimage(seed, radius, shape):
    rng = np.random.default_rng(seed)
    m = rng.random(shape) < 0.05
    expected = dilation(m.astype(np.uint8) * 255, disk(radius)) != 0  # reflect border
    np.testing.assert_array_equal(dilate_disk(m, radius), expected)


@given(seed=st.integers(0, 2**31 - 1), radius=st.integers(0, 4), band=st.integers(1, 40),
       grey=st.booleans(), threshold=st.sampled_from([122, None, 0, 254]),
       shape=st.tuples(st.integers(1, 40), st.integers(1, 25)))
def test_banded_equals_whole(seed, radius, band, grey, threshold, shape):
    rng = np.random.default_rng(seed)
    gt = np.where(rng.random(shape) < 0.15, 0, 255).astype(np.uint8)
    pred = np.where(rng.random(shape) < 0.1, 0, 255).astype(np.uint8)
    if grey:
        gt = rng.integers(0, 256, shape).astype(np.uint8)
        pred[rng.random(shape) < 0.05] = 77
    whole = boundary_counts(gt, pred, radius=radius, gt_threshold=threshold)
    banded = boundary_counts(gt, pred, radius=radius, gt_threshold=threshold, band_rows=band)
    for k in ("n_pred", "n_gt", "tp_pred", "tp_gt", "pixels"):
        assert getattr(whole, k) == getattr(banded, k)
    np.testing.assert_array_equal(whole.pred_hist, banded.pred_hist)
    # brute force against the definition with skimage dilation on the whole image
    wp = 255 - pred.astype(np.int64)
    wg = (gt <= threshold) * 255 if threshold is not None else 255 - gt.astype(np.int64)
    gdil = dilation((wg != 0).astype(np.uint8), disk(radius)) != 0
    pdil = dilation((wp != 0).astype(np.uint8), disk(radius)) != 0
    assert whole.n_pred == wp.sum() and whole.n_gt == wg.sum()
    assert whole.tp_pred == (wp * gdil).sum() and whole.tp_gt == (wg * pdil).sum()


@given(seed=st.integers(0, 2**31 - 1), binary=st.booleans())
def test_value_histogram(seed, binary):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (13, 7)).astype(np.uint8)
    if binary:
        x = np.where(x < 100, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(value_histogram(x), np.bincount(x.ravel(), minlength=256))


def test_tolerance_matching_against_bsds_fixture():
    z = np.load(FIX / "bsds_thin.npz", allow_pickle=False)
    gt, pred = z["gt"] == 1, z["pred"] == 1
    ref = SCORES["bsds_tolerance"]
    for run in ref["runs"].values():
        matched, n_pred, n_gt = tolerance_match_counts(gt, pred, run["max_dist_px"])
        assert (n_pred, n_gt) == (ref["n_pred"], ref["n_gt"])
        # the exact maximum matches at least as many pixels as any BSDS run, and not many more
        assert max(run["matched_over_5_runs"]) <= matched <= max(run["matched_over_5_runs"]) + 10
        f = precision_recall_f(matched, matched, n_pred, n_gt)[2]
        assert f == pytest.approx(run["F"], abs=0.005)
    for r in (1, 2, 3):  # one-to-one matching never exceeds the disk-dilation counts
        stored_gt = np.where(gt, 0, 255).astype(np.uint8)
        stored_pred = np.where(pred, 0, 255).astype(np.uint8)
        c = boundary_counts(stored_gt, stored_pred, radius=r)
        _check(ref[f"official_urisc_dilation_bound{r}"], c)
        matched = tolerance_match_counts(gt, pred, r)[0]
        assert matched <= min(c.tp_pred, c.tp_gt) // 255


def test_tolerance_matching_is_one_to_one():
    gt = np.zeros((5, 5), bool)
    gt[2, 2] = True
    pred = np.zeros((5, 5), bool)
    pred[2, 1] = pred[2, 3] = True  # two predictions, one GT pixel: one match only
    assert tolerance_match_counts(gt, pred, 1.0) == (1, 2, 1)
    assert tolerance_match_counts(gt, pred, 0.5) == (0, 2, 1)


@pytest.mark.parametrize("radius", [16, 17, 20])
def test_large_radius_dilation_paths(radius):
    rng = np.random.default_rng(radius)
    m = rng.random((70, 90)) < 0.002
    m[0, 0] = m[69, 45] = True
    expected = dilation(m.astype(np.uint8), disk(radius)) != 0
    np.testing.assert_array_equal(dilate_disk(m, radius), expected)
    np.testing.assert_array_equal(dilate_disk(m, radius, top=10, bottom=5), expected[10:65])
