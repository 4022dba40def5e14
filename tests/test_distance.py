"""Hausdorff distances in a union bounding box equal whole-volume SciPy EDT and brute force."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from gpueval.kernels.distance import (
    crop_to_union_bbox,
    directed_distances,
    hausdorff,
    union_bbox,
    union_box,
)


def _scipy_whole_volume(a, b, v, q=None):
    """CellMap's formulation: EDT of the complement over the whole volume, sampled on the
    other set, float64."""
    dab = ndi.distance_transform_edt(~b, sampling=v)[a]
    dba = ndi.distance_transform_edt(~a, sampling=v)[b]
    if q is None:
        return max(dab.max(), dba.max())
    return max(np.percentile(dab, q), np.percentile(dba, q))


def _brute(a, b, v):
    pa, pb = np.argwhere(a) * v, np.argwhere(b) * v
    d = cdist(pa, pb)
    return max(d.min(1).max(), d.min(0).max())


@st.composite
def mask_pairs(draw):
    ndim = draw(st.sampled_from([1, 2, 3]))  # every dimension hausdorff documents
    shape = tuple(draw(st.integers(1, 16)) for _ in range(ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    a = rng.random(shape) < draw(st.sampled_from([0.02, 0.1, 0.4]))
    b = rng.random(shape) < draw(st.sampled_from([0.02, 0.1, 0.4]))
    v = tuple(draw(st.sampled_from([1.0, 2.0, 3.5, 8.0, 0.7])) for _ in range(ndim))
    return a, b, np.array(v)


@given(mask_pairs())
def test_matches_whole_volume_scipy_and_brute_force(pair):
    a, b, v = pair
    got = hausdorff(a, b, v)
    if not a.any() and not b.any():
        assert got == 0.0
    elif not a.any() or not b.any():
        assert got == np.inf
    else:
        ref = _scipy_whole_volume(a, b, v)
        assert got == pytest.approx(ref, rel=1e-6)
        assert got == pytest.approx(_brute(a, b, v), rel=1e-6)
        assert hausdorff(b, a, v) == got


@given(mask_pairs(), st.sampled_from([0, 50, 95, 99.5]))
def test_percentile_matches_scipy(pair, q):
    a, b, v = pair
    if a.any() and b.any():
        assert hausdorff(a, b, v, percentile=q) == pytest.approx(
            _scipy_whole_volume(a, b, v, q), rel=1e-6, abs=1e-9)


def test_hand_checked_anisotropic():
    a = np.zeros((3, 4, 5), bool)
    b = a.copy()
    a[0, 0, 0] = True
    b[2, 3, 4] = b[0, 0, 1] = True
    # A→B: 1 voxel along x (4 nm); B→A: (2, 3, 4) voxels at (40, 2, 4) nm
    assert hausdorff(a, b, (40.0, 2.0, 4.0)) == pytest.approx(np.sqrt(80**2 + 6**2 + 16**2))
    dab, dba = directed_distances(a, b, (40.0, 2.0, 4.0))
    assert dab.tolist() == [4.0]
    np.testing.assert_allclose(sorted(dba.tolist()), [4.0, np.sqrt(80**2 + 36 + 256)], rtol=1e-6)


def test_object_inside_the_other_and_identical():
    a = np.zeros((9, 9), bool)
    a[2:7, 2:7] = True
    b = np.zeros_like(a)
    b[4, 4] = True
    assert hausdorff(a, b, (1.0, 1.0)) == pytest.approx(np.sqrt(8))
    assert hausdorff(a, a, (3.0, 1.0)) == 0.0


def test_empty_sets():
    z = np.zeros((4, 4), bool)
    o = z.copy()
    o[1, 1] = True
    assert hausdorff(z, z, (1, 1)) == 0.0
    assert hausdorff(o, z, (1, 1)) == np.inf
    assert hausdorff(z, o, (1, 1)) == np.inf


def test_crops_and_boxes():
    a = np.zeros((6, 7), bool)
    b = a.copy()
    a[1, 2] = True
    b[4, 5] = b[3, 3] = True
    assert union_bbox(a, b) == (slice(1, 5), slice(2, 6))
    ca, cb = crop_to_union_bbox(a, b)
    assert ca.shape == (4, 4) and ca.sum() == 1 and cb.sum() == 2
    assert union_bbox(np.zeros_like(a), np.zeros_like(b)) is None
    assert union_box((slice(1, 3), slice(0, 2)), None, (slice(2, 5), slice(1, 4))) == (
        slice(1, 5), slice(0, 4))


def test_bad_arguments():
    with pytest.raises(ValueError):
        hausdorff(np.zeros((2, 2)), np.zeros((2, 3)), (1, 1))
    with pytest.raises(ValueError):
        hausdorff(np.ones((2, 2)), np.ones((2, 2)), (1, 1, 1))
    with pytest.raises(ValueError):
        hausdorff(np.ones((2, 2)), np.ones((2, 2)), (1, 1), percentile=101)
    with pytest.raises(ValueError, match="1-D to 3-D"):
        hausdorff(np.ones((2,) * 4), np.ones((2,) * 4), (1,) * 4)


def test_one_d_masks_hand_checked():
    # issue 21 item 6: edt's 1-D entry point wants a scalar spacing. A = {0}, B = {3, 4, 5}
    # at 2 nm: d(A→B) = 3·2 = 6, d(B→A) = 5·2 = 10, so Hausdorff = 10; 50th percentile of
    # B→A = {6, 8, 10} is 8 and A→B is 6, so the robust value is 8.
    a = np.zeros(7, bool)
    b = a.copy()
    a[0] = True
    b[3:6] = True
    assert hausdorff(a, b, (2.0,)) == 10.0
    assert hausdorff(a, b, (2.0,), percentile=50) == 8.0


def test_cupy_twin_emulated(monkeypatch):
    from emulated import fake_cupy

    cp = fake_cupy.install(monkeypatch)
    rng = np.random.default_rng(0)
    a, b = rng.random((8, 9, 10)) < 0.05, rng.random((8, 9, 10)) < 0.05
    v = (3.0, 1.0, 2.0)
    assert hausdorff(cp.asarray(a), cp.asarray(b), v) == pytest.approx(hausdorff(a, b, v),
                                                                       rel=1e-6)
