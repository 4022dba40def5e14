"""MedSegFM's scoring: cases composed into the :class:`~gpueval.result.Result`, and the CSV.

:func:`score` reads each truth case (:mod:`.layout`), scores its prediction — one file per
case on the semantic and text tracks (:func:`_score_single_case`: per-class DSC/NSD from
:mod:`.semantic`, or instance F1 from :mod:`.text`), six step files on the interactive track
(:mod:`.interactive`) — and aggregates the items; :func:`validate` runs the format checks
only. Per-class values (DSC, NSD, surfel counts and areas, overlaps, HD95/HD100, ASD) are in
``result.extra["cases"]``; :func:`write_official_csv` writes the official CSV columns.

Choices where the spec is silent (documented for the organisers):

* **Across cases** (not in the official repository): every aggregate in ``metrics`` is the
  mean over cases, skipping NaN case values (pandas' default); ``score`` is the mean case DSC
  (semantic), the mean case F1 (text track, instance cases) — for a text submission mixing
  both kinds, the mean over cases of each case's headline (DSC or F1) — and the mean final
  DSC (interactive).
* **Missing prediction file**: scored as an all-zero prediction (as the interactive protocol
  does for a failed step), never skipped, so leaving out a hard case cannot help; the item
  has ``status: "missing"`` and the result a warning naming the case. A submission with no
  prediction for any truth case is rejected.
* The semantic track reports the ungated NSD; ``extra`` also lists the gated value.
* A missing ``instance_label`` in a text case's prompts means 0 (semantic scoring).
* Text-track ``RunningTime`` (CSV view) is the optional ``running_time`` of the prediction
  npz, 0 when absent.
* Text CSV values are rounded as ``round(np.float64, 4)`` rounds (``np.round``), not with
  Python's correctly rounded ``round`` (they differ on near-halves such as 0.12345).
"""

from __future__ import annotations

import contextvars
import csv
import io
import math
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from gpueval import progress as bars
from gpueval.challenges import config_as_given
from gpueval.challenges.medsegfm import resident
from gpueval.challenges.medsegfm.layout import (
    STEP_RE,
    SUFFIXES,
    _find,
    _missing_case_warning,
    _running_time,
    _submission_dir,
    _submission_relative,
    _truth_shape,
    _warn_unread,
    load_prediction,
    load_truth_case,
    truth_cases,
)
from gpueval.challenges.medsegfm.options import _Context, _settings
from gpueval.challenges.medsegfm.semantic import _case_mean, class_set, semantic_scores
from gpueval.errors import Rejected
from gpueval.notices import warn
from gpueval.result import Result

CHALLENGE = "medsegfm"


def score(truth, submission, config: dict[str, Any], *, device: str = "cpu",
          scheduler: Any = None, progress: bool = False) -> Result:
    """Score a MedSegFM submission folder against a truth folder (see the module docstring).

    Returns
    -------
    Result with one item per truth case (``id`` = case name); a case without a prediction
    has ``status: "missing"`` (and ``missing: True``) and is scored as all-zero, with a
    warning.
    """
    with _submission_relative(submission):
        return _score(truth, submission, config, device=device, scheduler=scheduler,
                      progress=progress)


def _score(truth, submission, config: dict[str, Any], *, device: str, scheduler: Any,
           progress: bool) -> Result:
    settings = _settings(config)
    cases = truth_cases(truth)
    sub = _submission_dir(submission)
    ctx = _Context(settings, device, scheduler, progress)
    items, extended = [], {}
    with bars.phase("cases", total=len(cases), unit="case") as bar:
        for name, path in cases:
            bar.set_item(name)
            if settings["track"] == "interactive":
                from gpueval.challenges.medsegfm.interactive import _score_interactive_case

                case = load_truth_case(path, settings["track"])
                item, ext = _score_interactive_case(ctx, name, case, sub / name)
            else:
                pred_path = _find(sub, name)
                case, segs, scans = _load_side_by_side(ctx, path, pred_path)
                item, ext = _score_single_case(ctx, name, case, pred_path, segs, scans)
            items.append(item)
            extended[name] = ext
            bar.update(1)
    if all(it.get("missing") for it in items):
        layout = ("<case>/step_<k>.npz" if settings["track"] == "interactive"
                  else "<case>.npz")
        raise Rejected(f"{sub.name}: no prediction for any of the {len(items)} truth case(s); "
                       f"expected {layout} for track {settings['track']}")
    _warn_unread(sub, [name for name, _ in cases], settings, scoring=True)
    result = Result(CHALLENGE, str(config["metric_version"]), items=items)
    result.metrics = _aggregate(items, settings)
    result.score = _headline(items, settings)
    result.runtime["voxels"] = ctx.voxels
    result.extra["cases"] = extended
    result.extra["track"] = settings["track"]
    missing = [it["id"] for it in items if it.get("missing")]
    if missing:
        result.extra["missing_cases"] = missing
    return result


