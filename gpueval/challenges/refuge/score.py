"""REFUGE 2018: optic disc/cup segmentation, glaucoma classification and fovea localisation.

Spec: ``shared/specs/refuge.md``; constants in ``configs/refuge.yaml``; layouts in
``shared/specs/cli.md``. ``score`` is null for a single submission (the official ranking needs
all teams: :func:`gpueval.metrics.ranking.refuge_leaderboard`, used by ``rescore``).

Inputs
------
``truth`` (a folder): ``Disc_Cup_Masks/<name>.bmp`` (also the training layout's
``Disc_Cup_Masks/{Glaucoma,Non-Glaucoma}/<name>.bmp``); labels in ``GT.xlsx`` (first sheet,
header row, column A name, column B label, glaucoma ⇔ label > 0; the name's last three
characters are replaced by ``jpg`` as the official reader does) or ``glaucoma_labels.csv``
(``filename,label``; a name ending in a three-letter extension gets ``jpg`` the same way);
fovea in ``Fovea_locations.xlsx`` or ``Fovea_location.xlsx`` (columns found by the header names
``ImgName``/``Fovea_X``/``Fovea_Y``, otherwise by width: 5 columns = test layout ``ID, ImgName,
label, Fovea_X, Fovea_Y``, 4 = training layout ``ID, ImgName, Fovea_X, Fovea_Y``) or
``fovea_locations.csv`` (``filename,x,y``). Each part is optional; a task whose truth is absent
is NaN (with a note).

``submission``: a folder or a ``.zip`` (read through :class:`~gpueval.io.archive.SafeArchive`,
member by member, never extracted) holding ``segmentation/<name>.bmp``,
``classification_results.csv`` (header, then ``name,score``) and ``fovea_location_results.csv``
or ``fovea_localization_results.csv`` (header, then ``name,x,y``), at the top level or inside a
single wrapping folder (the one top-level folder holding any of them; loose files beside it,
``__MACOSX`` and ``._*`` entries are ignored). At least one part must exist; an absent part is
NaN. Only ``*.bmp`` files directly in ``segmentation/`` are scored (``.BMP`` is ignored, as
the official case-sensitive listing does; ignored files are listed in the notes).

Metrics (spec §2-4)
-------------------
Per mask (read as ``np.array(PIL.Image.open(f))`` after SciPy's ``imread`` conversions: palette
images → RGB(A), 1-bit → 8-bit; a 3-D array keeps channel 0): cup = ``== 0``, disc = ``< 255``,
Dice ``2|S∧G|/(|S|+|G|)`` without epsilon, vertical diameter = the largest per-column pixel
count, vCDR = ``d_cup / (d_disc + 1e-7)``, error = ``|vCDR_pred − vCDR_gt|``. Means over the
``.bmp`` files (lower-case extension, as the official listing) directly in ``segmentation/``.
AUC and sensitivity at specificity 0.85 by :mod:`gpueval.metrics.classification`
(``--set sensitivity=official|tie-robust``). Fovea: mean Euclidean distance over the submitted
rows.

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
data-looking CSV header row; ``validate`` warns the same where it can tell. Ground-truth images
without a submitted mask or fovea row are not scored (official: the submission's list rules).

Rejected in both modes (format errors a person can fix): unreadable masks, a mask whose size
differs from its ground truth (checked from the header, before decoding), non-numeric or
non-finite scores/coordinates, a CSV row with too few columns, unsafe archives. Not
reproduced: the official fovea reader's crash on a file with exactly one row (scored here).
Names in the CSVs are stripped of surrounding blanks; blank lines are skipped.

Scoring runs on the CPU threads of this process (``limits.workers``); per image it is a few
counting reductions (:func:`mask_counts`, NumPy or CuPy by the array type; ``device="gpu"``
moves each decoded mask to the GPU). ``scheduler`` is not used: the work is bounded by image
decoding, and masks are small. ``runtime.voxels`` = submitted mask pixels scored.
"""

from __future__ import annotations

import csv
import io
import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from gpueval.backend import array_module, to_device
from gpueval.errors import Rejected, TruthError
from gpueval.io.archive import iter_files
from gpueval.metrics.classification import roc_auc, sensitivity_at_specificity
from gpueval.notices import warn
from gpueval.result import Result

