"""Bootstrap rank stability: exact enumeration by hand, seeded reproducibility, REFUGE's rule."""

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.metrics.classification import roc_auc
from gpueval.metrics.ranking import refuge_leaderboard
from gpueval.metrics.stability import (
    _auc_pairs,
    _weighted_auc,
    bootstrap_mean_ranking,
    bootstrap_refuge_ranking,
    case_weights,
    challenge_stability,
    resample_indices,
    unsupported,
)

ALL_RESAMPLES_4 = np.array(list(itertools.product(range(4), repeat=4)))  # all 4^4 = 256

# A scores 4 on case c0 and 0 elsewhere, B scores 1 everywhere, C 0 everywhere. In a resample
# with k draws of c0, A's mean is k, B's 1, C's 0. P(k=0) = (3/4)^4 = 81/256,
# P(k=1) = 4·(1/4)(3/4)^3 = 108/256, P(k>=2) = 67/256.
#   k=0: B 1st, A and C tie at 0 -> both rank 2 (ties share the best rank)
#   k=1: A and B tie at 1 -> both rank 1, C 3rd
#   k>=2: A 1st, B 2nd, C 3rd
HAND = {"A": {"c0": 4, "c1": 0, "c2": 0, "c3": 0},
        "B": {f"c{i}": 1 for i in range(4)}, "C": {f"c{i}": 0 for i in range(4)}}


def test_exact_enumeration_equals_the_hand_computation():
    rep = bootstrap_mean_ranking(HAND, indices=ALL_RESAMPLES_4)
    assert rep.supported and rep.n_resamples == 256 and rep.n_cases == 4
    assert rep.names == ["A", "B", "C"] and rep.observed_rank == [1, 1, 3]  # A = B = 1 tie
    counts = dict(zip(rep.names, rep.rank_counts.tolist(), strict=True))
    assert counts["A"] == [108 + 67, 81, 0]
    assert counts["B"] == [81 + 108, 67, 0]
    assert counts["C"] == [0, 81, 108 + 67]
    # quantiles of A's ranks: 175/256 >= 0.5 -> median 1; 175/256 < 0.975 -> upper 2
    assert rep.median_rank == [1, 1, 3]
    assert rep.interval == [(1, 2), (1, 2), (2, 3)]
    # strictly better: A over B when k>=2 (67), B over A when k=0 (81), A over C unless k=0
    b = rep.better_fraction
    assert b[0, 1] == pytest.approx(67 / 256) and b[1, 0] == pytest.approx(81 / 256)
    assert b[0, 2] == pytest.approx(175 / 256) and b[1, 2] == 1.0 and b[2].sum() == 0
    # groups: leader A is better than neither B (26 %) nor C (68 %) in 95 % of resamples
    assert rep.tied_groups == [["A", "B", "C"]]


def _brute_force(table, indices):
    """Rank counts by plain Python over the resamples, exact means with Fractions."""
    names = list(table)
    cases = sorted(table[names[0]])
    counts = {t: [0] * len(names) for t in names}
    for draw in indices:
        means = {t: sum(Fraction(table[t][cases[j]]) for j in draw) / len(draw) for t in names}
        for t in names:
            counts[t][sum(means[u] > means[t] for u in names)] += 1
    return counts


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=12, max_size=12))
def test_exact_enumeration_equals_brute_force(vals):
    # 3 teams x 4 cases, values in quarters (exact in binary, so ties are real ties)
    table = {t: {f"c{j}": vals[4 * i + j] / 4 for j in range(4)}
             for i, t in enumerate(["X", "Y", "Z"])}
    rep = bootstrap_mean_ranking(table, indices=ALL_RESAMPLES_4)
    expected = _brute_force(table, ALL_RESAMPLES_4)
    assert {n: rep.rank_counts[i].tolist() for i, n in enumerate(rep.names)} == expected


