"""Counting kernels: hand-checked tables, chunked == whole, id permutation invariance."""

import dask.array as da
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gpueval.engine import map_reduce
from gpueval.kernels.stats import Contingency, confusion_matrix, contingency, histogram


def brute_force(a, b):
    pairs = {}
    for x, y in zip(a.ravel().tolist(), b.ravel().tolist(), strict=True):
        pairs[(x, y)] = pairs.get((x, y), 0) + 1
    return dict(sorted(pairs.items()))


def as_dict(c: Contingency):
    return dict(zip(zip(c.ids_a.tolist(), c.ids_b.tolist(), strict=True), c.counts.tolist(),
                    strict=True))


def test_hand_checked_table():
    a = np.array([[1, 1, 2], [0, 0, 2]], np.uint64)
    b = np.array([[7, 7, 7], [0, 3, 3]], np.int32)
    c = contingency(a, b)
    assert as_dict(c) == {(0, 0): 1, (0, 3): 1, (1, 7): 2, (2, 3): 1, (2, 7): 1}
    assert [x.tolist() for x in c.sizes_a()] == [[0, 1, 2], [2, 2, 2]]
    assert [x.tolist() for x in c.sizes_b()] == [[0, 3, 7], [1, 2, 3]]
    assert c.total == 6


def test_huge_uint64_ids_stay_exact():
    big = np.array([2**64 - 1, 2**63, 2**53 + 1, 2**53], np.uint64)
    c = contingency(big, big[::-1].copy())
    assert as_dict(c) == brute_force(big, big[::-1])


def test_table_grows_past_initial_capacity():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3000, 50_000).astype(np.uint64)
    b = rng.integers(0, 3000, 50_000).astype(np.uint64)
    assert as_dict(contingency(a, b)) == brute_force(a, b)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shapes differ"):
        contingency(np.zeros(3), np.zeros(4))


labels = arrays(np.uint16, st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)),
                elements=st.integers(0, 6))


@given(labels, st.data())
def test_chunked_equals_whole(a, data):
    b = np.roll(a, 1, axis=0) * 3 % 7
    chunks = tuple(data.draw(st.integers(1, n)) for n in a.shape)
    chunks_b = tuple(data.draw(st.integers(1, n)) for n in a.shape)
    got = map_reduce(contingency, [da.from_array(a, chunks), da.from_array(b, chunks_b)],
                     Contingency.combine, split_every=data.draw(st.integers(2, 5)))
    assert as_dict(got) == brute_force(a, b)


@given(labels)
def test_permuting_ids_permutes_table(a):
    b = (a.astype(np.int64) * 5 + 1) % 7
    perm = np.random.default_rng(1).permutation(np.arange(7, 100)).astype(np.int64)
    c1 = as_dict(contingency(a, b))
    c2 = as_dict(contingency(a, perm[b]))
    assert {(x, int(perm[y])): n for (x, y), n in c1.items()} == c2


@given(labels)
def test_confusion_equals_contingency(a):
    b = np.flip(a, axis=1).copy()
    m = confusion_matrix(a, b, 7)
    for (x, y), n in brute_force(a, b).items():
        assert m[x, y] == n
    assert m.sum() == a.size


def test_confusion_out_of_range_raises():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix(np.array([0, 5]), np.array([0, 1]), 3)


def test_histogram():
    assert histogram(np.array([0, 2, 2, 255], np.uint8), 256)[[0, 2, 255]].tolist() == [1, 2, 1]


@given(st.integers(0, 2**32 - 1), st.sampled_from([5, 300, 5000]))
def test_runs_of_equal_pairs_across_table_growth(seed, n_ids):
    """Runs of equal pairs (counted by the run loop) with many distinct pairs, so the table
    grows in the middle of the data, and the weighted insert of :meth:`Contingency.combine`
    over tables of two halves — both equal the brute-force count."""
    rng = np.random.default_rng(seed)
    n_runs = int(rng.integers(1, 3000))
    lengths = rng.integers(1, 9, n_runs)
    a = np.repeat(rng.integers(0, n_ids, n_runs), lengths).astype(np.uint32)
    b = np.repeat(rng.integers(0, 4, n_runs), lengths).astype(np.uint8)
    b[rng.random(len(b)) < 0.05] = 1  # runs broken in the second id only
    want = brute_force(a, b)
    assert as_dict(contingency(a, b)) == want
    cut = int(rng.integers(0, len(a) + 1))
    halves = [contingency(a[:cut], b[:cut]), contingency(a[cut:], b[cut:])]
    assert as_dict(Contingency.combine(halves)) == want
