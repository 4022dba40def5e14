"""CuPy twin of the surface kernels: same surfels and distances as the NumPy path."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")

from gpueval.kernels.surface import (  # noqa: E402
    label_surfaces,
    mask_surface,
    nearest_distances,
    padded_block,
)


def _as_set(pts):
    return sorted(zip(map(tuple, pts.coords.tolist()), pts.codes.tolist(), strict=True))


def test_label_surfaces_cupy_equals_numpy():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 4, (17, 23, 19)).astype(np.uint8)
    block = padded_block(lab, (0, 0, 0), (18, 24, 20))
    cpu = label_surfaces(block, [1, 2, 3])
    gpu = label_surfaces(cupy.asarray(block), [1, 2, 3])
    for c in (1, 2, 3):
        assert _as_set(cpu[c]) == _as_set(gpu[c])


def test_mask_surface_correlate_equals_numpy():
    rng = np.random.default_rng(1)
    m = rng.random((15, 12, 18)) < 0.4
    block = padded_block(m, (0, 0, 0), (16, 13, 19))
    assert _as_set(mask_surface(block, (3, 4, 5))) == _as_set(
        mask_surface(cupy.asarray(block), (3, 4, 5)))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 0.8, 0.8)])
def test_nearest_distances_cupy_equals_numpy(spacing):
    rng = np.random.default_rng(2)
    q = rng.integers(0, 40, (500, 3))
    r = rng.integers(0, 40, (300, 3))
    cpu = nearest_distances(q, r, spacing)
    gpu = nearest_distances(cupy.asarray(q), cupy.asarray(r), spacing)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-14)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.4, 0.4, 0.4), (2.5, 0.8, 0.8)])
def test_surface_stats_on_gpu_equals_host(spacing, monkeypatch):
    """device="gpu" (exact EDT on the GPU) gives the host k-d tree's NSD and distances, and a
    box over the size guard falls back to the host."""
    from gpueval.kernels import surface

    rng = np.random.default_rng(3)
    g = np.zeros((30, 28, 26), bool)
    g[5:20, 6:22, 4:18] = True
    p = g ^ (rng.random(g.shape) < 0.02)
    sg = surface.volume_surfaces(g, [1], 13)[1]
    sp = surface.volume_surfaces(p, [1], 13)[1]
    host = surface.surface_stats(sg, sp, spacing, device="cpu")
    dev = surface.surface_stats(sg, sp, spacing, device="gpu")
    np.testing.assert_allclose(dev.dist_gt_to_pred, host.dist_gt_to_pred, rtol=1e-14)
    np.testing.assert_allclose(dev.dist_pred_to_gt, host.dist_pred_to_gt, rtol=1e-14)
    assert dev.nsd(2.0) == host.nsd(2.0)
    calls = []
    monkeypatch.setattr(surface, "GPU_EDT_MAX_VOXELS", 10)
    monkeypatch.setattr(surface, "_nearest_cupy", lambda *a: calls.append(a))
    small = surface.surface_stats(sg, sp, spacing, device="gpu")
    assert calls == [] and small.nsd(2.0) == host.nsd(2.0)
