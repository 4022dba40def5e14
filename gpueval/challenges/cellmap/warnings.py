"""CellMap warnings: what is skipped, ignored or read differently than the submitter likely meant.

Scores are never changed by them; each names the crop/label and the fix
(:func:`submission_warnings`, :func:`label_warnings`): crops and labels not submitted (scored
as missing); top-level folders and labels that no truth names (ignored); case-only name
mismatches (``Mito`` for ``mito``: missing); under ``compat=official`` labels written as a
group (plain multiscale or OME-NGFF, with the level ``--set compat=corrected`` would read) or
as zarr v3 (missing), and a truth ``<label>_mask`` scored as a label; a missing
``translation`` when the crop's origin is not 0; a missing ``voxel_size`` with a shape other
than the crop's (centre pad/crop); a voxel size other than the crop's (resampled); a
translation that leaves part of the crop unpredicted (a larger prediction around the crop is
not warned about); voxel size or translation that match the crop only reversed (x, y, z
order); values that look like the other class type, from a sample of at most
:data:`SAMPLE_BLOCKS` chunks (instance labels holding fractions, or one value where the truth
has several ids; semantic labels holding 3+ integer ids, or floats in (0, 0.5] on the crop's
grid, which the official ``> 0`` counts as foreground); truth attributes that disagree with
the manifest row (the row is used) or a truth shape that differs from the shipped manifest's
row (the attributes are used).

Each goes to :func:`gpueval.notices.warn` (``Result.warnings``, ``validate``'s ``.warnings``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from gpueval.challenges.cellmap.checks import _as_vec
from gpueval.challenges.cellmap.layout import (
    Submission,
    TruthCrop,
    _any_stored,
    _attrs,
    _geometry,
    _group_level,
    _is_array,
    _is_group,
    _is_v2_array,
    _zarr_json,
    _zarr_v2_meta,
    stored_chunk_grid,
)
from gpueval.challenges.cellmap.options import Options
from gpueval.errors import Rejected
from gpueval.io.align import Grid, translation_offset
from gpueval.io.arrays import open_volume, read_region
from gpueval.notices import warn


def submission_warnings(crops: list[TruthCrop], sub: Submission) -> None:
    """Warn about whole crops not submitted, and about submitted folders and labels that no
    ground truth names (ignored by the scorer, as the official one ignores them)."""
    for t in sub.extra:
        warn(f"{t}: not a crop of the ground truth ({_some(c.name for c in crops)}); "
             "ignored — name crop folders crop<ID>")
    for crop in crops:
        if crop.name not in sub.crops:
            warn(f"{crop.name}: not submitted; its {len(crop.labels)} label(s) "
                 f"({_some(crop.labels)}) score as missing — add {crop.name}/<label> arrays")
            continue
        known = {lab.lower() for lab in crop.labels}
        for name in sorted(sub.labels.get(crop.name, ())):
            if name not in crop.labels and name.lower() not in known:
                warn(f"{crop.name}/{name}: not a label of this crop's ground truth "
                     f"({_some(crop.labels)}); ignored — check the label name")


def _some(names: Any, n: int = 6) -> str:
    names = list(names)
    return ", ".join(names[:n]) + (f", … ({len(names)} in all)" if len(names) > n else "")


def label_warnings(crop: TruthCrop, label: str, sub: Submission, grid: Grid, opts: Options,
                   *, content: bool = True) -> None:
    """Warn about one (crop, label): not read under the current ``compat`` (group, zarr v3,
    case-only name mismatch, missing), geometry absent or different from ``grid`` (voxel
    size, translation, swapped axis order) and, with ``content``, values that look like the
    other class type (a sample of at most a few chunks is read)."""
    where = f"{crop.name}/{label}"
    folder = sub.crops.get(crop.name)
    if folder is None:
        return  # the whole crop is missing: said once by submission_warnings
    submitted = sub.labels.get(crop.name, set())
    node = folder / label
    if label not in submitted:
        other = sorted(n for n in submitted if n.lower() == label.lower())
        base = label.removesuffix("_mask")
        if base != label and base in crop.arrays and opts.compat == "official":
            warn(f"{where}: the truth's mask for {base}; the official scorer also scores it "
                 "as a semantic label, missing here (every voxel a false negative) — "
                 "--set compat=corrected uses it only as a mask")
        elif other:
            warn(f"{where}: not submitted, but {crop.name}/{other[0]} was: label names are "
                 f"case-sensitive, so it scores as missing — rename {other[0]} to {label}")
        else:
            warn(f"{where}: not submitted; scores as missing")
        return
    instance = label in opts.instance_classes
    corrected = "--set compat=corrected"
    if _is_array(node):
        if opts.compat == "official" and not _is_v2_array(node):
            warn(f"{where}: a zarr v3 array; the official scorer reads zarr v2 only, so it "
                 f"scores as missing — write it as zarr v2 ({corrected} reads it as is)")
            return
        vs, tr = _geometry(_attrs(node))
        data_node = node
    elif _is_group(node):
        try:
            level, vs, tr, ngff = _group_level(node, grid)
        except Rejected:
            level, vs, tr, ngff = None, None, None, False
        kind = "an OME-NGFF multiscale group" if ngff else "a multiscale group"
        if opts.compat == "official":
            read = (f"{corrected} would read its level {level!r} (voxel size "
                    f"{_fmt(vs)})" if level is not None else
                    f"{corrected} finds no array level in it")
            warn(f"{where}: submitted as {kind}; the official scorer lists arrays only, so "
                 f"it scores as missing — write {where} as one zarr v2 array ({read})")
            return
        if level is None or not _is_array(node / level):
            return  # the score rejects it with its own message
        data_node = node / level
    else:
        warn(f"{where}: neither a zarr array nor a group; scores as missing — write a zarr "
             "v2 array")
        return
    svs, str_ = _as_vec(vs, where), _as_vec(tr, where)
    shape = _shape_of(data_node)
    nd = len(grid.shape)
    if shape is None or len(shape) != nd or any(v is not None and len(v) < nd
                                                for v in (svs, str_)):
        return  # unreadable, wrong rank or short vectors: rejected by the score itself
    _geometry_warnings(where, svs, str_, shape, grid, instance)
    if content:
        resampled = svs is not None and not np.allclose(
            np.asarray(svs)[-len(grid.shape):], grid.voxel_size)
        _content_warnings(where, data_node, crop.path / label, instance, resampled)


def _fmt(v: Any) -> str:
    try:
        return "[" + ", ".join(f"{float(x):g}" for x in v) + "]"
    except (TypeError, ValueError):
        return repr(v)


def _shape_of(node: Path) -> tuple[int, ...] | None:
    meta = _zarr_v2_meta(node)
    if meta is not None:
        return tuple(meta["shape"])
    shape = _zarr_json(node).get("shape")
    try:
        return tuple(int(n) for n in shape) if isinstance(shape, list) else None
    except (TypeError, ValueError):
        return None


def _no_overlap(offset: tuple[int, ...], shape: tuple[int, ...], target: tuple[int, ...]
                ) -> bool:
    return any(r + n <= 0 or r >= m for r, n, m in zip(offset, shape, target, strict=True))


def _geometry_warnings(where: str, svs: tuple[float, ...] | None,
                       str_: tuple[float, ...] | None, shape: tuple[int, ...], grid: Grid,
                       instance: bool) -> None:
    """Voxel size / translation absent, different from the crop's, or in reversed order."""
    nd = len(grid.shape)
    tvs = np.asarray(grid.voxel_size, float)
    tgt_t = np.asarray(grid.translation, float)
    want_vs, want_t = _fmt(tvs), _fmt(tgt_t)
    out_shape = tuple(shape)
    if svs is None:
        if out_shape != tuple(grid.shape):
            warn(f"{where}: no voxel_size attribute and shape {list(shape)} differs from the "
                 f"crop's {list(grid.shape)}; centre padded/cropped as the official scorer "
                 f"does — add voxel_size={want_vs} (z, y, x nm) or write the crop's shape")
            out_shape = tuple(grid.shape)
    elif len(svs) >= nd:
        v = np.asarray(svs, float)[-nd:]
        if not np.allclose(v, tvs):
            out_shape = tuple(max(int(np.round(f * n)), 1) for f, n in zip(v / tvs, shape,
                                                                           strict=True))
            if np.allclose(v[::-1], tvs):
                warn(f"{where}: voxel_size {_fmt(v)} matches the crop's {want_vs} only "
                     "reversed (x, y, z order?); read as z, y, x it is resampled — write it "
                     "in z, y, x order")
            else:
                how = "nearest neighbour" if instance else \
                    "linear with anti-aliasing, then > 0.5"
                warn(f"{where}: voxel_size {_fmt(v)} nm differs from the crop's {want_vs}; "
                     f"resampled ({how}) as the official scorer does — write it at "
                     f"{want_vs} nm to be scored as submitted")
    if str_ is None:
        if np.any(tgt_t != 0):
            offset = translation_offset(np.zeros(nd), tgt_t, tvs)
            gone = " and does not overlap the crop at all (scores as empty)" \
                if _no_overlap(offset, out_shape, grid.shape) else ""
            warn(f"{where}: no translation attribute, so its origin is taken as 0, not the "
                 f"crop's {want_t} nm: shifted by {list(offset)} voxels{gone} — add "
                 f"translation={want_t} (z, y, x nm)")
        return
    if len(str_) < nd:
        return
    t = np.asarray(str_, float)[-nd:]
    offset = translation_offset(t, tgt_t, tvs)
    if not any(offset):
        return
    gone = " and does not overlap the crop at all (scores as empty)" \
        if _no_overlap(offset, out_shape, grid.shape) else ""
    swapped = not any(translation_offset(t[::-1], tgt_t, tvs))
    covers = all(r <= 0 and r + n >= m for r, n, m in zip(offset, out_shape, grid.shape,
                                                         strict=True))
    if covers and not swapped:
        return  # a larger prediction around the crop: cropping it is what was meant
    if swapped:
        warn(f"{where}: translation {_fmt(t)} matches the crop's {want_t} only reversed "
             f"(x, y, z order?); read as z, y, x it shifts the prediction by {list(offset)} "
             f"voxels{gone} — write it in z, y, x order")
    else:
        warn(f"{where}: translation {_fmt(t)} nm is {list(offset)} voxels off the crop's "
             f"origin {want_t}; the prediction is shifted, leaving part of the crop unpredicted"
             f"{gone} — check it is the world position of voxel [0, 0, 0], z, y, x nm")


