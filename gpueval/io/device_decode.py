"""Compressed chunks to the device: read on host threads, validate, batch, decode there.

Why (``shared/research/gpu-design.md`` §1–§4): the GPU path decoded every voxel on the host and
copied it over PCIe decoded (2.59 GB for ``cellmap_600``) while label chunks compress 20–800x.
This module moves only *compressed* bytes: host threads read the chunk files of a zarr array
(v2 or v3, local folder), each chunk's codec framing is parsed and checked on the host, the
payloads of a batch are packed into one host buffer (pinned where CuPy offers it) and copied
with one H2D per batch, and nvCOMP's batched decoder expands them on the device into a region
of many chunks. Statistics (:func:`gpueval.kernels.stats.contingency`,
:func:`gpueval.kernels.regions.chunk_region_stats`) then run on device-resident regions; only
their small tables come back.

Untrusted input (design §4.6). nvCOMP documents that its Zstd, Deflate, Gzip, GDeflate,
Cascaded and Bitcomp decoders "can only operate on valid input data". So, before any decode:

* every declared size is checked against the chunk's exact byte size (zstd frame content size,
  numcodecs' LZ4 size prefix, gzip ISIZE, blosc ``nbytes``/``cbytes``) and the compressed size
  is bounded, so no output can exceed one chunk (no decompression bomb);
* zstd frames are walked block by block (O(blocks): headers, reserved bits, block sizes, end of
  frame) and gzip/zlib headers are parsed;
* framing that is provably inconsistent is a :class:`~gpueval.errors.Rejected` (one line);
  framing this module does not prove safe (no content size, several frames, a dictionary,
  filters) is decoded on the host with numcodecs — exactly what the CPU path does;
* for data marked untrusted (a submission) only LZ4 — whose nvCOMP decoder is not in the
  "valid input only" list — is decoded on the device unless ``device_untrusted=True`` (for a
  decode worker isolated in its own process); everything else is host-decoded and uploaded.
  Truth (trusted) chunks use the device for zstd, lz4, gzip and zlib.

Codecs nvCOMP cannot decode (blosc containers, LZF, bz2, lzma, ...) are decoded on the host
with numcodecs and enter the same pipeline after decode (one H2D of decoded bytes per batch).

Decoders. :class:`NvcompDecoder` wraps ``nvidia.nvcomp`` (import guarded: the
``nvidia-nvcomp-cu12``/``-cu13`` wheels, not a dependency); :class:`HostDecoder` decodes with
numcodecs. Tests install a fake ``nvidia.nvcomp`` backed by numcodecs
(``tests/emulated/fake_nvcomp.py``) so the whole pipeline — including the nvCOMP adapter —
runs in CI on the emulated CuPy. The real nvCOMP call signature is exercised by
``benchmarks/on_device.sh`` (step ``decode``): it has not yet run on a device.

Hook for the engine (not wired here: ``engine.py`` belongs to another task):
:func:`map_reduce_regions` is the device counterpart of ``engine.map_reduce(func, arrays,
combine, with_slices=True)`` for zarr arrays whose :func:`layout_of` is not None; a scorer
can call it instead when the device is the GPU and every input has a layout.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gpueval.errors import Rejected
from gpueval.limits import current_limits

__all__ = [
    "ChunkLayout", "DecodeJob", "HostDecoder", "NvcompDecoder", "PipelineStats",
    "default_decoder", "layout_of", "map_reduce_regions", "plan_chunk", "read_region",
    "regions", "validate_blosc", "validate_gzip", "validate_lz4", "validate_zlib",
    "validate_zstd"]

#: codecs an nvCOMP batched decoder handles, by the algorithm name nvCOMP uses for them
NVCOMP_ALGORITHM = {"zstd": "Zstd", "lz4": "LZ4", "gzip": "Deflate", "zlib": "Deflate"}
#: nvCOMP decoders that are not documented as "valid input only" (release notes, known issues)
ROBUST_ON_INVALID = frozenset({"lz4"})
_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_BLOCK_MAX = 128 * 1024


def compressed_bound(nbytes: int) -> int:
    """Largest compressed size accepted for a chunk of ``nbytes`` (all codecs here).

    Incompressible data costs zstd 3 bytes per 128 KiB block plus a frame header, LZ4
    ~n/255 + 16, deflate 5 bytes per 64 KiB stored block, blosc a 16-byte header plus 4 bytes
    per block; ``n + n/255 + 1 KiB`` covers all of them with room to spare."""
    return nbytes + nbytes // 255 + 1024


# --------------------------------------------------------------------------------------------
# Framing checks (host, O(header) or O(blocks); never a decode)


def validate_zstd(data: bytes | memoryview, nbytes: int, where: str) -> bool:
    """Walk one zstd frame (RFC 8878 §3.1.1) whose content must be ``nbytes`` bytes.

    Returns True when the frame is a single, dictionary-free frame declaring its content size
    (safe to hand to a device decoder with an ``nbytes`` output buffer), False when it is
    well-formed as far as checked but outside that subset (decode on the host instead).
    Raises :class:`Rejected` when it is inconsistent: bad magic, reserved bits, a block running
    past the data, a block over 128 KiB, a declared size other than ``nbytes``, trailing bytes.
    """
    mv = memoryview(data)
    n = len(mv)
    if n < 6 or struct.unpack_from("<I", mv, 0)[0] != _ZSTD_MAGIC:
        if n >= 4 and (struct.unpack_from("<I", mv, 0)[0] & 0xFFFFFFF0) == 0x184D2A50:
            return False  # a skippable frame first: legal, not ours to prove
        raise Rejected(f"{where}: not a zstd frame (bad magic number)")
    fhd = mv[4]
    fcs_flag, single, reserved, checksum, dict_flag = (
        fhd >> 6, (fhd >> 5) & 1, (fhd >> 3) & 1, (fhd >> 2) & 1, fhd & 3)
    if reserved:
        raise Rejected(f"{where}: zstd frame header has its reserved bit set")
    pos = 5 + (0 if single else 1)
    dict_size = (0, 1, 2, 4)[dict_flag]
    fcs_size = (1 if single else 0, 2, 4, 8)[fcs_flag]
    if pos + dict_size + fcs_size > n:
        raise Rejected(f"{where}: zstd frame header is truncated")
    dict_id = int.from_bytes(mv[pos:pos + dict_size], "little") if dict_size else 0
    pos += dict_size
    if fcs_size == 0:
        return False  # no declared content size: host decode (as the CPU path)
    content = int.from_bytes(mv[pos:pos + fcs_size], "little") + (256 if fcs_size == 2 else 0)
    pos += fcs_size
    if content != nbytes:
        raise Rejected(f"{where}: zstd frame declares {content} bytes, the chunk holds {nbytes}")
    if dict_id:
        return False
    produced = 0
    while True:
        if pos + 3 > n:
            raise Rejected(f"{where}: zstd block header runs past the end of the chunk")
        header = int.from_bytes(mv[pos:pos + 3], "little")
        pos += 3
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        if kind == 3:
            raise Rejected(f"{where}: zstd block of the reserved type")
        if size > _ZSTD_BLOCK_MAX:
            raise Rejected(f"{where}: zstd block of {size} bytes, over the 128 KiB maximum")
        stored = 1 if kind == 1 else size
        if pos + stored > n:
            raise Rejected(f"{where}: zstd block runs past the end of the chunk")
        if kind in (0, 1):
            produced += size
            if produced > nbytes:
                raise Rejected(f"{where}: zstd blocks decode to more than the {nbytes} declared "
                               "bytes")
        pos += stored
        if last:
            break
    pos += 4 * checksum
    if pos > n:
        raise Rejected(f"{where}: zstd checksum is truncated")
    return pos == n  # more data after the frame: another frame, decode on the host


def validate_lz4(data: bytes | memoryview, nbytes: int, where: str) -> memoryview:
    """numcodecs' LZ4 framing: a little-endian uint32 size prefix, then one LZ4 block.

    Returns the raw block (what nvCOMP's RAW LZ4 decoder takes)."""
    mv = memoryview(data)
    if len(mv) < 5:
        raise Rejected(f"{where}: LZ4 chunk of {len(mv)} bytes is truncated")
    declared = struct.unpack_from("<I", mv, 0)[0]
    if declared != nbytes:
        raise Rejected(f"{where}: LZ4 chunk declares {declared} bytes, the chunk holds {nbytes}")
    return mv[4:]


def validate_gzip(data: bytes | memoryview, nbytes: int, where: str) -> memoryview:
    """One gzip member (RFC 1952): header fields parsed, ISIZE must equal ``nbytes``.

    Returns the raw deflate stream between header and trailer."""
    mv = memoryview(data)
    n = len(mv)
    if n < 18 or mv[0] != 0x1F or mv[1] != 0x8B:
        raise Rejected(f"{where}: not a gzip member (bad magic)")
    if mv[2] != 8:
        raise Rejected(f"{where}: gzip compression method {mv[2]} is not deflate")
    flags = mv[3]
    if flags & 0xE0:
        raise Rejected(f"{where}: gzip header has reserved flag bits set")
    pos = 10
    if flags & 4:  # FEXTRA
        if pos + 2 > n:
            raise Rejected(f"{where}: gzip header is truncated")
        pos += 2 + struct.unpack_from("<H", mv, pos)[0]
    for bit in (8, 16):  # FNAME, FCOMMENT: zero-terminated
        if flags & bit:
            end = bytes(mv[pos:]).find(b"\0")
            if end < 0:
                raise Rejected(f"{where}: gzip header is truncated")
            pos += end + 1
    pos += 2 if flags & 2 else 0  # FHCRC
    if pos + 8 > n:
        raise Rejected(f"{where}: gzip member is truncated")
    isize = struct.unpack_from("<I", mv, n - 4)[0]
    if isize != nbytes % (1 << 32):
        raise Rejected(f"{where}: gzip member declares {isize} bytes, the chunk holds {nbytes}")
    return mv[pos:n - 8]


def validate_zlib(data: bytes | memoryview, nbytes: int, where: str) -> memoryview:
    """A zlib stream (RFC 1950): header check bits, deflate, no preset dictionary.

    zlib declares no size: the decoder's output is bounded by the ``nbytes`` buffer and its
    produced size is checked after decode. Returns the raw deflate stream."""
    mv = memoryview(data)
    if len(mv) < 7:
        raise Rejected(f"{where}: zlib stream of {len(mv)} bytes is truncated")
    cmf, flg = mv[0], mv[1]
    if cmf & 0x0F != 8 or cmf >> 4 > 7 or (cmf * 256 + flg) % 31:
        raise Rejected(f"{where}: not a zlib stream (bad header)")
    if flg & 0x20:
        raise Rejected(f"{where}: zlib stream needs a preset dictionary")
    return mv[2:len(mv) - 4]


def validate_blosc(data: bytes | memoryview, nbytes: int, where: str) -> None:
    """The 16-byte blosc header: ``nbytes`` must equal the chunk, ``cbytes`` the data length."""
    mv = memoryview(data)
    if len(mv) < 16:
        raise Rejected(f"{where}: blosc chunk of {len(mv)} bytes is truncated")
    declared, blocksize, cbytes = struct.unpack_from("<III", mv, 4)
    if declared != nbytes:
        raise Rejected(f"{where}: blosc chunk declares {declared} bytes, the chunk holds {nbytes}")
    if cbytes != len(mv):
        raise Rejected(f"{where}: blosc chunk declares {cbytes} compressed bytes, the file has "
                       f"{len(mv)}")
    if nbytes and not 0 < blocksize <= max(nbytes, 1):
        raise Rejected(f"{where}: blosc block size {blocksize} is out of range")


# --------------------------------------------------------------------------------------------
# Array layout (zarr v2 / v3 metadata of a local folder)


@dataclass(frozen=True)
class ChunkLayout:
    """What the pipeline needs to find, check and decode one zarr array's chunks.

    Attributes
    ----------
    root : the array folder.
    shape, chunks : array and chunk shapes (C order).
    dtype : native-endian NumPy dtype of the decoded chunk.
    fill_value : value of missing chunks.
    codec : ``"zstd"``, ``"lz4"``, ``"gzip"``, ``"zlib"``, ``"blosc"``, ``"raw"`` or
        ``"host"`` (any other numcodecs codec: decoded on the host).
    codec_config : the numcodecs configuration (for host decode).
    key_of : maps a chunk grid index to its file name relative to ``root``.
    """

    root: Path
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    fill_value: Any
    codec: str
    codec_config: dict | None
    separator: str
    prefix: str

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks, strict=True))

    @property
    def chunk_nbytes(self) -> int:
        return math.prod(self.chunks) * self.dtype.itemsize

    def key_of(self, index: Sequence[int]) -> str:
        return self.prefix + self.separator.join(str(int(i)) for i in index)


