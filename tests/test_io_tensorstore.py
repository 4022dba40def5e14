"""Tensorstore-backed formats (n5, neuroglancer precomputed) open lazily with their values."""

import numpy as np
import pytest

from gpueval.io.arrays import open_volume

ts = pytest.importorskip("tensorstore")

A = np.random.default_rng(0).integers(0, 2**40, (20, 18, 12), dtype=np.uint64)


def test_n5_roundtrip(tmp_path):
    path = str(tmp_path / "vol.n5")
    store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": path},
                     "metadata": {"dimensions": list(A.shape), "blockSize": [8, 8, 8],
                                  "dataType": "uint64", "compression": {"type": "gzip"}},
                     "create": True}).result()
    store[...] = A
    v = open_volume(path)
    assert v.shape == A.shape and v.dtype == np.uint64
    np.testing.assert_array_equal(v.data.compute(), A)
    np.testing.assert_array_equal(v.data[3:11, 2, 5:].compute(), A[3:11, 2, 5:])


def test_neuroglancer_precomputed_roundtrip(tmp_path):
    path = str(tmp_path / "seg")
    vol = A[:16, :16, :8].astype(np.uint32)
    store = ts.open({"driver": "neuroglancer_precomputed",
                     "kvstore": {"driver": "file", "path": path},
                     "multiscale_metadata": {"type": "segmentation", "data_type": "uint32",
                                             "num_channels": 1},
                     "scale_metadata": {"size": list(vol.shape[::-1]), "resolution": [8, 8, 8],
                                        "encoding": "raw", "chunk_size": [8, 8, 8]},
                     "create": True}).result()
    store[..., 0] = vol.transpose(2, 1, 0)
    v = open_volume(f"ts:neuroglancer_precomputed:{path}")
    got = np.asarray(v.data.compute())
    assert got.shape[:3] == vol.shape[::-1]
    np.testing.assert_array_equal(got[..., 0], vol.transpose(2, 1, 0))
