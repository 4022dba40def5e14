"""Chunked per-id statistics equal a brute-force NumPy computation on the whole volume."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpueval.kernels.regions import RegionStats, chunk_region_stats, region_stats


def _brute(a: np.ndarray):
    out = {}
    for v in np.unique(a):
        if v == 0:
            continue
        coords = np.argwhere(a == v)
        first = np.ravel_multi_index(tuple(coords[0]), a.shape)
        out[v] = (len(coords), coords.min(0).tolist(), coords.max(0).tolist(), int(first))
    return out


def _as_dict(s: RegionStats):
    return {i: (int(c), lo.tolist(), hi.tolist(), int(f)) for i, c, lo, hi, f in
            zip(s.ids, s.counts, s.bbox_min, s.bbox_max, s.first_index, strict=True)}


@st.composite
def volumes(draw):
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.integers(1, 14)) for _ in range(ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    dtype = draw(st.sampled_from([np.uint8, np.int32, np.uint64, np.float64]))
    pool = np.array([0, 1, 2, 7, 2**40 if dtype == np.uint64 else 9], np.uint64)
    a = pool[rng.integers(0, 5, shape)].astype(dtype)
    if dtype == np.float64:
        a = a * 0.25
    chunks = tuple(draw(st.integers(1, s)) for s in shape)
    return a, chunks


@given(volumes())
def test_chunked_stats_equal_brute_force(vol):
    a, chunks = vol
    s = region_stats(da.from_array(a, chunks=chunks), scheduler="sync")
    assert _as_dict(s) == _brute(a)
    assert s.ids.dtype == a.dtype
    assert list(s.ids) == sorted(s.ids)


def test_hand_checked_2d():
    a = np.array([[0, 3, 3, 0],
                  [5, 0, 3, 0],
                  [0, 0, 0, 3]], np.uint16)
    s = region_stats(da.from_array(a, chunks=(2, 3)))
    assert s.ids.tolist() == [3, 5]
    assert s.counts.tolist() == [4, 1]
    assert s.bbox_min.tolist() == [[0, 1], [1, 0]]
    assert s.bbox_max.tolist() == [[2, 3], [1, 0]]
    assert s.first_index.tolist() == [1, 4]
    assert s.bbox(0) == (slice(0, 3), slice(1, 4))
    assert s.lookup([5, 4, 3]).tolist() == [1, -1, 0]


def test_empty_volume_and_chunk_origin():
    s = region_stats(da.zeros((4, 4, 4), chunks=2, dtype=np.uint32))
    assert len(s) == 0 and s.bbox_min.shape == (0, 3)
    c = chunk_region_stats(np.array([[0, 4]]), origin=(2, 5), shape=(10, 10))
    assert c.bbox_min.tolist() == [[2, 6]] and c.first_index.tolist() == [26]


@pytest.fixture
def cp(monkeypatch):
    pytest.importorskip("emulated.fake_cupy")
    from emulated import fake_cupy

    cupy = fake_cupy.install(monkeypatch)
    import sys

    def scatter(ufunc):
        def f(a, idx, v):
            ufunc.at(np.asarray(a), np.asarray(idx), np.asarray(v))
        return f

    monkeypatch.setattr(sys.modules["cupyx"], "scatter_min", scatter(np.minimum), raising=False)
    monkeypatch.setattr(sys.modules["cupyx"], "scatter_max", scatter(np.maximum), raising=False)
    return cupy


def test_cupy_twin_emulated(cp):
    rng = np.random.default_rng(2)
    a = rng.integers(0, 6, (9, 10, 11)).astype(np.int64) * 3
    host = chunk_region_stats(a, (1, 2, 3), (20, 20, 20))
    dev = chunk_region_stats(cp.asarray(a), (1, 2, 3), (20, 20, 20))
    assert _as_dict(host) == _as_dict(dev)
