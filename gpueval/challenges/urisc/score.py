"""U-RISC membrane segmentation: per-image membrane F-score, mean over images.

Spec: ``shared/specs/urisc.md``; constants in ``configs/urisc.yaml``. Variants (``--set
variant=NAME``), each with its own ``metric_version``:

=================  ===========================================================================
``2019-12-25``     final leaderboard (default): GT membrane ⇔ GT ≤ 122, radius 0
``bold``           pre-2019-12-25 "bold edges": both maps dilated by ``disk(radius)``
                   (``--set radius=R``, default 0; the server's radius is unknown); GT binarised
                   at 122 as well (the old binarisation order is not documented)
``released-script`` ``eval.py`` verbatim: no GT binarisation (grey GT weights recall, spec §4);
                   ``radius`` as ``bound_pix``
=================  ===========================================================================

``radius`` other than 0 is refused for the default variant (see
:mod:`~gpueval.challenges.urisc.options`).

The submission is found and checked by :mod:`~gpueval.challenges.urisc.layout`, its images
read as ``cv2.imread(path, 0)`` by :mod:`~gpueval.challenges.urisc.imread`, the constants
checked by :mod:`~gpueval.challenges.urisc.options`; this module composes the band kernels of
:mod:`gpueval.kernels.boundary` into the result.

Decisions where the spec is silent (documented choices)
-------------------------------------------------------
* **Missing image** (GT stem without a submission file): ``missing: reject`` (default) rejects
  the submission naming the stems, as the official folder mode crashes on it; ``missing: zero``
  scores it as an empty prediction (§2.6: P = 1, R = 0, F = 0; F = 1 where the GT image is
  empty too) and counts it in the mean; that is a user warning too, and its item has
  ``status: "missing"``.
* **Value check messages** (:func:`value_problem`): a map without any 255 (0/1, 0/127, all
  0) is refused as "no pixel is background", not as too much membrane; "inverted map?" is only
  suggested when most pixels are membrane. ``format_check: skip`` warns for each such map.
* **Format check** (``format_check: reject``, default): the official check of §2.3 runs on
  every prediction (streamed, histogram per band); its crash cases (no value-0 pixel:
  ``ZeroDivisionError``) are rejections with a reason. ``format_check: skip`` scores any uint8
  map with the official weights ``255 - value`` (what the fixtures' grey rows show).
* ``runtime.voxels`` = GT pixels scored.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
from dask.delayed import delayed

from gpueval import progress as bars
from gpueval.backend import to_device
from gpueval.challenges import config_as_given
from gpueval.challenges.urisc.imread import _GreyImage
from gpueval.challenges.urisc.layout import (
    _check_shapes,
    _groups,
    _listing,
    _Submission,
    _truth_files,
)
from gpueval.challenges.urisc.options import _Options
from gpueval.engine import compute, timed, tree_reduce
from gpueval.errors import Rejected, TruthError
from gpueval.kernels.boundary import (
    BoundaryCounts,
    band_counts,
    format_problem,
    precision_recall_f,
    tolerance_match_counts,
    value_histogram,
)
from gpueval.notices import warn
from gpueval.result import Result

CHALLENGE = "urisc"


# ---------------------------------------------------------------------------------------------
# public interface


def score(truth: str | Path, submission: str | Path, config: dict[str, Any], *,
          device: str = "cpu", scheduler: Any = None, progress: bool = False) -> Result:
    """Score one U-RISC submission (pure: same inputs and config → same result).

    Parameters
    ----------
    truth : GT folder (``<stem>.png|.tif|.tiff``) or one GT image.
    submission : folder or ``.zip`` of ``<stem>.tiff`` (or one TIFF).
    config : resolved ``configs/urisc.yaml`` (:func:`gpueval.config.load_config`).
    device : ``"cpu"`` or ``"gpu"`` (bands are moved to CuPy).
    scheduler : ``None`` (threads) or a ``dask.distributed`` address/Client. Zip members are
        spooled to a local temporary folder, so a remote cluster needs a folder submission.

    Returns
    -------
    Result with ``score`` = mean per-image F, ``metrics`` (``f1``, ``mean_precision``,
    ``mean_recall``, ``n_images``, pooled values) and one item per GT stem (``precision``,
    ``recall``, ``f1``, ``tp``, ``tp_gt``, ``n_pred``, ``n_gt`` in pixels).

    Raises
    ------
    Rejected : bad submission (format, size, missing images, unsafe zip).
    TruthError : unusable GT folder or configuration.
    """
    opts = _Options.from_config(config)
    gt_files = _truth_files(truth)
    items: list[dict[str, Any]] = []
    totals = BoundaryCounts()
    notes: list[str] = []
    with _Submission(submission, opts) as sub, contextlib.ExitStack() as stack:
        notes += sub.notes(gt_files, warn_user=True)
        missing = [s for s in gt_files if s not in sub.stems]
        if missing and opts.missing == "reject":
            raise Rejected(f"{len(missing)} of {len(gt_files)} images missing from the "
                           f"submission: {_listing(missing)} (expected <stem>.tiff per GT image)")
        present = [s for s in gt_files if s in sub.stems]
        bar = stack.enter_context(bars.phase("images", total=len(present), unit="image"))
        for group in _groups(present, gt_files, opts):
            bar.set_item(group[0] if len(group) == 1 else f"{group[0]} (+{len(group) - 1})")
            with sub.spooled(group) as pred_paths:
                pairs = [(s, _GreyImage(gt_files[s], truth=True),
                          _GreyImage(pred_paths[s], name=sub.display_name(s))) for s in group]
                counts = _score_pairs(pairs, opts, device, scheduler, progress)
                for (stem, gt_img, pred_img), c in zip(pairs, counts, strict=True):
                    problem = value_problem(c.pred_hist, pred_img.name,
                                            min_background_ratio=opts.min_background_ratio)
                    if problem and opts.format_check == "reject":
                        raise Rejected(problem)
                    if problem:
                        warn(f"{problem}; scored anyway with grey weights 255 - value "
                             "(format_check=skip; the official check would refuse it)")
                    item = _item(stem, c)
                    if opts.tolerance_px is not None:
                        item.update(_tolerance_item(gt_img, pred_img, opts))
                    items.append(item)
                    totals = BoundaryCounts.combine([totals, c])
            bar.update(len(group))
        for stem in missing:  # missing == "zero": scored as an empty prediction
            gt_img = _GreyImage(gt_files[stem], truth=True)
            c = _score_pairs([(stem, gt_img, None)], opts, device, scheduler, False)[0]
            item = {**_item(stem, c), "status": "missing"}
            items.append(item)
            totals = BoundaryCounts.combine([totals, c])
            notes.append(f"{stem}: missing, scored as an empty prediction")
            warn(f"{stem}: no {stem}.tiff in the submission, scored as an empty prediction "
                 f"(F = {item['f1']}, counted in the mean, missing=zero); add {stem}.tiff")
    items.sort(key=lambda it: it["id"])
    metrics = _aggregate(items, totals)
    result = Result(CHALLENGE, str(config["metric_version"]), score=metrics["f1"],
                    metrics=metrics, items=items)
    result.runtime["voxels"] = int(totals.pixels)
    result.extra["variant"] = opts.variant
    if notes:
        result.extra["notes"] = notes
    return result


def validate(submission: str | Path, config: dict[str, Any], *,
             truth: str | Path | None = None) -> list[str]:
    """Format checks only (no scoring): readable TIFFs, binary 0/255, membrane ≤ 1/6, and with
    ``truth`` also stems and sizes. Returns notes; raises :class:`Rejected` on the first problem.
    """
    opts = _Options.from_config(config)
    gt_files = _truth_files(truth) if truth is not None else None
    notes: list[str] = []
    with _Submission(submission, opts) as sub:
        stems = sorted(sub.stems)
        if not stems:
            raise Rejected("no .tiff image in the submission")
        if gt_files is not None:
            notes += sub.notes(gt_files, warn_user=True)
            missing = [s for s in gt_files if s not in sub.stems]
            if missing and opts.missing == "reject":
                raise Rejected(f"{len(missing)} images missing from the submission: "
                               f"{_listing(missing)}")
            for stem in missing:
                warn(f"{stem}: no {stem}.tiff in the submission, would be scored as an empty "
                     f"prediction (missing=zero); add {stem}.tiff")
            stems = [s for s in stems if s in gt_files]
        elif sub.ignored:
            notes += sub.notes({s: Path(s) for s in sub.stems}, warn_user=True)
        sizes = {s: 1 for s in stems}
        for group in _groups(stems, sizes, opts, by_count=True):
            with sub.spooled(group) as paths:
                imgs = [_GreyImage(paths[s], name=sub.display_name(s)) for s in group]
                if gt_files is not None:
                    for s, img in zip(group, imgs, strict=True):
                        _check_shapes(_GreyImage(gt_files[s], truth=True), img)
                hists = _histograms(imgs, opts)
                for img, h in zip(imgs, hists, strict=True):
                    problem = value_problem(h, img.name,
                                            min_background_ratio=opts.min_background_ratio)
                    if problem and opts.format_check == "reject":
                        raise Rejected(problem)
                    if problem:
                        notes.append(problem)
                        warn(f"{problem}; would be scored anyway with grey weights 255 - value "
                             "(format_check=skip; the official check would refuse it)")
    notes.insert(0, f"{len(stems)} prediction images checked: binary 0/255, membrane at most "
                    f"1/{opts.min_background_ratio + 1} of each image")
    return notes


def value_problem(pred_hist: np.ndarray, name: str, *, min_background_ratio: int = 5
                  ) -> str | None:
    """Why a prediction fails the official format check (spec §2.3), with the real reason.

    Same verdict as :func:`gpueval.kernels.boundary.format_problem` (the official check:
    at most two values, ``#255 >= ratio · #0``), but a map without any background pixel
    (value 255) — a 0/1 or 0/127 map, or all membrane — is named as such instead of as "too
    much membrane (inverted map?)", and "inverted map?" is only suggested when most pixels
    are membrane.

    Parameters
    ----------
    pred_hist : 256-bin histogram of the stored prediction values.
    name : the submission-relative file name, for the message.
    min_background_ratio : official ``#background / #membrane`` minimum (5).

    Returns
    -------
    A one-line reason, or ``None`` when the map passes.
    """
    values = np.flatnonzero(pred_hist)
    listed = ", ".join(map(str, values[:6])) + (" ..." if len(values) > 6 else "")
    if len(values) <= 2 and pred_hist[255] == 0 and pred_hist[0] > 0:
        if len(values) == 1:
            return (f"{name}: every pixel is 0 (membrane), no pixel is background (255); "
                    "expected 255 = background, 0 = membrane")
        return (f"{name}: no pixel is background: values are {listed} and none is 255; "
                "expected 255 = background, 0 = membrane (rescale a 0/1 or 0/127 map to "
                "0/255)")
    problem = format_problem(pred_hist, name, min_background_ratio=min_background_ratio)
    if problem and problem.endswith("(inverted map?)"):
        membrane = int(pred_hist[0])
        if 2 * membrane <= int(pred_hist.sum()):  # mostly background: too thick, not inverted
            problem = problem[: -len(" (inverted map?)")] + " (membranes too thick?)"
    return problem


# the protocol's resolve_config: a copy (U-RISC's ``variant`` is read by its options)
resolve_config = config_as_given


# ---------------------------------------------------------------------------------------------
# the chunked computation


def _band_edges(rows: int, cols: int, storage_rows: int, opts: _Options) -> list[tuple[int, int]]:
    target = max(1, opts.band_bytes // max(cols, 1))
    step = max(storage_rows, -(-target // storage_rows) * storage_rows) if storage_rows else target
    return [(a, min(rows, a + step)) for a in range(0, rows, step)]


@timed("kernel")
def _band_task(gt: _GreyImage, pred: _GreyImage | None, a: int, b: int, radius: int,
               gt_threshold: int | None, device: str) -> BoundaryCounts:
    lo, hi = max(0, a - radius), min(gt.shape[0], b + radius)
    g = gt.rows(lo, hi)
    p = pred.rows(lo, hi) if pred is not None else np.full_like(g, 255)
    return band_counts(to_device(g, device), to_device(p, device), radius=radius,
                       gt_threshold=gt_threshold, top=a - lo, bottom=hi - b)


@timed("kernel")
def _hist_task(img: _GreyImage, a: int, b: int) -> np.ndarray:
    return value_histogram(img.rows(a, b))


def _score_pairs(pairs, opts: _Options, device: str, scheduler: Any, progress: bool
                 ) -> list[BoundaryCounts]:
    graphs = []
    task = delayed(_band_task, pure=True)
    for _stem, gt, pred in pairs:
        if pred is not None:
            _check_shapes(gt, pred)
        if gt.size > opts.max_image_pixels:
            raise TruthError(f"{gt.name}: {gt.size} pixels, over limits.max_image_pixels")
        storage = max(gt.storage_rows, pred.storage_rows if pred is not None else 1)
        parts = [task(gt, pred, a, b, opts.radius, opts.gt_threshold, device)
                 for a, b in _band_edges(gt.shape[0], gt.shape[1], storage, opts)]
        graphs.append(tree_reduce(parts, BoundaryCounts.combine))
    return list(compute(*graphs, scheduler=scheduler, progress=progress))


def _histograms(imgs: list[_GreyImage], opts: _Options) -> list[np.ndarray]:
    task = delayed(_hist_task, pure=True)
    graphs = [tree_reduce([task(img, a, b) for a, b in
                           _band_edges(img.shape[0], img.shape[1], img.storage_rows, opts)],
                          _sum_arrays) for img in imgs]
    return list(compute(*graphs))


def _sum_arrays(parts: list[np.ndarray]) -> np.ndarray:
    return np.sum(parts, axis=0)


# ---------------------------------------------------------------------------------------------
# results


def _item(stem: str, c: BoundaryCounts) -> dict[str, Any]:
    p, r, f = precision_recall_f(c.tp_pred, c.tp_gt, c.n_pred, c.n_gt)
    px = c.pixel_counts()
    return {"id": stem, "precision": p, "recall": r, "f1": f, "tp": px["tp_pred"],
            "tp_gt": px["tp_gt"], "n_pred": px["n_pred"], "n_gt": px["n_gt"]}


def _tolerance_item(gt: _GreyImage, pred: _GreyImage, opts: _Options) -> dict[str, Any]:
    """Extra, non-official BSDS-style one-to-one matching within ``tolerance_px``."""
    if gt.size > opts.tolerance_max_pixels:
        return {"tolerance_f1": None}
    g = gt.rows(0, gt.shape[0])
    gm = g <= opts.gt_threshold if opts.gt_threshold is not None else g != 255
    matched, n_pred, n_gt = tolerance_match_counts(gm, pred.rows(0, pred.shape[0]) != 255,
                                                   opts.tolerance_px)
    p, r, f = precision_recall_f(matched, matched, n_pred, n_gt)
    return {"tolerance_precision": p, "tolerance_recall": r, "tolerance_f1": f,
            "tolerance_matched": matched}


def _aggregate(items: list[dict[str, Any]], totals: BoundaryCounts) -> dict[str, Any]:
    def mean(key):
        vals = [it[key] for it in items if it.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    p, r, f = precision_recall_f(totals.tp_pred, totals.tp_gt, totals.n_pred, totals.n_gt)
    metrics = {"f1": mean("f1"), "mean_precision": mean("precision"),
               "mean_recall": mean("recall"), "n_images": len(items),
               "pooled_precision": p, "pooled_recall": r, "pooled_f1": f}
    if items and "tolerance_f1" in items[0]:
        metrics["tolerance_f1"] = mean("tolerance_f1")
    return metrics
