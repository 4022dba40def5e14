"""Hand-checked tests of gpueval.io.align (CellMap §4 alignment)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from skimage.transform import rescale as sk_rescale

from gpueval.errors import Rejected
from gpueval.io.align import (
    Grid,
    align_to_grid,
    choose_level,
    level_score,
    paste,
    translation_offset,
)


@pytest.mark.parametrize("src,want", [(412.0, 3), (392.0, -2), (401.0, 0), (398.0, -1),
                                      (400.0, 0), (3.0, -100)])
def test_translation_offset_snaps_then_truncates(src, want):
    assert translation_offset([src], [400.0], [4.0]) == (want,)


def test_paste_pads_and_crops():
    x = da.from_array(np.arange(1, 6), chunks=2)
    assert paste(x, (2,), (6,)).compute().tolist() == [0, 0, 1, 2, 3, 4]
    assert paste(x, (-3,), (4,)).compute().tolist() == [4, 5, 0, 0]
    assert paste(x, (10,), (3,)).compute().tolist() == [0, 0, 0]
    assert paste(x, (-10,), (3,)).compute().tolist() == [0, 0, 0]


def test_choose_level_prefers_closest_not_coarser():
    levels = [("s0", [2, 2, 2]), ("s1", [4, 4, 4]), ("s2", [8, 8, 8]), ("x", None)]
    assert choose_level(levels, [4, 4, 4]) == "s1"
    assert choose_level(levels, [5, 5, 5]) == "s1"   # s2 is coarser: +1e6
    assert choose_level(levels, [1, 1, 1]) == "s0"   # all coarser: closest wins
    assert level_score(None, [4, 4, 4]) == 1e18
    assert choose_level([("x", None), ("y", None)], [1, 1, 1]) == "x"


def test_instance_upsample_is_nearest_and_keeps_dtype():
    src = np.arange(8, dtype=np.uint32).reshape(2, 2, 2) + 1
    out = align_to_grid(src, (8, 8, 8), (0, 0, 0), Grid((4, 4, 4), (0, 0, 0), (4, 4, 4)),
                        instance=True).compute()
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out, src.repeat(2, 0).repeat(2, 1).repeat(2, 2))


def test_semantic_downsample_is_skimage_then_half():
    rng = np.random.default_rng(0)
    src = rng.random((16, 16, 16)) > 0.6
    out = align_to_grid(src, (2, 2, 2), None, Grid((4, 4, 4), (0, 0, 0), (8, 8, 8)),
                        instance=False).compute()
    want = sk_rescale(src.astype(np.float32), 0.5, order=1, mode="constant",
                      preserve_range=True) > 0.5
    assert out.dtype == bool
    np.testing.assert_array_equal(out, want)


def test_no_resampling_keeps_raw_values():
    src = np.array([[[-1.0, 0.2], [0.7, 0.0]]], np.float32)
    out = align_to_grid(src, (4, 4, 4), (0, 0, 0), Grid((4, 4, 4), (0, 0, 0), (1, 2, 2)),
                        instance=False).compute()
    np.testing.assert_array_equal(out, src)  # no > 0.5 threshold: the metric uses > 0


def test_no_voxel_size_centre_pad_crop():
    src = np.ones((2, 5, 3), np.uint8)
    out = align_to_grid(src, None, None, Grid((1, 1, 1), (0, 0, 0), (4, 3, 3)),
                        instance=True).compute()
    assert out.shape == (4, 3, 3)
    assert out[0].sum() == 0 and out[1].sum() == 9 and out[3].sum() == 0


def test_size_ratio_guard():
    with pytest.raises(Rejected, match="size-ratio"):
        align_to_grid(da.zeros((64, 64, 65), chunks=32), (1, 1, 1), None,
                      Grid((16, 16, 16), (0, 0, 0), (4, 4, 4)), instance=True, max_ratio=4096)


def test_translation_applied_after_resampling():
    src = np.zeros((8, 8, 8), np.uint8)
    src[0, 0, 0] = 5
    # source at 2 nm with origin 392 → 4 nm grid at 400: offset -2 voxels, all cropped away
    out = align_to_grid(src, (2, 2, 2), (392, 392, 392), Grid((4, 4, 4), (400, 400, 400),
                                                              (4, 4, 4)), instance=True)
    assert out.compute().sum() == 0
    src2 = np.zeros((8, 8, 8), np.uint8)
    src2[4:6, 4:6, 4:6] = 5  # → 4 nm voxel (2,2,2), shifted by -2 → (0,0,0)
    out2 = align_to_grid(src2, (2, 2, 2), (392, 392, 392),
                         Grid((4, 4, 4), (400, 400, 400), (4, 4, 4)), instance=True).compute()
    assert out2[0, 0, 0] == 5 and out2.sum() == 5


def test_size_ratio_guard_boundary_allowed():
    out = align_to_grid(da.zeros((64, 64, 64), chunks=32), (1, 1, 1), None,
                        Grid((16, 16, 16), (0, 0, 0), (4, 4, 4)), instance=True)
    assert out.shape == (4, 4, 4)  # exactly 4096 is not over the limit


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.rescale_reference import record_region_sizes, skimage_rescale  # noqa: E402


@settings(max_examples=30, deadline=None)
@given(st.tuples(st.integers(-12, 12), st.integers(-12, 12), st.integers(-12, 12)),
       st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_paste_chunked_equals_numpy_reference(shift, chunk, seed):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, 5, (7, 9, 8)).astype(np.uint16)
    shape = (8, 6, 10)
    out = paste(da.from_array(src, chunks=chunk), shift, shape).compute()
    ref = np.zeros(shape, src.dtype)
    for idx in np.ndindex(src.shape):
        j = tuple(i + r for i, r in zip(idx, shift, strict=True))
        if all(0 <= a < n for a, n in zip(j, shape, strict=True)):
            ref[j] = src[idx]
    np.testing.assert_array_equal(out, ref)


# -- chunked resampling == skimage's one-shot rescale ------------------------------------------

_SCALES = st.sampled_from([0.25, 1 / 3, 0.5, 0.6, 2 / 3, 0.75, 1.0, 1.5, 2.0, 3.0])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(3, 19), min_size=2, max_size=3), st.data(),
       st.sampled_from(["instance", "bool", "uint8", "float32", "float64"]),
       st.integers(2, 9), st.integers(3, 24), st.integers(0, 2**31 - 1))
def test_rescale_chunked_equals_skimage_one_shot(shape, data, kind, block, footprint, seed):
    from gpueval.io.align import rescale

    scale = tuple(data.draw(_SCALES) for _ in shape)
    rng = np.random.default_rng(seed)
    if kind == "instance":
        img = rng.integers(0, 7, shape).astype(np.uint32)
    elif kind == "bool":
        img = rng.random(shape) > rng.random()
    elif kind == "uint8":
        img = (rng.random(shape) > 0.5).astype(np.uint8)
    else:
        img = (rng.random(shape) * 0.6 + rng.choice([0.0, 0.3])).astype(kind)
    src = da.from_array(img, chunks=int(rng.integers(2, 8)))
    got = rescale(src, scale, instance=kind == "instance", block=block,
                  footprint=footprint).compute()
    want = skimage_rescale(img, scale, kind == "instance")
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_rescale_semantic_clips_to_a_positive_source_minimum():
    """All-foreground source: skimage clips the zero-blended border up to the minimum (1)."""
    from gpueval.io.align import rescale

    img = np.ones((6, 7, 5), bool)
    got = rescale(da.from_array(img, chunks=3), (1.5, 2.0, 1.0), instance=False,
                  block=4).compute()
    assert got.all()
    np.testing.assert_array_equal(got, skimage_rescale(img, (1.5, 2.0, 1.0), False))
    half = np.full((6, 7, 5), 0.4, np.float32)  # minimum 0.4 > 0 but below the threshold
    assert not rescale(half, (2.0, 2.0, 2.0), instance=False).compute().any()


def test_rescale_blocks_see_bounded_source_regions(monkeypatch):
    """Each output block gets only its source region (memory ~ block, not ~ source)."""
    import gpueval.io.align as align

    seen = record_region_sizes(monkeypatch)
    rng = np.random.default_rng(3)
    img = rng.integers(0, 4, (64, 64, 64)).astype(np.uint16)
    got = align.rescale(da.from_array(img, chunks=16), (0.5, 0.5, 0.5), instance=False,
                        block=8, footprint=16).compute()
    np.testing.assert_array_equal(got, skimage_rescale(img, (0.5, 0.5, 0.5), False))
    assert len(seen) == 4**3
    assert max(seen) <= 22**3 < img.size // 20  # 16 + margins per axis, never the source
