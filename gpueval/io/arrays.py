"""Lazy readers: every format opens as a :class:`Volume` — a dask array plus its geometry.

======================  ==============================================  ====================
format                  path                                            geometry from
======================  ==============================================  ====================
zarr v2 / v3            ``x.zarr`` (array) or group + ``dataset``       attrs ``voxel_size`` |
                        OME-NGFF multiscale group (level ``dataset``,   ``resolution`` |
                        default the first)                              ``scale``; offset
                                                                        ``translation`` |
                                                                        ``offset``; NGFF
                                                                        transforms
n5, neuroglancer        ``ts:<driver>:<path>`` or ``x.n5``              tensorstore schema
precomputed
HDF5                    ``x.h5`` / ``x.hdf5`` + ``dataset``             attrs ``resolution``,
                                                                        ``offset``
TIFF                    ``x.tif`` / ``x.tiff`` (strip/tile-wise)        —
PNG / BMP / JPEG        ``x.png`` … (decoded whole: small by nature)    —
NumPy                   ``x.npz`` + key (``allow_pickle=False``)        —
======================  ==============================================  ====================

Voxel sizes and offsets are in world units (nm for EM, mm for CT), in array-axis order; a
missing voxel size is 1 and a missing offset 0 (``Volume.attrs`` tells which were found).

Reads happen inside dask tasks, one storage-aligned block at a time (blocks group whole storage
chunks up to ``target_block_bytes``); nothing here loads a whole volume. Declared shapes are
checked against ``max_voxels`` before any allocation, so an upload declaring 10¹⁸ voxels is a
:class:`~gpueval.errors.Rejected`, not a ``MemoryError``.

Hostile uploads
---------------
Everything a file declares is checked against the current :class:`~gpueval.limits.Limits`
(``limits:`` in the challenge config) before anything is allocated or read:

* shape, dtype, number of axes and the storage chunk (zarr chunk or shard, HDF5 chunk, TIFF
  strip/tile), so a 10¹²-voxel chunk or a 10¹⁸-voxel shape is refused unread;
* zarr metadata documents are size-limited and parsed by gpueval first: a
  ``dimension_separator`` / ``chunk_key_encoding`` other than ``.``/``/``, storage transformers,
  or a consolidated ``.zmetadata`` declaring absurd arrays are refused; every key is read through
  a store that refuses ``..`` and files (e.g. symlinked chunks) resolving outside the store;
* HDF5: every component of a dataset path is resolved by gpueval, link by link (hard links
  followed, soft links resolved through the same walk so a soft link — or a chain of them —
  passing through an external link is seen, cycles and more than 16 nested soft links
  refused); external and user-defined links, virtual datasets and external raw storage
  (``dcpl.get_external_count()``), which read other files of the scoring machine, are refused;
  filters other than gzip, LZF, shuffle, Fletcher-32, szip, n-bit and scale-offset are
  refused; a truncated file is refused at open;
* decompression is bounded (:mod:`gpueval.io.bounded`, the one choke point): HDF5 gzip/LZF
  chunks and every zarr chunk (zlib, gzip, zstd, lz4, blosc, bz2, lzma; v2 and v3, sharded
  inner chunks included) are decoded into at most the bytes of their declared — and checked —
  chunk shape, and refused as soon as a stream needs more; an ``.npz`` member is inflated
  straight into an array of its checked header's shape (``expect_shape=`` compares that
  shape with the truth's first) and must declare exactly that many bytes;
* TIFF strips/tiles must lie inside the file (a truncated TIFF is refused at open, not read as
  zeros) and are decoded by tifffile into buffers of the checked strip/tile size; image
  compressions (JPEG, PNG, WebP… inside a TIFF, sized by their own headers) are refused;
  PNG/BMP headers are checked before decoding and PIL decodes into the checked image size;
* every block read is checked to have the shape asked for, and float blocks to be finite (NaN
  or ±inf is a rejection; ``finite=False`` turns this off);
* the path itself must be a regular file or folder, and so must every zarr key read (a FIFO
  or device would hang a reader): "not a regular file", never "not found".

Any failure of a third-party decoder on a corrupt file becomes a one-line
:class:`~gpueval.errors.Rejected` naming the file and block. Messages never carry a server
path or a temporary folder: a file is named by its last component, or relative to the root
set with :func:`shown_relative_to` (the submission folder, or where an archive was extracted);
blocks are written ``[0:8, 0:8]``, never ``slice(...)``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import json
import math
import os
import re
import stat
import struct
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gpueval.errors import Rejected
from gpueval.io.bounded import byte_view, codec_name, decode
from gpueval.limits import Limits, resolve

if TYPE_CHECKING:  # dask.array costs ~0.5 s to import: only open_volume needs it
    import dask.array as da

DEFAULT_MAX_VOXELS = Limits.max_voxels
TARGET_BLOCK_BYTES = 64 * 2**20
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".gif")
TIFF_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_VOXEL_KEYS = ("voxel_size", "resolution", "scale")
_OFFSET_KEYS = ("translation", "offset")
_ZARR_DOCS = (".zarray", ".zgroup", ".zattrs", "zarr.json")


@dataclass
class Volume:
    """A lazily read array and where it sits in the world."""

    data: da.Array
    voxel_size: tuple[float, ...]
    offset: tuple[float, ...]
    path: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.float64))


def open_reader_checked(path: str, dataset: str | None, lim: Limits, *, finite: bool = True
                        ) -> tuple[_Reader, tuple[float, ...], tuple[float, ...], dict]:
    """The reader of ``path`` (``dataset`` inside it) after every check :func:`open_volume`
    makes — declared shape, dtype and chunks against ``lim``, voxel size and offset — with
    the same messages: ``(reader, voxel_size, offset, attrs)``. :func:`open_volume` wraps the
    reader in a Dask array; a caller that reads blocks itself (XPRESS's local gather, which
    saves a process the Dask import) uses the reader directly.

    Raises
    ------
    Rejected
        Unreadable, corrupt, hostile or absurd input (the message names the file).
    """
    p = str(path)
    try:
        reader, voxel_size, offset, attrs = _open_reader(p, dataset, lim)
    except Rejected:
        raise
    except FileNotFoundError as e:
        raise Rejected(f"{_shown(p)}: not found") from e
    except Exception as e:  # a decoder choking on a hostile file must not be a traceback
        raise Rejected(f"{_shown(p)}: cannot be opened as an array ({_why(e)})") from e
    where = _shown(p) if not dataset else f"{_shown(p)}:{dataset}"
    lim.check_array_meta(reader.shape, reader.dtype, reader.storage_chunks, where)
    ndim = len(reader.shape)
    voxel_size = _vector(voxel_size, ndim, 1.0, p, "voxel size")
    offset = _vector(offset, ndim, 0.0, p, "offset")
    if any(v <= 0 or not np.isfinite(v) for v in voxel_size):
        raise Rejected(f"{_shown(p)}: voxel size {voxel_size} must be positive and finite")
    if any(not np.isfinite(v) for v in offset):
        raise Rejected(f"{_shown(p)}: offset {offset} must be finite")
    reader.check_finite = finite and reader.dtype.kind == "f"
    return reader, voxel_size, offset, attrs


def open_volume(
    path: str | Path,
    dataset: str | None = None,
    *,
    chunks: Any = None,
    max_voxels: int | None = None,
    limits: Limits | None = None,
    finite: bool = True,
) -> Volume:
    """Open ``path`` (and ``dataset`` inside it) lazily.

    Parameters
    ----------
    path : file or folder; see the module table for the formats.
    dataset : array inside a container (zarr group path, HDF5 dataset, npz key, NGFF level).
    chunks : dask chunks; default whole storage chunks grouped to ~64 MiB blocks.
    max_voxels : refuse larger declared shapes before allocating anything (default: the
        ``max_voxels`` of ``limits``).
    limits : the limits to check against (default: :func:`gpueval.limits.current_limits`).
    finite : refuse NaN/±inf in float arrays while reading each block.

    Raises
    ------
    Rejected
        Unreadable, corrupt, hostile or absurd input (the message names the file).
    """
    lim = resolve(limits)
    if max_voxels is not None:
        lim = lim.replace(max_voxels=int(max_voxels))
    p = str(path)
    reader, voxel_size, offset, attrs = open_reader_checked(p, dataset, lim, finite=finite)
    ndim = len(reader.shape)
    blocks = chunks or _block_chunks(reader.shape, reader.storage_chunks, reader.dtype.itemsize)
    import dask.array as da  # noqa: PLC0415 - lazy: image challenges never build a dask array

    data = da.from_array(reader, chunks=blocks, asarray=False, lock=False, fancy=False,
                         inline_array=True, name=f"read-{_token(reader)}",
                         meta=np.empty((0,) * ndim, reader.dtype))
    return Volume(data, voxel_size, offset, p, attrs)


def storage_of(x: da.Array) -> Any:
    """The storage array-like behind ``x``, or ``None`` when ``x`` is not a plain stored array.

    A storage is found when ``x`` is one ``da.from_array`` layer of plain getter tasks
    without a dask lock, as :func:`open_volume` builds its arrays; anything derived from one
    (a cast, a mask, a slice, a rechunk) has other layers on top and gives ``None``.

    Parameters
    ----------
    x : a dask array.

    Returns
    -------
    The object the getter tasks slice (a storage reader of this module), or ``None``.

    Notes
    -----
    Why it exists: slicing such a dask array and computing it reads every dask chunk the
    region touches **whole** (dask 2026.8 does not fuse the slice into the getter of an
    inlined storage array), then cuts the region out — one voxel of an array whose storage
    chunks are grouped into ~64 MiB dask chunks decodes 64 MiB. The getter itself reads
    ``storage[region]``: asking the storage for the region is what it does, for exactly the
    region (same values; a storage reader decodes only the chunks under it).
    """
    from dask._task_spec import DataNode, Task, TaskRef  # noqa: PLC0415 - dask is lazy here
    from dask.array.core import getter, getter_inline, getter_nofancy  # noqa: PLC0415

    try:
        layer = x.dask.layers[x.name]
        task = layer[next(iter(layer))]
        if not isinstance(task, Task) or task.func not in (getter, getter_nofancy,
                                                           getter_inline):
            return None
        if task.kwargs.get("lock") or not task.args:
            return None  # a dask-locked storage is read through dask and its lock
        arr = task.args[0]
        if isinstance(arr, TaskRef):  # from_array(inline_array=False): one node holds it
            arr = x.dask[arr.key]
        arr = arr.value if isinstance(arr, DataNode) else arr
    except Exception:  # any other graph shape: read through dask
        return None
    if isinstance(arr, Task | np.ndarray) or not hasattr(arr, "__getitem__"):
        return None  # a NumPy chunk, not a storage (from_array of NumPy inlines the chunks)
    if tuple(getattr(arr, "shape", ())) != x.shape or \
            np.dtype(getattr(arr, "dtype", None)) != x.dtype:
        return None
    return arr


def read_region(x: da.Array, region: tuple[slice | int, ...]) -> np.ndarray:
    """``x[region]`` as a NumPy array, decoding only the storage chunks under ``region``.

    When ``x`` is a plain :func:`open_volume` array (:func:`storage_of` finds its storage)
    the storage reader is asked for the region itself; otherwise (a derived array, a dask
    lock, an in-memory array) the region is computed through dask on the calling thread.
    The values are those of ``x[region].compute()`` either way.

    Parameters
    ----------
    x : the dask array to read.
    region : basic indices, one per leading axis (slices with step 1 or ``None``, or ints).

    Returns
    -------
    numpy.ndarray
        ``x[region]`` (0-d for an all-int region).

    Raises
    ------
    Rejected
        What the storage reader raises for a corrupt or hostile chunk.
    """
    key = tuple(region)
    storage = storage_of(x)
    full: list[slice] = []  # the reader takes one start:stop slice per axis, in bounds
    drop: list[int] = []  # axes an int index removes
    for axis, (k, n) in enumerate(zip(key, x.shape, strict=False)):
        if isinstance(k, slice) and k.step in (None, 1):
            start, stop, _ = k.indices(n)
            full.append(slice(start, max(start, stop)))
        elif isinstance(k, int | np.integer) and not isinstance(k, bool) and -n <= k < n:
            full.append(slice(int(k) % n, int(k) % n + 1))
            drop.append(axis)
        else:  # steps, fancy or out-of-bounds indices: dask's own rules and errors
            storage = None
            break
    if storage is not None and len(key) <= x.ndim:
        full += [slice(0, n) for n in x.shape[len(full):]]
        return np.asarray(storage[tuple(full)]).squeeze(axis=tuple(drop))
    import dask  # noqa: PLC0415 - lazy: image challenges never build a dask array

    # dask.get, not "sync": a scheduler name makes dask import distributed (~0.1 s)
    return np.asarray(x[key].compute(scheduler=dask.get))


def read_image(path: str | Path, *, limits: Limits | None = None) -> np.ndarray:
    """Decode a small 2-D image file (PNG/BMP/JPEG/TIFF) whole, as stored (no colour mixing).

    The header (size, bands, sample type) is checked against ``limits`` before decoding.
    """
    lim = resolve(limits)
    p = Path(path)
    try:
        _check_regular_file(p)
        if p.suffix.lower() in TIFF_SUFFIXES:
            return _read_tiff_whole(p, lim)
        return _read_pil(p, lim)
    except Rejected:
        raise
    except Exception as e:  # PIL/tifffile raise many types on corrupt files
        raise Rejected(f"{p.name}: not a readable image ({_why(e)})") from e


def _check_png_chunks(p: Path) -> None:
    """Every PNG chunk must fit in the file: PIL reads a declared chunk length in one call
    (a 2 GiB ``read`` for a 4-byte edit), so lengths are checked here first."""
    size = p.stat().st_size
    with open(p, "rb") as f:
        if f.read(8) != b"\x89PNG\r\n\x1a\n":
            raise Rejected(f"{p.name}: not a PNG file (bad signature)")
        pos = 8
        while pos < size:
            f.seek(pos)
            head = f.read(8)
            if len(head) < 8:
                raise Rejected(f"{p.name}: truncated PNG (chunk header at byte {pos})")
            length = int.from_bytes(head[:4], "big")
            end = pos + 12 + length
            if length > 2**31 - 1 or end > size:
                raise Rejected(f"{p.name}: PNG chunk {head[4:]!r} at byte {pos} declares "
                               f"{length} bytes, past the end of the file (truncated or corrupt)")
            if head[4:] == b"IEND":
                return
            pos = end
    raise Rejected(f"{p.name}: truncated PNG (no IEND chunk)")


def _read_pil(p: Path, lim: Limits) -> np.ndarray:
    from PIL import Image

    if p.suffix.lower() == ".png":
        _check_png_chunks(p)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(p)
        except Image.DecompressionBombError as e:
            raise Rejected(f"{p.name}: image too large to decode ({e})") from e
    with im:
        w, h = im.size
        bands = len(im.getbands())
        dtype = {"1": "bool", "I;16": "uint16", "I;16B": "uint16", "I;16L": "uint16",
                 "I": "int32", "F": "float32"}.get(im.mode, "uint8")
        shape = (h, w) if bands == 1 else (h, w, bands)
        lim.check_array_meta(shape, dtype, None, p.name)
        if getattr(im, "n_frames", 1) > 1:
            raise Rejected(f"{p.name}: {im.n_frames} frames; expected one 2-D image")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            arr = np.asarray(im)
    if arr.shape[:2] != (h, w):
        raise Rejected(f"{p.name}: decoded shape {arr.shape} differs from the header {shape}")
    return arr


def _read_tiff_whole(p: Path, lim: Limits) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(p) as tif:
        _check_tiff(tif, p, lim)
        series = tif.series[0]
        lim.check_array_meta(series.shape, series.dtype, None, p.name)
        return series.asarray()


# --------------------------------------------------------------------------------------------
# Readers: picklable array-likes that (re)open their file lazily in each process.


class _Reader:
    """``shape``/``dtype``/``__getitem__`` over one stored array, reopened after pickling."""

    kind = ""
    check_finite = False

    def __init__(self, path: str, dataset: str | None):
        self.path, self.dataset = path, dataset
        self._local = threading.local()
        arr = self._array()
        self.shape = tuple(int(s) for s in arr.shape)
        self.dtype = np.dtype(getattr(arr.dtype, "numpy_dtype", arr.dtype))  # tensorstore
        self.ndim = len(self.shape)
        self.storage_chunks = self._storage_chunks(arr)

    def __getstate__(self):
        d = self.__dict__.copy()
        d.pop("_local", None)
        return d

    def __setstate__(self, d):
        self.__dict__.update(d)
        self._local = threading.local()

    def _array(self):
        arr = getattr(self._local, "arr", None)
        if arr is None or getattr(self._local, "pid", None) != os.getpid():
            arr = self._local.arr = self._open()
            self._local.pid = os.getpid()
        return arr

    def __getitem__(self, key):
        try:
            block = self._read(key)
        except Rejected:
            raise
        except Exception as e:  # a corrupt chunk must name itself, not crash a worker
            raise Rejected(f"{_shown(self.path)}: cannot read block {_show(key)}: {_why(e)}") from e
        want = _expected_shape(key, self.shape)
        if want is not None and tuple(block.shape) != want:
            raise Rejected(f"{_shown(self.path)}: block {_show(key)} decoded to shape "
                           f"{block.shape}, "
                           f"expected {want} (corrupt chunk)")
        if self.check_finite and block.size and not np.isfinite(block).all():
            raise Rejected(f"{_shown(self.path)}: NaN or infinite values in block {_show(key)}; a "
                           "float submission must be finite")
        return block

    def _read(self, key) -> np.ndarray:
        return np.asarray(self._array()[key])

    def _storage_chunks(self, arr) -> tuple[int, ...]:
        return tuple(getattr(arr, "chunks", None) or self.shape)

    def _open(self):
        raise NotImplementedError


class _ZarrReader(_Reader):
    kind = "zarr"

    def _open(self):
        import zarr

        node = zarr.open(_guarded_store(self.path), mode="r")
        return node[self.dataset] if self.dataset else node


@dataclass(frozen=True)
class _V2Layout:
    """What reading a plain zarr v2 array from its chunk files needs (:func:`_v2_layout`)."""

    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    fill: Any                   # the fill value as a NumPy scalar of ``dtype``
    separator: str              # "." or "/"
    plan: _ChunkPlan


#: a read touching at least this many stored chunks decodes them in a thread pool
_PARALLEL_CHUNKS = 4
_DECODE_THREADS = min(8, os.cpu_count() or 1)
_POOL: tuple[int, Any] | None = None  # (pid, ThreadPoolExecutor): one per process
#: per thread, the bytes one chunk that does not land in place is decoded into (reused)
_SCRATCH = threading.local()
#: callables ``(store_path, chunk_key, compressed_bytes)`` told of every chunk file the direct
#: v2 reader reads and decodes (:func:`observe_chunk_reads`)
_CHUNK_OBSERVERS: list[Callable[[str, str, int], None]] = []


def _decode_pool():
    """The process's chunk-decoding threads (made on first use, again after a fork)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        from concurrent.futures import ThreadPoolExecutor

        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=_DECODE_THREADS,
                                                 thread_name_prefix="gpueval-zarr"))
    return _POOL[1]


