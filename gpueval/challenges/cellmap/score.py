"""CellMap Segmentation Challenge: instance (F1 × Hausdorff) and semantic (IoU) scores.

Implements ``shared/specs/cellmap.md`` at the pinned commit (``metric_version
cellmap-2026-06``) and the challenge-era scorer (``--set version=2025``, §10) through the
challenge interface; constants live in ``configs/cellmap.yaml``.

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
* target geometry per (crop, label): the manifest row (``configs/cellmap_test_crops.csv``,
  the official 413-row test manifest shipped byte-identical under its BSD-3 licence
  ``configs/cellmap_test_crops.LICENSE``, or ``--set manifest=PATH``); when a (crop, label)
  has no row, the GT array's own ``voxel_size``/``translation`` attributes and shape
  (gpueval's fallback; the official code would fail). With the shipped manifest every truth
  crop is scored, and a truth array whose shape differs from its row (other data reusing an
  official crop id) also falls back to its attributes, with a warning; an explicit
  ``manifest`` always wins and scores exactly the crops it lists that exist in the truth.
  ``total_evals`` is the manifest's row count (413 for the shipped one).
* geometry sanity (``geometry`` in the config): a submitted voxel size, translation or
  resampling factor outside the configured bounds, or an alignment that would create more
  than ``max_align_blocks`` Dask blocks, is rejected before its graph is built
  (:func:`check_geometry`).

Warnings (``Result.warnings``, ``validate``'s ``.warnings``)
-----------------------------------------------------------
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

Modes (``compat``)
------------------
``official`` (default): a label submitted as a *group* (multiscale or OME-NGFF) or as a
zarr **v3** array is scored as missing (the pinned code lists arrays with zarr<3, which sees
neither), and a ``<label>_mask`` array of a truth crop is itself scored as a (semantic) label,
as the pinned code does. ``corrected``: groups and v3 arrays are read (level chosen by voxel
size, :mod:`gpueval.io.align`) and ``_mask`` arrays only mask. Truth may be v2 or v3 in both.

Choices where the spec is silent: instance predictions holding NaN are rejected (±inf are
ordinary ids, as for cc3d; semantic NaN is background, as ``NaN > 0`` is false); a missing
instance label counts the unique GT ids of the unmasked truth; a prediction whose
dimensionality differs from the truth is rejected; OME-NGFF levels are chosen with the
plain-group rule (:mod:`gpueval.io.align`); an odd centre pad/crop puts the smaller half
first; ``total_evals`` is the number of manifest rows. Matching is exact
(:func:`gpueval.metrics.matching.match_max_total_iou`), so ``matching_failed`` cannot occur;
with exact cost ties the matched pairs may differ from OR-Tools' (same objective), which can
move Hausdorff values and, in rare ties between matchings of different sizes, tp/fp/fn.

Execution: the whole submission is ONE Dask graph (:func:`_score_all`): every (crop,
label)'s chunked passes are lazy nodes (semantic counts; for instance labels: per-chunk
components and boundary pairs, a union-find node, per-chunk overlaps + boxes, a matching/plan
node and a fixed number of Hausdorff nodes that read only the chunks their instances' boxes
touch), computed together by :func:`gpueval.engine.compute`, so ``--scheduler ADDRESS`` runs
it all on a cluster. Peak memory is a few chunks (``chunk`` in the config) per thread plus the
boxes of the largest instance pair; a prediction at another voxel size is resampled block by
block too (:func:`gpueval.io.align.rescale`). Only the 2025 variant reads whole arrays.

Never-written zarr chunks (exact fast path): when the truth, the mask and an identity-aligned
prediction are zarr v2 arrays, the processing chunks that none of them stores (no chunk file:
the fill value everywhere) are not read; they add ``voxels × (fill_gt, fill_pred)`` to the
counts (and nothing else when both fills are 0; a non-zero instance fill is read as usual).
The fill values are read once, at one voxel, through the same arrays the score uses.

Result: ``score`` = ``overall_score``; ``metrics`` hold the leaderboard numbers (missing
entries included) and per class ``<label>_f1``, ``<label>_normalized_hausdorff_distance``,
``<label>_combined_score`` (instance) or ``<label>_iou`` (semantic) for every class in the
truth; one item per GT (crop, label). ``extra`` holds the official public view
(``public_scores``), the extended view (``all_scores``) and the scores without missing
entries (``found_scores``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
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
from gpueval.challenges.cellmap import scoring_2026 as sc
from gpueval.config import apply_variant
from gpueval.errors import Rejected, TruthError
from gpueval.io.align import Grid, align_to_grid, choose_level, translation_offset
from gpueval.io.archive import SafeArchive, iter_files
from gpueval.io.arrays import open_volume
from gpueval.limits import Limits, use_limits
from gpueval.notices import warn
from gpueval.resources import config_dir
from gpueval.result import Result

CROP_RE = re.compile(r"^crop(\d+)$")
_VOXEL_KEYS = ("voxel_size", "resolution", "scale")
_OFFSET_KEYS = ("translation", "offset")


# --------------------------------------------------------------------------------------------
# configuration


def resolve_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Apply the variant named by ``version`` (``--set version=2025``) once."""
    cfg = dict(cfg)
    version = str(cfg.get("version") or "").strip()
    variants = cfg.get("variants") or {}
    if version == "2026-06":
        return cfg  # the file's defaults (keeps an explicit --set metric_version)
    if version and version in variants and cfg.get("variant") != version:
        cfg = apply_variant(cfg, version)
        cfg["version"] = version
    elif version and version not in variants:
        raise TruthError(f"unknown cellmap version {version!r}; known: "
                         f"{', '.join(map(str, variants))}")
    return cfg


