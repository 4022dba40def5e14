"""The block computation of ``io.align.rescale`` (issue #18, session 10) equals the formula it
replaced bit for bit: nearest-neighbour gathers by slices/``np.take`` instead of one ``np.ix_``,
and the linear blend as one Numba kernel instead of 2ᴺ whole-block float64 products.

``_old_rescale_block`` below is that formula as it stood (``main`` before session 10; it was
itself checked against skimage's one-shot ``rescale``, as ``tests/test_align.py`` and
``tests/test_rescale_graph.py`` still do). Every block a random ``rescale`` computes (random
shapes, ratios that shrink, grow, are not integers or differ per axis, source dtypes and
chunkings) is computed by both and compared; so are blocks with adversarial arguments
(any tap pattern, any weights, NaN and infinities). Its 2ᴺ-corner blend is
``align._linear_numpy``, which align still runs for ranks other than 2 and 3: there the blend
is compared with itself, and skimage is the check."""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.io import align
from tests.rescale_reference import skimage_rescale


def _old_rescale_block(region: np.ndarray, pad, local, frac, sigma, instance: bool,
                       threshold: float, floor: Any) -> np.ndarray:
    """``io.align._rescale_block`` before session 10 (the reference; ``inf·0`` warnings of
    its whole-block products silenced)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return _old_formula(region, pad, local, frac, sigma, instance, threshold, floor)


def _old_formula(region, pad, local, frac, sigma, instance, threshold, floor, values=False):
    src = np.pad(np.asarray(region), pad) if any(p != (0, 0) for p in pad) else \
        np.asarray(region)
    if instance:
        return src[np.ix_(*local)]
    work = np.float32 if src.dtype.kind == "b" or src.dtype.itemsize <= 4 and \
        src.dtype.kind == "f" else np.float64
    img = src.astype(work)
    if any(sd > 1e-15 for sd in sigma):
        from scipy.ndimage import gaussian_filter

        img = gaussian_filter(img, sigma, mode="constant", cval=0.0, truncate=4.0)
    # the 2ᴺ-corner blend is the one align keeps for ranks other than 2 and 3 (itself checked
    # against skimage by tests/test_align.py and tests/test_rescale_graph.py)
    clip = floor is not None and floor > 0
    out = align._linear_numpy(img, local, frac, work, clip, floor if clip else 0.0)
    return out if values else out > threshold


_DTYPES = ["bool", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]
_SCALES = [0.25, 1 / 3, 0.45, 0.5, 0.6, 2 / 3, 1.0, 1.5, 2.0, 2.5, 3.0]


def _source(rng: np.random.Generator, shape, dtype: str, instance: bool,
            full: bool) -> np.ndarray:
    """A label of ``dtype``: ids for instance labels; masks, counts or probabilities (with
    NaN and infinities now and then) for semantic ones; all foreground when ``full`` (then
    skimage's clip to the source minimum bites)."""
    if dtype == "bool":
        return np.ones(shape, bool) if full else rng.random(shape) > rng.random()
    if dtype.startswith(("uint", "int")):
        top = np.iinfo(dtype).max if instance else int(rng.choice([1, 3, 255]))
        img = rng.integers(1 if full else 0, top, shape, dtype=dtype, endpoint=True)
        if instance and dtype == "uint64":
            img[..., 0] = 2**63 + 12345  # an id that float64 would round (carried exactly)
        return img
    img = (rng.random(shape) * 0.9 + (0.1 if full else 0.0)).astype(dtype)
    if not full and rng.random() < 0.3:
        flat = img.reshape(-1)
        flat[rng.integers(0, flat.size, 2)] = rng.choice([np.nan, np.inf, -np.inf], 2)
    return img


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(2, 13), min_size=1, max_size=3).flatmap(
           lambda s: st.just(s) | st.just([2, 3, *s[:2]])), st.data(),
       st.sampled_from(_DTYPES), st.booleans(), st.booleans(), st.integers(2, 7),
       st.sampled_from([0.5, 0.3, np.float64(0.3), 0]), st.integers(0, 2**31 - 1))
