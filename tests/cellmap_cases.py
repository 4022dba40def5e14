"""Hand-built CellMap truth/submission stores for the audit tests (8 nm voxels by default)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import zarr

from gpueval.api import score

V8 = (8.0, 8.0, 8.0)
NORM8 = math.sqrt(3 * 64.0)  # ‖(8, 8, 8)‖


def h_norm(d: float, norm: float = NORM8) -> float:
    """§5.1.11 ``1.01^(−d/‖v‖)``."""
    return 1.01 ** (-d / norm)


def put(root: Path, crop: str, label: str, data: np.ndarray, vs=V8, tr=(0.0, 0.0, 0.0),
        fmt: int = 2, chunks=(2, 2, 2)) -> None:
    """One zarr array ``<root>/<crop>/<label>`` with ``voxel_size``/``translation`` attrs."""
    g = zarr.open_group(str(root), mode="a", zarr_format=fmt)
    a = g.require_group(crop).create_array(label, shape=data.shape, dtype=data.dtype,
                                           chunks=chunks)
    a[:] = data
    if vs is not None:
        a.attrs["voxel_size"] = [float(v) for v in vs]
    if tr is not None:
        a.attrs["translation"] = [float(t) for t in tr]


def run(truth: Path, sub: Path, *overrides: str):
    """Score on the CPU, assert it scored, and return the result and its items by id."""
    res = score("cellmap", truth, sub, overrides=list(overrides), device="cpu")
    assert res.status == "ok", res.error
    return res, {it["id"]: it for it in res.items}


def counts(item) -> tuple[int, int, int]:
    """An item's ``(tp, fp, fn)``."""
    return item["tp"], item["fp"], item["fn"]