def _scratch(nbytes: int) -> np.ndarray:
    """This thread's reusable decode buffer, ``nbytes`` long (grown when a larger chunk
    comes; one chunk's bytes per thread, so memory stays bounded by the chunk size)."""
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.nbytes < nbytes:
        buf = _SCRATCH.buf = None  # drop the old one before allocating the new
        buf = _SCRATCH.buf = np.empty(nbytes, np.uint8)
    return buf[:nbytes]


@contextlib.contextmanager
def observe_chunk_reads(observer: Callable[[str, str, int], None]) -> Iterator[None]:
    """Call ``observer(store_path, chunk_key, compressed_bytes)`` for every chunk file that
    the direct zarr v2 reader (the one :func:`open_volume` gives a plain zarr v2 array) reads
    and decodes in this process while the block runs — one call per decode, from the thread
    that decodes (the observer must be thread-safe). Benchmarks and tests count reads with it;
    arrays read through zarr itself (v3, groups, filters) are not seen."""
    _CHUNK_OBSERVERS.append(observer)
    try:
        yield
    finally:
        _CHUNK_OBSERVERS.remove(observer)


class _ZarrV2Reader(_Reader):
    """A plain zarr v2 array (C order, no filters, a numeric fill value) read straight from
    its chunk files: each chunk goes through the same guards as :func:`_guarded_store`'s
    (no key leaving the store, regular files only, a missing file is the fill value) and the
    same bounded decoding (:class:`_ChunkPlan`, so a corrupt or truncated chunk gives the
    same message), without zarr's asynchronous machinery or its import (~0.1 s, and ~1 ms
    per chunk read). Chunks of one read are decoded in a thread pool (the codecs release the
    GIL). A chunk whose whole extent is one contiguous run of the returned block (e.g. the
    block is exactly one chunk, as when the dask blocks are the storage chunks) is decoded
    straight into it; any other into the decoding thread's reusable scratch buffer and
    copied from there — no fresh chunk-sized memory per decode (each fresh 64 MiB buffer was
    a new mmap faulted in page by page). Keys other than plain slices fall back to zarr
    itself."""

    kind = "zarr"  # same data, same dask token as :class:`_ZarrReader`

    def __init__(self, path: str, layout: _V2Layout):
        self.path, self.dataset = path, None
        self._local = threading.local()
        self.layout = layout
        self.shape, self.dtype = layout.shape, layout.dtype
        self.ndim = len(self.shape)
        self.storage_chunks = layout.chunks
        self._real_root = os.path.realpath(path)

    def _open(self):
        return _ZarrReader._open(self)  # zarr itself, for keys _read does not slice

    def _read(self, key) -> np.ndarray:
        box = _plain_box(key, self.shape)
        if box is None:
            return np.asarray(self._array()[key])
        lo, hi = box
        lay = self.layout
        out = np.empty(tuple(b - a for a, b in zip(lo, hi, strict=True)), lay.dtype)
        if out.size == 0:
            return out
        ranges = [range(a // c, -(-b // c)) for a, b, c in zip(lo, hi, lay.chunks,
                                                                  strict=True)]
        cells = list(itertools.product(*ranges))
        place = functools.partial(self._place, out, lo, hi)
        if len(cells) >= _PARALLEL_CHUNKS:
            # each thread decodes and places its chunks itself (disjoint parts of ``out``),
            # so no decoded chunk outlives its decode besides the per-thread scratch
            for _ in _decode_pool().map(place, cells):
                pass
        else:
            for cell in cells:
                place(cell)
        return out

    def _place(self, out: np.ndarray, lo: list[int], hi: list[int],
               cell: tuple[int, ...]) -> None:
        """Decode stored chunk ``cell`` into its part of ``out`` (the box ``[lo, hi)``), or
        fill that part with the fill value where no file stores the chunk."""
        lay = self.layout
        src, dst = [], []
        for i, a, b, c in zip(cell, lo, hi, lay.chunks, strict=True):
            start, stop = max(a, i * c), min(b, (i + 1) * c)
            src.append(slice(start - i * c, stop - i * c))
            dst.append(slice(start - a, stop - a))
        target = out[tuple(dst)]
        key = lay.separator.join(str(i) for i in cell)
        raw = self._chunk_bytes(key)
        if raw is None:
            target[...] = lay.fill
            return
        where = f"{_shown(self.path)} chunk {key!r}"
        if target.shape == lay.chunks and target.flags.c_contiguous:
            lay.plan.decode(raw, where, out=target)  # the whole chunk, in place
            return
        buf = _scratch(lay.plan.nbytes)
        lay.plan.decode(raw, where, out=buf)
        target[...] = buf.view(lay.dtype).reshape(lay.chunks)[tuple(src)]

    def _chunk_bytes(self, key: str) -> bytes | None:
        """The stored (compressed) bytes of chunk ``key``, or ``None`` where no file stores
        it (fill value); observers (:func:`observe_chunk_reads`) are told of each read."""
        real = _store_file(self.path, self._real_root, key)
        if real is None:
            return None
        with open(real, "rb") as f:
            raw = f.read()
        for observer in tuple(_CHUNK_OBSERVERS):
            observer(self.path, key, len(raw))
        return raw


