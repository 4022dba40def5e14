"""The ``rescore_urisc`` bench workload at a tiny scale: every run agrees, all scored."""

from __future__ import annotations

from gpueval.bench import load_all
from gpueval.bench.rescore import sizes


def test_sizes_follow_the_scale():
    assert sizes(1.0) == (100, 1024)
    n, side = sizes(0.01)
    assert n == 10 and side % 16 == 0 and 300 < side < 340
    assert sizes(1e-6) == (4, 64)


def test_rescore_urisc_workload_tiny():
    wl = load_all()["rescore_urisc"]
    rec = wl.func("cpu", 0.0004)
    assert rec["check"] is True
    assert rec["submissions"] == 4 and rec["image_side"] == 144
    assert rec["voxels"] == 4 * 3 * 144 * 144
    for key in ("in_process", "1_worker", "2_workers"):
        assert rec[f"submissions_per_min_{key}"] > 0


def test_rescore_resume_workload_tiny():
    rec = load_all()["rescore_resume_urisc"].func("cpu", 0.004)
    assert rec["check"] is True and rec["submissions"] == 4
    assert rec["resume_seconds"] > 0 and rec["leaderboard_seconds"] > 0
