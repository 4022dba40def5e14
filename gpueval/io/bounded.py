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
           exact: bool = False) -> bytes:
    """Decompress ``data`` with ``codec`` into at most ``max_out`` bytes.

    Parameters
    ----------
    codec : one of :data:`CODECS` (aliases such as ``deflate`` accepted).
    data : the compressed bytes as stored.
    max_out : the most bytes the output may have (the checked chunk/array size).
    where : submission-relative name of what is decoded (file, member, chunk) for messages.
    exact : also refuse an output shorter than ``max_out`` (a chunk must fill its shape).

    Returns
    -------
    bytes
        The decompressed bytes, ``len <= max_out``.

    Raises
    ------
    Rejected
        The stream needs more than ``max_out`` bytes, is shorter than ``max_out`` with
        ``exact``, is corrupt or truncated, or the codec is unknown.
    """
    name = codec_name(codec)
    max_out = int(max_out)
    if max_out < 0:
        raise Rejected(f"{where}: negative decoded size {max_out}")
    try:
        if name in ("zlib", "gzip"):
            out = _inflate(bytes(data), max_out, where, 47)  # 47: zlib or gzip header
        elif name == "bz2":
            out = _stream(bz2.BZ2Decompressor, bytes(data), max_out, where)
        elif name == "lzma":
            out = _stream(lzma.LZMADecompressor, bytes(data), max_out, where)
        elif name == "zstd":
            out = _fixed("zstd", bytes(data), max_out, where)
        elif name == "lzf":
            out = _fixed("lzf", bytes(data), max_out, where)
        elif name == "lz4":
            out = _lz4(bytes(data), max_out, where)
        elif name == "blosc":
            out = _blosc(bytes(data), max_out, where)
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
    if exact and len(out) != max_out:
        raise Rejected(f"{where}: decodes to {len(out)} bytes, expected {max_out} (corrupt or "
                       "truncated chunk)")
    return out


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


def _fixed(name: str, data: bytes, max_out: int, where: str) -> bytes:
    import imagecodecs

    if max_out == 0:  # libraries read out=0 as "unknown size": decide here
        if not data:
            return b""
        if name == "lzf":  # every non-empty LZF stream holds at least one byte
            raise _too_big(where, 0)
        return _fixed_empty(data, where)
    fn = imagecodecs.zstd_decode if name == "zstd" else imagecodecs.lzf_decode
    try:
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


def _lz4(data: bytes, max_out: int, where: str) -> bytes:
    import numcodecs

    if len(data) < 4:
        raise Rejected(f"{where}: truncated lz4 data")
    declared = struct.unpack("<I", data[:4])[0]
    if declared > max_out:
        raise _too_big(where, max_out)
    if declared == 0:
        return b""  # numcodecs cannot decode its own encoding of nothing
    return bytes(numcodecs.LZ4().decode(data))


def _blosc(data: bytes, max_out: int, where: str) -> bytes:
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
    return bytes(numcodecs.Blosc().decode(data[:cbytes]))


def read_bounded(f, max_out: int, where: str) -> bytes:
    """Read a file-like (e.g. a zip member stream) to its end, refusing more than ``max_out``."""
    out = f.read(max_out + 1)
    if len(out) > max_out:
        raise _too_big(where, max_out)
    return out
