"""XPRESS's submission layout: finding, opening and checking the label volume, lazily.

A submission is one HDF5 (``.h5``, ``.hdf5``, ``.hdf``) or zarr (``.zarr``) container holding
a 3-D integer dataset (config ``dataset``, default ``submission``) with daisy's grid
attributes (:mod:`gpueval.challenges.xpress.grid`). :func:`open_submission` checks it, crops
it to the configured ROI and strides it (``downsampling``) without reading a voxel.

Documented choices
------------------
* **dtype**: every integer (and bool) dtype is scored identically as uint64 ids. The official
  scorer crashes on anything but uint64 (``rand_voi`` buffer type); under ``compat=official``
  the result carries a note and a user warning saying so instead of failing. Floats are
  rejected; negative labels are rejected (when the labels are gathered,
  :func:`gpueval.challenges.xpress.score.node_table`).
* **offset** must be a multiple of the voxel size (daisy asserts it for the array's own ROI,
  xpress.md §2.1), else Rejected.
* With ``fresh_ids: nodes`` the volume is chunked as stored, so a node-only gather reads
  whole storage chunks once.
* The volume is opened without Dask (:class:`~gpueval.kernels.gather.BlockWindow` over the
  reader :func:`gpueval.io.arrays.open_volume` would wrap, with its checks and messages);
  :meth:`Submission.dask_data` gives the Dask array of the same window for a distributed
  scheduler.
* Rejections name the submission by its own name, never the server's folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gpueval.challenges.xpress.grid import _crop, _daisy_grid, _roi
from gpueval.errors import Rejected
from gpueval.io import arrays
from gpueval.io.arrays import open_volume
from gpueval.kernels.gather import BlockWindow
from gpueval.limits import resolve
from gpueval.notices import warn

SUFFIXES_H5 = (".h5", ".hdf5", ".hdf")


@dataclass
class Submission:
    """The submission cropped (and strided) to the scored ROI, still lazy."""

    path: str
    data: Any                      # BlockWindow of the scored grid (after crop and stride)
    dtype: np.dtype
    full_shape: tuple[int, ...]
    begin: tuple[int, ...]         # nm, z y x, of voxel 0 of ``data`` (after downsampling)
    voxel_size: tuple[int, ...]    # nm, z y x (after downsampling)
    shape: tuple[int, ...]         # voxels of ``data``
    roi_voxels: int                # voxels of the crop before striding (what is read)
    downsampling: int = 1
    notes: list[str] = field(default_factory=list)
    dataset: str | None = None
    chunks: tuple[int, ...] | None = None  # the blocks asked of open_volume (None: default)

    def dask_data(self) -> Any:
        """The scored grid as the Dask array of :func:`gpueval.io.arrays.open_volume`,
        cropped and strided as ``data`` (for a distributed scheduler)."""
        window = self.data
        if not isinstance(window, BlockWindow):  # a Submission made with a Dask array
            return window
        data = open_volume(self.path, self.dataset, chunks=self.chunks, finite=False).data
        if window.start != (0,) * data.ndim or window.stop != tuple(data.shape):
            data = data[tuple(slice(a, b) for a, b in zip(window.start, window.stop,
                                                          strict=True))]
        if window.step > 1:
            data = data[(slice(None, None, window.step),) * data.ndim]
        return data


def open_submission(path: str | Path, settings: dict[str, Any]) -> Submission:
    """Open and check a submission container; crop it to the configured ROI (lazily).

    Parameters
    ----------
    path : path
        ``.h5`` / ``.hdf5`` / ``.hdf`` file or ``.zarr`` folder.
    settings : dict
        The checked settings of the config (``dataset``, ``roi``, ``rois``, ``compat``,
        ``fresh_ids``, ``downsampling``).

    Returns
    -------
    Submission
        The lazy array of the scored grid and where it lies (nm, z y x).

    Raises
    ------
    Rejected
        Wrong container, missing dataset, not 3-D, not integer, grid off the ROI.
    """
    p = Path(path)
    low = p.name.lower().rstrip("/")
    if not (low.endswith(SUFFIXES_H5) or low.endswith(".zarr")):
        raise Rejected(f"{p.name}: expected an HDF5 (.h5) or zarr (.zarr) container holding "
                       f"dataset {settings['dataset']!r}")
    if not p.exists():
        raise Rejected(f"{p.name}: not found")
    where = f"{p.name}:{settings['dataset']}"
    window, voxel_size, attrs, chunks = _open_window(p, settings["dataset"],
                                                     settings["fresh_ids"] == "nodes")
    notes: list[str] = []
    if window.ndim != 3:
        raise Rejected(f"{where}: {window.ndim}-D array; expected a 3-D (z, y, x) "
                       "label volume")
    dt = window.dtype
    if dt.kind not in "iub":
        raise Rejected(f"{where}: dtype {dt} is not an integer type; submit instance ids as "
                       "uint64 (0 = background)")
    if dt != np.uint64 and settings["compat"] == "official":
        notes.append(f"dtype {dt}: the official scorer accepts only uint64 (its rand_voi "
                     "raises a buffer dtype error); scored here as uint64 ids")
        warn(f"{where}: dtype {dt}; the official scorer fails on anything but uint64, "
             "gpueval scores the ids as uint64; save the labels as uint64")
    vs, off = _daisy_grid(attrs, where, notes)   # official Coordinate: int() per entry
    if any(v <= 0 for v in vs):
        raise Rejected(f"{where}: voxel size {voxel_size} nm truncates to {vs}; expected "
                       "positive whole nm ('resolution' attribute, z,y,x)")
    if any(o % v for o, v in zip(off, vs, strict=True)):
        # the official reader (daisy) asserts every ROI, the array's own included, is a
        # multiple of the voxel size (xpress.md §2.1): such an array is never scored there
        raise Rejected(f"{where}: offset {off} nm is not a multiple of the voxel size {vs} nm "
                       "(z,y,x); the official reader refuses such an array ('offset' "
                       "attribute)")
    shape = tuple(int(s) for s in window.shape)
    begin, roi_shape_nm = _roi(settings, where, vs, off, shape)
    start, size = _crop(where, begin, roi_shape_nm, vs, off, shape)
    data = window.crop(start, size)
    d = settings["downsampling"]
    vs_out, begin_out = vs, begin
    if d > 1:
        data = data.strided(d)
        vs_out = tuple(v * d for v in vs)
        begin_out = tuple((b // v) * v for b, v in zip(begin, vs_out, strict=True))
    return Submission(str(p), data, dt, shape, begin_out, vs_out,
                      tuple(int(s) for s in data.shape), int(np.prod(size, dtype=np.int64)),
                      d, notes, settings["dataset"], chunks)


def _open_window(p: Path, dataset: str, storage_blocks: bool
                 ) -> tuple[BlockWindow, tuple[float, ...], dict[str, Any],
                            tuple[int, ...] | None]:
    """:func:`gpueval.io.arrays.open_volume` without Dask: the same reader, checks and
    messages (:func:`~gpueval.io.arrays.open_reader_checked`), the same blocks, as a
    :class:`BlockWindow` (plus the voxel size, the attributes and the blocks asked for:
    the container's own chunks with ``storage_blocks``, so a node-only gather reads storage
    chunks, else ``None`` for the default ~64 MiB blocks). Importing Dask costs a process
    ~0.3 s before its first read (issue #19)."""
    # labels: integers (floats are rejected by the caller), so no finite check per block
    reader, voxel_size, _offset, attrs = arrays.open_reader_checked(str(p), dataset,
                                                                    resolve(None), finite=False)
    chunks = tuple(int(c) for c in reader.storage_chunks) if storage_blocks else None
    blocks = chunks or arrays._block_chunks(reader.shape, reader.storage_chunks,
                                            reader.dtype.itemsize)
    return BlockWindow.whole(reader, blocks), voxel_size, attrs, chunks


@contextmanager
def _submission_relative(submission) -> Iterator[None]:
    """Rejections name the submission by its own name, never the server's folder (the
    array readers quote the full path they were given)."""
    try:
        yield
    except Rejected as e:
        p = Path(submission)
        msg = str(e)
        for shown in sorted({str(p.absolute()), str(p.resolve())}, key=len, reverse=True):
            msg = msg.replace(shown + os.sep, p.name + "/").replace(shown, p.name)
        if msg == str(e):
            raise
        raise Rejected(msg) from e
