"""The CuPy twins' array logic, run on NumPy through ``tests/emulated/fake_cupy.py``.

Not a GPU verification (see that module): it keeps the GPU code paths from rotting between
sessions that have a device. Each test feeds the same data to the CPU twin and, as fake device
arrays, to the GPU twin, and asserts identical statistics.
"""

import numpy as np
import pytest
from emulated import fake_cupy


@pytest.fixture
def cp(monkeypatch):
    return fake_cupy.install(monkeypatch)


def test_fake_arrays_count_as_device_arrays(cp):
    from gpueval.backend import is_cupy

    assert is_cupy(cp.asarray(np.zeros(3))) and not is_cupy(np.zeros(3))


def test_contingency_twin(cp):
    from gpueval.kernels.stats import contingency

    rng = np.random.default_rng(0)
    a = rng.integers(0, 30, (20, 20, 20)).astype(np.uint64)
    b = rng.integers(0, 9, (20, 20, 20)).astype(np.int32)
    host, dev = contingency(a, b), contingency(cp.asarray(a), cp.asarray(b))
    for x, y in ((host.ids_a, dev.ids_a), (host.ids_b, dev.ids_b), (host.counts, dev.counts)):
        np.testing.assert_array_equal(x, np.asarray(y))


def test_confusion_twin(cp):
    from gpueval.kernels.stats import confusion_matrix

    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 4, 1000).astype(np.uint8), rng.integers(0, 4, 1000).astype(np.uint8)
    np.testing.assert_array_equal(confusion_matrix(a, b, 4),
                                  confusion_matrix(cp.asarray(a), cp.asarray(b), 4))


def test_engine_moves_chunks_to_the_device(cp):
    import dask.array as da

    from gpueval.backend import is_cupy
    from gpueval.engine import map_reduce

    seen = map_reduce(lambda x: [is_cupy(x)], [da.zeros((8, 8), chunks=4)],
                      lambda parts: sum(parts, []), device="gpu")
    assert seen == [True] * 4


@pytest.mark.parametrize("radius,threshold", [(0, 122), (2, 122), (1, None)])
def test_urisc_boundary_twin(cp, radius, threshold):
    from gpueval.kernels.boundary import boundary_counts

    rng = np.random.default_rng(2)
    gt = np.where(rng.random((60, 50)) < 0.1, 0, 255).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.05] = 100  # grey GT values
    pred = np.where(rng.random((60, 50)) < 0.1, 0, 255).astype(np.uint8)
    host = boundary_counts(gt, pred, radius=radius, gt_threshold=threshold, band_rows=17)
    dev = boundary_counts(cp.asarray(gt), cp.asarray(pred), radius=radius,
                          gt_threshold=threshold, band_rows=17)
    assert host.pixel_counts() == dev.pixel_counts()


def test_gpu_test_files_pass_under_emulation():
    """Every ``tests/gpu`` file, run with CuPy emulated by NumPy (see ``tests/conftest.py``)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    env = dict(os.environ, GPUEVAL_EMULATE_GPU="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(here / "gpu")], cwd=here.parent, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout.splitlines()[-1]
