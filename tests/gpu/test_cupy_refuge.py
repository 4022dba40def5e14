"""REFUGE per-image counts on the GPU equal the CPU path."""

from __future__ import annotations

import numpy as np
import pytest

from gpueval.challenges.refuge import mask_counts

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_counts_cupy_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    gt = rng.choice(np.array([0, 128, 255], np.uint8), (97, 131), p=[0.1, 0.2, 0.7])
    pred = rng.choice(np.array([0, 100, 128, 255], np.uint8), (97, 131))
    cpu = mask_counts(pred, gt)
    gpu = mask_counts(cupy.asarray(pred), cupy.asarray(gt))
    assert gpu == cpu


def test_mask_counts_cupy_empty_masks():
    z = np.full((5, 7), 255, np.uint8)
    assert mask_counts(cupy.asarray(z), cupy.asarray(z)) == mask_counts(z, z)
