"""Pictures of where a submission fails, for :func:`gpueval.report.write_report`.

Each challenge module's ``report_images(result, truth, submission, config)`` delegates to one
function here. Pictures are chosen and cropped by chunked reductions and only the pixels shown
are read: a whole volume is never loaded.

============  ===============================================================================
challenge     picture
============  ===============================================================================
U-RISC        moved to :mod:`gpueval.challenges.urisc.images`
CellMap       the worst (crop, label) items (highest ``(fp + fn) / (tp + fp + fn)``): the
              slice with the most wrong voxels (per-slice counts reduced chunk by chunk) and
              the middle slice; semantic: FP/FN; instance: splits/merges/misses/FPs relative to
              each object's main partner (one chunked contingency pass)
XPRESS        the densest slab of skeleton nodes: the submission's labels (one slice, read
              alone) with nodes coloured by outcome (correct / split / merged)
MedSegFM      the worst case (lowest DSC, or F1 for instance cases): per class, the middle
              slice of the class's GT z range with FP/FN overlay
REFUGE        the worst image (lowest disc + cup Dice): disc and cup agreement maps, pooled
============  ===============================================================================

Colours: agreement grey, false positive red, false negative (missed) blue, as
:func:`gpueval.report.error_overlay`; for instances, split fragments orange and merged
objects magenta; XPRESS nodes green (correct), orange (split), magenta (merged).

:func:`neuroglancer_state` builds a Neuroglancer state (truth, submission and an error layer
at the worst item); :func:`attach_neuroglancer` stores it under ``result.extra["neuroglancer"]``
for zarr inputs.

Choices (pictures are diagnostics, not scores):

* CellMap slices are chosen by per-slice counts of wrong voxels (one chunked reduction)
  rather than by the worst instance's bounding box: it finds the worst slice directly and
  works for semantic labels too. Instance colours are relative to each object's *main*
  partner (largest overlap, from one chunked contingency pass) in the submitted ids, not the
  scorer's connected-component relabelling or its optimal matching.
* XPRESS node labels are gathered with ``fresh_ids: nodes`` (only chunks holding nodes are
  read); a node is split when an incident edge changes segment or it lies on background,
  merged when its segment also holds another skeleton's node (merged wins).
* Neuroglancer ``file://`` sources open only where the viewer can read local files (its
  Python server); pass ``url_prefix`` (an http server of the data folder) otherwise.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpueval.pictures import (
    BLUE,
    GREEN,
    GREY,
    MAGENTA,
    ORANGE,
    RED,
    Images,
    agreement_rgb,
    error_overlay,
    pool_colours,
)
from gpueval.pictures import finite as _finite
from gpueval.pictures import label_colours as _label_colours
from gpueval.pictures import pool_factor as _step
from gpueval.pictures import run_config as _config
from gpueval.pictures import worst as _worst
from gpueval.result import Result

#: public viewer the link opens (the report stays self-contained: the link is only followed)
NEUROGLANCER_URL = "https://neuroglancer-demo.appspot.com/#!"

# --------------------------------------------------------------------------------------------
# CellMap


def cellmap_images(result: Result, truth, submission, config=None, *, n_items: int = 3,
                   max_side: int = 512) -> Images:
    """Two slices (most wrong voxels, middle) of each of the ``n_items`` worst (crop, label)."""
    from gpueval.challenges import _cellmap_scoring as sc
    from gpueval.challenges import cellmap as C

    cfg = C.resolve_config(_config("cellmap", config))
    opts = C.Options.from_config(cfg)

    def badness(it):
        n = (it.get("tp") or 0) + (it.get("fp") or 0) + (it.get("fn") or 0)
        if it.get("status") == sc.STATUS_MISSING or not n:
            return None
        return -((it.get("fp") or 0) + (it.get("fn") or 0)) / n

    ranked = sorted((it for it in result.items if badness(it) is not None and badness(it) < 0),
                    key=badness)[:n_items]
    if not ranked:
        return []
    crops = {c.name: c for c in C.list_truth(truth, opts)}
    manifest = C.read_manifest(opts.manifest)
    out: Images = []
    with C.open_submission(submission, list(crops.values())) as sub:
        for it in ranked:
            crop_name, label = str(it["id"]).split("/", 1)
            if crop_name not in crops:
                continue
            gt, pred, mask, _grid, instance = C.load_pair(crops[crop_name], label, sub,
                                                          manifest, opts)
            if pred is None:
                continue
            if mask is not None:
                gt, pred = gt * mask, pred * mask.astype(pred.dtype)
            out += _cellmap_item_images(str(it["id"]), gt, pred, instance, max_side)
    return out


def _cellmap_item_images(name: str, gt, pred, instance: bool, max_side: int) -> Images:
    if instance:
        maps = _main_partners(gt, pred)
        wrong = gt.map_blocks(_instance_wrong, pred, maps, dtype=bool)
    else:
        wrong = (gt > 0) != (pred > 0)
    if gt.ndim == 2:
        return [(f"{name}", _slice_rgb(gt, pred, (), instance, maps if instance else None,
                                        max_side))]
    per_z = np.asarray(wrong.sum(axis=tuple(range(1, gt.ndim))).compute())
    z_worst = int(np.argmax(per_z))
    z_mid = gt.shape[0] // 2
    kind = "splits orange, merges magenta, misses blue, false objects red" if instance \
        else "FP red, FN blue"
    out = []
    for z, why in ((z_worst, "most errors"), (z_mid, "middle")):
        if why == "middle" and z == z_worst:
            continue
        rgb = _slice_rgb(gt, pred, (z,), instance, maps if instance else None, max_side)
        out.append((f"{name} z={z} ({why}: {int(per_z[z])} wrong voxels; {kind})", rgb))
    return out


def _slice_rgb(gt, pred, index: tuple, instance: bool, maps, max_side: int) -> np.ndarray:
    """Read one (strided) slice of both volumes and colour it."""
    s = _step(gt.shape[len(index):], max_side)
    key = index + (slice(None, None, s),) * (gt.ndim - len(index))
    g = np.asarray(gt[key].compute())
    p = np.asarray(pred[key].compute())
    if not instance:
        return error_overlay(g > 0, p > 0)
    return instance_overlay(g, p, maps)


def _main_partners(gt, pred):
    """``(gt ids, their main pred id, pred ids, their main gt id)`` from one chunked pass."""
    from gpueval.engine import map_reduce
    from gpueval.kernels.stats import Contingency, contingency

    table = map_reduce(contingency, [gt, pred], Contingency.combine).drop(a=0, b=0)
    a = np.asarray(table.ids_a).astype(np.uint64)
    b = np.asarray(table.ids_b).astype(np.uint64)
    c = np.asarray(table.counts)
    return _argmax_by(a, b, c) + _argmax_by(b, a, c)


def _argmax_by(keys: np.ndarray, vals: np.ndarray, counts: np.ndarray):
    order = np.lexsort((-counts, keys))  # by key, largest count first
    k, v = keys[order], vals[order]
    first = np.ones(len(k), bool)
    first[1:] = k[1:] != k[:-1]
    return k[first], v[first]


def _lookup(x: np.ndarray, keys: np.ndarray, vals: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    if not len(keys):
        return np.zeros(x.shape, np.uint64)
    i = np.minimum(np.searchsorted(keys, x), len(keys) - 1)
    return np.where(keys[i] == x, vals[i], np.uint64(0))


def _instance_masks(g: np.ndarray, p: np.ndarray, maps) -> dict[str, np.ndarray]:
    ga, gb, pa, pb = maps
    gf, pf = g > 0, p > 0
    both = gf & pf
    return {"miss": gf & ~pf, "fp": pf & ~gf,
            "split": both & (_lookup(g, ga, gb) != p.astype(np.uint64)),
            "merge": both & (_lookup(p, pa, pb) != g.astype(np.uint64)),
            "both": both}


def _instance_wrong(g, p, maps):
    m = _instance_masks(np.asarray(g), np.asarray(p), maps)
    return m["miss"] | m["fp"] | m["split"] | m["merge"]


def instance_overlay(g: np.ndarray, p: np.ndarray, maps) -> np.ndarray:
    """RGB of an instance slice: voxels of an object's main partner grey, other fragments of
    a truth object orange (split), truth objects sharing a predicted object magenta (merge),
    missed voxels blue, predicted voxels on background red."""
    m = _instance_masks(g, p, maps)
    rgb = np.zeros(g.shape + (3,), np.uint8)
    rgb[m["both"]] = GREY
    rgb[m["merge"]] = MAGENTA
    rgb[m["split"]] = ORANGE
    rgb[m["fp"]] = RED
    rgb[m["miss"]] = BLUE
    return rgb


# --------------------------------------------------------------------------------------------
# XPRESS


def xpress_images(result: Result, truth, submission, config=None, *, slab: int = 2,
                  max_side: int = 768) -> Images:
    """One slice of the submission at the densest slab of skeleton nodes, nodes coloured by
    outcome. Node labels are gathered from the chunks holding nodes only (``fresh_ids:
    nodes``: background nodes are marked split, whatever their fresh id)."""
    from gpueval.challenges import xpress as X
    from gpueval.io.skeleton import load_skeleton

    settings = dict(X._settings(_config("xpress", config)), fresh_ids="nodes")
    skel = load_skeleton(truth)
    sub = X.open_submission(submission, settings)
    table = X.node_table(skel, sub, settings)
    if not len(table.voxel):
        return []
    outcome = node_outcomes(table.skeleton_ids, table.segment_ids, table.edges, table.next_id)
    zyx = np.stack(np.unravel_index(table.voxel, sub.shape), axis=1)
    counts = np.bincount(zyx[:, 0], minlength=sub.shape[0])
    window = np.convolve(counts, np.ones(2 * slab + 1, np.int64), mode="same")
    z = int(np.argmax(window))
    s = _step(sub.shape[1:], max_side)
    labels = np.asarray(sub.data[z, ::s, ::s].compute())
    rgb = _label_colours(labels)
    near = np.abs(zyx[:, 0] - z) <= slab
    order = np.argsort(outcome[near], kind="stable")  # draw errors last (on top)
    ys, xs, oc = zyx[near][order, 1] // s, zyx[near][order, 2] // s, outcome[near][order]
    colours = np.array([GREEN, ORANGE, MAGENTA], np.uint8)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy = np.clip(ys + dy, 0, rgb.shape[0] - 1)
            xx = np.clip(xs + dx, 0, rgb.shape[1] - 1)
            rgb[yy, xx] = colours[oc]
    n = np.bincount(oc, minlength=3)
    return [(f"submission z={z} with {int(near.sum())} skeleton nodes within ±{slab} slices: "
             f"{n[0]} correct (green), {n[1]} split (orange), {n[2]} merged (magenta)", rgb)]


def node_outcomes(skeleton_ids: np.ndarray, segment_ids: np.ndarray, edges: np.ndarray,
                  next_id: int) -> np.ndarray:
    """Per node: 0 correct, 1 split (an incident edge changes segment, or background),
    2 merged (its segment also covers another skeleton)."""
    seg = np.asarray(segment_ids, np.uint64)
    sk = np.asarray(skeleton_ids, np.int64)
    out = np.zeros(len(seg), np.int64)
    if len(edges):
        e = np.asarray(edges)
        cut = seg[e[:, 0]] != seg[e[:, 1]]
        out[e[cut].ravel()] = 1
    if next_id < 2**64:
        out[seg >= np.uint64(next_id)] = 1
    pairs = np.unique(np.stack([seg, sk.astype(np.uint64)], axis=1), axis=0)
    segs, n = np.unique(pairs[:, 0], return_counts=True)
    merged = np.isin(seg, segs[n > 1]) & (seg < np.uint64(min(next_id, 2**64 - 1)))
    out[merged] = 2
    return out


# --------------------------------------------------------------------------------------------
# MedSegFM


def medsegfm_images(result: Result, truth, submission, config=None, *, n_classes: int = 6,
                    max_side: int = 512) -> Images:
    """Per class of the worst case: the middle slice of the class's GT z range, FP/FN overlay.

    npz cases are loaded whole (npz cannot be read in part, the scorer loads them too); zarr
    cases are read lazily: the z range is a chunked reduction and only the shown slices are
    read.
    """
    import dask.array as da

    from gpueval.challenges import medsegfm as M

    settings = M._settings(_config("medsegfm", config))

    def headline(it):
        return it.get("dsc") if _finite(it.get("dsc")) else it.get("f1")

    item = _worst(result.items, headline)
    if item is None:
        return []
    name = str(item["id"])
    path = dict(M.truth_cases(truth)).get(name)
    if path is None:
        return []
    case = M.load_truth_case(path, settings["track"])
    gts = case["gts"]
    sub = Path(submission)
    if settings["track"] == "interactive":
        pred_path = M._find(sub / name, f"step_{settings['final_step']}")
    else:
        pred_path = M._find(sub, name)
    segs = M.load_prediction(pred_path, gts.shape) if pred_path.exists() else None
    ext = ((result.extra or {}).get("cases") or {}).get(name) or {}
    g = gts if isinstance(gts, da.Array) else da.from_array(gts, chunks=(16, -1, -1))
    if ext.get("kind") == "instance":
        classes, binary = [1], True
    else:
        classes = ext.get("classes")
        if classes is None:
            ids = np.unique(np.asarray(da.unique(g).compute()))
            classes = ids[1:].tolist()
        binary = False
    per_class = ext.get("per_class") or (ext.get("steps") or {}).get(
        str(settings.get("final_step")), {}).get("per_class") or {}
    out: Images = []
    for c in list(classes)[:n_classes]:
        present = (g > 0) if binary else (g == c)
        zs = np.flatnonzero(np.asarray(present.any(axis=(1, 2)).compute()))
        if not len(zs):
            continue
        z = int((zs[0] + zs[-1]) // 2)
        s = _step(gts.shape[1:], max_side)
        gz = np.asarray(gts[z, ::s, ::s])
        pz = (np.zeros_like(gz) if segs is None else np.asarray(segs[z, ::s, ::s]))
        if settings.get("uint8_cast"):
            gz, pz = gz.astype(np.uint8), pz.astype(np.uint8)
        if binary:
            rgb = error_overlay(gz > 0, pz > 0)
        else:
            rgb = error_overlay(gz == c, pz == c)
        dsc = (per_class.get(str(c)) or {}).get("dsc")
        score = f", DSC {dsc:.3f}" if _finite(dsc) else ""
        label = "foreground" if binary else f"class {c}"
        out.append((f"{name} {label} z={z} (middle of its GT range{score}; FP red, FN blue)",
                    rgb))
    return out


# --------------------------------------------------------------------------------------------
# REFUGE


def refuge_images(result: Result, truth, submission, config=None, *, max_side: int = 512
                  ) -> Images:
    """Disc and cup agreement of the worst image (lowest disc + cup Dice), pooled."""
    from gpueval.challenges import refuge as R

    def total(it):
        d, c = it.get("disc_dice"), it.get("cup_dice")
        return d + c if _finite(d) and _finite(c) else None

    item = _worst(result.items, total)
    if item is None:
        return []
    opts = R._Options.from_config(_config("refuge", config))
    gt = R.load_truth(truth)
    name = str(item["id"])
    if name not in gt.masks:
        return []
    with R._open_submission(submission, opts) as sub:
        with sub.open(name, opts.max_image_bytes) as f:
            g = R.read_mask(gt.masks[name], opts=opts, truth=True)
            p = R.read_mask(f, name=f"segmentation/{name}", opts=opts, expected_shape=g.shape)
    f = _step(g.shape, max_side)
    out: Images = []
    for part, gm, pm, dice in (
            ("disc", g < opts.background_value, p < opts.background_value, item["disc_dice"]),
            ("cup", g == opts.cup_value, p == opts.cup_value, item["cup_dice"])):
        rgb, fg = agreement_rgb(gm, pm)
        out.append((f"{name}: {part}, Dice {dice:.3f} (worst image; grey both, red "
                    f"predicted only, blue GT only; 1:{f})", pool_colours(rgb, fg, f)))
    return out


# --------------------------------------------------------------------------------------------
# Neuroglancer


def neuroglancer_source(path: str | Path, url_prefix: str | None = None) -> str:
    """Neuroglancer data source of a zarr (v2/v3) or n5 array: ``zarr2://``, ``zarr3://``
    (``zarr://`` when the version is not recognisable), ``n5://``; ``url_prefix`` (an http
    server serving the files) replaces ``file://`` + the absolute path."""
    p = Path(path)
    if (p / "zarr.json").is_file():
        scheme = "zarr3"
    elif (p / ".zarray").is_file() or (p / ".zgroup").is_file():
        scheme = "zarr2"
    elif (p / "attributes.json").is_file():
        scheme = "n5"
    else:
        scheme = "zarr"
    where = url_prefix.rstrip("/") + "/" + p.name if url_prefix else "file://" + \
        str(p.resolve())
    return f"{scheme}://{where}"


