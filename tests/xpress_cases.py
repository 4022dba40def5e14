"""XPRESS fixture cases written to disk the way a submitter would upload them.

Shared by the XPRESS, CLI and report tests: the official fixture npz (tests/fixtures/xpress)
becomes a gpueval ``.npz`` skeleton plus an HDF5 or zarr submission with the ``resolution`` /
``offset`` attributes, and the ``--set`` overrides that reproduce the fixture's ROI and
downsampling.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from gpueval.io.skeleton import Skeleton, save_skeleton_npz

FIX = Path(__file__).parent / "fixtures" / "xpress"


def fixture(name: str) -> dict:
    """The arrays of fixture ``name`` (node table, segmentation, geometry, official lookups)."""
    with np.load(FIX / f"{name}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_case(tmp: Path, name: str, fmt: str = "h5", seg=None) -> tuple[Path, Path, dict]:
    """Skeleton and submission files of fixture ``name`` and the overrides to score them with."""
    z = fixture(name)
    skel_path = tmp / f"{name}_skel.npz"
    save_skeleton_npz(Skeleton(z["node_ids"], z["node_position_xyz"], z["edges"]), skel_path)
    seg = z["segmentation"] if seg is None else seg
    sub = write_submission(tmp / f"{name}.{fmt}", seg, z["voxel_size"], z["offset"])
    ov: dict = {"roi": "none"}
    if z["roi_begin"].size:
        ov["roi"] = {"begin": z["roi_begin"].tolist(), "shape": z["roi_shape"].tolist()}
    if int(z["downsampling"]):
        ov["downsampling"] = int(z["downsampling"])
    return skel_path, sub, ov


def write_submission(path: Path, seg, voxel_size, offset, chunks=(8, 16, 16)) -> Path:
    """Write ``seg`` as dataset ``submission`` of an ``.h5`` file or a zarr group at ``path``."""
    if path.suffix == ".h5":
        with h5py.File(path, "w") as f:
            d = f.create_dataset("submission", data=seg, chunks=chunks)
            d.attrs["resolution"] = np.asarray(voxel_size)
            d.attrs["offset"] = np.asarray(offset)
    else:
        import zarr

        g = zarr.open_group(str(path), mode="w")
        a = g.create_array("submission", shape=seg.shape, dtype=seg.dtype, chunks=chunks)
        a[...] = seg
        a.attrs["resolution"] = [int(v) for v in voxel_size]
        a.attrs["offset"] = [int(v) for v in offset]
    return path


def declare_submission(path: Path, shape, voxel_size, offset, chunks=(64, 64, 64)) -> Path:
    """An all-zero uint64 HDF5 submission of ``shape`` that is declared, never written (tests
    that only the grid is read)."""
    with h5py.File(path, "w") as f:
        d = f.create_dataset("submission", shape=tuple(shape), dtype=np.uint64, chunks=chunks)
        d.attrs["resolution"] = list(voxel_size)
        d.attrs["offset"] = list(offset)
    return path
