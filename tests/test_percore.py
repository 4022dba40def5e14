"""Per-core kernels of issue #18 (session 7): run-length region statistics and the
Hausdorff shortcuts, against brute-force references."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.kernels.regions import chunk_region_stats


def _brute_stats(vol: np.ndarray, origin, shape):  # boxes inclusive, as RegionStats
    ids = np.unique(vol[vol != 0])
    out = []
    for i in ids:
        coords = np.argwhere(vol == i)
        first = np.ravel_multi_index(tuple(coords[0] + np.asarray(origin)), shape)
        out.append((i, len(coords), coords.min(0) + origin, coords.max(0) + origin,
                    first))
    return out


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(5, 6, 9), (1, 4, 17), (3, 3), (12,)]),
       st.floats(0.05, 0.95), st.integers(1, 6))
def test_run_length_region_stats_equal_brute_force(seed, shape, fill, run):
    rng = np.random.default_rng(seed)
    # runs of equal ids along the last axis (what the run-length kernels merge), touching
    # rows and chunk edges; ``fill`` picks the sparse (foreground) or the dense path
    n_last = -(-shape[-1] // run)
    ids = rng.integers(1, 5, shape[:-1] + (n_last,)) * (rng.random(shape[:-1] + (n_last,))
                                                       < fill)
    vol = np.repeat(ids, run, axis=-1)[..., :shape[-1]].astype(np.uint32)
    origin = tuple(2 for _ in shape)
    volume = tuple(s + 5 for s in shape)
    want = _brute_stats(vol, np.asarray(origin), volume)
    for max_id in (None, 4):  # renumbered (sparse or dense path) and already-dense ids
        got = chunk_region_stats(vol, origin, volume, max_id=max_id)
        assert got.ids.tolist() == [w[0] for w in want]
        assert got.counts.tolist() == [w[1] for w in want]
        for j, w in enumerate(want):
            assert got.bbox_min[j].tolist() == w[2].tolist()
            assert got.bbox_max[j].tolist() == w[3].tolist()
            assert int(got.first_index[j]) == int(w[4])


# hausdorff_max against SciPy (the official arithmetic) and edt: tests/test_edt_nogil.py
