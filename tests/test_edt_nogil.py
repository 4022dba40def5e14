"""The GIL-free Hausdorff kernel equals SciPy's float64 EDT in float32 (the official value) and,
at integer voxel sizes, the ``edt``-based kernel it replaced, bit for bit (issue #18, session 7).
"""

from __future__ import annotations

import edt
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.kernels import edt_nogil
from gpueval.kernels.distance import hausdorff, hausdorff_max
from gpueval.kernels.edt_nogil import BOTH, BOTH_EMPTY, ONLY_A, ONLY_B, hausdorff_sq


def _scipy_float32(a, b, v) -> np.float32:
    """CellMap's official arithmetic: float64 EDT of the complement over the whole array,
    sampled on the other mask, the maximum stored as float32."""
    dab = ndi.distance_transform_edt(~b, sampling=v)[a].max()
    dba = ndi.distance_transform_edt(~a, sampling=v)[b].max()
    return np.float32(max(dab, dba))


def _edt_float32(a, b, v) -> np.float32:
    """The kernel before session 7: ``edt`` (float32) of each complement on the whole array."""
    def outside(m):
        spacing = v[0] if m.ndim == 1 else v
        return edt.edt(np.ascontiguousarray(~m).view(np.uint8), anisotropy=spacing,
                       black_border=False)
    return np.float32(max(outside(b)[a].max(), outside(a)[b].max()))


@st.composite
def related_masks(draw, sizes=(1.0, 2.0, 3.24, 4.0, 8.0, 0.7, 3.5)):
    """Two masks of a random shape (1-3 D) in one of the relations the kernel shortcuts
    (nested, equal, disjoint, one empty) or at random, and a voxel size per axis."""
    ndim = draw(st.sampled_from([1, 2, 3]))
    shape = tuple(draw(st.integers(1, 14)) for _ in range(ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = rng.random(shape) < draw(st.sampled_from([0.02, 0.1, 0.4, 0.8]))
    b = rng.random(shape) < draw(st.sampled_from([0.02, 0.1, 0.4, 0.8]))
    relation = draw(st.sampled_from(["random", "a_in_b", "b_in_a", "equal", "disjoint",
                                     "one_empty"]))
    if relation == "a_in_b":
        b |= a
    elif relation == "b_in_a":
        a |= b
    elif relation == "equal":
        b = a.copy()
    elif relation == "disjoint":
        b &= ~a
    elif relation == "one_empty":
        b[...] = False
    v = tuple(draw(st.sampled_from(sizes)) for _ in range(ndim))
    return a, b, v


@settings(max_examples=300, deadline=None)
@given(related_masks())
def test_float32_equals_scipy_float64_edt(pair):
    a, b, v = pair
    got = hausdorff_max(a, b, v)
    if not a.any() and not b.any():
        assert got == 0.0
    elif not a.any() or not b.any():
        assert got == np.inf
    else:
        assert np.float32(got) == _scipy_float32(a, b, v)
        assert np.float32(got) == got  # already float32, as edt's values were
        assert hausdorff_max(b, a, v) == got  # symmetric


@settings(max_examples=150, deadline=None)
@given(related_masks(sizes=(1.0, 2.0, 4.0, 8.0, 12.0)))
def test_integer_voxel_sizes_equal_the_edt_kernel_bit_for_bit(pair):
    a, b, v = pair
    if a.any() and b.any():
        assert hausdorff_max(a, b, v) == float(_edt_float32(a, b, v))


def test_cellmap_like_anisotropic_boxes():
    """Blobs at (3.24, 4, 4) nm — a non-integer CellMap voxel size — on boxes up to 40³."""
    rng = np.random.default_rng(7)
    for n in (9, 24, 40):
        zz, yy, xx = np.ogrid[:n, :n, :n]
        c = (n - 1) / 2
        ball = (zz - c) ** 2 + (yy - c) ** 2 + (xx - c) ** 2 < (0.4 * n) ** 2
        a = ball & (rng.random(ball.shape) < 0.97)
        b = np.roll(ball, (1, -2, 1), axis=(0, 1, 2)) & (rng.random(ball.shape) < 0.97)
        v = (3.24, 4.0, 4.0)
        assert np.float32(hausdorff_max(a, b, v)) == _scipy_float32(a, b, v)


def test_hand_checked_anisotropic():
    a = np.zeros((3, 4, 5), bool)
    b = a.copy()
    a[0, 0, 0] = True
    b[2, 3, 4] = b[0, 0, 1] = True
    # A→B: 1 voxel along x (4 nm); B→A: (2, 3, 4) voxels at (40, 2, 4) nm, so the square is
    # 80² + 6² + 16² = 6692
    assert hausdorff_sq(a, b, (40.0, 2.0, 4.0)) == (BOTH, 6692.0)
    assert hausdorff_max(a, b, (40.0, 2.0, 4.0)) == float(np.float32(np.sqrt(6692.0)))


def test_status_codes_and_nesting():
    a = np.zeros((4, 4), bool)
    b = a.copy()
    assert hausdorff_sq(a, b, (1.0, 1.0)) == (BOTH_EMPTY, 0.0)
    a[1, 1] = True
    assert hausdorff_sq(a, b, (1.0, 1.0)) == (ONLY_A, 0.0)
    assert hausdorff_sq(b, a, (1.0, 1.0)) == (ONLY_B, 0.0)
    b[:, :] = True  # A inside B: only B ∖ A counts; farthest corner (3, 3) is √8 from (1, 1)
    assert hausdorff_sq(a, b, (1.0, 1.0)) == (BOTH, 8.0)
    assert hausdorff_sq(b, b, (1.0, 1.0)) == (BOTH, 0.0)


def test_strided_and_integer_masks_read_as_boolean():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, (12, 10, 15)).astype(np.uint8)
    a, b = labels[::2, :, 1::3], (labels * 2)[1::2, ::-1, ::3]  # views, 0/1/2 and 0/2/4
    v = (2.0, 3.0, 5.0)
    ab, bb = np.ascontiguousarray(a != 0), np.ascontiguousarray(b != 0)
    assert hausdorff_sq(a, b, v) == hausdorff_sq(ab, bb, v)
    assert hausdorff_max(a, b, v) == float(_edt_float32(ab, bb, v))


def test_hausdorff_maximum_uses_the_kernel_and_percentiles_do_not():
    a = np.zeros(7, bool)
    b = a.copy()
    a[0] = True
    b[3:6] = True
    # A→B 3·2 = 6, B→A 5·2 = 10; the 50th percentile of B→A {6, 8, 10} is 8
    assert hausdorff(a, b, (2.0,)) == hausdorff_max(a, b, (2.0,)) == 10.0
    assert hausdorff(a, b, (2.0,), percentile=50) == 8.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="differ in shape"):
        hausdorff_sq(np.zeros((2, 2)), np.zeros((2, 3)), (1, 1))
    with pytest.raises(ValueError, match="1-D to 3-D"):
        hausdorff_sq(np.zeros((2,) * 4), np.zeros((2,) * 4), (1,) * 4)
    with pytest.raises(ValueError, match="positive and finite"):
        hausdorff_sq(np.ones((2, 2)), np.ones((2, 2)), (1.0, 0.0))
    with pytest.raises(ValueError, match="voxel_size has 3 values"):
        hausdorff_max(np.ones((2, 2)), np.ones((2, 2)), (1, 1, 1))