def test_every_block_of_a_rescale_equals_the_old_formula(shape, data, dtype, instance, full,
                                                         block, threshold, seed):
    """Each block ``rescale`` computes, over any chunking, ratio, dtype and threshold (a NumPy
    float64 threshold makes numpy compare in float64, a Python one in float32), is the old
    formula's block, dtype and all — 1-D to 4-D (ranks other than 2 and 3 keep the
    whole-block formula and SciPy's Gaussian)."""
    rng = np.random.default_rng(seed)
    scale = tuple(data.draw(st.sampled_from(_SCALES)) for _ in shape)
    img = _source(rng, tuple(shape), dtype, instance, full)
    chunks = tuple(int(rng.integers(1, n + 1)) for n in shape)
    new = align._rescale_block
    blocks = []

    def both(*args):
        got, want = new(*args), _old_rescale_block(*args)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        blocks.append(got.shape)
        return got

    align._rescale_block = both  # not monkeypatch: a function-scoped fixture under hypothesis
    try:
        out = align.rescale(da.from_array(img, chunks=chunks), scale, instance=instance,
                            threshold=threshold, block=block, footprint=2 * block).compute()
    finally:
        align._rescale_block = new
    assert blocks and sum(int(np.prod(b)) for b in blocks) == out.size


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 3), st.data(), st.sampled_from(_DTYPES + ["int16", "float16"]),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_block_with_any_taps_and_weights_equals_the_old_formula(ndim, data, dtype, gauss,
                                                                seed):
    """Taps in any pattern (repeats, gaps, descending: what no ratio makes, but the gather
    must not care), weights anywhere in [0, 1), pads, a Gaussian or not, a clip floor or not."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 9, ndim))
    instance = data.draw(st.booleans())
    img = _source(rng, shape, dtype, instance, full=False)
    pad = tuple((int(rng.integers(0, 2)), int(rng.integers(0, 3))) for _ in shape)
    padded = tuple(n + a + b for n, (a, b) in zip(shape, pad, strict=True))
    reach = 0 if instance else 1  # linear taps read the next voxel too
    local = []
    for n in padded:
        k = int(rng.integers(1, 7))
        pattern = data.draw(st.sampled_from(["random", "step", "repeat"]))
        if pattern == "step":
            step = int(rng.integers(1, 4))
            start = int(rng.integers(0, max(1, n - reach)))
            idx = np.arange(start, n - reach, step)[:k]
            idx = idx if idx.size else np.array([0])
        elif pattern == "repeat":
            idx = np.repeat(np.arange(max(1, n - reach)), 2)[:k]
        else:
            idx = rng.integers(0, max(1, n - reach), k)
        local.append(idx.astype(np.int64))
    if not instance and any(n < 2 for n in padded):
        return  # a linear tap needs two voxels along each axis (rescale's pads give them)
    frac = tuple(np.where(rng.random(len(i)) < 0.2, 0.0, rng.random(len(i))) for i in local)
    sigma = tuple(float(s) for s in rng.choice([0.0, 0.5, 1.2], ndim)) if gauss else \
        (0.0,) * ndim
    floor = None if instance else img.reshape(-1)[0]
    thresholds = [data.draw(st.sampled_from([0.5, 0.25, np.float64(0.7)]))]
    if not instance:
        # thresholds at the old formula's own values: a sum rounded otherwise (another order
        # of products or corners, no rounding to the working dtype) lands off them and flips
        with np.errstate(invalid="ignore", over="ignore"):
            blend = _old_formula(img, pad, tuple(local), frac, sigma, False, 0.5, floor,
                                 values=True)
        finite = blend[np.isfinite(blend)]
        thresholds += [float(v) for v in np.unique(finite)[:24]]
    for threshold in thresholds:
        args = (img, pad, tuple(local), frac, sigma, instance, threshold, floor)
        got, want = align._rescale_block(*args), _old_rescale_block(*args)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    if instance and got.size:
        assert not np.may_share_memory(got, img)  # a block is never a view of its source


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64", "uint16"])
def test_blend_rounds_as_the_old_formula_at_every_threshold(ndim, dtype):
    """Dense values (where products rounded in another order differ in about half the voxels
    in float64): thresholded at each of the old formula's own values, every voxel agrees."""
    rng = np.random.default_rng(ndim * 10 + len(dtype))
    img = (rng.random((7,) * ndim) * (1000 if dtype == "uint16" else 1)).astype(dtype)
    local = tuple(rng.integers(0, 6, 7) for _ in range(ndim))
    frac = tuple(rng.random(7) for _ in range(ndim))
    args = (img, ((0, 0),) * ndim, local, frac, (0.0,) * ndim, False)
    blend = _old_formula(*args, 0.5, None, values=True)
    for threshold in np.unique(blend):
        t = float(threshold)
        np.testing.assert_array_equal(align._rescale_block(*args, t, None),
                                      _old_rescale_block(*args, t, None))


