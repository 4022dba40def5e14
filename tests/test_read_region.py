"""gpueval.io.arrays.read_region: a small read of an open_volume array decodes only the storage
chunks under it (issue 18, "decode once"), with the values of the dask path.

open_volume groups whole storage chunks into ~64 MiB dask chunks, and computing a slice of
such a dask array decodes every dask chunk the slice touches whole. read_region asks the
storage reader for the region instead. The reads are counted by the zarr v2 reader itself
(:func:`gpueval.io.arrays.observe_chunk_reads`: one call per chunk file decoded); the callers
checked are the CellMap warnings sample, the fill read of missing chunks and the resampling
regions (align's ``_read``).
"""

from __future__ import annotations

import collections
import math
import tempfile
from pathlib import Path

import dask
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpueval.io import align
from gpueval.io.arrays import observe_chunk_reads, open_volume, read_region, storage_of


def _write_v2(path: Path, data: np.ndarray, chunks: tuple[int, ...]) -> None:
    a = zarr.create_array(str(path), shape=data.shape, chunks=chunks, dtype=data.dtype,
                          zarr_format=2, fill_value=0)
    a[:] = data


def _reads(fn):
    """``fn()`` and the Counter of chunk keys the zarr v2 reader decoded while it ran."""
    seen: collections.Counter = collections.Counter()
    with observe_chunk_reads(lambda path, key, _n: seen.update([(path, key)])):
        out = fn()
    return out, seen


def _chunks_under(region: tuple[slice, ...], chunks: tuple[int, ...]) -> int:
    """Storage chunks a non-empty box of slices overlaps (0 for an empty box)."""
    spans = [max(0, -(-s.stop // c) - s.start // c) if s.stop > s.start else 0
             for s, c in zip(region, chunks, strict=True)]
    return math.prod(spans)


@st.composite
def _cases(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 20)) for _ in range(ndim))
    chunks = tuple(draw(st.integers(1, n)) for n in shape)
    # dask chunks: whole storage chunks grouped (as open_volume's default does to ~64 MiB)
    group = tuple(c * draw(st.integers(1, 4)) for c in chunks)
    region = []
    for n in shape:
        if draw(st.booleans()):
            a, b = sorted((draw(st.integers(-n - 2, n + 2)), draw(st.integers(-n - 2, n + 2))))
            region.append(slice(a if draw(st.booleans()) else None, b))
        else:
            region.append(draw(st.integers(-n, n - 1)))
    return shape, chunks, group, tuple(region[:draw(st.integers(0, ndim))])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases(), st.integers(0, 2**31))
def test_zarr_v2_reads_only_the_chunks_under_the_region(case, seed):
    shape, chunks, group, region = case
    data = np.random.default_rng(seed).integers(1, 1000, shape).astype(np.uint16)  # no fill
    with tempfile.TemporaryDirectory() as tmp:
        _write_v2(Path(tmp) / "a", data, chunks)
        x = open_volume(Path(tmp) / "a", chunks=group, finite=False).data
        assert storage_of(x) is not None
        got, seen = _reads(lambda: read_region(x, region))
        want = x[region].compute(scheduler=dask.get)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, data[region])
    # the box the region covers, one slice per axis (an int: one voxel wide)
    full = tuple(slice(*k.indices(n)[:2]) if isinstance(k, slice) else slice(k % n, k % n + 1)
                 for k, n in zip(region + (slice(None),) * (len(shape) - len(region)), shape,
                                 strict=True))
    full = tuple(slice(s.start, max(s.start, s.stop)) for s in full)
    assert sum(seen.values()) == _chunks_under(full, chunks)
    assert max(seen.values(), default=1) == 1  # each chunk decoded once


def test_one_voxel_of_grouped_chunks_decodes_one_chunk(tmp_path):
    """The dask path decodes the whole dask chunk (here 4³ storage chunks) for one voxel —
    the count that read_region brings down to 1."""
    data = np.arange(1, 32**3 + 1, dtype=np.uint32).reshape(32, 32, 32)
    _write_v2(tmp_path / "a", data, (8, 8, 8))
    x = open_volume(tmp_path / "a", chunks=(32, 32, 32), finite=False).data
    before, seen_dask = _reads(lambda: x[9, 17, 30].compute(scheduler=dask.get))
    after, seen_region = _reads(lambda: read_region(x, (9, 17, 30)))
    assert sum(seen_dask.values()) == 64 and sum(seen_region.values()) == 1
    assert after.shape == () and after == before == data[9, 17, 30]