def test_kernels_are_compiled_without_the_gil():
    """The whole point: every compiled function of the kernel releases the GIL."""
    hausdorff_sq(np.ones(2, bool), np.zeros(2, bool), (1.0,))  # compiled on first call
    for name in ("_hausdorff_sq_kernel", "_any", "_directed_edt", "_searches",
                 "_boundary_voxels", "_directed_sq", "_envelope"):
        assert getattr(edt_nogil, name).targetoptions.get("nogil") is True


def test_threads_measuring_different_pairs_get_the_serial_values():
    """The kernel keeps no state between calls: four threads at once give each pair's value."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(11)
    pairs = [(rng.random((20, 18, 22)) < p, rng.random((20, 18, 22)) < q)
             for p, q in ((0.01, 0.05), (0.2, 0.02), (0.5, 0.5), (0.03, 0.03))] * 4
    v = (3.24, 4.0, 4.0)
    serial = [hausdorff_max(a, b, v) for a, b in pairs]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lambda ab: hausdorff_max(*ab, v), pairs)) == serial


# --- session 9: the offset search in front of the EDT ---------------------------------------

def _kernel_sq(a, b, v, *, search: bool) -> tuple[int, float]:
    """The kernel on 3-D masks with the search table (``search``) or an empty one, which
    hands every direction to the EDT."""
    vs = np.asarray(v, np.float64)
    offsets, lengths = edt_nogil._search_table(tuple(vs.tolist()), 0)
    if not search:
        offsets, lengths = offsets[:0], lengths[:0]
    return edt_nogil._hausdorff_sq_kernel(a, b, vs, offsets, lengths)


@st.composite
def shell_pairs(draw):
    """A blob and a shifted, thinned copy (CellMap-like: A ∖ B a thin shell), sometimes with a
    far stray voxel, at integer or non-integer voxel sizes."""
    n = draw(st.integers(3, 22))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    zz, yy, xx = np.ogrid[:n, :n, :n]
    c = (n - 1) / 2
    ball = (zz - c) ** 2 + (yy - c) ** 2 + (xx - c) ** 2 < (draw(st.floats(0.2, 0.6)) * n) ** 2
    shift = tuple(draw(st.integers(-3, 3)) for _ in range(3))
    a = ball & (rng.random(ball.shape) < draw(st.sampled_from([0.9, 1.0])))
    b = np.roll(ball, shift, axis=(0, 1, 2)) & (rng.random(ball.shape) < 0.95)
    if draw(st.booleans()):
        a[tuple(rng.integers(0, n, 3))] = True  # a stray voxel: a far point, maybe
    v = tuple(draw(st.sampled_from((1.0, 4.0, 8.0, 3.24, 0.7, 40.0))) for _ in range(3))
    return a, b, v


@settings(max_examples=200, deadline=None)
@given(shell_pairs())
def test_search_equals_the_edt(pair):
    """Searched or measured by the EDT, a pair gets one value: bit for bit at integer voxel
    sizes (exact integers), SciPy's float32 value at any size."""
    a, b, v = pair
    status, searched = _kernel_sq(a, b, v, search=True)
    mirrored = {ONLY_A: ONLY_B, ONLY_B: ONLY_A}.get(status, status)
    assert _kernel_sq(b, a, v, search=True) == (mirrored, searched)
    _, by_edt = _kernel_sq(a, b, v, search=False)
    if all(float(x).is_integer() for x in v):
        assert searched == by_edt
    if status == BOTH:
        assert np.float32(np.sqrt(searched)) == np.float32(np.sqrt(by_edt))
        assert np.float32(np.sqrt(searched)) == _scipy_float32(a, b, v)