@dataclass(frozen=True)
class Options:
    version: str
    compat: str
    instance_classes: tuple[str, ...]
    consts: dict[str, Any]
    semantic_threshold: float
    max_volume_size_ratio: float
    chunk: tuple[int, ...] | None
    manifest: Path
    restrict_to_manifest: bool
    geometry: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Options:
        compat = str(cfg.get("compat", "official"))
        if compat not in ("official", "corrected"):
            raise TruthError(f"compat must be official or corrected, got {compat!r}")
        man = cfg.get("manifest")
        default = not man or str(man) in ("default", "shipped")
        path = config_dir() / "cellmap_test_crops.csv" if default else Path(str(man))
        chunk = cfg.get("chunk")
        return cls(
            version=str(cfg.get("version") or "2026-06"),
            compat=compat,
            instance_classes=tuple(cfg.get("instance_classes") or sc.INSTANCE_CLASSES),
            consts={k: cfg[k] for k in ("final_instance_ratio_cutoff",
                                        "initial_instance_ratio_cutoff",
                                        "instance_ratio_factor", "max_overlap_edges",
                                        "mcmf_cost_scale", "instance_ratio_cutoff_2025",
                                        "hausdorff_base")
                    if k in cfg},
            semantic_threshold=float(cfg.get("semantic_threshold", 0.5)),
            max_volume_size_ratio=float(cfg.get("max_volume_size_ratio", 4096)),
            chunk=tuple(int(c) for c in chunk) if chunk else None,
            manifest=path,
            restrict_to_manifest=not default,
            geometry=_geometry_limits(cfg.get("geometry")),
        )


#: Sanity bounds on submitted geometry (``geometry`` in ``configs/cellmap.yaml``); a value
#: outside them is rejected before any Dask graph is built (issue #24 part 3).
GEOMETRY_DEFAULTS: dict[str, float] = {
    "min_voxel_size": 0.1,          # nm; EM voxels are ~1-100 nm
    "max_voxel_size": 100000.0,     # nm (0.1 mm)
    "max_abs_translation": 1.0e9,   # nm (1 m)
    "max_scale_factor": 256.0,      # source / target voxel size per axis, either way
    "max_align_blocks": 100000.0,   # Dask blocks the alignment (resample + paste) may create
}


def _geometry_limits(section: Any) -> dict[str, float]:
    out = dict(GEOMETRY_DEFAULTS)
    if section is None:
        return out
    if not isinstance(section, Mapping):
        raise TruthError(f"cellmap config: geometry must be a mapping, got {section!r}")
    for k, v in section.items():
        if k not in GEOMETRY_DEFAULTS:
            raise TruthError(f"cellmap config: unknown key geometry.{k}; known: "
                             f"{', '.join(GEOMETRY_DEFAULTS)}")
        try:
            out[k] = float(v)
        except (TypeError, ValueError) as e:
            raise TruthError(f"cellmap config: geometry.{k} must be a number, got {v!r}") from e
        if not out[k] > 0:
            raise TruthError(f"cellmap config: geometry.{k} must be positive, got {v!r}")
    return out


# --------------------------------------------------------------------------------------------
# manifest


