"""ROC / AUC / sensitivity at specificity: REFUGE fixtures, hand cases, scikit-learn parity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpueval.metrics.classification import (
    roc_auc,
    roc_counts,
    roc_curve,
    sensitivity_at_specificity,
)

FIX = Path(__file__).parent / "fixtures" / "refuge"
CASES = json.loads((FIX / "scores.json").read_text())["classification"]


def _case(name):
    z = np.load(FIX / f"cls_{name}.npz", allow_pickle=False)
    return z["labels"], z["scores"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_official_fixtures(name):
    labels, scores = _case(name)
    ref = CASES[name]
    assert roc_auc(labels, scores) == pytest.approx(ref["official_auc"], abs=1e-12)
    assert sensitivity_at_specificity(labels, scores, 0.85) == pytest.approx(
        ref["official_sensitivity_at_spec_0.85"], abs=1e-12)
    fpr, tpr, thr = roc_curve(labels, scores)
    assert len(fpr) == ref["diag_roc_points"]
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.isinf(thr[0])


def test_tie_robust_on_fixtures():
    # perfect: the ROC passes through (fpr 0, tpr 1) -> sensitivity 1 at any specificity
    assert sensitivity_at_specificity(*_case("perfect"), rule="tie-robust") == 1.0
    # inverted: every positive scores below every negative -> tpr is 0 until fpr = 1
    assert sensitivity_at_specificity(*_case("inverted"), rule="tie-robust") == 0.0
    # vertical segment (0.15, 0.7)-(0.15, 0.8): its top
    assert sensitivity_at_specificity(*_case("vertical_at_085"),
                                      rule="tie-robust") == pytest.approx(0.8)
    # continuous_40_360: the horizontal ROC segment at specificity 0.85 has tpr 18/40
    labels, scores = _case("continuous_40_360")
    fpr, tpr, _ = roc_curve(labels, scores)
    spec = 1 - fpr
    on = (spec[:-1] >= 0.85) & (spec[1:] <= 0.85) & (tpr[:-1] == tpr[1:])
    assert on.any()
    height = tpr[:-1][on][0]
    assert height == 18 / 40
    assert sensitivity_at_specificity(labels, scores, rule="tie-robust") == height


def test_hand_cases():
    # 2 negatives, 2 positives, one inverted pair: AUC = 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    # a tie between a positive and a negative counts 1/2
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert roc_auc([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9]) == pytest.approx(0.875)
    fps, tps, thr = roc_counts([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9])
    np.testing.assert_array_equal(fps, [0, 1, 2])
    np.testing.assert_array_equal(tps, [1, 2, 2])
    np.testing.assert_array_equal(thr, [0.9, 0.5, 0.2])
    # ROC (0,0) (0,.5) (.5,1) (1,1), specificities 1 1 .5 0. Official: stably sorted by
    # specificity, spec 0.75 lies between (spec .5, sens 1) and the first point of the spec-1
    # group, the start point (spec 1, sens 0) -> 1 - 0.5 = 0.5. Tie-robust: the segment
    # (fpr 0, tpr .5)-(fpr .5, tpr 1) at fpr .25 -> 0.75
    assert sensitivity_at_specificity([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9], 0.75) == 0.5
    assert sensitivity_at_specificity([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9], 0.75,
                                      rule="tie-robust") == 0.75


def test_errors():
    with pytest.raises(ValueError, match="one class"):
        roc_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="finite"):
        roc_auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="equal length"):
        roc_auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="rule"):
        sensitivity_at_specificity([0, 1], [0.1, 0.2], rule="best")


labels_scores = st.integers(2, 60).flatmap(lambda n: st.tuples(
    st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < len(y)),
    st.lists(st.integers(0, 6), min_size=n, max_size=n),  # few distinct values: many ties
))


@given(labels_scores, st.sampled_from([0.85, 0.5, 0.9, 0.0, 1.0]))
def test_matches_sklearn_and_scipy(data, spec):
    sk = pytest.importorskip("sklearn.metrics")
    interp1d = pytest.importorskip("scipy.interpolate").interp1d
    y, s = np.array(data[0]), np.array(data[1], dtype=float) / 4
    fpr, tpr, thr = roc_curve(y, s)
    sk_fpr, sk_tpr, sk_thr = sk.roc_curve(y, s)
    np.testing.assert_array_equal(fpr, sk_fpr)
    np.testing.assert_array_equal(tpr, sk_tpr)
    np.testing.assert_array_equal(thr[1:], sk_thr[1:])
    assert roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    # the official rule: interp1d on the scikit-learn curve
    expected = float(interp1d(1 - sk_fpr, sk_tpr)(spec))
    assert sensitivity_at_specificity(y, s, spec) == pytest.approx(expected, abs=1e-12)


@given(labels_scores, st.floats(0.0, 1.0))
def test_tie_robust_is_polyline_maximum(data, spec):
    y, s = np.array(data[0]), np.array(data[1], dtype=float)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    sp = 1 - fpr
    # brute force: every ROC vertex meeting the bound, and every segment crossing it
    best = max((t for a, t in zip(sp, tpr, strict=True) if a >= spec), default=-1.0)
    for i in range(len(sp) - 1):
        if sp[i] >= spec >= sp[i + 1] and sp[i] > sp[i + 1]:
            w = (sp[i] - spec) / (sp[i] - sp[i + 1])
            best = max(best, tpr[i] + w * (tpr[i + 1] - tpr[i]))
    got = sensitivity_at_specificity(y, s, spec, rule="tie-robust")
    assert got == pytest.approx(best, abs=1e-12)
    # and it does not depend on the input order
    perm = np.random.default_rng(0).permutation(len(y))
    assert sensitivity_at_specificity(y[perm], s[perm], spec, rule="tie-robust") == got
