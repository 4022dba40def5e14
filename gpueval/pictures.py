"""Picture helpers shared by the challenges' report images (``challenges/<name>/images.py``).

They sit below the challenges and above nothing but NumPy and the config loader: a challenge's
``report_images(result, truth, submission, config) -> Images`` draws with them, and the report
layer (:mod:`gpueval.report`) only embeds what the challenge returns.

Colours: agreement grey, false positive red, false negative (missed) blue
(:func:`error_overlay`); for instances, split fragments orange and merged objects magenta;
skeleton nodes green (correct), orange (split), magenta (merged).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gpueval.config import load_config

Images = list[tuple[str, np.ndarray]]

GREY = (200, 200, 200)
RED = (220, 40, 40)       # false positive / predicted only
BLUE = (40, 90, 230)      # false negative / truth only
ORANGE = (245, 150, 30)   # split fragment
MAGENTA = (200, 60, 210)  # merged object
GREEN = (40, 190, 70)     # correct skeleton node


def run_config(challenge: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The config the score ran with, or the challenge's default file when none is recorded."""
    if config:
        return dict(config)
    return load_config(challenge)


def finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def worst(items: Sequence[dict], key) -> dict | None:
    """The item with the lowest finite ``key(item)`` (``None`` when there is none)."""
    scored = [(key(it), i) for i, it in enumerate(items)]
    scored = [(v, i) for v, i in scored if finite(v)]
    return items[min(scored)[1]] if scored else None


def pool_colours(rgb: np.ndarray, valid: np.ndarray, factor: int) -> np.ndarray:
    """Downsample an RGB map by ``factor``: each block gets the mean colour of its ``valid``
    pixels (black where it has none), so thin structures survive pooling."""
    if factor <= 1:
        return np.where(valid[..., None], rgb, 0).astype(np.uint8)
    h, w = valid.shape
    ph, pw = -h % factor, -w % factor
    rgb = np.pad(rgb, ((0, ph), (0, pw), (0, 0)))
    valid = np.pad(valid, ((0, ph), (0, pw)))
    hb, wb = rgb.shape[0] // factor, rgb.shape[1] // factor
    v = valid.reshape(hb, factor, wb, factor).sum(axis=(1, 3))
    s = (rgb * valid[..., None]).reshape(hb, factor, wb, factor, 3).sum(axis=(1, 3),
                                                                      dtype=np.int64)
    return (s / np.maximum(v, 1)[..., None]).astype(np.uint8)


def agreement_rgb(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(RGB, foreground) of two binary maps: both grey, predicted only red, truth only blue."""
    rgb = error_overlay(truth, pred)
    return rgb, (np.asarray(truth) > 0) | (np.asarray(pred) > 0)


def label_colours(labels: np.ndarray, dim: float = 0.45) -> np.ndarray:
    """Dimmed pseudo-random colours per id (a hash, so no unique over the slice is needed)."""
    x = labels.astype(np.uint64)
    h = (x * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    rgb = np.stack([(h >> np.uint64(s)) & np.uint64(0xFF) for s in (0, 8, 16)], axis=-1)
    rgb = (60 + rgb.astype(np.float64) * (195 / 255) * dim).astype(np.uint8)
    rgb[labels == 0] = 0
    return rgb


def pool_factor(shape: Sequence[int], max_side: int) -> int:
    return max(1, -(-max(shape) // max_side))

def error_overlay(truth: np.ndarray, pred: np.ndarray, base: np.ndarray | None = None
                  ) -> np.ndarray:
    """RGB slice: agreement grey, false positives red, false negatives blue (binary masks)."""
    t, p = np.asarray(truth) > 0, np.asarray(pred) > 0
    rgb = np.zeros(t.shape + (3,), np.uint8)
    if base is not None:
        rgb[:] = (np.asarray(base, np.float64) / max(float(np.max(base)), 1) * 120)[..., None]
    rgb[t & p] = (200, 200, 200)
    rgb[p & ~t] = (220, 40, 40)
    rgb[t & ~p] = (40, 90, 230)
    return rgb