def _plain_box(key, shape: tuple[int, ...]) -> tuple[list[int], list[int]] | None:
    """``(lo, hi)`` of a key of unit-step slices, one per axis (what dask asks a reader
    for); ``None`` for anything else."""
    if not isinstance(key, tuple) or len(key) != len(shape) or \
            not all(isinstance(k, slice) and k.step in (None, 1) for k in key):
        return None
    bounds = [k.indices(n)[:2] for k, n in zip(key, shape, strict=True)]
    return [a for a, _ in bounds], [max(a, b) for a, b in bounds]


def _v2_layout(meta: dict) -> _V2Layout | None:
    """The :class:`_V2Layout` of an already checked ``.zarray`` (:func:`_check_v2_array`)
    when :class:`_ZarrV2Reader` reads it exactly as zarr would; ``None`` sends the array
    to zarr (filters, Fortran order, a non-numeric or absent fill value, a byte order other
    than the machine's, 0-d or empty arrays, anything unusual)."""
    try:
        shape = tuple(meta["shape"])
        chunks = tuple(meta["chunks"])
        dtype = np.dtype(meta["dtype"])
        fill = meta.get("fill_value")
        if meta.get("zarr_format") != 2 or meta.get("order", "C") != "C" or \
                meta.get("filters") or len(shape) != len(chunks) or not shape or \
                not all(type(n) is int and n > 0 for n in shape + chunks) or \
                dtype.kind not in "biuf" or not dtype.isnative or dtype.fields or \
                isinstance(fill, bool) != (dtype.kind == "b") or \
                not isinstance(fill, int | float):
            return None
        value = np.array(fill, dtype)
        if value != fill and not (dtype.kind == "f" and np.isnan(fill)):
            return None  # a fill value the dtype cannot hold: zarr's rules decide
        plan = _ChunkPlan.from_meta(meta, ".zarray", "")
    except (Rejected, TypeError, ValueError, KeyError, OverflowError):
        return None  # zarr refuses it (or reads it) with its own message
    if plan is None or not plan.exact:
        return None
    return _V2Layout(shape, chunks, dtype, value[()], str(meta.get("dimension_separator")
                                                          or "."), plan)


