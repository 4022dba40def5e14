"""What the resampling tests (tests/test_align.py, tests/test_rescale_graph.py) compare
:func:`gpueval.io.align.rescale` against, and how they watch its blocks."""

from __future__ import annotations

import warnings

import numpy as np
from skimage.transform import rescale as sk_rescale

from gpueval.io import align


def skimage_rescale(img: np.ndarray, scale, instance: bool) -> np.ndarray:
    """The official one-shot call (``shared/specs/cellmap.md`` §4.3): nearest neighbour for
    instance labels, linear then ``> 0.5`` for semantic ones."""
    if instance:
        return sk_rescale(img, scale, order=0, mode="constant", preserve_range=True,
                          anti_aliasing=False).astype(img.dtype)
    src = img.astype(np.float32) if img.dtype == bool else img
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sk_rescale(src, scale, order=1, mode="constant", preserve_range=True) > 0.5


def record_region_sizes(monkeypatch) -> list[int]:
    """A list that fills with the size of every source region a rescaled block gets
    (``align._rescale_block`` wrapped for the test)."""
    sizes: list[int] = []
    original = align._rescale_block

    def recording(region, *args):
        sizes.append(np.asarray(region).size)
        return original(region, *args)

    monkeypatch.setattr(align, "_rescale_block", recording)
    return sizes