CHALLENGE = "refuge"
SEGMENTATION_DIR = "segmentation"
CLASSIFICATION_FILE = "classification_results.csv"
FOVEA_FILES = ("fovea_location_results.csv", "fovea_localization_results.csv")
MASK_DIR = "Disc_Cup_Masks"
_NAN = float("nan")


# --------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class _Options:
    compat: str
    sensitivity: str
    specificity: float
    cup_value: int
    background_value: int
    vcdr_eps: float
    dice_eps: float
    extension: str
    max_image_bytes: int
    max_csv_bytes: int
    max_image_pixels: int
    max_archive_bytes: int
    workers: int

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> _Options:
        seg = cfg.get("segmentation") or {}
        lim = cfg.get("limits") or {}
        try:
            opts = cls(
                compat=str(cfg.get("compat", "official")),
                sensitivity=str(cfg.get("sensitivity", "official")),
                specificity=float(cfg.get("specificity", 0.85)),
                cup_value=int(seg.get("cup_value", 0)),
                background_value=int(seg.get("background_value", 255)),
                vcdr_eps=float(seg.get("vcdr_eps", 1e-7)),
                dice_eps=float(seg.get("dice_eps", 0.0)),
                extension=str(seg.get("extension", ".bmp")),
                max_image_bytes=int(float(lim.get("max_image_bytes", 64 * 2**20))),
                max_csv_bytes=int(float(lim.get("max_csv_bytes", 16 * 2**20))),
                max_image_pixels=int(float(lim.get("max_image_pixels", 5e7))),
                max_archive_bytes=int(float(lim.get("max_archive_bytes", 16 * 2**30))),
                workers=max(1, int(lim.get("workers", 2))),
            )
        except (TypeError, ValueError) as e:
            raise TruthError(f"refuge config: bad value ({e})") from e
        if opts.compat not in ("official", "corrected"):
            raise TruthError(f"refuge config: compat must be official or corrected, "
                             f"not {opts.compat!r}")
        if not 0.0 <= opts.specificity <= 1.0:
            raise TruthError(f"refuge config: specificity must lie in [0, 1], "
                             f"not {opts.specificity}")
        if opts.sensitivity not in ("official", "tie-robust"):
            raise TruthError(f"refuge config: sensitivity must be official or tie-robust, "
                             f"not {opts.sensitivity!r}")
        return opts


# --------------------------------------------------------------------------------------------
# Public entry points


