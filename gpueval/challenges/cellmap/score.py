"""CellMap Segmentation Challenge: composing the kernels and metrics into the result.

Implements ``shared/specs/cellmap.md`` at the pinned commit (``metric_version
cellmap-2026-06``) and the challenge-era scorer (``--set version=2025``, §10,
:mod:`gpueval.challenges.cellmap.scoring_2025`) through the challenge interface; constants live
in ``configs/cellmap.yaml``. Reading the truth and the submission is
:mod:`gpueval.challenges.cellmap.layout`, the target grid of each (crop, label)
:mod:`gpueval.challenges.cellmap.manifest`, the per-(crop, label) scores and their pooling
:mod:`gpueval.challenges.cellmap.scoring_2026`.

Choices where the spec is silent (scoring): a missing instance label counts the unique GT ids
of the unmasked truth; ``total_evals`` is the number of manifest rows. Matching is exact
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

Progress (:mod:`gpueval.progress`): opening the arrays is a ``reading`` bar over the (crop,
label) pairs; the one graph then gets one bar weighted by voxels whose description is the
phase and ``crop/label`` of the task running (:func:`_work_map`): ``labelling`` (connected
components), ``matching`` (overlaps, boxes, the matching), ``distances`` (Hausdorff),
``counting`` (semantic counts and truth ids), ``reading`` (array tasks), ``scoring`` (the
rest). Each chunk pass weighs the voxels of its chunks, so an instance label counts its
voxels three times (labelling, matching, distances) and a semantic one once.

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

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from gpueval import engine
from gpueval import progress as bars
from gpueval.challenges.cellmap import scoring_2026 as sc
from gpueval.challenges.cellmap.checks import _as_vec, check_geometry
from gpueval.challenges.cellmap.layout import (
    _any_stored,
    _attrs,
    _geometry,
    _is_array,
    _is_group,
    _is_v2_array,
    _open_array,
    _read_group,
    _submission_names,
    _validate_layout_only,
    _zarr_v2_meta,
    list_truth,
    open_submission,
    stored_chunk_grid,
)
from gpueval.challenges.cellmap.manifest import read_manifest, target_grid
from gpueval.challenges.cellmap.options import Options
from gpueval.challenges.cellmap.pairs import load_pair
from gpueval.challenges.cellmap.scoring_2025 import score_2025
from gpueval.challenges.cellmap.warnings import label_warnings, submission_warnings
from gpueval.config import apply_variant
from gpueval.errors import Rejected, TruthError
from gpueval.io.align import Grid, translation_offset
from gpueval.io.arrays import read_region
from gpueval.kernels import throughput_carry
from gpueval.limits import Limits, use_limits
from gpueval.result import Result

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
                return score_2025(crops, sub, manifest, cfg, opts, device=device,
                                  scheduler=scheduler)
            per_crop, voxels = _score_all(crops, sub, manifest, opts, device, scheduler,
                                          progress)
    return _result(per_crop, cfg, opts, manifest, voxels)


def _score_all(crops, sub, manifest, opts, device, scheduler, progress=False):
    """Every (crop, label) as lazy nodes of ONE dask graph, computed together. The chunks
    its passes carry (:mod:`gpueval.kernels.throughput_carry`) are dropped when it ends,
    also when one label's rejection aborts it."""
    with throughput_carry.scope():
        return _build_and_compute(crops, sub, manifest, opts, device, scheduler, progress)


def _build_and_compute(crops, sub, manifest, opts, device, scheduler, progress):
    per_crop: dict[str, dict[str, dict[str, Any]]] = {}
    voxels = 0
    jobs = []  # (crop, label, extra, kind, delayed, chunk grid of the pass)
    for crop in crops:
        per_crop.setdefault(crop.name, {})
    pairs = [(crop, label) for crop in crops for label in crop.labels]
    with bars.phase("reading", total=len(pairs), unit="label") as opening:
        for crop, label in pairs:
            opening.set_item(f"{crop.name}/{label}")
            job = _job(crop, label, sub, manifest, opts, device, per_crop)
            if job is not None:
                voxels += job[2]["num_voxels"] if job[3] == "scored" else 0
                jobs.append(job)
            opening.update(1)
    # only a local scheduler draws the bar (a cluster has its dashboard): map the tasks then
    local = scheduler is None or scheduler in _LOCAL_SCHEDULERS
    work = _work_map(jobs) if progress and local and bars.showing() else None
    with bars.phase("scoring", work=work):
        results = engine.compute(*(j[4] for j in jobs), scheduler=scheduler,
                                 progress=progress) if jobs else ()
    for (crop, label, extra, kind, _, _), r in zip(jobs, results, strict=True):
        if kind == "missing_instance":
            r = sc.missing_instance(int(r))
        r = dict(r)
        r.pop("_detail", None)
        per_crop[crop][label] = {**r, **extra}
    return per_crop, voxels


