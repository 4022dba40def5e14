"""Where a U-RISC submission and its truth are found, and what is checked before scoring.

``truth``: a folder of ``<stem>.png|.tif|.tiff`` (or one image file). ``submission``: a folder
(searched recursively) or a ``.zip`` of ``<stem>.tiff|.tif`` (or one file). Members of a zip are
validated by :class:`~gpueval.io.archive.SafeArchive` and copied, one group of images at a time,
through a size-bounded stream into a private temporary folder (TIFF needs random access); nothing
is extracted blindly and no temporary file outlives its group. The images themselves are read by
:mod:`gpueval.challenges.urisc.imread`.

Decisions where the spec is silent:

* **Extra files** (stems not in the truth, other suffixes) are ignored, listed in
  ``extra["notes"]`` and named in a user warning (the result's ``warnings``, also from
  ``validate``). Two submission files with one stem and suffix are a rejection; of
  ``x.tiff``, ``x.tif`` and ``x.png`` the first present counts and the others are ignored.
* **Wrong size**: rejected, naming both shapes (the official code would broadcast or crash).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from gpueval.challenges.urisc.imread import _GreyImage
from gpueval.challenges.urisc.options import _Options
from gpueval.errors import Rejected, TruthError
from gpueval.io.archive import SafeArchive, iter_files
from gpueval.notices import warn

TRUTH_SUFFIXES = (".png", ".tif", ".tiff")
SUBMISSION_SUFFIXES = (".tiff", ".tif", ".png")  # priority order for one stem


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
            self.archive = SafeArchive(self.path, max_total_bytes=opts.max_archive_bytes)
            entries = self.archive.names()
        elif self.path.is_file():
            entries = [self.path]
        elif self.path.is_dir():
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


def _check_shapes(gt: _GreyImage, pred: _GreyImage) -> None:
    if gt.shape != pred.shape:
        raise Rejected(f"{pred.name}: {pred.shape[0]}×{pred.shape[1]} pixels (rows×columns), "
                       f"the GT image {gt.name} is {gt.shape[0]}×{gt.shape[1]}")
