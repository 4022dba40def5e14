"""REFUGE 2018 scoring: optic disc/cup segmentation, glaucoma classification, fovea localisation.

Spec: ``shared/specs/refuge.md``; constants in ``configs/refuge.yaml``; layouts in
``shared/specs/cli.md`` (read by :mod:`.layout` and :mod:`.truth`). ``score`` is null for a
single submission (the official ranking needs all teams:
:func:`gpueval.metrics.ranking.refuge_leaderboard`, used by ``rescore``).

Metrics (spec §2-4)
-------------------
Per mask (decoded by :func:`~gpueval.challenges.refuge.layout.read_mask`): cup = ``== 0``,
disc = ``< 255``, Dice ``2|S∧G|/(|S|+|G|)`` without epsilon, vertical diameter = the largest
per-column pixel count, vCDR = ``d_cup / (d_disc + 1e-7)``, error = ``|vCDR_pred − vCDR_gt|``.
Means over the ``.bmp`` files (lower-case extension, as the official listing) directly in
``segmentation/``. AUC and sensitivity at specificity 0.85 by
:mod:`gpueval.metrics.classification` (``--set sensitivity=official|tie-robust``). Fovea: mean
Euclidean distance over the submitted rows.

``compat`` (the official code's failure cases, spec §2 and the 2018 readers)
--------------------------------------------------------------------------
=======================================  =========================  ==========================
case                                     ``official`` (default)     ``corrected``
=======================================  =========================  ==========================
both cup (or disc) masks of an image     that Dice is NaN and the   Dice = 1 (two empty masks
empty (0/0)                              whole segmentation entry   agree perfectly)
                                         (3 means) is NaN
submitted mask without ground truth      whole segmentation NaN     ignored, noted
classification row naming an unknown     classification NaN         ignored, noted
image, or row count ≠ ground truth's
ground-truth image missing from          classification NaN (row    rejected (AUC over a
classification_results.csv               count differs)             subset is gameable)
duplicate classification/fovea names     scored as the official     rejected
                                         code does (each row)
fovea row naming an unknown image        fovea NaN                  ignored, noted
=======================================  =========================  ==========================

Every NaN of this table comes with its reason in ``extra["notes"]`` and as a user warning
(:func:`gpueval.notices.warn`, the result's ``warnings``), as does every ignored file (masks
that are not ``*.bmp``, CSV files with other names, a second fovea file), ignored row and a
data-looking CSV header row (the file-level ones are raised in :mod:`.layout`); ``validate``
warns the same where it can tell. Ground-truth images without a submitted mask or fovea row
are not scored (official: the submission's list rules). Format errors a person can fix are
rejected in both modes (listed in :mod:`.layout`).

Scoring runs on the CPU threads of this process (``limits.workers``); per image it is a few
counting reductions (:func:`mask_counts`, NumPy or CuPy by the array type; ``device="gpu"``
moves each decoded mask to the GPU). ``scheduler`` is not used: the work is bounded by image
decoding, and masks are small. ``runtime.voxels`` = submitted mask pixels scored.

Progress (:mod:`gpueval.progress`): one bar weighted by the bytes of the ground-truth masks to
score (uncompressed BMPs: bytes track pixels), naming the phase and the current image:
``reading`` (decoding both masks), ``segmentation`` (the counts), then ``classification``
and ``fovea`` (their CSV files).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gpueval import progress as bars
from gpueval.backend import array_module, to_device
from gpueval.challenges import config_as_given
from gpueval.challenges.refuge.layout import (
    CLASSIFICATION_FILE,
    FOVEA_FILES,
    SEGMENTATION_DIR,
    _classification_rows,
    _fovea_rows,
    _listing,
    _mask_header,
    _mask_header_path,
    _open_submission,
    _Submission,
    read_mask,
)
from gpueval.challenges.refuge.options import _Options
from gpueval.challenges.refuge.truth import MASK_DIR, RefugeTruth, load_truth
from gpueval.errors import Rejected
from gpueval.metrics.classification import roc_auc, sensitivity_at_specificity
from gpueval.notices import warn
from gpueval.result import Result

CHALLENGE = "refuge"
_NAN = float("nan")


# --------------------------------------------------------------------------------------------
# Public entry points


def score(truth: str | Path, submission: str | Path, config: dict[str, Any], *,
          device: str = "cpu", scheduler: Any = None, progress: bool = False) -> Result:
    """Score one REFUGE submission (layouts: :mod:`.layout` and :mod:`.truth`; rules: the
    module docstring).

    Returns
    -------
    Result with ``score=None``; ``metrics``: ``mean_disc_dice``, ``mean_cup_dice``,
    ``vcdr_mae``, ``auc``, ``sensitivity_at_085_specificity``, ``fovea_mean_distance``;
    ``items``: one per submitted mask, ``id`` = its file name.
    """
    opts = _Options.from_config(config)
    gt = load_truth(truth)
    notes = list(gt.notes)
    with _open_submission(submission, opts) as sub:
        notes += sub.notes
        with bars.phase("reading", total=_mask_bytes(gt, sub), unit="B") as bar:
            seg, items, pixels = _score_segmentation(gt, sub, opts, device, notes, bar)
            bar.describe("classification", sub.classification or None)
            cls = _score_classification(gt, sub, opts, notes)
            bar.describe("fovea", sub.fovea or None)
            fov, distances = _score_fovea(gt, sub, opts, notes)
    result = Result(CHALLENGE, str(config["metric_version"]), score=None,
                    metrics={**seg, **cls, **fov}, items=items)
    result.runtime["voxels"] = pixels
    result.extra["notes"] = notes
    result.extra["fovea_distances"] = distances
    result.extra["compat"] = opts.compat
    result.extra["sensitivity_rule"] = opts.sensitivity
    return result


def validate(submission: str | Path, config: dict[str, Any], *,
             truth: str | Path | None = None) -> list[str]:
    """Format checks only: layout, CSV contents, mask headers (and names/sizes against the
    truth when given). Returns notes; raises :class:`~gpueval.errors.Rejected`."""
    opts = _Options.from_config(config)
    gt = load_truth(truth) if truth is not None else None
    notes: list[str] = []
    with _open_submission(submission, opts) as sub:
        notes += sub.notes
        masks = sub.masks()
        if sub.has_segmentation:
            for name in masks:
                with sub.open(name, opts.max_image_bytes) as f:
                    shape = _mask_header(f, name, opts)
                if gt is None:
                    continue
                if name not in gt.masks:
                    notes.append(f"segmentation/{name} has no ground truth")
                    warn(f"{sub.prefix}{SEGMENTATION_DIR}/{name}: no ground truth of that "
                         "name (compat=official scores the whole segmentation NaN); remove or "
                         "rename it")
                    continue
                h, w = _mask_header_path(gt.masks[name], opts)
                if shape != (h, w):
                    raise Rejected(f"segmentation/{name} is {shape[1]}x{shape[0]} pixels but "
                                   f"its ground truth is {w}x{h}")
            notes.append(f"segmentation: {len(masks)} masks")
            if not masks:
                warn(f"{sub.prefix}{SEGMENTATION_DIR}/: no *{opts.extension} mask, segmentation "
                     f"would be NaN; save the masks as {SEGMENTATION_DIR}/<name>"
                     f"{opts.extension}")
        if sub.classification:
            rows = _classification_rows(sub.read(sub.classification, opts.max_csv_bytes),
                                        sub.classification, notes)
            notes.append(f"classification: {len(rows)} rows")
            if gt is not None and gt.labels is not None:
                notes += _coverage("classification", [n.upper() for n, _ in rows],
                                   [n.upper() for n, _ in gt.labels])
        if sub.fovea:
            rows = _fovea_rows(sub.read(sub.fovea, opts.max_csv_bytes), sub.fovea, notes)
            notes.append(f"fovea: {len(rows)} rows")
            if gt is not None and gt.fovea is not None:
                notes += _coverage("fovea", [n for n, _, _ in rows], [n for n, _, _ in gt.fovea])
    return notes


def _coverage(task: str, submitted: list[str], truth: list[str]) -> list[str]:
    known, given = set(truth), set(submitted)
    out = []
    unknown = sorted(given - known)
    missing = sorted(known - given)
    if unknown:
        out.append(f"{task}: {len(unknown)} name(s) not in the ground truth ({_listing(unknown)})"
                   " — compat=official scores this task NaN")
        warn(out[-1] + "; fix or remove those rows")
    if missing:
        out.append(f"{task}: {len(missing)} ground-truth image(s) without a row "
                   f"({_listing(missing)})")
        if task == "classification":  # the official code needs one row per image
            warn(out[-1] + " — compat=official scores classification NaN; add their rows")
    if len(given) != len(submitted):
        out.append(f"{task}: {len(submitted) - len(given)} duplicate row(s)")
    return out



# the protocol's resolve_config: a copy (REFUGE has no selector keys)
resolve_config = config_as_given


# --------------------------------------------------------------------------------------------
# Per-image statistics (the only pixel work)


@dataclass(frozen=True)
class MaskCounts:
    """Pixel counts of one prediction/ground-truth pair: enough for Dice and vCDR."""

    cup_pred: int
    cup_gt: int
    cup_both: int
    disc_pred: int
    disc_gt: int
    disc_both: int
    cup_diameter_pred: int
    disc_diameter_pred: int
    cup_diameter_gt: int
    disc_diameter_gt: int


def mask_counts(pred, gt, *, cup_value: int = 0, background_value: int = 255) -> MaskCounts:
    """Counts for one image: cup = ``== cup_value``, disc = ``< background_value``.

    Works on NumPy or CuPy 2-D arrays of equal shape (the module is taken from ``pred``).
    The vertical diameter is the largest number of region pixels in one column (rows are
    the vertical axis), as the official code measures it.
    """
    xp = array_module(pred)
    cup_p, cup_g = pred == cup_value, gt == cup_value
    disc_p, disc_g = pred < background_value, gt < background_value
    values = xp.stack([
        xp.count_nonzero(cup_p), xp.count_nonzero(cup_g), xp.count_nonzero(cup_p & cup_g),
        xp.count_nonzero(disc_p), xp.count_nonzero(disc_g), xp.count_nonzero(disc_p & disc_g),
        _vertical_diameter(cup_p, xp), _vertical_diameter(disc_p, xp),
        _vertical_diameter(cup_g, xp), _vertical_diameter(disc_g, xp),
    ])
    return MaskCounts(*(int(v) for v in values.tolist()))  # one device->host transfer


def _vertical_diameter(mask, xp):
    if mask.size == 0:
        return xp.asarray(0, dtype=xp.int64)
    # Column counts = row-wise vector additions; a 16-bit accumulator (when the column is
    # shorter than 65536) halves the memory traffic of the widest pass of this function.
    acc = xp.uint16 if mask.shape[0] < 2**16 else xp.int64
    return mask.view(xp.uint8).sum(axis=0, dtype=acc).max().astype(xp.int64)


def dice(both: int, a: int, b: int, *, eps: float = 0.0, empty: float = _NAN) -> float:
    """``2·both / (a + b + eps)`` with Python floats; ``empty`` when the denominator is 0
    (the official code raises ``ZeroDivisionError`` there)."""
    denom = float(a) + float(b) + eps
    if denom == 0:
        return empty
    return 2 * float(both) / denom


def vertical_cdr(cup_diameter: int, disc_diameter: int, eps: float = 1e-7) -> float:
    """Vertical cup-to-disc ratio ``d_cup / (d_disc + eps)`` (0 for an empty disc)."""
    return float(cup_diameter) / (float(disc_diameter) + eps)


def segmentation_item(name: str, c: MaskCounts, *, compat: str = "official",
                      vcdr_eps: float = 1e-7, dice_eps: float = 0.0) -> dict[str, Any]:
    """Per-image values from :class:`MaskCounts` (both-empty Dice: NaN, or 1 if corrected)."""
    empty = _NAN if compat == "official" else 1.0
    vcdr_pred = vertical_cdr(c.cup_diameter_pred, c.disc_diameter_pred, vcdr_eps)
    vcdr_gt = vertical_cdr(c.cup_diameter_gt, c.disc_diameter_gt, vcdr_eps)
    return {
        "id": name,
        "disc_dice": dice(c.disc_both, c.disc_pred, c.disc_gt, eps=dice_eps, empty=empty),
        "cup_dice": dice(c.cup_both, c.cup_pred, c.cup_gt, eps=dice_eps, empty=empty),
        "vcdr_error": abs(vcdr_pred - vcdr_gt),
        "vcdr_pred": vcdr_pred,
        "vcdr_gt": vcdr_gt,
        "cup_diameter_pred": c.cup_diameter_pred,
        "disc_diameter_pred": c.disc_diameter_pred,
        "cup_diameter_gt": c.cup_diameter_gt,
        "disc_diameter_gt": c.disc_diameter_gt,
    }


# --------------------------------------------------------------------------------------------
# Segmentation


def _truth_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # the read says what is wrong with it


def _mask_bytes(gt: RefugeTruth, sub: _Submission) -> int:
    """The work of the segmentation: bytes of the ground-truth masks that will be scored."""
    if not sub.has_segmentation:
        return 0
    return sum(_truth_bytes(gt.masks[n]) for n in sub.masks() if n in gt.masks)


def _score_segmentation(gt: RefugeTruth, sub: _Submission, opts: _Options, device: str,
                        notes: list[str], bar: bars.Phase | None = None
                        ) -> tuple[dict[str, float], list[dict], int]:
    nan = {"mean_disc_dice": _NAN, "mean_cup_dice": _NAN, "vcdr_mae": _NAN}
    if not sub.has_segmentation:
        notes.append("segmentation: no segmentation/ folder in the submission: not scored")
        return nan, [], 0
    if not gt.masks:
        notes.append(f"segmentation: the truth has no {MASK_DIR}/*.bmp: not scored")
        return nan, [], 0
    names = sub.masks()
    if not names:
        notes.append(f"segmentation: no *{opts.extension} file in segmentation/: NaN (the "
                     "official mean of an empty list)")
        warn(f"{SEGMENTATION_DIR}/: no *{opts.extension} mask, segmentation metrics are NaN; "
             f"save the masks as {SEGMENTATION_DIR}/<name>{opts.extension}")
        return nan, [], 0
    missing_gt = [n for n in names if n not in gt.masks]
    failed = False
    if missing_gt:
        if opts.compat == "official":
            failed = True
            notes.append(f"segmentation: {len(missing_gt)} mask(s) without ground truth "
                         f"({_listing(missing_gt)}): the official code raises, segmentation "
                         "NaN (compat=official)")
            warn(f"{_listing([f'{SEGMENTATION_DIR}/{n}' for n in missing_gt])}: no ground "
                 "truth of that name, so the whole segmentation is NaN as in the official "
                 "code; remove or rename these masks (compat=corrected ignores them)")
        else:
            notes.append(f"segmentation: ignored {len(missing_gt)} mask(s) without ground "
                         f"truth ({_listing(missing_gt)})")
            warn(f"{_listing([f'{SEGMENTATION_DIR}/{n}' for n in missing_gt])}: ignored, no "
                 "ground truth of that name; check the mask names")
    scored = [n for n in names if n in gt.masks]

    def work(name: str) -> tuple[dict[str, Any], int]:
        if bar is not None:
            bar.describe("reading", name)
        with sub.open(name, opts.max_image_bytes) as f:
            g = read_mask(gt.masks[name], opts=opts, truth=True)
            p = read_mask(f, name=f"segmentation/{name}", opts=opts, expected_shape=g.shape)
        if bar is not None:
            bar.describe("segmentation", name)
        c = mask_counts(to_device(p, device), to_device(g, device),
                        cup_value=opts.cup_value, background_value=opts.background_value)
        if bar is not None:
            bar.update(_truth_bytes(gt.masks[name]))
        return segmentation_item(name, c, compat=opts.compat, vcdr_eps=opts.vcdr_eps,
                                 dice_eps=opts.dice_eps), p.size

    with ThreadPoolExecutor(max_workers=opts.workers) as pool:
        done = list(pool.map(work, scored))
    items = [it for it, _ in done]
    pixels = sum(n for _, n in done)
    empty = [it["id"] for it in items if math.isnan(it["cup_dice"]) or
             math.isnan(it["disc_dice"])]
    if empty:
        failed = True
        notes.append(f"segmentation: {len(empty)} image(s) with an empty cup (or disc) in both "
                     f"prediction and ground truth ({_listing(empty)}): the official Dice "
                     "divides 0 by 0, segmentation NaN (compat=official; compat=corrected "
                     "scores such a Dice as 1)")
        warn(f"{_listing([f'{SEGMENTATION_DIR}/{n}' for n in empty])}: cup (or disc) empty in "
             "both mask and ground truth, the official Dice is 0/0 and the whole segmentation "
             "NaN; --set compat=corrected scores such a Dice as 1")
    if opts.compat == "official":
        items += [{"id": n, "disc_dice": None, "cup_dice": None, "vcdr_error": None}
                  for n in missing_gt]
        items.sort(key=lambda it: it["id"])
    if failed:
        return nan, items, pixels
    if not items:
        notes.append("segmentation: no submitted mask has a ground truth: NaN")
        warn(f"{SEGMENTATION_DIR}/: no submitted mask has a ground truth of its name, "
             "segmentation metrics are NaN; name masks as the ground-truth images")
        return nan, items, pixels
    return {
        "mean_disc_dice": float(np.mean([it["disc_dice"] for it in items])),
        "mean_cup_dice": float(np.mean([it["cup_dice"] for it in items])),
        "vcdr_mae": float(np.mean([it["vcdr_error"] for it in items])),
    }, items, pixels



# --------------------------------------------------------------------------------------------
# Classification


def _score_classification(gt: RefugeTruth, sub: _Submission, opts: _Options,
                          notes: list[str]) -> dict[str, float]:
    nan = {"auc": _NAN, "sensitivity_at_085_specificity": _NAN}
    if not sub.classification:
        notes.append(f"classification: no {CLASSIFICATION_FILE} in the submission: not scored")
        return nan
    rows = _classification_rows(sub.read(sub.classification, opts.max_csv_bytes),
                                sub.classification, notes)
    if gt.labels is None:
        notes.append("classification: the truth has no GT.xlsx or glaucoma_labels.csv: "
                     "not scored")
        return nan
    labels = _match_labels(rows, gt.labels, opts, notes)
    if labels is None:
        return nan
    scores = np.array([s for _, s in rows if s is not None], dtype=np.float64)
    if labels.all() or not labels.any():
        notes.append("classification: the scored images hold only one class: AUC undefined")
        return nan
    return {
        "auc": roc_auc(labels, scores),
        "sensitivity_at_085_specificity": sensitivity_at_specificity(
            labels, scores, opts.specificity, rule=opts.sensitivity),
    }


def _match_labels(rows: list[tuple[str, float | None]], truth: list[tuple[str, bool]],
                  opts: _Options, notes: list[str]) -> np.ndarray | None:
    """Labels of the submitted rows (names compared upper-cased, first GT match wins).

    Drops rows in place (their score set to None) under ``compat=corrected``; returns None
    when the official code would fail."""
    index: dict[str, int] = {}
    for i, (name, _) in enumerate(truth):
        index.setdefault(name.upper(), i)
    unknown = [n for n, _ in rows if n.upper() not in index]
    if opts.compat == "official":
        if unknown:
            notes.append(f"classification: {len(unknown)} row(s) name images not in the "
                         f"ground truth ({_listing(unknown)}): the official code raises, "
                         "classification NaN (compat=official)")
            warn(f"{CLASSIFICATION_FILE}: {len(unknown)} row(s) name images not in the "
                 f"ground truth ({_listing(unknown)}), so classification is NaN as in the "
                 "official code; fix or remove those rows (compat=corrected ignores them)")
            return None
        if len(rows) != len(truth):
            notes.append(f"classification: {len(rows)} rows for {len(truth)} ground-truth "
                         "images: the official code fails on unequal lengths, classification "
                         "NaN (compat=official)")
            warn(f"{CLASSIFICATION_FILE}: {len(rows)} rows for {len(truth)} ground-truth "
                 "images, so classification is NaN as in the official code; give exactly one "
                 "row per image")
            return None
        return np.array([truth[index[n.upper()]][1] for n, _ in rows], dtype=bool)
    seen: set[str] = set()
    for n, _ in rows:
        if n.upper() in seen:
            raise Rejected(f"{CLASSIFICATION_FILE}: image {n!r} is listed twice")
        seen.add(n.upper())
    missing = [name for name, _ in truth if name.upper() not in seen]
    if missing:
        raise Rejected(f"{CLASSIFICATION_FILE}: no score for {len(missing)} ground-truth "
                       f"image(s) ({_listing(missing)})")
    if unknown:
        notes.append(f"classification: ignored {len(unknown)} row(s) naming images not in "
                     f"the ground truth ({_listing(unknown)})")
        warn(f"{CLASSIFICATION_FILE}: ignored {len(unknown)} row(s) naming images not in the "
             f"ground truth ({_listing(unknown)}); check the image names")
        for i, (n, _) in enumerate(rows):
            if n.upper() not in index:
                rows[i] = (n, None)
    return np.array([truth[index[n.upper()]][1] for n, s in rows if s is not None],
                    dtype=bool)



# --------------------------------------------------------------------------------------------
# Fovea


def _score_fovea(gt: RefugeTruth, sub: _Submission, opts: _Options, notes: list[str]
                 ) -> tuple[dict[str, float], dict[str, float]]:
    nan = {"fovea_mean_distance": _NAN}
    if not sub.fovea:
        notes.append(f"fovea: no {FOVEA_FILES[0]} (or {FOVEA_FILES[1]}) in the submission: "
                     "not scored")
        return nan, {}
    rows = _fovea_rows(sub.read(sub.fovea, opts.max_csv_bytes), sub.fovea, notes)
    if gt.fovea is None:
        notes.append("fovea: the truth has no Fovea_locations.xlsx or fovea_locations.csv: "
                     "not scored")
        return nan, {}
    index: dict[str, int] = {}
    for i, (name, _, _) in enumerate(gt.fovea):
        index.setdefault(name, i)  # exact, case-sensitive names (official)
    unknown = [n for n, _, _ in rows if n not in index]
    if unknown and opts.compat == "official":
        notes.append(f"fovea: {len(unknown)} row(s) name images not in the ground truth "
                     f"({_listing(unknown)}; names are case-sensitive): the official code "
                     "raises, fovea NaN (compat=official)")
        warn(f"{sub.fovea}: {len(unknown)} row(s) name images not in the ground truth "
             f"({_listing(unknown)}; names are case-sensitive), so fovea is NaN as in the "
             "official code; fix or remove those rows (compat=corrected ignores them)")
        return nan, {}
    if opts.compat == "corrected":
        names = [n for n, _, _ in rows]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise Rejected(f"{sub.fovea}: image(s) listed twice ({_listing(dup)})")
        if unknown:
            notes.append(f"fovea: ignored {len(unknown)} row(s) naming images not in the "
                         f"ground truth ({_listing(unknown)}; names are case-sensitive)")
            warn(f"{sub.fovea}: ignored {len(unknown)} row(s) naming images not in the "
                 f"ground truth ({_listing(unknown)}; names are case-sensitive); check the "
                 "image names")
        rows = [r for r in rows if r[0] in index]
    if not rows:
        notes.append("fovea: no row to score: NaN")
        warn(f"{sub.fovea}: no row to score, fovea is NaN; add one 'name,x,y' row per image")
        return nan, {}
    pred = np.array([[x, y] for _, x, y in rows], dtype=np.float64)
    ref = np.array([gt.fovea[index[n]][1:] for n, _, _ in rows], dtype=np.float64)
    dist = fovea_distances(ref, pred)
    return {"fovea_mean_distance": float(np.mean(dist))}, {
        n: float(d) for (n, _, _), d in zip(rows, dist, strict=True)}


def fovea_distances(gt_xy: np.ndarray, pred_xy: np.ndarray) -> np.ndarray:
    """Euclidean distance per row between (N, 2) ground-truth and predicted (x, y)."""
    return np.sqrt(np.sum(np.power(np.asarray(gt_xy, float) - np.asarray(pred_xy, float), 2),
                          axis=1))

