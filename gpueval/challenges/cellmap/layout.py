"""CellMap layouts: finding and reading the truth and the submission, with the format quirks.

Layouts
-------
* truth: ``<truth>/crop<ID>/<label>`` zarr arrays (v2, or v3) with optional
  ``<label>_mask``; the labels scored for a crop are the *arrays* of its GT group.
* submission: a ``.zip`` of a zarr v2 hierarchy, an unzipped folder, or a folder holding
  exactly one zip; ``<root>/crop<ID>/<label>``. A single nested ``*.zarr`` folder becomes the
  root (more than one → rejected); when no top-level folder names a GT crop, ``crop`` is
  prepended to the folder names (``123`` → ``crop123``); still none → rejected. A zip is read
  through :class:`~gpueval.io.archive.SafeArchive` and only the members of GT crops/labels are
  extracted, to a fresh temporary folder (the official reuse of an existing
  ``<zip>.zarr`` folder is not reproduced). A missing ``.zgroup`` needs no repair: the
  hierarchy is listed from the file system.

Reading one label (:func:`_read_prediction`): a zarr array, or under ``compat=corrected`` a
multiscale group (plain or OME-NGFF) read at the level chosen by voxel size
(:func:`_group_level`), aligned onto the crop's target grid by
:func:`gpueval.io.align.align_to_grid` after the geometry checks
(:mod:`gpueval.challenges.cellmap.checks`).

Modes (``compat``)
------------------
``official`` (default): a label submitted as a *group* (multiscale or OME-NGFF) or as a
zarr **v3** array is scored as missing (the pinned code lists arrays with zarr<3, which sees
neither), and a ``<label>_mask`` array of a truth crop is itself scored as a (semantic) label,
as the pinned code does. ``corrected``: groups and v3 arrays are read (level chosen by voxel
size, :mod:`gpueval.io.align`) and ``_mask`` arrays only mask. Truth may be v2 or v3 in both.

Choices where the spec is silent (reading): instance predictions holding NaN are rejected
(±inf are ordinary ids, as for cc3d; semantic NaN is background, as ``NaN > 0`` is false); a
prediction whose dimensionality differs from the truth is rejected; OME-NGFF levels are chosen
with the plain-group rule (:mod:`gpueval.io.align`); an odd centre pad/crop puts the smaller
half first.

Which zarr v2 chunks exist as files (:func:`stored_chunk_grid`) is read here too: a chunk
without a file is the fill value everywhere (the score's fast path and the warnings' sample
use it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import dask.array as da
import numpy as np

from gpueval.backend import array_module
from gpueval.challenges.cellmap.checks import _as_vec, check_geometry
from gpueval.challenges.cellmap.options import Options
from gpueval.errors import Rejected, TruthError
from gpueval.io.align import Grid, align_to_grid, choose_level
from gpueval.io.archive import SafeArchive, iter_files
from gpueval.io.arrays import open_volume

CROP_RE = re.compile(r"^crop(\d+)$")
_VOXEL_KEYS = ("voxel_size", "resolution", "scale")
_OFFSET_KEYS = ("translation", "offset")


# --------------------------------------------------------------------------------------------
# truth


@dataclass
class TruthCrop:
    name: str
    crop_id: int
    path: Path
    labels: list[str]
    arrays: set[str]


def _is_array(p: Path) -> bool:
    return (p / ".zarray").is_file() or (_zarr_json(p).get("node_type") == "array")


def _is_v2_array(p: Path) -> bool:
    return (p / ".zarray").is_file()


def _is_group(p: Path) -> bool:
    return p.is_dir() and not _is_array(p) and (
        (p / ".zgroup").is_file() or (p / ".zattrs").is_file()
        or _zarr_json(p).get("node_type") == "group"
        or any(_is_array(c) for c in p.iterdir() if c.is_dir()))


def _zarr_json(p: Path) -> dict:
    f = p / "zarr.json"
    if not f.is_file() or f.stat().st_size > 1 << 20:
        return {}
    try:
        return json.loads(f.read_text())
    except (ValueError, OSError):
        return {}


def _attrs(p: Path) -> dict:
    for f, key in ((p / ".zattrs", None), (p / "zarr.json", "attributes")):
        if f.is_file() and f.stat().st_size <= 1 << 20:
            try:
                d = json.loads(f.read_text())
            except (ValueError, OSError):
                continue
            d = d.get(key, {}) if key else d
            if isinstance(d, dict):
                return d
    return {}


def list_truth(truth: str | Path, opts: Options) -> list[TruthCrop]:
    root = Path(truth)
    if not root.is_dir():
        raise TruthError(f"truth {root}: not a folder (expected <truth>/crop<ID>/<label>)")
    crops = []
    for d in sorted(root.iterdir(), key=lambda p: p.name):
        m = CROP_RE.match(d.name)
        if not (m and d.is_dir()):
            continue
        arrays = {c.name for c in d.iterdir() if c.is_dir() and _is_array(c)}
        labels = sorted(a for a in arrays if opts.compat == "official"
                        or not a.endswith("_mask"))
        crops.append(TruthCrop(d.name, int(m.group(1)), d, labels, arrays))
    if not crops:
        raise TruthError(f"truth {root}: no crop<ID> folder with arrays")
    return crops


def _open_truth(path: Path):
    """A truth array; unreadable truth is a :class:`TruthError` (exit 4), not a rejection."""
    try:
        return open_volume(path, finite=False)
    except Rejected as e:
        raise TruthError(f"truth {path.parent.name}/{path.name}: {e}") from e


# --------------------------------------------------------------------------------------------
# submission intake


@dataclass
class Submission:
    root: Path
    crops: dict[str, Path]                     # GT crop name -> submitted crop folder
    notes: list[str] = field(default_factory=list)
    # GT crop name -> every label name submitted under it (also those not extracted)
    labels: dict[str, set[str]] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)  # top-level folders naming no GT crop


def _zarr_roots(rel_dirs: set[PurePosixPath]) -> list[PurePosixPath]:
    return sorted(d for d in rel_dirs if d.name.endswith(".zarr"))


def _dirs_of(names: list[str]) -> set[PurePosixPath]:
    out: set[PurePosixPath] = set()
    for n in names:
        out.update(PurePosixPath(n).parents)
    out.discard(PurePosixPath("."))
    return out


def _submitted_labels(names: list[str], root: PurePosixPath, found: dict[str, str]
                      ) -> tuple[dict[str, set[str]], list[str]]:
    """``{GT crop: label names under its folder}`` and the top-level folders of no GT crop."""
    by_top: dict[str, set[str]] = {}
    for n in names:
        rel = PurePosixPath(n)
        if not rel.is_relative_to(root):
            continue
        parts = rel.relative_to(root).parts
        if len(parts) > 1:
            by_top.setdefault(parts[0], set())
        if len(parts) > 2:
            by_top[parts[0]].add(parts[1])
    used = set(found.values())
    return ({g: by_top.get(t, set()) for g, t in found.items()},
            sorted(t for t in by_top if t not in used))


def _layout(names: list[str], gt_crops: set[str], where: str
            ) -> tuple[PurePosixPath, dict[str, str], list[str]]:
    """Root folder and ``{GT crop: submitted top-level name}`` from relative file names."""
    notes = []
    roots = _zarr_roots(_dirs_of(names))
    if len(roots) > 1:
        raise Rejected(f"{where}: more than one nested *.zarr folder "
                       f"({', '.join(map(str, roots[:3]))}); submit exactly one")
    root = roots[0] if roots else PurePosixPath(".")
    if roots:
        notes.append(f"using nested zarr folder {root}")
    top = {PurePosixPath(n).relative_to(root).parts[0] for n in names
           if PurePosixPath(n).is_relative_to(root) and len(PurePosixPath(n).relative_to(
               root).parts) > 1}
    found = {t: t for t in top if t in gt_crops}
    if not found:
        found = {f"crop{t}": t for t in top if f"crop{t}" in gt_crops}
        if found:
            notes.append("crop folders named without the 'crop' prefix")
    if not found:
        raise Rejected(f"{where}: no volumes found: no top-level folder names a ground-truth "
                       f"crop (expected e.g. {sorted(gt_crops)[0]}/<label>)")
    return root, found, notes


@contextlib.contextmanager
def open_submission(path: str | Path, truth: list[TruthCrop]) -> Iterator[Submission]:
    """Resolve the submission layout; zips are extracted (only GT crops/labels) to a temp dir."""
    p = Path(path)
    gt_crops = {c.name for c in truth}
    wanted = {c.name: set(c.labels) for c in truth}
    if p.is_dir():
        files = list(iter_files(p))
        zips = [f for f in files if f.suffix.lower() == ".zip" and f.parent == p.resolve()]
        if len(zips) == 1 and not any(f.name in (".zarray", "zarr.json") for f in files):
            p = zips[0]
        else:
            names = [f.relative_to(p.resolve()).as_posix() for f in files]
            root, found, notes = _layout(names, gt_crops, p.name)
            base = p / root
            yield Submission(base, {g: base / s for g, s in found.items()}, notes,
                             *_submitted_labels(names, root, found))
            return
    if not p.is_file() or p.suffix.lower() != ".zip":
        raise Rejected(f"{p.name}: expected a .zip file or a folder holding a zarr hierarchy")
    with SafeArchive(p) as z, tempfile.TemporaryDirectory(prefix="cellmap-") as tmp:
        names = z.names()
        root, found, notes = _layout(names, gt_crops, p.name)
        take = []
        for n in names:
            rel = PurePosixPath(n)
            if not rel.is_relative_to(root):
                continue
            parts = rel.relative_to(root).parts
            gt = next((g for g, s in found.items() if parts[0] == s), None)
            if gt is None:
                continue
            if len(parts) == 2 or parts[1] in wanted[gt]:
                take.append(n)
        z.extract_to(tmp, take)
        base = Path(tmp) / root
        yield Submission(base, {g: base / s for g, s in found.items()}, notes,
                         *_submitted_labels(names, root, found))


def _submission_names(submission: str | Path) -> list[str]:
    p = Path(submission)
    if p.is_dir():
        return [f.relative_to(p.resolve()).as_posix() for f in iter_files(p)]
    with SafeArchive(p) as z:
        return z.names()


def _validate_layout_only(names: list[str]) -> list[str]:
    """Without truth: one nested ``*.zarr`` at most, and ``crop<ID>`` (or ``<ID>``) folders
    holding zarr arrays or groups."""
    roots = _zarr_roots(_dirs_of(names))
    if len(roots) > 1:
        raise Rejected(f"submission: more than one nested *.zarr folder "
                       f"({', '.join(map(str, roots[:3]))}); submit exactly one")
    root = roots[0] if roots else PurePosixPath(".")
    crops: dict[str, set[str]] = {}
    for n in names:
        rel = PurePosixPath(n)
        if not rel.is_relative_to(root):
            continue
        parts = rel.relative_to(root).parts
        if len(parts) >= 3 and re.fullmatch(r"(crop)?\d+", parts[0]):
            crops.setdefault(parts[0], set()).add(parts[1])
    if not crops:
        raise Rejected("submission: no crop<ID>/<label> folders found (expected a zarr "
                       "hierarchy <root>/crop<ID>/<label>)")
    notes = [f"using nested zarr folder {root}"] if roots else []
    notes.append(f"{len(crops)} crop folders: " + ", ".join(
        f"{c} ({', '.join(sorted(labs))})" for c, labs in sorted(crops.items())))
    return notes


# --------------------------------------------------------------------------------------------
# reading one (crop, label)


def _geometry(attrs: Mapping[str, Any]) -> tuple[Any, Any]:
    vs = next((attrs[k] for k in _VOXEL_KEYS if attrs.get(k) is not None), None)
    tr = next((attrs[k] for k in _OFFSET_KEYS if attrs.get(k) is not None), None)
    return vs, tr


def _open_array(p: Path, *, finite: bool, dataset: str | None = None):
    """A submitted array; ``finite`` (instance labels) refuses NaN only: ±inf is an ordinary
    id value for cc3d (the official relabelling), whereas NaN is an unknown (§4.7)."""
    vol = open_volume(p if dataset is None else p / dataset, finite=False)
    if finite and vol.data.dtype.kind == "f":
        vol.data = vol.data.map_blocks(_refuse_nan, where=f"{p.parent.name}/{p.name}",
                                       dtype=vol.data.dtype)
    return vol


def _refuse_nan(block, where: str):
    if block.size and bool(array_module(block).isnan(block).any()):
        raise Rejected(f"{where}: NaN in an instance prediction; instance ids must be "
                       "numbers (the official relabelling's handling of NaN is undefined)")
    return block


def _read_prediction(node: Path, target: Grid, opts: Options, *, instance: bool,
                     where: str) -> da.Array | None:
    """The aligned prediction, or ``None`` when the label counts as missing."""
    if _is_array(node):
        if opts.compat == "official" and not _is_v2_array(node):
            return None  # zarr v3: the pinned scorer (zarr<3) does not list it: "missing"
        vol = _open_array(node, finite=instance)
        vs, tr = _geometry(_attrs(node))
    elif _is_group(node):
        if opts.compat == "official":
            return None  # the pinned scorer lists arrays only: a group label is "missing"
        vol, vs, tr = _read_group(node, target, instance, where)
    else:
        return None
    svs, str_ = _as_vec(vs, where), _as_vec(tr, where)
    check_geometry(svs, str_, tuple(vol.data.shape), tuple(max(c) for c in vol.data.chunks),
                   target, opts.geometry, where)
    return align_to_grid(vol.data, svs, str_, target,
                         instance=instance, threshold=opts.semantic_threshold,
                         max_ratio=opts.max_volume_size_ratio, where=where)


def _group_level(node: Path, target: Grid) -> tuple[str, Any, Any, bool]:
    """``(level name, voxel size, translation, OME-NGFF?)`` of the level a group is read at."""
    attrs = _attrs(node)
    ms = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    levels: list[tuple[str, Any]] = []
    trans: dict[str, Any] = {}
    if isinstance(ms, list) and ms:
        for d in ms[0].get("datasets") or []:
            scale = tr = None
            for t in d.get("coordinateTransformations") or []:
                if t.get("type") == "scale":
                    scale = t.get("scale")
                elif t.get("type") == "translation":
                    tr = t.get("translation")
            levels.append((str(d.get("path")), scale))
            trans[str(d.get("path"))] = tr
        name = choose_level(levels, target.voxel_size)
        return name, dict(levels)[name], trans[name], True
    for c in sorted(node.iterdir(), key=lambda q: q.name):
        if c.is_dir() and _is_array(c):
            levels.append((c.name, _geometry(_attrs(c))[0]))
    name = choose_level(levels, target.voxel_size)
    vs, tr = _geometry(_attrs(node / name))
    return name, vs, tr, False


def _read_group(node: Path, target: Grid, instance: bool, where: str):
    name, vs, tr, _ = _group_level(node, target)
    if not _is_array(node / name):
        raise Rejected(f"{where}: level {name!r} of the group is not an array")
    return _open_array(node / name, finite=instance), vs, tr


def _rechunk(x: da.Array, chunk: tuple[int, ...] | None) -> da.Array:
    return x.rechunk(chunk[: x.ndim]) if chunk else x


# --------------------------------------------------------------------------------------------
# stored zarr v2 chunks (a chunk without a file is the fill value everywhere)


def _zarr_v2_meta(node: Path) -> dict | None:
    f = node / ".zarray"
    if not f.is_file() or f.stat().st_size > 1 << 20:
        return None
    try:
        meta = json.loads(f.read_text())
        shape = [int(v) for v in meta["shape"]]
        chunks = [int(v) for v in meta["chunks"]]
    except (ValueError, KeyError, TypeError, OSError):
        return None
    if len(shape) != len(chunks) or any(c <= 0 for c in chunks):
        return None
    return {"shape": shape, "chunks": chunks,
            "sep": meta.get("dimension_separator") or "."}


def stored_chunk_grid(node: Path) -> np.ndarray | None:
    """Bool grid of the zarr v2 storage chunks that exist as files (``None``: not a zarr v2
    array gpueval can list). A chunk without a file is the fill value everywhere."""
    meta = _zarr_v2_meta(node)
    if meta is None:
        return None
    grid = tuple(-(-s // c) for s, c in zip(meta["shape"], meta["chunks"], strict=True))
    out = np.zeros(grid, bool)
    nd = len(grid)
    if meta["sep"] == ".":
        names = (e.name for e in os.scandir(node) if e.is_file())
        keys = (n.split(".") for n in names if not n.startswith("."))
    else:
        keys = (Path(r).relative_to(node).parts + (f,) for r, _, fs in os.walk(node)
                for f in fs if not f.startswith("."))
    for parts in keys:
        if len(parts) != nd or not all(p.isdigit() for p in parts):
            continue
        idx = tuple(int(p) for p in parts)
        if all(i < g for i, g in zip(idx, grid, strict=True)):
            out[idx] = True
    return out


def _any_stored(stored: np.ndarray, storage_chunks, chunks) -> np.ndarray:
    """Per processing chunk (dask ``chunks``): does it overlap any stored storage chunk."""
    out = stored.astype(np.int64)
    for ax, (c, sizes) in enumerate(zip(storage_chunks, chunks, strict=True)):
        edges = np.concatenate([[0], np.cumsum(sizes)])
        lo, hi = edges[:-1] // c, -(-edges[1:] // c)
        cum = np.concatenate([np.zeros_like(np.take(out, [0], axis=ax)),
                              np.cumsum(out, axis=ax)], axis=ax)
        out = np.take(cum, hi, axis=ax) - np.take(cum, lo, axis=ax)
    return out > 0
