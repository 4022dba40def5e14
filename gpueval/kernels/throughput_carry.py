"""A bounded, process-wide store of compressed chunk arrays handed from one pass to the next.

Why: a chunked scorer often makes several passes over the same chunk grid with a global step
between them (CellMap instance scoring: connected components → union-find → relabel and
overlaps → matching → Hausdorff inputs). Without a carry every pass reads (decodes) the chunk
from storage again and redoes its per-chunk work (the connected components of the prediction
ran three times per chunk before issue 18's session 6). A task of the earlier pass ``put``\\ s
what the later pass needs — LZ4-compressed (label chunks compress 10–1000×, and LZ4 runs at
GB/s, several times faster than a zarr read plus a connected-components run) — and the
later task ``get``\\ s or ``pop``\\ s it.

The carry is an optimisation only, never a dependency: a task that finds nothing (evicted,
budget exhausted, another process of a ``dask.distributed`` cluster, a recomputed graph)
recomputes from storage, so results are identical either way; only the read counts differ.

Memory is bounded by :data:`BUDGET_BYTES` of held bytes per process: a ``put`` that does
not fit evicts the oldest entries first (so entries a failed graph never collected cannot pin
memory), and an entry larger than the whole budget is not stored.

Raw while there is room (issue #18, session 7): compressing and decompressing a label chunk
costs ~15-35 ms of CPU per 128³ uint32 chunk (6 % of a dense CellMap label's per-core time),
so an entry is kept *uncompressed* when the store, with it, stays under half its budget
(:data:`BUDGET_BYTES` / 2 = 256 MiB of raw chunks); beyond that entries are compressed as
before, so the bound on memory is unchanged. An array that owns its buffer is kept without a
copy: callers hand over what they put and must not write to it afterwards.

Scoped to the graphs that use it: a graph's keys are ``(group, index)``, its groups made by
:func:`new_group` inside a :func:`scope` (the scorer's compute), and when that block ends —
scored, or aborted because one label of the submission was rejected — its entries are
dropped and the groups closed, so a task still running after an abort cannot put new ones.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import threading
import uuid
from collections.abc import Hashable, Iterable, Iterator, Sequence

import numpy as np
from numcodecs import LZ4, Zstd

__all__ = ["BUDGET_BYTES", "CarryStore", "new_group", "scope", "store"]

#: Bytes one process may hold in :func:`store` (oldest entries evicted beyond it); entries are
#: kept raw while the store stays under half of it, compressed beyond.
BUDGET_BYTES = 512 * 2**20

#: LZ4 (issue #18, session 9; was zstd level 1): on a dense 256³ uint32 truth chunk it
#: encodes in 13 ms and decodes in 10 ms against zstd-1's 19 and 14 (1.6 MB against 0.45 MB:
#: still ~40x smaller than the chunk); both release the GIL
_CODEC = LZ4(acceleration=1)
#: for an array LZ4 cannot take (its format stops at 2,113,929,216 bytes of input)
_WIDE_CODEC = Zstd(level=1)
_LZ4_MAX_INPUT = 0x7E000000


class CarryStore:
    """NumPy arrays by key (raw or compressed), at most ``budget`` held bytes (oldest evicted).

    Thread-safe: compression and decompression run outside the lock (LZ4 and zstd release the
    GIL), only the bookkeeping is serialised.
    """

    def __init__(self, budget: int = BUDGET_BYTES) -> None:
        self.budget = int(budget)
        self._items: collections.OrderedDict[Hashable, tuple[int, list[tuple]]] = \
            collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        # groups of finished or aborted graphs (the most recent ones): no new entries
        self._closed: collections.OrderedDict[Hashable, None] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes held now (raw arrays at their size, the others compressed)."""
        return self._bytes

    def put(self, key: Hashable, arrays: Sequence[np.ndarray]) -> bool:
        """Store ``arrays`` (compressed) under ``key``; ``False`` if larger than the budget.

        Replaces an entry of the same key; evicts the oldest entries until the new one fits.
        """
        raw_size = sum(int(np.asarray(a).nbytes) for a in arrays)
        if self._bytes + raw_size <= self.budget // 2:  # room: skip the codec (read
            # unlocked: a race only changes the representation, never what get returns)
            packed = [(None, None, _owned(a), None) for a in arrays]
            size = raw_size
        else:
            packed = [_encode(a) for a in arrays]
            size = sum(len(p[2]) for p in packed)
        if size > self.budget:
            return False
        with self._lock:
            if _group(key) in self._closed:  # its graph has ended: nobody will get it
                return False
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[0]
            while self._items and self._bytes + size > self.budget:
                _, (n, _) = self._items.popitem(last=False)
                self._bytes -= n
            self._items[key] = (size, packed)
            self._bytes += size
        return True

    def get(self, key: Hashable, *, remove: bool = False, copy: bool = True
            ) -> list[np.ndarray] | None:
        """The arrays stored under ``key`` (decompressed, writeable, private), or ``None``;
        with ``remove`` the entry is dropped (the last pass that needs it) and a raw array is
        handed back itself, without a copy. ``copy=False`` (a reader that only reads) hands
        back a raw array that stays stored as a **read-only view** instead of a private copy
        (issue #18, session 9: the copy of every carried chunk label, 16-32 MiB, cost more
        than the reading); compressed entries are decoded into fresh arrays either way."""
        with self._lock:
            entry = self._items.pop(key, None) if remove else self._items.get(key)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            if remove:
                self._bytes -= entry[0]
        return [(data if remove else data.copy() if copy else _read_only(data))
                if dt is None else _decode(dt, shape, data, codec)
                for dt, shape, data, codec in entry[1]]

    def discard(self, key: Hashable) -> None:
        """Drop ``key`` if present (a later pass found nothing to do with it)."""
        with self._lock:
            entry = self._items.pop(key, None)
            if entry is not None:
                self._bytes -= entry[0]

    def close(self, groups: Iterable[Hashable]) -> None:
        """Drop the entries of ``groups`` (keys ``(group, index)``) and refuse new ones:
        their graph has ended, whether it finished or was aborted."""
        groups = set(groups)
        if not groups:
            return
        with self._lock:
            for key in [k for k in self._items if _group(k) in groups]:
                self._bytes -= self._items.pop(key)[0]
            for g in groups:
                self._closed[g] = None
            while len(self._closed) > _CLOSED_KEPT:
                self._closed.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._items.clear()
            self._bytes = 0


