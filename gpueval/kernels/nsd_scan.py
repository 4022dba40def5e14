"""One pass over an in-memory label volume: the surface corners of its labels and the voxel
counts of every (label, label) pair, for MedSegFM's DSC and NSD (``shared/specs/medsegfm.md``
§2–§3) on volumes that are already decoded (an ``.npz`` is always read whole).

The chunked path (:mod:`gpueval.challenges.medsegfm.chunked`) compares seven shifted views of
every voxel (:func:`gpueval.kernels.surface.label_surfaces`) and counts pairs voxel by voxel.
Most of a segmentation volume is background or organ interior, where nothing changes from
one voxel to the next; this pass finds the few places where something does, working on
64-bit words of the raw array (eight ``uint8`` voxels at a time):

* **Clean words.** A word is *uniform* when all its elements are equal
  (``w >> bits == w & low``). The corners ``e·(m−1)+1 … e·m`` (``e`` elements per word) of one
  corner row see the 2×2 voxel rows around it at elements ``e·m−1 … e·m+e−1``: when word
  ``m`` and word ``m+1`` of those four rows are all equal and uniform, none of these corners
  can be mixed. Everything else (a conservative superset of the mixed corners) is gathered as
  two words per row and checked exactly: a corner is on a label's surface iff its eight
  voxels differ and the label is among them (code ∉ {0, 255}), as in
  :func:`~gpueval.kernels.surface.label_surfaces`. The volume is read slab by slab into a
  small zero-padded buffer, so voxels outside the volume count as background and memory is
  a few MiB beyond the surfaces found.
* **Counts from x-transitions.** Along a voxel row the label only changes where two
  neighbours differ, and each such place ``k`` of row ``(z, y)`` makes corner
  ``(z+1, y+1, k)`` mixed (its voxels ``(z, y, k−1)`` and ``(z, y, k)`` are weights 128 and 64
  of its code). The run lengths between consecutive transitions of the two volumes, merged
  row by row, are the voxel counts of every label pair except (0, 0), which is the rest of the
  volume. Exact, with no pass over the voxels beyond the one above.

The results equal the chunked path's point sets and contingency table exactly (tests compare
both on random volumes); only the order of the surface points may differ, which changes sums
by float rounding (≤ 1e-12 relative).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from gpueval.kernels.surface import SurfacePoints

#: corner slices per slab: the padded slab buffer of a 512×512 uint8 volume is ~2.4 MiB
SLAB = 8


class PairTable(Protocol):
    """What MedSegFM reads of a pair table: :class:`PairCounts` and
    :class:`gpueval.kernels.stats.Contingency` both have it."""

    ids_a: np.ndarray
    ids_b: np.ndarray
    counts: np.ndarray

    def sizes_a(self) -> tuple[np.ndarray, np.ndarray]: ...

    def sizes_b(self) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class PairCounts:
    """Voxel counts of every (label in ``a``, label in ``b``) pair, background included,
    sorted by ``(ids_a, ids_b)``; pairs that never occur are absent. The same interface as
    :class:`gpueval.kernels.stats.Contingency` where MedSegFM uses it (``ids_a``, ``ids_b``,
    ``counts``, :meth:`sizes_a`, :meth:`sizes_b`), without importing Numba.
    """

    ids_a: np.ndarray
    ids_b: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def sizes_a(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, voxel counts) of the first volume, sorted by id."""
        return _marginal(self.ids_a, self.counts)

    def sizes_b(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, voxel counts) of the second volume, sorted by id."""
        return _marginal(self.ids_b, self.counts)


def _marginal(ids: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inv = np.unique(ids, return_inverse=True)
    return uniq, np.bincount(inv.reshape(-1), weights=counts, minlength=len(uniq)
                             ).astype(np.int64)


@dataclass
class VolumeScan:
    """What one pass over a label volume found.

    ``surfaces``: the surface corners of each requested label (global corner indices, codes);
    ``row_keys``/``after``: every x-transition, as ``row · (W+1) + k`` (row ``z·H + y``,
    sorted) and the label that starts at voxel ``k``.
    """

    shape: tuple[int, int, int]
    surfaces: dict[int, SurfacePoints] = field(default_factory=dict)
    row_keys: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    after: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    labels: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.int64))


def supported(volume) -> bool:
    """Whether :func:`scan_volume` takes ``volume``: a 3-D NumPy array of integers or bools,
    no axis empty."""
    return (isinstance(volume, np.ndarray) and volume.ndim == 3 and min(volume.shape) > 0
            and (volume.dtype == bool or np.issubdtype(volume.dtype, np.integer)))


class TooDense(Exception):
    """A volume changes label at more places than the scan was allowed to hold (noise):
    the caller takes a path whose memory does not follow the number of changes."""


def scan_volume(volume: np.ndarray, labels: Iterable[int] | None = None, *,
                slab: int = SLAB, workers: int = 1,
                max_transitions: int | None = None) -> VolumeScan:
    """Surface corners of ``labels`` and all x-transitions of ``volume``, in one pass.

    Parameters
    ----------
    volume : 3-D NumPy integer or bool array (any byte order or memory layout; a
        non-native or non-contiguous array is copied once).
    labels : the labels whose surfaces are wanted; ``None``: every non-zero label present
        (0 is the padding outside the volume and never gets a surface here).
    slab : corner slices per work unit.
    workers : threads over slabs (NumPy releases the GIL in its loops).
    max_transitions : raise :class:`TooDense` once the volume has more x-transitions (its
        memory, and that of :func:`pair_counts`, follows their number: ~100 bytes each).

    Returns
    -------
    VolumeScan
        ``surfaces[label]`` lists each surface corner once, in increasing ``(i, j, k)``
        order; ``labels`` the non-zero labels present in the volume, sorted.
    """
    if not supported(volume):
        raise ValueError("scan_volume needs a non-empty 3-D integer or bool NumPy array")
    vol = volume.view(np.uint8) if volume.dtype == bool else volume
    vol = np.ascontiguousarray(vol, dtype=vol.dtype.newbyteorder("="))
    scanner = VolumeScanner(vol.shape, volume.dtype, labels, slab=slab,
                            max_transitions=max_transitions)
    if workers > 1 and len(scanner.starts) > 1:
        job = scanner.job(vol)
        with ThreadPoolExecutor(min(workers, len(scanner.starts))) as ex:
            for raw in ex.map(job, scanner.starts):
                scanner.keep(raw)
        scanner.next = len(scanner.starts)
    return scanner.finish(vol)


#: bytes of mixed corners (coordinates and voxel values) a :class:`VolumeScanner` holds while
#: the labels it is to report are not known yet; past it, it waits for them
RAW_BUDGET_BYTES = 64 << 20

#: labels up to which a scan of every label (``labels=None``) tests each kept slab for all
#: of the volume's labels at the end (one comparison pass per label and slab) instead of
#: finding each slab's own labels by a histogram as it goes
DEFER_MAX_LABELS = 16


class VolumeScanner:
    """:func:`scan_volume` fed slice by slice, e.g. while the volume is being decoded.

    Each call of :meth:`feed` scans the slabs whose voxel slices are all filled in; the
    caller (a reader filling ``vol`` in order) then overlaps decoding and scanning, and the
    slab is scanned while it is still in the cache. ``labels`` may be a
    :class:`concurrent.futures.Future` of the label list, known only later (a prediction's
    classes come from its truth): until it is done, the mixed corners of each slab are kept
    as they are (their eight voxel values), and converted to the labels' surface codes when
    the labels arrive, or when :data:`RAW_BUDGET_BYTES` are held (the scanner then waits).
    With ``labels=None`` (every label present) the corners are kept raw as well, and the
    codes of the labels the x-transitions list are computed at the end — after the caller
    has had the labels from :meth:`present` (the truth's classes, wanted by the
    prediction's scan in another thread); past the budget, or with more than
    :data:`DEFER_MAX_LABELS` labels, each slab's labels are found by a histogram instead.

    Parameters
    ----------
    shape : the volume's shape (3-D, no axis empty).
    dtype : its dtype (integer or bool).
    labels : as :func:`scan_volume`, or a future of it.
    slab : corner slices per work unit.
    max_transitions : as :func:`scan_volume` (:class:`TooDense` from :meth:`feed`).
    """

    def __init__(self, shape, dtype, labels=None, *, slab: int = SLAB,
                 max_transitions: int | None = None):
        self.max_transitions = max_transitions
        self._transition_count = 0
        self.shape = tuple(int(v) for v in shape)
        self.dtype = np.dtype(dtype)
        self.slab = slab
        self.starts = list(range(0, self.shape[0] + 1, slab))
        self.next = 0  # index in ``starts`` of the next slab to scan
        self._labels = labels
        self._wanted: list[int] | None = None
        self._known = labels is not None and not hasattr(labels, "result")
        if self._known:
            self._wanted = sorted({int(v) for v in labels})
        self._present: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._job: _SlabJob | None = None
        self._raw: list[_RawSlab] = []  # waiting for the labels
        self._raw_bytes = 0
        self._surfaces: list[dict[int, tuple[np.ndarray, np.ndarray]]] = []
        self._transitions: list[tuple[np.ndarray, np.ndarray]] = []

    def job(self, vol: np.ndarray) -> _SlabJob:
        """The slab scan of ``vol`` (native-order, C-contiguous, the shape given)."""
        if self._job is None:
            self._job = _SlabJob(vol, self.slab)
        return self._job

    def feed(self, vol: np.ndarray, filled: int) -> None:
        """Scan every slab not scanned yet whose voxel slices lie in ``vol[:filled]``."""
        job = self.job(vol)
        d = self.shape[0]
        while self.next < len(self.starts):
            i0 = self.starts[self.next]
            if filled < min(i0 + self.slab, d):  # corners i0 … read voxel slices … i0+slab−1
                break
            self.keep(job(i0))
            self.next += 1

    def keep(self, raw: _RawSlab) -> None:
        """Take the scan of one slab (in slab order)."""
        self._transition_count += len(raw.row_keys)
        if self.max_transitions is not None and self._transition_count > self.max_transitions:
            self._raw, self._surfaces, self._transitions = [], [], []  # free them now
            raise TooDense(f"more than {self.max_transitions} label changes along x")
        self._transitions.append((raw.row_keys, raw.after))
        if not self._known:
            self._raw.append(raw)
            self._raw_bytes += raw.coords.nbytes + raw.vals8.nbytes
            if self._raw_bytes <= RAW_BUDGET_BYTES and (self._labels is None
                                                         or not self._labels.done()):
                return
            self._resolve(None)
            return
        self._surfaces.append(_slab_surfaces(raw, self._wanted))

    def _resolve(self, present: np.ndarray | None) -> None:
        """Give every kept slab its surfaces: of the labels when they come (waiting for
        them), or with ``labels=None`` of the ``present`` ones (None, or too many: each
        slab's own, by histogram)."""
        if self._labels is not None:
            self._wanted = sorted({int(v) for v in self._labels.result()})
        elif present is not None and len(present) <= DEFER_MAX_LABELS:
            self._wanted = [int(v) for v in present]
        self._known = True
        for raw in self._raw:
            self._surfaces.append(_slab_surfaces(raw, self._wanted))
        self._raw, self._raw_bytes = [], 0

    def present(self, vol: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scan what is left of ``vol`` (now whole); its x-transitions ``(row_keys,
        after)`` and the sorted non-zero labels present, before any surface code of
        labels still kept raw is computed (:meth:`finish` does that)."""
        if self._present is None:
            self.feed(vol, self.shape[0])
            parts = self._transitions
            row_keys = np.concatenate([p[0] for p in parts])
            after = np.concatenate([p[1].astype(vol.dtype) for p in parts])
            # every label present starts a run somewhere: the transitions list them all
            present = _sorted_distinct(after)
            self._present = (row_keys, after, present[present != 0])
        return self._present

    def finish(self, vol: np.ndarray) -> VolumeScan:
        """Scan what is left of ``vol`` (now whole) and return the :class:`VolumeScan`."""
        row_keys, after, present = self.present(vol)
        if not self._known:
            self._resolve(present)
        keys = [int(v) for v in present] if self._wanted is None else self._wanted
        surfaces = {}
        for lab in keys:
            found = [p[lab] for p in self._surfaces if lab in p]
            surfaces[lab] = (SurfacePoints(np.concatenate([f[0] for f in found]),
                                           np.concatenate([f[1] for f in found]))
                             if found else SurfacePoints.empty())
        return VolumeScan(self.shape, surfaces, row_keys, after, present,
                          self.dtype if self.dtype == bool else vol.dtype)


@dataclass
class _RawSlab:
    """What the scan of one slab found: its mixed corners (global indices), their eight
    voxel values in code order, and its x-transitions."""

    coords: np.ndarray
    vals8: np.ndarray
    row_keys: np.ndarray
    after: np.ndarray


def _slab_surfaces(raw: _RawSlab, wanted: list[int] | None
                   ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Surface corners and codes of each wanted label (None: those present) in one slab."""
    vals8 = raw.vals8
    # an absent label finds no corner: the wanted ones need no presence test; of the
    # labels present, 0 is the padding and never reported (it is at most mixed corners)
    labels = [v for v in _distinct(vals8).tolist() if v != 0] if wanted is None else wanted
    out = {}
    for lab in labels:
        if not _fits(lab, vals8.dtype):
            continue
        codes = _codes(vals8 == lab)
        keep = np.flatnonzero(codes)  # 255 cannot occur at a mixed corner
        if len(keep):
            # np.take: several times faster than ``coords[keep]`` for rows of three
            out[int(lab)] = (np.take(raw.coords, keep, axis=0), codes[keep])
    return out


#: multiplier gathering the low bit of byte j of a word into bit 63 − j (no carries: every
#: product term lands on its own bit, and only j = j' reaches the top byte)
_GATHER_BITS = np.uint64(sum(1 << (63 - 9 * j) for j in range(8)))


def _codes(hit: np.ndarray) -> np.ndarray:
    """Neighbour codes of (K, 8) booleans: position j has weight 128 >> j (first one the
    most significant, as ``np.packbits(hit, axis=1)``, which costs ~10× more: NumPy's
    iterator pays per row of 8)."""
    if not _LITTLE:
        return np.packbits(hit, axis=1).reshape(-1)
    word = np.ascontiguousarray(hit).view(np.uint64).reshape(-1)  # byte j = position j
    return ((word * _GATHER_BITS) >> np.uint64(56)).astype(np.uint8)


class _SlabJob:
    """Scan of the corner slices ``[i0, i0 + slab)`` of one volume (see the module text)."""

    def __init__(self, vol: np.ndarray, slab: int):
        self.vol = vol
        self.slab = slab
        self.size = vol.dtype.itemsize
        self.e = 8 // self.size  # elements per 64-bit word
        self.words = 2 + -(-vol.shape[2] // self.e)  # a zero word before each row, ≥ 1 after
        self.local = threading.local()  # one slab buffer per thread, reused (no page faults)

    def _buffer(self, n: int) -> np.ndarray:
        buf = getattr(self.local, "buf", None)
        if buf is None:
            _, h, _ = self.vol.shape
            buf = np.zeros((self.slab + 1, h + 2, self.words * self.e), self.vol.dtype)
            self.local.buf = buf
        return buf[:n + 1]

    def __call__(self, i0: int) -> _RawSlab:
        vol, e, size = self.vol, self.e, self.size
        d, h, w = vol.shape
        i1 = min(i0 + self.slab, d + 1)  # corners i0 .. i1-1 read voxel slices i0-1 .. i1-1
        n = i1 - i0
        buf = self._buffer(n)
        z0, z1 = max(i0 - 1, 0), min(i1 - 1, d - 1)
        if not _any_nonzero(vol[z0:z1 + 1]):  # background only, as the padding: no corner
            return _RawSlab(np.empty((0, 3), np.int64), np.empty((0, 8), vol.dtype),
                            np.empty(0, np.int64), np.empty(0, vol.dtype))
        lo, hi = z0 - (i0 - 1), z1 - (i0 - 1) + 1
        buf[:lo] = 0  # voxel slice -1 and slice d are outside the volume
        buf[hi:] = 0
        buf[lo:hi, 1:h + 1, e:e + w] = vol[z0:z1 + 1]  # y and x borders stay zero
        # word m of a row and the word one element later, compared: not equal unless the
        # e + 1 elements e·m … e·m+e (what corners e·(m−1)+1 … e·m read) are one value.
        # Every test runs on the flat buffer (one 1-D loop; a 3-D view's rows of ~65 words
        # cost more in per-row overhead than in work): entry x is word m of voxel row
        # (z, y), x = (z·rows + y)·cols + m. Entries whose neighbours wrap into the next row
        # or slice (m = cols−1, y = rows−1) read only zero padding and stay clean.
        raw = buf.reshape(-1).view(np.uint8)
        flatw = raw.view(np.uint64)
        rows, cols = buf.shape[1], self.words
        plane = rows * cols
        later = raw[size:size + 8 * (len(flatw) - 1)].view(np.uint64)
        varies = flatw[:-1] != later
        # a corner row is dirty where one of its four voxel rows varies or they differ
        span = n * plane - cols - 1  # corner rows (z < n) whose four rows lie in the buffer
        ydirty = varies[:span + plane] | varies[cols:cols + span + plane]
        ydirty |= flatw[:span + plane] != flatw[cols:cols + span + plane]
        dirty = ydirty[:span] | ydirty[plane:plane + span]
        dirty |= flatw[:span] != flatw[plane:plane + span]
        dirty[cols - 1::cols] = False  # the wrapping column, for clarity: it reads zeros
        # flatnonzero and divmod: several times faster than a 3-D nonzero
        first = np.flatnonzero(dirty)  # word m of row (0,0) of each dirty corner word
        di, rest = np.divmod(first, plane)
        dj, dm = np.divmod(rest, cols)
        # words m and m+1 of the four rows (0,0) (0,1) (1,0) (1,1), interleaved: one 1-D
        # gather per row (2-D index arrays with an axis of 2 or 8 cost ~100 ns per row in
        # NumPy's iterator, several times the whole 1-D work)
        pair_at = np.empty(2 * len(first), np.int64)
        pair_at[0::2] = first
        pair_at[1::2] = first + 1
        two = [flatw[pair_at + off] for off in (0, cols, plane, plane + cols)]
        # the e corners of each dirty word tested element-parallel on 64-bit words: element t
        # of ``col_m`` is non-zero where the four rows differ at element t (``col_n``: at
        # elements e … of word m+1); the last term where row (0,0) changes from t to t+1
        col_m = (two[1][0::2] ^ two[0][0::2]) | (two[2][0::2] ^ two[0][0::2]) \
            | (two[3][0::2] ^ two[0][0::2])
        col_n = (two[1][1::2] ^ two[0][1::2]) | (two[2][1::2] ^ two[0][1::2]) \
            | (two[3][1::2] ^ two[0][1::2])
        mixed = col_m | _next_elements(col_m, col_n, size) \
            | (two[0][0::2] ^ _next_elements(two[0][0::2], two[0][1::2], size))
        # corner t+1 (t = 0..e−1) of dirty word m is corner k = e·(m−1) + t + 1 and reads
        # elements t, t+1 of the four rows: mixed unless all eight are equal
        p = np.flatnonzero(mixed.view(_UNSIGNED[size]))
        q, t = np.divmod(p, e)
        # element u of the two words of a dirty word q sits at q·2e + u of a row's elements
        base = p + q * e
        elements = [r.view(vol.dtype) for r in two]
        vals8 = np.empty((len(p), 8), vol.dtype)
        for r in range(4):  # code position 4a + 2b + c (weight 128 >> it) is row 2a + b
            vals8[:, 2 * r] = elements[r][base]
            vals8[:, 2 * r + 1] = elements[r][base + 1]
        ci = di[q].astype(np.int64) + i0
        cj = dj[q].astype(np.int64)
        ck = e * (dm[q].astype(np.int64) - 1) + t + 1
        # corners outside 0..w read only the zero padding and are never mixed
        # x-transitions: voxel (i−1, j−1, k−1) ≠ voxel (i−1, j−1, k), code bits 128 and 64
        tr = np.flatnonzero(vals8[:, 0] != vals8[:, 1])
        row_keys = ((ci[tr] - 1) * h + (cj[tr] - 1)) * (w + 1) + ck[tr]
        after = vals8[tr, 1]
        return _RawSlab(np.stack([ci, cj, ck], axis=1), vals8, row_keys, after)


def _any_nonzero(block: np.ndarray) -> bool:
    """Whether a C-contiguous block holds a non-zero element (tested as 64-bit words where
    its size allows: slabs outside the labelled region are skipped for one cheap pass)."""
    flat = block.reshape(-1).view(np.uint8)
    words = len(flat) // 8
    # max() of unsigned words: ~3x faster than any(), which converts every word to bool
    if words and flat[:8 * words].view(np.uint64).max() != 0:
        return True
    tail = flat[8 * words:]
    return bool(len(tail) and tail.max() != 0)


#: unsigned integer type of each element size: element t of a word, as a NumPy view sees it
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}

#: a word's elements in NumPy's order are its bytes from the least significant on
#: little-endian machines, from the most significant on big-endian ones
_LITTLE = sys.byteorder == "little"


def _next_elements(words: np.ndarray, following: np.ndarray, size: int) -> np.ndarray:
    """Each 64-bit word moved one element (``size`` bytes) on: element t of the result is
    element t+1 of ``words``, its last element the first of ``following``."""
    if size == 8:
        return following
    bits = np.uint64(8 * size)
    back = np.uint64(64 - 8 * size)
    if _LITTLE:
        return (words >> bits) | (following << back)
    return (words << bits) | (following >> back)


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a histogram for one-byte labels, cheaper than sorting).

    Not ``np.unique``: its first call imports ``numpy.ma`` (~30 ms of a process's start-up).
    """
    if values.dtype.itemsize == 1 and values.size:
        flat = values.reshape(-1).view(np.uint8)
        hist = np.bincount(flat, minlength=256)
        found = np.flatnonzero(hist).astype(np.uint8).view(values.dtype)
        return np.sort(found)
    return _sorted_distinct(values.reshape(-1))


def _sorted_distinct(values: np.ndarray, kind: str | None = None) -> np.ndarray:
    """Sorted distinct values of a 1-D array (``np.unique`` without its ``numpy.ma`` import);
    ``kind`` is ``np.sort``'s (``"stable"`` merges already sorted runs in linear time)."""
    ordered = np.sort(values, kind=kind)
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _fits(label: int, dtype) -> bool:
    info = np.iinfo(dtype)
    return info.min <= label <= info.max


def pair_counts(a: VolumeScan, b: VolumeScan) -> PairCounts:
    """The contingency table of two volumes of one shape from their x-transitions.

    Each row is cut at the union of both volumes' transitions; between two cuts both labels
    are constant, so the run length is the count of that pair. The last cut of a row starts
    the padding (both labels 0) or a run that reaches the row end only when both are 0.
    (0, 0) is the rest of the volume.
    """
    if a.shape != b.shape:
        raise ValueError(f"volumes of different shapes {a.shape} and {b.shape}")
    d, h, w = a.shape
    total = d * h * w
    keys = _merge_sorted(a.row_keys, b.row_keys)
    la = _label_at(a.row_keys, a.after, keys, w)
    lb = _label_at(b.row_keys, b.after, keys, w)
    row = keys // (w + 1)
    k = keys - row * (w + 1)
    length = np.zeros(len(keys), np.int64)
    if len(keys) > 1:
        same = row[1:] == row[:-1]
        length[:-1] = np.where(same, k[1:] - k[:-1], 0)
    # a run still open at the end of a row runs to the row end (only 0/0 runs can)
    last = np.ones(len(keys), bool)
    if len(keys) > 1:
        last[:-1] = row[1:] != row[:-1]
    length[last] = w - k[last]
    nz = (length > 0) & ((la != 0) | (lb != 0))
    ids_a, ids_b, counts = _group_pairs(la[nz], lb[nz], length[nz])
    rest = total - int(counts.sum())
    if rest:  # (0, 0) sorts first: 0 is below every other label only for unsigned ids
        ids_a = np.concatenate([np.zeros(1, ids_a.dtype), ids_a])
        ids_b = np.concatenate([np.zeros(1, ids_b.dtype), ids_b])
        counts = np.concatenate([np.array([rest], np.int64), counts])
        order = np.lexsort((ids_b, ids_a))
        ids_a, ids_b, counts = ids_a[order], ids_b[order], counts[order]
    return PairCounts(_as_ids(ids_a, a.dtype), _as_ids(ids_b, b.dtype), counts)


def _merge_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sorted distinct values of two sorted arrays (``np.union1d`` without its full sort:
    a stable sort of two runs is a linear merge)."""
    return _sorted_distinct(np.concatenate([a, b]), kind="stable")


def _label_at(row_keys: np.ndarray, after: np.ndarray, keys: np.ndarray, w: int) -> np.ndarray:
    """The label of the run that contains each key (0 before a row's first transition)."""
    if not len(row_keys):
        return np.zeros(len(keys), np.int64)
    idx = np.searchsorted(row_keys, keys, side="right") - 1
    ok = idx >= 0
    safe = np.where(ok, idx, 0)
    ok &= row_keys[safe] // (w + 1) == keys // (w + 1)
    return np.where(ok, after[safe], 0)


def _group_pairs(a: np.ndarray, b: np.ndarray, weights: np.ndarray):
    """Sum ``weights`` per distinct ``(a, b)``, sorted by ``(a, b)``; each side keeps its own
    dtype (stacking uint64 with int64 labels would go through float64)."""
    if not len(a):
        return a[:0], b[:0], np.empty(0, np.int64)
    if a.dtype.kind in "ub" and b.dtype.kind in "ub" and a.dtype.itemsize <= 2 \
            and b.dtype.itemsize <= 2:  # small labels: one histogram of the pair codes
        span = int(b.max()) + 1
        hist = np.bincount(a.astype(np.int64) * span + b, weights=weights)
        code = np.flatnonzero(hist)
        return ((code // span).astype(a.dtype), (code % span).astype(b.dtype),
                np.rint(hist[code]).astype(np.int64))
    ua, ia = np.unique(a, return_inverse=True)
    ub, ib = np.unique(b, return_inverse=True)
    key = ia.reshape(-1).astype(np.int64) * len(ub) + ib.reshape(-1)
    uk, inv = np.unique(key, return_inverse=True)
    sums = np.bincount(inv.reshape(-1), weights=weights, minlength=len(uk))
    # run lengths are below 2**53: the float sums are exact
    return ua[uk // len(ub)], ub[uk % len(ub)], np.rint(sums).astype(np.int64)


def _as_ids(ids: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Ids in a dtype that holds every label of ``dtype`` (int64, or uint64 for uint64)."""
    return ids.astype(np.uint64 if np.dtype(dtype) == np.uint64 else np.int64)
