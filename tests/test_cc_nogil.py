"""The GIL-free connected components kernel equals cc3d voxel for voxel and in N (issue #18,
session 8): cc3d's multi-label semantics and its numbering (first voxel in memory order)."""

from __future__ import annotations

import cc3d
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.kernels import cc_nogil
from gpueval.kernels.cc_nogil import connected_components

DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int32, np.int64, np.bool_]


def _cc3d(a: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """cc3d, around three of its defects that are not what is compared here: bool input
    takes its binary path (miscounts some 2-D images), uint64 ids ≥ 2⁶³ may raise
    ``OverflowError``, and a strided single row raises ``IndexError`` (cc3d otherwise labels
    strided input as its C-contiguous copy, which is what it gets here)."""
    if not (a.flags.c_contiguous or a.flags.f_contiguous):
        a = np.ascontiguousarray(a)
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    elif a.dtype == np.uint64 and a.size and a.max() >= np.uint64(2**63):
        ids = np.zeros_like(a, np.uint32)  # same memory layout as a
        _, inverse = np.unique(a, return_inverse=True)
        ids[...] = np.where(a != 0, inverse.reshape(a.shape) + 1, 0)
        a = ids
    out, n = cc3d.connected_components(a, connectivity=connectivity, return_N=True)
    return out, int(n)


def _assert_same(a: np.ndarray, connectivity: int) -> None:
    out, n = connected_components(a, connectivity)
    ref, n_ref = _cc3d(a, connectivity)
    assert n == n_ref
    assert out.shape == a.shape
    np.testing.assert_array_equal(out, ref)


@st.composite
def label_volumes(draw):
    """A random 2-D or 3-D label volume: shape, dtype, density and number of values vary
    (few values make large joined components, many make small ones), sometimes F-ordered or
    strided, and a connectivity that fits its dimensionality."""
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.integers(1, 12 if ndim == 3 else 30)) for _ in range(ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(DTYPES))
    density = draw(st.sampled_from([0.05, 0.3, 0.7, 1.0]))
    n_values = 1 if dtype == np.bool_ else draw(st.sampled_from([1, 2, 3, 20]))
    a = (rng.random(shape) < density) * rng.integers(1, n_values + 1, shape)
    if np.dtype(dtype).kind == "i" and draw(st.booleans()):
        a = -a  # negative ids are ids like any other
    if dtype == np.uint64 and draw(st.booleans()):
        a = np.where(a != 0, np.uint64(2**64 - 1) - a.astype(np.uint64), 0)  # ≥ 2⁶³
    a = a.astype(dtype)
    layout = draw(st.sampled_from(["C", "F", "strided"]))
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "strided":
        a = np.repeat(a, 2, axis=-1)[..., ::2]  # neither C- nor F-contiguous
    connectivity = draw(st.sampled_from([4, 8] if ndim == 2 else [6, 18, 26]))
    return a, connectivity


@settings(max_examples=150)
@given(label_volumes())
def test_equals_cc3d(case):
    a, connectivity = case
    _assert_same(a, connectivity)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_equals_cc3d_larger_volumes(connectivity):
    """Volumes large enough to grow the union-find table and to make long merge chains:
    random multi-label noise, binary noise near the percolation threshold, and blobs."""
    rng = np.random.default_rng(connectivity)
    shape = (24, 40, 70)
    noise = ((rng.random(shape) < 0.5) * rng.integers(1, 4, shape)).astype(np.uint32)
    binary = (rng.random(shape) < 0.3).astype(np.uint8)
    z, y, x = np.indices(shape)
    blobs = (((z - 12) ** 2 + (y - 20) ** 2 + (x - 35) ** 2) < 150).astype(np.uint16) * 7
    blobs[:, :, ::9] = 0  # cut into slabs that join only around the cuts' edges at 18/26
    for a in (noise, binary, blobs):
        _assert_same(a, connectivity)


def test_diagonal_voxels_join_by_connectivity():
    """Two voxels meeting at a corner join at 26 only; along an edge at 18 and 26; at a face
    at every connectivity. Hand-counted N."""
    corner = np.zeros((2, 2, 2), np.uint8)
    corner[0, 0, 0] = corner[1, 1, 1] = 1
    edge = np.zeros((2, 2, 2), np.uint8)
    edge[0, 0, 0] = edge[0, 1, 1] = 1
    face = np.zeros((2, 2, 2), np.uint8)
    face[0, 0, 0] = face[1, 0, 0] = 1
    for a, n6, n18, n26 in ((corner, 2, 2, 1), (edge, 2, 1, 1), (face, 1, 1, 1)):
        assert [connected_components(a, c)[1] for c in (6, 18, 26)] == [n6, n18, n26]
    diag = np.array([[1, 0], [0, 1]], np.uint8)
    assert connected_components(diag, 4)[1] == 2
    assert connected_components(diag, 8)[1] == 1


