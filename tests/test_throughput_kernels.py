"""Kernels added for throughput (issue 18, session 6): the voxel-list Hausdorff and the
bounded carry store. Both must change no score: the first gives ``edt``'s float32 value for
integer voxel sizes and SciPy's float64 value otherwise; the second returns exactly what was
put, and only bounds how much is kept."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from gpueval.kernels.distance import hausdorff, hausdorff_sparse
from gpueval.kernels.throughput_carry import CarryStore


def _scipy_hausdorff(a, b, vs) -> float:
    """The official computation: SciPy's float64 EDT of the whole array, both directions."""
    d_ab = ndimage.distance_transform_edt(~b, sampling=vs)[a].max()
    d_ba = ndimage.distance_transform_edt(~a, sampling=vs)[b].max()
    return float(max(d_ab, d_ba))


masks = st.integers(1, 3).flatmap(lambda nd: st.tuples(
    st.lists(st.integers(1, 9), min_size=nd, max_size=nd).map(tuple),
    st.integers(0, 2**32 - 1)))


def _pair(shape, seed, density):
    rng = np.random.default_rng(seed)
    return rng.random(shape) < density, rng.random(shape) < density


@settings(max_examples=120, deadline=None)
@given(masks, st.sampled_from([0.05, 0.3, 0.8]),
       st.lists(st.integers(1, 16), min_size=3, max_size=3))
def test_sparse_equals_edt_for_integer_voxel_sizes(geometry, density, vs3):
    shape, seed = geometry
    a, b = _pair(shape, seed, density)
    vs = tuple(float(v) for v in vs3[:len(shape)])
    got, ref = hausdorff_sparse(a, b, vs), hausdorff(a, b, vs)
    if np.isinf(ref) or ref == 0.0:
        assert got == ref
    else:  # CellMap keeps float32 distances: the two kernels agree to the bit there
        assert np.float32(got) == np.float32(ref), (got, ref)


@settings(max_examples=80, deadline=None)
@given(masks, st.sampled_from([0.05, 0.3]),
       st.lists(st.floats(0.3, 20.0), min_size=3, max_size=3))
def test_sparse_is_scipys_float64_value(geometry, density, vs3):
    shape, seed = geometry
    a, b = _pair(shape, seed, density)
    if not (a.any() and b.any()):
        return
    vs = tuple(vs3[:len(shape)])
    assert abs(hausdorff_sparse(a, b, vs) - _scipy_hausdorff(a, b, vs)) <= \
        1e-12 * max(1.0, _scipy_hausdorff(a, b, vs))


def test_sparse_far_parts_in_a_large_box():
    # the ID-collision case: a small object and a prediction of two parts 150 voxels apart
    a = np.zeros((40, 200, 30), bool)
    b = np.zeros_like(a)
    a[10:14, 5:9, 10:14] = True
    b[11:15, 6:10, 10:14] = True
    b[30:33, 160:163, 20:23] = True
    vs = (8.0, 8.0, 8.0)
    got = hausdorff_sparse(a, b, vs)
    assert got == _scipy_hausdorff(a, b, vs)  # float64, as SciPy
    assert np.float32(got) == np.float32(hausdorff(a, b, vs))  # edt is float32
    assert hausdorff_sparse(a, np.zeros_like(a), vs) == float("inf")
    assert hausdorff_sparse(np.zeros_like(a), np.zeros_like(a), vs) == 0.0


def test_carry_store_round_trip_and_budget():
    s = CarryStore(budget=10_000)
    x = np.arange(2000, dtype=np.uint32).reshape(10, 200) * 7919  # barely compressible
    y = np.zeros((0, 3), np.uint16)
    assert s.put("a", [x, y])
    got = s.get("a")
    assert got is not None and got[0].dtype == x.dtype and got[1].shape == (0, 3)
    np.testing.assert_array_equal(got[0], x)
    got[0][0, 0] = 1  # a private, writeable copy
    np.testing.assert_array_equal(s.get("a")[0], x)
    used = s.nbytes
    assert 0 < used <= 10_000
    # a second entry that does not fit with the first evicts it (oldest first)
    assert s.put("b", [x + 1])
    assert s.get("a") is None and s.get("b") is not None and s.nbytes <= 10_000
    # an entry larger than the whole budget is refused, nothing else lost
    noise = np.random.default_rng(0).integers(0, 2**32, 20_000, dtype=np.uint32)
    assert not s.put("c", [noise])
    assert s.get("b", remove=True) is not None
    assert s.get("b") is None and len(s) == 0 and s.nbytes == 0
    s.put("d", [x])
    s.discard("d")
    assert len(s) == 0 and s.nbytes == 0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(6, 7, 5), (1, 9, 4), (8, 8)]),
       st.integers(1, 12))
