"""CellMap geometry checks: submitted (or truth) geometry attributes read into vectors and
refused when no real crop has them, before any Dask graph is built.

One rule, one place: the bounds themselves are :func:`gpueval.io.align.check_geometry`'s
(the :class:`~gpueval.limits.Limits` keys ``min_voxel_size``, ``max_voxel_size``,
``max_abs_translation`` and ``max_voxel_size_ratio``), which ``align_to_grid`` applies to
every challenge. CellMap sets stricter values of the same keys in the ``limits:`` section of
``configs/cellmap.yaml`` (voxel sizes 0.1 nm .. 10⁵ nm, |translation| <= 10⁹ nm; the official
crops are 2..128 nm, so anything under 0.1 nm — less than an atom — is a unit mistake such as
micrometres written for nanometres, and is refused with a one-line fix rather than scored as
an almost empty prediction). :func:`check_geometry` here only adds what is CellMap's own: the
vectors must have one entry per axis of the crop (z, y, x), a truth attribute out of bounds is
a :class:`~gpueval.errors.TruthError`, and the message names ``crop/label``.

The size of the alignment graph needs no estimate of its own: ``align_to_grid`` builds a graph
proportional to the chunks of the target crop whatever the voxel sizes, and
``engine.compute`` refuses any graph over ``limits.max_graph_tasks``. A geometry attribute
that is not a list of finite numbers is rejected as well (:func:`_as_vec`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gpueval.errors import Rejected
from gpueval.io import align
from gpueval.io.align import Grid
from gpueval.limits import Limits


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
                   chunks: tuple[int, ...], target: Grid, limits: Limits | None,
                   where: str, error: type[Exception] = Rejected) -> None:
    """Refuse geometry no real crop has, before the alignment builds its Dask graph.

    The bounds are :func:`gpueval.io.align.check_geometry`'s, read from ``limits`` (CellMap's
    defaults: ``limits:`` in ``configs/cellmap.yaml``): every voxel size in
    ``[limits.min_voxel_size, limits.max_voxel_size]`` nm (0.1 .. 10⁵), every
    ``|translation| <= limits.max_abs_translation`` nm (10⁹), and each axis of the voxel size
    within ``limits.max_voxel_size_ratio`` (256) of the crop's, either way. A 20³ label at
    0.1 nm on a 500³ crop at 8 nm passes and is aligned through a graph proportional to the
    crop's chunks; at 0.01 nm it is refused (under the minimum, and 800 times finer).

    Parameters
    ----------
    voxel_size, translation : the submitted (or truth-attribute) geometry, ``None`` = absent;
        finite already (:func:`_as_vec`); longer vectors keep their last entries.
    shape : the array's shape (a rank other than the crop's is left to ``align_to_grid``,
        which refuses it with its own message).
    chunks : the array's largest chunk per axis (unused: the alignment graph no longer
        depends on it; kept so callers need not change).
    target : the crop's grid.
    limits : the bounds; ``None`` = the current ones (:func:`gpueval.limits.current_limits`).
    where : ``crop/label`` for the message.
    error : :class:`Rejected` for a submission, :class:`~gpueval.errors.TruthError` for truth
        attributes (the generic check's :class:`Rejected` is re-raised as this type, its
        message kept and a hint on CellMap's units added).

    Raises
    ------
    error
        One line naming the label, the value, the bound and its ``limits.`` config key.
    """
    del chunks  # see the docstring: the graph bound lives in align_to_grid / engine.compute
    nd = len(target.shape)
    if len(shape) != nd:
        return
    for name, vec in (("voxel_size", voxel_size), ("translation", translation)):
        if vec is not None and len(vec) < nd:
            raise error(f"{where}: {name} {list(vec)} has {len(vec)} entries; expected {nd} "
                        "(z, y, x in nm)")
    vs = None if voxel_size is None else tuple(voxel_size)[-nd:]
    tr = None if translation is None else tuple(translation)[-nd:]
    try:
        align.check_geometry(vs, tr, where=where, bounds=limits,
                             target_voxel_size=target.voxel_size)
    except Rejected as e:
        # CellMap's attributes are nm, z, y, x: say so, since a unit or axis-order mistake
        # is the usual cause of an out-of-bounds value
        raise error(f"{e}; CellMap voxel_size and translation are in nm, z, y, x") from e
