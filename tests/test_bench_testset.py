"""The ``cellmap_testset`` builder (issue 18): the compiled painter gives ``_paint``'s values,
and the blockwise, multi-process builder writes what zarr itself writes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.bench.dense import _build_testset, _cells, _paint, _scaled_manifest, _testset_cells
from gpueval.bench.paint import paint, paint_into
from gpueval.challenges.cellmap.scoring_2026 import INSTANCE_CLASSES


@settings(max_examples=40, deadline=None)
@given(side=st.integers(8, 90), n=st.integers(8, 400), seed=st.integers(0, 2 ** 16),
       box=st.tuples(*[st.tuples(st.floats(0, 1), st.floats(0, 1))] * 3))
def test_paint_equals_numpy_paint_on_any_box(side, n, seed, box):
    # any box of any grid, edges included: the same voxels bit for bit
    cells = _cells(side, n, seed)
    lo = tuple(int(a * (side - 1)) for a, _ in box)
    hi = tuple(min(side, lo_ + 1 + int(b * side)) for lo_, (_, b) in zip(lo, box, strict=True))
    want = _paint(cells, lo, hi)
    got = paint(cells, lo, hi)
    for w, g in zip(want, got, strict=True):
        assert g.dtype == np.uint32 and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


def test_paint_equals_numpy_paint_on_whole_rows():
    # whole crops of instance and semantic rows, cubic and not (the grid spans the
    # largest axis); the data has every feature painted (misses, splits, merges, blobs)
    rows = _scaled_manifest(0.05)
    for i in (0, 1, 192, 288, 294, 347):
        shape = tuple(int(s) for s in rows[i][3].shape)
        cells = _testset_cells(shape, i)
        want = _paint(cells, (0, 0, 0), shape)
        gt = np.full(shape, 99, np.uint32)
        pred = np.full(shape, 99, np.uint32)
        paint_into(cells, (0, 0, 0), gt, pred)
        np.testing.assert_array_equal(gt, want[0])
        np.testing.assert_array_equal(pred, want[1])
    # the features exist: without them the comparison proves little
    cells = _cells(96, 400, 3)
    assert cells["merge"].any() and cells["split"].any() and cells["extra"].any()
    gt, pred = paint(cells, (0, 0, 0), (96, 96, 96))
    assert len(np.unique(pred)) > len(np.unique(gt)) > 100


def test_paint_into_rejects_other_dtypes():
    cells = _cells(16, 8, 0)
    with pytest.raises(ValueError, match="uint32"):
        paint_into(cells, (0, 0, 0), np.zeros((4, 4, 4), np.int64),
                   np.zeros((4, 4, 4), np.uint32))


def _zarr_reference(tmp, scale, rows_kept, chunk):
    """The builder as it was (one whole crop painted by NumPy, written by zarr)."""
    rows = _scaled_manifest(scale)
    for i in rows_kept:
        crop, _ds, label, g = rows[i]
        shape = tuple(int(s) for s in g.shape)
        gt, pred = _paint(_testset_cells(shape, i), (0, 0, 0), shape)
        for root, data in (("truth", gt), ("sub.zarr", pred)):
            data = data if label in INSTANCE_CLASSES else (data > 0).astype(np.uint8)
            grp = zarr.open_group(f"{tmp}/{root}", mode="a", zarr_format=2)
            a = grp.require_group(f"crop{crop}").create_array(
                label, shape=shape, dtype=data.dtype, chunks=(min(chunk, max(shape)),) * 3)
            a[:] = data
            a.attrs["voxel_size"] = [float(v) for v in g.voxel_size]
            a.attrs["translation"] = [float(v) for v in g.translation]


def _files(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            with open(os.path.join(d, f), "rb") as fh:
                out[os.path.relpath(os.path.join(d, f), root)] = fh.read()
    return out


@pytest.mark.parametrize("chunk", [16, 256])
def test_builder_writes_what_zarr_writes(tmp_path, chunk):
    # instance and semantic rows, cubic and not; chunk 16 splits the crops into several
    # chunks with partial edge chunks (and some all-zero semantic chunks zarr leaves out)
    kept = [0, 1, 192, 193, 288, 292, 294, 303]
    new, ref = tmp_path / "new", tmp_path / "ref"
    new.mkdir()
    info = _build_testset(str(new), 0.05, only=kept, chunk=chunk, workers=2)
    _zarr_reference(str(ref), 0.05, kept, chunk)
    rows = _scaled_manifest(0.05)
    assert info["rows"] == len(kept)
    assert info["voxels"] == sum(int(np.prod(rows[i][3].shape)) for i in kept)
    got, want = _files(new / "truth"), _files(ref / "truth")
    got_sub, want_sub = _files(new / "sub.zarr"), _files(ref / "sub.zarr")
    assert sorted(got) == sorted(want) and sorted(got_sub) == sorted(want_sub)
    assert got == want and got_sub == want_sub  # chunk bytes, .zarray, .zattrs
    if chunk == 16:
        assert info["chunks"] > len(kept)
    # and zarr reads the builder's arrays back as the painter's values
    for i in kept:
        crop, _ds, label, g = rows[i]
        a = zarr.open_array(str(new / "sub.zarr" / f"crop{crop}" / label), mode="r")
        pred = _paint(_testset_cells(tuple(g.shape), i), (0, 0, 0), tuple(g.shape))[1]
        np.testing.assert_array_equal(
            a[:], pred if label in INSTANCE_CLASSES else (pred > 0).astype(np.uint8))
    assert (new / "manifest.csv").read_text().count("\n") == len(kept) + 1