def read_manifest(path: str | Path) -> dict[tuple[int, str], Grid]:
    """``{(crop id, label): Grid}`` from a test-crop manifest CSV (vectors ``[z;y;x]``)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise TruthError(f"manifest {p}: cannot be read ({e.strerror})") from e
    rows = list(csv.DictReader(text.splitlines()))
    need = {"crop_name", "class_label", "voxel_size", "translation", "shape"}
    if rows and not need <= set(rows[0]):
        raise TruthError(f"manifest {p}: header must hold {', '.join(sorted(need))}")
    out: dict[tuple[int, str], Grid] = {}
    for i, r in enumerate(rows, start=2):
        try:
            crop = int(str(r["crop_name"]).strip().removeprefix("crop"))
            out[(crop, r["class_label"].strip())] = Grid(
                _vec(r["voxel_size"]), _vec(r["translation"]),
                tuple(int(round(v)) for v in _vec(r["shape"])))
        except (ValueError, KeyError, AttributeError) as e:
            raise TruthError(f"manifest {p} line {i}: {e}") from e
    return out


def _vec(s: str) -> tuple[float, ...]:
    return tuple(float(x) for x in str(s).strip().strip("[]").replace(",", ";").split(";"))


def write_manifest(path: str | Path, rows: list[tuple[int, str, str, Grid]]) -> None:
    """Write ``(crop id, dataset, label, Grid)`` rows in the official CSV format."""
    def fmt(v):
        return "[" + ";".join(repr(float(x)) if not float(x).is_integer() else f"{float(x):.1f}"
                              for x in v) + "]"

    lines = ["crop_name,dataset,class_label,voxel_size,translation,shape"]
    for crop, ds, label, g in rows:
        lines.append(f"{crop},{ds},{label},{fmt(g.voxel_size)},{fmt(g.translation)},"
                     f"[{';'.join(str(int(s)) for s in g.shape)}]")
    Path(path).write_text("\n".join(lines) + "\n")


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


def _disagrees(vec: Any, target: tuple[float, ...]) -> bool:
    """True when an attribute vector is not (numerically) ``target`` (last entries)."""
    try:
        v = np.asarray([float(x) for x in vec], float)[-len(target):]
    except (TypeError, ValueError):
        return True
    return v.shape != (len(target),) or not np.allclose(v, target)


def _rechunk(x: da.Array, chunk: tuple[int, ...] | None) -> da.Array:
    return x.rechunk(chunk[: x.ndim]) if chunk else x


# --------------------------------------------------------------------------------------------
# warnings: what is skipped, ignored or read differently than the submitter likely meant


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
        block = x.blocks[np.unravel_index(int(flat), x.numblocks)]
        block = block[tuple(slice(0, SAMPLE_EDGE) for _ in range(block.ndim))]
        try:
            parts.append(np.asarray(block.compute(scheduler="sync")).ravel())
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


# --------------------------------------------------------------------------------------------
# the challenge interface


def score(truth: str | Path, submission: str | Path, config: Mapping[str, Any], *,
          device: str = "cpu", scheduler: Any = None, progress: bool = False) -> Result:
    """Score one CellMap submission (see the module docstring)."""
    cfg = resolve_config(config)
    opts = Options.from_config(cfg)
    with use_limits(Limits.from_config(cfg)):
        crops = list_truth(truth, opts)
        manifest = read_manifest(opts.manifest)
        if opts.restrict_to_manifest:
            listed = {c for c, _ in manifest}
            crops = [c for c in crops if c.crop_id in listed]
            if not crops:
                raise TruthError("no crop of the manifest exists in the truth")
        with open_submission(submission, crops) as sub:
            submission_warnings(crops, sub)
            if opts.version == "2025":
                from gpueval.challenges.cellmap.scoring_2025 import score_2025

                return score_2025(crops, sub, manifest, cfg, opts, device=device,
                                  scheduler=scheduler)
            per_crop, voxels = _score_all(crops, sub, manifest, opts, device, scheduler,
                                          progress)
    return _result(per_crop, cfg, opts, manifest, voxels)


def target_grid(crop: TruthCrop, label: str, manifest, opts: Options):
    """``(truth volume, target Grid)`` of one label: the manifest row, else the truth
    array's own attributes (see the module docstring)."""
    where = f"{crop.name}/{label}"
    gvol = _open_truth(crop.path / label)
    grid = manifest.get((crop.crop_id, label))
    vs, tr = _geometry(_attrs(crop.path / label))
    if grid is not None and not opts.restrict_to_manifest and \
            tuple(grid.shape) != tuple(gvol.shape):
        # other data reusing an official crop id: the shipped manifest cannot describe it
        warn(f"truth {where}: shape {list(gvol.shape)} differs from the shipped official "
             f"manifest's {list(grid.shape)}; the truth array's own voxel_size/translation "
             "are used (pass --set manifest=PATH to give this data's geometry)")
        grid = None
    if grid is None:
        nd = gvol.data.ndim
        tvs, ttr = _as_vec(vs, f"truth {where}"), _as_vec(tr, f"truth {where}")
        grid = Grid(tuple(tvs or (1.0,) * nd)[-nd:], tuple(ttr or (0.0,) * nd)[-nd:],
                    tuple(gvol.shape))
        check_geometry(tvs, ttr, grid.shape, grid.shape, grid, opts.geometry,
                       f"truth {where}", TruthError)
    elif vs is not None and _disagrees(vs, grid.voxel_size):
        warn(f"truth {where}: voxel_size attribute {vs} differs from the manifest's "
             f"{list(grid.voxel_size)}; the manifest's geometry is used, as the official "
             "scorer does")
    if tuple(grid.shape) != tuple(gvol.shape):
        raise TruthError(f"truth {where}: shape {gvol.shape} differs from the manifest "
                         f"shape {grid.shape}")
    return gvol, grid


