"""Limits on untrusted submissions, checked before anything is allocated or read.

Every reader (:mod:`gpueval.io.arrays`, :mod:`gpueval.io.archive`) and every challenge checks
what a submission *declares* — shapes, dtypes, chunk sizes, member counts, uncompressed sizes —
against one :class:`Limits` before it allocates or inflates anything, so an upload declaring
10¹⁸ voxels, a 10¹²-voxel chunk or a 10⁶× zip bomb is a one-line
:class:`~gpueval.errors.Rejected` (exit 3, ``status: "rejected"``), never a ``MemoryError``,
a hang or a traceback.

Configuration
-------------
A challenge YAML may hold an optional ``limits:`` mapping; every key is optional and falls back
to the default below. ``--set limits.max_voxels=1e9`` overrides one key from the command line.
Numbers may be written ``1e12`` or ``2**30``-free plain integers; sizes are in bytes.

==========================  ==================  =============================================
key                         default             meaning
==========================  ==================  =============================================
``max_voxels``              ``1e13``            declared elements of one array (all axes)
``max_bytes``               ``2**40`` (1 TiB)   declared uncompressed bytes of one array
``max_archive_bytes``       ``64 GiB``          sum of an archive's uncompressed member sizes
``max_chunk_bytes``         ``2 GiB``           one stored chunk / shard / strip / tile
``max_chunks``              ``1e8``             chunks in an array's grid (a 10⁹-voxel array
                                                of 1-voxel chunks would take hours to read)
``max_files``               ``100000``          files in a submission folder or members of an
                                                archive (also TIFF pages, npz members)
``max_labels``              ``2**24``           distinct labels / instances in one array
``max_ndim``                ``8``               axes of one array
``max_metadata_bytes``      ``1 MiB``           one zarr metadata document (.zarray, zarr.json)
``max_compression_ratio``   ``1000``            archive member uncompressed/compressed (> 1 MiB)
``allow_nested_archives``   ``false``           accept ``.zip``/``.tar``/… members in a zip
``allowed_dtypes``          bool, (u)int8–64,   element types a submission may use
                            float16/32/64
``threads``                 ``0`` (one per      threads of the in-process scheduler; peak
                            core)               memory is a few chunks per thread, so cap it
                                                on many-core hosts with little memory
``gpu_memory_bytes``        ``0`` (no cap)      CuPy memory-pool cap with ``--device gpu``: a
                                                kernel asking for more raises
                                                ``OutOfMemoryError`` instead of taking the card
``min_voxel_size``          ``1e-3``            smallest declared voxel size (world units, nm
                                                for CellMap): ``io.align.check_geometry``,
                                                the one geometry rule (CellMap's config sets
                                                0.1, see ``configs/cellmap.yaml``)
``max_voxel_size``          ``1e6``             largest declared voxel size (1 mm in nm;
                                                CellMap 1e5)
``max_abs_translation``     ``1e12``            largest declared |translation| (1 km in nm;
                                                CellMap 1e9)
``max_voxel_size_ratio``    ``256``             largest ratio, either way, of a declared voxel
                                                size to the grid it is resampled onto
``max_graph_tasks``         ``1e7``             tasks of one Dask graph, checked by
                                                ``engine.compute`` before it runs (the
                                                scheduler alone needs hours for 10⁷)
``max_pickle_items``        ``1e8``             elements a truth pickle may build, counted
                                                as it builds (``io.safe_pickle``: shared
                                                references count each time, strings one per
                                                8 bytes), and values a skeleton npz declares
``max_pickle_depth``        ``1000``            nesting of containers in a truth pickle
==========================  ==================  =============================================

Example (``configs/<challenge>.yaml``)::

    limits:
      max_voxels: 1.0e+11
      max_labels: 1000000
      allowed_dtypes: [uint8, uint16, uint32, uint64, int32, int64]

Readers pick up the limits active in the current context (:func:`use_limits`, set once per
scoring call) unless given ``limits=`` explicitly; the defaults apply otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpueval import bounds
from gpueval.errors import Rejected, TruthError

DEFAULT_DTYPES: tuple[str, ...] = (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
)


@dataclass(frozen=True)
class Limits:
    """Limits on what one submission may declare; see the module docstring for each key."""

    max_voxels: int = 10**13
    max_bytes: int = 2**40
    max_archive_bytes: int = 64 * 2**30
    max_chunk_bytes: int = 2 * 2**30
    max_chunks: int = 10**8
    max_files: int = 100_000
    max_labels: int = 2**24
    max_ndim: int = 8
    max_metadata_bytes: int = 2**20
    max_compression_ratio: float = 1000.0
    allow_nested_archives: bool = False
    allowed_dtypes: tuple[str, ...] = DEFAULT_DTYPES
    threads: int = 0
    gpu_memory_bytes: int = 0
    min_voxel_size: float = 1e-3
    max_voxel_size: float = 1e6
    max_abs_translation: float = 1e12
    max_voxel_size_ratio: float = 256.0
    max_graph_tasks: int = 10**7
    max_pickle_items: int = 10**8
    max_pickle_depth: int = 1000

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Limits:
        """Defaults overridden by the optional ``limits:`` mapping of a challenge config.

        Keys not named in the module docstring are left to the challenge module (several
        challenges keep their own extra limits in the same mapping).

        Raises
        ------
        TruthError
            A value of the wrong kind (the configuration is unusable).
        """
        raw = (cfg or {}).get("limits") if isinstance(cfg, Mapping) else None
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise TruthError(f"config 'limits' must be a mapping, got {type(raw).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key in fields:  # other keys belong to the challenge (e.g. urisc max_member_bytes)
                values[key] = _coerce(key, value, cls.__dataclass_fields__[key].default)
        return cls(**values)

    def replace(self, **changes: Any) -> Limits:
        return dataclasses.replace(self, **changes)

    # -- checks -----------------------------------------------------------------------------

    def check_array_meta(self, shape: Sequence[Any], dtype: Any,
                         chunks: Sequence[Any] | None = None, where: str = "array") -> None:
        """Check a declared shape, dtype and chunk shape before anything is allocated.

        Parameters
        ----------
        shape : declared shape (any sequence of integer-likes; checked to be integers ≥ 0).
        dtype : declared element type (anything :class:`numpy.dtype` accepts).
        chunks : declared storage chunk (or shard/strip/tile) shape, if any.
        where : the file (and array) named in the message.

        Raises
        ------
        Rejected
            Negative or non-integer dimensions, too many axes, too many voxels or bytes, a
            dtype outside :attr:`allowed_dtypes`, a chunk over :attr:`max_chunk_bytes`, more
            than :attr:`max_chunks` chunks.
        """
        dims = _dims(shape, where, "shape")
        if len(dims) > self.max_ndim:
            raise Rejected(f"{where}: {len(dims)} axes, more than the limit {self.max_ndim}")
        dt = self.check_dtype(dtype, where)
        n = math.prod(dims)
        if n > self.max_voxels:
            raise Rejected(f"{where}: declared shape {tuple(dims)} has {float(n):.3g} voxels, "
                           f"over the limit {float(self.max_voxels):.3g}")
        self.check_bytes(n * dt.itemsize, where, what="declared array size")
        if chunks is None:
            return
        cdims = _dims(chunks, where, "chunk shape")
        if len(cdims) != len(dims):
            raise Rejected(f"{where}: chunk shape {tuple(cdims)} does not match the "
                           f"{len(dims)}-D shape {tuple(dims)}")
        if any(c == 0 for c in cdims) and n:
            raise Rejected(f"{where}: chunk shape {tuple(cdims)} has a zero-length axis")
        cbytes = math.prod(cdims) * dt.itemsize
        if cbytes > self.max_chunk_bytes:
            raise Rejected(f"{where}: one chunk of shape {tuple(cdims)} is {float(cbytes):.3g} "
                           f"bytes, over the limit {float(self.max_chunk_bytes):.3g}")
        count = math.prod(-(-s // c) for s, c in zip(dims, cdims, strict=True) if c) if n else 0
        if count > self.max_chunks:
            raise Rejected(f"{where}: chunk shape {tuple(cdims)} splits {tuple(dims)} into "
                           f"{float(count):.3g} chunks, over the limit "
                           f"{float(self.max_chunks):.3g}")

    def check_dtype(self, dtype: Any, where: str = "array") -> np.dtype:
        """The dtype as :class:`numpy.dtype` if allowed; :class:`Rejected` otherwise."""
        try:
            dt = np.dtype(dtype)
        except (TypeError, ValueError) as e:
            raise Rejected(f"{where}: unreadable dtype {dtype!r}") from e
        if dt.hasobject:
            raise Rejected(f"{where}: dtype {dt} holds Python objects (pickles are refused)")
        if dt.newbyteorder("=").name not in self.allowed_dtypes or dt.kind not in "biuf":
            raise Rejected(f"{where}: dtype {dt} is not a number type allowed here "
                           f"({', '.join(self.allowed_dtypes)})")
        return dt

    def check_bytes(self, n: int, where: str = "submission", *,
                    what: str = "uncompressed size", limit: int | None = None) -> None:
        """Refuse ``n`` bytes over ``limit`` (default :attr:`max_bytes`)."""
        limit = self.max_bytes if limit is None else limit
        if n > limit:
            raise Rejected(f"{where}: {what} {float(n):.3g} bytes is over the limit "
                           f"{float(limit):.3g}")

    def check_file_count(self, n: int, where: str = "submission", *,
                         what: str = "files") -> None:
        """Refuse more than :attr:`max_files` files (archive members, pages…)."""
        if n > self.max_files:
            raise Rejected(f"{where}: {n} {what}, more than the limit {self.max_files}")

    def check_label_count(self, n: int, where: str = "submission") -> None:
        """Refuse more than :attr:`max_labels` distinct labels."""
        if n > self.max_labels:
            raise Rejected(f"{where}: {n} distinct labels, more than the limit "
                           f"{self.max_labels}")


# --------------------------------------------------------------------------------------------
# The limits of the current scoring call.

_ACTIVE: contextvars.ContextVar[Limits | None] = contextvars.ContextVar("gpueval_limits",
                                                                       default=None)


def current_limits() -> Limits:
    """The limits set by the innermost :func:`use_limits`, else the defaults."""
    return _ACTIVE.get() or Limits()


@contextlib.contextmanager
def use_limits(limits: Limits | Mapping[str, Any] | None) -> Iterator[Limits]:
    """Make ``limits`` (or ``Limits.from_config(cfg)`` for a config mapping) current.

    >>> with use_limits({"limits": {"max_voxels": 100}}) as lim:
    ...     current_limits().max_voxels
    100
    """
    lim = limits if isinstance(limits, Limits) else Limits.from_config(limits)
    token = _ACTIVE.set(lim)
    try:
        # the engine reads its bounds from gpueval.bounds, so it never imports limits
        with bounds.bounded(threads=lim.threads, max_graph_tasks=lim.max_graph_tasks):
            yield lim
    finally:
        _ACTIVE.reset(token)


def resolve(limits: Limits | None) -> Limits:
    return limits if limits is not None else current_limits()


# --------------------------------------------------------------------------------------------
# Module-level shortcuts with the current limits (what readers and challenges call).


def check_array_meta(shape: Sequence[Any], dtype: Any, chunks: Sequence[Any] | None = None,
                     where: str = "array", *, limits: Limits | None = None) -> None:
    """:meth:`Limits.check_array_meta` with the current (or given) limits."""
    resolve(limits).check_array_meta(shape, dtype, chunks, where)


def check_file_count(n: int, where: str = "submission", *, what: str = "files",
                     limits: Limits | None = None) -> None:
    """:meth:`Limits.check_file_count` with the current (or given) limits."""
    resolve(limits).check_file_count(n, where, what=what)


def check_bytes(n: int, where: str = "submission", *, what: str = "uncompressed size",
                limits: Limits | None = None) -> None:
    """:meth:`Limits.check_bytes` with the current (or given) limits."""
    resolve(limits).check_bytes(n, where, what=what)


def check_label_count(n: int, where: str = "submission", *,
                      limits: Limits | None = None) -> None:
    """:meth:`Limits.check_label_count` with the current (or given) limits."""
    resolve(limits).check_label_count(n, where)


def _dims(values: Iterable[Any], where: str, what: str) -> list[int]:
    try:
        vals = list(values)
    except TypeError as e:
        raise Rejected(f"{where}: {what} {values!r} is not a list of integers") from e
    dims = []
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                raise Rejected(f"{where}: {what} {tuple(vals)} holds a non-integer {v!r}")
        if v < 0:
            raise Rejected(f"{where}: negative dimension in {what} {tuple(vals)}")
        dims.append(int(v))
    return dims


_ZERO_MEANS_DEFAULT = ("threads", "gpu_memory_bytes")  # 0: one thread per core / no cap


def _coerce(key: str, value: Any, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return value
        if isinstance(default, tuple):
            items = [value] if isinstance(value, str) else list(value)
            return tuple(np.dtype(str(v)).name for v in items)
        if isinstance(default, float):
            out = float(str(value))
        else:
            f = float(str(value))  # YAML reads 1e12 as a string
            if not f.is_integer():
                raise ValueError("expected an integer")
            out = int(f)
        if out < 0 or (out == 0 and key not in _ZERO_MEANS_DEFAULT):
            raise ValueError("must be positive")
        return out
    except (TypeError, ValueError) as e:
        raise TruthError(f"config limits.{key}={value!r} is unusable: {e}") from e
