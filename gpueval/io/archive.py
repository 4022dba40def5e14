"""Reading untrusted ``.zip`` uploads without trusting anything they declare.

:class:`SafeArchive` checks the central directory before any byte is inflated and counts the
bytes actually inflated while reading, so each of these is a :class:`~gpueval.errors.Rejected`
with its reason, never an extraction:

* path traversal: ``..`` components, absolute paths, drive letters, backslashes, NUL bytes;
* symbolic links (Unix mode in ``external_attr``), device/FIFO members;
* duplicate names (after normalisation), encrypted members, unsupported compression;
* zip bombs: total declared size over ``max_archive_bytes`` or one member's over
  ``max_chunk_bytes`` (a member is one chunk, shard or image), a compression ratio over the
  limit, or *actual* inflated bytes over the declared size (a lying header);
* truncated or corrupt archives (bad central directory, member data past the end of the file,
  CRC errors), and overlapping members (the "non-recursive" zip bomb whose entries share
  compressed data);
* nested archives: a member named ``*.zip``, ``*.tar``, ``*.gz``, ``*.7z``… is refused unless
  the caller passes ``allow_nested=True`` (``.npz`` is an array format, not a nested archive);
* names differing only in case or Unicode normalisation (they collide on macOS/Windows), names
  longer than 1024 characters;
* more members than the limit — counted from the end-of-central-directory record *before* the
  central directory is parsed, so a million-entry archive costs nothing.

Folder submissions go through :func:`iter_files`, which refuses symlinks leaving the folder,
hard links (a file with several names may be a link to a file outside the submission), special
files (a FIFO would hang a reader) and more files than the limit.

Defaults come from :class:`gpueval.limits.Limits` (``max_archive_bytes``, ``max_files``,
``max_compression_ratio``, ``allow_nested_archives``), i.e. from the ``limits:`` mapping of the
challenge config when a scoring call made it current.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import struct
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from gpueval.errors import Rejected
from gpueval.io.arrays import _why as why
from gpueval.limits import Limits, resolve

DEFAULT_MAX_TOTAL_BYTES = Limits.max_archive_bytes
DEFAULT_MAX_MEMBERS = Limits.max_files
DEFAULT_MAX_RATIO = Limits.max_compression_ratio  # zero label chunks deflate ~1000x; bombs 10^6
_RATIO_FLOOR = 1 << 20  # small members may have any ratio (a 1 MiB zero chunk is no bomb)
MAX_NAME_LENGTH = 1024
NESTED_SUFFIXES = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".zst", ".7z", ".rar", ".jar",
                   ".tbz2", ".txz", ".lz4", ".lzma", ".cab", ".iso")
_LOCAL_HEADER = 30


class SafeArchive:
    """A validated, read-only view of a zip file.

    Parameters
    ----------
    path : the archive.
    max_total_bytes : limit on the sum of uncompressed sizes (declared and actual).
    max_members : limit on the number of entries.
    max_ratio : limit on uncompressed/compressed size for members larger than 1 MiB.
    max_member_bytes : limit on one member's uncompressed size (default
        ``limits.max_chunk_bytes``: a member is one chunk, shard, strip or image, and the
        bytes it actually inflates to are counted against what it declares).
    allow_nested : accept members that are archives themselves (``.zip``, ``.tar``…).
    limits : defaults for the three limits above (default: the current
        :class:`~gpueval.limits.Limits`).

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
        max_total_bytes: int | None = None,
        max_members: int | None = None,
        max_ratio: float | None = None,
        allow_nested: bool | None = None,
        max_member_bytes: int | None = None,
        limits: Limits | None = None,
    ):
        lim = resolve(limits)
        self.path = Path(path)
        # one member is one stored chunk, shard, strip or image: never more than a chunk may be
        self.max_member_bytes = int(lim.max_chunk_bytes if max_member_bytes is None
                                    else max_member_bytes)
        self.max_total_bytes = int(lim.max_archive_bytes if max_total_bytes is None
                                   else max_total_bytes)
        self.max_ratio = float(lim.max_compression_ratio if max_ratio is None else max_ratio)
        max_members = int(lim.max_files if max_members is None else max_members)
        allow_nested = lim.allow_nested_archives if allow_nested is None else allow_nested
        try:
            if not stat.S_ISREG(self.path.stat().st_mode):
                raise Rejected(f"{self.path.name}: not a regular file")
            file_size = self.path.stat().st_size
            declared = _declared_entries(self.path)
            if declared is not None and declared > max_members:
                raise Rejected(f"{self.path.name}: {declared} entries, more than the limit "
                               f"{max_members}")
            self._zip = zipfile.ZipFile(self.path)
            infos = self._zip.infolist()
        except Rejected:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
                struct.error, NotImplementedError, UnicodeDecodeError) as e:
            raise Rejected(f"{self.path.name}: not a readable zip archive ({_why(e)})") from e
        try:
            self._infos = self._check_all(infos, max_members, bool(allow_nested), file_size)
        except Rejected:
            self._zip.close()
            raise

    def _check_all(self, infos: list[zipfile.ZipInfo], max_members: int, allow_nested: bool,
                   file_size: int) -> dict[str, zipfile.ZipInfo]:
        if len(infos) > max_members:
            raise Rejected(f"{self.path.name}: {len(infos)} entries, more than the limit "
                           f"{max_members}")
        out: dict[str, zipfile.ZipInfo] = {}
        folded: dict[str, str] = {}
        total = 0
        for info in infos:
            name = _check_name(info.filename)
            if info.file_size > self.max_member_bytes:
                raise Rejected(f"archive member {name!r} declares {info.file_size} bytes, over "
                               f"the per-member limit {self.max_member_bytes} (one chunk, "
                               "shard or image; limits.max_chunk_bytes)")
            _check_member(info, self.max_ratio)
            if not allow_nested and not info.is_dir() and name.lower().endswith(NESTED_SUFFIXES):
                raise Rejected(f"archive member {name!r} is itself an archive; nested archives "
                               "are refused (put the files in the top-level zip)")
            key = unicodedata.normalize("NFC", name).casefold()
            if name in out:
                raise Rejected(f"duplicate archive member {name!r}")
            if key in folded:
                raise Rejected(f"archive members {folded[key]!r} and {name!r} differ only in "
                               "case or Unicode normalisation")
            out[name], folded[key] = info, name
            total += info.file_size
            if total > self.max_total_bytes:
                raise Rejected(f"{self.path.name}: declared uncompressed size exceeds "
                               f"{self.max_total_bytes} bytes (zip bomb guard)")
        _check_layout(infos, file_size, self.path.name)
        return out

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
        except Exception as e:  # bad local header, unsupported feature, password needed...
            raise Rejected(f"archive member {name!r} cannot be opened: {_why(e)}") from e
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
        except Exception as e:  # BadZipFile, zlib.error, EOFError, lzma/bz2 errors, CRC...
            raise Rejected(f"archive member {self._name!r} is corrupt or truncated: "
                           f"{_why(e)}") from e
        self._left -= n
        if self._left < 0:
            raise Rejected(f"archive member {self._name!r} inflates beyond its declared size")
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _why(e: BaseException) -> str:
    """The exception in one line without server paths (a library may quote the file)."""
    return why(e)


