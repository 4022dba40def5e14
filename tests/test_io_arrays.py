"""Reader round trips: values, voxel size and offset for every format, and bad files."""

import io
import zipfile

import h5py
import numpy as np
import pytest
import tifffile
import zarr

from gpueval.errors import Rejected
from gpueval.io.arrays import load_npz_array, open_volume

A = np.random.default_rng(0).integers(0, 9, (20, 18, 12)).astype(np.uint32)


@pytest.mark.parametrize("fmt", [2, 3])
def test_zarr_array_roundtrip(tmp_path, fmt):
    z = zarr.create_array(tmp_path / "a.zarr", shape=A.shape, chunks=(8, 8, 8), dtype=A.dtype,
                          zarr_format=fmt)
    z[:] = A
    z.attrs.update(voxel_size=[4, 4, 8], translation=[1, 2, 3])
    v = open_volume(tmp_path / "a.zarr")
    assert v.voxel_size == (4, 4, 8) and v.offset == (1, 2, 3)
    np.testing.assert_array_equal(v.data.compute(), A)


def test_zarr_group_dataset_and_resolution_key(tmp_path):
    g = zarr.open_group(tmp_path / "g.zarr", mode="w", zarr_format=2)
    arr = g.create_array("crop1/mito", shape=A.shape, chunks=(5, 5, 5), dtype=A.dtype)
    arr[:] = A
    arr.attrs["resolution"] = [2, 2, 2]
    v = open_volume(tmp_path / "g.zarr", "crop1/mito")
    assert v.voxel_size == (2, 2, 2) and v.offset == (0, 0, 0)
    np.testing.assert_array_equal(v.data.compute(), A)
    with pytest.raises(Rejected, match="name the array"):
        open_volume(tmp_path / "g.zarr")


def test_ome_ngff_level_transforms(tmp_path):
    g = zarr.open_group(tmp_path / "ome.zarr", mode="w", zarr_format=2)
    for level, f in (("s0", 1), ("s1", 2)):
        g.create_array(level, shape=tuple(s // f for s in A.shape), chunks=(8, 8, 8),
                       dtype=A.dtype)[:] = A[::f, ::f, ::f][: A.shape[0] // f,
                                                             : A.shape[1] // f, : A.shape[2] // f]
    g.attrs["multiscales"] = [{"version": "0.4", "datasets": [
        {"path": p, "coordinateTransformations": [
            {"type": "scale", "scale": [8.0 * f] * 3},
            {"type": "translation", "translation": [4.0 * f] * 3}]}
        for p, f in (("s0", 1), ("s1", 2))]}]
    assert open_volume(tmp_path / "ome.zarr").voxel_size == (8, 8, 8)
    v = open_volume(tmp_path / "ome.zarr", "s1")
    assert v.voxel_size == (16, 16, 16) and v.offset == (8, 8, 8)


def test_hdf5_roundtrip(tmp_path):
    with h5py.File(tmp_path / "s.h5", "w") as f:
        ds = f.create_dataset("submission", data=A, chunks=(4, 6, 6))
        ds.attrs["resolution"] = [99, 99, 99]
        ds.attrs["offset"] = [3267, 3267, 3267]
    v = open_volume(tmp_path / "s.h5", "submission")
    assert v.voxel_size == (99, 99, 99) and v.offset == (3267, 3267, 3267)
    np.testing.assert_array_equal(v.data[3:9, :, 2].compute(), A[3:9, :, 2])


@pytest.mark.parametrize("layout", [{"rowsperstrip": 3}, {"tile": (16, 16)}])
def test_tiff_is_read_by_strips_or_tiles(tmp_path, layout):
    img = (np.arange(40 * 50) % 251).astype(np.uint8).reshape(40, 50)
    tifffile.imwrite(tmp_path / "i.tiff", img, **layout)
    v = open_volume(tmp_path / "i.tiff")
    assert v.data.numblocks[0] >= 1
    np.testing.assert_array_equal(v.data.compute(), img)


def test_npz_refuses_pickles_and_absurd_headers(tmp_path):
    np.savez(tmp_path / "ok.npz", segs=A)
    np.testing.assert_array_equal(open_volume(tmp_path / "ok.npz", "segs").data.compute(), A)
    np.savez(tmp_path / "obj.npz", segs=np.array([{"x": 1}], dtype=object))
    with pytest.raises(Rejected, match="pickles are refused"):
        load_npz_array(tmp_path / "obj.npz", "segs")
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<u8", "fortran_order": False,
                                               "shape": (10**6, 10**6, 10**6)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w") as z:
        z.writestr("segs.npy", buf.getvalue())
    with pytest.raises(Rejected, match="voxels, over the limit"):
        load_npz_array(tmp_path / "bomb.npz", "segs")


def test_corrupt_chunk_is_a_rejection(tmp_path):
    z = zarr.create_array(tmp_path / "c.zarr", shape=(16,), chunks=(8,), dtype="u8",
                          zarr_format=2)
    z[:] = np.arange(16)
    (tmp_path / "c.zarr" / "1").write_bytes(b"garbage")
    v = open_volume(tmp_path / "c.zarr")
    with pytest.raises(Rejected, match="c.zarr chunk '1': corrupt"):
        v.data.compute()


def test_unknown_format_and_missing_file(tmp_path):
    (tmp_path / "x.weird").write_text("?")
    with pytest.raises(Rejected, match="unknown array format"):
        open_volume(tmp_path / "x.weird")
    with pytest.raises(Rejected):
        open_volume(tmp_path / "missing.h5", "a")


@pytest.mark.parametrize("compression,shuffle", [("lzf", False), ("gzip", False),
                                                 ("gzip", True)])
def test_hdf5_raw_chunk_path_equals_h5py(tmp_path, compression, shuffle):
    """LZF/gzip chunks are inflated outside HDF5 (parallel); values must equal h5py's."""
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("full", data=A, chunks=(8, 7, 5), compression=compression,
                         shuffle=shuffle)
        g = f.create_dataset("sparse", shape=A.shape, dtype=A.dtype, chunks=(8, 7, 5),
                             compression=compression, shuffle=shuffle)
        g[2:9, 3:4, :6] = 7  # most chunks never written
        expect = {"full": A, "sparse": g[:]}
    for name, ref in expect.items():
        v = open_volume(tmp_path / "c.h5", name, chunks=(9, 10, 12))
        np.testing.assert_array_equal(v.data.compute(), ref)
        np.testing.assert_array_equal(v.data[3:17, 1:2, 4:11].compute(), ref[3:17, 1:2, 4:11])
