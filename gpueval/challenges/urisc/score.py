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

``radius`` other than 0 is refused for the default variant (it would change the metric under
the final leaderboard's ``metric_version``).

Inputs
------
``truth``: a folder of ``<stem>.png|.tif|.tiff`` (or one image file). ``submission``: a folder
(searched recursively) or a ``.zip`` of ``<stem>.tiff|.tif`` (or one file). Members of a zip are
validated by :class:`~gpueval.io.archive.SafeArchive` and copied, one group of images at a time,
through a size-bounded stream into a private temporary folder (TIFF needs random access); nothing
is extracted blindly and no temporary file outlives its group.

Decisions where the spec is silent (documented choices)
-------------------------------------------------------
* **Missing image** (GT stem without a submission file): ``missing: reject`` (default) rejects
  the submission naming the stems, as the official folder mode crashes on it; ``missing: zero``
  scores it as an empty prediction (§2.6: P = 1, R = 0, F = 0; F = 1 where the GT image is
  empty too) and counts it in the mean.
* **Extra files** (stems not in the truth, other suffixes) are ignored, listed in
  ``extra["notes"]`` and named in a user warning (the result's ``warnings``, also from
  ``validate``). Two submission files with one stem are a rejection. A missing image scored
  under ``missing: zero`` is a warning too, and its item has ``status: "missing"``.
* **Value check messages** (:func:`value_problem`): a map without any 255 (0/1, 0/127, all
  0) is refused as "no pixel is background", not as too much membrane; "inverted map?" is only
  suggested when most pixels are membrane. ``format_check: skip`` warns for each such map.
* **Wrong size**: rejected, naming both shapes (the official code would broadcast or crash).
* **Format check** (``format_check: reject``, default): the official check of §2.3 runs on
  every prediction (streamed, histogram per band); its crash cases (no value-0 pixel:
  ``ZeroDivisionError``) are rejections with a reason. ``format_check: skip`` scores any uint8
  map with the official weights ``255 - value`` (what the fixtures' grey rows show).
* **Reading = ``cv2.imread(path, 0)``** (OpenCV reads 8-bit TIFF output through libtiff's RGBA
  reader, PNG through libpng):

  - 8-bit grey: kept. 16-bit grey: high byte ``v >> 8``. 1-bit: 0/255.
  - 16-bit colour TIFF: ``(v + 128) // 257`` per channel (libtiff's map), then grey.
  - colour TIFF/BMP: OpenCV's fixed point ``(4899 R + 9617 G + 1868 B + 8192) >> 14``.
  - colour PNG: libpng's ``rgb_to_gray`` (OpenCV's PNG decoder asks for it): equal channels
    pass unchanged, others ``(9797 R + 19234 G + 3737 B) >> 15`` (libpng truncates).
  - TIFF ``MINISWHITE`` (usual for 1-bit files) is inverted as libtiff does (set bit = black =
    membrane). Multi-page TIFF: page 0; float/signed samples: rejected.
  - TIFF alpha: *unassociated* alpha (``ExtraSamples = 2``, what Pillow and tifffile write for
    RGBA) is premultiplied as libtiff's RGBA reader does, ``c = (c·a + 127) // 255`` (after the
    16-bit map), so a transparent pixel reads black (= membrane); associated/unspecified alpha
    and PNG alpha are ignored (libpng strips it).
  - Grey TIFF with extra samples: sample 0. Palette TIFF (1/4/8-bit): colormap (high byte of a
    16-bit map, an all-< 256 map as is), then OpenCV's grey.
  - Rejected because ``cv2.imread`` returns ``None`` on them (the official script then
    crashes): 2/4-bit grey, 12-bit and other sample sizes than 1/8/16, CMYK/Lab. Rejected
    because OpenCV re-orients them and this reader does not: an ``Orientation`` tag other
    than 1 (top-left).

  - Huge single strips (RGBA buffer ≥ 95 % of 1 GiB, about 255 M pixels in one strip):
    OpenCV reads contiguous 8/16-bit grey/RGB(+associated alpha) scanlines raw instead of
    through libtiff: no MINISWHITE inversion, 16-bit high byte, grey of RGB with R and B
    weights swapped (``(1868 R + 9617 G + 4899 B + 8192) >> 14``); other layouts whose RGBA
    strip/tile reaches 1 GiB make ``cv2.imread`` return ``None`` and are rejected.

  Not replicated: libpng's gamma-corrected grey for PNGs with a gAMA/sRGB chunk (tens of grey
  levels apart, e.g. up to 59 with gAMA 0.45455, but only on pixels with unequal channels),
  16-bit colour PNG (reduced to 8 bit first here) — irrelevant for equal-channel GTs (all
  samples) and for binary 0/255 predictions, which are exact with or without gAMA.