_V3_CODEC = {"zstd": "zstd", "gzip": "gzip", "blosc": "blosc", "numcodecs.lz4": "lz4",
             "numcodecs.zlib": "zlib", "numcodecs.zstd": "zstd", "numcodecs.gzip": "gzip"}
_V2_CODEC = {"zstd": "zstd", "lz4": "lz4", "gzip": "gzip", "zlib": "zlib", "blosc": "blosc"}


def _read_json(path: Path) -> dict | None:
    if path.is_symlink():
        raise Rejected(f"{path}: zarr metadata is a link")
    if not path.is_file():
        return None
    limit = current_limits().max_metadata_bytes
    if path.stat().st_size > limit:
        raise Rejected(f"{path}: zarr metadata of {path.stat().st_size} bytes, over the "
                       f"limit {limit}")
    try:
        doc = json.loads(path.read_bytes())
    except ValueError as e:
        raise Rejected(f"{path}: zarr metadata is not valid JSON") from e
    return doc if isinstance(doc, dict) else None


def layout_of(path: str | Path) -> ChunkLayout | None:
    """The chunk layout of a zarr array folder, or None when the pipeline cannot take it.

    None (the caller keeps the ordinary host-decode path) for: not a local zarr array,
    filters, a transpose or checksum codec, sharding, Fortran order, big-endian or non-numeric
    data, object/string dtypes, irregular chunk grids.
    """
    root = Path(path)
    if not root.is_dir() or root.is_symlink():
        return None
    v2, v3 = _read_json(root / ".zarray"), _read_json(root / "zarr.json")
    layout = None
    try:
        if v2 is not None:
            layout = _layout_v2(root, v2)
        elif v3 is not None and v3.get("node_type") == "array":
            layout = _layout_v3(root, v3)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if layout is not None:
        _check_layout(layout)
    return layout