def test_one_axis_at_a_time_is_not_the_same_arithmetic():
    """Why the blend is not separable: scipy's zoom sums the 8 corner products
    ``((v·w₀)·w₁)·w₂`` of a voxel in C order; blending axis 0, then 1, then 2 rounds other sums.
    A cell of float32 values (found by a random search at the zoom 5/3 of a 0.6 scale), and of
    a 0/1 mask at the same zoom (float64 work, as a uint8 label): the float32 results differ,
    so a threshold between them flips the voxel."""
    def one_shot(v, f):
        w = [(1.0 - x, x) for x in f]
        t = 0.0
        for c in itertools.product((0, 1), repeat=3):
            t += ((v[c] * w[0][c[0]]) * w[1][c[1]]) * w[2][c[2]]
        return t

    def separable(v, f):
        w = [(1.0 - x, x) for x in f]
        a = v[0] * w[0][0] + v[1] * w[0][1]
        b = a[0] * w[1][0] + a[1] * w[1][1]
        return b[0] * w[2][0] + b[1] * w[2][1]

    def frac(o: int) -> float:  # weight of output voxel o's upper tap at the zoom 5/3
        c = (o + 0.5) * (5 / 3) - 0.5
        return c - np.floor(c)

    v = np.array([0.3945617973804474, 0.17657385766506195, 0.025895673781633377,
                  0.6941441893577576, 0.3648222088813782, 0.4154861569404602,
                  0.21205365657806396, 0.5616531372070312], np.float32)
    v = v.astype(np.float64).reshape(2, 2, 2)
    f = (frac(5), 0.0, frac(12))  # 0.6666666666666679, 0, 0.3333333333333357
    a, b = np.float32(one_shot(v, f)), np.float32(separable(v, f))
    assert a != b
    block = align._rescale_block(v.astype(np.float32), ((0, 0),) * 3,
                                 tuple(np.array([0]) for _ in range(3)),
                                 tuple(np.array([x]) for x in f), (0.0,) * 3, False,
                                 float(min(a, b)), None)
    assert bool(block[0, 0, 0]) == (a > min(a, b))  # the kernel keeps the one-shot sum
    mask = np.array([1, 1, 0, 1, 1, 0, 0, 0], np.float64).reshape(2, 2, 2)
    g = (frac(5), frac(20), frac(5))  # 0.6666666666666679, 0.6666666666666714, ...
    assert one_shot(mask, g) != separable(mask, g)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=3), st.data(),
       st.integers(0, 2**31 - 1))