def test_search_far_voxels_and_giving_up_where_the_edt_is_cheaper():
    """Near voxels are found in the table; a voxel beyond its reach is measured against the
    boundary of the other set; work outgrowing the box's voxels hands the direction to the EDT
    (−1). The pair's value is SciPy's on every path."""
    v = (8.0, 8.0, 8.0)
    vs = np.asarray(v)
    offsets, lengths = edt_nogil._search_table(v, 0)
    reach = int(np.abs(offsets).max())
    a = np.zeros((12, 12, 40), bool)  # budget: 5,760 lookups or evaluations
    b = a.copy()
    b[6, 6, 0] = True
    a[6, 6, 3] = True  # 3 voxels away: in the table
    assert edt_nogil._searches(a, b, vs, offsets, lengths)[0] == (3 * 8.0) ** 2
    a[6, 6, reach + 5] = True  # beyond the table: against B's boundary
    far = ((reach + 5) * 8.0) ** 2
    assert edt_nogil._searches(a, b, vs, offsets, lengths)[0] == far
    assert _kernel_sq(a, b, v, search=True) == (BOTH, far)
    b[:, :, :2] = True  # a slab: the nearest voxel is on its face k = 1
    assert edt_nogil._searches(a, b, vs, offsets, lengths)[0] == ((reach + 4) * 8.0) ** 2
    # a slab 4 voxels thick over one plane of B: ~60 lookups per voxel, more than the box
    a = np.zeros((6, 12, 12), bool)
    b = a.copy()
    b[0] = True
    a[2:6] = True
    assert edt_nogil._searches(a, b, vs, offsets, lengths)[0] == -1.0
    assert edt_nogil._searches(b, a, vs, offsets, lengths)[1] == -1.0  # the same direction
    assert _kernel_sq(a, b, v, search=True) == (BOTH, (5 * 8.0) ** 2)
    assert np.float32(hausdorff_max(a, b, v)) == _scipy_float32(a, b, v)


def test_boundary_voxels():
    m = np.zeros((5, 5, 5), bool)
    m[1:4, 1:4, 1:4] = True  # a 3³ cube: all but its centre are on its boundary
    got = edt_nogil._boundary_voxels(m)
    assert len(got) == 26 and [2, 2, 2] not in got.tolist()
    assert got.tolist() == sorted(got.tolist())  # raster order
    assert len(edt_nogil._boundary_voxels(np.ones((3, 3, 3), bool))) == 26  # the array edge


def test_search_table_is_sorted_and_skips_padding_axes():
    offsets, lengths = edt_nogil._search_table((1.0, 3.24, 4.0), 1)
    assert (offsets[:, 0] == 0).all() and np.all(np.diff(lengths) >= 0)
    t = offsets * np.array([1.0, 3.24, 4.0])
    assert np.array_equal(lengths, (t[:, 0] * t[:, 0] + t[:, 1] * t[:, 1]) + t[:, 2] * t[:, 2])
    assert 1000 < len(lengths) < 4000 and lengths[0] == 3.24 ** 2