@pytest.mark.parametrize("kind", ["zarr3", "hdf5", "npz", "tiff"])
def test_other_formats_give_the_dask_values(tmp_path, kind):
    """zarr v3, HDF5, npz and TIFF: open_volume builds them from a reader too (HDF5's takes
    h5py's lock itself, not dask's), so the region is asked of it, with the dask values."""
    data = np.random.default_rng(1).integers(0, 50, (12, 10, 9)).astype(np.int32)
    if kind == "zarr3":
        a = zarr.create_array(str(tmp_path / "a"), shape=data.shape, chunks=(4, 4, 4),
                              dtype=data.dtype, zarr_format=3)
        a[:] = data
        path = tmp_path / "a"
    elif kind == "hdf5":
        h5py = pytest.importorskip("h5py")
        path = tmp_path / "a.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("a", data=data, chunks=(4, 4, 4))
    elif kind == "npz":
        path = tmp_path / "a.npz"
        np.savez(path, a=data)
    else:
        tifffile = pytest.importorskip("tifffile")
        path = tmp_path / "a.tif"
        tifffile.imwrite(path, data)
    x = open_volume(path, "a" if kind in ("hdf5", "npz") else None, chunks=(8, 8, 8),
                    finite=False).data
    assert storage_of(x) is not None
    for region in [(slice(3, 11), slice(None), 4), (0, 0, 0), (slice(5, 5),), ()]:
        got = read_region(x, region)
        np.testing.assert_array_equal(got, x[region].compute(scheduler=dask.get))
        np.testing.assert_array_equal(got, data[region])
        assert got.dtype == data.dtype


def test_derived_and_stepped_reads_go_through_dask(tmp_path):
    data = np.arange(1, 1 + 16**3, dtype=np.int64).reshape(16, 16, 16)
    _write_v2(tmp_path / "a", data, (4, 4, 4))
    x = open_volume(tmp_path / "a", chunks=(8, 8, 8), finite=False).data
    assert storage_of(x + 1) is None and storage_of(x[2:]) is None
    np.testing.assert_array_equal(read_region(x * 2, (slice(1, 9), 3)), data[1:9, 3] * 2)
    np.testing.assert_array_equal(read_region(x, (slice(None, None, 3),)), data[::3])
    with pytest.raises(IndexError):
        read_region(x, (16,))


def test_warnings_sample_reads_only_its_corners(tmp_path):
    """The CellMap warnings sample reads SAMPLE_BLOCKS corners of SAMPLE_EDGE³: here 32³
    storage chunks in a 128×64×64 label, so each 64³ corner is 2³ chunks."""
    from gpueval.challenges.cellmap import warnings as cw

    data = np.random.default_rng(2).integers(1, 5, (128, 64, 64)).astype(np.uint8)
    _write_v2(tmp_path / "a", data, (32, 32, 32))
    vals, seen = _reads(lambda: cw._sample(tmp_path / "a"))
    assert vals is not None and set(np.unique(vals)) <= set(range(1, 5))
    edge = cw.SAMPLE_EDGE
    assert vals.size == 2 * edge**3  # two 64³ blocks (128 = 2 × 64 along the first axis)
    assert sum(seen.values()) == 2 * 8 and max(seen.values()) == 1


def test_fill_read_of_a_missing_chunk_decodes_nothing(tmp_path):
    """The fill value of chunks no source stores is read at one voxel of the first such
    processing chunk: the storage is asked for that voxel alone, whose chunk has no file, so
    nothing is decoded and no ~64 MiB dask chunk of fill is built for one value."""
    from gpueval.challenges.cellmap.score import _missing_chunks

    data = np.full((32, 32, 32), 3, np.uint8)
    data[:16, :16, :16] = 0  # 8 chunks all fill: zarr writes no file for them
    _write_v2(tmp_path / "gt", data, (8, 8, 8))
    gt = open_volume(tmp_path / "gt", chunks=(16, 16, 16), finite=False).data
    (missing, fills), seen = _reads(lambda: _missing_chunks(gt, [tmp_path / "gt"], [gt]))
    assert missing is not None and missing[0, 0, 0] and missing.sum() == 1
    assert fills[0] == 0 and fills[0].shape == () and sum(seen.values()) == 0
    (_, fills), _ = _reads(lambda: _missing_chunks(gt, [tmp_path / "gt"], [gt + 1]))
    assert fills[0] == 1  # a derived array: through dask, same value


def test_rescale_regions_use_read_region(tmp_path):
    """align reads a resampling region from the storage (one implementation: arrays')."""
    data = np.random.default_rng(3).integers(1, 9, (32, 32, 32)).astype(np.uint32)
    _write_v2(tmp_path / "a", data, (8, 8, 8))
    x = open_volume(tmp_path / "a", chunks=(32, 32, 32), finite=False).data
    assert align._storage_of is storage_of
    from gpueval.engine import Opaque

    key = (slice(3, 12), slice(8, 16), slice(0, 1))
    none, seen_fallback = _reads(lambda: align._read(Opaque(x), align._Storage(None), key))
    got, seen = _reads(lambda: align._read(Opaque(x), align._Storage(storage_of(x)), key))
    np.testing.assert_array_equal(got, data[key])
    np.testing.assert_array_equal(none, data[key])
    assert sum(seen.values()) == 2 and sum(seen_fallback.values()) == 2
