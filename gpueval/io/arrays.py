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
"""

from __future__ import annotations

import os
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from gpueval.errors import Rejected

DEFAULT_MAX_VOXELS = 10**13
TARGET_BLOCK_BYTES = 64 * 2**20
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".gif")
TIFF_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_VOXEL_KEYS = ("voxel_size", "resolution", "scale")
_OFFSET_KEYS = ("translation", "offset")


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


def open_volume(
    path: str | Path,
    dataset: str | None = None,
    *,
    chunks: Any = None,
    max_voxels: int = DEFAULT_MAX_VOXELS,
) -> Volume:
    """Open ``path`` (and ``dataset`` inside it) lazily.

    Parameters
    ----------
    path : file or folder; see the module table for the formats.
    dataset : array inside a container (zarr group path, HDF5 dataset, npz key, NGFF level).
    chunks : dask chunks; default whole storage chunks grouped to ~64 MiB blocks.
    max_voxels : refuse larger declared shapes before allocating anything.

    Raises
    ------
    Rejected
        Unreadable, corrupt or absurd input (the message names the file).
    """
    p = str(path)
    try:
        reader, voxel_size, offset, attrs = _open_reader(p, dataset)
    except Rejected:
        raise
    except FileNotFoundError as e:
        raise Rejected(f"{p}: not found ({e})") from e
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise Rejected(f"{p}: cannot be opened as an array ({type(e).__name__}: {e})") from e
    _check_shape(reader.shape, reader.dtype, max_voxels, p)
    ndim = len(reader.shape)
    voxel_size = _vector(voxel_size, ndim, 1.0, p, "voxel size")
    offset = _vector(offset, ndim, 0.0, p, "offset")
    if any(v <= 0 or not np.isfinite(v) for v in voxel_size):
        raise Rejected(f"{p}: voxel size {voxel_size} must be positive and finite")
    blocks = chunks or _block_chunks(reader.shape, reader.storage_chunks, reader.dtype.itemsize)
    data = da.from_array(reader, chunks=blocks, asarray=False, lock=False, fancy=False,
                         inline_array=True, name=f"read-{_token(reader)}",
                         meta=np.empty((0,) * ndim, reader.dtype))
    return Volume(data, voxel_size, offset, p, attrs)


def read_image(path: str | Path) -> np.ndarray:
    """Decode a small 2-D image file (PNG/BMP/JPEG/TIFF) whole, as stored (no colour mixing)."""
    p = Path(path)
    try:
        if p.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            return tifffile.imread(p)
        from PIL import Image

        with Image.open(p) as im:
            return np.asarray(im)
    except (OSError, ValueError, SyntaxError) as e:
        raise Rejected(f"{p.name}: not a readable image ({e})") from e


# --------------------------------------------------------------------------------------------
# Readers: picklable array-likes that (re)open their file lazily in each process.


class _Reader:
    """``shape``/``dtype``/``__getitem__`` over one stored array, reopened after pickling."""

    kind = ""

    def __init__(self, path: str, dataset: str | None):
        self.path, self.dataset = path, dataset
        self._local = threading.local()
        arr = self._array()
        self.shape = tuple(int(s) for s in arr.shape)
        self.dtype = np.dtype(arr.dtype)
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
            return np.asarray(self._array()[key])
        except Exception as e:  # a corrupt chunk must name itself, not crash a worker
            raise Rejected(f"{self.path}: cannot read block {key}: {type(e).__name__}: {e}") from e

    def _storage_chunks(self, arr) -> tuple[int, ...]:
        return tuple(getattr(arr, "chunks", None) or self.shape)

    def _open(self):
        raise NotImplementedError


class _ZarrReader(_Reader):
    kind = "zarr"

    def _open(self):
        import zarr

        node = zarr.open(self.path, mode="r")
        return node[self.dataset] if self.dataset else node


class _Hdf5Reader(_Reader):
    kind = "hdf5"

    def _open(self):
        import h5py

        self._local.file = h5py.File(self.path, "r")
        return self._local.file[self.dataset]


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

    def __getitem__(self, key):
        try:
            return np.asarray(self._array()[key].read().result())
        except Exception as e:
            raise Rejected(f"{self.path}: cannot read block {key}: {e}") from e


class _MemoryReader(_Reader):
    """Small formats decoded whole (npz members, PNG/BMP): an in-memory array."""

    kind = "memory"

    def __init__(self, path: str, dataset: str | None, array: np.ndarray):
        self._arr = array
        super().__init__(path, dataset)

    def _open(self):
        return self._arr


# --------------------------------------------------------------------------------------------


def _open_reader(p: str, dataset: str | None):
    low = p.lower().rstrip("/")
    if p.startswith("ts:"):
        r = _TensorstoreReader(p[3:], None)
        return r, None, None, {}
    if low.endswith(".n5"):
        r = _TensorstoreReader(f"n5:{p}", None)
        return r, None, None, {}
    if low.endswith(HDF5_SUFFIXES):
        return _open_hdf5(p, dataset)
    if low.endswith(TIFF_SUFFIXES):
        return _TiffReader(p, None), None, None, {}
    if low.endswith(IMAGE_SUFFIXES):
        return _MemoryReader(p, None, read_image(p)), None, None, {}
    if low.endswith(".npz"):
        return _MemoryReader(p, dataset, load_npz_array(p, dataset)), None, None, {}
    if low.endswith(".npy"):
        return _MemoryReader(p, None, np.load(p, allow_pickle=False, mmap_mode="r")), None, None, {}
    if Path(p).is_dir():
        return _open_zarr(p, dataset)
    raise Rejected(f"{p}: unknown array format (expected zarr, n5, HDF5, TIFF, image or npz)")


def _open_zarr(p: str, dataset: str | None):
    import zarr

    node = zarr.open(p, mode="r")
    voxel, offset = None, None
    if isinstance(node, zarr.Group):
        ngff = _ngff_multiscales(dict(node.attrs))
        if ngff is not None:
            level, voxel, offset = _ngff_level(ngff, dataset)
            dataset = level
        elif dataset is None:
            raise Rejected(f"{p} is a zarr group: name the array inside it")
        if dataset not in node:
            raise Rejected(f"{p}: no array {dataset!r} in the group")
        arr = node[dataset]
    else:
        arr = node
    attrs = dict(arr.attrs)
    voxel = voxel if voxel is not None else _first_attr(attrs, _VOXEL_KEYS)
    offset = offset if offset is not None else _first_attr(attrs, _OFFSET_KEYS)
    return _ZarrReader(p, dataset), voxel, offset, attrs


def _open_hdf5(p: str, dataset: str | None):
    import h5py

    with h5py.File(p, "r") as f:
        if dataset is None:
            names = [k for k in f if isinstance(f[k], h5py.Dataset)]
            if len(names) != 1:
                raise Rejected(f"{p}: name the dataset (found {names})")
            dataset = names[0]
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            raise Rejected(f"{p}: no dataset {dataset!r}")
        attrs = {k: _plain(v) for k, v in f[dataset].attrs.items()}
    return (_Hdf5Reader(p, dataset), _first_attr(attrs, _VOXEL_KEYS),
            _first_attr(attrs, _OFFSET_KEYS), attrs)


def load_npz_array(path: str | Path, key: str | None, *, max_voxels: int = DEFAULT_MAX_VOXELS
                   ) -> np.ndarray:
    """One array of an ``.npz`` without pickles, its header checked before it is allocated."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
            if key is None:
                if len(names) != 1:
                    raise Rejected(f"{path.name}: name the array (found {names})")
                key = names[0]
            if key not in names:
                raise Rejected(f"{path.name}: no array {key!r} (found {names})")
            with z.open(key + ".npy") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(f)
            _check_shape(shape, dtype, max_voxels, f"{path.name}:{key}")
            if dtype.hasobject:
                raise Rejected(f"{path.name}:{key} holds Python objects (pickles are refused)")
        with np.load(path, allow_pickle=False) as npz:
            return npz[key]
    except Rejected:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise Rejected(f"{path.name}: not a readable .npz ({e})") from e


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
        raise Rejected(f"{p}: {what} {v!r} is not a list of numbers") from e
    if len(vals) > ndim:  # e.g. a channel axis in front: keep the spatial tail
        vals = vals[-ndim:]
    if len(vals) != ndim:
        raise Rejected(f"{p}: {what} {vals} has {len(vals)} entries for a {ndim}-D array")
    return tuple(vals)


def _check_shape(shape, dtype, max_voxels: int, p: str) -> None:
    if any(int(s) < 0 for s in shape):
        raise Rejected(f"{p}: negative dimension in shape {tuple(shape)}")
    n = float(np.prod([float(s) for s in shape])) if len(shape) else 1.0
    if n > max_voxels:
        raise Rejected(f"{p}: declared shape {tuple(shape)} has {n:.3g} voxels, over the "
                       f"limit {max_voxels:.3g}")
    if np.dtype(dtype).kind not in "biuf":
        raise Rejected(f"{p}: dtype {np.dtype(dtype)} is not a number type")


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