def _check_layout(layout: ChunkLayout) -> None:
    """The reader's limits (:meth:`gpueval.limits.Limits.check_array_meta`: axes, voxels,
    bytes, dtype, one chunk's bytes, number of chunks), so no declared size allocates
    unbounded memory here, and a key separator that cannot leave the folder."""
    where = str(layout.root)
    current_limits().check_array_meta(layout.shape, layout.dtype, layout.chunks, where)
    if layout.separator not in (".", "/") or layout.prefix not in ("", "c.", "c/"):
        raise Rejected(f"{where}: chunk key separator {layout.separator!r} is not '.' or '/'")


def _numeric(dtype: np.dtype) -> np.dtype | None:
    if dtype.kind not in "biuf" or dtype.byteorder == ">":
        return None
    return dtype.newbyteorder("=")


def _layout_v2(root: Path, meta: dict) -> ChunkLayout | None:
    dtype = _numeric(np.dtype(meta["dtype"]))
    if dtype is None or meta.get("filters") or meta.get("order", "C") != "C":
        return None
    comp = meta.get("compressor")
    codec = "raw" if comp is None else _V2_CODEC.get(str(comp.get("id")), "host")
    return ChunkLayout(root, tuple(map(int, meta["shape"])), tuple(map(int, meta["chunks"])),
                       dtype, _fill(meta.get("fill_value"), dtype), codec, comp,
                       str(meta.get("dimension_separator", ".")), "")