def test_seeded_and_reproducible():
    a = bootstrap_mean_ranking(HAND, n_resamples=50, seed=7)
    b = bootstrap_mean_ranking(HAND, n_resamples=50, seed=7)
    assert a.seed == 7 and np.array_equal(a.rank_counts, b.rank_counts)
    assert a.as_dict() == b.as_dict()
    # the draws are numpy's PCG64 stream, reproduced here: the seeded report is the
    # enumeration restricted to exactly those draws
    draws = np.random.default_rng(7).integers(0, 4, size=(50, 4))
    assert np.array_equal(resample_indices(4, 50, 7), draws)
    expected = _brute_force(HAND, draws)
    assert {n: a.rank_counts[i].tolist() for i, n in enumerate(a.names)} == expected
    c = bootstrap_mean_ranking(HAND, n_resamples=50, seed=8)
    assert not np.array_equal(a.rank_counts, c.rank_counts)


def test_case_weights_are_multiplicities_and_bad_arguments_are_refused():
    w = case_weights(np.array([[0, 0, 2], [1, 2, 2]]), 3)
    assert w.tolist() == [[2, 0, 1], [0, 1, 2]]
    for bad in ([[0, 4, 1, 2]], [0, 1, 2, 3], [[0.5, 1, 2, 3]], np.zeros((0, 4), int)):
        with pytest.raises(ValueError, match="indices"):
            bootstrap_mean_ranking(HAND, indices=bad)
    with pytest.raises(ValueError, match="n_resamples"):
        bootstrap_mean_ranking(HAND, n_resamples=0)
    with pytest.raises(ValueError, match="missing="):
        bootstrap_mean_ranking(HAND, missing="fill")


def test_separated_teams_form_singleton_groups_and_direction():
    table = {"good": [0.9, 0.91, 0.92, 0.93, 0.94], "mid": [0.5, 0.51, 0.52, 0.53, 0.54],
             "bad": [0.1, 0.11, 0.12, 0.13, 0.14]}
    table = {t: {f"c{i}": v for i, v in enumerate(vs)} for t, vs in table.items()}
    rep = bootstrap_mean_ranking(table, n_resamples=200)
    assert rep.tied_groups == [["good"], ["mid"], ["bad"]]
    assert rep.interval == [(1, 1), (2, 2), (3, 3)]
    low = bootstrap_mean_ranking(table, n_resamples=200, higher_is_better=False)
    assert low.names == ["bad", "mid", "good"]


def test_missing_cases_refused_or_filled_and_unsupported():
    table = {"A": {"c0": 1.0, "c1": 0.5}, "B": {"c0": 0.2, "c1": None}}
    with pytest.raises(ValueError, match="B: no finite value for case 'c1'"):
        bootstrap_mean_ranking(table, missing="error")
    rep = bootstrap_mean_ranking(table, missing=0.0, n_resamples=20)
    assert rep.observed_rank == [1, 2]
    # skipped like the challenges' means skip None/NaN items: B's mean is its c0 alone. By
    # hand over the 4 resamples of 2 cases: (c0,c0) A 1 > B .2; (c0,c1), (c1,c0): A .75 > B
    # .2; (c1,c1): A .5 and B has no finite case -> unranked, counted last (rank 2).
    table = {"A": {"c0": 1.0, "c1": 0.5}, "B": {"c0": 0.2, "c1": float("nan")}}
    rep = bootstrap_mean_ranking(table, indices=[[0, 0], [0, 1], [1, 0], [1, 1]])
    assert rep.rank_counts.tolist() == [[4, 0], [0, 4]]
    table["B"]["c0"] = 0.8  # now B (.8) beats A when c0 is drawn once: (c0,c1) A .75
    rep = bootstrap_mean_ranking(table, indices=[[0, 0], [0, 1], [1, 0], [1, 1]])
    assert rep.names == ["B", "A"]  # observed: B .8 > A .75
    assert rep.rank_counts.tolist() == [[2, 2], [2, 2]]
    for challenge in ("xpress", "cellmap"):
        rep = challenge_stability(challenge, {"A": []})
        assert not rep.supported and rep.message.startswith("rank stability not available")
        assert ("no per-case items" if challenge == "xpress" else "not implemented") in rep.message
        assert rep.as_dict()["supported"] is False
    assert not bootstrap_mean_ranking({"A": {}}).supported
    assert "custom" in unsupported("x", "custom reason").message


