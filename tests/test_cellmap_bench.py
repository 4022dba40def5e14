"""The cellmap_instance bench workload runs at a tiny scale and its check holds."""

from __future__ import annotations

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
