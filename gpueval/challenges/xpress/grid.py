"""XPRESS's grid: daisy's attribute rules, the configured ROI and the crop (xpress.md §1-2).

The official scorer reads the submission through daisy, which places an array in world
coordinates (nm, z y x) from its attributes and checks every ROI against the voxel grid. These
functions reproduce those rules on the attributes and shape alone; nothing is read here.

Documented choices
------------------
* **voxel size / offset** are truncated to integers as the official ``Coordinate`` does
  (:func:`_daisy_grid`); the ROI must be a multiple of the voxel size (the official daisy
  asserts "all ROIs must be multiples of the voxel size"), else Rejected (:func:`_crop`; the
  array's own offset is checked by :func:`~gpueval.challenges.xpress.layout.open_submission`).
* **attributes**: ignored grid attributes (``voxel_size``, ``scale``, ``translation``), a
  missing ``resolution`` (1 nm) and the ``transform.translate`` offset fallback are warnings.
* **test ROI check** (:func:`_roi`: the official exact 334³ @ 99 nm check) is applied to the
  array as stored (``open_submission`` applies ``downsampling`` after it).
* **explicit ROI** entries are truncated with ``int()`` as the official.
"""

from __future__ import annotations

from typing import Any

from gpueval.errors import Rejected
from gpueval.notices import warn


def _daisy_grid(attrs: dict[str, Any], where: str, notes: list[str]
                ) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Voxel size and offset (nm, z,y,x) read as the official daisy reader reads them.

    Voxel size: ``resolution``, else ``pixelResolution.dimensions``, else ``transform.scale``,
    else 1; offset: ``offset``, else ``transform.translate`` (our choice: the spec names no
    fallback), else 0; every entry truncated with ``int()`` (xpress.md §1.1). Other grid
    attributes (``voxel_size``, ``scale``, ``translation``) are ignored as the official ignores
    them, with a note.
    """
    def pick(*paths):
        for path in paths:
            v: Any = attrs
            for key in path:
                v = v.get(key) if isinstance(v, dict) else None
            if v is not None:
                return v
        return None

    def vector(v, default: int, what: str) -> tuple[int, ...]:
        if v is None:
            return (default,) * 3
        try:
            vals = tuple(int(float(x)) for x in (v if isinstance(v, list | tuple) else [v] * 3))
        except (TypeError, ValueError, OverflowError) as e:
            raise Rejected(f"{where}: {what} attribute {v!r} is not a list of numbers") from e
        if len(vals) != 3:
            raise Rejected(f"{where}: {what} attribute {list(v)} needs 3 entries (z,y,x nm)")
        return vals

    voxel = pick(("resolution",), ("pixelResolution", "dimensions"), ("transform", "scale"))
    offset = pick(("offset",), ("transform", "translate"))
    ignored = [k for k in ("voxel_size", "scale", "translation") if k in attrs]
    if ignored and (voxel is None or offset is None):
        notes.append(f"attribute(s) {', '.join(ignored)} ignored as the official reader "
                     "ignores them; it reads 'resolution' and 'offset' (z,y,x nm)")
        warn(f"{where}: attribute(s) {', '.join(ignored)} ignored (the official reader "
             "reads only 'resolution' and 'offset', z,y,x nm); add those attributes")
    if voxel is None:
        warn(f"{where}: no 'resolution' attribute, voxel size taken as 1 nm as the official "
             "reader does; add 'resolution' (z,y,x nm)")
    # a missing offset is 0, the official default and the usual case: no warning
    if pick(("offset",)) is None and offset is not None:
        warn(f"{where}: offset read from 'transform.translate', a gpueval fallback the "
             "official reader is not known to use; add an 'offset' attribute (z,y,x nm)")
    return vector(voxel, 1, "resolution"), vector(offset, 0, "offset")


def _roi(settings, where, vs, off, shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ROI (begin, shape) in nm, z y x; the official test check when asked."""
    roi = settings["roi"]
    if roi == "none":
        return off, tuple(n * v for n, v in zip(shape, vs, strict=True))
    spec = settings["rois"][roi] if isinstance(roi, str) else roi
    begin = tuple(int(float(v)) for v in spec["begin"])       # official: int() of floats
    size = tuple(int(float(v)) for v in spec["shape"])
    if spec.get("exact"):
        want_vs = tuple(int(v) for v in spec["voxel_size"])
        want_shape = tuple(s // v for s, v in zip(size, want_vs, strict=True))
        if vs != want_vs:
            raise Rejected(f"{where}: voxel size {vs} nm (z,y,x), expected {want_vs} nm for "
                           f"the {roi} ROI ('resolution' attribute); or --set roi=none")
        if off != begin or shape != want_shape:
            raise Rejected(f"{where}: array covers offset {off} nm, shape {shape} voxels; "
                           f"the {roi} ROI needs offset {begin} nm ('offset' attribute) and "
                           f"shape {want_shape}")
    return begin, size


def _crop(where, begin, size, vs, off, shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
    end = tuple(o + n * v for o, n, v in zip(off, shape, vs, strict=True))
    if any(b < o or b + s > e for b, s, o, e in zip(begin, size, off, end, strict=True)):
        raise Rejected(f"{where}: array covers [{off}, {end}) nm (z,y,x) but the ROI is "
                       f"[{begin}, {tuple(b + s for b, s in zip(begin, size, strict=True))}) "
                       "nm; submit the whole ROI")
    if any((b - o) % v or s % v for b, s, o, v in zip(begin, size, off, vs, strict=True)):
        raise Rejected(f"{where}: ROI begin {begin} / shape {size} nm is not aligned to the "
                       f"voxel grid (offset {off}, voxel size {vs} nm)")
    start = tuple((b - o) // v for b, o, v in zip(begin, off, vs, strict=True))
    return start, tuple(s // v for s, v in zip(size, vs, strict=True))
