"""The cellmap_instance bench workload runs at a tiny scale and its check holds."""

from __future__ import annotations

import numpy as np
import pytest

from gpueval.bench.cellmap import bench_cellmap_instance


def test_bench_tiny_scale():
    rec = bench_cellmap_instance("cpu", 0.002)
    assert rec["check"] is True
    assert rec["voxels"] > 0 and rec["result"]["status"] == "scored"
    r = rec["result"]
    assert r["n_hausdorff"] == r["tp"] + r["fn"] + r["fp"]


def test_bench_600_tiny_scale():
    from gpueval.bench.cellmap import bench_cellmap_600

    rec = bench_cellmap_600("cpu", 0.001)
    assert rec["check"] is True and rec["result"]["status"] == "scored"
    assert rec["voxels"] == 60 ** 3 and rec["peak_rss_bytes"] > 0


def test_dense_workloads_tiny_scale(monkeypatch):
    # 64³: one chunk per array; the record carries read counts and the 1 / all threads
    # timings (the process run is tests/test_parallel_identity.py's: a cluster start is slow)
    from gpueval.bench import dense
    from gpueval.bench.dense import bench_cellmap_dense, bench_contingency_dense

    monkeypatch.setattr(dense, "MODES", ("threads_1", "threads_all"))
    rec = bench_cellmap_dense("cpu", 0.0625)
    assert rec["check"] is True and rec["voxels"] == 64 ** 3
    r = rec["result"]["instance"]
    assert r["fp"] > 0 and r["fn"] > 0 and r["n_hausdorff"] == r["tp"] + r["fn"] + r["fp"]
    # 6 arrays of one chunk each, every one read once: the instance passes hand the truth
    # and the prediction's labels on (issue 18 session 6: was truth 2 + prediction 3 reads)
    assert rec["chunks_read"] == 6 and rec["chunk_reads"] == 6
    assert rec["parallel"]["identical"] is True and rec["compressed_bytes_read"] > 0
    rec = bench_contingency_dense("cpu", 1 / 32)
    assert rec["check"] is True and rec["chunk_reads"] == 2 and rec["pairs"] > 64


def test_testset_manifest_scaled_keeps_extent():
    # every official row, every axis shrunk, physical extent (voxel size × shape) kept
    from gpueval.bench.dense import _scaled_manifest

    full, small = _scaled_manifest(1.0), _scaled_manifest(0.1)
    assert len(full) == len(small) == 413
    for (c0, _, l0, g0), (c1, _, l1, g1) in zip(full, small, strict=True):
        assert (c0, l0) == (c1, l1)
        assert all(s1 <= max(16, s0) for s0, s1 in zip(g0.shape, g1.shape, strict=True))
        ext0 = [v * s for v, s in zip(g0.voxel_size, g0.shape, strict=True)]
        ext1 = [v * s for v, s in zip(g1.voxel_size, g1.shape, strict=True)]
        assert ext0 == pytest.approx(ext1)
    assert sum(int(np.prod(g.shape)) for *_, g in full) == 87_666_200_000


def test_modes_from_environment(monkeypatch):
    # a large --scale runs one schedule; a misspelt one is an error, not a silent default
    from gpueval.bench.dense import MODES, _modes

    monkeypatch.delenv("GPUEVAL_BENCH_MODES", raising=False)
    assert _modes() == MODES
    monkeypatch.setenv("GPUEVAL_BENCH_MODES", "threads_all")
    assert _modes() == ("threads_all",)
    monkeypatch.setenv("GPUEVAL_BENCH_MODES", "threads_all,thread_1")
    with pytest.raises(ValueError, match="thread_1"):
        _modes()