def score(truth: str | Path, submission: str | Path, config: dict[str, Any], *,
          device: str = "cpu", scheduler: Any = None, progress: bool = False) -> Result:
    """Score one REFUGE submission (see the module docstring for layouts and rules).

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
        seg, items, pixels = _score_segmentation(gt, sub, opts, device, notes)
        cls = _score_classification(gt, sub, opts, notes)
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


def _score_segmentation(gt: RefugeTruth, sub: _Submission, opts: _Options, device: str,
                        notes: list[str]) -> tuple[dict[str, float], list[dict], int]:
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
        with sub.open(name, opts.max_image_bytes) as f:
            g = read_mask(gt.masks[name], opts=opts, truth=True)
            p = read_mask(f, name=f"segmentation/{name}", opts=opts, expected_shape=g.shape)
        c = mask_counts(to_device(p, device), to_device(g, device),
                        cup_value=opts.cup_value, background_value=opts.background_value)
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


def read_mask(src: str | Path | io.IOBase, *, opts: _Options | None = None, name: str = "",
              expected_shape: tuple[int, ...] | None = None, truth: bool = False) -> np.ndarray:
    """Decode one mask as the official ``scipy.misc.imread`` did, as a 2-D array.

    Palette images are converted to RGB (RGBA with transparency) and 1-bit images to 8 bit
    first, as SciPy's ``fromimage`` did; a 3-D result keeps channel 0. The size is checked
    against ``expected_shape`` and the pixel limit from the header, before decoding.
    """
    from PIL import Image

    opts = opts or _Options.from_config({})
    err = TruthError if truth else Rejected
    label = name or str(src)
    try:
        with Image.open(src) as im:
            shape = (im.height, im.width)
            if im.width * im.height > opts.max_image_pixels:
                raise err(f"{label}: {im.width}x{im.height} pixels exceeds the limit of "
                          f"{opts.max_image_pixels}")
            if expected_shape is not None and shape != tuple(expected_shape[:2]):
                raise err(f"{label} is {im.width}x{im.height} pixels but its ground truth is "
                          f"{expected_shape[1]}x{expected_shape[0]}")
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "1":
                im = im.convert("L")
            arr = np.asarray(im)
    except (Rejected, TruthError):
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise err(f"{label}: not a readable image ({_scrub(e, src, label)})") from e
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise err(f"{label}: expected a 2-D mask, got shape {arr.shape}")
    return arr


def _mask_header(f, name: str, opts: _Options) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(f) as im:
            if im.width * im.height > opts.max_image_pixels:
                raise Rejected(f"segmentation/{name}: {im.width}x{im.height} pixels exceeds "
                               f"the limit of {opts.max_image_pixels}")
            return im.height, im.width
    except Rejected:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise Rejected(f"segmentation/{name}: not a readable image "
                       f"({_scrub(e, f, 'segmentation/' + name)})") from e


def _scrub(error: Exception, src: Any, label: str) -> str:
    """A decoder's message without the server path of the file it was given (Pillow quotes
    ``<_io.BufferedReader name='/abs/path'>``): participants see these messages."""
    text = str(error)
    for shown in (repr(src), str(getattr(src, "name", "")), str(src)):
        if len(shown) > 1:
            text = text.replace(shown, label)
    return text


def _mask_header_path(path: Path, opts: _Options) -> tuple[int, int]:
    try:
        with open(path, "rb") as f:
            return _mask_header(f, path.name, opts)
    except Rejected as e:
        raise TruthError(f"ground truth {path}: {e}") from e


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


def _classification_rows(data: bytes, where: str, notes: list[str]
                         ) -> list[tuple[str, float | None]]:
    out = []
    for line, row in _csv_body(data, where, notes):
        if len(row) < 2:
            raise Rejected(f"{where} line {line}: expected 'name,score', got {row!r}")
        out.append((row[0].strip(), _number(row[1], where, line, "score")))
    return out


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


def _fovea_rows(data: bytes, where: str, notes: list[str]) -> list[tuple[str, float, float]]:
    out = []
    for line, row in _csv_body(data, where, notes):
        cells = list(row)
        while len(cells) > 3 and not cells[-1].strip():
            cells.pop()  # trailing empty cells (spreadsheet exports)
        if len(cells) != 3:
            raise Rejected(f"{where} line {line}: expected 'name,x,y', got {row!r}")
        out.append((cells[0].strip(), _number(cells[1], where, line, "x"),
                    _number(cells[2], where, line, "y")))
    return out


# --------------------------------------------------------------------------------------------
# CSV helpers


def _csv_body(data: bytes, where: str, notes: list[str]) -> Iterator[tuple[int, list[str]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise Rejected(f"{where}: not UTF-8 text ({e})") from e
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise Rejected(f"{where}: not a valid CSV file ({e})") from e
    if not rows:
        raise Rejected(f"{where} is empty (expected a header row, then one row per image)")
    header = rows[0]
    if len(header) > 1 and _is_number(header[1]):
        notes.append(f"{where}: the first row {header!r} looks like data but is skipped as the "
                     "header, as the official reader does")
        warn(f"{where}: the first row {', '.join(header)} looks like data but is skipped as "
             "the header (as the official reader does); add a header row")
    for i, row in enumerate(rows[1:], start=2):
        if any(c.strip() for c in row):
            yield i, row


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _number(s: str, where: str, line: int, what: str) -> float:
    try:
        x = float(s)
    except ValueError:
        raise Rejected(f"{where} line {line}: {what} {s.strip()!r} is not a number") from None
    if not math.isfinite(x):
        raise Rejected(f"{where} line {line}: {what} must be finite, got {s.strip()!r}")
    return x


def _listing(names: list[str], n: int = 5) -> str:
    head = ", ".join(names[:n])
    return head + (f", … {len(names) - n} more" if len(names) > n else "")


# --------------------------------------------------------------------------------------------
# Truth


@dataclass
class RefugeTruth:
    """The parts of a REFUGE truth folder that exist."""

    root: Path
    masks: dict[str, Path] = field(default_factory=dict)
    labels: list[tuple[str, bool]] | None = None  # (image name as matched, glaucoma)
    fovea: list[tuple[str, float, float]] | None = None
    notes: list[str] = field(default_factory=list)


def load_truth(path: str | Path) -> RefugeTruth:
    """Read a REFUGE truth folder (masks are listed, not decoded)."""
    root = Path(path)
    if not root.is_dir():
        raise TruthError(f"refuge truth {root} must be a folder (with {MASK_DIR}/, GT.xlsx, "
                         "Fovea_locations.xlsx)")
    gt = RefugeTruth(root)
    mask_dir = root / MASK_DIR
    if mask_dir.is_dir():
        for sub in (mask_dir, mask_dir / "Glaucoma", mask_dir / "Non-Glaucoma"):
            if sub.is_dir():
                for p in sorted(sub.iterdir()):
                    if p.is_file() and p.name.endswith(".bmp"):
                        gt.masks.setdefault(p.name, p)
    if (root / "GT.xlsx").is_file():
        gt.labels = _labels_xlsx(root / "GT.xlsx")
    elif (root / "glaucoma_labels.csv").is_file():
        gt.labels = _labels_csv(root / "glaucoma_labels.csv")
    for name in ("Fovea_locations.xlsx", "Fovea_location.xlsx"):
        if (root / name).is_file():
            gt.fovea = _fovea_xlsx(root / name)
            break
    else:
        if (root / "fovea_locations.csv").is_file():
            gt.fovea = _fovea_csv(root / "fovea_locations.csv")
    if not gt.masks and gt.labels is None and gt.fovea is None:
        raise TruthError(f"refuge truth {root} has none of {MASK_DIR}/*.bmp, GT.xlsx, "
                         "glaucoma_labels.csv, Fovea_locations.xlsx, fovea_locations.csv")
    return gt


MAX_XLSX_BYTES = 64 * 2**20
"""Sum of the uncompressed sizes of a truth ``.xlsx``'s zip members (a real REFUGE ``GT.xlsx``
is about 30 kB): checked from the central directory before openpyxl inflates anything, and
``zipfile`` never returns more than a member declares, so reading is bounded by it."""
MAX_XLSX_ROWS = 200_000
MAX_XLSX_COLUMNS = 64
"""Rows/columns read from a truth sheet: openpyxl pads rows to the sheet's declared dimension
(``A1:XFD1048576`` would make each row 16384 cells), so the width is capped and the row count
bounded (the REFUGE sheets have 5 columns and a few hundred rows)."""


def _xlsx_rows(path: Path, *, max_bytes: int = MAX_XLSX_BYTES) -> list[tuple]:
    """Rows (values) of the first sheet of a truth ``.xlsx``, with bounded memory.

    Raises
    ------
    TruthError : unreadable file, members declaring more than ``max_bytes`` uncompressed
        (e.g. one multi-GiB shared string), or a sheet over :data:`MAX_XLSX_ROWS` rows.
    """
    import openpyxl

    from gpueval.io.archive import SafeArchive

    try:  # central-directory checks only: nothing is inflated here
        SafeArchive(path, max_total_bytes=max_bytes).close()
    except Rejected as e:
        raise TruthError(f"{path.name}: refused as a truth .xlsx ({e}); a REFUGE sheet needs "
                         f"far less than {max_bytes} bytes") from e
    _check_xlsx_streams(path)
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            ws = wb.active
            declared = ws.max_column
            capped = declared is None or declared > MAX_XLSX_COLUMNS
            rows = []
            for row in ws.iter_rows(values_only=True,
                                    max_col=MAX_XLSX_COLUMNS if capped else None):
                if len(rows) >= MAX_XLSX_ROWS:
                    raise TruthError(f"{path.name}: more than {MAX_XLSX_ROWS} rows")
                row = tuple(row)
                if capped:  # padded to the cap: keep the cells the sheet has
                    while row and row[-1] is None:
                        row = row[:-1]
                rows.append(row)
            return rows
        finally:
            wb.close()
    except TruthError:
        raise
    except Exception as e:  # openpyxl raises many types on damaged files
        raise TruthError(f"{path.name}: not a readable .xlsx file ({e})") from e


def _check_xlsx_streams(path: Path) -> None:
    """Inflate every member in bounded pieces and require each stream to end exactly at its
    declared size: ``zipfile`` silently stops at the declared size, so a header declaring 1 kB
    in front of a multi-GiB stream (with the CRC of its first kilobyte) would otherwise be
    parsed as a truncated sheet. Costs at most :data:`MAX_XLSX_BYTES` of inflation."""
    import struct
    import zipfile
    import zlib

    def refuse(name: str, why: str) -> TruthError:
        return TruthError(f"{path.name}: member {name} {why}; re-save the sheet from a "
                          "spreadsheet program")

    try:
        with zipfile.ZipFile(path) as z, open(path, "rb") as f:
            for info in z.infolist():
                if info.is_dir():
                    continue
                if info.compress_type == zipfile.ZIP_STORED:
                    if info.compress_size != info.file_size:
                        raise refuse(info.filename, "declares two sizes")
                    continue
                if info.compress_type != zipfile.ZIP_DEFLATED:
                    raise refuse(info.filename, "is not deflate-compressed")
                f.seek(info.header_offset)
                head = f.read(30)
                if len(head) < 30:
                    raise refuse(info.filename, "is truncated")
                name_len, extra_len = struct.unpack("<HH", head[26:30])
                f.seek(info.header_offset + 30 + name_len + extra_len)
                inflater, left, out = zlib.decompressobj(-15), info.compress_size, 0
                while not inflater.eof:
                    data = inflater.unconsumed_tail
                    if not data:
                        data = f.read(min(left, 1 << 20))
                        left -= len(data)
                        if not data:
                            raise refuse(info.filename, "is truncated")
                    # max_length >= 1 (0 would mean unbounded): at most one byte past the size
                    out += len(inflater.decompress(data, info.file_size + 1 - out))
                    if out > info.file_size:
                        raise refuse(info.filename, "inflates beyond its declared size")
                if out != info.file_size:
                    raise refuse(info.filename, "inflates to less than its declared size")
    except TruthError:
        raise
    except (OSError, zipfile.BadZipFile, zlib.error, struct.error) as e:
        raise TruthError(f"{path.name}: not a readable .xlsx file ({e})") from e


def _official_jpg_name(name: str) -> str:
    # the official reader replaces the last three characters (the extension) by "jpg"
    return name[:-3] + "jpg"


def _label(value: Any, where: str) -> bool:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise TruthError(f"{where}: label {value!r} is not a number") from None
    if not isinstance(value, int | float) or isinstance(value, float) and math.isnan(value):
        raise TruthError(f"{where}: label {value!r} is not a number")
    return value > 0


def _labels_xlsx(path: Path) -> list[tuple[str, bool]]:
    out = []
    for i, row in enumerate(_xlsx_rows(path)[1:], start=2):
        if not row or row[0] is None or str(row[0]).strip() == "":
            continue  # trailing empty rows of the sheet
        if len(row) < 2:
            raise TruthError(f"{path.name} row {i}: expected name and label")
        out.append((_official_jpg_name(str(row[0])), _label(row[1], f"{path.name} row {i}")))
    return out


def _labels_csv(path: Path) -> list[tuple[str, bool]]:
    out = []
    for i, row in _truth_csv(path):
        if len(row) < 2:
            raise TruthError(f"{path.name} line {i}: expected 'filename,label'")
        name = row[0].strip()
        if len(name) > 4 and name[-4] == ".":
            name = _official_jpg_name(name)
        out.append((name, _label(row[1], f"{path.name} line {i}")))
    return out


def _fovea_xlsx(path: Path) -> list[tuple[str, float, float]]:
    rows = _xlsx_rows(path)
    if not rows:
        return []
    header = [str(h).strip().lower() if h is not None else "" for h in rows[0]]
    try:
        cols = (next(header.index(k) for k in ("imgname", "imagename", "filename", "name")
                     if k in header), header.index("fovea_x"), header.index("fovea_y"))
    except (StopIteration, ValueError):
        width = max(len(r) for r in rows)
        cols = (1, 3, 4) if width >= 5 else (1, 2, 3)
    out = []
    for i, row in enumerate(rows[1:], start=2):
        if len(row) <= cols[0] or row[cols[0]] is None or str(row[cols[0]]).strip() == "":
            continue
        if len(row) <= max(cols):
            raise TruthError(f"{path.name} row {i}: missing fovea coordinates")
        out.append((str(row[cols[0]]), _coordinate(row[cols[1]], path, i),
                    _coordinate(row[cols[2]], path, i)))
    return out


def _fovea_csv(path: Path) -> list[tuple[str, float, float]]:
    out = []
    for i, row in _truth_csv(path):
        if len(row) < 3:
            raise TruthError(f"{path.name} line {i}: expected 'filename,x,y'")
        out.append((row[0].strip(), _coordinate(row[1], path, i), _coordinate(row[2], path, i)))
    return out


def _coordinate(value: Any, path: Path, row: int) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TruthError(f"{path.name} row {row}: coordinate {value!r} is not a number") from None


def _truth_csv(path: Path) -> Iterator[tuple[int, list[str]]]:
    try:
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise TruthError(f"{path}: not a readable CSV file ({e})") from e
    for i, row in enumerate(rows[1:], start=2):
        if any(c.strip() for c in row):
            yield i, row


# --------------------------------------------------------------------------------------------
# Submission: a folder or a zip, with an optional single wrapping folder


def _open_submission(path: str | Path, opts: _Options) -> _Submission:
    p = Path(path)
    if p.is_dir():
        return _Submission(_FolderFiles(p), opts)
    if p.is_file() and p.suffix.lower() == ".zip":
        return _Submission(_ZipFiles(p, opts), opts)
    if not p.exists():
        raise Rejected(f"submission {p.name} does not exist")
    raise Rejected(f"submission {p.name} must be a folder or a .zip file")


class _FolderFiles:
    """File names relative to a folder (POSIX style); symlinks leaving it are refused."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.label = root.name

    def names(self) -> list[str]:
        # iter_files refuses links leaving the folder, hard links and special files (a FIFO
        # named like a CSV must not pass for an absent part)
        out = []
        for p in iter_files(self.root):
            rel = p.relative_to(self.root)
            if rel.parts[0] == "__MACOSX" or any(s.startswith("._") for s in rel.parts):
                continue
            out.append(rel.as_posix())
        return out

    def open(self, name: str, limit: int):
        p = self.root / name
        if p.stat().st_size > limit:
            raise Rejected(f"{name} is {p.stat().st_size} bytes, over the limit {limit}")
        return open(p, "rb")

    def close(self) -> None:
        pass