def load_pair(crop: TruthCrop, label: str, sub: Submission, manifest, opts: Options):
    """(gt dask, aligned prediction or None, mask or None, Grid, instance?) of one label."""
    where = f"{crop.name}/{label}"
    gvol, grid = target_grid(crop, label, manifest, opts)
    instance = label in opts.instance_classes
    gt = _rechunk(gvol.data, opts.chunk)
    mask = None
    if f"{label}_mask" in crop.arrays:
        mask = _rechunk(_open_truth(crop.path / f"{label}_mask").data, opts.chunk)
    pred = None
    node = sub.crops.get(crop.name)
    if node is not None and (node / label).is_dir():
        pred = _read_prediction(node / label, grid, opts, instance=instance, where=where)
        if pred is not None:
            pred = pred.rechunk(gt.chunks)
    # after the reading checks (geometry bounds first), before any chunk is scored
    label_warnings(crop, label, sub, grid, opts)
    return gt, pred, mask, grid, instance


def _open_truth(path: Path):
    """A truth array; unreadable truth is a :class:`TruthError` (exit 4), not a rejection."""
    try:
        return open_volume(path, finite=False)
    except Rejected as e:
        raise TruthError(f"truth {path.parent.name}/{path.name}: {e}") from e


def _score_all(crops, sub, manifest, opts, device, scheduler, progress=False):
    """Every (crop, label) as lazy nodes of ONE dask graph, computed together."""
    from gpueval.engine import compute

    per_crop: dict[str, dict[str, dict[str, Any]]] = {}
    voxels = 0
    jobs = []  # (crop, label, extra, kind, delayed)
    for crop in crops:
        per_crop.setdefault(crop.name, {})
        for label in crop.labels:
            gt, pred, mask, grid, instance = load_pair(crop, label, sub, manifest, opts)
            n = int(math.prod(gt.shape))
            extra = {"num_voxels": n, "voxel_size": list(grid.voxel_size)}
            node = sub.crops.get(crop.name)
            sources = [crop.path / label] + ([crop.path / f"{label}_mask"]
                                             if mask is not None else [])
            if pred is None:
                if instance:
                    missing, fill = _missing_chunks(gt, sources, [gt])
                    jobs.append((crop.name, label, extra, "missing_instance",
                                 sc.count_ids_delayed(gt, missing=missing,
                                                      fill=fill[0] if fill else None)))
                else:
                    per_crop[crop.name][label] = {**sc.missing_semantic(n), **extra}
                continue
            voxels += n
            if mask is not None:
                gt, pred = gt * mask, pred * mask.astype(pred.dtype)
            pred_src = node / label if _identity_aligned(node / label, grid, opts) else None
            missing, fills = (None, None) if pred_src is None else \
                _missing_chunks(gt, [*sources, pred_src], [gt, pred])
            if instance:
                job = sc.instance_delayed(gt, pred, grid.voxel_size, opts.consts,
                                          device=device, missing=missing, fills=fills)
            else:
                job = sc.semantic_delayed(gt, pred, device=device, missing=missing,
                                          fills=fills)
            jobs.append((crop.name, label, extra, "scored", job))
    results = compute(*(j[4] for j in jobs), scheduler=scheduler, progress=progress) \
        if jobs else ()
    for (crop, label, extra, kind, _), r in zip(jobs, results, strict=True):
        if kind == "missing_instance":
            r = sc.missing_instance(int(r))
        r = dict(r)
        r.pop("_detail", None)
        per_crop[crop][label] = {**r, **extra}
    return per_crop, voxels


