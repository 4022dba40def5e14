"""``chunk_region_stats`` on ids of any kind (issue #18, session 9): the hashed run kernel
(``regions._stats_hashed_kernel``) equals a vectorised NumPy reference for many distinct ids
(the slot table grows, hash buckets collide), wide rows, rows of background, every dtype,
and the ``max_id`` path (``_stats_kernel``, rows of background skipped) equals it too."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.kernels.regions import chunk_region_stats


def _reference(vol: np.ndarray, origin, volume):
    """Per non-zero value (equality of values; ``-0.0 == 0.0``), sorted: counts, inclusive
    boxes and first voxels (global C-order index), with NumPy alone."""
    flat = vol.reshape(-1)
    ids, first, inverse, counts = np.unique(flat, return_index=True, return_inverse=True,
                                            return_counts=True)
    coords = np.stack(np.unravel_index(np.arange(flat.size), vol.shape), axis=1)
    lo = np.full((len(ids), vol.ndim), np.iinfo(np.int64).max)
    hi = np.full((len(ids), vol.ndim), -1)
    np.minimum.at(lo, inverse.reshape(-1), coords)
    np.maximum.at(hi, inverse.reshape(-1), coords)
    keep = ids != 0
    first_c = np.stack(np.unravel_index(first[keep], vol.shape), axis=1) + origin
    return (ids[keep], counts[keep], lo[keep] + origin, hi[keep] + origin,
            np.ravel_multi_index(tuple(first_c.T), volume))


@st.composite
def chunks(draw):
    """A chunk with up to thousands of distinct ids (beyond the kernel's first 256 slots),
    rows of background, runs of one id, in any of several dtypes."""
    dtype = np.dtype(draw(st.sampled_from(
        [np.uint8, np.int16, np.uint32, ">u4", np.int64, np.uint64, np.float32, np.float64,
         np.bool_])))
    ndim = draw(st.sampled_from([1, 2, 3]))
    shape = tuple(draw(st.integers(1, {1: 700, 2: 60, 3: 16}[ndim])) for _ in range(ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_ids = draw(st.sampled_from([1, 3, 300, 3000]))
    if dtype.kind == "b":
        pool = np.array([True])
    elif dtype.kind == "f":
        pool = rng.standard_normal(n_ids).astype(dtype)  # negative and fractional ids
    else:
        info = np.iinfo(dtype)
        # ids spread over the whole range (and, for 64-bit, multiples of 2³² that differ
        # only in high bits): distinct keys whose hash buckets collide
        spread = rng.integers(max(info.min, -2**62), min(info.max, 2**62), n_ids,
                              dtype=np.int64 if info.min < 0 else np.uint64)
        if dtype.itemsize == 8 and draw(st.booleans()):
            spread = (np.arange(1, n_ids + 1, dtype=np.uint64) << np.uint64(32)).astype(dtype)
        pool = spread.astype(dtype)
    density = draw(st.sampled_from([0.0, 0.1, 0.6, 1.0]))
    run = draw(st.sampled_from([1, 5]))  # runs of one id along the last axis
    pick = np.repeat(rng.integers(0, len(pool), -(-shape[-1] // run) * int(
        np.prod(shape[:-1]))), run).reshape(*shape[:-1], -1)[..., :shape[-1]]
    vol = np.where(rng.random(shape) < density, pool[pick], np.zeros((), dtype)).astype(dtype)
    if ndim >= 2 and draw(st.booleans()):
        vol[..., : shape[-2] // 2, :] = 0  # whole rows of background
    if dtype.kind == "f" and draw(st.booleans()):
        vol[vol.size // 2 if ndim == 1 else 0] = -0.0  # background too
    return vol


@settings(max_examples=150, deadline=None)
@given(chunks())
def test_hashed_stats_equal_numpy_reference(vol):
    origin = tuple(range(3, 3 + vol.ndim))
    volume = tuple(s + 2 * o for s, o in zip(vol.shape, origin, strict=True))
    got = chunk_region_stats(vol, origin, volume)
    ids, counts, lo, hi, first = _reference(vol, origin, volume)
    assert got.ids.dtype == vol.dtype
    np.testing.assert_array_equal(got.ids, ids)
    np.testing.assert_array_equal(got.counts, counts)
    np.testing.assert_array_equal(got.bbox_min, lo)
    np.testing.assert_array_equal(got.bbox_max, hi)
    np.testing.assert_array_equal(got.first_index, first)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([np.uint8, np.uint16]),
       st.sampled_from([(1, 1, 300), (7, 9, 11), (3, 40)]))
def test_max_id_path_equals_the_hashed_path(seed, dtype, shape):
    """Local component labels ``0..max_id`` take the slot-per-id kernel; it skips rows of
    background and must give what the hashed kernel gives for the same chunk."""
    rng = np.random.default_rng(seed)
    vol = (rng.integers(0, 60, shape) * (rng.random(shape) < 0.3)).astype(dtype)
    vol[..., : shape[-2] // 2 if len(shape) > 1 else 0, :] = 0
    hashed = chunk_region_stats(vol, None, None)
    slots = chunk_region_stats(vol, None, None, max_id=int(vol.max()))
    for name in ("ids", "counts", "bbox_min", "bbox_max", "first_index"):
        np.testing.assert_array_equal(getattr(slots, name), getattr(hashed, name))
