"""The GIL-free pieces of CellMap's Hausdorff pass (issue #18, session 10: two threads).

* :func:`gpueval.kernels.edt_nogil.hausdorff_sq_in_boxes` builds many pairs' masks from one
  chunk and measures them in one compiled call: each pair's value must be
  :func:`~gpueval.kernels.edt_nogil.hausdorff_sq` of the masks NumPy builds (status and
  squared distance bit for bit, −1 where a mask is empty), at integer and non-integer voxel
  sizes, for every truth / label dtype the scorer passes.
* ``scoring_2026._masks_in_parts`` compares only inside the parts' boxes; with boxes that hold
  every voxel of their ids (as the statistics' boxes do) its masks must be the whole piece's.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.challenges.cellmap import scoring_2026 as s26
from gpueval.kernels.edt_nogil import BOTH, hausdorff_sq, hausdorff_sq_in_boxes


@st.composite
def chunk_and_pairs(draw):
    """A small truth chunk and local label chunk, and pairs (box, truth id, wanted labels)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = tuple(draw(st.integers(1, 12)) for _ in range(3))
    truth_dtype = draw(st.sampled_from([np.uint8, np.uint16, np.uint32, np.uint64, np.int32]))
    label_dtype = draw(st.sampled_from([np.uint8, np.uint16, np.uint32]))
    n_ids = draw(st.integers(1, 5))
    truth = rng.integers(0, n_ids + 1, shape).astype(truth_dtype)
    labels = rng.integers(0, n_ids + 1, shape).astype(label_dtype)
    pairs = []
    for _ in range(draw(st.integers(0, 6))):
        lo = [int(rng.integers(0, n)) for n in shape]
        hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, shape, strict=True)]
        wanted = sorted(set(rng.integers(0, n_ids + 1, int(rng.integers(0, 3))).tolist()))
        pairs.append((lo, hi, int(rng.integers(0, n_ids + 1)), wanted))
    sizes = tuple(draw(st.sampled_from([1.0, 4.0, 8.0, 3.24, 0.7])) for _ in range(3))
    return truth, labels, n_ids, pairs, sizes


@settings(max_examples=120, deadline=None)
@given(chunk_and_pairs())
def test_batch_equals_the_kernel_per_pair(case):
    truth, labels, n_ids, pairs, sizes = case
    lo = np.array([p[0] for p in pairs], np.int64).reshape(-1, 3)
    hi = np.array([p[1] for p in pairs], np.int64).reshape(-1, 3)
    starts = np.zeros(len(pairs) + 1, np.int64)
    np.cumsum([len(p[3]) for p in pairs], out=starts[1:])
    label_ids = np.array([v for p in pairs for v in p[3]], np.int64)
    wanted = np.zeros(n_ids + 1, bool)
    got = hausdorff_sq_in_boxes(truth, labels, wanted, lo, hi,
                                np.array([p[2] for p in pairs]), starts, label_ids, sizes)
    assert not wanted.any()  # the work array is left as it came
    for (p_lo, p_hi, t, ids), value in zip(pairs, got.tolist(), strict=True):
        box = tuple(slice(a, b) for a, b in zip(p_lo, p_hi, strict=True))
        status, squared = hausdorff_sq(truth[box] == t, np.isin(labels[box], ids), sizes)
        assert value == (squared if status == BOTH else -1.0)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans(), st.booleans())
def test_masks_in_parts_equal_the_whole_piece(seed, matched, collision):
    rng = np.random.default_rng(seed)
    shape = (10, 9, 11)
    g = np.zeros(shape, np.uint32)
    labels = np.zeros(shape, np.uint16)
    t, m, local_m, local_t = 3, 7, 2, 5

    def blob(arr, value):  # a few voxels of ``value`` in a random small box
        lo = rng.integers(0, np.array(shape) - 3)
        sl = tuple(slice(int(a), int(a) + 3) for a in lo)
        arr[sl] = np.where(rng.random((3, 3, 3)) < 0.5, value, arr[sl])

    blob(g, t)
    blob(g, 1)  # another truth id
    lut = np.array([0, 1, m, 4, 9, t, 6], np.int64)  # local label l -> global id lut[l]
    if matched:
        blob(labels, local_m)
    if collision:
        blob(labels, local_t)
    blob(labels, 1)

    def tight(mask):  # the statistics' box of a mask (half-open), None when empty
        if not mask.any():
            return None
        where = np.nonzero(mask)
        return tuple(int(w.min()) for w in where), tuple(int(w.max()) + 1 for w in where)

    origin = (100, 200, 300)  # chunk origin: boxes are absolute

    def shifted(box):
        return None if box is None else tuple(tuple(x + o for x, o in zip(c, origin,
                                                                            strict=True))
                                              for c in box)

    parts = (shifted(tight(g == t)), shifted(tight(labels == local_m)),
             shifted(tight(labels == local_t)))
    p_lo = [int(rng.integers(0, n)) for n in shape]
    p_hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(p_lo, shape, strict=True)]
    lo = tuple(a + o for a, o in zip(p_lo, origin, strict=True))
    hi = tuple(b + o for b, o in zip(p_hi, origin, strict=True))
    by_value = np.argsort(lut, kind="stable")
    ab = np.zeros((2, *(b - a for a, b in zip(lo, hi, strict=True))), bool)
    met = s26._masks_in_parts(ab, g, labels, origin, lo, hi, parts, t,
                              m if matched else 0, collision, by_value, lut[by_value])
    piece = tuple(slice(a, b) for a, b in zip(p_lo, p_hi, strict=True))
    want = [local_m] * matched + [local_t] * collision
    np.testing.assert_array_equal(ab[0], g[piece] == t)
    np.testing.assert_array_equal(ab[1], np.isin(labels[piece], want))
    if not met:
        assert not ab.any()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 10**7), max_size=60), st.integers(1, 32))
def test_spread_by_weight_balances_every_item_once(weights, n):
    items = [3 * i + 1 for i in range(len(weights))]  # spec indices, increasing
    buckets = s26._spread(items, n, weights)
    assert len(buckets) == n
    assert sorted(x for b in buckets for x in b) == items
    assert all(b == sorted(b) for b in buckets)
    assert buckets == s26._spread(items, n, weights)  # deterministic
    weight_of = dict(zip(items, weights, strict=True))
    loads = [sum(weight_of[x] for x in b) for b in buckets]
    if weights:
        # greedy into the lightest bucket: no bucket exceeds the mean by more than the
        # heaviest item (the bound of list scheduling)
        assert max(loads) <= sum(weights) / n + max(weights)


def test_sparse_pair_rule_bounds_the_box_kernel_memory():
    """Small boxes go to the box kernel up to SPARSE_BOX_RATIO voxels per object voxel; boxes
    above LARGE_BOX keep the tighter LARGE_BOX_RATIO (the EDT's float64 box array)."""
    from gpueval.challenges.cellmap.scoring_2026 import (
        LARGE_BOX,
        LARGE_BOX_RATIO,
        SPARSE_BOX_RATIO,
        _sparse_pair,
    )

    assert not _sparse_pair(4096, (1, 0))  # tiny boxes: always the box kernel
    small = LARGE_BOX // 2
    assert not _sparse_pair(small, (small // SPARSE_BOX_RATIO, 0))
    assert _sparse_pair(small, (small // SPARSE_BOX_RATIO // 2, 0))
    big = LARGE_BOX * 4
    assert not _sparse_pair(big, (big // LARGE_BOX_RATIO, 0))
    assert _sparse_pair(big, (big // LARGE_BOX_RATIO - 1, 0))
