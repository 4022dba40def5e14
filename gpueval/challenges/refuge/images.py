"""REFUGE's report pictures: disc and cup agreement maps of the worst image.

The worst image is the submitted mask with the lowest disc + cup Dice (items without both
Dice values finite are skipped); its two masks are read again, exactly as the scorer read them
(:func:`~gpueval.challenges.refuge.layout.read_mask`), and each map is pooled to at most
``max_side`` px (colour of a block = mean colour of its region pixels, so thin rims stay
visible). Colours as :mod:`gpueval.pictures`: grey both, red predicted only, blue ground truth
only. Pictures are diagnostics, not scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpueval.challenges.refuge.layout import _open_submission, read_mask
from gpueval.challenges.refuge.options import _Options
from gpueval.challenges.refuge.truth import load_truth
from gpueval.pictures import (
    Images,
    agreement_rgb,
    finite,
    pool_colours,
    pool_factor,
    run_config,
    worst,
)
from gpueval.result import Result


def report_images(result: Result, truth: str | Path, submission: str | Path,
                  config: dict[str, Any] | None = None) -> Images:
    """Pictures of where the submission fails, for the HTML report (the challenge protocol's
    ``report_images``; see :func:`refuge_images`)."""
    return refuge_images(result, truth, submission, config)


def refuge_images(result: Result, truth: str | Path, submission: str | Path,
                  config: dict[str, Any] | None = None, *, max_side: int = 512) -> Images:
    """Disc and cup agreement of the worst image (lowest disc + cup Dice), pooled.

    Parameters
    ----------
    result : the scored result (its ``items`` choose the image).
    truth, submission : the paths that were scored.
    config : the config the score ran with (``None``: ``configs/refuge.yaml``).
    max_side : the longest side of a picture, in pixels.

    Returns
    -------
    ``[(title, RGB uint8 array)]``: disc then cup, or ``[]`` when no item has both Dice values
    or the worst image has no ground truth.
    """

    def total(it):
        d, c = it.get("disc_dice"), it.get("cup_dice")
        return d + c if finite(d) and finite(c) else None

    item = worst(result.items, total)
    if item is None:
        return []
    opts = _Options.from_config(run_config("refuge", config))
    gt = load_truth(truth)
    name = str(item["id"])
    if name not in gt.masks:
        return []
    with _open_submission(submission, opts) as sub:
        with sub.open(name, opts.max_image_bytes) as f:
            g = read_mask(gt.masks[name], opts=opts, truth=True)
            p = read_mask(f, name=f"segmentation/{name}", opts=opts, expected_shape=g.shape)
    f = pool_factor(g.shape, max_side)
    out: Images = []
    for part, gm, pm, dice in (
            ("disc", g < opts.background_value, p < opts.background_value, item["disc_dice"]),
            ("cup", g == opts.cup_value, p == opts.cup_value, item["cup_dice"])):
        rgb, fg = agreement_rgb(gm, pm)
        out.append((f"{name}: {part}, Dice {dice:.3f} (worst image; grey both, red "
                    f"predicted only, blue GT only; 1:{f})", pool_colours(rgb, fg, f)))
    return out
