"""Overlap formulas and Rand/VOI on hand-computable tables (scikit-image style)."""

import math

import numpy as np
import pytest

from gpueval.kernels.stats import contingency
from gpueval.metrics.overlap import dice, iou, precision_recall_f, rand_voi


def test_dice_iou_by_hand():
    assert dice(3, 1, 2) == pytest.approx(6 / 9)
    assert iou(3, 1, 2) == pytest.approx(3 / 6)
    assert math.isnan(dice(0, 0, 0))
    assert iou(0, 0, 0, empty=1.0) == 1.0


def test_precision_recall_special_cases():
    assert precision_recall_f(0, 0, 5) == (0.0, 0.0, 0.0)
    p, r, f = precision_recall_f(2, 4, 8)
    assert (p, r) == (0.5, 0.25) and f == pytest.approx(2 * 0.5 * 0.25 / 0.75)


def test_voi_merge_of_four_into_two_is_one_bit():
    r = rand_voi(contingency(np.array([1, 2, 3, 4]), np.array([1, 1, 8, 8])))
    assert r["voi_merge"] == pytest.approx(1.0) and r["voi_split"] == pytest.approx(0.0)
    assert r["rand_split"] == pytest.approx(1.0)
    assert r["rand_merge"] == pytest.approx(4 / 8)


def test_split_is_mirror_of_merge():
    r = rand_voi(contingency(np.array([1, 1, 8, 8]), np.array([1, 2, 3, 4])))
    assert r["voi_split"] == pytest.approx(1.0) and r["voi_merge"] == pytest.approx(0.0)
    assert r["nvi_split"] == pytest.approx(1 / 2)


def test_truth_background_is_ignored_and_empty_is_nan():
    r = rand_voi(contingency(np.array([0, 0, 1]), np.array([5, 6, 7])))
    assert r["rand_split"] == 1.0 and r["voi_split"] == 0.0
    e = rand_voi(contingency(np.array([0, 0]), np.array([1, 2])))
    assert math.isnan(e["rand_split"]) and math.isnan(e["nvi_merge"])
    assert e["voi_split"] == 0.0 and e["voi_merge"] == 0.0  # funlib: empty entropy sums


def test_matches_brute_force_entropy():
    rng = np.random.default_rng(3)
    a, b = rng.integers(1, 5, 500), rng.integers(0, 6, 500)
    joint = np.histogram2d(a, b, bins=[np.arange(1, 6), np.arange(0, 7)])[0] / 500
    pa, pb = joint.sum(1), joint.sum(0)

    def h(p):
        return -(p[p > 0] * np.log2(p[p > 0])).sum()

    r = rand_voi(contingency(a, b))
    assert r["voi_split"] == pytest.approx(h(joint) - h(pa))
    assert r["voi_merge"] == pytest.approx(h(joint) - h(pb))
    assert r["rand_split"] == pytest.approx((joint**2).sum() / (pa**2).sum())
