"""CellMap geometry checks: submitted (or truth) geometry attributes read into vectors and
refused when no real crop has them, before any Dask graph is built.

Geometry sanity (``geometry`` in the config, bounds
:data:`gpueval.challenges.cellmap.options.GEOMETRY_DEFAULTS`): a submitted voxel size,
translation or resampling factor outside the configured bounds, or an alignment that would
create more than ``max_align_blocks`` Dask blocks, is rejected before its graph is built
(:func:`check_geometry`); truth attributes used as the target grid are held to the same bounds
(a :class:`~gpueval.errors.TruthError`). A geometry attribute that is not a list of finite
numbers is rejected as well (:func:`_as_vec`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gpueval.errors import Rejected
from gpueval.io.align import Grid


def _as_vec(v: Any, where: str) -> tuple[float, ...] | None:
    if v is None:
        return None
    try:
        out = tuple(float(x) for x in (v if isinstance(v, list | tuple) else [v]))
    except (TypeError, ValueError) as e:
        raise Rejected(f"{where}: geometry attribute {v!r} is not a list of numbers") from e
    if not all(np.isfinite(out)):
        raise Rejected(f"{where}: geometry attribute {v!r} is not finite")
    return out


def check_geometry(voxel_size: tuple[float, ...] | None,
                   translation: tuple[float, ...] | None, shape: tuple[int, ...],
                   chunks: tuple[int, ...], target: Grid, limits: Mapping[str, float],
                   where: str, error: type[Exception] = Rejected) -> None:
    """Refuse geometry no real crop has, before the alignment builds its Dask graph.

    A voxel size of 0.01 nm on a 500³ crop makes the resampled array tiny and the paste one
    task per voxel (10⁸ tasks); 1e5 times coarser makes the resampling graph huge. Bounds:
    ``limits`` (``geometry`` in the config): voxel sizes in ``[min_voxel_size,
    max_voxel_size]`` nm, ``|translation| <= max_abs_translation`` nm, source/target voxel
    size within ``max_scale_factor`` either way per axis, and at most ``max_align_blocks``
    Dask blocks created by resampling and pasting.

    Parameters
    ----------
    voxel_size, translation : the submitted (or truth-attribute) geometry, ``None`` = absent;
        finite already (:func:`_as_vec`); longer vectors keep their last entries.
    shape, chunks : the array's shape and largest chunk per axis.
    target : the crop's grid.
    limits : the bounds (:data:`GEOMETRY_DEFAULTS` keys).
    where : ``crop/label`` for the message.
    error : :class:`Rejected` for a submission, :class:`TruthError` for truth attributes.

    Raises
    ------
    error
        One line naming the label, the value, the bound and its config key.
    """
    nd = len(target.shape)
    if len(shape) != nd:
        return  # align_to_grid refuses the dimensionality with its own message
    tvs = np.asarray(target.voxel_size, float)
    for name, vec in (("voxel_size", voxel_size), ("translation", translation)):
        if vec is not None and len(vec) < nd:
            raise error(f"{where}: {name} {list(vec)} has {len(vec)} entries; expected {nd} "
                        "(z, y, x in nm)")
    scaled = np.asarray(shape, float)
    steps = np.asarray([max(1, min(int(c), int(n))) for c, n in zip(chunks, shape,
                                                                     strict=True)], float)
    resample_blocks = 0.0
    if voxel_size is not None:
        v = np.asarray(voxel_size, float)[-nd:]
        lo, hi = limits["min_voxel_size"], limits["max_voxel_size"]
        if np.any(v < lo) or np.any(v > hi):
            raise error(f"{where}: voxel_size {v.tolist()} is outside the sane range "
                        f"[{lo:g}, {hi:g}] nm (config geometry.min_voxel_size/max_voxel_size);"
                        " write the voxel size in nm, z, y, x")
        ratio = v / tvs
        far = limits["max_scale_factor"]
        if np.any(ratio > far) or np.any(ratio < 1 / far):
            raise error(f"{where}: voxel_size {v.tolist()} differs from the crop's "
                        f"{tvs.tolist()} nm by more than a factor {far:g} on an axis (config "
                        "geometry.max_scale_factor); write the prediction near the crop's "
                        "voxel size")
        if not np.allclose(v, tvs):
            # mirrors align.rescale's output shape and block edge (128, footprint 256)
            scaled = np.maximum(np.round(ratio * np.asarray(shape, float)), 1)
            zoom = np.asarray(shape, float) / scaled
            steps = np.minimum(np.maximum(1, np.minimum(128, np.floor(256 / zoom))), scaled)
            resample_blocks = float(np.prod(np.ceil(scaled / steps)))
    if translation is not None:
        t = np.asarray(translation, float)[-nd:]
        if np.any(np.abs(t) > limits["max_abs_translation"]):
            raise error(f"{where}: translation {t.tolist()} nm is beyond "
                        f"{limits['max_abs_translation']:g} nm (config "
                        "geometry.max_abs_translation); write the crop's world origin in nm")
    # the paste pads with blocks as large as the (resampled) array's own blocks
    paste_blocks = float(np.prod(np.ceil(np.asarray(target.shape, float) / steps)))
    blocks = resample_blocks + paste_blocks
    if blocks > limits["max_align_blocks"]:
        raise error(f"{where}: aligning this array ({list(shape)} voxels at voxel size "
                    f"{list(voxel_size) if voxel_size else 'unknown'}) onto the crop's "
                    f"{list(target.shape)} would take ~{blocks:.3g} Dask blocks (config "
                    f"geometry.max_align_blocks = {limits['max_align_blocks']:g}); write the "
                    "prediction on the crop's grid or with larger chunks")
