"""XPRESS (ISBI 2023): ERL + Rand of a dense axon segmentation on ground-truth skeletons.

Reproduces ``eval/eval.py::run_eval`` of the official repository (``shared/specs/xpress.md``)
out of core: the submission is never materialised. The score depends on the volume only
through the labels at skeleton-node voxels and through ``max(label)`` (which fixes the fresh
ids given to background nodes), so the pipeline is

1. load the skeleton (:mod:`gpueval.io.skeleton`), open the submission lazily, check its grid
   against the configured ROI (``roi``: ``test`` = the official exact 334³ @ 99 nm check,
   ``validation``, ``none`` or an explicit ``{begin, shape}`` in nm), crop, stride
   (``downsampling``) (:mod:`~gpueval.challenges.xpress.layout`,
   :mod:`~gpueval.challenges.xpress.grid`);
2. node positions → voxels with the official truncate-then-floor rule; nodes outside the ROI
   are dropped with their edges (:func:`gpueval.kernels.gather.world_to_voxel`);
3. one chunked pass gathers the labels at node voxels and, with ``fresh_ids: scan`` (default,
   official), the min/max of the whole ROI (:func:`gpueval.kernels.gather.gather`);
   ``fresh_ids: nodes`` reads only the chunks holding nodes;
4. background nodes get fresh ids ``max + 1, max + 2, …`` per voxel, in graph order;
   skeleton ids are connected components in networkx order;
5. ERL / normalised ERL (:mod:`gpueval.metrics.run_length`), Rand / VOI over the distinct node
   voxels (truth = largest component index writing the voxel, component 0 excluded).

Progress (:mod:`gpueval.progress`): ``reading`` the skeleton (bytes of the file),
``gathering`` the labels at skeleton nodes (a bar weighted by the voxels of the chunks read,
item = the submission's file and dataset), ``scoring`` (ERL, Rand/VOI, split and merge counts).

Documented choices
------------------
* **compat**: ``official`` reproduces the float64 merge-detection quirk for ids ≥ 2⁵³;
  ``corrected`` compares exact ids. Nothing else differs (the dtype note of
  :mod:`~gpueval.challenges.xpress.layout` is given under ``official`` only).
* **skeleton nodes outside the scored ROI** are dropped as the official does, with a warning.
* **explicit ROI**: a shape under 1 nm on any axis once truncated to whole nm (empty: the
  official has no max label to take) or a non-finite entry is a config error.
* **Rand/VOI with nothing counted** (one component): Rand and NVI are NaN (0/0) and VOI is 0,
  as funlib's C++ sums give.
* ``merge_count`` is the official ``find_merge_errors`` count of xpress.md §4, exactly: its
  join of a segment's pieces depends on CPython's ``set.pop()`` order over networkx 3.0's
  component sets (so on the file's node ids and the edge order), which
  :func:`gpueval.metrics.run_length.merge_count` replays with the same Python sets, in
  O(nodes + edges) (fixture ``voxel_faces``: 3, not one per skeleton pair). ``split_count``
  is exact.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from gpueval import progress as bars
from gpueval.challenges import config_as_given
from gpueval.challenges.xpress.layout import Submission, _submission_relative, open_submission
from gpueval.errors import Rejected, TruthError
from gpueval.io.skeleton import Skeleton, load_skeleton
from gpueval.kernels.gather import LOCAL_SCHEDULERS, GatherStats, gather, world_to_voxel
from gpueval.kernels.stats import Contingency
from gpueval.limits import use_limits
from gpueval.metrics import run_length as rl
from gpueval.metrics.overlap import rand_voi
from gpueval.notices import warn
from gpueval.result import Result

CHALLENGE = "xpress"
ROI_NAMES = ("test", "validation", "none")
COMPAT = ("official", "corrected")
FRESH = ("scan", "nodes")
METRIC_NAMES = ("erl", "erl_norm", "rand_split", "rand_merge", "voi_split", "voi_merge",
                "nvi_split", "nvi_merge", "xpress_erl_rand", "xpress_erl_voi")

# --------------------------------------------------------------------------------------------
# Public interface


def score(truth: str | Path, submission: str | Path, config: dict[str, Any], *,
          device: str = "cpu", scheduler: Any = None, progress: bool = False) -> Result:
    """Score one XPRESS submission (``.h5``/``.zarr``) against a skeleton file.

    Parameters
    ----------
    truth : path
        The skeleton: the official pickled graph or gpueval's ``.npz``
        (:func:`gpueval.io.skeleton.load_skeleton`).
    submission : path
        HDF5 or zarr container holding the label volume (config ``dataset``).
    config : dict
        The resolved config (:func:`gpueval.config.load_config`).
    device, scheduler, progress
        Where the chunked gather runs (``cpu`` / ``gpu``, a dask.distributed address) and
        whether it shows a progress bar.

    Returns
    -------
    Result
        ``score`` = ``xpress_erl_rand`` (config ``score``), the metrics of cli.md and one item
        per skeleton (``id`` = skeleton index, its ``length`` and ``erl_contribution``).

    Raises
    ------
    Rejected
        The submission cannot be scored (container, dataset, dtype, grid, negative labels).
    TruthError
        The skeleton or the config is unusable.
    """
    settings = _settings(config)
    skel = _read_skeleton(truth)
    with use_limits(config), _submission_relative(submission):
        sub = open_submission(submission, settings)
        table = node_table(skel, sub, settings, device=device, scheduler=scheduler,
                           progress=progress)
    _warn_outside(sub, settings, len(table.skeleton_ids), skel.n_nodes)
    result = Result(CHALLENGE, str(config["metric_version"]))
    metrics, items = evaluate_table(table, compat=settings["compat"])
    metrics["n_nodes"] = skel.n_nodes
    metrics["n_edges"] = len(skel.edges)
    result.metrics = metrics
    result.items = items
    result.score = metrics.get(settings["score"])
    result.runtime["voxels"] = sub.roi_voxels
    result.extra.update({
        "compat": settings["compat"],
        "fresh_ids": settings["fresh_ids"],
        "roi": {"begin": list(sub.begin), "shape_voxels": list(sub.shape),
                "voxel_size": list(sub.voxel_size), "downsampling": sub.downsampling},
        "gather": vars(table.stats),
        "next_id": table.next_id,
        "notes": sub.notes + table.notes,
    })
    return result


def validate(submission: str | Path, config: dict[str, Any], *,
             truth: str | Path | None = None) -> list[str]:
    """Format checks only (container, dataset, dtype, grid vs ROI); nothing is gathered.

    Parameters
    ----------
    submission : path
        HDF5 or zarr container holding the label volume.
    config : dict
        The resolved config.
    truth : path, optional
        The skeleton; when given, the notes say how many of its nodes lie in the ROI.

    Returns
    -------
    list of str
        Notes on what was found (dtype, shape, voxel size, scored ROI).

    Raises
    ------
    Rejected
        The submission cannot be scored.
    """
    settings = _settings(config)
    with use_limits(config), _submission_relative(submission):
        sub = open_submission(submission, settings)
    notes = list(sub.notes)
    notes.append(f"{Path(sub.path).name}:{settings['dataset']}: {sub.dtype} "
                 f"{tuple(sub.full_shape)} "
                 f"voxel size {sub.voxel_size} nm (z,y,x), scored ROI {tuple(sub.shape)} "
                 f"voxels from {sub.begin} nm")
    if truth is not None:
        skel = load_skeleton(truth)
        _, inside = world_to_voxel(skel.positions, sub.begin, sub.voxel_size, sub.shape)
        notes.append(f"{int(inside.sum())} of {skel.n_nodes} skeleton nodes lie in the ROI")
        _warn_outside(sub, settings, int(inside.sum()), skel.n_nodes)
    return notes


# the protocol's resolve_config: a copy (XPRESS has no selector keys)
resolve_config = config_as_given


def _read_skeleton(truth: str | Path) -> Skeleton:
    """:func:`load_skeleton` as the ``reading`` phase, weighted by the file's bytes."""
    try:
        size: int | None = os.stat(truth).st_size
    except (OSError, TypeError, ValueError):
        size = None  # load_skeleton says what is wrong with the path
    with bars.phase("reading", total=size, unit="B", item=Path(str(truth)).name) as ph:
        skel = load_skeleton(truth)
        ph.update(size or 0)
    return skel