def neuroglancer_state(truth_path: str | Path, submission_path: str | Path,
                       error_layer: str | Path | None = None,
                       position: Sequence[float] | None = None, *,
                       voxel_size: Sequence[float] | None = None, units: str = "nm",
                       url_prefix: str | None = None, note: str = "worst item"
                       ) -> dict[str, Any]:
    """A Neuroglancer viewer state: ``truth`` and ``submission`` segmentation layers and an
    ``errors`` layer (a volume when ``error_layer`` is a path, otherwise a point annotation at
    ``position``), centred at ``position`` (voxel coordinates, array axis order)."""
    layers: list[dict[str, Any]] = [
        {"type": "segmentation", "name": "truth",
         "source": neuroglancer_source(truth_path, url_prefix)},
        {"type": "segmentation", "name": "submission",
         "source": neuroglancer_source(submission_path, url_prefix)},
    ]
    if error_layer is not None:
        layers.append({"type": "image", "name": "errors",
                       "source": neuroglancer_source(error_layer, url_prefix)})
    else:
        layers.append({"type": "annotation", "name": "errors", "annotations": (
            [{"type": "point", "id": "worst", "point": [float(v) for v in position],
              "description": note}] if position is not None else [])})
    state: dict[str, Any] = {"layers": layers, "layout": "xy",
                             "selectedLayer": {"layer": "submission", "visible": True}}
    if position is not None:
        state["position"] = [float(v) for v in position]
    if voxel_size is not None:
        names = ["z", "y", "x"][-len(voxel_size):] if len(voxel_size) <= 3 else \
            [f"d{i}" for i in range(len(voxel_size))]
        state["dimensions"] = {n: [float(v) * 1e-9 if units == "nm" else float(v), "m"]
                               for n, v in zip(names, voxel_size, strict=True)}
    return state


