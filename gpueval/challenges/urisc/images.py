"""U-RISC's report pictures: the membrane agreement map of the worst image (lowest F).

The map is read band by band (as the scorer reads it) and pooled to at most ``max_side`` px;
the colour of a block is the mean colour of its membrane pixels, so a block with any membrane
stays visible. Colours are :mod:`gpueval.pictures`' (grey both, red predicted only, blue GT
only).

Choice (pictures are diagnostics, not scores): prediction membrane = value < 128; the ``bold``
variant's dilation is not drawn.
"""

from __future__ import annotations

import numpy as np

from gpueval.challenges.urisc.imread import _GreyImage
from gpueval.challenges.urisc.layout import _Submission, _truth_files
from gpueval.challenges.urisc.options import _Options
from gpueval.pictures import Images, agreement_rgb, pool_colours
from gpueval.pictures import pool_factor as _step
from gpueval.pictures import run_config as _config
from gpueval.pictures import worst as _worst
from gpueval.result import Result


def urisc_images(result: Result, truth, submission, config=None, *, max_side: int = 1024
                 ) -> Images:
    """Membrane agreement map of the worst image (lowest F), pooled to ``max_side`` px.

    Membrane: GT ``≤ gt_threshold`` (any value < 255 when the variant has no threshold);
    prediction: value < 128 (weight ``255 - value`` above one half). Rows are read in bands
    (as the scorer reads them), so peak memory is one band, not the image.
    """
    item = _worst(result.items, lambda it: it.get("f1"))
    if item is None:
        return []
    opts = _Options.from_config(_config("urisc", config))
    stem = str(item["id"])
    gt_files = _truth_files(truth)
    if stem not in gt_files:
        return []
    with _Submission(submission, opts) as sub:
        if stem not in sub.stems:
            return []
        with sub.spooled([stem]) as paths:
            gt = _GreyImage(gt_files[stem], truth=True)
            pred = _GreyImage(paths[stem], name=sub.display_name(stem))
            rgb = _urisc_map(gt, pred, opts.gt_threshold, max_side, opts.band_bytes)
    f = _step(gt.shape, max_side)
    return [(f"{stem}: membrane agreement, F = {item['f1']:.3f} (worst image; grey both, "
             f"red predicted only, blue GT only; 1:{f})", rgb)]


def _urisc_map(gt, pred, threshold, max_side: int, band_bytes: int) -> np.ndarray:
    rows, cols = gt.shape
    f = _step(gt.shape, max_side)
    band = f * max(1, band_bytes // max(cols * f, 1))
    out = []
    for a in range(0, rows, band):
        b = min(rows, a + band)
        g = gt.rows(a, b)
        gm = g <= threshold if threshold is not None else g != 255
        pm = pred.rows(a, b) < 128
        rgb, fg = agreement_rgb(gm, pm)
        out.append(pool_colours(rgb, fg, f))
    return np.concatenate(out, axis=0)