* **Constants** (``radius``, ``gt_threshold``, ``min_background_ratio``) must be whole numbers:
  ``radius=1.5`` is refused rather than truncated (skimage's ``disk(1.5)`` is an off-centre 4×4
  footprint, not ``disk(1)``).
* ``runtime.voxels`` = GT pixels scored.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from dask.delayed import delayed

from gpueval.backend import to_device
from gpueval.engine import compute, timed, tree_reduce
from gpueval.errors import Rejected, TruthError, UsageError
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
TRUTH_SUFFIXES = (".png", ".tif", ".tiff")
SUBMISSION_SUFFIXES = (".tiff", ".tif", ".png")  # priority order for one stem
TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SUFFIXES = (".png",)


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
    with _Submission(submission, opts) as sub:
        notes += sub.notes(gt_files, warn_user=True)
        missing = [s for s in gt_files if s not in sub.stems]
        if missing and opts.missing == "reject":
            raise Rejected(f"{len(missing)} of {len(gt_files)} images missing from the "
                           f"submission: {_listing(missing)} (expected <stem>.tiff per GT image)")
        for group in _groups([s for s in gt_files if s in sub.stems], gt_files, opts):
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


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class _Options:
    variant: str
    gt_threshold: int | None
    radius: int
    format_check: str
    missing: str
    min_background_ratio: int
    band_bytes: int
    group_pixels: int
    max_image_pixels: int
    max_member_bytes: int
    max_archive_bytes: int
    tolerance_px: float | None
    tolerance_max_pixels: int

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> _Options:
        def num(key, default):
            # whole numbers only: int(1.5) would silently score radius 1 (skimage's disk(1.5)
            # is a different, off-centre footprint), int(True) radius 1
            v = cfg.get(key, default)
            if v is None:
                return None
            try:
                f = float(v) if not isinstance(v, bool) else math.nan
            except (TypeError, ValueError) as e:
                raise TruthError(f"config {key}={v!r} is not a number") from e
            if not f.is_integer():
                raise TruthError(f"config {key}={v!r} must be a whole number")
            return int(f)

        variant = str(cfg.get("variant", "2019-12-25"))
        radius = num("radius", 0)
        if radius < 0 or radius > 64:
            raise UsageError(f"radius must be between 0 and 64 pixels, got {radius}")
        if variant == "2019-12-25" and radius != 0:
            raise UsageError("radius applies to the pre-2019-12-25 metric: add --set "
                             "variant=bold (or variant=released-script)")
        thr = num("gt_threshold", 122)
        if thr is not None and not 0 <= thr <= 255:
            raise TruthError(f"gt_threshold must be in 0..255 or null, got {thr}")
        fmt = str(cfg.get("format_check", "reject"))
        missing = str(cfg.get("missing", "reject"))
        if fmt not in ("reject", "skip"):
            raise UsageError(f"format_check must be reject or skip, not {fmt!r}")
        if missing not in ("reject", "zero"):
            raise UsageError(f"missing must be reject or zero, not {missing!r}")
        limits = cfg.get("limits") or {}
        tol = cfg.get("tolerance_px")
        return cls(
            variant=variant, gt_threshold=thr, radius=radius, format_check=fmt,
            missing=missing, min_background_ratio=num("min_background_ratio", 5),
            band_bytes=int(float(cfg.get("band_bytes", 8 * 2**20))),
            group_pixels=int(float(cfg.get("group_pixels", 2e8))),
            max_image_pixels=int(float(limits.get("max_image_pixels", 1e9))),
            max_member_bytes=int(float(limits.get("max_member_bytes", 4 * 2**30))),
            max_archive_bytes=int(float(limits.get("max_archive_bytes", 64 * 2**30))),
            tolerance_px=None if tol is None else float(tol),
            tolerance_max_pixels=int(float(cfg.get("tolerance_max_pixels", 4.2e6))),
        )