def _gather_work(data: Any, item: str):
    """How the tasks of :func:`gather`'s graph count for the ``gathering`` bar: each chunk
    task the mean voxels of a chunk of ``data`` (a scan reads them all: the bar ends at the
    ROI's voxels), array tasks are ``reading`` and weigh nothing (their chunk task counts)."""
    per_chunk = math.prod(data.shape) / max(1, math.prod(data.numblocks))
    gathering, reading = bars.Work("gathering", item, per_chunk), bars.Work("reading", item)

    def work(key):
        if not isinstance(key, tuple):
            return None
        # gather's chunk tasks are ("gather-<uuid>", i); the array's blocks (name, i, j, k)
        return gathering if bars.layer_of(key).startswith("gather-") else reading

    return work


def _warn_outside(sub: Submission, settings: dict[str, Any], inside: int, total: int) -> None:
    """Nodes outside the scored grid are dropped with their edges (as the official does);
    many of them usually mean a wrong 'offset'/'resolution' or ROI."""
    if inside < total:
        warn(f"{Path(sub.path).name}:{settings['dataset']}: {total - inside} of {total} "
             f"skeleton nodes lie outside the scored ROI ({tuple(sub.shape)} voxels of "
             f"{sub.voxel_size} nm from {sub.begin} nm, z,y,x) and are dropped with their "
             "edges as the official scorer does; check the 'offset' and 'resolution' "
             "attributes if that is unexpected")