def test_only_equal_values_join_and_ids_follow_first_voxels():
    """Neighbours of different values stay apart, equal values apart stay apart, and ids
    count components by their first voxel in C order (hand-labelled)."""
    a = np.array([[2, 2, 0, 2],
                  [1, 1, 0, 2],
                  [0, 3, 0, 0],
                  [2, 0, 1, 1]], np.uint32)
    out, n = connected_components(a, 4)
    assert n == 6
    assert out.tolist() == [[1, 1, 0, 2],
                            [3, 3, 0, 2],
                            [0, 4, 0, 0],
                            [5, 0, 6, 6]]
    # at 8-connectivity the 3 and the lower-left 2 still stay apart (different values), the
    # lower-right 1s do not touch the 1s above (two rows apart)
    assert connected_components(a, 8)[1] == 6


def test_first_voxel_numbering_with_a_late_merge():
    """A U-shaped component: its right arm starts first (row 0) and its left arm's label is
    merged into it at the bottom, so both arms get id 1 although the left arm's voxel (1, 0)
    comes before the other object (row 1, col 2)."""
    a = np.array([[0, 0, 0, 5],
                  [5, 0, 9, 5],
                  [5, 5, 5, 5]], np.uint8)
    out, n = connected_components(a, 4)
    assert n == 2
    assert out.tolist() == [[0, 0, 0, 1], [1, 0, 2, 1], [1, 1, 1, 1]]


def test_fortran_order_is_numbered_in_memory_order():
    """cc3d numbers in memory order: an F-ordered array as its C-ordered transpose."""
    a = np.asfortranarray(np.array([[1, 0, 1], [2, 2, 0], [0, 0, 3]], np.uint8))
    out, n = connected_components(a, 4)
    assert n == 4
    assert out.tolist() == [[1, 0, 3], [2, 2, 0], [0, 0, 4]]
    _assert_same(a, 4)


def test_read_only_and_byte_swapped_input():
    """Chunks decoded from storage may be read-only or big-endian: only equality matters, so
    both label as the native writeable copy does."""
    rng = np.random.default_rng(3)
    a = ((rng.random((6, 7, 8)) < 0.6) * rng.integers(1, 300, (6, 7, 8))).astype(">u4")
    a.flags.writeable = False
    out, n = connected_components(a, 26)
    ref, n_ref = _cc3d(a.astype(np.uint32), 26)
    assert n == n_ref
    np.testing.assert_array_equal(out, ref)


def test_empty_and_degenerate_shapes():
    for shape in [(0, 3, 3), (3, 0), (1, 1, 1), (1, 5), (5, 1, 1)]:
        for value in (0, 1):
            a = np.full(shape, value, np.uint8)
            out, n = connected_components(a, 8 if len(shape) == 2 else 26)
            assert out.shape == shape and out.dtype == np.uint32
            assert n == (1 if value and a.size else 0)


def test_rejects_what_cc3d_would_not_label_this_way():
    with pytest.raises(ValueError, match="connectivity 6"):
        connected_components(np.zeros((3, 3), np.uint8), 6)
    with pytest.raises(ValueError, match="connectivity 8"):
        connected_components(np.zeros((3, 3, 3), np.uint8), 8)
    with pytest.raises(ValueError, match="1-D"):
        connected_components(np.zeros(5, np.uint8), 4)
    with pytest.raises(TypeError, match="float32"):
        connected_components(np.zeros((3, 3), np.float32), 4)


def test_kernel_is_compiled_without_the_gil():
    """What the module exists for: the compiled kernel releases the GIL (``nogil=True``), and
    is cached on disk so a worker process does not recompile it. How much a probe thread runs
    beside it is measured in ``benchmarks/cc_nogil_bench.py``, not asserted here."""
    assert cc_nogil._label_kernel.targetoptions.get("nogil") is True
    assert cc_nogil._label_kernel._cache.__class__.__name__ != "NullCache"