def test_gather_is_the_ix_gather(shape, data, seed):
    """``_gather`` (slices for regular steps, ``np.take`` otherwise) is ``src[np.ix_(...)]``."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, 2**32, tuple(shape), dtype=np.uint64)
    local = []
    for n in shape:
        kind = data.draw(st.sampled_from(["all", "step", "random", "one"]))
        if kind == "all":
            idx = np.arange(n)
        elif kind == "step":
            idx = np.arange(int(rng.integers(0, n)), n, int(rng.integers(1, 4)))
        elif kind == "one":
            idx = np.array([int(rng.integers(0, n))])
        else:
            idx = rng.integers(0, n, int(rng.integers(1, 6)))
        local.append(idx)
    got = align._gather(src, local)
    want = src[np.ix_(*local)]
    assert got.flags.c_contiguous and not np.may_share_memory(got, src)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=60, deadline=None)
@given(st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(1, 12)),
       st.tuples(*[st.sampled_from([0.0, 1e-16, 0.25, 0.5, 1 / 3, 1.0, 1.7, 3.3])] * 3),
       st.sampled_from(["bool", "uint8", "float32", "float64"]), st.integers(0, 2**31 - 1))
def test_gaussian_kernel_is_scipys_gaussian_filter(shape, sigma, dtype, seed):
    """The Numba passes give SciPy's ``gaussian_filter`` of the source converted to the working
    dtype, bit for bit (compared as integers: NaN, ±0 and infinities included), for any
    radius (σ up to 3.3: 14 taps a side, longer than some lines), per-axis σ and dtype."""
    from scipy.ndimage import gaussian_filter

    from gpueval.kernels.rescale_nogil import gaussian_filter_3d

    rng = np.random.default_rng(seed)
    img = _source(rng, shape, dtype, instance=False, full=False)
    if dtype.startswith("float"):
        img.reshape(-1)[rng.integers(0, img.size, 2)] = rng.choice([-0.0, -1.5, 7.0], 2)
    for work in (np.float32, np.float64):
        with np.errstate(invalid="ignore", over="ignore"):
            want = gaussian_filter(img.astype(work), sigma, mode="constant", cval=0.0,
                                   truncate=4.0)
            got = gaussian_filter_3d(img, sigma, work)
        assert got.dtype == want.dtype and got.shape == want.shape
        bits = np.uint32 if work is np.float32 else np.uint64
        np.testing.assert_array_equal(got.view(bits), want.view(bits))


class _ChunkReads:
    """A storage array-like in 16³ chunks counting the chunks and voxels read from it (as a
    zarr reader decodes every chunk a read overlaps)."""

    def __init__(self, data: np.ndarray):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads = self.voxels = 0

    def __getitem__(self, key):
        out = self.data[key]
        if out.size:  # not dask's empty probe of the dtype
            spans = [range(k.indices(n)[0] // 16, -(-k.indices(n)[1] // 16))
                     for k, n in zip(key, self.shape, strict=True)]
            self.reads += int(np.prod([len(r) for r in spans]))
            self.voxels += out.size
        return out


def test_block_regions_end_at_their_taps():
    """A 64³ instance label in 16³ storage chunks shrunk ×2 in 16³ output blocks: a block's
    taps are 2o + 1 (o = 0…15 of a block: source voxels 1…31 of its 32³ cell), so it reads the
    2³ chunks under its cell — the region carried a voxel of slop at each end before, which
    crossed into a third chunk per axis (27 reads a block instead of 8). A semantic ×2 shrink
    reads its taps, their next voxels and its Gaussian's margin of 2."""
    img = np.random.default_rng(5).integers(0, 9, (64, 64, 64)).astype(np.uint32)
    src = _ChunkReads(img)  # read from the storage itself (_storage_of), a region per block
    out = align.rescale(da.from_array(src, chunks=16, asarray=False, lock=False), (0.5,) * 3,
                        instance=True, block=16, footprint=32)
    assert out.numblocks == (2, 2, 2)
    np.testing.assert_array_equal(out.compute(), img[1::2, 1::2, 1::2])
    assert src.reads == 8 * 2**3
    sizes = []
    original = align._rescale_block
    align._rescale_block = lambda region, *a: sizes.append(region.shape) or original(region, *a)
    try:
        align.rescale(da.from_array(img > 4, chunks=16), (0.5,) * 3, instance=False, block=16,
                      footprint=32).compute()
    finally:
        align._rescale_block = original
    # taps 2o (fraction 0.5: 2o and 2o + 1 read), σ = 0.5 → radius 2: a block of o = 16b…16b + 15
    # reads [32b − 2, 32b + 32 + 2) cut to [0, 64): 34 voxels per axis (35 before, padded)
    assert sizes == [(34, 34, 34)] * 8


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=3), st.data(),
       st.sampled_from(["bool", "uint8", "float32", "float64", "int16"]),
       st.integers(0, 2**31 - 1))
