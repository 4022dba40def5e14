"""CellMap per-crop scores on the GPU path equal the CPU path (and the official fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")

from gpueval.challenges.cellmap.scoring_2026 import score_instance, score_semantic  # noqa: E402

FIX = Path(__file__).parents[1] / "fixtures" / "cellmap"
SCORES = json.loads((FIX / "scores.json").read_text())
CONSTS = dict(final_instance_ratio_cutoff=10, initial_instance_ratio_cutoff=50,
              instance_ratio_factor=5, max_overlap_edges=5_000_000, mcmf_cost_scale=1_000_000)


@pytest.mark.parametrize("name", ["mixed_errors", "mixed_errors_aniso",
                                  "fp_id_collides_with_fn", "sparse_gt_ids_shared_pred_id"])
@pytest.mark.parametrize("chunks", [-1, 24])
def test_instance_gpu_equals_cpu(name, chunks):
    z = np.load(FIX / f"instance_{name}.npz", allow_pickle=False)
    g = da.from_array(z["gt"], chunks=chunks)
    p = da.from_array(z["pred"], chunks=chunks)
    cpu = score_instance(g, p, z["voxel_size"], CONSTS, device="cpu")
    gpu = score_instance(g, p, z["voxel_size"], CONSTS, device="gpu")
    cpu.pop("_detail"), gpu.pop("_detail")
    # numbers to 1e-12, the rest (``status``) exactly: pytest >= 9.1 refuses approx on str
    assert gpu.keys() == cpu.keys()
    for key, value in cpu.items():
        assert gpu[key] == (pytest.approx(value, rel=1e-12) if isinstance(value, float)
                            else value), key
    off = SCORES["instance"][name]["official"]
    assert gpu["hausdorff_norm_sum"] == pytest.approx(off["hausdorff_norm_sum"], rel=1e-6)


@pytest.mark.parametrize("name", sorted(SCORES["semantic"]))
def test_semantic_gpu(name):
    z = np.load(FIX / f"semantic_{name}.npz", allow_pickle=False)
    g = da.from_array(z["gt"], chunks=32)
    p = da.from_array(z["pred"], chunks=32)
    assert score_semantic(g, p, device="gpu") == SCORES["semantic"][name]["official"]
