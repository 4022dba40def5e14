"""The official (distance, area) sort of the surface percentiles, rebuilt by counting
(``surface._sorted_by_distance_then_area``, issue #19 session 7) against ``np.lexsort``:
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
    assert surface._weighted_percentiles(dist, areas, percents) == want


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