class _Hdf5Reader(_Reader):
    """HDF5 dataset. Compressed chunks (gzip/deflate, LZF, with shuffle and Fletcher-32 in any
    order) are read raw (``read_direct_chunk``) and decoded by :mod:`gpueval.io.bounded` into
    at most one chunk's bytes: HDF5's own deflate filter grows its buffer until the stream
    ends (a 4 MB chunk may inflate to gigabytes), and its pipeline runs under h5py's global
    lock (one chunk at a time per process). Other filters are checked at open
    (:data:`_H5_FILTERS`) and take h5py's normal path, which writes into a chunk-sized
    buffer."""

    kind = "hdf5"

    def _open(self):
        import h5py

        self._local.file = h5py.File(self.path, "r")
        return _h5_resolve(self._local.file, self.dataset, f"{_shown(self.path)}:"
                           f"{self.dataset}")

    def __getstate__(self):
        d = super().__getstate__()
        d.pop("_index", None)  # rebuilt where it is used (it may be megabytes)
        d.pop("_index_lock", None)
        return d

    def chunk_index(self, ds) -> _ChunkIndex | None:
        """Where every stored chunk of the dataset lies, listed once per process (see
        :class:`_ChunkIndex`); ``None`` when h5py cannot list them or there are too many."""
        if not hasattr(self, "_index_lock"):
            self._index_lock = threading.Lock()
        with self._index_lock:
            if not hasattr(self, "_index"):
                self._index = _ChunkIndex.of(ds, self.path)
            return self._index

    def __getitem__(self, key):
        arr = self._array()
        pipeline = _direct_pipeline(arr)
        if pipeline is None:
            return super().__getitem__(key)
        try:
            block = _read_direct(arr, key, pipeline, self.shape,
                                 f"{_shown(self.path)}:{self.dataset}",
                                 index=self.chunk_index(arr), path=self.path)
        except Rejected:
            raise
        except Exception as e:  # a corrupt chunk names itself, as in the normal path
            raise Rejected(f"{_shown(self.path)}: cannot read block {_show(key)}: {_why(e)}"
                           ) from e
        if self.check_finite and block.size and not np.isfinite(block).all():
            raise Rejected(f"{_shown(self.path)}: NaN or infinite values in block "
                           f"{_show(key)}; a float submission must be finite")
        return block

    def direct_parts(self, key: tuple) -> Iterator[tuple[tuple[slice, ...], np.ndarray]] | None:
        """``self[key]`` chunk by chunk, never assembled: ``(where in the block, values)``
        per stored chunk meeting ``key`` (a view of the decoded chunk, or the fill value
        broadcast over an unwritten one), for step-1 slices of a dataset gpueval decodes
        itself; ``None`` otherwise (read the block). A reduction over the parts (a gather,
        a max) then skips the block's allocation and copy, ~1 GiB for a 512³ uint64 scan."""
        arr = self._array()
        pipeline = _direct_pipeline(arr)
        simple = (isinstance(key, tuple) and len(key) == len(self.shape)
                  and all(isinstance(k, slice) and k.indices(n)[2] == 1
                          for k, n in zip(key, self.shape, strict=True)))
        if pipeline is None or not simple:
            return None
        where = f"{_shown(self.path)}:{self.dataset}"
        return _iter_direct(arr, key, pipeline, self.shape, where,
                            index=self.chunk_index(arr), path=self.path)

    def _storage_chunks(self, arr):
        if arr.chunks:
            return tuple(arr.chunks)
        # contiguous: read slabs along the first axis of about TARGET_BLOCK_BYTES each
        row = max(1, math.prod(self.shape[1:]) * self.dtype.itemsize)
        first = max(1, min(self.shape[0] if self.shape else 1, TARGET_BLOCK_BYTES // row))
        return (first, *self.shape[1:]) if self.shape else ()


# HDF5 filter ids: 1 deflate, 2 shuffle, 3 fletcher32, 4 szip, 5 nbit, 6 scaleoffset, 32000 lzf.
# 1, 2, 3 and 32000 are decoded by gpueval (bounded); 4, 5, 6 by HDF5 into a chunk-sized buffer.
_H5_DIRECT = {1, 2, 3, 32000}
_H5_FILTERS = _H5_DIRECT | {4, 5, 6}


def _h5_filters(ds) -> list[int]:
    dcpl = ds.id.get_create_plist()
    return [int(dcpl.get_filter(i)[0]) for i in range(dcpl.get_nfilters())]


def _direct_pipeline(ds) -> list[int] | None:
    """The filter ids of a chunked dataset gpueval decodes itself, in pipeline order."""
    if not ds.chunks or ds.dtype.kind not in "biuf":
        return None
    ids = _h5_filters(ds)
    return ids if ids and set(ids) <= _H5_DIRECT else None


class _ChunkIndex:
    """File offset, stored size and filter mask of every stored chunk of an HDF5 dataset,
    from one walk of its chunk B-tree (``DatasetID.chunk_iter``).

    Looking a chunk up through h5py (``get_chunk_info_by_coord``, then
    ``read_direct_chunk``) costs ~20 µs per chunk under h5py's global lock, so the reads of
    a volume in h5py's small default chunks (8,192 chunks of 16×32×32 for 512³) are
    serialised across threads; with the index they are plain ``os.pread`` calls that run in
    parallel. Entries are bounded before use: a chunk must lie inside the file.
    """

    #: above this many chunks in the grid the per-chunk lookups are kept (the index costs
    #: ~1 µs and 20 bytes per chunk; a read of a few chunks of a huge grid needs no index)
    MAX_CHUNKS = 2**18

    def __init__(self, grid: tuple[int, ...], chunk: tuple[int, ...]):
        n = math.prod(grid)
        self.grid, self.chunk = grid, chunk
        self.offset = np.full(n, -1, np.int64)  # -1: never written (the fill value)
        self.size = np.zeros(n, np.int64)
        self.mask = np.zeros(n, np.int64)

    @classmethod
    def of(cls, ds, path: str) -> _ChunkIndex | None:
        """The index of ``ds`` (an h5py chunked dataset stored in ``path``), or ``None``."""
        chunk = tuple(int(c) for c in ds.chunks)
        grid = tuple(-(-int(n) // c) for n, c in zip(ds.shape, chunk, strict=True))
        if not hasattr(ds.id, "chunk_iter") or math.prod(grid) > cls.MAX_CHUNKS:
            return None
        index = cls(grid, chunk)
        entries: list[tuple] = []
        try:
            ds.id.chunk_iter(lambda c: entries.append(
                (c.chunk_offset, c.filter_mask, c.byte_offset, c.size)))
        except Exception:  # an HDF5 library without H5Dchunk_iter: look chunks up one by one
            return None
        if not entries:
            return index
        origins = np.array([e[0] for e in entries], np.int64).reshape(len(entries), -1)
        starts = np.array([e[2] for e in entries], np.int64)
        sizes = np.array([e[3] for e in entries], np.int64)
        masks = np.array([e[1] for e in entries], np.int64)
        cells = origins // np.array(chunk, np.int64)
        if ((origins % np.array(chunk)) != 0).any() or (cells < 0).any() or \
                (cells >= np.array(grid)).any():
            return None  # an entry off the chunk grid: h5py's own lookups decide
        file_size = os.path.getsize(path)
        if ((starts < 0) | (sizes < 0) | (starts + sizes > file_size)).any():
            return None  # a chunk past the end of the file: refused by the h5py path
        flat = np.ravel_multi_index(tuple(cells.T), grid)
        index.offset[flat], index.size[flat], index.mask[flat] = starts, sizes, masks
        return index

    def find(self, origin: Sequence[int]) -> tuple[int, int, int] | None:
        """(file offset, stored bytes, filter mask) of the chunk at ``origin``; ``None`` if
        it was never written."""
        cell = 0  # row-major cell number, in Python ints (a NumPy call costs ~5 µs)
        for o, c, g in zip(origin, self.chunk, self.grid, strict=True):
            if not 0 <= o // c < g:
                raise IndexError(f"chunk origin {tuple(origin)} outside the chunk grid")
            cell = cell * g + o // c
        start = int(self.offset[cell])
        return None if start < 0 else (start, int(self.size[cell]), int(self.mask[cell]))


def _read_direct(ds, key, pipeline: list[int], shape: tuple[int, ...],
                 where: str, *, index: _ChunkIndex | None = None,
                 path: str | None = None) -> np.ndarray:
    """Assemble ``ds[key]`` from raw chunks decoded here, each bounded to one chunk.

    With an ``index`` (and the file's ``path``) the raw chunks are read with ``os.pread``,
    outside h5py's global lock; without, through h5py's per-chunk lookups.
    """
    if not isinstance(key, tuple):
        key = (key,)
    simple = (len(key) == len(shape) and all(isinstance(k, slice) for k in key)
              and all(k.indices(n)[2] == 1 for k, n in zip(key, shape, strict=True)))
    if not simple:  # ints, steps, fewer axes: read the bounding box here, then index it
        box_key, post = _bounding_box(key, shape)
        return _read_direct(ds, box_key, pipeline, shape, where, index=index,
                            path=path)[post]
    box = [k.indices(n) for k, n in zip(key, shape, strict=True)]
    lo = [a for a, _, _ in box]
    hi = [b for _, b, _ in box]
    out = np.empty([max(b - a, 0) for a, b in zip(lo, hi, strict=True)], ds.dtype)
    for dst, part in _iter_direct(ds, key, pipeline, shape, where, index=index, path=path):
        out[dst] = part  # every chunk meeting the key, unwritten ones as the fill value
    return out


def _iter_direct(ds, key: tuple, pipeline: list[int], shape: tuple[int, ...], where: str, *,
                 index: _ChunkIndex | None = None, path: str | None = None
                 ) -> Iterator[tuple[tuple[slice, ...], np.ndarray]]:
    """Per chunk meeting ``key`` (step-1 slices): where its part lies in ``ds[key]`` and the
    part itself, decoded here (bounded to one chunk), or the fill value broadcast over a
    chunk never written. With an ``index`` (and the file's ``path``) the raw chunks are read
    with ``os.pread``, outside h5py's global lock; without, through h5py's lookups."""
    box = [k.indices(n) for k, n in zip(key, shape, strict=True)]
    lo = [a for a, _, _ in box]
    hi = [b for _, b, _ in box]
    dtype = ds.dtype  # an h5py property: read once, not per chunk
    fill = np.array(ds.fillvalue if ds.fillvalue is not None else 0, dtype)
    chunk = ds.chunks
    itemsize = dtype.itemsize
    nbytes = int(np.prod(chunk)) * itemsize
    starts = [range(a - a % c, b, c) for a, b, c in zip(lo, hi, chunk, strict=True)]
    fd = os.open(path, os.O_RDONLY) if index is not None and path is not None else None
    try:
        for origin in itertools.product(*starts):
            src = tuple(slice(max(a, o) - o, min(b, o + c) - o)
                        for a, b, o, c in zip(lo, hi, origin, chunk, strict=True))
            dst = tuple(slice(max(a, o) - a, min(b, o + c) - a)
                        for a, b, o, c in zip(lo, hi, origin, chunk, strict=True))
            if fd is None:
                if ds.id.get_chunk_info_by_coord(origin).byte_offset is None:
                    raw = None  # never written: the fill value
                else:
                    mask, raw = ds.id.read_direct_chunk(origin)
            else:
                found = index.find(origin)
                raw = None
                if found is not None:
                    start, size, mask = found
                    raw = os.pread(fd, size, start)  # size checked against the file
                    if len(raw) != size:
                        raise Rejected(f"{where} chunk at {tuple(origin)}: truncated file")
            if raw is None:
                yield dst, np.broadcast_to(fill, tuple(s.stop - s.start for s in src))
            else:
                yield dst, _decode_chunk(raw, origin, chunk, dtype, pipeline, mask,
                                         nbytes, itemsize, where)[src]
    finally:
        if fd is not None:
            os.close(fd)


def _decode_chunk(raw: bytes, origin: tuple, chunk: tuple[int, ...], dtype: np.dtype,
                  pipeline: list[int], mask: int, nbytes: int, itemsize: int,
                  where: str) -> np.ndarray:
    """One raw chunk decoded (bounded to ``nbytes``) as an array of the chunk's shape."""
    here = f"{where} chunk at {tuple(int(o) for o in origin)}"
    buf = _undo_filters(bytes(raw), pipeline, mask, nbytes, itemsize, here, decode)
    return np.frombuffer(buf, dtype).reshape(chunk)


def _bounding_box(key: tuple, shape: tuple[int, ...]) -> tuple[tuple, tuple]:
    """Step-1 slices covering ``key`` (ints, slices with steps, a trailing ``...``) and the
    index that takes ``key`` out of that box; anything else is refused."""
    if key and key[-1] is Ellipsis:
        key = key[:-1]
    if len(key) > len(shape) or Ellipsis in key:
        raise Rejected(f"unsupported block key {_show(key)}")
    key = key + (slice(None),) * (len(shape) - len(key))
    box, post = [], []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, int | np.integer):
            i = int(k) + (n if k < 0 else 0)
            if not 0 <= i < n:
                raise Rejected(f"block index {int(k)} outside an axis of length {n}")
            box.append(slice(i, i + 1))
            post.append(0)
        elif isinstance(k, slice):
            start, stop, step = k.indices(n)
            idx = range(start, stop, step)
            if not len(idx):
                box.append(slice(0, 0))
                post.append(slice(None))
                continue
            lo, hi = min(idx[0], idx[-1]), max(idx[0], idx[-1]) + 1
            box.append(slice(lo, hi))
            post.append(slice(idx[0] - lo, None if idx[-1] - lo + step < 0
                              else idx[-1] - lo + (1 if step > 0 else -1), step))
        else:
            raise Rejected(f"unsupported block key {_show(key)}")
    return tuple(box), tuple(post)


def _undo_filters(buf: bytes, pipeline: list[int], mask: int, nbytes: int, itemsize: int,
                  where: str, decode) -> bytes:
    """Run HDF5's filter pipeline backwards; every step's output is bounded by ``nbytes``
    (plus the 4-byte checksum Fletcher-32 appends)."""
    for i in reversed(range(len(pipeline))):
        if mask & (1 << i):
            continue  # this filter was skipped when the chunk was written
        fid = pipeline[i]
        later_checksum = any(pipeline[j] == 3 and not mask & (1 << j) for j in range(i))
        bound = nbytes + (4 if later_checksum else 0)
        if fid == 1:
            buf = decode("zlib", buf, bound, where)
        elif fid == 32000:
            buf = decode("lzf", buf, bound, where)
        elif fid == 3:
            if len(buf) < 4:
                raise Rejected(f"{where}: truncated Fletcher-32 chunk")
            buf = buf[:-4]  # the checksum; HDF5 would verify it, a wrong one is no bomb
        elif fid == 2 and itemsize > 1 and len(buf) % itemsize == 0:
            buf = np.frombuffer(buf, np.uint8).reshape(itemsize, -1).T.tobytes()
    if len(buf) != nbytes:
        raise Rejected(f"{where}: decodes to {len(buf)} bytes, expected {nbytes} (corrupt "
                       "chunk)")
    return buf


class _TiffReader(_Reader):
    kind = "tiff"

    def _open(self):
        import tifffile
        import zarr

        return zarr.open(tifffile.imread(self.path, aszarr=True), mode="r")


class _TensorstoreReader(_Reader):
    kind = "tensorstore"

    def _open(self):
        import tensorstore as ts

        driver, _, root = self.path.partition(":")
        return ts.open({"driver": driver, "kvstore": {"driver": "file", "path": root}},
                       read=True).result()

    def _storage_chunks(self, arr):
        try:
            return tuple(int(c) for c in arr.chunk_layout.read_chunk.shape)
        except Exception:
            return self.shape

    def _read(self, key):
        return np.asarray(self._array()[key].read().result())


class _MemoryReader(_Reader):
    """Small formats decoded whole (npz members, PNG/BMP): an in-memory array."""

    kind = "memory"

    def __init__(self, path: str, dataset: str | None, array: np.ndarray):
        self._arr = array
        super().__init__(path, dataset)

    def _open(self):
        return self._arr


# --------------------------------------------------------------------------------------------


def _open_reader(p: str, dataset: str | None, lim: Limits):
    low = p.lower().rstrip("/")
    if p.startswith("ts:"):
        r = _TensorstoreReader(p[3:], None)
        return r, None, None, {}
    _check_regular_file(Path(p), folder_ok=True)
    if low.endswith(".n5"):
        _check_store_links(Path(p), lim)
        r = _TensorstoreReader(f"n5:{p}", None)
        return r, None, None, {}
    if low.endswith(HDF5_SUFFIXES):
        return _open_hdf5(p, dataset, lim)
    if low.endswith(TIFF_SUFFIXES):
        import tifffile

        with tifffile.TiffFile(p) as tif:
            _check_tiff(tif, Path(p), lim)
        return _TiffReader(p, None), None, None, {}
    if low.endswith(IMAGE_SUFFIXES):
        return _MemoryReader(p, None, read_image(p, limits=lim)), None, None, {}
    if low.endswith(".npz"):
        arr = load_npz_array(p, dataset, limits=lim)
        return _MemoryReader(p, dataset, arr), None, None, {}
    if low.endswith(".npy"):
        return _MemoryReader(p, None, _load_npy(Path(p), lim)), None, None, {}
    if Path(p).is_dir():
        return _open_zarr(p, dataset, lim)
    raise Rejected(f"{_shown(p)}: unknown array format (expected zarr, n5, HDF5, TIFF, image "
                   "or npz)")


def _open_zarr(p: str, dataset: str | None, lim: Limits):
    root = Path(p)
    _check_zarr_metadata(root, dataset or "", lim)
    if not dataset:
        direct = _open_zarr_v2_direct(root, p, lim)
        if direct is not None:
            return direct
    import zarr

    node = zarr.open(_guarded_store(p), mode="r")
    voxel, offset = None, None
    if isinstance(node, zarr.Group):
        ngff = _ngff_multiscales(dict(node.attrs))
        if ngff is not None:
            level, voxel, offset = _ngff_level(ngff, dataset)
            dataset = level
            _check_zarr_metadata(root, dataset, lim)
        elif dataset is None:
            raise Rejected(f"{_shown(p)} is a zarr group: name the array inside it")
        if dataset not in node:
            raise Rejected(f"{_shown(p)}: no array {dataset!r} in the group")
        arr = node[dataset]
        if not isinstance(arr, zarr.Array):
            raise Rejected(f"{_shown(p)}: {dataset!r} is a group, not an array")
    else:
        arr = node
    where = f"{_shown(p)}:{dataset}" if dataset else _shown(p)
    lim.check_array_meta(arr.shape, arr.dtype, arr.chunks, where)
    attrs = dict(arr.attrs)
    voxel = voxel if voxel is not None else _first_attr(attrs, _VOXEL_KEYS)
    offset = offset if offset is not None else _first_attr(attrs, _OFFSET_KEYS)
    return _ZarrReader(p, dataset), voxel, offset, attrs


def _open_zarr_v2_direct(root: Path, p: str, lim: Limits):
    """``_open_zarr``'s answer for a plain zarr v2 array at ``root`` read without zarr
    (:class:`_ZarrV2Reader`), or ``None`` to open it with zarr. The metadata documents are
    read through the same checks as :func:`_check_zarr_metadata` (links, size, JSON)."""
    real_root = os.path.realpath(root)
    meta = _read_meta_doc(root / ".zarray", real_root, lim)
    if meta is None or any((root / doc).exists() or (root / doc).is_symlink()
                           for doc in (".zgroup", "zarr.json", ".zmetadata")):
        return None  # a group, a v3 node, consolidated metadata: zarr decides
    layout = _v2_layout(meta)
    if layout is None:
        return None
    attrs = _read_meta_doc(root / ".zattrs", real_root, lim) or {}
    lim.check_array_meta(layout.shape, layout.dtype, layout.chunks, _shown(p))
    return (_ZarrV2Reader(p, layout), _first_attr(attrs, _VOXEL_KEYS),
            _first_attr(attrs, _OFFSET_KEYS), attrs)


def _open_hdf5(p: str, dataset: str | None, lim: Limits):
    import h5py

    with h5py.File(p, "r") as f:
        if dataset is None:
            names = [k for k in f if isinstance(f.get(k, getlink=True), h5py.HardLink)
                     and isinstance(f[k], h5py.Dataset)]
            if len(names) != 1:
                raise Rejected(f"{_shown(p)}: name the dataset (found {names})")
            dataset = names[0]
        where = f"{_shown(p)}:{dataset}"
        ds = _h5_resolve(f, dataset, where)
        if not isinstance(ds, h5py.Dataset):
            raise Rejected(f"{where}: not a dataset (a group or other object)")
        _h5_check_storage(ds, where)
        unknown = sorted(set(_h5_filters(ds)) - _H5_FILTERS)
        if unknown:
            raise Rejected(f"{where}: HDF5 filter id(s) {unknown} are not accepted (use gzip or "
                           "lzf, optionally with shuffle)")
        lim.check_array_meta(ds.shape, ds.dtype, ds.chunks, where)
        attrs = {k: _plain(v) for k, v in ds.attrs.items()}
    return (_Hdf5Reader(p, dataset), _first_attr(attrs, _VOXEL_KEYS),
            _first_attr(attrs, _OFFSET_KEYS), attrs)


_MAX_SOFT_LINKS = 16  # HDF5's own default nesting limit for link traversal


def _h5_resolve(f, name: str, where: str, depth: int = 0):
    """The object at ``name``, every path component's link resolved by gpueval itself.

    Hard links are followed; soft links are resolved through this same function (so a soft
    link whose target passes through an external link, or a chain of soft links ending in
    one, is seen); external and user-defined links, and chains longer than
    ``_MAX_SOFT_LINKS`` (or cyclic), are refused. HDF5 never follows a link we did not
    inspect.

    Raises
    ------
    Rejected
        A component is missing, is not a group where a group is needed, or leaves the file.
    """
    import h5py

    if depth > _MAX_SOFT_LINKS:
        raise Rejected(f"{where}: more than {_MAX_SOFT_LINKS} nested soft links (a cycle?)")
    parts = [s for s in name.split("/") if s not in ("", ".")]
    node = f["/"]
    for i, part in enumerate(parts):
        if not isinstance(node, h5py.Group):
            raise Rejected(f"{where}: {'/'.join(parts[:i])!r} is not a group")
        link = node.get(part, getlink=True)
        if link is None:
            raise Rejected(f"{where}: no dataset {name!r} in the file")
        if isinstance(link, h5py.HardLink):
            node = node[part]
        elif isinstance(link, h5py.SoftLink):
            target = link.path
            if not target.startswith("/"):
                target = node.name.rstrip("/") + "/" + target
            node = _h5_resolve(f, target, where, depth + 1)
        elif isinstance(link, h5py.ExternalLink):
            raise Rejected(f"{where}: {'/'.join(parts[:i + 1])!r} is an external link to "
                           "another file; submit the data itself")
        else:
            raise Rejected(f"{where}: {'/'.join(parts[:i + 1])!r} is a user-defined link; "
                           "only plain datasets are read")
    return node


def _h5_check_storage(ds, where: str) -> None:
    """Refuse a dataset whose raw data lives outside the file (external storage, VDS)."""
    import h5py

    dcpl = ds.id.get_create_plist()
    if dcpl.get_external_count() or ds.external:
        raise Rejected(f"{where}: the dataset stores its data in external files; submit the "
                       "data inside the HDF5 file")
    if dcpl.get_layout() == h5py.h5d.VIRTUAL or ds.is_virtual:
        raise Rejected(f"{where}: a virtual dataset over other files; submit the data inside "
                       "the HDF5 file")


def load_npz_array(path: str | Path, key: str | None, *, max_voxels: int | None = None,
                   limits: Limits | None = None,
                   expect_shape: Sequence[int] | None = None,
                   on_slices: Callable[[np.ndarray, int], None] | None = None) -> np.ndarray:
    """One array of an ``.npz`` without pickles, its header checked before it is allocated.

    Parameters
    ----------
    path : the ``.npz`` file.
    key : the array (member ``<key>.npy``); ``None`` when the file holds exactly one.
    max_voxels : override of ``limits.max_voxels``.
    limits : the limits to check the header against (default: the current limits; truth
        readers pass the truth limits).
    expect_shape : the shape the array must have (e.g. the ground truth's): a header
        declaring another shape is refused before anything is allocated or inflated.
    on_slices : called as ``on_slices(arr, n)`` in the reading thread whenever more of the
        array is filled: its first ``n`` slices along axis 0 hold their data. A stored or
        deflated member (what ``np.savez``/``np.savez_compressed`` write) is decoded in one
        call and reported once, whole, as is a Fortran-order array; a bzip2/lzma member is
        reported slice by slice as it streams (C order). It must not raise: an exception
        would be reported as an unreadable file.

    Returns
    -------
    numpy.ndarray
        The array. Memory used is the checked header's ``shape × itemsize``: the zip member
        must declare exactly the header plus that many bytes. A stored or deflated member is
        read whole and inflated by libdeflate into a buffer of exactly that size
        (:func:`_read_member_whole`: ~3× zlib; a stream inflating past it, ending short of
        it, corrupt, or failing its CRC-32 is refused); other methods are inflated by
        zipfile in bounded pieces straight into the array (:func:`_read_exact`).

    Raises
    ------
    Rejected
        A missing or duplicate key, pickled objects, a header over the limits or not of
        ``expect_shape``, a member whose size disagrees with its header, corrupt data.
    """
    lim = resolve(limits)
    if max_voxels is not None:
        lim = lim.replace(max_voxels=int(max_voxels))
    path = Path(path)
    try:
        _check_regular_file(path)
        with open(path, "rb") as fp, zipfile.ZipFile(fp) as z:
            infos = z.infolist()
            lim.check_file_count(len(infos), path.name, what="members")
            names = [i.filename[:-4] for i in infos if i.filename.endswith(".npy")]
            if key is None:
                if len(names) != 1:
                    raise Rejected(f"{path.name}: name the array (found {names[:20]})")
                key = names[0]
            if key not in names:
                raise Rejected(f"{path.name}: no array {key!r} (found {names[:20]})")
            if names.count(key) > 1:
                raise Rejected(f"{path.name}: array {key!r} is stored twice")
            where = f"{path.name}:{key}"
            info = z.getinfo(key + ".npy")
            # zipfile checks the member's local header (name, flags, encryption) on open
            with z.open(info) as f:
                shape, fortran, dtype = _npy_header(f, where)
                lim.check_array_meta(shape, dtype, None, where)
                if expect_shape is not None and tuple(shape) != tuple(expect_shape):
                    raise Rejected(f"{where}: shape {tuple(shape)} declared, expected "
                                   f"{tuple(int(s) for s in expect_shape)} (the ground truth's)")
                header_bytes = f.tell()
                need = header_bytes + math.prod(shape) * dtype.itemsize
                if info.file_size != need:
                    raise Rejected(f"{where}: the member holds {info.file_size} bytes, its "
                                   f"header declares {need} (truncated or padded)")
                order = "F" if fortran else "C"
                if info.compress_type not in _WHOLE_MEMBER_METHODS or _libdeflate() is None:
                    # bzip2/lzma members: zipfile's streaming decoders, in bounded pieces
                    # straight into the array (np.load would reopen the member by name, and a
                    # duplicate name could swap in another member)
                    arr = np.empty(shape, dtype=dtype, order=order)
                    filled = None
                    if on_slices is not None and arr.ndim and arr.size and not fortran:
                        per_slice = arr.nbytes // arr.shape[0]
                        def filled(got: int) -> None:  # bytes in -> whole slices in
                            on_slices(arr, got // per_slice)
                    _read_exact(f, arr, where, filled)
                    if on_slices is not None and arr.ndim and (fortran or not arr.size):
                        on_slices(arr, arr.shape[0])
                    return arr
            member = _read_member_whole(fp, info, need, where)
        arr = _member_array(member, header_bytes, shape, dtype, order)
        if on_slices is not None and arr.ndim:
            on_slices(arr, arr.shape[0])
        return arr
    except Rejected:
        raise
    except Exception as e:
        raise Rejected(f"{path.name}: not a readable .npz ({_why(e)})") from e


#: zip methods :func:`_read_member_whole` decodes (stored, deflate); others stream
_WHOLE_MEMBER_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, …, name length, extra length
_LOCAL_SIGNATURE = b"PK\x03\x04"


def _read_member_whole(fp, info: zipfile.ZipInfo, size: int, where: str) -> np.ndarray:
    """The ``size`` bytes of a stored or deflated zip member, decoded in one call.

    The compressed bytes are read whole (``info.compress_size``, which must lie inside the
    file) and inflated by libdeflate (``imagecodecs.deflate_decode``, ~3× zlib, GIL
    released) into a buffer of exactly ``size`` bytes — the size the checked npy header
    declares, so a stream that inflates past it (a bomb) fails on the full buffer instead of
    growing one. A stream that ends short of it, corrupt data or a CRC-32 other than the
    member's (checked as zipfile checks it) is refused.

    Returns
    -------
    numpy.ndarray
        uint8, ``size`` bytes, C-contiguous and writeable.
    """
    fp.seek(info.header_offset)
    local = fp.read(_LOCAL_HEADER.size)
    if len(local) != _LOCAL_HEADER.size:
        raise Rejected(f"{where}: the member's local header lies past the end of the file")
    signature, name_len, extra_len = _LOCAL_HEADER.unpack(local)
    if signature != _LOCAL_SIGNATURE:
        raise Rejected(f"{where}: bad local zip header (not a readable .npz)")
    start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    file_size = os.fstat(fp.fileno()).st_size
    if start + info.compress_size > file_size:
        raise Rejected(f"{where}: the member's {info.compress_size} compressed bytes run past "
                       f"the end of the file ({file_size} bytes; truncated)")
    out = np.empty(size, np.uint8)
    fp.seek(start)
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != size:
            raise Rejected(f"{where}: stored member of {info.compress_size} bytes, its header "
                           f"declares {size} (truncated or padded)")
        got = fp.readinto(memoryview(out)) if size else 0
    else:
        imagecodecs = _libdeflate()
        raw = fp.read(info.compress_size)
        if len(raw) != info.compress_size:
            raise Rejected(f"{where}: truncated member ({len(raw)} of {info.compress_size} "
                           "compressed bytes)")
        try:
            got = len(imagecodecs.deflate_decode(raw, out=out, raw=True)) if size else 0
        except imagecodecs.DeflateError as e:
            why = ("inflates past its declared size" if "INSUFFICIENT_SPACE" in str(e)
                   else "corrupt deflate data")
            raise Rejected(f"{where}: data size differs from its header or is corrupt ({why}: "
                           f"{e})") from e
    if got != size:
        raise Rejected(f"{where}: data size differs from its header ({got} of {size} bytes "
                       "before the end; truncated or padded)")
    if _crc32(out) != info.CRC:
        raise Rejected(f"{where}: bad CRC-32 of the member (corrupt data)")
    return out


def _crc32(data: np.ndarray) -> int:
    """CRC-32 as zip stores it (libdeflate's, ~5× zlib's)."""
    return int(_libdeflate().deflate_crc32(data)) if data.size else 0


@functools.cache
def _libdeflate():
    """``imagecodecs`` when its libdeflate decoder takes raw streams into a given buffer
    (checked once on an empty stream), else None: the npz reader then streams through zlib.
    Imported on the npz path only."""
    try:
        import imagecodecs

        empty = imagecodecs.deflate_decode(b"\x03\x00", out=np.empty(1, np.uint8), raw=True)
        return imagecodecs if len(empty) == 0 else None
    except Exception:  # absent, or an older API
        return None


def _member_array(member: np.ndarray, offset: int, shape: tuple[int, ...], dtype: np.dtype,
                  order: str) -> np.ndarray:
    """The array in ``member`` (an npy file's bytes) past its ``offset``-byte header: a view,
    or an aligned copy when a (hand-made) header leaves the data misaligned."""
    arr = np.ndarray(shape, dtype=dtype, buffer=member, offset=offset, order=order)
    return arr if arr.flags.aligned else arr.copy(order=order)


#: bytes inflated per read of an npz member (fits the cache; see :func:`_read_exact`)
READ_PIECE_BYTES = 1 << 20


def _read_exact(f, arr: np.ndarray, where: str,
                filled: Callable[[int], None] | None = None) -> None:
    """Fill ``arr`` from ``f``; refuse a member holding fewer or more bytes than declared.
    ``filled(n)`` is told after each piece that the first ``n`` bytes are in."""
    view = memoryview(arr.reshape(-1, order="A").view(np.uint8)) if arr.size else memoryview(b"")
    got = 0
    while got < len(view):
        # 1 MiB at a time: one read of the whole member inflates into a temporary as large as
        # the array and copies it (3x slower for a 79 MB npz, and serial across threads)
        n = f.readinto(view[got:got + READ_PIECE_BYTES])
        if not n:
            break
        got += n
        if filled is not None:
            filled(got)
    if got != len(view) or f.read(1):
        raise Rejected(f"{where}: data size differs from its header ({got} of {len(view)} "
                       "bytes before the end; truncated or padded)")


def _npy_header(f, where: str):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise Rejected(f"{where}: unknown .npy format version {version}")
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise Rejected(f"{where} holds Python objects (pickles are refused)")
    return tuple(shape), bool(fortran), dtype


def _load_npy(p: Path, lim: Limits) -> np.ndarray:
    with open(p, "rb") as f:
        shape, _, dtype = _npy_header(f, p.name)
        lim.check_array_meta(shape, dtype, None, p.name)
        need = f.tell() + math.prod(shape) * dtype.itemsize
    if p.stat().st_size < need:
        raise Rejected(f"{p.name}: truncated ({p.stat().st_size} bytes, header needs {need})")
    return np.load(p, allow_pickle=False, mmap_mode="r")


# --------------------------------------------------------------------------------------------
# Hostile-input guards


def require_regular(path: str | Path, *, folder_ok: bool = True) -> None:
    """Refuse a submission path that is missing or not a regular file (or folder).

    For challenge code that dispatches on ``is_file()``/``is_dir()``: a FIFO, socket or
    device is neither, and must be reported as what it is, not as "not found".

    Raises
    ------
    Rejected
        ``"<name>: not found"`` or ``"<name>: not a regular file (a device, FIFO or socket
        is refused)"``, the name without its folder.
    """
    try:
        _check_regular_file(Path(path), folder_ok=folder_ok)
    except FileNotFoundError as e:
        raise Rejected(f"{_shown(path)}: not found") from e


def _check_regular_file(p: Path, folder_ok: bool = False) -> None:
    """A FIFO, socket or device would block or stream forever: refuse anything irregular."""
    try:
        st = p.stat()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise Rejected(f"{_shown(p)}: cannot be read ({_why(e)})") from e
    if stat.S_ISREG(st.st_mode) or (folder_ok and stat.S_ISDIR(st.st_mode)):
        return
    raise Rejected(f"{_shown(p)}: not a regular file (a device, FIFO or socket is refused)")


def _check_store_links(root: Path, lim: Limits) -> None:
    """Walk a chunk store (n5) once: no link may leave it, no special file, bounded count.

    tensorstore reads through its own file driver, so the check happens before it opens."""
    real_root = os.path.realpath(root)
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            n += 1
            if n > lim.max_files * 100:  # chunk files: far more than submission files
                raise Rejected(f"{_shown(root)}: more than {lim.max_files * 100} entries in "
                               "the store")
            full = os.path.join(dirpath, name)
            real = os.path.realpath(full)
            if os.path.islink(full) and not real.startswith(real_root + os.sep):
                raise Rejected(f"{_shown(root)}: {os.path.relpath(full, root)!r} is a link "
                               "leaving the "
                               "store")
            try:
                mode = os.stat(full).st_mode
            except OSError as e:  # dangling link
                raise Rejected(f"{_shown(root)}: {os.path.relpath(full, root)!r} cannot be read "
                               f"({e.strerror})") from e
            if name in filenames and not stat.S_ISREG(mode):
                raise Rejected(f"{_shown(root)}: {os.path.relpath(full, root)!r} is not a "
                               "regular file")


def _store_file(root: str, real_root: str, key: str, *, folders: bool = False) -> str | None:
    """The real path of ``key`` inside the zarr store at ``root`` (``real_root`` its real
    path), or ``None`` when nothing is there (zarr reads the fill value). Refuses keys that
    leave the store (``..``, absolute, links pointing outside) and anything but a regular
    file — or a folder, with ``folders`` — because a FIFO would block the read forever.
    :func:`_guarded_store` and :class:`_ZarrV2Reader` check every key through it."""
    parts = key.split("/")
    if ".." in parts or key.startswith("/") or "\\" in key or "\x00" in key:
        raise Rejected(f"{_shown(root)}: zarr key {key!r} points outside the store")
    real = os.path.realpath(os.path.join(real_root, key))
    if real != real_root and not real.startswith(real_root + os.sep):
        raise Rejected(f"{_shown(root)}: {key!r} is a link leaving the zarr store")
    try:
        mode = os.stat(real).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:  # unreadable is not absent: no silent fill value
        raise Rejected(f"{_shown(root)}: {key!r} cannot be read ({_why(e)})") from e
    if not (stat.S_ISREG(mode) or (folders and stat.S_ISDIR(mode))):
        raise Rejected(f"{_shown(root)}: {key!r} is not a regular file (a device, FIFO or "
                       "socket is refused)")
    return real


def _guarded_store(root: str):
    """A read-only zarr ``LocalStore`` that refuses keys leaving ``root`` (``..``, symlinks)
    and decodes every compressed chunk itself, through :mod:`gpueval.io.bounded`.

    The metadata documents it serves are rewritten without their compressors (zarr v2
    ``compressor``, zarr v3 bytes-to-bytes codecs) and each chunk is served already
    decompressed into at most the bytes its declared chunk shape holds, so no codec of zarr
    or numcodecs ever inflates an unbounded stream. Sharded v3 arrays keep their codecs (the
    shard index gives byte ranges of compressed inner chunks); each inner chunk is first
    decoded here under its bound, and zarr decodes only what passed.
    """
    import asyncio  # noqa: PLC0415 - ~15 ms: only zarr's async store needs it

    from zarr.core.buffer import default_buffer_prototype
    from zarr.storage import LocalStore

    class GuardedStore(LocalStore):
        def _inside(self, key: str) -> None:
            _store_file(root, self._real_root, key, folders=True)

        async def get(self, key, prototype=None, byte_range=None):
            self._inside(key)
            prototype = prototype or default_buffer_prototype()
            buf = await super().get(key, prototype, byte_range)
            if buf is None:
                return None
            leaf = key.rsplit("/", 1)[-1]
            if leaf in (".zarray", "zarr.json", ".zmetadata"):
                doc = _rewrite_meta_doc(buf.to_bytes(), leaf, f"{_shown(root)}:{key}")
                return prototype.buffer.from_bytes(doc)
            if leaf in (".zgroup", ".zattrs"):
                return buf
            plan = await self._plan(key)
            if plan is None:
                return buf
            where = f"{_shown(root)} chunk {key!r}"
            # decode off zarr's event loop, as its own codecs do (parallel across chunks)
            if plan.sharded:
                await asyncio.to_thread(_check_shard_bytes, plan, buf.to_bytes(), byte_range,
                                        where)
                return buf
            data = await asyncio.to_thread(plan.decode, buf.to_bytes(), where)
            return prototype.buffer.from_bytes(data)

        async def get_partial_values(self, prototype, key_ranges):
            key_ranges = list(key_ranges)
            return [await self.get(key, prototype, rng) for key, rng in key_ranges]

        async def exists(self, key):
            self._inside(key)
            return await super().exists(key)

        async def _plan(self, key: str):
            """The decoding plan of the array holding chunk ``key``: the *outermost* array
            above it (an array has no children, so a decoy ``zarr.json`` planted among the
            chunks of an array must not choose how that array's chunks are decoded)."""
            parts = key.split("/")[:-1]
            for n in range(len(parts) + 1):
                folder = "/".join(parts[:n])
                if folder not in self._plans:
                    self._plans[folder] = await self._read_plan(folder)
                if self._plans[folder] is not None:
                    return self._plans[folder]
            return None

        async def _read_plan(self, folder: str):
            for doc in (".zarray", "zarr.json"):
                name = f"{folder}/{doc}" if folder else doc
                self._inside(name)
                raw = await LocalStore.get(self, name, default_buffer_prototype())
                if raw is None:
                    continue
                try:
                    meta = json.loads(raw.to_bytes())
                except ValueError:
                    return None  # zarr itself refuses the document
                if doc == "zarr.json" and meta.get("node_type") != "array":
                    return None
                where = f"{_shown(root)}:{folder}" if folder else _shown(root)
                return _ChunkPlan.from_meta(meta, doc, where)
            return None

    store = GuardedStore(root, read_only=True)
    store._real_root = os.path.realpath(root)
    store._plans = {}
    return store


# zarr v3 bytes-to-bytes codecs gpueval decodes itself (names with or without "numcodecs.")
_ZARR_NO_SIZE_CHANGE = ("crc32c",)


@dataclass
class _ChunkPlan:
    """How one zarr array's chunks are decoded: ``steps`` (outermost first) are codec
    names, each decoded into at most ``bound`` bytes; the innermost into exactly
    ``nbytes`` when ``exact``."""

    steps: list[str]
    nbytes: int
    exact: bool
    sharded: bool = False
    inner_steps: list[str] = field(default_factory=list)
    inner_nbytes: int = 0
    index_bytes: int = 0
    index_at_start: bool = False

    @classmethod
    def from_meta(cls, meta: dict, doc: str, where: str) -> _ChunkPlan | None:
        if doc == ".zarray":
            dtype = _v2_dtype(meta.get("dtype"), where)
            chunks = _as_list(meta.get("chunks"), where)
            nbytes = math.prod(int(c) for c in chunks) * dtype.itemsize
            comp = meta.get("compressor")
            filters = meta.get("filters") or []
            steps = [] if comp is None else [_codec_id(comp, where)]
            # filters (Delta, AsType…) change sizes by at most 8x (an 8-byte type)
            return cls(steps, nbytes * (8 if filters else 1), exact=not filters)
        dtype = np.dtype(meta.get("data_type"))
        grid = (meta.get("chunk_grid") or {}).get("configuration") or {}
        chunk = _as_list(grid.get("chunk_shape"), where)
        nbytes = math.prod(int(c) for c in chunk) * dtype.itemsize
        codecs = meta.get("codecs") or []
        shard = next((c for c in codecs if isinstance(c, dict)
                      and c.get("name") == "sharding_indexed"), None)
        if shard is None:
            return cls(_v3_bytes_codecs(codecs, where), nbytes, exact=True)
        conf = shard.get("configuration") or {}
        inner = _as_list(conf.get("chunk_shape"), where)
        count = math.prod(-(-int(c) // max(int(i), 1)) for c, i in zip(chunk, inner,
                                                                        strict=False))
        crc = any(isinstance(c, dict) and c.get("name") == "crc32c"
                  for c in conf.get("index_codecs") or [])
        return cls([], nbytes, exact=False, sharded=True,
                   inner_steps=_v3_bytes_codecs(conf.get("codecs") or [], where),
                   inner_nbytes=math.prod(int(i) for i in inner) * dtype.itemsize,
                   index_bytes=16 * count + (4 if crc else 0),
                   index_at_start=conf.get("index_location") == "start")

    def decode(self, data: bytes, where: str, steps: list[str] | None = None,
               nbytes: int | None = None, *, out: Any = None) -> bytes | memoryview:
        """Undo ``steps`` (default: the plan's) on one stored chunk, each under its bound.

        With ``out`` (a writable C-contiguous buffer of exactly ``nbytes``, an exact plan),
        the innermost step decodes straight into it and a byte view of ``out`` is returned;
        a chunk stored raw (no step) is checked and copied in.
        """
        steps = self.steps if steps is None else steps
        nbytes = self.nbytes if nbytes is None else nbytes
        placed = False  # whether ``data`` already lies in ``out``
        for i, step in enumerate(steps):
            last = i == len(steps) - 1
            if step == "crc32c":
                if len(data) < 4:
                    raise Rejected(f"{where}: truncated crc32c chunk")
                data = data[:-4]  # a checksum; verifying it is no part of a size bound
                continue
            # an outer layer holds compressed bytes: never more than the chunk plus overhead
            bound = nbytes if last else nbytes + nbytes // 8 + 4096
            data = decode(step, data, bound, where, exact=last and self.exact,
                          out=out if last else None)
            placed = last and out is not None
        if self.exact and not self.sharded and len(data) != nbytes:
            raise Rejected(f"{where}: holds {len(data)} bytes, its chunk shape needs {nbytes} "
                           "(corrupt chunk)")
        if out is not None and not placed:  # stored raw (or only a checksum): one copy
            view = byte_view(out, nbytes)
            if len(data) > nbytes:
                raise Rejected(f"{where}: holds {len(data)} bytes, more than the {nbytes} "
                               "its chunk shape allows (corrupt chunk)")
            view[:len(data)] = data
            return view[:len(data)]
        return data


def _codec_id(conf: Any, where: str) -> str:
    """``gzip``/``zstd``/``crc32c``… from a numcodecs config or a zarr v3 codec entry."""
    if not isinstance(conf, dict):
        raise Rejected(f"{where}: codec {conf!r} is not an object")
    name = str(conf.get("id") or conf.get("name") or "")
    name = name.removeprefix("numcodecs.")
    if name in _ZARR_NO_SIZE_CHANGE:
        return name
    canon = codec_name(name)
    if canon is None:
        raise Rejected(f"{where}: compression {name!r} is not accepted (use gzip, zlib, zstd, "
                       "blosc, lz4, lzf, bz2 or lzma)")
    return canon


def _v3_bytes_codecs(codecs: list, where: str) -> list[str]:
    """The bytes-to-bytes codecs after the array-to-bytes one, outermost first."""
    names = [c.get("name") if isinstance(c, dict) else c for c in codecs]
    if "bytes" not in names:
        return []
    after = codecs[names.index("bytes") + 1:]
    return [_codec_id(c, where) for c in reversed(after)]


def _rewrite_meta_doc(raw: bytes, leaf: str, where: str) -> bytes:
    """The document zarr sees: compressors removed (the store serves decoded chunks)."""
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return raw  # zarr refuses it with its own message
    if not isinstance(meta, dict):
        return raw
    if leaf == ".zarray":
        _strip_v2(meta, where)
    elif leaf == ".zmetadata":
        for name, sub in (meta.get("metadata") or {}).items():
            if str(name).endswith(".zarray") and isinstance(sub, dict):
                _strip_v2(sub, where)
    else:
        _strip_v3(meta, where)
        consolidated = meta.get("consolidated_metadata")
        if isinstance(consolidated, dict) and isinstance(consolidated.get("metadata"), dict):
            for sub in consolidated["metadata"].values():
                if isinstance(sub, dict):
                    _strip_v3(sub, where)
    return json.dumps(meta).encode()


def _strip_v2(meta: dict, where: str) -> None:
    if meta.get("compressor") is not None:
        _codec_id(meta["compressor"], where)  # refuse what gpueval cannot bound
        meta["compressor"] = None


def _strip_v3(meta: dict, where: str) -> None:
    if meta.get("node_type") != "array":
        return
    codecs = meta.get("codecs") or []
    names = [c.get("name") if isinstance(c, dict) else c for c in codecs]
    if "sharding_indexed" in names or "bytes" not in names:
        return
    _v3_bytes_codecs(codecs, where)  # refuse what gpueval cannot bound
    meta["codecs"] = codecs[:names.index("bytes") + 1]


def _check_shard_bytes(plan: _ChunkPlan, data: bytes, byte_range, where: str) -> None:
    """Decode (bounded, then drop) every inner chunk of a shard read before zarr decodes it."""
    from zarr.abc.store import RangeByteRequest, SuffixByteRequest

    if isinstance(byte_range, SuffixByteRequest) or (
            isinstance(byte_range, RangeByteRequest) and plan.index_at_start
            and byte_range.start == 0 and byte_range.end == plan.index_bytes):
        return  # the shard index: fixed size, not compressed data
    if isinstance(byte_range, RangeByteRequest):
        if data:
            plan.decode(data, where, plan.inner_steps, plan.inner_nbytes)
        return
    if byte_range is not None or len(data) < plan.index_bytes:
        plan.decode(data, where, plan.inner_steps, plan.inner_nbytes)
        return
    index = data[:plan.index_bytes] if plan.index_at_start else data[-plan.index_bytes:]
    count = plan.index_bytes // 16
    table = np.frombuffer(index[:16 * count], "<u8").reshape(count, 2)
    for offset, length in table:
        if offset == 2**64 - 1:
            continue  # an empty inner chunk
        if offset + length > len(data):
            raise Rejected(f"{where}: shard index points past the end of the shard")
        plan.decode(data[int(offset):int(offset + length)], where, plan.inner_steps,
                    plan.inner_nbytes)


def _check_zarr_metadata(root: Path, key: str, lim: Limits) -> None:
    """Size-check and pre-parse the metadata documents on the way from ``root`` to ``key``."""
    parts = [s for s in key.split("/") if s]
    if any(s in ("..", ".") for s in parts) or key.startswith("/"):
        raise Rejected(f"{_shown(root)}: array path {key!r} points outside the store")
    real_root = os.path.realpath(root)
    if not any((root / doc).exists() or (root / doc).is_symlink()
               for doc in (".zarray", ".zgroup", "zarr.json")):
        raise Rejected(f"{_shown(root)}: no zarr metadata (.zarray, .zgroup or zarr.json) at "
                       "the top of "
                       "the folder; not a zarr store")
    folder = root
    for depth in range(len(parts) + 1):
        if depth:
            folder = folder / parts[depth - 1]
        for doc in _ZARR_DOCS + ((".zmetadata",) if depth == 0 else ()):
            meta = _read_meta_doc(folder / doc, real_root, lim)
            if meta is None:
                continue
            where = f"{_shown(root)}:{key}" if key else _shown(root)
            _check_meta_doc(meta, doc, where, lim)


def _read_meta_doc(path: Path, real_root: str, lim: Limits) -> dict | None:
    try:
        st = path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    real = os.path.realpath(path)
    if not real.startswith(real_root + os.sep):
        raise Rejected(f"{_shown(path)}: zarr metadata is a link leaving the store")
    if not stat.S_ISREG(os.stat(real).st_mode):
        raise Rejected(f"{_shown(path)}: zarr metadata is not a regular file")
    if max(st.st_size, os.stat(real).st_size) > lim.max_metadata_bytes:
        raise Rejected(f"{path.name}: zarr metadata of {os.stat(real).st_size} bytes, over the "
                       f"limit {lim.max_metadata_bytes}")
    try:
        meta = json.loads(Path(real).read_bytes())
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise Rejected(f"{_shown(path)}: zarr metadata is not valid JSON ({_why(e)})") from e
    if not isinstance(meta, dict):
        raise Rejected(f"{_shown(path)}: zarr metadata must be a JSON object")
    return meta


def _check_meta_doc(meta: dict, doc: str, where: str, lim: Limits) -> None:
    if doc == ".zarray":
        _check_v2_array(meta, where, lim)
    elif doc == "zarr.json" and meta.get("node_type") == "array":
        _check_v3_array(meta, where, lim)
    elif doc == ".zmetadata":
        entries = meta.get("metadata")
        if not isinstance(entries, dict):
            raise Rejected(f"{where}: consolidated .zmetadata without a 'metadata' mapping")
        lim.check_file_count(len(entries), where, what="consolidated metadata entries")
        for name, sub in entries.items():
            if str(name).endswith(".zarray") and isinstance(sub, dict):
                _check_v2_array(sub, f"{where} (.zmetadata {name})", lim)
    if doc == "zarr.json":
        consolidated = meta.get("consolidated_metadata")
        if isinstance(consolidated, dict) and isinstance(consolidated.get("metadata"), dict):
            entries = consolidated["metadata"]
            lim.check_file_count(len(entries), where, what="consolidated metadata entries")
            for name, sub in entries.items():
                if isinstance(sub, dict) and sub.get("node_type") == "array":
                    _check_v3_array(sub, f"{where} (consolidated {name})", lim)


def _check_v2_array(meta: dict, where: str, lim: Limits) -> None:
    sep = meta.get("dimension_separator", ".")
    if sep not in (None, ".", "/"):
        raise Rejected(f"{where}: dimension_separator {sep!r} is not '.' or '/' (chunk keys "
                       "must stay inside the store)")
    if "shape" not in meta or "chunks" not in meta or "dtype" not in meta:
        raise Rejected(f"{where}: .zarray lacks shape, chunks or dtype")
    lim.check_array_meta(_as_list(meta["shape"], where), _v2_dtype(meta["dtype"], where),
                         _as_list(meta["chunks"], where), where)


def _check_v3_array(meta: dict, where: str, lim: Limits) -> None:
    cke = meta.get("chunk_key_encoding") or {}
    if not isinstance(cke, dict):
        raise Rejected(f"{where}: chunk_key_encoding must be an object")
    if cke.get("name", "default") not in ("default", "v2"):
        raise Rejected(f"{where}: unknown chunk_key_encoding {cke.get('name')!r}")
    sep = (cke.get("configuration") or {}).get("separator", "/")
    if sep not in (".", "/"):
        raise Rejected(f"{where}: chunk_key_encoding separator {sep!r} is not '.' or '/' "
                       "(chunk keys must stay inside the store)")
    if meta.get("storage_transformers"):
        raise Rejected(f"{where}: storage transformers are not accepted")
    if "shape" not in meta or "data_type" not in meta:
        raise Rejected(f"{where}: zarr.json lacks shape or data_type")
    grid = meta.get("chunk_grid") or {}
    chunk = ((grid.get("configuration") or {}).get("chunk_shape")
             if isinstance(grid, dict) else None)
    if chunk is None:
        raise Rejected(f"{where}: zarr.json lacks a regular chunk_grid chunk_shape")
    dtype = meta["data_type"]
    if not isinstance(dtype, str):
        raise Rejected(f"{where}: data_type {dtype!r} is not a plain number type")
    shape = _as_list(meta["shape"], where)
    lim.check_array_meta(shape, dtype, _as_list(chunk, where), where)
    for codec in meta.get("codecs") or []:
        if isinstance(codec, dict) and codec.get("name") == "sharding_indexed":
            inner = (codec.get("configuration") or {}).get("chunk_shape")
            if inner is not None:
                lim.check_array_meta(shape, dtype, _as_list(inner, where), where)


def _as_list(v, where: str) -> list:
    if not isinstance(v, list | tuple):
        raise Rejected(f"{where}: expected a list of integers, got {v!r}")
    return list(v)


def _v2_dtype(d, where: str) -> np.dtype:
    if not isinstance(d, str):
        raise Rejected(f"{where}: dtype {d!r} is not a plain number type")
    try:
        return np.dtype(d)
    except (TypeError, ValueError) as e:
        raise Rejected(f"{where}: unreadable dtype {d!r}") from e


def _check_tiff(tif, p: Path, lim: Limits) -> None:
    """Pages counted, strips/tiles inside the file, and no strip larger than the limit."""
    size = p.stat().st_size
    pages = tif.pages
    n = 0
    for page in pages:
        n += 1
        lim.check_file_count(n, p.name, what="TIFF pages")
        if not hasattr(page, "dataoffsets"):
            continue
        if int(getattr(page, "compression", 1)) in _tiff_image_codecs():
            # JPEG, PNG, WebP… tiles are decoded to whatever size their own header declares
            # (tifffile gives them no output bound); lossy codecs are no format for labels
            raise Rejected(f"{p.name}: page {n - 1} uses image compression "
                           f"{_tiff_codec_name(page)}; use none, LZW, deflate, zstd or "
                           "packbits")
        grid = math.prod(getattr(page, "chunked", None) or (1,))
        if len(page.dataoffsets) < grid:  # tifffile would read the missing strips as zeros
            raise Rejected(f"{p.name}: page {n - 1} declares {grid} strips/tiles but stores "
                           f"{len(page.dataoffsets)} (corrupt or truncated TIFF)")
        for off, cnt in zip(page.dataoffsets, page.databytecounts, strict=False):
            if cnt and (off < 0 or off + cnt > size):
                raise Rejected(f"{p.name}: truncated TIFF (page {n - 1} data at {off}+{cnt} "
                               f"bytes, file has {size})")
        chunk = tuple(getattr(page, "chunks", None) or page.shape)
        lim.check_array_meta(page.shape, page.dtype, chunk if len(chunk) == len(page.shape)
                             else None, f"{p.name} page {n - 1}")
    if n == 0:
        raise Rejected(f"{p.name}: TIFF without pages")


_SHOWN_ROOT: contextvars.ContextVar[str | None] = contextvars.ContextVar("gpueval_shown_root",
                                                                       default=None)
_ABS_PATH = re.compile(r"(?<![\w.])(?:/[^\s'\"/:,()]+)+/([^\s'\"/:,()]*)")


@contextlib.contextmanager
def shown_relative_to(root: str | Path | None) -> Iterator[None]:
    """Inside the block, messages name files relative to ``root`` (the submission folder or
    the folder an archive was extracted to) instead of by their last component only.

    Readers never put a server path or a temporary folder in a :class:`Rejected`: without a
    root, a file is named by its last path component.
    """
    token = _SHOWN_ROOT.set(None if root is None else os.path.abspath(root))
    try:
        yield
    finally:
        _SHOWN_ROOT.reset(token)


def _shown(path: str | Path) -> str:
    """``path`` as a participant may see it: relative to :func:`shown_relative_to`'s root
    when inside it, else its last component (never a server or temporary folder)."""
    text = os.fspath(path)
    if text.startswith("ts:"):
        driver, _, rest = text[3:].partition(":")
        return f"ts:{driver}:{_shown(rest)}"
    full = os.path.abspath(text)
    root = _SHOWN_ROOT.get()
    if root is not None and (full == root or full.startswith(root.rstrip(os.sep) + os.sep)):
        rel = os.path.relpath(full, root)
        return Path(root).name if rel == "." else rel
    return os.path.basename(full.rstrip(os.sep)) or text


@functools.cache
def _tiff_image_codecs() -> frozenset[int]:
    """TIFF compressions that hold an image codec (JPEG, WebP…), asked of tifffile on first
    use: importing tifffile at module import cost every challenge 15–35 ms of start-up."""
    try:
        import tifffile

        return frozenset(int(c) for c in tifffile.TIFF.IMAGE_COMPRESSIONS)
    except Exception:  # pragma: no cover - older tifffile: the usual image codecs
        return frozenset({6, 7, 33003, 33004, 33005, 33007, 34712, 34892, 34933, 34934,
                          50001, 50002, 52546})



def _tiff_codec_name(page) -> str:
    comp = getattr(page, "compression", None)
    return getattr(comp, "name", str(comp))


def _why(e: BaseException) -> str:
    msg = str(e).splitlines()[0][:300] if str(e) else ""
    msg = _ABS_PATH.sub(r"\1", msg)  # a library's message may quote the server path
    if isinstance(e, MemoryError):
        return "declares more data than memory allows (MemoryError)"
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _show(key) -> str:
    if isinstance(key, tuple):
        return "[" + ", ".join(_show(k) for k in key) + "]"
    if isinstance(key, slice):
        return f"{key.start or 0}:{'' if key.stop is None else key.stop}"
    return str(key)


def _expected_shape(key, shape) -> tuple[int, ...] | None:
    if not isinstance(key, tuple):
        key = (key,)
    if len(key) != len(shape) or not all(isinstance(k, slice) for k in key):
        return None
    out = []
    for k, n in zip(key, shape, strict=True):
        start, stop, step = k.indices(n)
        out.append(len(range(start, stop, step)))
    return tuple(out)


def _ngff_multiscales(attrs: dict) -> list | None:
    ms = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    return ms if isinstance(ms, list) and ms else None


def _ngff_level(ms: list, level: str | None):
    datasets = ms[0].get("datasets") or []
    if not datasets:
        raise Rejected("OME-NGFF multiscales without datasets")
    chosen = next((d for d in datasets if d.get("path") == level), None) if level else datasets[0]
    if chosen is None:
        raise Rejected(f"OME-NGFF level {level!r} not found")
    scale, trans = None, None
    for t in chosen.get("coordinateTransformations") or []:
        if t.get("type") == "scale":
            scale = t.get("scale")
        elif t.get("type") == "translation":
            trans = t.get("translation")
    return chosen["path"], scale, trans


def _first_attr(attrs: dict, keys: tuple[str, ...]):
    for k in keys:
        if k in attrs and attrs[k] is not None:
            return attrs[k]
    return None


def _plain(v):
    return v.tolist() if isinstance(v, np.ndarray) else v


def _vector(v, ndim: int, default: float, p: str, what: str) -> tuple[float, ...]:
    if v is None:
        return (default,) * ndim
    try:
        vals = [float(x) for x in (v if isinstance(v, list | tuple) else [v] * ndim)]
    except (TypeError, ValueError) as e:
        raise Rejected(f"{_shown(p)}: {what} {v!r} is not a list of numbers") from e
    if len(vals) > ndim:  # e.g. a channel axis in front: keep the spatial tail
        vals = vals[-ndim:]
    if len(vals) != ndim:
        raise Rejected(f"{_shown(p)}: {what} {vals} has {len(vals)} entries for a {ndim}-D array")
    return tuple(vals)


def _block_chunks(shape, storage, itemsize: int) -> tuple[int, ...]:
    """Whole storage chunks, doubled along the last axes first until ~TARGET_BLOCK_BYTES."""
    block = [max(1, min(int(c), int(s))) for c, s in zip(storage, shape, strict=True)]
    while True:
        grew = False
        for ax in reversed(range(len(block))):
            if block[ax] < shape[ax] and np.prod(block) * itemsize * 2 <= TARGET_BLOCK_BYTES:
                block[ax] = min(block[ax] * 2, shape[ax])
                grew = True
        if not grew:
            return tuple(block)


def _token(reader: _Reader) -> str:
    from dask.base import tokenize

    return tokenize(reader.kind, reader.path, reader.dataset, reader.shape, str(reader.dtype))
