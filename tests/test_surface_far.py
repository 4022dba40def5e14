"""Far points of ``CornerGrid`` (stray voxels' corners), resolved in a ball around each
cluster (issue #19 session 7): exactly the brute-force minimum, whether the reference points
come in z order (as the scans list them) or not."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.kernels import surface


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shuffled=st.booleans(),
       spacing=st.tuples(*[st.sampled_from([0.5, 0.8, 1.0, 2.5, 3.0])] * 3))
def test_boxed_far_points_equal_brute_force(seed, shuffled, spacing):
    rng = np.random.default_rng(seed)
    # a shell (a surface) and clusters of corners far outside it (stray voxels)
    v = rng.normal(size=(3000, 3))
    ref = np.rint(40 + 15 * v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.int64)
    ref = np.unique(ref, axis=0)  # in z order, as a scan lists them
    if shuffled:
        ref = ref[rng.permutation(len(ref))]
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    strays = rng.integers(0, 90, (3, 3))
    query = (strays[:, None, :] + corners[None]).reshape(-1, 3)
    want = surface._brute_nearest(query, ref, spacing)
    old = surface.BRUTE_FORCE_PAIRS
    surface.BRUTE_FORCE_PAIRS = 100  # the boxed path, not the one-shot brute force
    try:
        got = surface._nearest_far(query, ref, spacing)
    finally:
        surface.BRUTE_FORCE_PAIRS = old
    assert got.tobytes() == want.tobytes()
