"""Hand-checked and brute-force tests of gpueval.metrics.matching."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.metrics.matching import match_iou_threshold, match_max_total_iou, mcf_costs

S = 1_000_000


def test_mcf_costs_truncate_float32():
    # float32(0.3) = 0.30000001192..., (1 - that) * 1e6 = 699999.988 -> 699999
    assert mcf_costs(np.array([0.3])).tolist() == [699999]
    assert mcf_costs(np.array([1.0, 0.5])).tolist() == [0, 500000]


def test_max_total_iou_prefers_total_over_greedy():
    # greedy would take (1,a)=0.6 then leave 2 unmatched; optimum (1,b)+(2,a)=0.5+0.5 = 1.0
    g, p = match_max_total_iou(np.array([1, 1, 2]), np.array([10, 11, 10]),
                               np.array([0.6, 0.5, 0.5]))
    assert dict(zip(g.tolist(), p.tolist(), strict=True)) == {1: 11, 2: 10}


def test_max_total_iou_no_threshold_and_sparse_ids():
    g, p = match_max_total_iou(np.array([1000, 3]), np.array([7, 7]), np.array([0.01, 0.02]))
    assert g.tolist() == [3] and p.tolist() == [7]


def test_max_total_iou_more_matches_bonus():
    # costs (1-iou)S: one match iou 0.9 (100000 + S+1 unmatched) vs two matches 0.45+0.45
    # (550000*2 = 1.1e6) -> two matches cheaper (1,100,001 > 1,100,000)
    g, p = match_max_total_iou(np.array([1, 1, 2]), np.array([5, 6, 5]),
                               np.array([0.9, 0.45, 0.45]))
    assert dict(zip(g.tolist(), p.tolist(), strict=True)) == {1: 6, 2: 5}


def test_max_total_iou_empty_and_zero():
    g, p = match_max_total_iou(np.array([1]), np.array([2]), np.array([0.0]))
    assert len(g) == len(p) == 0


def _brute_cost(g, p, iou):
    gts = sorted(set(g.tolist()))
    preds = sorted(set(p.tolist()))
    c = {(a, b): int(x) for a, b, x in zip(g.tolist(), p.tolist(), mcf_costs(iou), strict=True)}
    best = None
    options = [None] + preds
    for choice in itertools.product(options, repeat=len(gts)):
        used = [x for x in choice if x is not None]
        if len(used) != len(set(used)):
            continue
        total = 0
        for a, b in zip(gts, choice, strict=True):
            if b is None:
                total += S + 1
            elif (a, b) in c:
                total += c[(a, b)]
            else:
                total = None
                break
        if total is not None and (best is None or total < best):
            best = total
    return best


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4),
                          st.floats(0.01, 1.0)), min_size=1, max_size=8,
                unique_by=lambda t: (t[0], t[1])))
def test_max_total_iou_cost_equals_brute_force(pairs):
    g = np.array([a for a, _, _ in pairs])
    p = np.array([b for _, b, _ in pairs]) + 100
    iou = np.array([x for _, _, x in pairs])
    mg, mp = match_max_total_iou(g, p, iou)
    c = dict(zip(zip(g.tolist(), p.tolist(), strict=True), mcf_costs(iou).tolist(), strict=True))
    assert len(set(mp.tolist())) == len(mp)
    cost = sum(c[(a, b)] for a, b in zip(mg.tolist(), mp.tolist(), strict=True)) \
        + (S + 1) * (len(set(g.tolist())) - len(mg))
    assert cost == _brute_cost(g, p, iou)


def test_iou_threshold_hand():
    # pair (1,5) 0.6 and (2,5) 0.7 compete; (1,6) 0.55 lets both pass: 2 matches beat 1
    g, p = match_iou_threshold(np.array([1, 2, 1]), np.array([5, 5, 6]),
                               np.array([0.6, 0.7, 0.55]), 2, 2)
    assert dict(zip(g.tolist(), p.tolist(), strict=True)) == {1: 6, 2: 5}


def test_iou_threshold_drops_below():
    g, p = match_iou_threshold(np.array([1, 2]), np.array([5, 6]), np.array([0.49, 0.5]), 3, 3)
    assert g.tolist() == [2] and p.tolist() == [6]


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_iou_threshold_equals_dense(n_gt, n_pred, seed):
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(seed)
    m = rng.random((n_gt, n_pred)) * (rng.random((n_gt, n_pred)) < 0.5)
    cost = -(m >= 0.5).astype(float) - m / (2 * min(n_gt, n_pred))
    ri, ci = linear_sum_assignment(cost)
    n_dense = int((m[ri, ci] >= 0.5).sum())
    gi, pi = np.nonzero(m)
    g, p = match_iou_threshold(gi + 1, pi + 1, m[gi, pi], n_gt, n_pred)
    assert len(g) == n_dense
    assert np.isclose(m[g - 1, p - 1].sum(), m[ri, ci][m[ri, ci] >= 0.5].sum())


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6),
                          st.floats(0.01, 1.0)), min_size=1, max_size=14,
                unique_by=lambda t: (t[0], t[1])))
def test_sparse_solver_same_cost_as_dense(pairs):
    g = np.array([a for a, _, _ in pairs])
    p = np.array([b for _, b, _ in pairs]) + 100
    iou = np.array([x for _, _, x in pairs])
    c = dict(zip(zip(g.tolist(), p.tolist(), strict=True), mcf_costs(iou).tolist(),
                 strict=True))

    def cost(mg, mp):
        return sum(c[(a, b)] for a, b in zip(mg.tolist(), mp.tolist(), strict=True)) \
            + (S + 1) * (len(set(g.tolist())) - len(mg))

    dense = match_max_total_iou(g, p, iou)
    sparse = match_max_total_iou(g, p, iou, dense_limit=0)
    assert len(set(sparse[1].tolist())) == len(sparse[1])
    assert cost(*sparse) == cost(*dense)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 30), st.integers(1, 30),
                          st.floats(1e-7, 1.0)), min_size=1, max_size=30,
                unique_by=lambda t: (t[0], t[1])))
def test_isolated_pairs_match_as_the_solver_matches_them(pairs):
    """A pair alone in its component is matched without the solver: the same matching as
    when every component goes through it (IoU down to 1e-7, where the arc costs S)."""
    from gpueval.metrics import matching

    g = np.array([a for a, _, _ in pairs])
    p = np.array([b for _, b, _ in pairs]) + 100
    iou = np.array([x for _, _, x in pairs])
    fast = match_max_total_iou(g, p, iou)
    alone = matching._isolated_pairs(g, p)
    real = matching._isolated_pairs
    matching._isolated_pairs = lambda a, b: np.zeros(len(a), bool)
    try:
        solved = match_max_total_iou(g, p, iou)
    finally:
        matching._isolated_pairs = real
    np.testing.assert_array_equal(fast[0], solved[0])
    np.testing.assert_array_equal(fast[1], solved[1])
    by_gt = dict(zip(fast[0].tolist(), fast[1].tolist(), strict=True))
    for a, b in zip(g[alone].tolist(), p[alone].tolist(), strict=True):
        assert by_gt[a] == b  # every isolated pair is matched


def test_isolated_pairs_are_those_sharing_no_id():
    from gpueval.metrics.matching import _isolated_pairs

    g = np.array([1, 2, 2, 3, 4])
    p = np.array([10, 11, 12, 12, 13])
    assert _isolated_pairs(g, p).tolist() == [True, False, False, False, True]
