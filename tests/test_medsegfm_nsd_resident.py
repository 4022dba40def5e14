"""MedSegFM's in-memory path (one scan per volume, pair table from x-transitions, offset-grid
distances) against the chunked path it replaces for npz cases, and against the references
the chunked path is itself tested on (``volume_surfaces``, ``contingency``, k-d tree
distances). Issue #19: same scores to 1e-6 on random small volumes with stray voxels, empty
masks, anisotropic spacing and surfaces on the volume's faces.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpueval.challenges.medsegfm import resident
from gpueval.challenges.medsegfm.chunked import class_surfaces, pair_table
from gpueval.challenges.medsegfm.options import _Context, _settings
from gpueval.challenges.medsegfm.semantic import class_set, semantic_scores
from gpueval.config import load_config
from gpueval.errors import Rejected, TruthError
from gpueval.kernels import surface
from gpueval.kernels.nsd_scan import VolumeScan, pair_counts, scan_volume
from gpueval.kernels.stats import contingency
from gpueval.kernels.surface import CornerGrid, nearest_distances, volume_surfaces

ROOT = Path(__file__).resolve().parents[1]
SPACINGS = st.tuples(*[st.sampled_from([0.5, 0.8, 1.0, 1.5, 2.5, 3.0])] * 3)
DTYPES = [np.uint8, np.uint16, np.int32, np.int64, np.uint64, np.int8, bool]


def _ctx(*overrides: str, chunk: int = 4) -> _Context:
    cfg = load_config("medsegfm", overrides=[f"chunk_size={chunk}", *overrides])
    return _Context(_settings(cfg), "cpu", None, False)


def _canon(points):
    order = np.lexsort(points.coords.T[::-1])
    return points.coords[order].tolist(), points.codes[order].tolist()


@st.composite
def _volume_pair(draw):
    """Two label volumes of one shape: random blobs, stray voxels in far corners, optionally
    an empty prediction or a class filling a whole face."""
    shape = tuple(draw(st.integers(1, 9)) for _ in range(3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_labels = draw(st.integers(1, 4))
    gts = np.where(rng.random(shape) < draw(st.floats(0, 0.9)),
                   rng.integers(1, n_labels + 1, shape), 0)
    segs = np.where(rng.random(shape) < draw(st.floats(0, 0.9)),
                    rng.integers(1, n_labels + 1, shape), 0)
    if draw(st.booleans()):  # stray voxels of every class in opposite corners
        for c in range(1, n_labels + 1):
            segs[0, 0, min(c, shape[2] - 1)] = c
            segs[-1, -1, max(shape[2] - 1 - c, 0)] = c
    if draw(st.booleans()):
        segs[:] = 0  # empty prediction
    if draw(st.booleans()):
        gts[:, :, 0] = 1  # a class on the volume's face
    dtype = draw(st.sampled_from(DTYPES))
    if dtype is bool:
        gts, segs = gts > 0, segs > 0
    return gts.astype(dtype), segs.astype(dtype)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=_volume_pair(), slab=st.integers(1, 5), workers=st.integers(1, 2))
def test_scan_equals_chunked_surfaces_and_contingency(pair, slab, workers):
    gts, segs = pair
    labels = [1] if gts.dtype == bool else [1, 2, 3, 4]
    a = scan_volume(gts, None, slab=slab, workers=workers)
    b = scan_volume(segs, labels, slab=slab, workers=workers)
    ref_a = volume_surfaces(gts, labels, chunks=3)
    ref_b = volume_surfaces(segs, labels, chunks=4)
    for lab in labels:
        assert _canon(a.surfaces.get(lab, surface.SurfacePoints.empty())) == _canon(ref_a[lab])
        assert _canon(b.surfaces[lab]) == _canon(ref_b[lab])
    ref = contingency(gts.reshape(-1), segs.reshape(-1))
    got = pair_counts(a, b)
    def rows(t):
        return sorted(zip(t.ids_a.tolist(), t.ids_b.tolist(), t.counts.tolist(), strict=True))

    assert rows(got) == rows(ref)
    present = sorted({int(v) for v in np.unique(gts) if v != 0})
    assert a.labels.tolist() == present


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=_volume_pair(), spacing=SPACINGS, tol=st.sampled_from([0.5, 1.0, 2.0, 2.5]))
def test_grid_distances_equal_kdtree(pair, spacing, tol):
    gts, segs = pair
    sg = volume_surfaces(gts, [1])[1]
    sp = volume_surfaces(segs, [1])[1]
    grid = CornerGrid(gts.shape, spacing, tolerance=tol)
    for q, r in ((sg, sp), (sp, sg)):
        got = grid.nearest(q.coords, r.coords)
        ref = nearest_distances(q.coords, r.coords, spacing, tolerance=tol)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)
        assert np.array_equal(got <= tol, ref <= tol)  # the NSD's side of the tolerance
    assert not grid.mask.any()  # cleared for the next class


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=_volume_pair(), spacing=SPACINGS, compat=st.sampled_from(["official", "corrected"]))
def test_semantic_scores_resident_equal_chunked(pair, spacing, compat):
    gts, segs = pair
    if gts.dtype.kind == "i" and (gts.min() < 0 or segs.min() < 0):
        return  # negative labels: both paths refuse the same way (tested below)
    ctx = _ctx(f"compat={compat}")
    table = pair_table(ctx, gts, segs)
    classes = class_set(table.sizes_a()[0], ctx.settings)
    if 0 in classes:
        return
    ref = semantic_scores(ctx, gts, segs, spacing, classes, table)
    truth = resident.scan_truth(ctx, gts)
    assert class_set(resident.truth_ids(truth), ctx.settings) == classes
    pred = resident.scan_prediction(segs, classes)
    got = semantic_scores(ctx, gts, segs, spacing, classes, resident.case_table(truth, pred),
                          truth.surfaces, pred.surfaces,
                          resident.grid(gts.shape, spacing, ctx.settings))
    assert list(got) == list(ref)
    for c in classes:
        for key, want in ref[c].items():
            have = got[c][key]
            if isinstance(want, float) and math.isnan(want):
                assert math.isnan(have), (c, key)
            else:
                assert have == pytest.approx(want, rel=1e-9, abs=1e-9), (c, key, have, want)


def test_stray_voxel_organ_case_equals_chunked():
    from gpueval.bench.medsegfm import SPACING, organ_case

    gts, segs = organ_case((24, 40, 40), seed=3)
    ctx = _ctx(chunk=16)
    table = pair_table(ctx, gts, segs)
    classes = class_set(table.sizes_a()[0], ctx.settings)
    ref = semantic_scores(ctx, gts, segs, SPACING, classes, table)
    truth = resident.scan_truth(ctx, gts)
    pred = resident.scan_prediction(segs, classes)
    got = semantic_scores(ctx, gts, segs, SPACING, classes, resident.case_table(truth, pred),
                          truth.surfaces, pred.surfaces,
                          resident.grid(gts.shape, SPACING, ctx.settings))
    for c in classes:
        assert got[c]["nsd_2mm"] == pytest.approx(ref[c]["nsd_2mm"], abs=1e-12)
        assert got[c]["hd100_mm"] == pytest.approx(ref[c]["hd100_mm"], abs=1e-12)
        assert got[c]["dsc"] == ref[c]["dsc"]
        assert math.isfinite(got[c]["hd100_mm"]) and got[c]["hd100_mm"] > 10  # the strays


@pytest.mark.parametrize("layout", ["fortran", "big-endian", "odd-width", "sliced"])
def test_scan_takes_any_layout(layout):
    rng = np.random.default_rng(7)
    vol = rng.integers(0, 3, (5, 6, 13)).astype(np.uint16)
    if layout == "fortran":
        vol = np.asfortranarray(vol)
    elif layout == "big-endian":
        vol = vol.astype(">u2")
    elif layout == "odd-width":
        vol = vol[:, :, :11]
    else:
        vol = vol[:, ::2, 1:]
    got = scan_volume(vol, [1, 2], slab=2)
    ref = volume_surfaces(np.ascontiguousarray(vol, dtype=np.uint16), [1, 2], chunks=4)
    for lab in (1, 2):
        assert _canon(got.surfaces[lab]) == _canon(ref[lab])


def test_far_points_boxed_and_kdtree_paths(monkeypatch):
    rng = np.random.default_rng(1)
    ref = rng.integers(10, 40, (3000, 3))
    query = np.concatenate([rng.integers(0, 60, (40, 3)), [[0, 0, 0], [59, 59, 59]]])
    spacing = (2.5, 0.8, 1.1)
    want = nearest_distances(query, ref, spacing)
    brute = surface._brute_nearest(query, ref, spacing)
    np.testing.assert_allclose(brute, want, rtol=1e-12)
    monkeypatch.setattr(surface, "BRUTE_FORCE_PAIRS", 100)  # -> the boxed search
    np.testing.assert_allclose(surface._nearest_far(query, ref, spacing), brute, rtol=0, atol=0)
    monkeypatch.setattr(surface, "FAR_POINTS_BOXED", 5)  # -> the k-d tree
    np.testing.assert_allclose(surface._nearest_far(query, ref, spacing), brute, rtol=1e-12)


def test_grid_with_empty_sides():
    grid = CornerGrid((4, 4, 4), (1.0, 1.0, 1.0))
    pts = np.array([[1, 1, 1], [4, 4, 4]])
    assert np.isinf(grid.nearest(pts, np.empty((0, 3), int))).all()
    assert len(grid.nearest(np.empty((0, 3), int), pts)) == 0
    # two corners 3 voxels apart on a diagonal: sqrt(27), beyond the default reach of 4 mm
    assert grid.nearest(pts[:1], pts[1:])[0] == pytest.approx(math.sqrt(27), abs=1e-15)


def test_negative_labels_refused_like_the_chunked_path():
    gts = np.array([[[-1, 0], [1, 1]]], np.int32)
    ctx = _ctx()
    truth = resident.scan_truth(ctx, gts)
    classes = class_set(resident.truth_ids(truth), ctx.settings)  # drops -1: 0 and 1 remain
    assert classes == [0, 1]
    with pytest.raises(TruthError, match="must not be negative"):
        resident.scan_prediction(gts, classes)
    with pytest.raises(TruthError, match="must not be negative"):
        class_surfaces(ctx, gts, classes)


def _case(tmp_path: Path, gts, segs, spacing=(2.5, 0.8, 0.8)) -> tuple[Path, Path]:
    truth, sub = tmp_path / "truth", tmp_path / "sub"
    truth.mkdir()
    sub.mkdir()
    np.savez_compressed(truth / "c.npz", gts=gts, spacing=np.array(spacing))
    np.savez_compressed(sub / "c.npz", segs=segs)
    return truth, sub


def test_score_npz_case_equals_zarr_chunked_case(tmp_path):
    """End to end: the npz case (resident path, side-by-side decoding) and the same case as
    zarr (chunked path) give the same item and per-class values."""
    import zarr

    from gpueval.bench.medsegfm import organ_case
    from gpueval.challenges import medsegfm as M

    gts, segs = organ_case((16, 24, 28), seed=5)
    truth, sub = _case(tmp_path, gts, segs)
    ztruth, zsub = tmp_path / "ztruth", tmp_path / "zsub"
    ztruth.mkdir()
    zsub.mkdir()
    for folder, name, data, attrs in ((ztruth, "gts", gts, {"spacing": [2.5, 0.8, 0.8]}),
                                      (zsub, "segs", segs, {})):
        group = zarr.open_group(str(folder / "c.zarr"), mode="w")
        arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(8, 12, 16))
        arr[...] = data
        arr.attrs.update(attrs)
    cfg = load_config("medsegfm", overrides=["chunk_size=16"])
    fast = M.score(truth, sub, cfg)
    slow = M.score(ztruth, zsub, cfg)
    assert fast.items[0]["dsc"] == slow.items[0]["dsc"]
    assert fast.items[0]["nsd"] == pytest.approx(slow.items[0]["nsd"], abs=1e-12)
    a = fast.extra["cases"]["c"]["per_class"]
    b = slow.extra["cases"]["c"]["per_class"]
    assert a.keys() == b.keys()
    for c in a:
        for key in a[c]:
            assert a[c][key] == pytest.approx(b[c][key], rel=1e-12, abs=1e-12), (c, key)


def test_side_by_side_reading_keeps_the_errors(tmp_path):
    from gpueval.challenges import medsegfm as M

    gts = np.zeros((4, 5, 6), np.uint8)
    gts[1:3, 1:4, 2:5] = 1
    truth, sub = _case(tmp_path, gts, np.zeros((4, 5, 7), np.uint8))
    with pytest.raises(Rejected, match=r"shape \(4, 5, 7\) declared, expected \(4, 5, 6\)"):
        M.score(truth, sub, load_config("medsegfm"))
    np.savez(truth / "c.npz", gts=gts, spacing=np.array([1.0, -1.0, 1.0]))  # bad truth too
    with pytest.raises(TruthError, match="spacing"):
        M.score(truth, sub, load_config("medsegfm"))


def test_npz_case_imports_no_dask_array_numba_or_scipy(tmp_path):
    gts = np.zeros((6, 7, 9), np.uint8)
    gts[1:4, 2:5, 3:7] = 1
    truth, sub = _case(tmp_path, gts, np.roll(gts, 1, 0))
    # numpy.ma: what a plain ``np.unique`` imports on its first call (~30 ms)
    heavy = ("dask.array", "distributed", "numba", "scipy", "surface_distance", "numpy.ma")
    code = ("import json, sys, gpueval\n"
            f"r = gpueval.score('medsegfm', {str(truth)!r}, {str(sub)!r}, device='cpu')\n"
            f"print(json.dumps([r.score, [m for m in {heavy!r} if m in sys.modules]]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120, check=True)
    score, imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert imported == []
    assert score == pytest.approx(2 / 3)  # 3 slices shifted by one: 2·2/(3+3)


def test_truth_ids_reports_background_only_when_present():
    full = np.ones((2, 3, 4), np.uint8)
    assert resident.truth_ids(scan_volume(full)).tolist() == [1]
    full[0, 0, 0] = 0
    assert resident.truth_ids(scan_volume(full)).tolist() == [0, 1]
    empty = VolumeScan((2, 3, 4))
    assert pair_counts(empty, empty).counts.tolist() == [24]