# the protocol's resolve_config: a copy (``track``/``variant`` are resolved by load_config already)
resolve_config = config_as_given


def validate(submission, config: dict[str, Any], *, truth=None) -> list[str]:
    """Format checks of a submission folder (no scoring). Raises Rejected; returns notes."""
    with _submission_relative(submission):
        return _validate(submission, config, truth)


def _validate(submission, config: dict[str, Any], truth) -> list[str]:
    settings = _settings(config)
    sub = _submission_dir(submission)
    notes: list[str] = []
    expected = None
    if truth is not None:
        expected = {name: path for name, path in truth_cases(truth)}
    if settings["track"] == "interactive":
        names = sorted(p.name for p in sub.iterdir() if p.is_dir())
        for name in names:
            shape = _truth_shape(expected[name]) if expected and name in expected else None
            for step_path in sorted((sub / name).iterdir()):
                m = STEP_RE.match(step_path.name)
                if not m or not 1 <= int(m.group(1)) <= settings["n_steps"]:
                    notes.append(f"{name}/{step_path.name}: ignored (expected step_1..step_"
                                 f"{settings['n_steps']}.npz|.zarr)")
                    if not step_path.name.startswith("."):
                        warn(f"{name}/{step_path.name}: would be ignored (expected step_1.."
                             f"step_{settings['n_steps']}.npz); rename the step files")
                    continue
                load_prediction(step_path, shape)
                _running_time(step_path)
    else:
        names = sorted({p.stem for p in sub.iterdir() if p.suffix in SUFFIXES})
        for name in names:
            shape = _truth_shape(expected[name]) if expected and name in expected else None
            load_prediction(_find(sub, name), shape)
    if not names:
        layout = ("<case>/step_<k>.npz folders" if settings["track"] == "interactive"
                  else "<case>.npz files")
        raise Rejected(f"{sub.name}: no predictions found (expected {layout})")
    if expected is not None:
        absent = sorted(set(expected) - set(names))
        extra = sorted(set(names) - set(expected))
        if absent:
            notes.append(f"{len(absent)} case(s) without a prediction, scored as all-zero: "
                         + ", ".join(absent[:10]))
            for name in absent:
                warn(_missing_case_warning(name, settings, scoring=False))
        if extra:
            notes.append(f"{len(extra)} prediction(s) for unknown cases ignored: "
                         + ", ".join(extra[:10]))
        _warn_unread(sub, list(expected), settings, scoring=False)
    else:
        _warn_unread(sub, None, settings, scoring=False)
    notes.append(f"{len(names)} case(s) checked for track {settings['track']}")
    return notes


def write_official_csv(result: Result, path: str | Path | None = None) -> str:
    """The official per-case CSV of the result's track (column order of the scripts).

    Text track values are rounded to 4 decimals (as ``CVPR25_text_eval.py`` writes them);
    interactive values are not rounded. NaN is written as an empty field (pandas' default).
    Returns the CSV text and writes it to ``path`` when given.
    """
    track = result.extra.get("track", "semantic")
    if track == "interactive":
        cols = (["CaseName", "TotalRunningTime"] + [f"RunningTime_{k}" for k in range(1, 7)]
                + ["DSC_AUC", "NSD_AUC", "DSC_Final", "NSD_Final"]
                + [f"DSC_{k}" for k in range(1, 7)] + [f"NSD_{k}" for k in range(1, 7)]
                + ["num_class", "runtime_upperbound"])
        keys = (["id", "total_running_time"] + [f"running_time_{k}" for k in range(1, 7)]
                + ["dsc_auc", "nsd_auc", "dsc_final", "nsd_final"]
                + [f"dsc_{k}" for k in range(1, 7)] + [f"nsd_{k}" for k in range(1, 7)]
                + ["num_class", "runtime_upperbound"])
        digits = None
    elif track == "text":
        cols = ["CaseName", "RunningTime", "DSC", "NSD", "F1", "DSC_TP"]
        keys = ["id", "running_time", "dsc", "nsd", "f1", "dsc_tp"]
        digits = 4
    else:
        cols = ["CaseName", "DSC", "NSD"]
        keys = ["id", "dsc", "nsd"]
        digits = None
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for it in result.items:
        writer.writerow([_csv_value(it.get(k), digits) for k in keys])
    text = buf.getvalue()
    if path is not None:
        Path(path).write_text(text)
    return text


