"""Plain zarr v2 arrays (the CellMap layout) are read straight from their chunk files.

:class:`gpueval.io.arrays._ZarrV2Reader` decodes the chunk files itself (issue #19: zarr's
import and per-chunk machinery were a fifth of a small CellMap score); every block it reads
must equal what zarr reads from the same store, missing chunks (fill value), edge chunks and
both key separators included, and whatever it does not read exactly as zarr (filters,
Fortran order, a fill value that is not a plain number) must still go through zarr.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpueval.errors import Rejected
from gpueval.io.arrays import _ZarrReader, _ZarrV2Reader, open_volume

COMPRESSORS = {
    "none": None,
    "blosc": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0},
    "zstd": {"id": "zstd", "level": 3},
    "gzip": {"id": "gzip", "level": 1},
}


def _write_v2(path: Path, data: np.ndarray, chunks, *, compressor: str = "blosc",
              fill=0, separator: str = ".", drop: int = 0, **extra) -> Path:
    """A zarr v2 array written by zarr, then ``drop`` of its chunk files removed (never
    written: they read as the fill value) and ``extra`` keys set in its ``.zarray``."""
    import numcodecs

    comp = COMPRESSORS[compressor]
    arr = zarr.create_array(str(path), shape=data.shape, chunks=chunks, dtype=data.dtype,
                            zarr_format=2, fill_value=fill,
                            compressors=None if comp is None else numcodecs.get_codec(comp),
                            chunk_key_encoding={"name": "v2", "separator": separator})
    arr[...] = data
    files = sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith("."))
    for f in files[:drop]:
        f.unlink()
    if extra:
        meta = json.loads((path / ".zarray").read_text())
        meta.update(extra)
        (path / ".zarray").write_text(json.dumps(meta))
    return path


def _reference(path: Path) -> np.ndarray:
    return np.asarray(zarr.open_array(str(path), mode="r")[...])


@st.composite
def _arrays(draw):
    nd = draw(st.integers(1, 3))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=nd, max_size=nd)))
    chunks = tuple(draw(st.integers(1, n + 2)) for n in shape)
    dtype = draw(st.sampled_from(["uint8", "uint32", "int16", "uint64", "float32", "bool"]))
    seed = draw(st.integers(0, 2**16))
    data = np.random.default_rng(seed).integers(0, 4, shape).astype(dtype)
    fill = draw(st.sampled_from([0, 3])) if dtype != "bool" else draw(st.booleans())
    box = tuple(sorted(draw(st.lists(st.integers(0, n), min_size=2, max_size=2)))
                for n in shape)
    return data, chunks, fill, box, draw(st.sampled_from(sorted(COMPRESSORS))), \
        draw(st.sampled_from([".", "/"])), draw(st.integers(0, 3))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=_arrays())
def test_direct_reads_equal_zarr(tmp_path_factory, case):
    # any block of any plain v2 array: the same values as zarr, missing chunks included
    data, chunks, fill, box, compressor, separator, drop = case
    path = _write_v2(tmp_path_factory.mktemp("z") / "a.zarr", data, chunks,
                     compressor=compressor, fill=fill, separator=separator, drop=drop)
    want = _reference(path)
    got = open_volume(path, chunks=chunks).data.compute(scheduler="sync")
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    reader = _reader_of(path)
    assert type(reader) is _ZarrV2Reader
    key = tuple(slice(a, b) for a, b in box)
    np.testing.assert_array_equal(reader[key], want[key])


def _reader_of(path: Path):
    """The reader ``open_volume`` chose for ``path``."""
    from gpueval.io.arrays import _open_reader
    from gpueval.limits import resolve

    return _open_reader(str(path), None, resolve(None))[0]


def test_plain_v2_uses_the_direct_reader_and_many_chunks_decode_in_threads(tmp_path):
    data = np.arange(40 * 40 * 12, dtype=np.uint32).reshape(40, 40, 12)
    path = _write_v2(tmp_path / "a.zarr", data, (8, 8, 12), drop=2)
    reader = _reader_of(path)
    assert type(reader) is _ZarrV2Reader
    # 25 chunks in one read: the pool path; the two dropped chunks are the fill value
    np.testing.assert_array_equal(reader[0:40, 0:40, 0:12], _reference(path))
    np.testing.assert_array_equal(reader[3:9, 5:6, 2:3], _reference(path)[3:9, 5:6, 2:3])
    assert (reader[0:8, 0:8, 0:12] == 0).all()  # the first dropped chunk


@pytest.mark.parametrize("change", [
    {"filters": [{"id": "delta", "dtype": "<u4"}]},
    {"order": "F"},
    {"fill_value": None},
    {"fill_value": "NaN", "dtype": "<f4"},
])
def test_what_the_direct_reader_does_not_read_goes_to_zarr(tmp_path, change):
    data = np.arange(6 * 6, dtype=np.dtype(change.get("dtype", "<u4"))).reshape(6, 6)
    if "filters" in change or "order" in change:  # written that way by zarr itself
        arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, chunks=(4, 4),
                                dtype=data.dtype, zarr_format=2,
                                order=change.get("order", "C"),
                                filters=[__import__("numcodecs").Delta("<u4")]
                                if "filters" in change else None)
        arr[...] = data
        path = tmp_path / "a.zarr"
    else:
        path = _write_v2(tmp_path / "a.zarr", data, (4, 4), **change)
    reader = _reader_of(path)
    assert type(reader) is _ZarrReader
    np.testing.assert_array_equal(open_volume(path).data.compute(), _reference(path))


def test_a_fill_value_the_dtype_cannot_hold_is_still_refused(tmp_path):
    # 0.5 in a uint32 array: not read directly; zarr refuses it, as before
    path = _write_v2(tmp_path / "a.zarr", np.ones((4, 4), np.uint32), (4, 4), fill_value=0.5)
    with pytest.raises(Rejected, match="cannot be opened as an array"):
        open_volume(path)


def test_fifo_chunk_is_refused_not_waited_on(tmp_path):
    path = _write_v2(tmp_path / "a.zarr", np.ones((8, 8), np.uint8), (4, 4))
    os.remove(path / "1.1")
    os.mkfifo(path / "1.1")
    with pytest.raises(Rejected, match=r"'1\.1' is not a regular file"):
        open_volume(path).data.compute()


def test_non_slice_keys_fall_back_to_zarr(tmp_path):
    data = np.arange(64, dtype=np.uint16).reshape(8, 8)
    reader = _reader_of(_write_v2(tmp_path / "a.zarr", data, (4, 4)))
    assert type(reader) is _ZarrV2Reader
    np.testing.assert_array_equal(reader[(slice(0, 8, 2), slice(1, 7))], data[0:8:2, 1:7])
    np.testing.assert_array_equal(reader[(3, slice(None))], data[3])
