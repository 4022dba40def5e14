"""REFUGE submissions: finding the three parts and reading masks and CSVs, with the format quirks.

``submission``: a folder or a ``.zip`` (read through :class:`~gpueval.io.archive.SafeArchive`,
member by member, never extracted) holding ``segmentation/<name>.bmp``,
``classification_results.csv`` (header, then ``name,score``) and ``fovea_location_results.csv``
or ``fovea_localization_results.csv`` (header, then ``name,x,y``), at the top level or inside a
single wrapping folder (the one top-level folder holding any of them; loose files beside it,
``__MACOSX`` and ``._*`` entries are ignored). At least one part must exist; an absent part is
NaN. Only ``*.bmp`` files directly in ``segmentation/`` are scored (``.BMP`` is ignored, as
the official case-sensitive listing does; ignored files are listed in the notes).

Masks (submitted and ground truth) are read by :func:`read_mask` as
``np.array(PIL.Image.open(f))`` after SciPy's ``imread`` conversions: palette images → RGB(A),
1-bit → 8-bit; a 3-D array keeps channel 0.

Ignored files (masks that are not ``*.bmp``, CSV files with other names, a second fovea file)
and a data-looking CSV header row are noted and warned (:func:`gpueval.notices.warn`).

Rejected in both modes (format errors a person can fix): unreadable masks, a mask whose size
differs from its ground truth (checked from the header, before decoding), non-numeric or
non-finite scores/coordinates, a CSV row with too few columns, unsafe archives. Not
reproduced: the official fovea reader's crash on a file with exactly one row (scored here).
Names in the CSVs are stripped of surrounding blanks; blank lines are skipped.
"""

from __future__ import annotations

import csv
import io
import math
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from gpueval.challenges.refuge.options import _Options
from gpueval.errors import Rejected, TruthError
from gpueval.io.archive import SafeArchive, iter_files
from gpueval.notices import warn

SEGMENTATION_DIR = "segmentation"
CLASSIFICATION_FILE = "classification_results.csv"
FOVEA_FILES = ("fovea_location_results.csv", "fovea_localization_results.csv")


# --------------------------------------------------------------------------------------------
# Masks


def read_mask(src: str | Path | io.IOBase, *, opts: _Options | None = None, name: str = "",
              expected_shape: tuple[int, ...] | None = None, truth: bool = False) -> np.ndarray:
    """Decode one mask as the official ``scipy.misc.imread`` did, as a 2-D array.

    Palette images are converted to RGB (RGBA with transparency) and 1-bit images to 8 bit
    first, as SciPy's ``fromimage`` did; a 3-D result keeps channel 0. The size is checked
    against ``expected_shape`` and the pixel limit from the header, before decoding.
    """
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
# CSVs


def _classification_rows(data: bytes, where: str, notes: list[str]
                         ) -> list[tuple[str, float | None]]:
    out = []
    for line, row in _csv_body(data, where, notes):
        if len(row) < 2:
            raise Rejected(f"{where} line {line}: expected 'name,score', got {row!r}")
        out.append((row[0].strip(), _number(row[1], where, line, "score")))
    return out



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