def _load_side_by_side(ctx: _Context, path: Path, pred_path: Path
                       ) -> tuple[dict[str, Any], Any, tuple | None]:
    """The truth case and, when both are ``.npz`` files, its prediction decoded at the same
    time in a second thread (libdeflate and zlib inflate outside the GIL: the two files take
    about the time of one on two cores). The prediction is checked against the truth's
    declared shape before it is allocated, as :func:`load_prediction` always does; a truth
    error is raised first, as when the files are read one after the other.

    Where :func:`.resident.streams`, each thread also scans its volume once it is decoded
    (:class:`.resident.SlabFeed`; slab by slab while a bzip2/lzma member streams); the
    prediction's scan gets the classes from
    the truth's as soon as the truth is read. Returns ``(case, segs or None, scans)``; segs
    None: the caller reads the prediction itself; ``scans``: ``(truth scan, prediction scan,
    classes)`` or None when the volumes were not scanned.
    """
    track = ctx.settings["track"]
    if path.suffix != ".npz" or pred_path.suffix != ".npz" or not pred_path.is_file():
        return load_truth_case(path, track), None, None
    try:
        shape = _truth_shape(path)
    except Exception:  # a broken truth file: its reader below says why, as before
        return load_truth_case(path, track), None, None
    streaming = resident.streams(ctx)
    classes: Future = Future()
    truth_feed = resident.SlabFeed() if streaming else None
    pred_feed = resident.SlabFeed(classes) if streaming else None
    with ThreadPoolExecutor(1) as pool:
        # the prediction is read under this call's limits and path display (context vars)
        future = pool.submit(contextvars.copy_context().run, load_prediction, pred_path, shape,
                             pred_feed)
        try:
            case = load_truth_case(path, track, truth_feed)
            # the classes go to the prediction's scan before the truth's surface codes are
            # computed: both threads then compute their codes at the same time
            early = truth_feed.transitions(case["gts"]) if truth_feed is not None else None
            truth = None
            if early is not None:
                wanted = class_set(resident.truth_ids(early), ctx.settings, case["prompts"])
                classes.set_result([c for c in wanted if c != 0])  # 0: refused below
                truth = truth_feed.scan(case["gts"])
        finally:
            if not classes.done():  # no scan of the truth: the prediction's is not used
                classes.set_result([])
        segs = future.result()
    if truth_feed is not None and truth_feed.dense:
        return case, segs, resident.DENSE
    if truth is None or not isinstance(segs, np.ndarray):
        return case, segs, None
    pred = pred_feed.scan(segs)
    if pred_feed.dense:
        return case, segs, resident.DENSE
    return case, segs, (None if pred is None else (truth, pred, wanted))