def _check_name(name: str) -> str:
    if len(name) > MAX_NAME_LENGTH:
        raise Rejected(f"archive member name of {len(name)} characters is over the limit "
                       f"{MAX_NAME_LENGTH}")
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
    if info.flag_bits & 0x41:  # bit 0: encrypted, bit 6: strong encryption
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


def iter_files(root: str | Path, suffix: str | tuple[str, ...] | None = None, *,
               limits: Limits | None = None, allow_hardlinks: bool = False) -> Iterator[Path]:
    """Regular files below a submission folder, in sorted order.

    Refuses symlinks that leave the folder, hard links (unless ``allow_hardlinks``), special
    files (FIFOs, sockets, devices) and more than ``limits.max_files`` entries.
    """
    lim = resolve(limits)
    root = Path(root).resolve()
    if not root.is_dir():
        raise Rejected(f"{root.name}: not a folder")
    entries = []
    for p in root.rglob("*"):
        entries.append(p)
        if len(entries) > lim.max_files:
            raise Rejected(f"{root.name}: more than {lim.max_files} files, over the limit")
    for p in sorted(entries):
        rel = p.relative_to(root)
        if p.is_symlink():
            target = Path(os.path.realpath(p))
            if root not in target.parents:
                raise Rejected(f"{rel} is a symbolic link leaving the submission")
        try:
            st = p.stat()
        except OSError as e:  # dangling link, permission
            raise Rejected(f"{rel}: cannot be read ({e.strerror})") from e
        if stat.S_ISDIR(st.st_mode):
            continue
        if not stat.S_ISREG(st.st_mode):
            raise Rejected(f"{rel} is not a regular file (FIFO, socket or device)")
        if st.st_nlink > 1 and not allow_hardlinks and not p.is_symlink():
            raise Rejected(f"{rel} is a hard link ({st.st_nlink} names); submit plain files")
        if suffix is None or p.name.lower().endswith(suffix):
            yield p


def _declared_entries(path: Path) -> int | None:
    """Entry count from the end-of-central-directory record (None if not found here)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(0, size - (1 << 16) - 22))
        tail = f.read()
    i = tail.rfind(b"PK\x05\x06")
    if i < 0 or len(tail) - i < 22:
        return None
    total = struct.unpack("<H", tail[i + 10:i + 12])[0]
    if total == 0xFFFF and i >= 20 and tail[i - 20:i - 16] == b"PK\x06\x07":
        z64_off = struct.unpack("<Q", tail[i - 12:i - 4])[0]
        with open(path, "rb") as f:
            f.seek(z64_off)
            rec = f.read(56)
        if len(rec) == 56 and rec[:4] == b"PK\x06\x06":
            total = struct.unpack("<Q", rec[32:40])[0]
    return total


def _check_layout(infos: list[zipfile.ZipInfo], file_size: int, archive: str) -> None:
    """Member data must lie inside the file and no two members may share bytes."""
    end_prev, prev = -1, None
    for info in sorted(infos, key=lambda i: i.header_offset):
        start = info.header_offset
        if start < end_prev:
            raise Rejected(f"{archive}: members {prev!r} and {info.filename!r} overlap "
                           "(overlapping-entry zip bomb or corrupt archive)")
        end = start + _LOCAL_HEADER + len(info.filename.encode("utf-8", "surrogateescape")) \
            + info.compress_size
        if end > file_size:
            raise Rejected(f"{archive}: member {info.filename!r} extends past the end of the "
                           "file (truncated archive)")
        end_prev, prev = end, info.filename