def _fill(value, dtype: np.dtype):
    """The fill value as a scalar of ``dtype`` (zarr writes "NaN"/"Infinity" for floats)."""
    return np.array(0 if value is None else value).astype(dtype, casting="unsafe")[()] \
        if not isinstance(value, str) else np.array(float(value), dtype=dtype)[()]


def _layout_v3(root: Path, meta: dict) -> ChunkLayout | None:
    dtype = _numeric(np.dtype(str(meta["data_type"])))
    grid = meta["chunk_grid"]
    if dtype is None or grid.get("name") != "regular" or meta.get("storage_transformers"):
        return None
    codecs = list(meta["codecs"])
    if not codecs or codecs[0].get("name") != "bytes":
        return None  # transpose, sharding, ... first
    endian = (codecs[0].get("configuration") or {}).get("endian", "little")
    if endian != "little" and dtype.itemsize > 1:
        return None
    rest = codecs[1:]
    if len(rest) > 1:
        return None
    codec, config = "raw", None
    if rest:
        name = str(rest[0].get("name"))
        codec = _V3_CODEC.get(name)
        if codec is None:
            return None
        config = {"id": name.removeprefix("numcodecs."), **(rest[0].get("configuration") or {})}
    enc = meta.get("chunk_key_encoding") or {"name": "default"}
    sep = (enc.get("configuration") or {}).get("separator", "/" if enc["name"] == "default"
                                                else ".")
    prefix = "c" + sep if enc["name"] == "default" else ""
    return ChunkLayout(root, tuple(map(int, meta["shape"])),
                       tuple(map(int, grid["configuration"]["chunk_shape"])), dtype,
                       _fill(meta.get("fill_value"), dtype), codec, config, sep, prefix)