# --------------------------------------------------------------------------------------------
# never-written zarr chunks (exact fast path)


def _identity_aligned(node: Path, grid: Grid, opts: Options) -> bool:
    """True when the submitted array is read as is: a zarr array on the truth grid (same
    shape, voxel size, no offset), so its storage chunks map onto the truth's voxels."""
    if not _is_array(node) or _zarr_v2_meta(node) is None:
        return False
    meta = _zarr_v2_meta(node)
    if tuple(meta["shape"]) != tuple(grid.shape):
        return False
    vs, tr = _geometry(_attrs(node))
    where = str(node)
    try:
        svs, str_ = _as_vec(vs, where), _as_vec(tr, where)
    except Rejected:
        return False
    nd = len(grid.shape)
    if svs is not None and not np.allclose(np.asarray(svs)[-nd:], grid.voxel_size):
        return False
    t = np.zeros(nd) if str_ is None else np.asarray(str_)[-nd:]
    return not any(translation_offset(t, grid.translation, grid.voxel_size))


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


def _missing_chunks(gt: da.Array, sources: list[Path], finals: list[da.Array]):
    """Chunks of ``gt``'s grid that no source stores, and the values ``finals`` take there.

    The values are read at one voxel of the first such chunk through the very arrays the
    score uses (so dtype casts, masking and NaN checks are those of the materialised path);
    with identity alignment and element-wise masking every voxel of those chunks holds them.
    Returns ``(None, None)`` when any source is not a listable zarr v2 array or no chunk is
    missing.
    """
    missing = np.ones(gt.numblocks, bool)
    for src in sources:
        stored = stored_chunk_grid(src)
        if stored is None:
            return None, None
        missing &= ~_any_stored(stored, _zarr_v2_meta(src)["chunks"], gt.chunks)
    if not missing.any():
        return None, None
    first = np.argwhere(missing)[0]
    voxel = tuple(int(sum(c[:i])) for c, i in zip(gt.chunks, first, strict=True))
    fills = tuple(np.asarray(f[voxel].compute(scheduler="sync")) for f in finals)
    return missing, fills


def _result(per_crop, cfg, opts: Options, manifest, voxels: int) -> Result:
    classes = opts.instance_classes
    all_scores = sc.combine_scores(per_crop, classes, include_missing=True)
    found = sc.combine_scores(per_crop, classes, include_missing=False)
    metrics: dict[str, Any] = {k: all_scores[k] for k in
                               ("overall_score", "overall_instance_score",
                                "overall_semantic_score")}
    for label in sorted(all_scores["label_scores"]):
        s = all_scores["label_scores"][label]
        keys = ("f1", "normalized_hausdorff_distance", "combined_score") if label in classes \
            else ("iou",)
        for k in keys:
            metrics[f"{label}_{k}"] = s[k]
    items = []
    for crop in sorted(per_crop):
        for label in sorted(per_crop[crop]):
            s = per_crop[crop][label]
            item = {"id": f"{crop}/{label}", "tp": s["tp"], "fp": s["fp"], "fn": s["fn"],
                    "status": s["status"], "num_voxels": s["num_voxels"]}
            if label in classes:
                item["hausdorff_norm_sum"] = s["hausdorff_norm_sum"]
                item["n_hausdorff"] = s["n_hausdorff"]
            items.append(item)
    submitted = {label for labels in per_crop.values() for label, s in labels.items()
                 if s["status"] != sc.STATUS_MISSING}
    tail = {"total_evals": len(manifest), "num_evals_done": len(items)}
    public = {"label_scores": {
        label: {k: v for k, v in s.items() if k not in ("tp", "fp", "fn")}
        for label, s in all_scores["label_scores"].items() if label in submitted},
        **{k: all_scores[k] for k in ("overall_instance_score", "overall_semantic_score",
                                      "overall_score")}, **tail}
    for labs in per_crop.values():
        for s in labs.values():
            s["is_missing"] = s["status"] == sc.STATUS_MISSING
    extended = {**{c: {lab: dict(s) for lab, s in labs.items()}
                   for c, labs in per_crop.items()}, **all_scores, **tail}
    return Result("cellmap", str(cfg["metric_version"]), score=all_scores["overall_score"],
                  metrics=metrics, items=items, runtime={"voxels": int(voxels)},
                  extra={"public_scores": public, "all_scores": extended,
                         "found_scores": found, "compat": opts.compat})


