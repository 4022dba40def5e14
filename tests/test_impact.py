"""Metric-change impact report: Δscore, Δrank, τ/ρ against scipy, the items behind a swap."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from gpueval.metrics.impact import item_contributions, metric_change_impact
from gpueval.metrics.ranking import competition_ranks


def _items(values):
    return {f"c{i}": {"f1": v, "precision": 0.0} for i, v in enumerate(values)}


def test_one_case_swaps_two_teams_and_the_report_names_it():
    # Old metric: A = mean(.9, .8, .7, .6) = .75, B = .70, C = .50  -> ranks A1 B2 C3.
    # The new version scores A's case c3 (say an empty mask) 0 instead of .6 and changes
    # nothing else: A = (.9+.8+.7+0)/4 = .60 < B = .70 -> B1 A2 C3. The only item behind
    # the swap is c3, contribution (0 - .6)/4 = -.15 = A's Δscore.
    old_items = {"A": _items([.9, .8, .7, .6]), "B": _items([.7, .7, .7, .7]),
                 "C": _items([.5, .5, .5, .5])}
    new_items = {"A": _items([.9, .8, .7, 0.0]), "B": old_items["B"], "C": old_items["C"]}
    mean = {t: sum(v["f1"] for v in it.values()) / 4 for t, it in old_items.items()}
    new_mean = {t: sum(v["f1"] for v in it.values()) / 4 for t, it in new_items.items()}
    rep = metric_change_impact(mean, new_mean, old_items, new_items, item_metric="f1",
                               old_version="urisc-1", new_version="urisc-2")
    by = {r.name: r for r in rep.rows}
    assert [r.name for r in rep.rows] == ["B", "A", "C"]  # new-rank order
    assert (by["A"].old_rank, by["A"].new_rank, by["A"].delta_rank) == (1, 2, -1)
    assert (by["B"].old_rank, by["B"].new_rank, by["B"].delta_rank) == (2, 1, 1)
    assert by["C"].delta_rank == 0 and by["C"].top_items == []
    assert by["A"].delta_score == pytest.approx(-0.15)
    assert [c.item for c in by["A"].top_items] == ["c3"]
    assert by["A"].top_items[0].contribution == pytest.approx(-0.15)
    assert by["A"].top_items[0].old == 0.6 and by["A"].top_items[0].new == 0.0
    assert by["B"].top_items == []  # B moved because A fell: none of its own items changed
    assert [r.name for r in rep.changed] == ["B", "A"]
    # hand: old (1,2,3) vs new (2,1,3): one discordant pair of three -> τ = (2-1)/3;
    # Σd² = 1 + 1 = 2 -> ρ = 1 - 6·2/(3·8) = 0.5
    assert rep.kendall_tau == pytest.approx(1 / 3)
    assert rep.spearman_rho == pytest.approx(0.5)
    assert rep.n_compared == 3 and rep.notes == []
    d = rep.as_dict()
    assert d["rows"][1]["top_items"][0]["item"] == "c3" and d["new_version"] == "urisc-2"


def test_lower_is_better_and_given_ranks():
    rep = metric_change_impact({"A": 1.0, "B": 2.0}, {"A": 3.0, "B": 2.0},
                               higher_is_better=False)
    assert {r.name: (r.old_rank, r.new_rank) for r in rep.rows} == {"A": (1, 2), "B": (2, 1)}
    # REFUGE: scores are null, ranks come from its final board
    rep = metric_change_impact({"A": None, "B": None}, {"A": None, "B": None},
                               old_ranks={"A": 1, "B": 2}, new_ranks={"A": 2, "B": 1})
    assert {r.name: r.delta_rank for r in rep.rows} == {"A": -1, "B": 1}
    assert all(r.delta_score is None for r in rep.rows)
    assert rep.kendall_tau == pytest.approx(-1.0)


def test_new_gone_and_too_few_for_correlations():
    rep = metric_change_impact({"A": 0.5, "gone": 0.4}, {"A": 0.5, "new": 0.1})
    by = {r.name: r for r in rep.rows}
    assert by["gone"].new_rank is None and by["new"].old_rank is None
    assert by["gone"].delta_rank is None and by["new"].delta_score is None
    assert math.isnan(rep.kendall_tau) and math.isnan(rep.spearman_rho)
    assert any("at least two" in n for n in rep.notes)
    assert any("gone" in n for n in rep.notes) and any("new" in n for n in rep.notes)
    assert rep.as_dict()["kendall_tau"] is None
    rep = metric_change_impact({"A": 0.5, "B": 0.5}, {"A": 0.4, "B": 0.6})
    assert math.isnan(rep.kendall_tau) and "constant" in rep.notes[0]


def test_rejected_scores_are_unranked_and_dict_items_need_a_metric():
    rep = metric_change_impact({"A": float("nan"), "B": 0.3}, {"A": 0.2, "B": 0.3})
    assert {r.name: r.old_rank for r in rep.rows} == {"A": None, "B": 1}
    with pytest.raises(ValueError, match="item_metric"):
        item_contributions({"c": {"f1": 1.0}}, {"c": {"f1": 0.5}})


def test_rank_change_without_score_change_names_the_items_either_way():
    # B's own mean fell (c0 -0.2, c1 +0.1): net negative, so c0 is named
    rep = metric_change_impact({"A": 0.5, "B": 0.6}, {"A": 0.7, "B": 0.6},
                               {"B": {"c0": 0.6, "c1": 0.6}}, {"B": {"c0": 0.4, "c1": 0.7}})
    b = next(r for r in rep.rows if r.name == "B")
    assert b.delta_rank == -1 and [c.item for c in b.top_items] == ["c0"]


def test_weighted_mean_contributions():
    c = item_contributions({"x": 1.0, "y": 1.0}, {"x": 0.0, "y": 1.0}, weights={"x": 0.25})
    assert [(i.item, i.contribution) for i in c] == [("x", -0.25), ("y", 0.0)]


values = st.floats(0, 1, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdefgh"), st.one_of(values, st.none()), max_size=8),
       st.dictionaries(st.sampled_from("abcdefgh"), st.one_of(values, st.none()), max_size=8))
def test_contributions_sum_to_the_change_of_the_mean(old, new):
    # holds whatever items either version scored (added, dropped, None)
    contribs = item_contributions(old, new)
    fo = [v for v in old.values() if v is not None]
    fn = [v for v in new.values() if v is not None]
    mean = lambda v: sum(v) / len(v) if v else 0.0  # noqa: E731
    assert sum(c.contribution for c in contribs) == pytest.approx(mean(fn) - mean(fo), abs=1e-12)
    assert sorted(c.item for c in contribs) == sorted(set(old) | set(new))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=2, max_size=12))
def test_correlations_equal_scipy_on_the_competition_ranks(pairs):
    # scores on a coarse grid so that ties (shared ranks) are common
    old = {f"t{i}": a / 4 for i, (a, _) in enumerate(pairs)}
    new = {f"t{i}": b / 4 for i, (_, b) in enumerate(pairs)}
    rep = metric_change_impact(old, new)
    ro = competition_ranks(list(old.values()))
    rn = competition_ranks(list(new.values()))
    if len(set(ro)) > 1 and len(set(rn)) > 1:
        assert rep.kendall_tau == pytest.approx(stats.kendalltau(ro, rn)[0])
        assert rep.spearman_rho == pytest.approx(stats.spearmanr(ro, rn)[0])
    else:
        assert math.isnan(rep.kendall_tau)
    by = {r.name: r for r in rep.rows}
    for i, name in enumerate(old):
        assert by[name].delta_rank == ro[i] - rn[i]


def test_competition_ranks_rule():
    # ties share the best rank and the next rank skips: 1, 2, 2, 4
    assert competition_ranks([0.9, 0.5, 0.5, 0.1]) == [1, 2, 2, 4]
    assert competition_ranks([None, float("inf"), 0.2]) == [None, None, 1]
    assert competition_ranks([0.3, 0.3 + 1e-15], rtol=1e-12) == [1, 1]
    assert competition_ranks([0.3, 0.3 + 1e-15]) == [2, 1]


def test_result_item_lists_and_each_challenges_item_metric():
    from gpueval.metrics.stability import item_metric_for

    # MedSegFM text track: instance cases count F1, semantic cases (F1 NaN) DSC.
    # A: (1.0 + 0.4)/2 = .7 -> (1.0 + 0.0)/2 = .5 under the new version; B .6 both times.
    nan = float("nan")
    old = {"A": [{"id": "sem", "dsc": 1.0, "f1": nan}, {"id": "ins", "dsc": 0.9, "f1": 0.4}],
           "B": [{"id": "sem", "dsc": 0.6, "f1": nan}, {"id": "ins", "dsc": 0.1, "f1": 0.6}]}
    new = {"A": [{"id": "sem", "dsc": 1.0, "f1": nan}, {"id": "ins", "dsc": 0.9, "f1": 0.0}],
           "B": old["B"]}
    rep = metric_change_impact({"A": 0.7, "B": 0.6}, {"A": 0.5, "B": 0.6}, old, new,
                               item_metric=item_metric_for("medsegfm", "text"))
    a = next(r for r in rep.rows if r.name == "A")
    assert [(c.item, c.old, c.new) for c in a.top_items] == [("ins", 0.4, 0.0)]
    assert a.top_items[0].contribution == pytest.approx(-0.2)
    assert item_metric_for("urisc") == "f1" and item_metric_for("medsegfm") == "dsc"
    assert item_metric_for("refuge") == "cup_dice" and item_metric_for("xpress") is None
    with pytest.raises(ValueError, match="'id'"):
        metric_change_impact({"A": 1.0, "B": 0.0}, {"A": 0.0, "B": 1.0},
                             {"A": [{"f1": 1.0}]}, {"A": [{"f1": 0.0}]}, item_metric="f1")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=15))
def test_competition_ranks_equal_scipy_min_rank(ints):
    # the leaderboard's rule is scipy's "min" ranking of the negated scores
    scores = [i / 5 for i in ints]
    assert competition_ranks(scores) == stats.rankdata([-s for s in scores],
                                                       method="min").astype(int).tolist()
    assert competition_ranks(scores, higher_is_better=False) == \
        stats.rankdata(scores, method="min").astype(int).tolist()