#: how many chunks of a submitted label the class-type check reads, and their edge cap
SAMPLE_BLOCKS = 4
SAMPLE_EDGE = 64


def _sample(node: Path) -> np.ndarray | None:
    """Up to :data:`SAMPLE_BLOCKS` blocks (each cut to :data:`SAMPLE_EDGE` per axis) of an
    array, preferring stored zarr v2 chunks, flattened; ``None`` when unreadable."""
    meta = _zarr_v2_meta(node)
    grid = (_zarr_json(node).get("chunk_grid") or {}).get("configuration") or {}
    storage = meta["chunks"] if meta is not None else grid.get("chunk_shape")
    try:
        # one dask block per storage chunk: the sample reads a few chunks, never ~64 MiB
        # groups of them (the score reads every chunk anyway; this adds at most a few)
        x = open_volume(node, finite=False, chunks=tuple(
            max(int(c), SAMPLE_EDGE) for c in storage) if storage else None).data
    except (Rejected, TypeError, ValueError):
        return None
    if x.size == 0:
        return np.zeros(0, x.dtype)
    idx = np.arange(math.prod(x.numblocks))
    stored = stored_chunk_grid(node)
    if stored is not None and meta is not None:
        hit = _any_stored(stored, meta["chunks"], x.chunks).ravel()
        if hit.any():
            idx = np.flatnonzero(hit)
    pick = idx[np.unique(np.linspace(0, len(idx) - 1, SAMPLE_BLOCKS).round().astype(int))]
    parts = []
    for flat in pick:
        index = np.unravel_index(int(flat), x.numblocks)
        # the block's first SAMPLE_EDGE per axis, asked of the storage (read_region): a dask
        # slice would decode the whole dask chunk first
        region = tuple(slice(int(sum(c[:i])), int(sum(c[:i])) + min(int(c[i]), SAMPLE_EDGE))
                       for c, i in zip(x.chunks, index, strict=True))
        try:
            parts.append(read_region(x, region).ravel())
        except (Rejected, OSError, ValueError, TypeError):
            return None  # a best-effort look: the score reads it and says what is wrong
    return np.concatenate(parts)