def validate(submission: str | Path, config: Mapping[str, Any], *,
             truth: str | Path | None = None) -> list[str]:
    """Layout checks only; with ``truth``, also each label against the truth and manifest.

    With ``truth`` every (crop, label) is checked as :func:`score` reads it: the same
    warnings (:func:`gpueval.notices.warn`: labels not read under the current ``compat``,
    case-only name mismatches, unknown labels, geometry absent, different from the target or
    in reversed axis order, values that look like the other class type) and the same
    rejections (geometry sanity, dimensionality, unreadable arrays); no score is computed.
    """
    cfg = resolve_config(config)
    opts = Options.from_config(cfg)
    notes: list[str] = []
    with use_limits(Limits.from_config(cfg)):
        if truth is None:
            return _validate_layout_only(_submission_names(submission))
        crops = list_truth(truth, opts)
        manifest = read_manifest(opts.manifest)  # a bad manifest is a configuration error
        if opts.restrict_to_manifest:
            listed = {c for c, _ in manifest}
            crops = [c for c in crops if c.crop_id in listed]
            if not crops:
                raise TruthError("no crop of the manifest exists in the truth")
        with open_submission(submission, crops) as sub:
            notes += sub.notes
            submission_warnings(crops, sub)
            for crop in crops:
                if crop.name not in sub.crops:
                    notes.append(f"{crop.name}: missing (all its labels score as missing)")
                    continue
                for label in crop.labels:
                    _, grid = target_grid(crop, label, manifest, opts)
                    notes += _check_label(sub.crops[crop.name] / label, f"{crop.name}/{label}",
                                          opts, label in opts.instance_classes, grid)
                    label_warnings(crop, label, sub, grid, opts)
    notes.append("layout ok")
    return notes


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


def _check_label(node: Path, where: str, opts: Options, instance: bool,
                 grid: Grid) -> list[str]:
    """Metadata check of one submitted label (no resampling): what :func:`score` would
    reject (unreadable array, absurd geometry, wrong rank) raises :class:`Rejected`."""
    if not node.is_dir():
        return [f"{where}: missing"]
    if _is_array(node):
        if opts.compat == "official" and not _is_v2_array(node):
            return [f"{where}: a zarr v3 array; the official scorer reads zarr v2 only, so it "
                    "scores as missing (compat=corrected reads it)"]
        vol = _open_array(node, finite=instance)
        vs, tr = _geometry(_attrs(node))
        svs, str_ = _as_vec(vs, where), _as_vec(tr, where)
        if vol.data.ndim != len(grid.shape):
            raise Rejected(f"{where}: {vol.data.ndim}-D array, expected "
                           f"{len(grid.shape)}-D (z, y, x)")
        check_geometry(svs, str_, tuple(vol.data.shape),
                       tuple(max(c) for c in vol.data.chunks), grid, opts.geometry, where)
        return []
    if _is_group(node):
        if opts.compat == "official":
            return [f"{where}: submitted as a group; the official scorer lists arrays only, "
                    "so it scores as missing (compat=corrected reads it)"]
        vol, vs, tr = _read_group(node, grid, instance, where)
        if vol.data.ndim == len(grid.shape):
            check_geometry(_as_vec(vs, where), _as_vec(tr, where), tuple(vol.data.shape),
                           tuple(max(c) for c in vol.data.chunks), grid, opts.geometry, where)
        return []
    return [f"{where}: neither a zarr array nor a group (scores as missing)"]


def _submission_names(submission: str | Path) -> list[str]:
    p = Path(submission)
    if p.is_dir():
        return [f.relative_to(p.resolve()).as_posix() for f in iter_files(p)]
    with SafeArchive(p) as z:
        return z.names()


def report_images(result: Result, truth, submission, config) -> list:
    """Pictures of where the submission fails, for the HTML report (see
    :func:`gpueval.report_images.cellmap_images`)."""
    from gpueval.report_images import cellmap_images

    return cellmap_images(result, truth, submission, config)
