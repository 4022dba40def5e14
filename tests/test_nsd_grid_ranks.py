"""The offset search's ranked distances (``CornerGrid.nearest_ranked``, issue #19 session 8):
offsets of one distance are probed as a group, and each point's distance comes with its
index among the grid's distinct distances. The distances must be the brute-force minimum of
the official formula, the ranks must name them, and points beyond the ball get rank -1."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.kernels import surface


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nq=st.integers(0, 60), nr=st.integers(0, 60),
       spacing=st.sampled_from([(2.5, 0.8, 0.8), (1.0, 1.0, 1.0), (0.7, 3.0, 1.3)]),
       clustered=st.booleans())
def test_ranked_distances_are_the_brute_force_minimum(seed, nq, nr, spacing, clustered):
    rng = np.random.default_rng(seed)
    shape = (24, 30, 28)
    # clustered: reference and query near each other (hits inside the ball); else spread
    # over the volume (many points beyond it)
    hi = np.array([8, 8, 8]) if clustered else np.array(shape) + 1
    query = rng.integers(0, hi, (nq, 3))
    ref = rng.integers(0, hi, (nr, 3))
    grid = surface.CornerGrid(shape, spacing)
    dist, rank = grid.nearest_ranked(query, ref)
    assert rank.dtype == np.int16 and len(dist) == len(rank) == nq
    if nr == 0:
        assert np.isinf(dist).all() and (rank == -1).all()
        return
    want = surface._brute_nearest(query, ref, spacing)
    assert dist.tobytes() == want.tobytes()
    inside = rank >= 0
    assert (grid.values[rank[inside]] == dist[inside]).all()
    assert (dist[~inside] > grid.reach).all() and (dist[inside] <= grid.reach).all()
    assert np.array_equal(grid.nearest(query, ref), dist)


def test_groups_hold_the_offsets_of_one_distance_in_order():
    grid = surface.CornerGrid((10, 10, 10), (2.5, 0.8, 0.8))
    flat = [s for group in grid._groups for s in group]
    assert flat == grid.step.tolist()  # every offset once, in increasing distance
    start = 0
    for value, group in zip(grid.values, grid._groups, strict=True):
        assert (grid.dist[start:start + len(group)] == value).all()
        start += len(group)
    assert np.all(np.diff(grid.values) > 0)