# --------------------------------------------------------------------------------------------
# Planning one chunk: read its bytes, check the framing, choose where it decodes


@dataclass
class DecodeJob:
    """One chunk on its way to the device.

    ``route`` is ``"device"`` (``payload`` goes to the batched decoder as ``algorithm``),
    ``"host"`` (``payload`` is already the decoded chunk), or ``"fill"`` (missing chunk)."""

    index: tuple[int, ...]
    route: str
    payload: bytes | memoryview | None = None
    algorithm: str | None = None
    compressed_bytes: int = 0


def _read_chunk(layout: ChunkLayout, index: tuple[int, ...]) -> bytes | None:
    """The chunk file's bytes (None when absent), refusing links and oversized files."""
    key = layout.key_of(index)
    path = layout.root / key
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    real_root = os.path.realpath(layout.root)
    if os.path.islink(path) or not os.path.realpath(path).startswith(real_root + os.sep):
        raise Rejected(f"{path}: chunk is a link leaving the zarr store")
    if not os.path.isfile(path):
        raise Rejected(f"{path}: chunk is not a regular file")
    bound = compressed_bound(layout.chunk_nbytes) if layout.codec != "host" else None
    if bound is not None and st.st_size > bound:
        raise Rejected(f"{path}: chunk of {st.st_size} bytes, more than a {layout.chunk_nbytes}"
                       "-byte chunk can compress to")
    with open(path, "rb") as f:
        return f.read()


def _host_decode(layout: ChunkLayout, data: bytes, where: str) -> bytes | memoryview:
    """numcodecs decode, size-checked (the CPU path's decode)."""
    if layout.codec == "raw":
        out = data
    elif layout.codec == "zlib":  # bounded: never inflate past one chunk + 1 byte
        d = zlib.decompressobj()
        out = d.decompress(data, layout.chunk_nbytes + 1)
    else:  # into a buffer of exactly one chunk: a frame claiming more cannot allocate more
        import numcodecs

        buf = np.empty(layout.chunk_nbytes, np.uint8)
        try:
            # a blosc chunk describes itself in its header (v3's config spells shuffle as text)
            codec = (numcodecs.Blosc() if layout.codec == "blosc"
                     else numcodecs.get_codec(dict(layout.codec_config)))
            out = codec.decode(data, out=buf)
        except Exception as e:
            raise Rejected(f"{where}: does not decode to one {layout.chunk_nbytes}-byte chunk "
                           f"({type(e).__name__}: {str(e)[:80]})") from e
        out = memoryview(np.asarray(out)).cast("B")
    if len(out) != layout.chunk_nbytes:
        raise Rejected(f"{where}: decodes to {len(out)} bytes, the chunk holds "
                       f"{layout.chunk_nbytes}")
    return out


