"""GPU settings of a scoring call: the memory-pool cap from ``limits.gpu_memory_bytes``."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")

from gpueval import api  # noqa: E402


def _pair(tmp_path):
    gt = np.full((64, 80), 255, np.uint8)
    gt[::8] = 0
    (tmp_path / "gt").mkdir()
    (tmp_path / "sub").mkdir()
    Image.fromarray(gt).save(tmp_path / "gt" / "a.png")
    tifffile.imwrite(tmp_path / "sub" / "a.tiff", gt)
    return tmp_path / "gt", tmp_path / "sub"


def test_score_on_gpu_sets_the_configured_pool_cap(tmp_path):
    pool = cupy.get_default_memory_pool()
    before = pool.get_limit()
    gt, sub = _pair(tmp_path)
    try:
        res = api.score("urisc", gt, sub, device="gpu",
                        overrides=["limits.gpu_memory_bytes=1073741824"])
        assert res.status == "ok" and res.score == 1.0
        assert pool.get_limit() == 2**30
        api.score("urisc", gt, sub, device="gpu")  # default 0: no cap
        assert pool.get_limit() == 0
    finally:
        pool.set_limit(size=before)
