"""Sparse gather kernel: world → voxel rounding, chunk grouping, reads only node chunks."""

from __future__ import annotations

import dask.array as da
import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.kernels.gather import gather, gather_block, group_by_chunk, world_to_voxel
from gpueval.metrics.run_length import (
    component_ids,
    exactly_representable,
    expected_run_length,
    merging_segments,
)


def test_truncate_then_floor():
    """x = face − 0.4 nm → previous voxel; face + 0.999 → current (fixture voxel_faces rule)."""
    pos = np.array([[197.6, 0, 0], [198.999, 0, 0], [198.0, 0, 0], [197.0, 0, 0]])
    idx, inside = world_to_voxel(pos, (0, 0, 0), (99, 99, 99), (4, 4, 4))
    assert inside.all()
    assert idx[:, 2].tolist() == [1, 2, 2, 1]
    # x,y,z positions against z,y,x arrays
    idx, _ = world_to_voxel(np.array([[0.0, 100.0, 250.0]]), (0, 0, 0), (120, 99, 66),
                            (9, 9, 9))
    assert idx.tolist() == [[2, 1, 0]]


def test_truncation_is_toward_zero_not_floor():
    """A ROI starting below 0: −0.7 nm truncates to 0 (not floor −1)."""
    idx, inside = world_to_voxel(np.array([[-0.7, 0, 0], [-1.0, 0, 0], [198.9, 0, 0]]),
                                 (0, 0, -99), (99, 99, 99), (1, 1, 3))
    # -0.7 → 0 nm → voxel (0 + 99) // 99 = 1; -1.0 → -1 nm → voxel 0; 198.9 → 198 → voxel 3
    # which is outside (3 voxels from -99 end at 198 nm, exclusive)
    assert inside.tolist() == [True, True, False]
    assert idx[:2, 2].tolist() == [1, 0]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_gather_equals_fancy_indexing(data):
    shape = tuple(data.draw(st.integers(1, 12)) for _ in range(3))
    chunks = tuple(tuple(_split(data, n)) for n in shape)
    seed = data.draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**63, shape, dtype=np.uint64)
    n = data.draw(st.integers(0, 60))
    idx = np.stack([rng.integers(0, s, n) for s in shape], axis=1).astype(np.int64)
    extrema = data.draw(st.booleans())
    r = gather(da.from_array(a, chunks=chunks), idx, with_extrema=extrema)
    np.testing.assert_array_equal(r.values, a[tuple(idx.T)])
    groups = group_by_chunk(idx, chunks)
    total = int(np.prod([len(c) for c in chunks]))
    assert r.stats.chunks_total == total
    assert r.stats.chunks_read == (total if extrema else len(groups.block_coords))
    if extrema:
        assert r.max == int(a.max()) and r.min is None  # unsigned: no min pass
        signed = gather(da.from_array(a.view(np.int64), chunks=chunks), idx, with_extrema=True)
        assert signed.min == int(a.view(np.int64).min())


def _split(data, n: int) -> list[int]:
    sizes = []
    while n:
        s = data.draw(st.integers(1, n))
        sizes.append(s)
        n -= s
    return sizes


class _CountingArray:
    """An array-like that records which blocks dask reads from it."""

    def __init__(self, a: np.ndarray):
        self.a, self.shape, self.dtype, self.ndim = a, a.shape, a.dtype, a.ndim
        self.reads: list = []

    def __getitem__(self, key):
        out = self.a[key]
        if out.size:  # dask probes an empty slice for metadata
            self.reads.append(key)
        return out


def test_reads_only_chunks_holding_points():
    a = np.arange(32 * 32 * 32, dtype=np.uint64).reshape(32, 32, 32)
    src = _CountingArray(a)
    arr = da.from_array(src, chunks=(8, 8, 8), asarray=False, fancy=False)
    idx = np.array([[0, 0, 0], [1, 2, 3], [31, 31, 31], [9, 0, 0]])
    r = gather(arr, idx)
    np.testing.assert_array_equal(r.values, a[tuple(idx.T)])
    assert len(src.reads) == 3 == r.stats.chunks_read
    assert r.stats.bytes_read == 3 * 8**3 * 8
    assert r.stats.chunks_total == 64


def test_gather_block_numpy():
    b = np.arange(24).reshape(2, 3, 4)
    assert gather_block(b, np.array([[1, 2, 3], [0, 0, 1]])).tolist() == [23, 1]


def test_out_of_array_index_refused():
    with pytest.raises(IndexError):
        gather(da.zeros((4, 4, 4), chunks=2), np.array([[4, 0, 0]]))


# --------------------------------------------------------------------------------------------
# Node-table formulas


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(0, 60), st.integers(0, 2**31))
def test_component_order_is_networkx_order(n, m, seed):
    rng = np.random.default_rng(seed)
    edges = rng.integers(0, n, (m, 2))
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(map(tuple, edges.tolist()))
    want = np.empty(n, np.int64)
    for k, comp in enumerate(nx.connected_components(g)):
        want[list(comp)] = k
    np.testing.assert_array_equal(component_ids(n, edges), want)


def test_erl_by_hand():
    """Two skeletons: 0 = 3 edges of length 1 (segments 5,5,9,9), 1 = one edge in segment 7."""
    k = np.array([0, 0, 0, 0, 1, 1])
    seg = np.array([5, 5, 9, 9, 7, 7], np.uint64)
    edges = np.array([[0, 1], [1, 2], [2, 3], [4, 5]])
    lengths = np.array([1.0, 1.0, 1.0, 2.0])
    r = expected_run_length(k, seg, edges, lengths)
    # T = 5; skeleton 0: c = {5: 1, 9: 1} → (3/5)·(1+1)/3; skeleton 1: (2/5)·4/2
    assert r.erl == pytest.approx(2 / 5 + 4 / 5)
    assert r.erl_norm == pytest.approx((6 / 5) / 2.5)
    # an isolated node of another skeleton in segment 7 makes it merging: no credit for 1
    k2 = np.append(k, 2)
    seg2 = np.append(seg, np.uint64(7))
    r2 = expected_run_length(k2, seg2, edges, lengths)
    assert r2.erl == pytest.approx(2 / 5)


def test_zero_length_skeleton_is_nan():
    k = np.array([0, 0, 1, 1])
    seg = np.array([1, 1, 2, 2], np.uint64)
    r = expected_run_length(k, seg, np.array([[0, 1], [2, 3]]), np.array([3.0, 0.0]))
    assert np.isnan(r.erl)


def test_float64_merge_keys():
    big = np.uint64(2**60)
    seg = np.array([big, big, big + np.uint64(1), big + np.uint64(1)], np.uint64)
    k = np.array([0, 0, 1, 1])
    assert not merging_segments(k, seg).any()
    # official: one double key holds both skeletons; only the representable id is found
    assert merging_segments(k, seg, float64_merge_keys=True).tolist() == [True, True,
                                                                          False, False]
    assert exactly_representable(np.array([2**53 + 1, 2**60, 2**64 - 1], np.uint64)
                                 ).tolist() == [False, True, False]