def plan_chunk(layout: ChunkLayout, index: tuple[int, ...], *, trusted: bool,
               device_untrusted: bool = False) -> DecodeJob:
    """Read one chunk and decide, from its validated framing, where it is decoded."""
    data = _read_chunk(layout, index)
    if data is None:
        return DecodeJob(index, "fill")
    where = f"{layout.root / layout.key_of(index)}"
    n = layout.chunk_nbytes
    payload: memoryview | None = None
    if layout.codec == "zstd":
        payload = memoryview(data) if validate_zstd(data, n, where) else None
    elif layout.codec == "lz4":
        payload = validate_lz4(data, n, where)
    elif layout.codec == "gzip":
        payload = validate_gzip(data, n, where)
    elif layout.codec == "zlib":
        payload = validate_zlib(data, n, where)
    elif layout.codec == "blosc":
        validate_blosc(data, n, where)
    on_device = payload is not None and (trusted or device_untrusted
                                         or layout.codec in ROBUST_ON_INVALID)
    if on_device:
        return DecodeJob(index, "device", payload, NVCOMP_ALGORITHM[layout.codec], len(data))
    return DecodeJob(index, "host", _host_decode(layout, data, where), None, len(data))


# --------------------------------------------------------------------------------------------
# Decoders


class BatchDecoder(Protocol):
    """Decodes a batch of device-resident payloads of one algorithm into device byte arrays."""

    def decode(self, algorithm: str, payloads: list, nbytes: int) -> list: ...


class NvcompDecoder:
    """nvCOMP's batched decoder (``nvidia.nvcomp``), one ``Codec`` per algorithm and thread.

    nvCOMP's Python ``Codec`` is thread-local (its docs: "each thread must create and use its
    own Codec instance"), hence the per-thread cache. Payloads are RAW bitstreams (the framing
    parsed on the host has been stripped: LZ4 size prefix, gzip/zlib header and trailer)."""

    def __init__(self) -> None:
        from nvidia import nvcomp  # noqa: F401 - fails early when the wheel is missing

        self._local = threading.local()

    def _codec(self, algorithm: str):
        import cupy
        from nvidia import nvcomp

        # decode on CuPy's current stream: the H2D copy of the payloads before and the
        # kernels reading the output after are then ordered with it (a Codec otherwise makes
        # an internal stream of its own)
        stream = cupy.cuda.get_current_stream().ptr
        cache = self._local.__dict__.setdefault("codecs", {})
        if (algorithm, stream) not in cache:
            cache[algorithm, stream] = nvcomp.Codec(
                algorithm=algorithm, bitstream_kind=nvcomp.BitstreamKind.RAW,
                cuda_stream=stream)
        return cache[algorithm, stream]

    def decode(self, algorithm: str, payloads: list, nbytes: int) -> list:
        import cupy
        from nvidia import nvcomp

        outs = self._codec(algorithm).decode([nvcomp.as_array(p) for p in payloads])
        return [cupy.asarray(o).view(cupy.uint8).reshape(-1) for o in outs]


class HostDecoder:
    """Where nvCOMP is missing: device-routed chunks are decoded on the host reading threads
    (numcodecs / zlib, bounded to one chunk) and uploaded decoded, like host-codec chunks."""

    def decode_host(self, algorithm: str, payload: bytes | memoryview, nbytes: int) -> bytes:
        import numcodecs

        if algorithm == "Zstd":
            return bytes(numcodecs.Zstd().decode(bytes(payload)))
        if algorithm == "LZ4":
            return bytes(numcodecs.LZ4().decode(struct.pack("<I", nbytes) + bytes(payload)))
        return zlib.decompressobj(-15).decompress(bytes(payload), nbytes + 1)

    def decode(self, algorithm: str, payloads: list, nbytes: int) -> list:
        import cupy

        return [cupy.asarray(np.frombuffer(self.decode_host(algorithm, cupy.asnumpy(p), nbytes),
                                           np.uint8)) for p in payloads]


def default_decoder() -> BatchDecoder:
    """nvCOMP when ``nvidia.nvcomp`` imports, else the host stand-in."""
    try:
        return NvcompDecoder()
    except ImportError:
        return HostDecoder()


# --------------------------------------------------------------------------------------------
# The pipeline


@dataclass
class PipelineStats:
    """What one run moved: chunks per route, compressed bytes read, bytes uploaded."""

    chunks_device: int = 0
    chunks_host: int = 0
    chunks_fill: int = 0
    compressed_bytes: int = 0
    uploaded_bytes: int = 0
    uploads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