# --------------------------------------------------------------------------------------------
# Node table


@dataclass
class NodeTable:
    """Per node inside the ROI (graph order): skeleton id, segment id and voxel."""

    skeleton_ids: np.ndarray   # int64 (M,)
    segment_ids: np.ndarray    # uint64 (M,), fresh ids in place of background
    voxel: np.ndarray          # int64 (M,) flat voxel index in the scored grid
    edges: np.ndarray          # int64 (E', 2) node positions within the table
    lengths: np.ndarray        # float64 (E',)
    n_skeletons: int
    next_id: int
    stats: GatherStats
    notes: list[str] = field(default_factory=list)
    node_ids: np.ndarray | None = None  # int64 (M,) the file's node ids (merge_count's sets)


def node_table(skel: Skeleton, sub: Submission, settings: dict[str, Any], *,
               device: str = "cpu", scheduler: Any = None, progress: bool = False) -> NodeTable:
    """Look up every node's segment (fresh ids for background) and skeleton (component).

    Parameters
    ----------
    skel : Skeleton
        The skeleton graph (nodes in graph order).
    sub : Submission
        The opened submission (:func:`~gpueval.challenges.xpress.layout.open_submission`).
    settings : dict
        The checked settings of the config (``fresh_ids``, ``dataset``).
    device, scheduler, progress
        As for :func:`score`.

    Returns
    -------
    NodeTable
        The nodes inside the ROI with their edges and lengths, and the first fresh id.

    Raises
    ------
    Rejected
        A negative label (at a node, or anywhere with ``fresh_ids: scan``), or no uint64 ids
        left for the background nodes.
    """
    index, inside = world_to_voxel(skel.positions, sub.begin, sub.voxel_size, sub.shape)
    index = index[inside]
    scan = settings["fresh_ids"] == "scan"
    where = f"{Path(sub.path).name}:{settings['dataset']}"
    if scheduler in LOCAL_SCHEDULERS:  # threads over the blocks, no Dask
        total = float(math.prod(sub.data.shape)) if scan else None
        with bars.phase("gathering", total=total, unit="vx", item=where):
            got = gather(sub.data, index, device=device, scheduler=scheduler,
                         with_extrema=scan)
    else:  # the same blocks as a Dask graph, on the distributed scheduler
        data = sub.dask_data()
        work = _gather_work(data, where) if progress and bars.showing() else None
        with bars.phase("gathering", item=where, work=work):
            got = gather(data, index, device=device, scheduler=scheduler, progress=progress,
                         with_extrema=scan)
    raw = got.values
    if raw.dtype.kind == "i" and len(raw) and raw.min() < 0:
        raise Rejected(f"{where}: negative label {int(raw.min())} at a skeleton node; ids "
                       "must be ≥ 0 (0 = background)")
    if scan and got.min is not None and got.min < 0:
        raise Rejected(f"{where}: negative label {int(got.min)}; ids must be ≥ 0 "
                       "(0 = background)")
    labels = raw.astype(np.uint64)
    if scan:
        top = int(got.max) if got.max is not None else 0
    else:
        top = int(labels.max()) if len(labels) else 0
    next_id = top + 1
    flat = np.ravel_multi_index(tuple(index.T), sub.shape) if len(index) else \
        np.empty(0, np.int64)
    segment = _fresh_ids(labels, flat, next_id, where)

    keep_pos = np.flatnonzero(inside)
    remap = np.full(skel.n_nodes, -1, np.int64)
    remap[keep_pos] = np.arange(len(keep_pos))
    e = remap[skel.edge_index()] if len(skel.edges) else np.empty((0, 2), np.int64)
    e = e[(e >= 0).all(axis=1)]
    comp = rl.component_ids(len(keep_pos), e)
    lengths = rl.edge_lengths(skel.positions[keep_pos], e)
    n_k = int(comp.max()) + 1 if len(comp) else 0
    return NodeTable(comp, segment, flat, e, lengths, n_k, next_id, got.stats,
                     node_ids=skel.node_ids[keep_pos])