# ---------------------------------------------------------------------------------------------
# inputs


def _truth_files(truth: str | Path) -> dict[str, Path]:
    p = Path(truth)
    if p.is_file():
        return {p.stem: p}
    if not p.is_dir():
        raise TruthError(f"truth {p} is neither a folder of GT images nor an image file")
    files: dict[str, Path] = {}
    for f in sorted(p.iterdir()):
        if f.is_file() and f.suffix.lower() in TRUTH_SUFFIXES:
            if f.stem in files:
                raise TruthError(f"truth has two images for stem {f.stem!r}: "
                                 f"{files[f.stem].name} and {f.name}")
            files[f.stem] = f
    if not files:
        raise TruthError(f"truth folder {p} holds no .png/.tif/.tiff image")
    return dict(sorted(files.items()))


class _Submission:
    """Stems → files of a submission folder, single TIFF or zip (streamed per group)."""

    def __init__(self, path: str | Path, opts: _Options):
        self.path = Path(path)
        self.opts = opts
        self.archive = None
        self.ignored: list[str] = []
        self.files: dict[str, Any] = {}
        if self.path.is_file() and self.path.suffix.lower() == ".zip":
            from gpueval.io.archive import SafeArchive

            self.archive = SafeArchive(self.path, max_total_bytes=opts.max_archive_bytes)
            entries = self.archive.names()
        elif self.path.is_file():
            entries = [self.path]
        elif self.path.is_dir():
            from gpueval.io.archive import iter_files

            entries = list(iter_files(self.path))
        else:
            raise Rejected(f"submission {self.path.name} not found (expected a folder or "
                           "result.zip)")
        rank: dict[str, int] = {}
        for e in entries:
            name = PurePosixPath(e).name if self.archive else Path(e).name
            stem, suffix = os.path.splitext(name)
            if suffix.lower() not in SUBMISSION_SUFFIXES:
                self.ignored.append(self._relative(e))
                continue
            order = SUBMISSION_SUFFIXES.index(suffix.lower())
            if stem in self.files and order == rank[stem]:
                raise Rejected(f"two submission files for image {stem!r}: "
                               f"{self._relative(self.files[stem])} and {self._relative(e)}")
            if stem in self.files and order > rank[stem]:
                self.ignored.append(self._relative(e))  # x.png next to x.tiff: the TIFF counts
                continue
            if stem in self.files:
                self.ignored.append(self._relative(self.files[stem]))
            self.files[stem], rank[stem] = e, order

    def _relative(self, entry: Any) -> str:
        """An entry as the submitter knows it: zip member, or path inside the folder."""
        if self.archive is not None:
            return str(entry)
        if self.path.is_dir():
            return Path(entry).relative_to(self.path).as_posix()
        return Path(entry).name

    @property
    def stems(self) -> set[str]:
        return set(self.files)

    def display_name(self, stem: str) -> str:
        return self._relative(self.files[stem])

    def notes(self, gt_files: dict[str, Path], *, warn_user: bool = False) -> list[str]:
        """What is ignored; with ``warn_user`` each line is also a user warning."""
        out = []
        extra = sorted(set(self.files) - set(gt_files))
        if extra:
            out.append(f"ignored {len(extra)} images without GT: {_listing(extra)}")
            if warn_user:
                warn(f"ignored {len(extra)} submitted image(s) whose stem is not a GT image: "
                     f"{_listing([self.display_name(s) for s in extra])}; name each "
                     "prediction <GT stem>.tiff")
        if self.ignored:
            out.append(f"ignored {len(self.ignored)} files (not .tiff/.tif/.png, or a "
                       "lower-priority duplicate of a stem): "
                       f"{_listing(self.ignored)}")
            if warn_user:
                warn(f"ignored {len(self.ignored)} submitted file(s) that are not .tiff/.tif/"
                     f".png or duplicate a stem already given as .tiff: "
                     f"{_listing(self.ignored)}; submit one <stem>.tiff per GT image")
        return out

    @contextmanager
    def spooled(self, stems: list[str]) -> Iterator[dict[str, Path]]:
        """Local paths for ``stems``; zip members are copied (size-bounded) to a temp folder."""
        if self.archive is None:
            yield {s: Path(self.files[s]) for s in stems}
            return
        tmp = Path(tempfile.mkdtemp(prefix="gpueval-urisc-"))
        try:
            out = {}
            for i, s in enumerate(stems):
                name = self.files[s]
                if self.archive.size(name) > self.opts.max_member_bytes:
                    raise Rejected(f"{name}: {self.archive.size(name)} bytes uncompressed, over "
                                   f"the per-image limit {self.opts.max_member_bytes}")
                dest = tmp / f"{i}{PurePosixPath(name).suffix.lower()}"
                with self.archive.open(name) as src, open(dest, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                out[s] = dest
            yield out
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def __enter__(self) -> _Submission:
        return self

    def __exit__(self, *exc) -> None:
        if self.archive is not None:
            self.archive.close()


def _groups(stems: list[str], gt_files: dict[str, Any], opts: _Options, *, by_count=False
            ) -> Iterator[list[str]]:
    """Batches of images scored in one task graph (bounded temp disk for zips)."""
    group: list[str] = []
    pixels = 0
    for s in stems:
        n = 1 if by_count else _GreyImage(gt_files[s], truth=True).size
        if group and (pixels + n > opts.group_pixels or (by_count and len(group) >= 64)):
            yield group
            group, pixels = [], 0
        group.append(s)
        pixels += n
    if group:
        yield group


def _listing(names: list[str], n: int = 5) -> str:
    shown = ", ".join(map(str, names[:n]))
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


# ---------------------------------------------------------------------------------------------
# greyscale images read band by band


class _GreyImage:
    """A 2-D image as ``cv2.imread(path, 0)`` would give it, read in row bands.

    TIFF: uncompressed contiguous pages are read with ``os.pread`` per band; other TIFFs go
    through tifffile's zarr store (only the strips/tiles a band touches are decoded). PNG/BMP
    are decoded whole (they are small by nature) once per process and kept as uint8 grey.
    Picklable (reopens lazily), thread-safe.
    """

    def __init__(self, path: str | Path, *, name: str | None = None, truth: bool = False):
        self.path = str(path)
        self.name = name or Path(path).name
        self.truth = truth
        self.suffix = Path(path).suffix.lower()
        self._lock = threading.Lock()
        self._decoded: np.ndarray | None = None
        try:
            self._read_header()
        except (Rejected, TruthError):
            raise
        except Exception as e:
            self._fail(f"not a readable image ({type(e).__name__}: {e})", e)

    def _fail(self, why: str, cause: Exception | None = None):
        err = TruthError if self.truth else Rejected
        # a decoder's message may quote the file's path: a spooled zip member's temporary
        # file or the server's folder, which the participant must not see
        why = why.replace(self.path, self.name)
        raise err(f"{self.name}: {why}") from cause

    def __getstate__(self):
        d = self.__dict__.copy()
        for k in ("_lock", "_decoded"):
            d.pop(k, None)
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._lock = threading.Lock()
        self._decoded = None
        self._unpickled = True  # a worker's copy: share decodes through the process cache

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    # -- header --------------------------------------------------------------------------------
    def _read_header(self) -> None:
        if self.suffix in TIFF_SUFFIXES:
            self.kind = "tiff"
            import tifffile

            with tifffile.TiffFile(self.path) as tf:
                page = tf.pages[0]
                self.byteorder = tf.byteorder
                axes, shape = page.axes, page.shape
                self.dtype = np.dtype(page.dtype)
                self.raw_shape = tuple(shape)
                self.axes = axes
                self.min_is_white = int(page.photometric) == 0  # MINISWHITE: libtiff inverts
                self._tiff_colour_model(page)
                contiguous = (page.is_contiguous and page.compression == 1 and not page.is_tiled
                              and page.fillorder == 1 and page.bitspersample in (8, 16)
                              and page.planarconfig == 1)
                self.offset = int(page.dataoffsets[0]) if contiguous else None
                self.storage_rows = (1 if contiguous else
                                     int(page.tilelength if page.is_tiled else
                                         min(page.rowsperstrip or shape[axes.index("Y")],
                                             shape[axes.index("Y")])))
            if "Y" not in axes or "X" not in axes or set(axes) - set("YXS"):
                self._fail(f"TIFF axes {axes} (shape {shape}): expected a 2-D image, "
                           "optionally with colour samples")
            self.shape = (int(shape[axes.index("Y")]), int(shape[axes.index("X")]))
            self.samples = int(shape[axes.index("S")]) if "S" in axes else 1
            if self.samples > 4:  # grey, grey+alpha, RGB, RGBA; more is a forged header
                self._fail(f"{self.samples} samples per pixel: expected 1 (grey) to 4 (RGBA)")
            self.colour = "opencv"
            if self.photometric == 2 and self.samples < 3:
                self._fail(f"RGB TIFF with {self.samples} samples per pixel (expected 3 or 4)")
        else:
            self.kind = "decoded"
            from PIL import Image

            with Image.open(self.path) as im:
                self.shape = (int(im.size[1]), int(im.size[0]))
                self.mode = im.mode
            self.storage_rows = 1  # decoded once into memory: any band is free
            self.dtype = np.dtype(np.uint8)
            self.min_is_white = False
            self.colour = "libpng" if self.suffix in PNG_SUFFIXES else "opencv"
        if self.dtype.kind not in "ub":
            self._fail(f"sample type {self.dtype} is not supported: store 8-bit (or 16-bit) "
                       "unsigned grey values")
        if self.size > 10**10:
            self._fail(f"image of {self.shape} pixels is over the size limit")

    # -- reading -------------------------------------------------------------------------------
    def rows(self, a: int, b: int) -> np.ndarray:
        """Grey uint8 rows ``a:b`` (whole width)."""
        try:
            if self.kind == "decoded":
                return self._decoded_image()[a:b]
            if self.offset is not None:
                raw = self._pread_rows(a, b)
            else:
                raw = self._zarr_rows(a, b)
            return self._tiff_grey(np.asarray(raw))
        except (Rejected, TruthError):
            raise
        except Exception as e:
            self._fail(f"cannot read rows {a}:{b} ({type(e).__name__}: {e})", e)

    def _tiff_colour_model(self, page: Any) -> None:
        """What ``cv2.imread(path, 0)`` does with this page (libtiff's RGBA reader, then
        OpenCV's grey): reject what it cannot read, note palette and alpha handling."""
        photometric = int(page.photometric)
        bits = int(page.bitspersample)
        self.photometric = photometric
        self.lut = None
        self.unassoc_alpha = False
        tag = page.tags.get(274)  # Orientation: libtiff/OpenCV re-orient, this reader does not
        if tag is not None and int(tag.value) != 1:
            self._fail(f"TIFF Orientation tag is {int(tag.value)} (only 1 = top-left is "
                       "supported): save the image without an Orientation tag")
        if photometric not in (0, 1, 2, 3, 6):  # MINISWHITE/BLACK, RGB, PALETTE, YCbCr
            self._fail(f"TIFF photometric interpretation {photometric} is not supported: "
                       "save a grey, RGB or palette image")
        if photometric == 3:
            if bits not in (1, 4, 8) or page.colormap is None:
                self._fail(f"{bits}-bit palette TIFF is not supported (1, 4 or 8 bits)")
            self.lut = _palette_grey(np.asarray(page.colormap), bits)
        elif bits not in (1, 8, 16):  # OpenCV's header check / libtiff's RGBA reader refuse
            self._fail(f"{bits}-bit TIFF samples ({np.dtype(page.dtype)}) are not supported: "
                       "store 1-, 8- or 16-bit unsigned values")
        extra = tuple(int(e) for e in (page.extrasamples or ()))
        # libtiff premultiplies unassociated alpha (ExtraSamples = 2) into RGB before OpenCV
        # converts to grey; associated/unspecified alpha is left alone, grey+alpha too.
        self.unassoc_alpha = photometric == 2 and bool(extra) and extra[0] == 2
        self.cv_scanline = self._opencv_scanline(page, photometric, bits, extra)

    def _opencv_scanline(self, page: Any, photometric: int, bits: int, extra: tuple) -> bool:
        """OpenCV's TIFF decoder decodes a strip/tile as 32-bit RGBA (libtiff's RGBA reader)
        unless that buffer would reach 95 % of 1 GiB; then a single-strip, contiguous 8/16-bit
        grey/RGB image (RGBA only with associated alpha) is read scanline by scanline *without*
        libtiff's mapping, and anything else fails (``cv2.imread`` → ``None``) once the RGBA
        buffer reaches 1 GiB. Returns whether the scanline reading applies (see _tiff_grey).
        """
        axes, shape = page.axes, page.shape
        height, width = shape[axes.index("Y")], shape[axes.index("X")]
        samples = shape[axes.index("S")] if "S" in axes else 1
        if page.is_tiled:
            tile_w, tile_h = int(page.tilewidth), int(page.tilelength)
        else:
            tag = page.tags.get(278)  # RowsPerStrip; absent, 0 or 2**32 - 1: one strip
            rps = int(tag.value) if tag is not None else 0
            tile_w, tile_h = width, (height if rps in (0, 2**32 - 1) else rps)
        rgba_bytes = 4 * tile_w * tile_h
        if rgba_bytes < _CV_SCANLINE_MIN_BYTES:
            return False
        if (not page.is_tiled and tile_h == height and samples in (1, 3, 4) and bits in (8, 16)
                and photometric in (0, 1, 2) and int(page.planarconfig) != 2
                and (samples != 4 or extra == (1,))):
            return True
        if rgba_bytes >= _CV_RGBA_MAX_BYTES:
            self._fail(f"a strip/tile of {tile_w}×{tile_h} pixels is too large for OpenCV "
                       "(cv2.imread returns None on it): save the image in strips of fewer rows")
        return False

    def _tiff_grey(self, raw: np.ndarray) -> np.ndarray:
        """Stored TIFF samples of one band → uint8 grey as ``cv2.imread(path, 0)``."""
        if self.cv_scanline:
            return _scanline_grey(raw, self.axes)
        if self.lut is not None:  # palette index → colormap RGB → OpenCV grey
            return self.lut[raw.view(np.uint8) if raw.dtype == np.bool_ else raw]
        axes = self.axes
        if "S" in axes and self.photometric in (0, 1):  # grey + extra samples: sample 0
            raw = np.take(raw, 0, axis=axes.index("S"))
            axes = axes.replace("S", "")
        elif "S" in axes and self.unassoc_alpha:
            raw = _premultiply(raw, axes)
            axes = axes.replace("S", "") + "S"
        grey = _to_grey(raw, axes, self.colour)
        return 255 - grey if self.min_is_white else grey

    def _row_key(self, a, b):
        return tuple(slice(a, b) if ax == "Y" else slice(None) for ax in self.axes)

    def _pread_rows(self, a: int, b: int) -> np.ndarray:
        dt = self.dtype.newbyteorder(self.byteorder)
        row_shape = tuple(s for ax, s in zip(self.axes, self.raw_shape, strict=True) if ax != "Y")
        row_bytes = int(np.prod(row_shape)) * dt.itemsize
        buf = np.empty((b - a, *row_shape), dtype=dt)
        want = (b - a) * row_bytes
        fd = os.open(self.path, os.O_RDONLY)  # per band: no handle outlives a task
        try:
            got = os.preadv(fd, [memoryview(buf).cast("B")], self.offset + a * row_bytes)
        finally:
            os.close(fd)
        if got != want:
            self._fail(f"file is truncated (rows {a}:{b} need {want} bytes, got {got})")
        return buf.astype(buf.dtype.newbyteorder("="), copy=False)

    def _zarr_rows(self, a: int, b: int) -> np.ndarray:
        """Decode only the strips/tiles holding rows ``a:b`` (tifffile's zarr store)."""
        import tifffile
        import zarr

        with tifffile.TiffFile(self.path) as tf:
            z = zarr.open(tf.pages[0].aszarr(), mode="r")
            return np.asarray(z[self._row_key(a, b)])

    def _decoded_image(self) -> np.ndarray:
        with self._lock:
            if self._decoded is None:
                if getattr(self, "_unpickled", False):
                    st = os.stat(self.path)
                    self._decoded = _decode_cached(self.path, st.st_mtime_ns, st.st_size,
                                                   self.colour)
                else:
                    self._decoded = _decode_whole(self.path, self.colour)
                if self._decoded.shape != self.shape:
                    self._fail(f"decoded shape {self._decoded.shape} differs from {self.shape}")
            return self._decoded


@functools.lru_cache(maxsize=2)
def _decode_cached(path: str, mtime_ns: int, size: int, colour: str) -> np.ndarray:
    """On a distributed worker every band task gets its own copy of the image object; this
    keeps the last two decoded PNG/BMP images per process so each is decoded once, not per band.
    """
    out = _decode_whole(path, colour)
    out.flags.writeable = False
    return out


def _decode_whole(path: str, colour: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode == "P" or im.mode == "PA":
            im = im.convert("RGBA")
        if im.mode == "1":
            return np.asarray(im, dtype=np.uint8) * np.uint8(255)
        arr = np.asarray(im)
        axes = "YXS" if arr.ndim == 3 else "YX"
        if arr.dtype.kind == "i" and arr.min(initial=0) >= 0 and arr.max(initial=0) < 65536:
            arr = arr.astype(np.uint16)  # Pillow's "I" mode for 16-bit grey PNG
        if axes == "YX":
            return _to_grey(arr, axes, colour)
        out = np.empty(arr.shape[:2], np.uint8)
        for a in range(0, arr.shape[0], 1024):  # bounded uint32 temporaries
            out[a:a + 1024] = _to_grey(arr[a:a + 1024], axes, colour)
        return out


def _palette_grey(colormap: np.ndarray, bits: int) -> np.ndarray:
    """Grey value of every palette index: libtiff keeps an 8-bit colormap (all entries < 256)
    and takes the high byte of a 16-bit one; OpenCV then applies its grey weights."""
    cmap = colormap.astype(np.int64)[:3, : 1 << bits]
    if (cmap >= 256).any():
        cmap = cmap >> 8
    r, g, b = cmap
    lut = np.full(256, 0, np.uint8)  # indices beyond the colormap: black, as libtiff's zeros
    lut[: r.size] = ((4899 * r + 9617 * g + 1868 * b + 8192) >> 14).astype(np.uint8)
    return lut


def _premultiply(raw: np.ndarray, axes: str) -> np.ndarray:
    """RGBA with unassociated alpha as libtiff's RGBA reader gives it: 16-bit samples to
    8 bit (``(v + 128) // 257``), then ``c = (c * a + 127) // 255``; samples last, uint8."""
    arr = np.moveaxis(raw, axes.index("S"), -1)
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.uint32) + 128) // 257
    arr = arr.astype(np.uint32)
    out = np.empty(arr.shape[:-1] + (3,), np.uint8)
    alpha = arr[..., 3]
    for c in range(3):
        out[..., c] = (arr[..., c] * alpha + 127) // 255
    return out


