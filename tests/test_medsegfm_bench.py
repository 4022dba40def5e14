"""The MedSegFM benchmark workloads run at a tiny scale and agree with their references."""

from __future__ import annotations

import numpy as np

from gpueval.bench import medsegfm as B


def test_nsd_workload_small_agrees_with_surface_distance():
    rec = B.bench_nsd("cpu", 0.001)
    assert rec["check"] is True
    assert rec["voxels"] == int(np.prod(rec["shape"]))
    assert "reference_seconds" not in rec  # the quoted official time is for scale 1 only


def test_instance_workload_small_agrees_with_dense_reference():
    rec = B.bench_instance("cpu", 0.001)
    assert rec["check"] is True
    assert rec["tp"] + rec["fn"] > 0


def test_stray_voxels_make_the_official_crop_the_whole_volume():
    gts, segs = B.organ_case((20, 30, 40))
    for c in range(1, 6):
        idx = np.argwhere((gts == c) | (segs == c))
        assert idx.min(axis=0)[0] == 0 and idx.max(axis=0)[0] == 19
        assert idx.max(axis=0)[1] == 29 and idx.min(axis=0)[1] == 0
