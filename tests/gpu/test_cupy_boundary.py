"""CuPy twin of the boundary kernel: same exact counts as the NumPy path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")

from gpueval.kernels.boundary import (  # noqa: E402
    band_counts,
    boundary_counts,
    dilate_disk,
    value_histogram,
)

FIX = Path(__file__).parents[1] / "fixtures" / "urisc"
SCORES = json.loads((FIX / "scores.json").read_text())


def _same(a, b):
    for k in ("n_pred", "n_gt", "tp_pred", "tp_gt", "pixels"):
        assert getattr(a, k) == getattr(b, k), k
    np.testing.assert_array_equal(a.pred_hist, b.pred_hist)
    np.testing.assert_array_equal(a.gt_hist, b.gt_hist)


@pytest.mark.parametrize("radius", [0, 1, 3])
@pytest.mark.parametrize("threshold", [122, None])
@pytest.mark.parametrize("name", sorted(SCORES["cases"]))
def test_fixture_cases_gpu_equals_cpu(name, radius, threshold):
    z = np.load(FIX / f"{name}.npz", allow_pickle=False)
    gt, pred = z["gt"], z["pred"]
    cpu = boundary_counts(gt, pred, radius=radius, gt_threshold=threshold, band_rows=70)
    gpu = boundary_counts(cupy.asarray(gt), cupy.asarray(pred), radius=radius,
                          gt_threshold=threshold, band_rows=70)
    _same(cpu, gpu)


@pytest.mark.parametrize("seed", range(5))
def test_random_bands_and_dilation(seed):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, (97, 61)).astype(np.uint8)
    pred = np.where(rng.random((97, 61)) < 0.1, 0, 255).astype(np.uint8)
    for r in range(5):
        m = gt < 30
        np.testing.assert_array_equal(dilate_disk(m, r),
                                      cupy.asnumpy(dilate_disk(cupy.asarray(m), r)))
        _same(band_counts(gt, pred, radius=r, gt_threshold=None, top=r, bottom=r),
              band_counts(cupy.asarray(gt), cupy.asarray(pred), radius=r, gt_threshold=None,
                          top=r, bottom=r))
    np.testing.assert_array_equal(value_histogram(gt), value_histogram(cupy.asarray(gt)))


def test_score_on_gpu_equals_cpu(tmp_path):
    import tifffile
    from PIL import Image

    from gpueval import api

    z = np.load(FIX / "repo_examples.npz", allow_pickle=False)
    (tmp_path / "gt").mkdir()
    (tmp_path / "sub").mkdir()
    for k in ("1", "2"):
        Image.fromarray(z[f"gt_{k}"]).save(tmp_path / "gt" / f"{k}.png")
        tifffile.imwrite(tmp_path / "sub" / f"{k}.tiff", z[f"pred_{k}"])
    for sets in ([], ["variant=bold", "radius=2"], ["variant=released-script"]):
        cpu = api.score("urisc", tmp_path / "gt", tmp_path / "sub", overrides=sets, device="cpu")
        gpu = api.score("urisc", tmp_path / "gt", tmp_path / "sub", overrides=sets, device="gpu")
        assert gpu.items == cpu.items and gpu.score == cpu.score
