"""MedSegFM's per-class statistics of a case that is already in memory, in one pass per volume.

An ``.npz`` case is decoded whole by its reader, so the chunk-by-chunk path of
:mod:`.chunked` (dask tasks, a pair table voxel by voxel, seven shifted views per voxel for
the surfaces) only adds cost there. :func:`scan_truth` and :func:`scan_prediction` read
each volume once with :func:`gpueval.kernels.nsd_scan.scan_volume`, which yields the surface
corners of the classes and the x-transitions; :func:`case_table` turns the transitions of
both volumes into the exact pair table. Same points, codes and counts as :mod:`.chunked`
(tests compare both); zarr cases and the GPU keep the chunked path.

:class:`SlabFeed` scans a volume in the thread that reads it (the reader's ``on_slices``),
so the truth and the prediction are each decoded and scanned by one thread, side by side
(:func:`gpueval.challenges.medsegfm.score._load_side_by_side`). A deflated npz member is
decoded whole by libdeflate and scanned once it is in (session 8: a 3× faster decode beats
scanning each slab while zlib inflates the next, measured 0.10 vs 0.17 s for the benchmark
case's two volumes); a bzip2/lzma member is scanned slab by slab as it streams. The
prediction's classes come from the truth, so its scan receives them as a future
(:class:`~gpueval.kernels.nsd_scan.VolumeScanner`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from gpueval.challenges.medsegfm.options import _Context
from gpueval.errors import TruthError
from gpueval.kernels.nsd_scan import (
    PairCounts,
    TooDense,
    VolumeScan,
    VolumeScanner,
    pair_counts,
    scan_volume,
    supported,
)
from gpueval.kernels.surface import CornerGrid

#: voxels per x-transition below which a volume leaves this path (:class:`TooDense`): its
#: memory follows the transitions (~100 bytes each), a noise volume has one per voxel, the
#: organ benchmark one per ~450; below 2**20 transitions a case always stays
DENSE_VOXELS_PER_TRANSITION = 16


def transition_limit(voxels: int) -> int:
    """Most x-transitions a volume of ``voxels`` may have on this path."""
    return max(int(voxels) // DENSE_VOXELS_PER_TRANSITION, 1 << 20)


#: :func:`..score._load_side_by_side`'s answer for a case whose scan was :class:`TooDense`
DENSE = "dense"


def applies(ctx: _Context, *volumes) -> bool:
    """Whether the case takes this path: CPU scoring of NumPy volumes (not zarr, not GPU)."""
    return ctx.device == "cpu" and all(supported(v) for v in volumes)


def _threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def scan_truth(ctx: _Context, gts: np.ndarray) -> VolumeScan:
    """Surfaces of every non-zero label of the ground truth and its x-transitions."""
    scan = scan_volume(gts, None, workers=_threads(), max_transitions=transition_limit(gts.size))
    ctx.voxels += int(gts.size)
    return scan


def truth_ids(scan: VolumeScan) -> np.ndarray:
    """Sorted distinct labels of the scanned ground truth, 0 included when a voxel is 0.

    From the x-transitions alone: a row whose first voxel is not 0 has a transition at
    ``k = 0`` (from the zero padding); 0 occurs in the volume iff some row lacks one, or a
    transition inside a row (``k < W``) starts a run of 0.
    """
    d, h, w = scan.shape
    k = scan.row_keys % (w + 1)
    zero = int(np.count_nonzero(k == 0)) < d * h or bool(np.any((scan.after == 0) & (k < w)))
    ids = scan.labels.astype(np.uint64 if np.dtype(scan.dtype) == np.uint64 else np.int64)
    if zero:
        ids = np.sort(np.concatenate([np.zeros(1, ids.dtype), ids]))
    return ids


def scan_prediction(segs: np.ndarray, classes: Sequence[int]) -> VolumeScan:
    """Surfaces of the scored ``classes`` in the prediction and its x-transitions."""
    check_classes(classes)
    return scan_volume(segs, classes, workers=_threads(),
                       max_transitions=transition_limit(segs.size))


def check_classes(classes: Sequence[int]) -> None:
    """Refuse a class set holding 0 (a ground truth with negative labels)."""
    if 0 in classes:  # as :func:`.chunked.class_surfaces`: 0 is the padding outside
        raise TruthError("label 0 would be scored as a class: ground-truth labels must not be "
                         "negative")


def streams(ctx: _Context) -> bool:
    """Whether npz volumes are scanned while they are decoded (:class:`SlabFeed`): CPU
    scoring on the semantic track (the text track may cast the volumes or score instances;
    the interactive track reads six predictions per case)."""
    return ctx.device == "cpu" and ctx.settings["track"] == "semantic" \
        and not ctx.settings["uint8_cast"]


class SlabFeed:
    """A reader's ``on_slices`` that scans a volume as it is decoded.

    Call it as ``on_slices(arr, filled)`` (see :func:`gpueval.io.arrays.load_npz_array`);
    afterwards :meth:`scan` gives the :class:`VolumeScan` of the array the reader returned,
    or None when the scan did not take it (not a native-order C-contiguous 3-D integer
    array, or the reader returned another array, e.g. float labels converted). An error of
    the scan itself is raised by :meth:`scan`, never reported as an unreadable file.

    Parameters
    ----------
    labels : as :class:`~gpueval.kernels.nsd_scan.VolumeScanner` (None: every non-zero label;
        a future: the prediction's classes, set once the truth is scanned).
    """

    def __init__(self, labels=None):
        self.labels = labels
        self.dense = False  # the volume was :class:`TooDense` for this path
        self._scanner: VolumeScanner | None = None
        self._array: np.ndarray | None = None
        self._off = False
        self._error: Exception | None = None

    def __call__(self, arr: np.ndarray, filled: int) -> None:
        if self._off:
            return
        try:
            if self._scanner is None:
                if not (supported(arr) and arr.dtype.isnative and arr.flags.c_contiguous):
                    self._off = True
                    return
                self._array = arr
                self._scanner = VolumeScanner(arr.shape, arr.dtype, self.labels,
                                              max_transitions=transition_limit(arr.size))
            self._scanner.feed(_words(self._array), filled)
        except TooDense:
            self.dense, self._off = True, True
        except Exception as e:  # raised by scan(), in the caller's thread
            self._error, self._off = e, True

    def scan(self, volume) -> VolumeScan | None:
        """The scan of ``volume`` (the reader's result), finished; None if not scanned
        (also when :attr:`dense`)."""
        return self._finished(volume, surfaces=True)

    def transitions(self, volume) -> VolumeScan | None:
        """As :meth:`scan` without the surfaces: the x-transitions and labels of
        ``volume``, before the surface codes of a scan of every label are computed (the
        truth's classes can go to the prediction's scan first, which then computes its
        codes while this thread computes the truth's)."""
        return self._finished(volume, surfaces=False)

    def _finished(self, volume, surfaces: bool) -> VolumeScan | None:
        if self._error is not None:
            raise self._error
        if self._scanner is None or self._off or volume is not self._array:
            return None
        try:
            if surfaces:
                return self._scanner.finish(_words(self._array))
            row_keys, after, present = self._scanner.present(_words(self._array))
        except TooDense:
            self.dense = True
            return None
        return VolumeScan(self._scanner.shape, {}, row_keys, after, present,
                          np.dtype(bool) if volume.dtype == bool else after.dtype)


def _words(arr: np.ndarray) -> np.ndarray:
    return arr.view(np.uint8) if arr.dtype == bool else arr


def case_table(truth: VolumeScan, prediction: VolumeScan) -> PairCounts:
    """Voxel counts of every (GT label, predicted label) pair."""
    return pair_counts(truth, prediction)


def grid(shape: Sequence[int], spacing: Sequence[float], settings: dict) -> CornerGrid:
    """The offset-search grid of a case (:class:`~gpueval.kernels.surface.CornerGrid`)."""
    return CornerGrid(shape, spacing, tolerance=settings["tolerance"])
