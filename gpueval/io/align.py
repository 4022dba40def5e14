"""Align a prediction onto a truth grid (voxel size, world translation, shape) as one step.

Implements CellMap's ``MatchedCrop.load_aligned`` (``shared/specs/cellmap.md`` §4) and is
reusable by any challenge whose predictions may come at another resolution or origin:

1. **level choice** (:func:`choose_level`): among the arrays of a multiscale group, the one
   with the lowest ``‖v − target‖₂ + 10⁶·[any axis coarser than target]`` (arrays without a
   voxel size score 10¹⁸); used for plain groups *and* OME-NGFF ``multiscales`` (for NGFF the
   official code delegates to ``cellmap_data.CellMapImage``, whose exact rule is not in the
   spec; gpueval applies the plain-group rule to the NGFF ``scale`` transforms — a choice);
2. **size guard**: source voxels / target voxels > ``max_ratio`` (4096) → ``Rejected``;
3. **resampling** when the voxel sizes are not ``allclose``: ``skimage.transform.rescale``
   with ``s = source_vs / target_vs``, ``mode="constant"``, ``preserve_range=True``;
   instance labels ``order=0`` without anti-aliasing, cast back to the input dtype; semantic
   (bool → float32 first) ``order=1`` with skimage's default anti-aliasing, then ``> 0.5``;
4. **translation**: the source origin is snapped down to the target grid and the resampled
   image pasted at ``r = sign(t'−T)·floor(|t'−T|/vs)`` voxels into a zero array of the target
   shape (lazy ``dask`` slicing and padding: chunk by chunk);
5. no resampling → no threshold (the raw values reach the metric; CellMap's semantic metric
   then uses ``> 0``);
6. no voxel size at all and a different shape → centre pad/crop to the target shape.

Chunking: every step is lazy and exact chunk by chunk. Resampling (step 3) is
:func:`rescale`: each output block reads only the source region it depends on and reproduces
skimage's one-shot ``rescale`` voxel for voxel (tested against it on random shapes, scales and
chunkings), so memory follows the block size, not the source. The official code rescales
sources estimated > 500 MB as float32 in ~296³ blocks with ``mode="constant"`` edges, which
makes seams at its block borders; that block layout is not specified exactly, so gpueval gives
the one-shot (seam-free) result at every size and can differ from the official result along
those borders for such large sources (likewise, the official large-source path infers a scale
from the shape ratio when no voxel size is given; gpueval always centre pads/crops then).
Centre pad/crop splits an odd difference with the smaller half before (``diff // 2``), an
unknown in the spec.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask import delayed

from gpueval.engine import timed
from gpueval.errors import Rejected

NO_VOXEL_SIZE_SCORE = 1e18
COARSER_PENALTY = 1e6


@dataclass(frozen=True)
class Grid:
    """Target geometry: voxel size and translation in world units (array-axis order), shape."""

    voxel_size: tuple[float, ...]
    translation: tuple[float, ...]
    shape: tuple[int, ...]


def level_score(voxel_size: Sequence[float] | None, target: Sequence[float]) -> float:
    """Score of one multiscale level for a target voxel size (lower is better)."""
    if voxel_size is None:
        return NO_VOXEL_SIZE_SCORE
    v = np.asarray(voxel_size, float)[-len(target):]
    t = np.asarray(target, float)
    return float(np.linalg.norm(v - t) + COARSER_PENALTY * bool(np.any(v > t)))


def choose_level(levels: Sequence[tuple[str, Sequence[float] | None]],
                 target: Sequence[float]) -> str:
    """Name of the best level among ``(name, voxel_size or None)`` (first wins ties)."""
    if not levels:
        raise Rejected("multiscale group holds no array")
    scores = [level_score(v, target) for _, v in levels]
    return levels[int(np.argmin(scores))][0]


def align_to_grid(
    data: Any,
    source_voxel_size: Sequence[float] | None,
    source_translation: Sequence[float] | None,
    target: Grid,
    *,
    instance: bool,
    threshold: float = 0.5,
    max_ratio: float = 4096,
    where: str = "prediction",
) -> da.Array:
    """Resample and shift ``data`` onto ``target`` (see the module docstring).

    Parameters
    ----------
    data : NumPy or dask array (source).
    source_voxel_size, source_translation : geometry of the source (``None`` = unknown; a
        missing translation is 0). Vectors longer than the array rank keep their last entries.
    target : the truth grid.
    instance : instance ids (nearest neighbour) rather than semantic masks (linear + AA).
    threshold : semantic threshold applied after resampling only.
    max_ratio : size guard on source voxels / target voxels.
    where : name used in error messages.

    Returns
    -------
    dask array of ``target.shape``; dtype of the source, or bool after semantic resampling.
    """
    x = data if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=-1)
    ndim = len(target.shape)
    if x.ndim != ndim:
        raise Rejected(f"{where}: {x.ndim}-D array, expected {ndim}-D")
    n_src = math.prod(int(s) for s in x.shape)
    n_tgt = math.prod(int(s) for s in target.shape)
    if n_tgt and n_src / n_tgt > max_ratio:
        raise Rejected(f"{where}: {n_src} voxels is more than {max_ratio:g} times the "
                       f"{n_tgt} voxels of the target crop (size-ratio guard)")
    tvs = np.asarray(target.voxel_size, float)
    if source_voxel_size is not None:
        svs = np.asarray(source_voxel_size, float)[-ndim:]
        if not np.allclose(svs, tvs):
            x = rescale(x, svs / tvs, instance=instance, threshold=threshold)
    elif tuple(x.shape) != tuple(target.shape):
        x = pad_crop_centre(x, target.shape)
    t = np.zeros(ndim) if source_translation is None else \
        np.asarray(source_translation, float)[-ndim:]
    offset = translation_offset(t, target.translation, tvs)
    return paste(x, offset, target.shape)


def translation_offset(source: Sequence[float], target: Sequence[float],
                       voxel_size: Sequence[float]) -> tuple[int, ...]:
    """Voxel offset of the source origin in the target grid (official snapping, §4.4)."""
    vs = np.asarray(voxel_size, float)
    snapped = np.floor(np.asarray(source, float) / vs) * vs
    diff = snapped - np.asarray(target, float)
    return tuple(int(v) for v in np.sign(diff) * np.floor(np.abs(diff) / vs))


def paste(x: da.Array, offset: Sequence[int], shape: Sequence[int]) -> da.Array:
    """Place ``x`` with its voxel 0 at ``offset`` in a zero array of ``shape`` (lazy)."""
    sl, pads = [], []
    for r, n_src, n_tgt in zip(offset, x.shape, shape, strict=True):
        start = max(0, -int(r))
        before = max(0, int(r))
        length = max(0, min(n_src - start, n_tgt - before))
        if length == 0:
            start, before = 0, n_tgt  # no overlap on this axis: all zeros
        sl.append(slice(start, start + length))
        pads.append((min(before, n_tgt), n_tgt - min(before, n_tgt) - length))
    if any(s.stop == s.start for s in sl):  # no overlap at all: an all-zero prediction
        return da.zeros(tuple(int(n) for n in shape), dtype=x.dtype,
                        chunks=x.chunksize if x.size else -1)
    y = x[tuple(sl)]
    if any(p != (0, 0) for p in pads):
        y = da.pad(y, pads, mode="constant", constant_values=0)
    return y


def pad_crop_centre(x: da.Array, shape: Sequence[int]) -> da.Array:
    """Centre pad (zeros) / crop to ``shape`` (used when no voxel size is known)."""
    sl, pads = [], []
    for n, m in zip(x.shape, shape, strict=True):
        d = int(m) - int(n)
        if d >= 0:
            sl.append(slice(0, n))
            pads.append((d // 2, d - d // 2))
        else:
            s = (-d) // 2
            sl.append(slice(s, s + int(m)))
            pads.append((0, 0))
    y = x[tuple(sl)]
    return da.pad(y, pads, mode="constant", constant_values=0) if any(pads) else y


def rescale(x: Any, scale: Sequence[float], *, instance: bool, threshold: float = 0.5,
            block: int = 128, footprint: int = 256) -> da.Array:
    """``skimage.transform.rescale`` as the official one-shot path calls it, chunk by chunk.

    Output equals ``skimage.transform.rescale(img, scale, mode="constant",
    preserve_range=True, ...)`` on the whole image (then ``> threshold`` for semantic), voxel
    for voxel, but each output block reads only the source region it depends on, so memory is
    bounded by the block size, not by the source.

    Why not ``dask_image``/``map_overlap``: rescaling changes the grid, so an output block's
    source region is not a fixed-overlap neighbour of one input chunk; and the result must be
    bit-identical to skimage's, which fixes the arithmetic (below).

    What skimage does, reproduced here (``skimage.transform.resize``, scikit-image 0.26):
    output shape ``max(round(scale·n), 1)``; per axis the zoom ``z = n_in / n_out`` and source
    coordinate ``c = (o + 0.5)·z − 0.5`` in float64 (``scipy.ndimage.zoom``, ``grid_mode``);
    points outside the source read 0 (``grid-constant``). Instance (``order=0``): the value at
    ``floor(c + 0.5)``. Semantic (``order=1``): bool → float32 (integers → float64, as
    skimage's ``convert_to_float``); when any axis shrinks, a Gaussian pre-filter with
    ``σ = max(0, (z − 1)/2)`` (truncate 4, zero outside); then linear weights
    ``1 − t, t`` (``t = c − floor c``) summed over the 2ᴺ corners in C order as
    ``((v·w₀)·w₁)·w₂`` in float64 and stored in the working dtype; finally skimage's clip to
    the source range, which only bites when every source value is > 0 (then the minimum is a
    floor), and ``> threshold``.

    Parameters
    ----------
    x : source (NumPy or dask), any chunking.
    scale : per-axis ``source_vs / target_vs``.
    instance : nearest-neighbour ids (True) or semantic linear + anti-aliasing (False).
    threshold : semantic threshold.
    block : output block edge (voxels), reduced per axis so that one block reads at most
        about ``footprint`` source voxels along that axis.

    Notes
    -----
    Instance ids are carried exactly; skimage passes them through float64, which rounds 64-bit
    ids ≥ 2⁵² (the official result then differs only for such ids — a deliberate choice).
    The official scorer's own block path for sources > 500 MB (seams at ~296³ blocks) is not
    reproduced: its layout is not specified; gpueval gives the one-shot result at any size.
    """
    x = x if isinstance(x, da.Array) else da.from_array(np.asarray(x), chunks=-1)
    n_in = tuple(int(n) for n in x.shape)
    n_out = tuple(max(int(np.round(float(s) * n)), 1) for s, n in zip(scale, n_in, strict=True))
    zoom = np.divide(np.array(n_in, float), np.array(n_out, float))
    coords = [(np.arange(m, dtype=np.float64) + 0.5) * z - 0.5 for m, z in zip(n_out, zoom,
                                                                                strict=True)]
    if instance:
        taps = [np.floor(c + 0.5).astype(np.int64) for c in coords]
        sigma = np.zeros(len(n_in))
        dtype = x.dtype
        floor = None
    else:
        taps = [np.floor(c).astype(np.int64) for c in coords]
        shrink = any(o < i for o, i in zip(n_out, n_in, strict=True))
        sigma = np.maximum(0, (zoom - 1) / 2) if shrink else np.zeros(len(n_in))
        dtype = np.dtype(bool)
        floor = da.nanmin(x)  # skimage clips to the NaN-safe source minimum, used if > 0
    radius = [int(4.0 * sd + 0.5) if sd > 1e-15 else 0 for sd in sigma]
    steps = [max(1, min(block, int(footprint / max(z, 1e-12)))) for z in zoom]
    grid = [list(range(0, m, st)) for m, st in zip(n_out, steps, strict=True)]
    rows = []
    for starts in itertools.product(*grid):
        sel = tuple(slice(a, min(a + st, m)) for a, st, m in zip(starts, steps, n_out,
                                                                 strict=True))
        lo = [int(t[s.start]) - r - 1 for t, s, r in zip(taps, sel, radius, strict=True)]
        hi = [int(t[s.stop - 1]) + r + 3 for t, s, r in zip(taps, sel, radius, strict=True)]
        region = x[tuple(slice(max(a, 0), min(b, n)) for a, b, n in zip(lo, hi, n_in,
                                                                         strict=True))]
        pad = tuple((max(0, -a), max(0, b - n)) for a, b, n in zip(lo, hi, n_in, strict=True))
        local = tuple(t[s] - a for t, s, a in zip(taps, sel, lo, strict=True))
        frac = tuple(c[s] - np.floor(c[s]) for c, s in zip(coords, sel, strict=True))
        shape = tuple(s.stop - s.start for s in sel)
        task = delayed(_rescale_block, pure=True)(
            region, pad, local, frac, tuple(sigma), instance, threshold, floor)
        rows.append(da.from_delayed(task, shape, dtype=dtype))
    return _assemble(rows, [len(g) for g in grid])


def _assemble(blocks: list[da.Array], counts: list[int]) -> da.Array:
    """Nest a C-ordered flat list of blocks for :func:`dask.array.block`."""
    def nest(items: list, dims: list[int]) -> list:
        if len(dims) == 1:
            return items
        k = len(items) // dims[0]
        return [nest(items[i * k:(i + 1) * k], dims[1:]) for i in range(dims[0])]
    return da.block(nest(blocks, counts))


@timed("kernel")
def _rescale_block(region: np.ndarray, pad, local, frac, sigma, instance: bool,
                   threshold: float, floor: Any) -> np.ndarray:
    """One output block of :func:`rescale` from its zero-padded source region."""
    src = np.pad(np.asarray(region), pad) if any(p != (0, 0) for p in pad) else \
        np.asarray(region)
    if instance:
        return src[np.ix_(*local)]
    work = np.float32 if src.dtype.kind == "b" or src.dtype.itemsize <= 4 and \
        src.dtype.kind == "f" else np.float64
    img = src.astype(work)
    if any(sd > 1e-15 for sd in sigma):
        from scipy.ndimage import gaussian_filter

        img = gaussian_filter(img, sigma, mode="constant", cval=0.0, truncate=4.0)
    out = np.zeros(tuple(len(i) for i in local), np.float64)
    for corner in itertools.product((0, 1), repeat=img.ndim):
        v = img[np.ix_(*(i + c for i, c in zip(local, corner, strict=True)))].astype(np.float64)
        for ax, c in enumerate(corner):
            w = frac[ax] if c else 1.0 - frac[ax]
            shape = [1] * img.ndim
            shape[ax] = -1
            v = v * w.reshape(shape)
        out = out + v
    out = out.astype(work)
    if floor is not None and floor > 0:  # skimage clips to the source range (see rescale)
        np.maximum(out, work(floor), out=out)
    return out > threshold