def test_region_stats_of_local_labels_mapped_equal_those_of_the_relabelled_chunk(
        seed, shape, n_global):
    from gpueval.kernels.regions import chunk_region_stats

    rng = np.random.default_rng(seed)
    n_local = 15
    local = rng.integers(0, n_local + 1, shape).astype(np.uint16)
    # local ids -> global ids, several locals sharing one global (joined through another
    # chunk), some dropped to 0, as a label_graph lookup table can never do but may
    lut = np.concatenate([[0], rng.integers(0, n_global + 1, n_local)]).astype(np.uint32)
    origin, volume = (3,) * len(shape), tuple(s + 7 for s in shape)
    want = chunk_region_stats(lut[local], origin, volume)
    got = chunk_region_stats(local, origin, volume, max_id=n_local).relabel(lut)
    for name in ("ids", "counts", "bbox_min", "bbox_max", "first_index"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), name)
    assert got.ids.dtype == want.ids.dtype


def test_label_graph_carry_gives_the_relabelled_chunks():
    import dask.array as da

    from gpueval.engine import compute
    from gpueval.kernels import components as cc
    from gpueval.kernels.throughput_carry import store

    rng = np.random.default_rng(5)
    vol = (rng.random((20, 18, 22)) < 0.3).astype(np.uint32) * rng.integers(1, 4, (20, 18, 22))
    arr = da.from_array(vol, chunks=(7, 9, 8))
    key = ("test-carry", "label-graph")
    luts, n, _ = compute(cc.label_graph(arr, 26, carry=key))[0]
    whole, n_whole = cc.connected_components(vol, 26)
    assert n == n_whole
    blocks = arr.to_delayed().ravel()
    for index, cell in enumerate(np.ndindex(*arr.numblocks)):
        local = cc.carried_local(key, index, remove=True)
        assert local is not None and local.dtype == np.uint8  # narrowest dtype
        want = cc.relabel_block(blocks[index].compute(), luts, index)
        np.testing.assert_array_equal(np.asarray(luts[index])[local], want)
        sl = tuple(slice(sum(c[:i]), sum(c[:i + 1])) for c, i in zip(arr.chunks, cell,
                                                                      strict=True))
        np.testing.assert_array_equal(want, whole[sl])  # cc3d's numbering of the volume
    assert not any(k[0] == key for k in store._items)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(5, 6, 7), (1, 3, 40), (9, 11)]),
       st.sampled_from([0.02, 0.2, 0.6]),
       st.sampled_from([np.uint8, np.int16, np.uint32, np.int64, np.uint64, np.float32, bool]))
def test_region_stats_sparse_and_dense_paths_match_brute_force(seed, shape, fill, dtype):
    # under 25 % foreground the chunk is scanned through its foreground voxels only
    from gpueval.kernels.regions import chunk_region_stats

    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype).kind
    values = {"b": [True], "u": [1, 3, 200], "i": [1, 3, -2], "f": [1, 3, -2, 0.5]}[kind]
    if dtype is np.uint64:
        values.append(2**63 + 5)  # beyond int64
    elif dtype is np.int64:
        values.append(2**40 + 1)
    values = np.array(values, object)
    pick = rng.integers(0, len(values), shape)
    vol = np.zeros(shape, dtype)
    on = rng.random(shape) < fill
    vol[on] = np.array([dtype(v) if dtype is not bool else True
                        for v in values[pick[on]]], dtype)
    origin, volume = (2,) * len(shape), tuple(s + 4 for s in shape)
    got = chunk_region_stats(vol, origin, volume)
    ids = np.unique(vol[vol != 0])
    np.testing.assert_array_equal(got.ids, ids)
    for j, v in enumerate(ids):
        at = np.argwhere(vol == v)
        assert got.counts[j] == len(at)
        np.testing.assert_array_equal(got.bbox_min[j], at.min(axis=0) + 2)
        np.testing.assert_array_equal(got.bbox_max[j], at.max(axis=0) + 2)
        assert got.first_index[j] == np.ravel_multi_index(tuple(at[0] + 2), volume)


def test_carry_store_keeps_entries_raw_under_half_the_budget():
    s = CarryStore(budget=100_000)
    x = np.arange(2000, dtype=np.uint32).reshape(10, 200) * 7919  # 8,000 raw bytes
    assert s.put("raw", [x])
    assert s.nbytes == x.nbytes  # held as is: no zstd while under half the budget
    copy = s.get("raw")[0]
    copy[0, 0] = 1  # a private copy while the entry stays
    np.testing.assert_array_equal(s.get("raw")[0], x)
    assert s.get("raw", remove=True)[0] is x  # the last use takes the array itself
    big = np.zeros(60_000, np.uint8)  # over half the budget: compressed (zeros: tiny)
    assert s.put("big", [big]) and s.nbytes < 1_000
    np.testing.assert_array_equal(s.get("big", remove=True)[0], big)
    view = x[:, ::2]  # not owning a contiguous buffer: stored as a private copy
    assert s.put("view", [view])
    got = s.get("view", remove=True)[0]
    assert got is not view and got.flags.c_contiguous
    np.testing.assert_array_equal(got, view)
