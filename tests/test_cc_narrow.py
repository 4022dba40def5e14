"""``cc_nogil.label_narrow`` (issue #18, session 9): the labels of ``connected_components``
in the narrowest unsigned dtype that holds n, and each component's first voxel, from one
kernel run — equal to narrowing the uint32 output and scanning it for first occurrences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.kernels import components as cc
from gpueval.kernels.cc_nogil import connected_components, label_narrow

DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int64, np.bool_]


def _memory_order(a: np.ndarray) -> str:
    """The order in which the kernel numbers ``a`` (strided input: its C-contiguous copy)."""
    return "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"


def _assert_narrow_matches(a: np.ndarray, connectivity: int) -> None:
    wide, n_wide = connected_components(a, connectivity)
    out, n, first = label_narrow(a, connectivity)
    assert n == n_wide
    want = np.uint8 if n < 2**8 else np.uint16 if n < 2**16 else wide.dtype
    assert out.dtype == want and out.shape == a.shape
    np.testing.assert_array_equal(out, wide)  # same ids (values compare across dtypes)
    flat = wide.ravel(order=_memory_order(a))
    ids, where = np.unique(flat, return_index=True)
    assert first.dtype == np.int64
    np.testing.assert_array_equal(first, where[ids != 0])  # first occurrence of 1..n


@st.composite
def label_volumes(draw):
    """2-D or 3-D volumes of several dtypes, densities and numbers of values, C, F or
    strided, with a connectivity that fits their dimensionality."""
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.integers(1, 12 if ndim == 3 else 30)) for _ in range(ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(DTYPES))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]))
    n_values = 1 if dtype == np.bool_ else draw(st.sampled_from([1, 2, 20]))
    a = ((rng.random(shape) < density) * rng.integers(1, n_values + 1, shape)).astype(dtype)
    layout = draw(st.sampled_from(["C", "F", "strided"]))
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "strided":
        a = np.repeat(a, 2, axis=-1)[..., ::2]
    return a, draw(st.sampled_from([4, 8] if ndim == 2 else [6, 18, 26]))


@settings(max_examples=120, deadline=None)
@given(label_volumes())
def test_label_narrow_equals_narrowed_connected_components(case):
    _assert_narrow_matches(*case)


@pytest.mark.parametrize("side, connectivity", [(9, 6), (40, 6), (52, 6), (40, 26)])
def test_each_output_width(side, connectivity):
    """A 3-D checkerboard of isolated voxels at 6-connectivity has ~side³/2 components:
    uint16 (9³: 364; 40³: 32,000) and uint32 (52³: 70,304), and a corner of it uint8;
    at 26-connectivity the same board is one component per value, joined through corners
    (many unions: provisional labels are not the final ids)."""
    z, y, x = np.indices((side,) * 3)
    board = ((z + y + x) % 2).astype(np.uint16)
    _assert_narrow_matches(board, connectivity)
    _assert_narrow_matches(board[:2, :3, :4], connectivity)  # few components: uint8


def test_chunk_task_labels_as_before():
    """``components._cc3d_narrow`` (what the chunk label task calls) equals the labels,
    narrowed, and first voxels it computed before: ``_cc3d`` + ``narrowest`` +
    ``_first_voxels``, also for float and binary input."""
    rng = np.random.default_rng(5)
    a = (rng.random((20, 21, 22)) < 0.4) * rng.integers(1, 4, (20, 21, 22))
    for labels, binary in ((a.astype(np.uint32), False), (a.astype(np.float32) / 2, False),
                           (a.astype(np.int16), True)):
        local, n = cc._cc3d(labels, 26, binary)
        out, n2, first = cc._cc3d_narrow(labels, 26, binary)
        assert n2 == n
        np.testing.assert_array_equal(out, cc.narrowest(local, n))
        assert out.dtype == cc.narrowest(local, n).dtype
        np.testing.assert_array_equal(first, cc._first_voxels(local.reshape(-1), n))


def test_provisional_labels_outgrowing_the_uint16_scratch():
    """Columns that start apart and join only in the last plane: 90,000 provisional labels
    (each dot of plane 0 starts one) but one component — the kernel outgrows its uint16
    scratch in the middle of plane 0, widens the rows done and goes on; the result is one
    id, its first voxel the volume's first (hand-derived), as cc3d labels it."""
    import cc3d

    vol = np.zeros((3, 600, 600), np.uint8)
    vol[:2, ::2, ::2] = 1  # a dot per (even y, even x), a column of two along z
    vol[2] = 1  # the last plane joins every column
    _assert_narrow_matches(vol, 6)
    out, n, first = label_narrow(vol, 6)
    assert (n, out.dtype, first.tolist()) == (1, np.uint8, [0])
    np.testing.assert_array_equal(out, cc3d.connected_components(vol, connectivity=6))
    # joined along the first row only: 1 + 299 × 300 = 89,701 ids, uint32 output
    vol[2, 1:, :] = 0
    _assert_narrow_matches(vol, 6)
