"""Surfels and NSD (gpueval.kernels.surface) against DeepMind's surface-distance package."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from surface_distance import compute_surface_dice_at_tolerance, compute_surface_distances
from surface_distance.lookup_tables import create_table_neighbour_code_to_surface_area

from gpueval.kernels.surface import (
    SurfacePoints,
    compute_surface_stats,
    corner_chunks,
    label_surfaces,
    mask_surface,
    nearest_distances,
    normalized_surface_dice,
    padded_block,
    surfel_area_table,
    volume_surfaces,
)

SPACINGS = st.tuples(*[st.sampled_from([0.5, 0.7, 0.8, 1.0, 1.1, 1.5, 2.0, 2.5, 3.0])] * 3)


def _random_masks(seed, shape, p=0.3):
    rng = np.random.default_rng(seed)
    return rng.random(shape) < p, rng.random(shape) < p


@pytest.mark.parametrize("spacing", [(1, 1, 1), (2.5, 0.8, 0.8), (3.0, 0.7, 1.1)])
def test_area_table_equals_package(spacing):
    np.testing.assert_allclose(surfel_area_table(spacing),
                               create_table_neighbour_code_to_surface_area(spacing),
                               rtol=1e-15, atol=0)


def test_single_voxel_has_eight_surfels():
    m = np.zeros((5, 5, 5), bool)
    m[2, 2, 2] = True
    pts = volume_surfaces(m, [1])[1]
    assert len(pts) == 8
    assert sorted(map(tuple, pts.coords.tolist())) == [
        (a, b, c) for a in (2, 3) for b in (2, 3) for c in (2, 3)]
    # each corner sees the voxel in exactly one of its 8 positions: one bit per code
    assert sorted(pts.codes.tolist()) == [1, 2, 4, 8, 16, 32, 64, 128]


def test_object_touching_the_faces_is_closed():
    m = np.ones((3, 4, 5), bool)  # the whole volume: surface lies on the outer corners
    pts = volume_surfaces(m, [1], chunks=2)[1]
    corners = (4 * 5 * 6) - (2 * 3 * 4)  # all corners minus interior ones
    assert len(pts) == corners


@given(seed=st.integers(0, 2**16), spacing=SPACINGS,
       shape=st.tuples(st.integers(2, 9), st.integers(2, 9), st.integers(2, 9)),
       chunks=st.integers(2, 6))
def test_distances_and_areas_equal_package(seed, spacing, shape, chunks):
    g, p = _random_masks(seed, shape)
    if not g.any() or not p.any():  # the package needs NumPy < 2 for empty surfaces
        return
    ref = compute_surface_distances(g, p, spacing)
    ours = compute_surface_stats(g, p, spacing, chunks=chunks)
    for mine, theirs in ((ours.dist_gt_to_pred, ref["distances_gt_to_pred"]),
                         (ours.dist_pred_to_gt, ref["distances_pred_to_gt"]),
                         (ours.areas_gt, ref["surfel_areas_gt"]),
                         (ours.areas_pred, ref["surfel_areas_pred"])):
        # equidistant nearest points may differ by one ulp in how the EDT forms them
        np.testing.assert_allclose(np.sort(mine), np.sort(theirs), rtol=1e-14, atol=0)
    for tol in (0.5, 1.0, 2.0, 3.0):
        assert ours.nsd(tol) == pytest.approx(compute_surface_dice_at_tolerance(ref, tol),
                                              abs=1e-12)


def test_tolerance_is_inclusive_at_exact_distance():
    g = np.zeros((8, 8, 8), bool)
    p = np.zeros((8, 8, 8), bool)
    g[2:4, 2:4, 2:4] = True
    p[4:6, 2:4, 2:4] = True  # shifted by two voxels along axis 0
    d = nearest_distances(np.array([[2, 2, 2]]), np.array([[4, 2, 2]]), (1.0, 1.0, 1.0),
                          tolerance=2.0)
    assert d[0] == 2.0
    ref = compute_surface_distances(g, p, (1.0, 1.0, 1.0))
    assert normalized_surface_dice(g, p, (1.0, 1.0, 1.0), 2.0) == pytest.approx(
        compute_surface_dice_at_tolerance(ref, 2.0), abs=1e-12)


@pytest.mark.parametrize("spacing", [(0.7, 1.0, 0.7), (2.5, 0.8, 0.8), (1.1, 0.3, 0.9)])
def test_distances_equal_scipy_edt_bitwise(spacing):
    from scipy.ndimage import distance_transform_edt

    grid = np.ones((7, 9, 8), bool)
    ref = np.array([[3, 4, 2], [0, 8, 7]])
    grid[ref[:, 0], ref[:, 1], ref[:, 2]] = False
    edt = distance_transform_edt(grid, sampling=spacing)
    q = np.argwhere(np.ones_like(grid))
    for tol in (None, 2.0, 2.1):
        d = nearest_distances(q, ref, spacing, tolerance=tol)
        np.testing.assert_array_equal(d, edt[q[:, 0], q[:, 1], q[:, 2]])


def test_empty_reference_gives_infinite_distances():
    d = nearest_distances(np.array([[1, 2, 3]]), np.empty((0, 3), int), (1, 1, 1))
    assert np.isinf(d).all()
    m = np.zeros((4, 4, 4), bool)
    m[1, 1, 1] = True
    st_ = compute_surface_stats(m, np.zeros_like(m), (1, 1, 1))
    assert st_.nsd(2.0) == 0.0 and np.isinf(st_.hausdorff(95))


def test_multilabel_equals_binary_per_label():
    rng = np.random.default_rng(3)
    lab = rng.integers(0, 4, (7, 9, 6)).astype(np.uint8)
    multi = volume_surfaces(lab, [1, 2, 3], chunks=3)
    for c in (1, 2, 3):
        single = volume_surfaces(lab == c, [1], chunks=4)[1]
        whole = mask_surface(padded_block(lab == c, (0, 0, 0), (8, 10, 7)))
        for other in (single, whole):
            a = sorted(zip(map(tuple, multi[c].coords.tolist()), multi[c].codes.tolist(),
                           strict=True))
            b = sorted(zip(map(tuple, other.coords.tolist()), other.codes.tolist(), strict=True))
            assert a == b


def test_corner_chunks_tile_the_corner_grid():
    shape = (5, 7, 3)
    seen = np.zeros(tuple(n + 1 for n in shape), int)
    for lo, hi in corner_chunks(shape, (2, 3, 4)):
        seen[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] += 1
    assert (seen == 1).all()


def test_label_surfaces_honours_origin():
    block = np.zeros((3, 3, 3), np.uint8)
    block[1, 1, 1] = 5
    pts = label_surfaces(block, [5, 300], corner_origin=(10, 20, 30))
    assert pts[5].coords.min(axis=0).tolist() == [10, 20, 30]
    assert len(pts[300]) == 0  # a label the dtype cannot hold has no surface


def test_stray_voxels_cost_follows_surface_not_bounding_box():
    n = (160, 256, 256)  # 10.5 M voxels; the official crop would be all of it
    g = np.zeros(n, np.uint8)
    g[60:100, 100:150, 100:150] = 1
    p = np.roll(g, 2, axis=1)
    p[0, 0, 0] = 1
    p[-1, -1, -1] = 1  # stray voxels in opposite corners
    spacing = (2.5, 0.8, 0.8)
    t0 = time.perf_counter()
    stats = compute_surface_stats(g, p, spacing)
    seconds = time.perf_counter() - t0
    # hand check: the strays add 8+8 surfels whose distance is far beyond 2 mm
    cube = compute_surface_stats(g, np.roll(g, 2, axis=1), spacing)
    assert len(stats.areas_pred) == len(cube.areas_pred) + 16
    og, op = cube.overlap(2.0)
    stray_area = 2 * surfel_area_table(spacing)[[1, 2, 4, 8, 16, 32, 64, 128]].sum()
    expected = (og + op) / (cube.areas_gt.sum() + cube.areas_pred.sum() + stray_area)
    assert stats.nsd(2.0) == pytest.approx(expected, abs=1e-12)
    assert seconds < 20  # shared 2-core machine; an EDT over the box takes far longer


def test_surface_points_combine_and_empty():
    e = SurfacePoints.empty()
    assert len(SurfacePoints.combine([e, e])) == 0
    a = SurfacePoints(np.array([[1, 2, 3]]), np.array([7], np.uint8))
    assert len(SurfacePoints.combine([a, e, a])) == 2


def test_many_classes_skip_absent_ones_without_changing_surfaces():
    rng = np.random.default_rng(4)
    lab = np.zeros((12, 14, 10), np.int32)
    lab[:6] = rng.integers(0, 9, (6, 14, 10))  # classes only in the first half
    multi = volume_surfaces(lab, range(1, 12), chunks=5)
    for c in range(1, 12):
        single = volume_surfaces(lab == c, [1], chunks=7)[1]
        assert sorted(map(tuple, multi[c].coords.tolist())) == sorted(
            map(tuple, single.coords.tolist()))
    assert len(multi[10]) == 0 and len(multi[11]) == 0
