"""CuPy twin of the sparse gather: same values and extrema as the NumPy path."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")

from gpueval.kernels.gather import gather, gather_block  # noqa: E402


def test_gather_block_cupy_equals_numpy():
    rng = np.random.default_rng(0)
    b = rng.integers(0, 2**63, (17, 9, 33), dtype=np.uint64)
    local = np.stack([rng.integers(0, s, 500) for s in b.shape], axis=1)
    got = gather_block(cupy.asarray(b), local)
    assert isinstance(got, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(got), gather_block(b, local))


@pytest.mark.parametrize("extrema", [False, True])
def test_gather_gpu_equals_cpu(extrema):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**40, (40, 50, 30), dtype=np.uint64)
    arr = da.from_array(a, chunks=(16, 20, 7))
    idx = np.stack([rng.integers(0, s, 2000) for s in a.shape], axis=1)
    cpu = gather(arr, idx, device="cpu", with_extrema=extrema)
    gpu = gather(arr, idx, device="gpu", with_extrema=extrema)
    np.testing.assert_array_equal(gpu.values, cpu.values)
    assert gpu.stats == cpu.stats
    assert (gpu.max, gpu.min) == (cpu.max, cpu.min)


def test_xpress_fixture_on_gpu(tmp_path):
    """A whole fixture scored with --device gpu equals the CPU result."""
    from pathlib import Path

    import h5py

    from gpueval.api import score
    from gpueval.io.skeleton import Skeleton, save_skeleton_npz

    fix = Path(__file__).parents[1] / "fixtures" / "xpress" / "mixed.npz"
    with np.load(fix, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    skel = tmp_path / "skel.npz"
    save_skeleton_npz(Skeleton(d["node_ids"], d["node_position_xyz"], d["edges"]), skel)
    sub = tmp_path / "submission.h5"
    with h5py.File(sub, "w") as f:
        ds = f.create_dataset("submission", data=d["segmentation"], chunks=(8, 16, 16))
        ds.attrs["resolution"] = d["voxel_size"]
        ds.attrs["offset"] = d["offset"]
    cpu = score("xpress", skel, sub, overrides={"roi": "none"}, device="cpu")
    gpu = score("xpress", skel, sub, overrides={"roi": "none"}, device="gpu")
    assert gpu.status == cpu.status == "ok"
    assert gpu.metrics == cpu.metrics
