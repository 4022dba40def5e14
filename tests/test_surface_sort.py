"""The official (distance, area) sort of the surface percentiles, rebuilt by counting
(``surface._sorted_by_distance_then_area``, issue #19 session 7; ``surface.sorted_by_rank``
from the offset search's ranks and the neighbour codes, session 8) against ``np.lexsort``:
the same arrays bit for bit, so HD95/HD100 cannot move."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.kernels import surface


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400),
       n_dist=st.integers(1, 40), n_area=st.integers(1, 12), spread=st.booleans())
def test_counting_sort_equals_lexsort(seed, n, n_dist, n_area, spread):
    rng = np.random.default_rng(seed)
    dist_values = np.sqrt(rng.integers(0, 60, n_dist) * 0.64)  # offsets' lengths, repeats
    if spread:  # all distinct (a k-d tree's far points): the lexsort fallback
        dist = rng.random(n) * 50
    else:
        dist = dist_values[rng.integers(0, n_dist, n)]
    areas = (rng.random(n_area) * 2)[rng.integers(0, n_area, n)]
    dist[rng.random(n) < 0.05] = np.inf
    order = np.lexsort((areas, dist))
    d, a = surface._sorted_by_distance_then_area(dist, areas)
    assert d.tobytes() == dist[order].tobytes()
    assert a.tobytes() == areas[order].tobytes()
    percents = (95.0, 100.0, 50.0)
    cum = np.cumsum(areas[order]) / np.sum(areas[order])
    want = [float(dist[order][min(int(np.searchsorted(cum, p / 100)), n - 1)]) for p in percents]
    assert surface._weighted_percentiles((d, a), percents) == want


def test_counting_sort_fallback_is_taken_for_distinct_values(monkeypatch):
    calls = []
    real = np.lexsort
    monkeypatch.setattr(surface.np, "lexsort", lambda keys: calls.append(1) or real(keys))
    rng = np.random.default_rng(0)
    surface._sorted_by_distance_then_area(rng.random(5000), rng.random(5000))
    assert calls  # 25e6 distinct pairs: no counting table
    calls.clear()
    surface._sorted_by_distance_then_area(np.repeat([1.0, 2.0], 2500), np.ones(5000))
    assert not calls


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), far=st.integers(0, 6),
       spacing=st.sampled_from([(2.5, 0.8, 0.8), (1.0, 1.0, 1.0), (3.0, 0.7, 1.1)]),
       empty_ref=st.booleans())
def test_ranked_sort_equals_lexsort(seed, n, far, spacing, empty_ref):
    """The grid's ranks and the codes give lexsort's arrays, far points (rank -1, beyond the
    ball) and an empty reference surface (every distance inf) included."""
    rng = np.random.default_rng(seed)
    grid = surface.CornerGrid((20, 20, 20), spacing)
    rank = rng.integers(0, len(grid.values), n).astype(np.int16)
    dist = grid.values[rank]
    beyond = rng.permutation(n)[:far]
    rank[beyond] = -1
    # beyond the ball: larger than every value, some repeated (a stray voxel's 8 corners)
    dist[beyond] = grid.reach + rng.integers(1, 4, len(beyond)) * 0.37
    if empty_ref:
        rank[:], dist[:] = -1, np.inf
    codes = rng.integers(1, 255, n).astype(np.uint8)
    areas = surface.surfel_area_table(spacing)[codes]
    order = np.lexsort((areas, dist))
    d, a = surface.sorted_by_rank(dist, rank, grid.values, codes, spacing)
    assert d.tobytes() == dist[order].tobytes()
    assert a.tobytes() == areas[order].tobytes()
