"""REFUGE leaderboards: the official fixture tables and NumPy 1.23's argsort tie order."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpueval.metrics import ranking
from gpueval.metrics.ranking import (
    classification_board,
    numpy_quicksort_argsort,
    refuge_leaderboard,
    segmentation_board,
)

FIX = Path(__file__).parent / "fixtures" / "refuge"
KEYS = ["mean_cup_dice", "mean_disc_dice", "vcdr_mae", "auc",
        "sensitivity_at_085_specificity", "fovea_mean_distance"]


def _fixture_results():
    z = np.load(FIX / "leaderboard_table.npz", allow_pickle=False)
    official = ["Mean optic cup Dice", "Mean optic disc Dice", "MAE cup to disc ratio", "AUC",
                "Reference Sensitivity", "Mean Euclidean distance"]
    assert list(z["metrics"]) == official
    return {str(t): dict(zip(KEYS, map(float, row), strict=True))
            for t, row in zip(z["teams"], z["table"], strict=True)}


@pytest.mark.parametrize("board", ["segmentation", "classification", "fovea", "final"])
def test_official_leaderboards(board):
    expected = json.loads((FIX / "scores.json").read_text())["leaderboards"][board]
    got = refuge_leaderboard(_fixture_results())[board]
    assert got["teams_in_order"] == expected["teams_in_order"]
    assert got["header"] == expected["header"]
    np.testing.assert_allclose(np.array(got["scores"], float),
                               np.array(expected["scores"], float), rtol=0, atol=1e-12)


def test_nan_and_missing_teams_dropped_per_board():
    results = _fixture_results()
    results["F"] = {"mean_cup_dice": None, "auc": 0.5}  # rejected segmentation, missing keys
    results["G"] = None  # rejected submission
    boards = refuge_leaderboard(results)
    assert "F" not in boards["segmentation"]["teams_in_order"]
    assert boards["classification"]["teams_in_order"][-1] == "F"
    assert "G" not in {t for b in boards.values() for t in b["teams_in_order"]}
    assert "E" not in boards["final"]["teams_in_order"]  # E has no segmentation


def test_segmentation_weights_hand_case():
    # cup ranks A0 B1, disc ranks B0 A1, MAE ranks A0 B1 -> A 0.25, B 0.35 + 0.4 = 0.75
    res = {"A": {"mean_cup_dice": 0.9, "mean_disc_dice": 0.8, "vcdr_mae": 0.1},
           "B": {"mean_cup_dice": 0.8, "mean_disc_dice": 0.9, "vcdr_mae": 0.2}}
    board = segmentation_board(res)
    assert board["teams_in_order"] == ["A", "B"]
    assert board["scores"][0][:4] == [1.25, 1.0, 2.0, 1.0]
    assert board["scores"][1][:4] == [1.75, 2.0, 1.0, 2.0]
    # other weights: only the disc rank counts -> B first
    assert segmentation_board(res, (0, 1, 0))["teams_in_order"] == ["B", "A"]


def test_higher_is_better_reverses_ties():
    # ascending argsort of equal AUCs is stable for few teams; "higher is better" reverses it
    res = {t: {"auc": 0.9} for t in "ABC"}
    assert classification_board(res)["teams_in_order"] == ["C", "B", "A"]


def test_numpy_123_argsort_oracle():
    """Tie orders recorded from NumPy 1.23.5 itself (incl. the heapsort fallback)."""
    data = json.loads((FIX / "numpy123_argsort.json").read_text())
    assert "1.23.5" in data["generator"]
    for case in data["cases"]:
        v = [math.nan if x is None else x for x in case["values"]]
        assert numpy_quicksort_argsort(v) == case["argsort"], len(v)


def test_heapsort_fallback_used_and_sorts(monkeypatch):
    calls = []
    real = ranking._heapsort
    monkeypatch.setattr(ranking, "_heapsort",
                        lambda v, a, s, n: (calls.append(n), real(v, a, s, n)))
    n = 512
    v = np.r_[np.arange(n // 2), np.arange(n // 2)[::-1]].astype(float)
    order = numpy_quicksort_argsort(v)
    assert calls, "organ-pipe input should exhaust the depth limit"
    assert np.all(np.diff(v[order]) >= 0)


@given(st.lists(st.one_of(st.integers(0, 4).map(float), st.just(math.nan)), max_size=80))
def test_argsort_is_a_sorting_permutation(values):
    order = numpy_quicksort_argsort(values)
    assert sorted(order) == list(range(len(values)))
    v = np.array(values, dtype=float)
    np.testing.assert_array_equal(v[order], np.sort(v))  # NaN last, as NumPy
    if len(values) <= 16:  # insertion sort only: stable
        assert order == np.argsort(v, kind="stable").tolist()


def test_accepts_results_and_result_json():
    from gpueval.result import Result

    metrics = _fixture_results()
    mixed = {
        "A": Result("refuge", "v", metrics=metrics["A"]),
        "B": Result("refuge", "v", metrics=metrics["B"]).to_dict(),
        "C": metrics["C"],
        "D": metrics["D"],
        "E": metrics["E"],
        "R": Result.rejected("refuge", "v", "bad zip").to_dict(),
    }
    mixed["R"]["metrics"] = {"mean_cup_dice": 1.0, "auc": 1.0}  # ignored: rejected
    assert refuge_leaderboard(mixed) == refuge_leaderboard(metrics)
