"""CuPy twins of connected components, region statistics and Hausdorff: same as the CPU path."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")

from gpueval.kernels.components import connected_components, label_chunked  # noqa: E402
from gpueval.kernels.distance import hausdorff  # noqa: E402
from gpueval.kernels.regions import chunk_region_stats, region_stats  # noqa: E402


def _volume(shape, n_labels=3, density=0.6, seed=0, dtype=np.uint32):
    rng = np.random.default_rng(seed)
    return (rng.integers(1, n_labels + 1, shape) * (rng.random(shape) < density)).astype(dtype)


@pytest.mark.parametrize("connectivity", [6, 18, 26])
@pytest.mark.parametrize("binary", [False, True])
def test_cc_3d_equals_cpu(connectivity, binary):
    a = _volume((37, 41, 29))
    cpu, n_cpu = connected_components(a, connectivity, binary=binary)
    gpu, n_gpu = connected_components(cupy.asarray(a), connectivity, binary=binary)
    assert n_gpu == n_cpu
    np.testing.assert_array_equal(cupy.asnumpy(gpu), cpu)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_cc_2d_and_float_equals_cpu(connectivity):
    a = _volume((130, 97), dtype=np.float32) * np.float32(0.5)
    cpu, n_cpu = connected_components(a, connectivity)
    gpu, n_gpu = connected_components(cupy.asarray(a), connectivity)
    assert n_gpu == n_cpu
    np.testing.assert_array_equal(cupy.asnumpy(gpu), cpu)


def test_cc_large_dense_volume():
    # many threads racing on the same trees
    a = _volume((160, 160, 160), n_labels=2, density=0.9, seed=1, dtype=np.uint64)
    cpu, n_cpu = connected_components(a, 26)
    gpu, n_gpu = connected_components(cupy.asarray(a), 26)
    assert n_gpu == n_cpu
    np.testing.assert_array_equal(cupy.asnumpy(gpu), cpu)


def test_label_chunked_on_gpu_equals_cpu():
    a = _volume((40, 33, 27), seed=2)
    arr = da.from_array(a, chunks=(16, 11, 9))
    cpu = label_chunked(arr, 26)
    gpu = label_chunked(arr, 26, device="gpu")
    assert gpu.n == cpu.n
    np.testing.assert_array_equal(gpu.data.compute(), cpu.data.compute())
    sl = (slice(16, 32), slice(11, 22), slice(0, 9))
    np.testing.assert_array_equal(cupy.asnumpy(gpu.relabel(sl, cupy.asarray(a[sl]))),
                                  cpu.data.compute()[sl])


def test_region_stats_equal_cpu():
    a = _volume((30, 31, 32), n_labels=9, seed=3, dtype=np.int64) * 1000
    arr = da.from_array(a, chunks=12)
    c, g = region_stats(arr), region_stats(arr, device="gpu")
    for name in ("ids", "counts", "bbox_min", "bbox_max", "first_index"):
        np.testing.assert_array_equal(getattr(g, name), getattr(c, name))
    one = chunk_region_stats(cupy.asarray(a[:5]), (3, 0, 0), (40, 31, 32))
    np.testing.assert_array_equal(one.first_index,
                                  chunk_region_stats(a[:5], (3, 0, 0), (40, 31, 32)).first_index)


@pytest.mark.parametrize("percentile", [None, 95])
def test_hausdorff_equals_cpu(percentile):
    rng = np.random.default_rng(4)
    a, b = rng.random((20, 25, 30)) < 0.03, rng.random((20, 25, 30)) < 0.03
    v = (8.0, 4.0, 4.0)
    assert hausdorff(cupy.asarray(a), cupy.asarray(b), v, percentile=percentile) == \
        pytest.approx(hausdorff(a, b, v, percentile=percentile), rel=1e-6)