def neuroglancer_url(state: Mapping[str, Any]) -> str:
    """The public viewer's link for ``state`` (the state travels in the URL fragment)."""
    return NEUROGLANCER_URL + urllib.parse.quote(json.dumps(state, separators=(",", ":")),
                                                 safe="")


def attach_neuroglancer(result: Result, truth, submission, config=None
                        ) -> dict[str, Any] | None:
    """Write ``result.extra["neuroglancer"] = {"state", "url"}`` when truth and submission of
    the worst item are zarr arrays on disk (CellMap crops, MedSegFM ``.zarr`` cases, or two
    zarr arrays given directly); returns the entry, or ``None`` when there is nothing to open."""
    pair = _zarr_pair(result, Path(truth), Path(submission))
    if pair is None:
        return None
    t, s, position, vs, note = pair
    state = neuroglancer_state(t, s, position=position, voxel_size=vs, note=note)
    entry = {"state": state, "url": neuroglancer_url(state)}
    result.extra["neuroglancer"] = entry
    return entry


def _is_zarr(p: Path) -> bool:
    return p.is_dir() and any((p / f).is_file() for f in ("zarr.json", ".zarray", ".zgroup"))


def _zarr_pair(result: Result, truth: Path, submission: Path):
    if result.challenge == "cellmap":
        def bad(it):
            n = (it.get("tp") or 0) + (it.get("fp") or 0) + (it.get("fn") or 0)
            return -((it.get("fp") or 0) + (it.get("fn") or 0)) / n if n else None

        item = _worst([it for it in result.items if it.get("status") != "missing"], bad)
        if item is None:
            return None
        crop, label = str(item["id"]).split("/", 1)
        t, s = truth / crop / label, submission / crop / label
        if not (_is_zarr(t) and _is_zarr(s)):
            return None
        return t, s, _centre(t), _attr_voxel_size(t), f"{item['id']} (worst)"
    if result.challenge == "medsegfm":
        item = _worst(result.items, lambda it: it.get("dsc"))
        if item is None:
            return None
        t, s = truth / f"{item['id']}.zarr", submission / f"{item['id']}.zarr"
        t = t / "gts" if _is_zarr(t / "gts") else t
        s = s / "segs" if _is_zarr(s / "segs") else s
        if not (_is_zarr(t) and _is_zarr(s)):
            return None
        return t, s, _centre(t), None, f"case {item['id']} (worst)"
    if _is_zarr(truth) and _is_zarr(submission):
        return truth, submission, _centre(truth), None, "volume centre"
    return None


def _centre(p: Path) -> list[float] | None:
    from gpueval.io.arrays import open_volume

    try:
        return [s / 2 for s in open_volume(p).data.shape]
    except Exception:  # a link without a position still opens the layers
        return None


def _attr_voxel_size(p: Path) -> list[float] | None:
    from gpueval.io.arrays import open_volume

    try:
        return [float(v) for v in open_volume(p).voxel_size]
    except Exception:
        return None