def _pinned_empty(nbytes: int, xp):
    """A host staging buffer: pinned when real CuPy provides it (so the copy can be async)."""
    import cupyx

    empty_pinned = getattr(cupyx, "empty_pinned", None)
    if empty_pinned is not None:
        return empty_pinned((nbytes,), dtype=np.uint8)
    return np.empty(nbytes, np.uint8)


def _upload(parts: list, xp, stats: PipelineStats, align: int = 16) -> list:
    """Pack host byte strings into one staging buffer, copy it with one H2D, return views.

    Each part starts on an ``align``-byte boundary: decoders and typed views of the decoded
    chunks read the device buffer with aligned (up to 16-byte) loads."""
    sizes = [len(p) for p in parts]
    starts = np.zeros(len(parts), np.int64)
    pos = 0
    for i, n in enumerate(sizes):
        starts[i] = pos
        pos += -(-n // align) * align
    staging = _pinned_empty(pos, xp)
    for p, a, n in zip(parts, starts, sizes, strict=True):
        staging[a:a + n] = np.frombuffer(p, np.uint8)
    dev = xp.asarray(staging)
    with stats.lock:
        stats.uploads += 1
        stats.uploaded_bytes += pos
    return [dev[a:a + n] for a, n in zip(starts, sizes, strict=True)]


def read_region(layout: ChunkLayout, region: tuple[slice, ...], *, xp, trusted: bool,
                decoder: BatchDecoder | None = None, threads: int = 4,
                device_untrusted: bool = False, stats: PipelineStats | None = None):
    """Decode the chunks covering ``region`` (any slices with steps of 1) into one device
    array; chunks only partly inside are decoded whole and cropped on the device.

    Parameters
    ----------
    layout : from :func:`layout_of`.
    region : slices of the array, starts on chunk boundaries (the end may be the array's).
    xp : ``cupy`` (the device array module).
    trusted : True for the organisers' truth; False for a submission (see the module docs).
    decoder : batched decoder (default :func:`default_decoder`).
    threads : host threads reading and checking chunk files.
    device_untrusted : decode untrusted zstd/deflate on the device too (isolated worker only).
    stats : accumulates what moved (optional).

    Returns
    -------
    device array of ``layout.dtype`` with the region's shape.
    """
    decoder = decoder or default_decoder()
    stats = stats if stats is not None else PipelineStats()
    first = [s.start // c for s, c in zip(region, layout.chunks, strict=True)]
    last = [-(-s.stop // c) for s, c in zip(region, layout.chunks, strict=True)]
    indices = list(itertools.product(*(range(a, b) for a, b in zip(first, last, strict=True))))

    def plan(index):
        job = plan_chunk(layout, index, trusted=trusted, device_untrusted=device_untrusted)
        if job.route == "device" and isinstance(decoder, HostDecoder):
            where = f"{layout.root / layout.key_of(index)}"
            data = decoder.decode_host(job.algorithm, job.payload, layout.chunk_nbytes)
            if len(data) != layout.chunk_nbytes:
                raise Rejected(f"{where}: decodes to {len(data)} bytes, the chunk holds "
                               f"{layout.chunk_nbytes}")
            job = DecodeJob(index, "host", data, None, job.compressed_bytes)
        return job

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        jobs = list(pool.map(plan, indices))
    shape = tuple(s.stop - s.start for s in region)
    out = xp.empty(shape, dtype=layout.dtype)
    decoded: dict[tuple[int, ...], Any] = {}
    by_algorithm: dict[str, list[DecodeJob]] = {}
    for job in jobs:
        if job.route == "device":
            by_algorithm.setdefault(job.algorithm, []).append(job)
    for algorithm, batch in by_algorithm.items():  # one H2D + one batched decode per codec
        payloads = _upload([j.payload for j in batch], xp, stats)
        for job, buf in zip(batch, decoder.decode(algorithm, payloads, layout.chunk_nbytes),
                            strict=True):
            if buf.size != layout.chunk_nbytes:
                raise Rejected(f"{layout.root / layout.key_of(job.index)}: decodes to "
                               f"{buf.size} bytes, the chunk holds {layout.chunk_nbytes}")
            decoded[job.index] = buf
    host = [j for j in jobs if j.route == "host"]
    if host:  # host-decoded chunks: one H2D of decoded bytes for the batch
        for job, buf in zip(host, _upload([j.payload for j in host], xp, stats), strict=True):
            decoded[job.index] = buf
    for job in jobs:  # the part of each chunk inside the region
        lo = [max(i * c, r.start) for i, c, r in zip(job.index, layout.chunks, region,
                                                      strict=True)]
        hi = [min((i + 1) * c, r.stop) for i, c, r in zip(job.index, layout.chunks, region,
                                                          strict=True)]
        dst = tuple(slice(a - r.start, b - r.start) for a, b, r in zip(lo, hi, region,
                                                                       strict=True))
        if job.route == "fill":
            out[dst] = layout.fill_value
            continue
        src = tuple(slice(a - i * c, b - i * c) for a, b, i, c in zip(lo, hi, job.index,
                                                                      layout.chunks, strict=True))
        out[dst] = decoded[job.index].view(layout.dtype).reshape(layout.chunks)[src]
    with stats.lock:
        for job in jobs:
            stats.compressed_bytes += job.compressed_bytes
            setattr(stats, f"chunks_{job.route}", getattr(stats, f"chunks_{job.route}") + 1)
    return out


def regions(layout: ChunkLayout, region_chunks: Sequence[int], **kwargs
            ) -> Iterator[tuple[tuple[slice, ...], Any]]:
    """Tile the array into regions of ``region_chunks`` chunks per axis; yield
    ``(slices, device_array)`` for each (keyword arguments as :func:`read_region`)."""
    steps = [c * r for c, r in zip(layout.chunks, region_chunks, strict=True)]
    for region in _tiles(layout.shape, steps):
        yield region, read_region(layout, region, **kwargs)


def _tiles(shape: Sequence[int], steps: Sequence[int]) -> Iterator[tuple[slice, ...]]:
    for start in itertools.product(*(range(0, s, st) for s, st in zip(shape, steps,
                                                                      strict=True))):
        yield tuple(slice(a, min(a + st, s)) for a, st, s in zip(start, steps, shape,
                                                                 strict=True))


def map_reduce_regions(func, layouts: Sequence[ChunkLayout], combine, *,
                       region_shape: Sequence[int], xp, trusted: Sequence[bool],
                       decoder: BatchDecoder | None = None, threads: int = 4,
                       device_untrusted: bool = False, stats: PipelineStats | None = None):
    """``combine([func(slices, *device_blocks) for each region])`` over equally shaped arrays.

    The device counterpart of ``engine.map_reduce(..., with_slices=True)`` for zarr arrays
    whose :func:`layout_of` is not None: each region (``region_shape`` voxels per axis, any
    alignment; the arrays may be chunked differently) is decoded through :func:`read_region`,
    ``func`` runs on the device-resident blocks and returns a small host statistic.

    Parameters
    ----------
    func : ``func(slices, *blocks) -> T``.
    layouts : one per array, all of the same shape.
    combine : ``combine(list[T]) -> T``, exact (e.g. :meth:`Contingency.combine`).
    region_shape : voxels per axis of one region (a multiple of the chunks avoids decoding a
        chunk twice).
    trusted : per array, as in :func:`read_region` (truth True, submission False).

    Notes
    -----
    This checks what decoding needs (metadata limits, chunk framing, sizes). Content checks of
    the volume reader (NaN/inf in float labels, negative ids, ``.zattrs`` limits) stay with
    ``gpueval.io.arrays.open_volume``: open each input with it first (it rejects what the
    scorer must reject), then route the decode here.
    """
    shapes = {tuple(lay.shape) for lay in layouts}
    if len(shapes) != 1:
        raise Rejected(f"arrays of different shapes: {sorted(shapes)}")
    decoder = decoder or default_decoder()
    parts = []
    for region in _tiles(layouts[0].shape, region_shape):
        blocks = [read_region(lay, region, xp=xp, trusted=t, decoder=decoder, threads=threads,
                              device_untrusted=device_untrusted, stats=stats)
                  for lay, t in zip(layouts, trusted, strict=True)]
        parts.append(func(region, *blocks))
    return combine(parts)
