"""Score arrays held in memory: a notebook, a validation loop, a model's output.

Each helper takes the arrays a challenge is naturally made of — U-RISC one 2-D membrane map
per image, MedSegFM one 3-D label volume per case, CellMap one volume per (crop, label), XPRESS
one 3-D instance volume plus a skeleton graph — and returns the same
:class:`~gpueval.result.Result` as ``gpueval score`` on files::

    >>> import gpueval                                                          # doctest: +SKIP
    >>> r = gpueval.arrays.medsegfm({"case1": gts}, {"case1": segs}, spacing=(2.5, .8, .8))
    >>> r.score, r.items[0]["dsc"], r.items[0]["nsd"]                          # doctest: +SKIP

Accepted arrays: NumPy, Dask (stored chunk by chunk, never whole, where the layout is
chunked: CellMap and XPRESS), CuPy or anything exposing ``__cuda_array_interface__``, DLPack
(``__dlpack__``: a torch tensor on CPU or GPU, JAX, …) and anything exposing ``__array__``.

How (one algorithm): the arrays are written to a temporary folder in the challenge's official
layout (``shared/specs/cli.md``) and scored through :func:`gpueval.api.score`, the path the
command line takes — so the numbers are the file path's by construction, every check and
warning included, at the cost of one write of the data to local disk (device arrays are
copied to the host first). The folder is removed afterwards; messages name ``<tmp>`` for it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from gpueval.result import Result

__all__ = ["cellmap", "host_array", "medsegfm", "score_arrays", "urisc", "xpress"]


def host_array(x: Any) -> Any:
    """``x`` as a NumPy array (or a Dask array of NumPy chunks, kept lazy).

    Parameters
    ----------
    x : NumPy, Dask, CuPy / ``__cuda_array_interface__``, DLPack or ``__array__`` array.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        Host memory; a GPU array is copied to the host once; NumPy and CPU DLPack arrays are
        not copied.

    Raises
    ------
    TypeError
        ``x`` is none of the above.
    """
    if isinstance(x, np.ndarray):
        return x
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - dask is a dependency
        da = None
    if da is not None and isinstance(x, da.Array):
        if isinstance(x._meta, np.ndarray):
            return x
        return x.map_blocks(_block_to_host, meta=np.empty((0,) * x.ndim, x.dtype))
    if hasattr(x, "detach"):  # torch: a tensor that requires grad refuses every export
        x = x.detach()
    if hasattr(x, "__cuda_array_interface__"):
        import cupy

        return cupy.asnumpy(cupy.asarray(x))
    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        device_type = int(x.__dlpack_device__()[0])
        if device_type in (1, 3):  # kDLCPU, kDLCUDAHost: readable in place
            return np.from_dlpack(x)
        import cupy

        return cupy.asnumpy(cupy.from_dlpack(x))
    if hasattr(x, "__array__"):
        return np.asarray(x)
    raise TypeError(f"not an array: {type(x).__name__} (expected NumPy, Dask, CuPy, DLPack or "
                    "an object with __array__)")


def _block_to_host(block: Any) -> np.ndarray:
    return block.get() if hasattr(block, "get") and not isinstance(block, np.ndarray) \
        else np.asarray(block)


def _named(x: Any, default: str) -> Mapping[Any, Any]:
    """``x`` as ``{name: array}``: a mapping as is, one array as ``{default: x}``."""
    return x if isinstance(x, Mapping) else {default: x}


def _in_memory(x: Any) -> np.ndarray:
    h = host_array(x)
    return np.asarray(h.compute() if hasattr(h, "compute") else h)


def _store(group: Any, name: str, x: Any, chunks: Sequence[int] | None = None) -> Any:
    """Create array ``name`` in zarr ``group`` and fill it (a Dask array chunk by chunk)."""
    h = host_array(x)
    shape = tuple(int(n) for n in h.shape)
    chunks = tuple(chunks) if chunks else tuple(min(n, 64) or 1 for n in shape)
    arr = group.create_array(name, shape=shape, dtype=h.dtype, chunks=chunks)
    if hasattr(h, "compute"):
        import dask.array as da

        da.store(h.rechunk(chunks), arr, lock=False)
    else:
        arr[...] = h
    return arr


@contextmanager
def _writing(kwargs: dict[str, Any], *volumes: Mapping[Any, Any]) -> Iterator[None]:
    """The ``writing`` phase (bytes) while the arrays go to the temporary folder; bars only
    when the call asked for progress, as :func:`gpueval.api.score`."""
    from gpueval import progress

    total = sum(_nbytes(v) for m in volumes for v in m.values())
    quiet = nullcontext() if kwargs.get("progress") else progress.enabled(False)
    with quiet, progress.phase("writing", total=total, unit="B"):
        yield


@contextmanager
def _folders() -> Iterator[tuple[Path, Path]]:
    """Empty ``truth`` and ``submission`` folders for the file-based scorer, removed (with
    what was written in them) when the block ends."""
    with tempfile.TemporaryDirectory(prefix="gpueval-arrays-") as tmp:
        truth, submission = Path(tmp) / "truth", Path(tmp) / "submission"
        truth.mkdir()
        submission.mkdir()
        yield truth, submission


def _nbytes(x: Any) -> int:
    if isinstance(x, list | tuple):
        return sum(_nbytes(v) for v in x)
    n = getattr(x, "nbytes", None)
    if n is None and hasattr(x, "shape") and hasattr(x, "dtype"):
        n = int(np.prod(x.shape)) * np.dtype(str(x.dtype).replace("torch.", "")).itemsize
    return int(n or 0)


def _wrote(name: Any, x: Any) -> None:
    from gpueval import progress

    progress.set_item(str(name))
    progress.advance(_nbytes(x))


def _score(challenge: str, truth: Path, submission: Path, kwargs: dict[str, Any]) -> Result:
    from gpueval.api import score

    return score(challenge, truth, submission, **kwargs)


# --------------------------------------------------------------------------------------------
# U-RISC


def urisc(truth: Mapping[str, Any] | Any, submission: Mapping[str, Any] | Any,
          **kwargs: Any) -> Result:
    """U-RISC membrane F-score of 2-D images given as arrays.

    Parameters
    ----------
    truth : ``{image name: 2-D uint8 array}``, the ground-truth membrane images as stored
        (the scorer binarises them as the config's ``variant`` says); one array is image
        ``"image"``.
    submission : ``{image name: 2-D uint8 array}``, the predicted membrane images; an image of
        the truth missing here is scored as the file path scores a missing file.
    **kwargs : passed to :func:`gpueval.api.score` (``overrides``, ``config``, ``device``,
        ``scheduler``, ``progress``).

    Returns
    -------
    Result
        Items keyed by image name with ``precision``, ``recall``, ``f1``.
    """
    import tifffile
    from PIL import Image

    truth, submission = _named(truth, "image"), _named(submission, "image")
    with _folders() as (gt_dir, sub_dir):
        with _writing(kwargs, truth, submission):
            for name, image in truth.items():
                Image.fromarray(_uint8_image(image, f"truth {name}")).save(gt_dir / f"{name}.png")
                _wrote(name, image)
            for name, image in submission.items():
                tifffile.imwrite(sub_dir / f"{name}.tiff", _in_memory(image))
                _wrote(name, image)
        return _score("urisc", gt_dir, sub_dir, kwargs)


def _uint8_image(x: Any, where: str) -> np.ndarray:
    a = _in_memory(x)
    if a.dtype != np.uint8:
        raise TypeError(f"{where}: U-RISC images are uint8 (got {a.dtype}); PNG stores no "
                        "other type the official scorer reads")
    return a


# --------------------------------------------------------------------------------------------
# MedSegFM


def medsegfm(truth: Mapping[str, Any] | Any, submission: Mapping[str, Any] | Any, *,
             spacing: Sequence[float] | Mapping[str, Sequence[float]],
             text_prompts: Mapping[str, Mapping[str, Any]] | None = None,
             **kwargs: Any) -> Result:
    """MedSegFM scores of 3-D label volumes, one per case.

    Parameters
    ----------
    truth : ``{case name: (D, H, W) integer array}`` of ground-truth labels (``gts``); one
        array is case ``"case"``.
    submission : ``{case name: (D, H, W) array}`` (``segs``); for the interactive track
        (``overrides=["track=interactive"]``) a sequence of up to six such arrays, one per click
        step (a missing step counts as all-zero, as on files).
    spacing : voxel spacing in mm (z, y, x), one for every case or ``{case: spacing}``.
    text_prompts : text track only: ``{case: the official prompt dict}``.
    **kwargs : passed to :func:`gpueval.api.score`.

    Returns
    -------
    Result
        Items keyed by case: ``dsc``, ``nsd`` (semantic), ``f1``, ``dsc_tp`` (instance), and
        the interactive track's ``dsc_auc``, ``nsd_auc``, ``dsc_final``, ``nsd_final``.
    """
    truth, submission = _named(truth, "case"), _named(submission, "case")
    with _folders() as (gt_dir, sub_dir):
        with _writing(kwargs, truth, submission):
            for name, gts in truth.items():
                sp = spacing[name] if isinstance(spacing, Mapping) else spacing
                extra = {}
                if text_prompts is not None and name in text_prompts:
                    extra["text_prompts_json"] = np.array(json.dumps(text_prompts[name]))
                np.savez(gt_dir / f"{name}.npz", gts=_in_memory(gts),
                         spacing=np.asarray(sp, np.float64), **extra)
                _wrote(name, gts)
            for name, segs in submission.items():
                if isinstance(segs, list | tuple):  # interactive: one volume per click step
                    (sub_dir / name).mkdir()
                    for k, step in enumerate(segs, start=1):
                        np.savez(sub_dir / name / f"step_{k}.npz", segs=_in_memory(step))
                else:
                    np.savez(sub_dir / f"{name}.npz", segs=_in_memory(segs))
                _wrote(name, segs)
        return _score("medsegfm", gt_dir, sub_dir, kwargs)


# --------------------------------------------------------------------------------------------
# CellMap


def cellmap(truth: Mapping[tuple[int | str, str], Any],
            submission: Mapping[tuple[int | str, str], Any], *,
            voxel_size: Sequence[float] | Mapping[tuple[int | str, str], Sequence[float]],
            translation: Sequence[float] | Mapping[tuple[int | str, str], Sequence[float]]
            = (0.0, 0.0, 0.0),
            submission_voxel_size: Sequence[float] | Mapping | None = None,
            submission_translation: Sequence[float] | Mapping | None = None,
            chunks: Sequence[int] | None = None, **kwargs: Any) -> Result:
    """CellMap scores of volumes given per (crop, label).

    Parameters
    ----------
    truth : ``{(crop, label): 3-D array}``; ``crop`` is the crop id (``123`` or ``"crop123"``),
        ``label`` a class name (``"mito"``; instance classes are those of the config).
    submission : the same keys with the predicted volumes; a truth key missing here is scored
        as missing, as on files.
    voxel_size, translation : of the truth volumes, in nm (z, y, x), one for all or per key.
        The manifest of the config (``--set manifest=``) still decides each crop's target
        geometry, exactly as on files.
    submission_voxel_size, submission_translation : of the predictions when they differ from
        the truth's (the prediction is resampled as the official scorer does).
    chunks : zarr chunk shape to store with (default up to 64³); a Dask array is written chunk
        by chunk.
    **kwargs : passed to :func:`gpueval.api.score`.

    Returns
    -------
    Result
        One item per truth (crop, label), ``id`` = ``crop<ID>/<label>``.
    """
    with tempfile.TemporaryDirectory(prefix="gpueval-arrays-") as tmp:
        roots = {"truth": Path(tmp) / "truth.zarr", "submission": Path(tmp) / "submission.zarr"}
        with _writing(kwargs, truth, submission):
            _write_cellmap(roots, truth, submission, voxel_size, translation,
                           submission_voxel_size, submission_translation, chunks)
        return _score("cellmap", roots["truth"], roots["submission"], kwargs)


def _write_cellmap(roots, truth, submission, voxel_size, translation, submission_voxel_size,
                   submission_translation, chunks) -> None:
    import zarr

    def pick(value, key):
        return value[key] if isinstance(value, Mapping) else value

    for side, volumes in (("truth", truth), ("submission", submission)):
        root = zarr.open_group(str(roots[side]), mode="w", zarr_format=2)
        for (crop, label), volume in volumes.items():
            crop_name = crop if str(crop).startswith("crop") else f"crop{crop}"
            vs = pick(voxel_size, (crop, label))
            tr = pick(translation, (crop, label))
            if side == "submission":
                if submission_voxel_size is not None:
                    vs = pick(submission_voxel_size, (crop, label))
                if submission_translation is not None:
                    tr = pick(submission_translation, (crop, label))
            arr = _store(root.require_group(crop_name), label, volume, chunks)
            arr.attrs["voxel_size"] = [float(v) for v in vs]
            arr.attrs["translation"] = [float(t) for t in tr]
            _wrote(f"{crop_name}/{label}", volume)


# --------------------------------------------------------------------------------------------
# XPRESS


def xpress(skeleton: Any, segmentation: Any, *, voxel_size: Sequence[float],
           offset: Sequence[float] = (0, 0, 0), chunks: Sequence[int] | None = None,
           **kwargs: Any) -> Result:
    """XPRESS ERL/Rand/VOI of an instance volume against a skeleton graph.

    Parameters
    ----------
    skeleton : a ``networkx.Graph`` as the official ground truth (node attributes
        ``skeleton_id`` and ``x``/``y``/``z`` in nm per the spec), a
        :class:`gpueval.io.skeleton.Skeleton`, or ``(node_ids, positions_xyz_nm, edges)``.
    segmentation : the (z, y, x) instance volume (Dask: stored chunk by chunk).
    voxel_size, offset : of ``segmentation`` in nm (z, y, x) — the dataset's ``resolution``
        and ``offset`` attributes on files.
    chunks : zarr chunk shape to store with (default up to 64³).
    **kwargs : passed to :func:`gpueval.api.score`; e.g. ``overrides={"roi": "none"}`` for a
        volume that is not the official 334³ test ROI.

    Returns
    -------
    Result
        ``metrics`` with ``erl``, ``rand_split`` … and the headline ``xpress_erl_rand``.
    """
    import zarr

    from gpueval.io.skeleton import Skeleton, save_skeleton_npz

    with tempfile.TemporaryDirectory(prefix="gpueval-arrays-") as tmp:
        skel_path = Path(tmp) / "skeleton.npz"
        if isinstance(skeleton, tuple) and len(skeleton) == 3:
            skeleton = Skeleton(*(np.asarray(a) for a in skeleton))
        if isinstance(skeleton, Skeleton):
            save_skeleton_npz(skeleton, skel_path)
        else:  # a networkx graph: through the same restricted reader as the official pickle
            import pickle

            skel_path = Path(tmp) / "skeleton.pkl"
            skel_path.write_bytes(pickle.dumps(skeleton))
        sub = Path(tmp) / "submission.zarr"
        with _writing(kwargs, {"submission": segmentation}):
            group = zarr.open_group(str(sub), mode="w")
            arr = _store(group, "submission", segmentation, chunks)
            arr.attrs["resolution"] = [_plain(v) for v in voxel_size]
            arr.attrs["offset"] = [_plain(v) for v in offset]
            _wrote("submission", segmentation)
        return _score("xpress", skel_path, sub, kwargs)


def _plain(v: Any) -> int | float:
    """A JSON number as a submitter's file would hold it (whole numbers as integers)."""
    f = float(v)
    return int(f) if f.is_integer() else f


# --------------------------------------------------------------------------------------------

_HELPERS = {"urisc": urisc, "medsegfm": medsegfm, "cellmap": cellmap, "xpress": xpress}


def score_arrays(challenge: str, truth: Any, submission: Any, **kwargs: Any) -> Result:
    """Score arrays for ``challenge``: :func:`urisc`, :func:`medsegfm`, :func:`cellmap` or
    :func:`xpress` (XPRESS: ``truth`` is the skeleton, ``submission`` the volume).

    Raises
    ------
    UsageError
        A challenge without an array form (REFUGE's input is images plus CSV tables).
    """
    from gpueval.errors import UsageError

    if challenge not in _HELPERS:
        raise UsageError(f"{challenge} has no array form; score its files with gpueval.score "
                         f"(array forms: {', '.join(_HELPERS)})")
    return _HELPERS[challenge](truth, submission, **kwargs)
