"""REFUGE ground truth: the mask folder and the label and fovea sheets (``.xlsx`` or ``.csv``).

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

A truth ``.xlsx`` is a zip: its sizes are checked from the central directory and every stream
is inflated in bounded pieces before openpyxl reads it (:data:`MAX_XLSX_BYTES`), and the sheet
read is capped (:data:`MAX_XLSX_ROWS`, :data:`MAX_XLSX_COLUMNS`).
"""

from __future__ import annotations

import csv
import io
import math
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpueval.errors import Rejected, TruthError
from gpueval.io.archive import SafeArchive

MASK_DIR = "Disc_Cup_Masks"


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
    try:  # central-directory checks only: nothing is inflated here
        SafeArchive(path, max_total_bytes=max_bytes).close()
    except Rejected as e:
        raise TruthError(f"{path.name}: refused as a truth .xlsx ({e}); a REFUGE sheet needs "
                         f"far less than {max_bytes} bytes") from e
    _check_xlsx_streams(path)
    import openpyxl  # only .xlsx truth needs it (~0.09 s of every REFUGE start-up otherwise)

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
