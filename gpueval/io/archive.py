"""Reading untrusted ``.zip`` uploads without trusting anything they declare.

:class:`SafeArchive` checks the central directory before any byte is inflated and counts the
bytes actually inflated while reading, so each of these is a :class:`~gpueval.errors.Rejected`
with its reason, never an extraction:

* path traversal: ``..`` components, absolute paths, drive letters, backslashes, NUL bytes;
* symbolic links (Unix mode in ``external_attr``), device/FIFO members;
* duplicate names (after normalisation), encrypted members, unsupported compression;
* zip bombs: total or per-member declared size over the limit, a compression ratio over the
  limit, or *actual* inflated bytes over the declared size (a lying header);
* truncated or corrupt archives (bad central directory, CRC errors).

Nested archives are not opened: a member named ``*.zip`` is refused unless the caller asks for
it by name.
"""

from __future__ import annotations

import io
import shutil
import stat
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from gpueval.errors import Rejected

DEFAULT_MAX_TOTAL_BYTES = 64 * 2**30
DEFAULT_MAX_MEMBERS = 1_000_000
DEFAULT_MAX_RATIO = 1_000.0  # uint64 label chunks of zeros compress ~1000x; bombs reach 10^6
_RATIO_FLOOR = 1 << 20  # small members may have any ratio (a 1 MiB zero chunk is no bomb)


class SafeArchive:
    """A validated, read-only view of a zip file.

    Parameters
    ----------
    path : the archive.
    max_total_bytes : limit on the sum of uncompressed sizes (declared and actual).
    max_members : limit on the number of entries.
    max_ratio : limit on uncompressed/compressed size for members larger than 1 MiB.

    Examples
    --------
    >>> with SafeArchive("result.zip") as z:            # doctest: +SKIP
    ...     for name in z.names(suffix=".tiff"):
    ...         data = z.read(name)
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
        max_members: int = DEFAULT_MAX_MEMBERS,
        max_ratio: float = DEFAULT_MAX_RATIO,
    ):
        self.path = Path(path)
        self.max_total_bytes = int(max_total_bytes)
        self.max_ratio = float(max_ratio)
        try:
            self._zip = zipfile.ZipFile(self.path)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise Rejected(f"{self.path.name}: not a readable zip archive ({e})") from e
        if len(infos) > max_members:
            raise Rejected(f"{self.path.name}: {len(infos)} entries, more than the limit "
                           f"{max_members}")
        self._infos: dict[str, zipfile.ZipInfo] = {}
        total = 0
        for info in infos:
            name = _check_name(info.filename)
            _check_member(info, self.max_ratio)
            if name in self._infos:
                raise Rejected(f"duplicate archive member {name!r}")
            self._infos[name] = info
            total += info.file_size
            if total > self.max_total_bytes:
                raise Rejected(f"{self.path.name}: declared uncompressed size exceeds "
                               f"{self.max_total_bytes} bytes (zip bomb guard)")

    def __enter__(self) -> SafeArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()

    def names(self, *, suffix: str | tuple[str, ...] | None = None,
              include_dirs: bool = False) -> list[str]:
        """Normalised member names (``a/b.tiff``), skipping ``__MACOSX/`` and dot-files."""
        out = []
        for name, info in self._infos.items():
            parts = PurePosixPath(name).parts
            if parts and parts[0] == "__MACOSX" or any(p.startswith("._") for p in parts):
                continue
            if info.is_dir() and not include_dirs:
                continue
            if suffix and not name.lower().endswith(suffix):
                continue
            out.append(name)
        return out

    def size(self, name: str) -> int:
        return self._info(name).file_size

    def open(self, name: str) -> IO[bytes]:
        """A stream that raises :class:`Rejected` if it inflates past the declared size."""
        info = self._info(name)
        try:
            raw = self._zip.open(info)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError) as e:
            raise Rejected(f"archive member {name!r} cannot be opened: {e}") from e
        return _BoundedReader(raw, info.file_size, name)

    def read(self, name: str, limit: int | None = None) -> bytes:
        """Whole member as bytes; refuses members larger than ``limit``."""
        info = self._info(name)
        if limit is not None and info.file_size > limit:
            raise Rejected(f"archive member {name!r} is {info.file_size} bytes, over the "
                           f"limit {limit}")
        with self.open(name) as f:
            return f.read()

    def extract_to(self, target: str | Path, names: Iterable[str] | None = None) -> Path:
        """Extract the chosen members under ``target`` (never outside it)."""
        target = Path(target).resolve()
        written = 0
        for name in self.names(include_dirs=True) if names is None else names:
            info = self._info(name)
            dest = (target / name).resolve()
            if target not in dest.parents and dest != target:
                raise Rejected(f"archive member {name!r} escapes the extraction folder")
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            written += info.file_size
            if written > self.max_total_bytes:
                raise Rejected("extraction exceeds the uncompressed size limit")
            with self.open(name) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        return target

    def _info(self, name: str) -> zipfile.ZipInfo:
        try:
            return self._infos[name]
        except KeyError:
            raise Rejected(f"archive has no member {name!r}") from None


class _BoundedReader(io.RawIOBase):
    """Counts inflated bytes; a member inflating past its declared size is a bomb."""

    def __init__(self, raw: IO[bytes], declared: int, name: str):
        self._raw, self._left, self._name = raw, declared, name

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            n = self._raw.readinto(b)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise Rejected(f"archive member {self._name!r} is corrupt or truncated: {e}") from e
        self._left -= n
        if self._left < 0:
            raise Rejected(f"archive member {self._name!r} inflates beyond its declared size")
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _check_name(name: str) -> str:
    if "\x00" in name or "\\" in name:
        raise Rejected(f"archive member name {name!r} contains a NUL or backslash")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise Rejected(f"archive member {name!r} has an absolute path")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise Rejected(f"archive member {name!r} points outside the archive (path traversal)")
    norm = "/".join(p for p in parts if p not in ("", "."))
    if not norm:
        raise Rejected(f"archive member with empty name {name!r}")
    return norm + ("/" if name.endswith("/") else "")


def _check_member(info: zipfile.ZipInfo, max_ratio: float) -> None:
    mode = info.external_attr >> 16
    if mode and (stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                 or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        raise Rejected(f"archive member {info.filename!r} is a link or special file")
    if info.flag_bits & 0x1:
        raise Rejected(f"archive member {info.filename!r} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED,
                                  zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        raise Rejected(f"archive member {info.filename!r} uses unsupported compression "
                       f"{info.compress_type}")
    if (info.file_size > _RATIO_FLOOR
            and info.file_size > max_ratio * max(info.compress_size, 1)):
        raise Rejected(f"archive member {info.filename!r} has compression ratio "
                       f"{info.file_size / max(info.compress_size, 1):.0f} > {max_ratio:.0f} "
                       "(zip bomb guard)")


def iter_files(root: str | Path, suffix: str | tuple[str, ...] | None = None) -> Iterator[Path]:
    """Regular files below a submission folder, refusing symlinks that leave it."""
    root = Path(root).resolve()
    for p in sorted(root.rglob("*")):
        if p.is_symlink() and root not in p.resolve().parents:
            raise Rejected(f"{p.relative_to(root)} is a symbolic link leaving the submission")
        if p.is_file() and (suffix is None or p.name.lower().endswith(suffix)):
            yield p