def test_source_floor_decides_as_nanmin(shape, data, dtype, seed):
    """The floor read piece by piece, stopping at the first piece with a voxel ≤ 0, clips
    exactly when ``np.nanmin`` of the whole source is > 0, and is then that minimum (sources
    with a few low voxels anywhere, NaN, all NaN, any chunking)."""
    from gpueval.engine import Opaque

    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    if dtype == "bool":
        img = rng.random(shape) > data.draw(st.sampled_from([-1.0, 0.01, 0.5]))
    elif dtype.startswith("float"):
        img = (rng.random(shape) + data.draw(st.sampled_from([-0.5, 0.0, 0.2]))).astype(dtype)
        for value in data.draw(st.lists(st.sampled_from([np.nan, -0.0, 0.0, 1e-30]),
                                        max_size=3)):
            img.reshape(-1)[int(rng.integers(0, img.size))] = value
        if data.draw(st.booleans()) and rng.random() < 0.2:
            img[...] = np.nan
    else:
        img = rng.integers(1, 50, shape).astype(dtype)
        if data.draw(st.booleans()):
            img.reshape(-1)[int(rng.integers(0, img.size))] = -3 if dtype == "int16" else 0
    chunks = tuple(int(rng.integers(1, n + 1)) for n in shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN source
        want = np.nanmin(img)
    # read through dask (NumPy chunks) or from a storage array-like (as a zarr reader)
    x = da.from_array(_ChunkReads(img) if data.draw(st.booleans()) else img, chunks=chunks,
                      asarray=False)
    corner = data.draw(st.integers(1, 8))  # a corner smaller than these sources
    probe = align.FLOOR_PROBE
    try:
        align.FLOOR_PROBE = corner
        got = align._source_floor(Opaque(x), align._Storage(align._storage_of(x)))
    finally:
        align.FLOOR_PROBE = probe
    assert bool(got > 0) == bool(want > 0)
    if want > 0:
        assert got == want and np.asarray(got).dtype == img.dtype


def test_source_floor_skips_an_all_nan_piece():
    """A first corner that is all NaN says nothing (nanmin ignores it): the rest decides."""
    from gpueval.engine import Opaque

    img = np.full((8, 8), 0.25, np.float32)
    img[:4, :4] = np.nan
    img[7, 7] = 0.125
    probe = align.FLOOR_PROBE
    try:
        align.FLOOR_PROBE = 4
        x = da.from_array(img, chunks=4)
        got = align._source_floor(Opaque(x), align._Storage(align._storage_of(x)))
    finally:
        align.FLOOR_PROBE = probe
    assert got == np.float32(0.125)


def test_blocks_read_their_regions_from_the_storage_not_whole_dask_chunks():
    """A storage array (as ``open_volume`` gives: one dask chunk of the whole 48³ label here)
    is asked for each block's region, not for the dask chunks the region touches: the voxels
    read are the regions' (plus the floor's first corner), not 27 times the label."""
    img = np.random.default_rng(6).random((48, 48, 48)) > 0.5
    for inline in (True, False):
        src = _ChunkReads(img)
        x = da.from_array(src, chunks=-1, asarray=False, lock=False, inline_array=inline)
        assert align._storage_of(x) is src
        sizes: list[int] = []
        original = align._rescale_block

        def recording(region, *args, sizes=sizes, original=original):
            sizes.append(region.size)
            return original(region, *args)

        align._rescale_block = recording
        try:
            got = align.rescale(x, (0.5,) * 3, instance=False, block=8, footprint=16).compute()
        finally:
            align._rescale_block = original
        assert len(sizes) == 27
        assert src.voxels == sum(sizes) + min(48, align.FLOOR_PROBE) ** 3
        np.testing.assert_array_equal(got, skimage_rescale(img, (0.5,) * 3, False))