_CV_SCANLINE_MIN_BYTES = (2**30 * 95) // 100
"""OpenCV's TIFF decoder switches from libtiff's RGBA reader to raw scanlines at this RGBA
strip size (``MAX_TILE_SIZE * 95 / 100``; a single strip of about 255 M pixels)."""
_CV_RGBA_MAX_BYTES = 2**30
"""... and refuses RGBA strips/tiles of this size (``buffer_size is too large: >= 1Gb``)."""


def _scanline_grey(raw: np.ndarray, axes: str) -> np.ndarray:
    """OpenCV's raw-scanline TIFF path (huge single strips, see ``_opencv_scanline``): 16-bit
    samples keep their high byte, grey is copied as stored (MINISWHITE is *not* inverted), and
    3/4 samples go through ``icvCvt_BGR(A)2Gray`` without its R/B swap, i.e. sample 0 gets the
    blue weight: ``(1868 s0 + 9617 s1 + 4899 s2 + 8192) >> 14``; alpha is ignored."""
    if raw.dtype == np.uint16:
        raw = (raw >> 8).astype(np.uint8)
    if "S" not in axes:
        return raw
    arr = np.moveaxis(raw, axes.index("S"), -1)
    s0, s1, s2 = (arr[..., i].astype(np.uint32) for i in range(3))
    return ((1868 * s0 + 9617 * s1 + 4899 * s2 + 8192) >> 14).astype(np.uint8)