def _job(crop, label, sub, manifest, opts, device, per_crop):
    """The lazy score of one (crop, label), or ``None`` when it needs no computation (a
    missing semantic label, scored at once into ``per_crop``)."""
    gt, pred, mask, grid, instance = load_pair(crop, label, sub, manifest, opts)
    n = int(math.prod(gt.shape))
    extra = {"num_voxels": n, "voxel_size": list(grid.voxel_size)}
    node = sub.crops.get(crop.name)
    sources = [crop.path / label] + ([crop.path / f"{label}_mask"] if mask is not None else [])
    if pred is None:
        if instance:
            missing, fill = _missing_chunks(gt, sources, [gt])
            return (crop.name, label, extra, "missing_instance",
                    sc.count_ids_delayed(gt, missing=missing, fill=fill[0] if fill else None),
                    gt.numblocks)
        per_crop[crop.name][label] = {**sc.missing_semantic(n), **extra}
        return None
    if mask is not None:
        gt, pred = gt * mask, pred * mask.astype(pred.dtype)
    pred_src = node / label if _identity_aligned(node / label, grid, opts) else None
    missing, fills = (None, None) if pred_src is None else \
        _missing_chunks(gt, [*sources, pred_src], [gt, pred])
    if instance:
        job = sc.instance_delayed(gt, pred, grid.voxel_size, opts.consts, device=device,
                                  missing=missing, fills=fills)
    else:
        job = sc.semantic_delayed(gt, pred, device=device, missing=missing, fills=fills)
    return crop.name, label, extra, "scored", job, gt.numblocks


# --------------------------------------------------------------------------------------------
# progress: what each task of the one graph does


_LOCAL_SCHEDULERS = ("threads", "threading", "sync", "synchronous", "single-threaded")

#: the task functions of :mod:`~gpueval.challenges.cellmap.scoring_2026` (as the graph names
#: them, chunk kernels through the engine's appliers) → the phase they belong to
_TASK_PHASES = {
    "_label_task": "labelling", "_edges_task": "labelling", "_first_of": "labelling",
    "_merge_tables": "labelling",
    "_stats_chunk": "matching", "_stats_chunk_carried": "matching",
    "_stats_combine": "matching", "_plan_instance": "matching",
    "_hausdorff_chunk": "distances", "_hausdorff_assemble": "distances",
    "_semantic_chunk": "counting", "_sum": "counting",
    "_ids_chunk": "counting", "_union_ids": "counting",
}
#: the per-chunk passes: each task processes one chunk of the (crop, label)
_CHUNK_PASSES = frozenset({"_label_task", "_stats_chunk", "_stats_chunk_carried",
                           "_hausdorff_chunk", "_semantic_chunk", "_ids_chunk"})


def _work_map(jobs) -> dict[str, bars.Work]:
    """What every task of the jobs' graphs does, by layer name (:class:`gpueval.progress.Work`).

    A task of job ``j`` works on job ``j``'s ``crop/label``; its phase comes from the function
    it runs (:data:`_TASK_PHASES`; array tasks are ``reading``, anything else ``scoring``).
    A chunk-pass task weighs the mean voxels of a chunk of its label (``voxels / chunks``),
    so each pass over a label adds up to its voxels (fewer when never-written chunks are
    skipped) and the bar moves with the data, not with the number of tasks; the merge, plan
    and assembly steps weigh nothing. A layer shared by several jobs goes to the first.
    """
    work: dict[str, bars.Work] = {}
    for crop, label, extra, _kind, job, numblocks in jobs:
        item = f"{crop}/{label}"
        per_chunk = extra["num_voxels"] / max(1, math.prod(numblocks))
        for key, func in bars.graph_tasks(job):
            layer = bars.layer_of(key)
            if layer in work:
                continue
            if func in _TASK_PHASES:
                weight = per_chunk if func in _CHUNK_PASSES else 0.0
                work[layer] = bars.Work(_TASK_PHASES[func], item, weight)
            elif isinstance(key, tuple):
                work[layer] = bars.Work("reading", item)
            else:
                work[layer] = bars.Work("scoring", item)
    return work


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
    # read_region: a plain stored array is asked for the voxel alone; a derived one is
    # computed through dask on this thread
    fills = tuple(read_region(f, voxel) for f in finals)
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


# --------------------------------------------------------------------------------------------
# validation


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