def test_challenge_stability_reads_each_challenges_item_metric():
    urisc = {"A": [{"id": "i1", "f1": 0.9, "precision": 0.0}, {"id": "i2", "f1": 0.8}],
             "B": [{"id": "i1", "f1": 0.1, "precision": 1.0}, {"id": "i2", "f1": 0.2}]}
    rep = challenge_stability("urisc", urisc, n_resamples=30)
    assert rep.names == ["A", "B"] and rep.n_cases == 2
    # MedSegFM text track: F1 for instance cases, DSC where F1 is NaN
    med = {"A": [{"id": "s", "dsc": 0.9, "f1": float("nan")}, {"id": "i", "dsc": 0.0, "f1": 0.1}],
           "B": [{"id": "s", "dsc": 0.5, "f1": float("nan")}, {"id": "i", "dsc": 1.0, "f1": 0.2}]}
    assert challenge_stability("medsegfm", med, track="text").observed_rank == [1, 2]  # .5>.35
    assert challenge_stability("medsegfm", med).names == ["B", "A"]  # DSC: .75 > .45


def _refuge_tables(seed=1, teams=4, n=12):
    rng = np.random.default_rng(seed)
    names = [f"T{i}" for i in range(teams)]
    cases = [f"im{i:02d}" for i in range(n)]
    items = {t: [{"id": c + ".bmp", "cup_dice": rng.random(), "disc_dice": rng.random(),
                  "vcdr_error": 0.2 * rng.random()} for c in cases] for t in names}
    # classification rows name the .jpg images (upper case here): matched by stem
    labels = {c.upper() + ".jpg": i % 3 == 0 for i, c in enumerate(cases)}
    probs = {t: {c + ".JPG": float(rng.integers(0, 5)) / 4 for c in cases} for t in names}
    return items, labels, probs, cases


def _refuge_metrics(items, labels, probs, cases, draw):
    out = {}
    for t, its in items.items():
        by = {it["id"]: it for it in its}
        picked = [cases[j] for j in draw]
        out[t] = {k: float(np.round(np.mean([by[c + ".bmp"][src] for c in picked]), 12))
                  for k, src in (("mean_cup_dice", "cup_dice"), ("mean_disc_dice", "disc_dice"),
                                 ("vcdr_mae", "vcdr_error"))}
        out[t]["auc"] = float(np.round(roc_auc([labels[c.upper() + ".jpg"] for c in picked],
                                                [probs[t][c + ".JPG"] for c in picked]), 12))
    return out


def test_refuge_bootstrap_applies_the_official_board_to_each_resample():
    items, labels, probs, cases = _refuge_tables()
    draws = resample_indices(len(cases), 25, seed=3)
    rep = bootstrap_refuge_ranking(items, probs, labels, indices=draws)
    expected = {t: [0] * 4 for t in items}
    for draw in draws:  # the official ranking applied, resample by resample
        final = refuge_leaderboard(_refuge_metrics(items, labels, probs, cases, draw))["final"]
        for p, t in enumerate(final["teams_in_order"]):
            expected[t][p] += 1
    assert {n: rep.rank_counts[i].tolist() for i, n in enumerate(rep.names)} == expected
    observed = refuge_leaderboard(_refuge_metrics(items, labels, probs, cases,
                                                  range(len(cases))))["final"]
    assert rep.names == observed["teams_in_order"] and rep.observed_rank == [1, 2, 3, 4]
    assert "final" in rep.rule and rep.notes == []
    seg = challenge_stability("refuge", items, n_resamples=10,
                              ranking={"segmentation_weights": [1, 0, 0]})
    assert "segmentation board is resampled" in seg.notes[0] and "[1, 0, 0]" in seg.rule
    # cup Dice alone decides: the observed order is by descending mean cup Dice
    cup = {t: np.mean([it["cup_dice"] for it in its]) for t, its in items.items()}
    assert seg.names == sorted(cup, key=cup.get, reverse=True)