def _fresh_ids(labels: np.ndarray, flat: np.ndarray, next_id: int, where: str) -> np.ndarray:
    """Background nodes get ``next_id + r``, r = rank of their voxel's first node in graph order."""
    seg = labels.copy()
    bg = np.flatnonzero(labels == 0)
    if not len(bg):
        return seg
    uniq, first, inv = np.unique(flat[bg], return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    if next_id + len(uniq) - 1 > np.iinfo(np.uint64).max:
        raise Rejected(f"{where}: labels reach {next_id - 1}; no uint64 ids are left for the "
                       f"{len(uniq)} background voxels holding skeleton nodes")
    seg[bg] = np.uint64(next_id) + rank[inv].astype(np.uint64)
    return seg


# --------------------------------------------------------------------------------------------
# Metrics


def evaluate_table(t: NodeTable, *, compat: str = "official"
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """All XPRESS metrics and the per-skeleton items of a node table.

    Parameters
    ----------
    t : NodeTable
        The node table of :func:`node_table`.
    compat : {"official", "corrected"}
        ``official`` keys merges by float64 ids, as the official scorer does.

    Returns
    -------
    metrics : dict
        ERL, Rand / VOI and their XPRESS combinations, counts (cli.md names).
    items : list of dict
        Per skeleton: ``id``, ``length``, ``erl_contribution``, ``n_nodes``, ``n_edges``.
    """
    with bars.phase("scoring", total=4, unit="step", item="ERL") as steps:
        erl = rl.expected_run_length(t.skeleton_ids, t.segment_ids, t.edges, t.lengths,
                                     n_skeletons=t.n_skeletons,
                                     float64_merge_keys=compat == "official")
        steps.update(1)
        steps.describe("scoring", "Rand/VOI")
        rv = rand_voi_nodes(t.skeleton_ids, t.segment_ids, t.voxel)
        steps.update(1)
        steps.describe("scoring", "split count")
        splits = rl.split_count(t.segment_ids, t.edges)
        steps.update(1)
        steps.describe("scoring", "merge count")
        merges = rl.merge_count(t.skeleton_ids, t.segment_ids, t.edges, t.node_ids)
        steps.update(1)
    xv = 1 - 0.5 * (rv["nvi_split"] + rv["nvi_merge"])
    xr = 0.5 * (rv["rand_split"] + rv["rand_merge"])
    metrics: dict[str, Any] = {
        "erl": erl.erl,
        "erl_norm": erl.erl_norm,
        **{k: rv[k] for k in ("rand_split", "rand_merge", "voi_split", "voi_merge",
                              "nvi_split", "nvi_merge", "nid")},
        "xpress_erl_rand": 0.5 * xr + 0.5 * erl.erl_norm,
        "xpress_erl_voi": 0.5 * xv + 0.5 * erl.erl_norm,
        "xpress_rand": xr,
        "xpress_voi": xv,
        "n_neurons": t.n_skeletons,
        "n_nodes_in_roi": len(t.segment_ids),
        "split_count": splits,
        "merge_count": merges,
        "total_length": erl.total_length,
        "mean_length": erl.mean_length,
        "n_fresh_ids": int((t.segment_ids >= np.uint64(t.next_id)).sum()) if t.next_id
        < 2**64 else 0,
    }
    n_nodes = np.bincount(t.skeleton_ids, minlength=t.n_skeletons)
    items = [{"id": str(k), "length": float(erl.skeleton_lengths[k]),
              "erl_contribution": float(erl.contributions[k]), "n_nodes": int(n_nodes[k]),
              "n_edges": int(erl.skeleton_n_edges[k])}
             for k in range(t.n_skeletons)]
    return metrics, items


def rand_voi_nodes(skeleton_ids: np.ndarray, segment_ids: np.ndarray, voxel: np.ndarray
                   ) -> dict[str, float]:
    """Rand / VOI over the distinct node voxels (xpress.md §5).

    Truth of a voxel = the largest component index among its nodes (components are written in
    order, later ones overwrite); test = its (relabelled) segment. Voxels with truth 0 — the
    first component — are not counted.

    Parameters
    ----------
    skeleton_ids, segment_ids, voxel : ndarray
        Per node: its skeleton (component), its segment and its flat voxel index.

    Returns
    -------
    dict
        ``rand_split``, ``rand_merge``, ``voi_split``, ``voi_merge``, ``nvi_split``,
        ``nvi_merge``, ``nid`` (NaN ratios and zero VOI when nothing is counted).
    """
    if len(voxel):
        order = np.lexsort((skeleton_ids, voxel))
        v = voxel[order]
        last = np.flatnonzero(np.concatenate([v[1:] != v[:-1], [True]]))
        truth = skeleton_ids[order][last].astype(np.uint64)
        test = segment_ids[order][last]
    else:
        truth = test = np.empty(0, np.uint64)
    out = rand_voi(_node_contingency(truth, test), ignore_a=0)
    if not (truth != 0).any():  # funlib sums nothing: entropies 0, ratios 0/0
        out["voi_split"] = out["voi_merge"] = 0.0
        for k in ("rand_split", "rand_merge", "nvi_split", "nvi_merge", "nid"):
            out[k] = math.nan
    return out


def _node_contingency(truth: np.ndarray, test: np.ndarray) -> Contingency:
    """``kernels.stats.contingency`` of the node voxels, in NumPy: one sort of ~10⁵ pairs,
    where Numba's first call in a process (loading its cached kernels) costs ~0.4 s."""
    order = np.lexsort((test, truth))
    a, b = truth[order], test[order]
    first = np.flatnonzero(np.concatenate([[len(a) > 0], (a[1:] != a[:-1]) | (b[1:] != b[:-1])]))
    return Contingency(a[first], b[first], np.diff(np.append(first, len(a))).astype(np.int64))


# --------------------------------------------------------------------------------------------
# Settings


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    s = {
        "dataset": str(config.get("dataset", "submission")),
        "roi": config.get("roi", "test"),
        "rois": config.get("rois") or {},
        "compat": str(config.get("compat", "official")),
        "fresh_ids": str(config.get("fresh_ids", "scan")),
        "score": str(config.get("score", "xpress_erl_rand")),
    }
    roi = s["roi"]
    if isinstance(roi, str) and roi not in ROI_NAMES:  # --set 'roi={begin: [...], ...}'
        try:
            roi = yaml.safe_load(roi)
        except yaml.YAMLError:
            pass
    if roi is None or roi is False:
        s["roi"] = "none"
    elif isinstance(roi, str):
        if roi not in ROI_NAMES:
            raise TruthError(f"config roi={roi!r}; expected one of {', '.join(ROI_NAMES)} or "
                             "{begin: [z,y,x], shape: [z,y,x]} in nm")
        if roi != "none" and roi not in s["rois"]:
            raise TruthError(f"config names roi={roi!r} but has no rois.{roi} entry")
    elif isinstance(roi, dict | list | tuple):
        spec = dict(zip(("begin", "shape"), roi, strict=True)) if not isinstance(roi, dict) \
            else roi
        try:
            s["roi"] = {"begin": [float(v) for v in spec["begin"]],
                        "shape": [float(v) for v in spec["shape"]]}
        except (KeyError, TypeError, ValueError) as e:
            raise TruthError(f"config roi {roi!r}: expected begin and shape, 3 numbers each "
                             "(nm, z,y,x)") from e
        if len(s["roi"]["begin"]) != 3 or len(s["roi"]["shape"]) != 3:
            raise TruthError(f"config roi {roi!r}: begin and shape need 3 entries (z,y,x)")
        if any(not math.isfinite(v) for v in s["roi"]["begin"] + s["roi"]["shape"]) or \
                any(int(v) <= 0 for v in s["roi"]["shape"]):
            # the official truncates each entry with int(); an empty ROI has no max label
            # (it raises), and a negative shape must not slice the array from its end
            raise TruthError(f"config roi {roi!r}: shape must be at least 1 nm per axis after "
                             "truncation to whole nm, and every entry finite")
    else:
        raise TruthError(f"config roi={roi!r} is not understood")
    d = config.get("downsampling", 1)
    try:
        d = int(d or 1)
    except (TypeError, ValueError) as e:
        raise TruthError(f"config downsampling={d!r} must be a positive integer") from e
    if d < 1:
        raise TruthError(f"config downsampling={d} must be ≥ 1")
    s["downsampling"] = d
    if s["compat"] not in COMPAT:
        raise TruthError(f"config compat={s['compat']!r}; expected one of {', '.join(COMPAT)}")
    if s["fresh_ids"] not in FRESH:
        raise TruthError(f"config fresh_ids={s['fresh_ids']!r}; expected one of "
                         f"{', '.join(FRESH)}")
    return s