class _ZipFiles:
    """Members of a zip through :class:`SafeArchive` (one reader at a time: zipfile shares
    one file handle)."""

    def __init__(self, path: Path, opts: _Options):
        from gpueval.io.archive import SafeArchive

        self.archive = SafeArchive(path, max_total_bytes=opts.max_archive_bytes)
        self.label = path.name
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(self.archive.names())

    def open(self, name: str, limit: int):
        with self._lock:
            return io.BytesIO(self.archive.read(name, limit))

    def close(self) -> None:
        self.archive.close()


class _Submission:
    """The three parts of a submission, found at the top or in one wrapping folder."""

    def __init__(self, files: _FolderFiles | _ZipFiles, opts: _Options):
        self.files, self.opts = files, opts
        self.notes: list[str] = []
        try:
            names = files.names()
            self.prefix = self._root(names)
        except BaseException:
            files.close()
            raise
        rel = [n[len(self.prefix):] for n in names if n.startswith(self.prefix)]
        seg = [n.split("/", 1)[1] for n in rel if n.startswith(SEGMENTATION_DIR + "/")]
        self.has_segmentation = bool(seg)
        direct = [n for n in seg if "/" not in n]
        self._masks = sorted(n for n in direct if n.endswith(opts.extension))
        other = sorted(set(seg) - set(self._masks))
        if other:
            self.notes.append(f"segmentation: ignored {len(other)} file(s) that are not "
                              f"'*{opts.extension}' directly in segmentation/ (the official "
                              f"listing is case-sensitive): {_listing(other)}")
            shown = [f"{self.prefix}{SEGMENTATION_DIR}/{n}" for n in other]
            warn(f"{_listing(shown)}: ignored ({len(other)} file(s) not named "
                 f"'*{opts.extension}' directly in {SEGMENTATION_DIR}/; the official scorer "
                 f"reads only those, so .png/.BMP masks are not scored); save each mask as "
                 f"{SEGMENTATION_DIR}/<name>{opts.extension}")
        parts = {CLASSIFICATION_FILE, *FOVEA_FILES}
        loose = sorted(n for n in rel if n not in parts
                       and not n.startswith(SEGMENTATION_DIR + "/"))
        if loose:
            shown = [self.prefix + n for n in loose]
            self.notes.append(f"ignored {len(loose)} file(s) that are none of the parts: "
                              f"{_listing(shown)}")
            # only files that look like results: a README beside them is no mistake
            if any(n.lower().endswith((".csv", ".xlsx", ".xls")) for n in loose):
                warn(f"{_listing(shown)}: ignored (not {CLASSIFICATION_FILE}, {FOVEA_FILES[0]} "
                     f"or {FOVEA_FILES[1]}, names are exact); rename the file if it holds "
                     "results")
        self.classification = (self.prefix + CLASSIFICATION_FILE
                               if CLASSIFICATION_FILE in rel else "")
        fovea = [f for f in FOVEA_FILES if f in rel]
        self.fovea = self.prefix + fovea[0] if fovea else ""
        if len(fovea) > 1:
            self.notes.append(f"both {FOVEA_FILES[0]} and {FOVEA_FILES[1]} exist: scored "
                              f"{FOVEA_FILES[0]}")
            warn(f"{self.prefix}{FOVEA_FILES[1]}: ignored, {self.prefix}{FOVEA_FILES[0]} is "
                 "scored instead; keep only one fovea file")

    @staticmethod
    def _root(names: list[str]) -> str:
        def has_part(prefix: str) -> bool:
            return any(n.startswith(prefix + SEGMENTATION_DIR + "/")
                       or n in (prefix + CLASSIFICATION_FILE,
                                *(prefix + f for f in FOVEA_FILES)) for n in names)

        if has_part(""):
            return ""
        # a single wrapping folder: the one top-level folder holding the parts (loose files
        # such as a README beside it do not matter)
        tops = sorted({PurePosixPath(n).parts[0] for n in names if "/" in n})
        wrapping = [t + "/" for t in tops if has_part(t + "/")]
        if len(wrapping) == 1:
            return wrapping[0]
        if len(wrapping) > 1:
            raise Rejected(f"submission holds several folders with results "
                           f"({', '.join(wrapping)}): keep one")
        raise Rejected(f"submission has none of {SEGMENTATION_DIR}/, {CLASSIFICATION_FILE}, "
                       f"{FOVEA_FILES[0]} (or {FOVEA_FILES[1]}) at its top level or inside a "
                       "single wrapping folder")

    def masks(self) -> list[str]:
        return list(self._masks)

    def open(self, mask_name: str, limit: int):
        return self.files.open(f"{self.prefix}{SEGMENTATION_DIR}/{mask_name}", limit)

    def read(self, name: str, limit: int) -> bytes:
        with self.files.open(name, limit) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise Rejected(f"{name} exceeds the size limit of {limit} bytes")
        return data

    def __enter__(self) -> _Submission:
        return self

    def __exit__(self, *exc) -> None:
        self.files.close()


def report_images(result: Result, truth, submission, config) -> list:
    """Pictures of where the submission fails, for the HTML report (see
    :func:`gpueval.report_images.refuge_images`)."""
    from gpueval.report_images import refuge_images

    return refuge_images(result, truth, submission, config)