def test_refuge_missing_label_and_nan_team():
    items, labels, probs, cases = _refuge_tables(teams=3, n=6)
    with pytest.raises(ValueError, match="no glaucoma label"):
        bootstrap_refuge_ranking(items, probs, {c + ".jpg": True for c in cases[1:]})
    with pytest.raises(ValueError, match="two entries for image 'IM00'"):
        bootstrap_refuge_ranking(items, probs, {"im00.jpg": True, "IM00.png": False})
    items["T0"][0]["cup_dice"] = None  # a NaN team drops off the board: last everywhere
    rep = bootstrap_refuge_ranking(items, n_resamples=10)
    assert rep.names[-1] == "T0" and rep.rank_counts[-1].tolist() == [0, 0, 10]
    assert any("took the last rank" in n for n in rep.notes)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=2, max_size=9),
       st.integers(0, 2**32 - 1))
def test_weighted_auc_equals_roc_auc_of_the_resampled_list(rows, seed):
    y = np.array([r[0] for r in rows])
    s = {f"c{i}": r[1] / 3 for i, r in enumerate(rows)}
    cases = list(s)
    draw = np.random.default_rng(seed).integers(0, len(rows), size=(1, len(rows)))
    got = _weighted_auc(case_weights(draw, len(rows)), _auc_pairs(s, cases, y), y)[0]
    picked_y = y[draw[0]]
    if picked_y.all() or not picked_y.any():
        assert np.isnan(got)
    else:
        assert got == pytest.approx(roc_auc(picked_y, [s[cases[j]] for j in draw[0]]))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 8), min_size=6, max_size=6),
       st.lists(st.integers(0, 3), min_size=6, max_size=6),
       st.lists(st.integers(0, 8), min_size=6, max_size=6), st.integers(0, 1000))
def test_a_dominating_submission_never_ranks_below_and_shifts_change_nothing(a, gap, c, seed):
    # D >= A on every case: in every resample D's mean >= A's, so A never beats D
    table = {"A": {f"c{j}": v / 8 for j, v in enumerate(a)},
             "D": {f"c{j}": (v + g) / 8 for j, (v, g) in enumerate(zip(a, gap, strict=True))},
             "C": {f"c{j}": v / 8 for j, v in enumerate(c)}}
    rep = bootstrap_mean_ranking(table, n_resamples=40, seed=seed)
    i_a, i_d = rep.names.index("A"), rep.names.index("D")
    assert rep.better_fraction[i_a, i_d] == 0
    assert (rep.rank_counts.sum(axis=1) == 40).all()
    # adding the same constant to every value moves every mean alike: same ranks
    shifted = {t: {k: v + 2.0 for k, v in vals.items()} for t, vals in table.items()}
    again = bootstrap_mean_ranking(shifted, n_resamples=40, seed=seed)
    assert again.names == rep.names and np.array_equal(again.rank_counts, rep.rank_counts)


def test_the_issues_size_runs_well_within_its_budget():
    # issue #22: 100 teams × 1,000 cases × 1,000 resamples in under 5 s on the 2-core VM
    # (measured 0.3 s there; benchmarks/bench_stability.py)
    import time

    x = np.random.default_rng(0).random((100, 1000))
    table = {f"t{i}": dict(zip(map(str, range(1000)), row.tolist(), strict=True))
             for i, row in enumerate(x)}
    t0 = time.perf_counter()
    rep = bootstrap_mean_ranking(table, n_resamples=1000, seed=0)
    assert time.perf_counter() - t0 < 5.0
    assert rep.rank_counts.shape == (100, 100) and (rep.rank_counts.sum(axis=1) == 1000).all()