def _score_single_case(ctx: _Context, name: str, case: dict[str, Any], pred_path: Path,
                       segs: Any = None, scans: tuple | None = None):
    s = ctx.settings
    gts = case["gts"]
    missing = not pred_path.exists()
    if segs is not None:
        running_time = _running_time(pred_path)
    elif missing:
        segs = np.zeros(gts.shape, gts.dtype) if isinstance(gts, np.ndarray) else \
            _chunked().zeros_like(gts)
        running_time = 0.0
    else:
        segs = load_prediction(pred_path, gts.shape)
        running_time = _running_time(pred_path)
    if s["uint8_cast"]:
        gts, segs = gts.astype(np.uint8), segs.astype(np.uint8)
    instance = s["track"] == "text" and int(case["prompts"].get("instance_label", 0)) == 1
    item: dict[str, Any] = {"id": name}
    per_class = None
    if instance:
        from gpueval.challenges.medsegfm.text import instance_scores  # dask, SciPy, Numba

        inst = instance_scores(ctx, gts, segs)
        item.update({"dsc": math.nan, "nsd": math.nan, "f1": inst["f1"],
                     "dsc_tp": inst["dsc_tp"]})
        ext = {"kind": "instance", **inst}
    elif resident.applies(ctx, gts, segs) and scans is not resident.DENSE:
        # an npz case, decoded whole: one pass each (None: too many label changes)
        classes, per_class = _resident_scores(ctx, case, gts, segs, scans)
    if not instance and per_class is None:  # zarr, GPU, or a noise-like npz volume
        table = _chunked().pair_table(ctx, gts, segs)
        classes = class_set(table.sizes_a()[0], s, case["prompts"])
        per_class = semantic_scores(ctx, gts, segs, case["spacing"], classes, table)
    if not instance:
        dsc = _case_mean([v["dsc"] for v in per_class.values()], s["case_mean"])
        nsd = _case_mean([v["nsd_2mm"] for v in per_class.values()], s["case_mean"])
        gate = s["nsd_gate"]
        nsd_gated = nsd if gate is None or dsc > gate else 0.0
        item.update({"dsc": dsc, "nsd": nsd_gated})
        if s["track"] == "semantic":  # the interactive scorer's per-step value, for reference
            item["nsd_gated"] = nsd if dsc > 0.2 else 0.0
        if s["track"] == "text":
            item.update({"f1": math.nan, "dsc_tp": math.nan})
        ext = {"kind": "semantic", "classes": classes, "nsd_ungated": nsd,
               "nsd_gated_0.2": nsd if dsc > 0.2 else 0.0,
               "per_class": {str(c): v for c, v in per_class.items()}}
    item["running_time"] = running_time
    if missing:
        item["missing"] = True
        item["status"] = "missing"
        warn(_missing_case_warning(name, s, scoring=True))
    return item, ext


def _resident_scores(ctx: _Context, case: dict[str, Any], gts, segs, scans: tuple | None):
    """``(classes, per-class scores)`` of an in-memory case by :mod:`.resident`, from the
    scans made while decoding when there are any; ``(None, None)`` when a volume is
    :class:`~gpueval.kernels.nsd_scan.TooDense` for that path."""
    s = ctx.settings
    voxels = ctx.voxels  # the chunked path counts the case again
    try:
        if scans is not None and not s["uint8_cast"]:  # scanned while decoded
            truth, pred, classes = scans
            ctx.voxels += int(gts.size)
            resident.check_classes(classes)
        else:
            truth = resident.scan_truth(ctx, gts)
            classes = class_set(resident.truth_ids(truth), s, case["prompts"])
            pred = resident.scan_prediction(segs, classes)
    except resident.TooDense:
        ctx.voxels = voxels
        return None, None
    return classes, semantic_scores(ctx, gts, segs, case["spacing"], classes,
                                    resident.case_table(truth, pred), truth.surfaces,
                                    pred.surfaces, resident.grid(gts.shape, case["spacing"], s))


def _chunked():
    """The chunked path's module, imported when a case needs it (it imports dask.array,
    ~0.4 s, which an npz case on the CPU never uses)."""
    from gpueval.challenges.medsegfm import chunked

    return chunked


def _nanmean(values) -> float:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if len(arr) else math.nan


def _aggregate(items: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    if settings["track"] == "interactive":
        names = ["dsc_auc", "nsd_auc", "dsc_final", "nsd_final", "dsc", "nsd"]
    elif settings["track"] == "text":
        names = ["dsc", "nsd", "f1", "dsc_tp"]
    else:
        names = ["dsc", "nsd"]
    metrics = {n: _nanmean(it.get(n, math.nan) for it in items) for n in names}
    metrics["n_cases"] = len(items)
    if settings["track"] == "interactive":
        metrics["n_time_limit_exceeded"] = sum(bool(it["time_limit_exceeded"]) for it in items)
    return metrics


def _headline(items: list[dict[str, Any]], settings: dict[str, Any]) -> float:
    if settings["track"] != "text":
        return _nanmean(it["dsc"] for it in items)
    # each text case's headline: F1 for instance cases, DSC for semantic ones
    return _nanmean(it["dsc"] if math.isnan(it["f1"]) else it["f1"] for it in items)


def _csv_value(v: Any, digits: int | None) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float | np.floating):
        if math.isnan(v):
            return ""
        if digits is None:
            return repr(float(v))
        # the official values are np.float64, whose round() is np.round (scale, rint, unscale):
        # 0.12345 -> 0.1234, where Python's correctly rounded round() gives 0.1235
        return repr(float(np.round(np.float64(v), digits)))
    return str(v)
