"""Chunked connected components equal whole-volume cc3d, voxel for voxel, ids included."""

from __future__ import annotations

import cc3d
import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given
from hypothesis import strategies as st

from gpueval.kernels.components import connected_components, label_chunked

ORDER = {4: 1, 8: 2, 6: 1, 18: 2, 26: 3}


def _reference(a: np.ndarray, connectivity: int, binary: bool = False):
    """cc3d (multi-label) on integer ids with the same equalities as ``a``."""
    if binary:
        ids = (a != 0).astype(np.uint8)
    else:
        _, inv = np.unique(a, return_inverse=True)
        ids = np.where(a != 0, inv.reshape(a.shape) + 1, 0).astype(np.uint32)
    return cc3d.connected_components(ids, connectivity=connectivity, return_N=True)


def _scipy_partition_ok(a, out, connectivity, binary=False):
    """Independent check: same partition as scipy.ndimage.label per value, ids in raster order
    of first voxels."""
    struct = ndi.generate_binary_structure(a.ndim, ORDER[connectivity])
    values = [1] if binary else [v for v in np.unique(a) if v != 0]
    n = 0
    for v in values:
        mask = (a != 0) if binary else (a == v)
        lab, k = ndi.label(mask, struct)
        n += k
        for i in range(1, k + 1):
            ids = np.unique(out[lab == i])
            assert len(ids) == 1 and ids[0] != 0
    assert (out[a == 0] == 0).all()
    flat = out.ravel()
    _, first = np.unique(flat, return_index=True)
    ids_by_first = flat[np.sort(first)]
    assert ids_by_first[ids_by_first != 0].tolist() == list(range(1, n + 1))