def _content_warnings(where: str, node: Path, truth: Path, instance: bool,
                      resampled: bool) -> None:
    """Values that look like the other class type (semantic vs instance), from a sample."""
    vals = _sample(node)
    if vals is None or vals.size == 0:
        return
    if vals.dtype.kind == "f":
        vals = vals[~np.isnan(vals)]
    nonzero = vals[vals != 0]
    if nonzero.size == 0:
        return
    ids = np.unique(nonzero)
    if instance:
        if vals.dtype.kind == "f" and np.any(ids != np.round(ids)):
            frac = ids[ids != np.round(ids)][0]
            warn(f"{where}: an instance label holding fractional values such as {frac:g} "
                 "(probabilities?); every distinct value is an instance id to the scorer — "
                 "submit integer instance ids")
        elif ids.size == 1:
            gt = _sample(truth)
            gt_ids = np.unique(gt[gt != 0]) if gt is not None else np.zeros(0)
            if gt_ids.size > 1:
                warn(f"{where}: an instance label holding the single value {ids[0]:g} where "
                     f"the ground truth has {gt_ids.size}+ ids (a semantic mask?); the scorer "
                     "splits it into connected components, so touching objects merge — "
                     "submit one id per object")
        return
    if vals.dtype.kind in "iu" and ids.size > 2:
        warn(f"{where}: a semantic label holding {ids.size}+ distinct values up to "
             f"{ids.max():g} (instance ids?); semantic scoring counts every non-zero voxel as "
             "foreground — fine if meant, else check the label name")
    elif vals.dtype.kind == "f" and not resampled and np.any((ids > 0) & (ids <= 0.5)):
        low = ids[(ids > 0) & (ids <= 0.5)][0]
        warn(f"{where}: float values such as {low:g} (probabilities?) on the crop's grid; the "
             "official scorer counts every value > 0 as foreground here (no 0.5 threshold) — "
             "threshold the prediction before submitting")
