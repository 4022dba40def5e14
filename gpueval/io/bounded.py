"""The one choke point for bytes a submission (or a truth file) makes us decompress.

Every reader in :mod:`gpueval.io.arrays` hands compressed bytes to :func:`decode` together with
the largest output it may legitimately produce — derived from the declared chunk or array shape
*after* that shape was checked against the limits — so a few megabytes of upload can never
become gigabytes of memory:

=========  ==============================================================================
codec      how the output is bounded
=========  ==============================================================================
zlib/gzip  ``zlib.decompressobj().decompress(data, max_out + 1)``: at most ``max_out + 1``
           bytes are ever produced; one more byte than allowed is a rejection (concatenated
           gzip members are followed, each counted against the same bound)
bz2, lzma  the same with ``BZ2Decompressor`` / ``LZMADecompressor`` and ``max_length``
zstd       ``imagecodecs.zstd_decode(data, out=max_out)``: libzstd writes into a buffer of
           ``max_out`` bytes and fails when the frames need more, whatever the frame header
           declares (or does not declare)
lzf        ``imagecodecs.lzf_decode(data, out=max_out)``: likewise a fixed output buffer
lz4        numcodecs framing: the 4-byte size prefix is compared with ``max_out`` before the
           block is decoded into a buffer of that size
blosc      the 16-byte blosc header (``nbytes``, ``cbytes``) is compared with ``max_out`` and
           the input length before ``numcodecs.Blosc`` allocates ``nbytes``
=========  ==============================================================================

A caller that knows where the bytes go (the zarr v2 reader decoding a chunk into its place
in the block it returns) passes ``out=``, a buffer of exactly ``max_out`` bytes: zstd, lzf,
blosc and lz4 then decode straight into it, under the same bound (the buffer's size), and no
intermediate ``bytes`` is made; the other codecs decode as above and copy once.

A stream that needs more output than allowed is refused as soon as it does, with a one-line
:class:`~gpueval.errors.Rejected` naming ``where`` (a submission-relative name), never after
the bytes were produced. Truth files are decoded through the same functions by callers that
turn :class:`Rejected` into :class:`~gpueval.errors.TruthError`.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from typing import Any

from gpueval.errors import Rejected

#: Codec names :func:`decode` accepts (numcodecs / zarr / HDF5 spellings folded together).
CODECS: tuple[str, ...] = ("zlib", "gzip", "bz2", "lzma", "zstd", "lzf", "lz4", "blosc")

_ALIASES = {"deflate": "zlib", "gzip": "gzip", "zlib": "zlib", "bz2": "bz2", "bzip2": "bz2",
            "lzma": "lzma", "xz": "lzma", "zstd": "zstd", "lzf": "lzf", "lz4": "lz4",
            "blosc": "blosc"}
_BLOSC_HEADER = 16


def codec_name(name: str) -> str | None:
    """The canonical codec name for a numcodecs id / zarr v3 name / HDF5 filter name."""
    return _ALIASES.get(str(name).lower())


def decode(codec: str, data: bytes | bytearray | memoryview, max_out: int, where: str, *,
           exact: bool = False, out: Any = None) -> bytes | memoryview:
    """Decompress ``data`` with ``codec`` into at most ``max_out`` bytes.

    Parameters
    ----------
    codec : one of :data:`CODECS` (aliases such as ``deflate`` accepted).
    data : the compressed bytes as stored.
    max_out : the most bytes the output may have (the checked chunk/array size).
    where : submission-relative name of what is decoded (file, member, chunk) for messages.
    exact : also refuse an output shorter than ``max_out`` (a chunk must fill its shape).
    out : optional writable, C-contiguous buffer (e.g. a NumPy array or a byte view of one)
        of exactly ``max_out`` bytes to decode into. zstd and lzf decode straight into it,
        blosc and lz4 through numcodecs' ``decode(out=)``; the other codecs decode and copy.
        The bound is the same (the buffer's size); on a rejection its contents are
        undefined.

    Returns
    -------
    bytes or memoryview
        The decompressed bytes, ``len <= max_out``; with ``out``, a byte view of its
        first ``len`` bytes (no copy).

    Raises
    ------
    Rejected
        The stream needs more than ``max_out`` bytes, is shorter than ``max_out`` with
        ``exact``, is corrupt or truncated, or the codec is unknown.
    ValueError
        ``out`` is not a writable contiguous buffer of ``max_out`` bytes (a caller's bug).
    """
    name = codec_name(codec)
    max_out = int(max_out)
    if max_out < 0:
        raise Rejected(f"{where}: negative decoded size {max_out}")
    dest = None if out is None else byte_view(out, max_out)
    try:
        if name in ("zlib", "gzip"):
            res = _inflate(bytes(data), max_out, where, 47)  # 47: zlib or gzip header
        elif name == "bz2":
            res = _stream(bz2.BZ2Decompressor, bytes(data), max_out, where)
        elif name == "lzma":
            res = _stream(lzma.LZMADecompressor, bytes(data), max_out, where)
        elif name in ("zstd", "lzf"):
            res = _fixed(name, data if dest is not None else bytes(data), max_out, where, dest)
        elif name == "lz4":
            res = _lz4(bytes(data), max_out, where, dest)
        elif name == "blosc":
            res = _blosc(bytes(data), max_out, where, dest)
        else:
            raise Rejected(f"{where}: compression {codec!r} is not accepted (use one of "
                           f"{', '.join(CODECS)})")
    except Rejected:
        raise
    except MemoryError as e:
        raise Rejected(f"{where}: decoding needs more memory than allowed") from e
    except Exception as e:  # zlib.error, LZMAError, ZstdError, LzfError, RuntimeError...
        raise Rejected(f"{where}: corrupt {name} data ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:200] if str(e) else ''})") from e
    if exact and len(res) != max_out:
        raise Rejected(f"{where}: decodes to {len(res)} bytes, expected {max_out} (corrupt or "
                       "truncated chunk)")
    if dest is None:
        return res
    n = len(res)
    if not (isinstance(res, memoryview) and res.obj is dest.obj):
        dest[:n] = res  # a codec without an ``out`` path (or an empty stream): one copy
    return dest[:n]


def byte_view(out: Any, size: int) -> memoryview:
    """``out`` (a writable C-contiguous buffer, e.g. a NumPy array) as a flat byte view.

    Raises
    ------
    ValueError
        ``out`` is not a C-contiguous buffer, is read-only, or does not hold exactly
        ``size`` bytes.
    """
    try:
        view = memoryview(out)
        view = view if view.format == "B" and view.ndim == 1 else view.cast("B")
    except TypeError as e:  # not C-contiguous, or not a buffer
        raise ValueError(f"decode: out must be a C-contiguous buffer ({e})") from e
    if view.readonly or view.nbytes != size:
        raise ValueError(f"decode: out must be writable and hold exactly {size} bytes "
                         f"(got {view.nbytes}{', read-only' if view.readonly else ''})")
    return view


def _too_big(where: str, max_out: int) -> Rejected:
    return Rejected(f"{where}: compressed data decodes to more than the {max_out} bytes its "
                    "declared shape allows (decompression bomb or corrupt chunk)")


def _inflate(data: bytes, max_out: int, where: str, wbits: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    rest = data
    while True:
        d = zlib.decompressobj(wbits)
        piece = d.decompress(rest, max_out - total + 1)
        total += len(piece)
        if total > max_out:
            raise _too_big(where, max_out)
        parts.append(piece)
        if not d.eof:
            if d.unconsumed_tail:  # output capped at exactly the bound: more would follow
                raise _too_big(where, max_out)
            raise Rejected(f"{where}: truncated compressed data (the stream does not end)")
        rest = d.unused_data
        if not rest or wbits == 15 or not rest.startswith(b"\x1f\x8b"):
            break  # only gzip may hold several members; trailing bytes are ignored as gzip does
    return b"".join(parts)


def _stream(factory, data: bytes, max_out: int, where: str) -> bytes:
    d = factory()
    out = d.decompress(data, max_out + 1)
    if len(out) > max_out:
        raise _too_big(where, max_out)
    if not d.eof:
        if not d.needs_input:
            raise _too_big(where, max_out)
        raise Rejected(f"{where}: truncated compressed data (the stream does not end)")
    return out


def _fixed(name: str, data: bytes | memoryview, max_out: int, where: str,
           dest: memoryview | None = None) -> bytes | memoryview:
    import imagecodecs

    if max_out == 0:  # libraries read out=0 as "unknown size": decide here
        if not data:
            return b""
        if name == "lzf":  # every non-empty LZF stream holds at least one byte
            raise _too_big(where, 0)
        return _fixed_empty(data, where)
    fn = imagecodecs.zstd_decode if name == "zstd" else imagecodecs.lzf_decode
    try:
        if dest is not None:
            # libzstd / liblzf write into the caller's buffer and fail when it is too small;
            # imagecodecs answers a view of the bytes written (the same memory)
            got = fn(data, out=dest)
            return got if isinstance(got, memoryview) else memoryview(got).cast("B")
        return bytes(fn(data, out=max_out))
    except Exception as e:
        msg = str(e).lower()
        if "too small" in msg or "not large enough" in msg:
            raise _too_big(where, max_out) from e
        raise


def _fixed_empty(data: bytes, where: str) -> bytes:
    import imagecodecs

    out = imagecodecs.zstd_decode(data, out=1)
    if len(out):
        raise _too_big(where, 0)
    return b""


def _lz4(data: bytes, max_out: int, where: str, dest: memoryview | None = None
         ) -> bytes | memoryview:
    import numcodecs

    if len(data) < 4:
        raise Rejected(f"{where}: truncated lz4 data")
    declared = struct.unpack("<I", data[:4])[0]
    if declared > max_out:
        raise _too_big(where, max_out)
    if declared == 0:
        return b""  # numcodecs cannot decode its own encoding of nothing
    if dest is not None:
        numcodecs.LZ4().decode(data, out=dest[:declared])
        return dest[:declared]
    return bytes(numcodecs.LZ4().decode(data))


def _blosc(data: bytes, max_out: int, where: str, dest: memoryview | None = None
           ) -> bytes | memoryview:
    import numcodecs

    if len(data) < _BLOSC_HEADER:
        raise Rejected(f"{where}: truncated blosc data")
    nbytes, _blocksize, cbytes = struct.unpack("<III", data[4:16])
    if nbytes > max_out:
        raise _too_big(where, max_out)
    if cbytes > len(data):
        raise Rejected(f"{where}: blosc header declares {cbytes} compressed bytes, only "
                       f"{len(data)} stored (truncated)")
    if nbytes == 0:
        return b""  # c-blosc reports an empty buffer as an error
    if dest is not None:
        numcodecs.Blosc().decode(data[:cbytes], out=dest[:nbytes])
        return dest[:nbytes]
    return bytes(numcodecs.Blosc().decode(data[:cbytes]))


def read_bounded(f, max_out: int, where: str) -> bytes:
    """Read a file-like (e.g. a zip member stream) to its end, refusing more than ``max_out``."""
    out = f.read(max_out + 1)
    if len(out) > max_out:
        raise _too_big(where, max_out)
    return out