#: closed groups remembered (a straggler task of an aborted graph puts within seconds)
_CLOSED_KEPT = 4096


def _group(key: Hashable) -> Hashable:
    return key[0] if isinstance(key, tuple) and key else None


_SCOPE: contextvars.ContextVar[list[Hashable] | None] = contextvars.ContextVar(
    "gpueval_carry_scope", default=None)


def new_group(name: str) -> tuple[str, str]:
    """A key group ``(name, nonce)`` unique to one graph, closed when the innermost
    :func:`scope` around its creation ends (never, outside any scope: the budget bounds it)."""
    group = (name, uuid.uuid4().hex)
    groups = _SCOPE.get()
    if groups is not None:
        groups.append(group)
    return group


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Around building *and* computing graphs: the carry entries of every group made inside
    are dropped when the block ends, however it ends (:meth:`CarryStore.close`)."""
    groups: list[Hashable] = []
    token = _SCOPE.set(groups)
    try:
        yield
    finally:
        _SCOPE.reset(token)
        store.close(groups)


def _owned(a: np.ndarray) -> np.ndarray:
    """``a`` itself when it is a C-contiguous, writeable array owning its buffer (nothing
    else can change it once the caller lets go), else a private copy."""
    a = np.asarray(a)
    if a.base is None and a.flags.c_contiguous and a.flags.writeable:
        return a
    return np.array(a, order="C", copy=True)


def _read_only(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


def _encode(a: np.ndarray) -> tuple[str, tuple[int, ...], bytes, object]:
    """``(dtype, shape, compressed bytes, codec)`` of one array (LZ4 where it fits)."""
    a = np.ascontiguousarray(a)
    codec = _CODEC if a.nbytes <= _LZ4_MAX_INPUT else _WIDE_CODEC
    return a.dtype.str, a.shape, codec.encode(a), codec


def _decode(dtype: str, shape: tuple[int, ...], data: bytes, codec) -> np.ndarray:
    out = np.empty(shape, np.dtype(dtype))
    if out.size == 0:  # zstd refuses to decode into a zero-length buffer
        return out
    codec.decode(data, out=out.reshape(-1).view(np.uint8))
    return out


#: The process's store (each worker process of a cluster has its own).
store = CarryStore()