def _to_grey(arr: np.ndarray, axes: str, colour: str) -> np.ndarray:
    """Stored samples → uint8 grey like ``cv2.imread(path, 0)`` (see module docstring)."""
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8) * np.uint8(255)
    elif arr.dtype == np.uint16 and "S" in axes and colour == "opencv":
        arr = ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)  # libtiff 16-bit RGB map
    elif arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)  # libtiff/OpenCV 16-bit grey: high byte
    elif arr.dtype != np.uint8:
        raise Rejected(f"sample type {arr.dtype} is not supported: store 8-bit grey values")
    if "S" not in axes:
        return arr
    s = axes.index("S")
    arr = np.moveaxis(arr, s, -1) if s != len(axes) - 1 else arr
    n = arr.shape[-1]
    if n < 3:  # grey (+ alpha)
        return np.ascontiguousarray(arr[..., 0])
    r, g, b = (arr[..., i].astype(np.uint32) for i in range(3))
    if colour == "libpng":
        grey = ((9797 * r + 19234 * g + 3737 * b) >> 15).astype(np.uint8)
        equal = (arr[..., 0] == arr[..., 1]) & (arr[..., 0] == arr[..., 2])
        return np.where(equal, arr[..., 0], grey)
    return ((4899 * r + 9617 * g + 1868 * b + 8192) >> 14).astype(np.uint8)


def _check_shapes(gt: _GreyImage, pred: _GreyImage) -> None:
    if gt.shape != pred.shape:
        raise Rejected(f"{pred.name}: {pred.shape[0]}×{pred.shape[1]} pixels (rows×columns), "
                       f"the GT image {gt.name} is {gt.shape[0]}×{gt.shape[1]}")


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


def report_images(result: Result, truth, submission, config) -> list:
    """Pictures of where the submission fails, for the HTML report (see
    :func:`gpueval.report_images.urisc_images`)."""
    from gpueval.report_images import urisc_images

    return urisc_images(result, truth, submission, config)