def _random_chunks(draw, shape):
    # at most 6 chunks per axis keeps graphs small; small axes still get 1-voxel chunks
    return tuple(draw(st.integers(-(-s // 6), s)) for s in shape)


@st.composite
def volumes(draw, ndim):
    shape = tuple(draw(st.integers(1, 24 if ndim == 3 else 40)) for _ in range(ndim))
    n_labels = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    density = draw(st.sampled_from([0.3, 0.6, 0.9]))
    a = rng.integers(1, n_labels + 1, shape) * (rng.random(shape) < density)
    dtype = draw(st.sampled_from([np.uint8, np.int64, np.uint64, np.float32]))
    a = a.astype(dtype)
    if dtype == np.float32:
        a = a * np.float32(0.5)
    return a, _random_chunks(draw, shape)


def _assert_chunked_equals_cc3d(vol, connectivity, binary):
    a, chunks = vol
    res = label_chunked(da.from_array(a, chunks=chunks), connectivity, binary=binary,
                        scheduler="sync")
    ref, n = _reference(a, connectivity, binary)
    assert res.n == n
    np.testing.assert_array_equal(res.data.compute(scheduler="sync"), ref)


@given(volumes(3), st.sampled_from([6, 18, 26]), st.booleans())
def test_chunked_equals_cc3d_3d(vol, connectivity, binary):
    _assert_chunked_equals_cc3d(vol, connectivity, binary)


@given(volumes(2), st.sampled_from([4, 8]), st.booleans())
def test_chunked_equals_cc3d_2d(vol, connectivity, binary):
    _assert_chunked_equals_cc3d(vol, connectivity, binary)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_whole_array_partition_matches_scipy(connectivity):
    rng = np.random.default_rng(3)
    a = (rng.integers(1, 4, (14, 15, 16)) * (rng.random((14, 15, 16)) < 0.5)).astype(np.int32)
    out, n = connected_components(a, connectivity)
    _scipy_partition_ok(a, out, connectivity)
    res = label_chunked(da.from_array(a, chunks=(5, 4, 7)), connectivity)
    _scipy_partition_ok(a, res.data.compute(), connectivity)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_binary_2d_partition_matches_scipy(connectivity):
    # cc3d's own binary_image=True miscounts 2-D 4-connected images; ours must not
    rng = np.random.default_rng(4)
    a = (rng.random((30, 31)) < 0.5).astype(np.uint8) * rng.integers(1, 3, (30, 31))
    out, n = connected_components(a, connectivity, binary=True)
    _scipy_partition_ok(a, out, connectivity, binary=True)
    res = label_chunked(da.from_array(a, chunks=(7, 5)), connectivity, binary=True)
    assert res.n == n
    np.testing.assert_array_equal(res.data.compute(), out)


def test_float_labels_on_a_thin_volume():
    # equal float ids stacked along a size-1 axis are one component (cc3d splits them)
    a = np.full((2, 1), 0.5, np.float32)
    out, n = connected_components(a, 4)
    assert n == 1 and out.tolist() == [[1], [1]]


def test_corner_only_contacts_across_chunks():
    a = np.zeros((4, 4, 4), np.uint16)
    a[1, 1, 1] = a[2, 2, 2] = 7   # corner contact across the chunk corner at (2, 2, 2)
    a[1, 2, 1] = a[2, 1, 1] = 9   # edge contact (18-connected), not a face contact
    arr = da.from_array(a, chunks=2)
    r26, r18, r6 = (label_chunked(arr, c) for c in (26, 18, 6))
    assert (r26.n, r18.n, r6.n) == (2, 3, 4)
    out = r26.data.compute()
    assert out[1, 1, 1] == out[2, 2, 2] == 1 and out[1, 2, 1] == out[2, 1, 1] == 2


def test_spiral_spanning_every_chunk():
    # one 6-connected serpentine through all chunks: a single component whose first voxel is
    # in the first chunk, plus an isolated dot numbered after it
    a = np.zeros((9, 9, 9), np.uint8)
    a[::2] = 1
    a[1::4, :, 0] = 1
    a[3::4, :, -1] = 1
    a[0, 1::2, :] = 0
    a[0, 0, 0] = 2
    res = label_chunked(da.from_array(a, chunks=2), 6)
    ref, n = _reference(a, 6)
    assert res.n == n
    np.testing.assert_array_equal(res.data.compute(), ref)


def test_labels_of_different_values_never_merge_across_a_face():
    a = np.zeros((2, 6), np.int64)
    a[:, :3] = 5
    a[:, 3:] = 6
    res = label_chunked(da.from_array(a, chunks=(2, 3)), 8)
    assert res.n == 2
    assert res.data.compute().tolist() == [[1, 1, 1, 2, 2, 2]] * 2


def test_relabel_in_task_and_block():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 3, (10, 12, 8)).astype(np.uint32)
    arr = da.from_array(a, chunks=(4, 5, 8))
    res = label_chunked(arr, 26)
    full = res.data.compute()
    sl = (slice(4, 8), slice(5, 10), slice(0, 8))
    np.testing.assert_array_equal(res.relabel(sl, a[sl]), full[sl])
    np.testing.assert_array_equal(res.block((slice(3, 9), slice(2, 11), slice(1, 5))),
                                  full[3:9, 2:11, 1:5])
    with pytest.raises(ValueError):
        res.relabel((slice(1, 5), slice(0, 5), slice(0, 8)), a[1:5, :5])
    assert res.first_index.tolist() == sorted(res.first_index.tolist())


def test_bad_connectivity_is_an_error():
    with pytest.raises(ValueError, match="connectivity"):
        connected_components(np.zeros((3, 3), np.uint8), 6)
    with pytest.raises(ValueError, match="connectivity"):
        label_chunked(da.zeros((3, 3, 3), chunks=2), 8)


# --------------------------------------------------------------------------------------------
# The CuPy twin's host logic (roots → raster ids, first voxels, chunk planes), run on NumPy
# through tests/emulated/fake_cupy.py with Python stand-ins for the three CUDA kernels. The
# kernels themselves are checked on a device by tests/gpu/test_cupy_components.py.


def _py_kernels():
    def find(parent, i):
        while parent[i] != i:
            i = parent[i]
        return i

    def init(grid, block, args):
        keys, parent, n = args
        parent[:] = np.where(np.asarray(keys) != 0, np.arange(int(n)), -1)

    def merge(grid, block, args):
        keys, parent, nz, ny, nx, nbrs, k, binary = args
        keys = np.asarray(keys)
        for i in np.flatnonzero(keys):
            z, y, x = np.unravel_index(i, (int(nz), int(ny), int(nx)))
            for dz, dy, dx in np.asarray(nbrs)[: int(k)]:
                zz, yy, xx = z + dz, y + dy, x + dx
                if not (0 <= zz < nz and 0 <= yy < ny and 0 <= xx < nx):
                    continue
                j = (zz * ny + yy) * nx + xx
                if keys[j] == 0 or (not binary and keys[j] != keys[i]):
                    continue
                a, b = find(parent, i), find(parent, j)
                if a != b:
                    parent[max(a, b)] = min(a, b)

    def compress(grid, block, args):
        parent, n = args
        for i in range(int(n)):
            if parent[i] >= 0:
                parent[i] = find(parent, i)

    return {"cc_init": init, "cc_merge": merge, "cc_compress": compress}


@pytest.fixture
def emulated_gpu(monkeypatch):
    from emulated import fake_cupy

    from gpueval.kernels import components

    cp = fake_cupy.install(monkeypatch)
    monkeypatch.setattr(components, "_cuda_kernels", _py_kernels)
    monkeypatch.setattr("gpueval.backend.gpu_available", lambda: True)
    return cp


@pytest.mark.parametrize(("shape", "connectivity", "binary"), [
    ((6, 7, 5), 26, False), ((6, 7, 5), 6, True), ((6, 7, 5), 18, False),
    ((11, 9), 4, False), ((11, 9), 8, True)])
def test_cupy_twin_emulated(emulated_gpu, shape, connectivity, binary):
    cp = emulated_gpu
    rng = np.random.default_rng(7)
    a = (rng.integers(1, 3, shape) * (rng.random(shape) < 0.6)).astype(np.float32)
    ref, n = _reference(a, connectivity, binary)
    out, m = connected_components(cp.asarray(a), connectivity, binary=binary)
    assert m == n
    np.testing.assert_array_equal(np.asarray(out), ref)
    res = label_chunked(da.from_array(a, chunks=3), connectivity, binary=binary, device="gpu",
                        scheduler="sync")
    assert res.n == n
    np.testing.assert_array_equal(res.data.compute(scheduler="sync"), ref)


@pytest.mark.parametrize("palette", [np.array([2**63, 2**64 - 1, 5], np.uint64),
                                     np.array([-1.5, -2.0, 0.5])])
def test_cupy_twin_emulated_huge_and_negative_ids(emulated_gpu, palette):
    # issue 21 item 6 on the device path: uint64 keys ≥ 2**63 (negative floats' bit patterns)
    # are only compared for equality there, and one row of one id per chunk is the CPU trigger
    cp = emulated_gpu
    rng = np.random.default_rng(9)
    a = palette[rng.integers(0, 3, (5, 6, 4))] * (rng.random((5, 6, 4)) < 0.6)
    a[2] = 0
    a[2, 3] = palette[0]
    ref, n = _reference(a, 26)
    out, m = connected_components(cp.asarray(a), 26)
    assert m == n
    np.testing.assert_array_equal(np.asarray(out), ref)
    res = label_chunked(da.from_array(a, chunks=(1, 2, 4)), 26, device="gpu", scheduler="sync")
    assert res.n == n
    np.testing.assert_array_equal(res.data.compute(scheduler="sync"), ref)


def test_distributed_scheduler_gives_the_same_labels():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(8)
    a = rng.integers(0, 3, (12, 10, 9)).astype(np.uint8)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        res = label_chunked(da.from_array(a, chunks=4), 26, scheduler=cluster.scheduler_address)
    ref, n = _reference(a, 26)
    assert res.n == n
    np.testing.assert_array_equal(res.data.compute(), ref)


def test_label_graph_skips_chunks_known_to_be_empty():
    """label_graph(skip=...) never reads the skipped chunks and labels the rest as cc3d does."""
    import dask

    from gpueval.kernels.components import label_graph, relabel_block

    rng = np.random.default_rng(3)
    vol = (rng.random((12, 12, 12)) < 0.4).astype(np.uint8) * rng.integers(1, 3, (12, 12, 12),
                                                                           dtype=np.uint8)
    vol[:6, :6, :6] = 0  # one whole chunk of background
    arr = da.from_array(vol, chunks=6)
    skip = np.zeros(arr.numblocks, bool)
    skip[0, 0, 0] = True
    read = []

    def watch(block, block_info=None):
        read.append(tuple(block_info[0]["chunk-location"]))
        return block

    poisoned = arr.map_blocks(watch, dtype=arr.dtype)
    luts, n, _ = dask.compute(label_graph(poisoned, 26, skip=skip), scheduler="sync")[0]
    want, want_n = cc3d.connected_components(vol, connectivity=26, return_N=True)
    assert n == want_n
    assert (0, 0, 0) not in read
    got = np.zeros_like(want)
    for i, idx in enumerate(np.ndindex(*arr.numblocks)):
        sl = tuple(slice(6 * a, 6 * a + 6) for a in idx)
        if not skip[idx]:
            got[sl] = relabel_block(vol[sl], luts, i)
    np.testing.assert_array_equal(got, want)
