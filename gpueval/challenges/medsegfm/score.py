"""MedSegFM (CVPR 2025 foundation models for 3D biomedical segmentation): DSC, NSD, instance F1.

Implements ``shared/specs/medsegfm.md`` through the challenge interface; constants live in
``configs/medsegfm.yaml``. Three tracks (config key ``track``):

``semantic`` (default)
    One prediction per case; per-class DSC and NSD at 2 mm over the GT classes (sorted unique
    GT labels minus the first, spec §4), case value = mean over classes. No DSC gate.
``text``
    ``CVPR25_text_eval.py``: both volumes cast to uint8 (``compat=official``); the prompts'
    ``instance_label`` selects semantic (DSC/NSD over prompted ∩ GT classes, ``nanmean``) or
    instance scoring (binary prediction → 6-connected components, sequential relabelling,
    IoU ≥ 0.5 one-to-one matching, F1 and DSC_TP).
``interactive``
    ``CVPR25_iter_eval.py``: six steps per case; DSC_k, NSD_k with NSD_k := 0 unless
    DSC_k > 0.2; AUC over steps 2–6 (trapezoid, unit spacing); finals = step 6; time limit
    90 s × number of classes.

Layouts (``shared/specs/cli.md``): truth folder of ``<case>.npz`` with ``gts`` and ``spacing``
(text track: ``text_prompts_json``, or the official pickled ``text_prompts`` read only through
the restricted unpickler); submission folder of ``<case>.npz`` with ``segs``, interactive
``<case>/step_<k>.npz`` with ``segs`` and optional ``running_time``. NumPy files are always
read with ``allow_pickle=False``. For volumes too large for npz, ``<case>.zarr`` (truth: a
group with array ``gts`` whose attributes hold ``spacing``, text track ``text_prompts``;
submission: a group with array ``segs`` or a bare array, optional attribute ``running_time``)
is read lazily chunk by chunk (:func:`gpueval.io.arrays.open_volume`), the connected components
of a binary text-track prediction included (:func:`gpueval.kernels.components.label_chunked`).

Choices where the spec is silent or says "unknown" (documented for the organisers):

* **Across cases** (not in the official repository): every aggregate in ``metrics`` is the
  mean over cases, skipping NaN case values (pandas' default); ``score`` is the mean case DSC
  (semantic), the mean case F1 (text track, instance cases) — for a text submission mixing
  both kinds, the mean over cases of each case's headline (DSC or F1) — and the mean final
  DSC (interactive).
* **Missing prediction file**: scored as an all-zero prediction (as the interactive protocol
  does for a failed step), never skipped, so leaving out a hard case cannot help; the item
  has ``status: "missing"`` and the result a warning naming the case. Entries the scorer does
  not read (other file types, unknown cases, an ``.npz`` beside a ``.zarr`` of the same case,
  stray files in step folders), absent interactive steps and time-limit overruns are warnings
  too (``validate`` says the same where it can). This also
  holds for a missing final interactive step, where the official script writes no CSV row
  for the case at all.
* **No box** (interactive, spec §5): only an image npz can lack ``boxes``. A truth npz (or
  zarr group) holding ``imgs`` but no ``boxes`` is a case without a box: step 1 is not run,
  DSC_1 = NSD_1 = 0 and RunningTime_1 = 0 whatever ``step_1`` holds. A plain GT npz
  (``gts``, ``spacing``) has a box.
* **Time limit** (interactive): the script only warns, the README says DSC and NSD are set to
  0 on the final test set without saying which. ``time_limit_action: flag`` (default, = the
  code) only sets ``time_limit_exceeded``; ``zero`` sets every DSC/NSD of the case (steps,
  AUCs, finals) to 0.
* **Missing interactive step** (``interactive.missing_step``): ``zeros`` (default, spec §5
  "Failed step") scores an all-zero prediction. The official loop never clears its output
  folder between steps, so a step that writes nothing leaves the previous step's file in
  place and that stale prediction is scored (zeros only when no earlier step wrote one);
  ``previous`` reproduces this (the reused step is in ``extra``; its running time is 0).
* **Binary text prediction** with values ``{a, b}``: ``cc3d`` labels the non-zero voxels of
  the prediction itself (6-connectivity), as in the official branch.
* ``compat=corrected`` keeps labels ≥ 256 apart on the text track (no uint8 cast) and drops
  only label 0 (not the smallest label) when a GT has no background voxel.
* The semantic track reports the ungated NSD; ``extra`` also lists the gated value.
* A malformed prediction (wrong shape, non-integer dtype, pickled or missing ``segs``) rejects
  the submission with a one-line reason, where the text script would write a NaN row (which
  a NaN-skipping mean would then reward).
* Text-track ``RunningTime`` (CSV view) is the optional ``running_time`` of the prediction
  npz, 0 when absent.
* Text prompt keys are read with Python's ``int()`` as the script does (``"+1"``, ``" 1"``,
  ``"01"`` are class 1); keys ``int()`` refuses (other than ``instance_label``) are ignored,
  where the script would fail on the case; a missing ``instance_label`` means 0 (semantic).
* Text CSV values are rounded as ``round(np.float64, 4)`` rounds (``np.round``), not with
  Python's correctly rounded ``round`` (they differ on near-halves such as 0.12345).

Per-class values (DSC, NSD, surfel counts and areas, overlaps, HD95/HD100, ASD) are in
``result.extra["cases"]``; :func:`write_official_csv` writes the official CSV columns.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from dask import delayed

from gpueval.config import get_dotted
from gpueval.engine import compute, map_reduce, timed, tree_reduce
from gpueval.errors import Rejected, TruthError
from gpueval.io.archive import iter_files
from gpueval.io.arrays import load_npz_array, open_volume
from gpueval.kernels.stats import Contingency, contingency
from gpueval.kernels.surface import (
    SurfacePoints,
    block_request,
    corner_chunks,
    label_surfaces,
    surface_stats,
)
from gpueval.limits import Limits, use_limits
from gpueval.metrics.matching import match_iou_threshold
from gpueval.metrics.overlap import precision_recall_f
from gpueval.notices import warn
from gpueval.result import Result

CHALLENGE = "medsegfm"
TRACKS = ("semantic", "text", "interactive")
MAX_PROMPT_BYTES = 1 << 20
STEP_RE = re.compile(r"^step_(\d+)\.(npz|zarr)$")
SUFFIXES = (".npz", ".zarr")

# --------------------------------------------------------------------------------------------
# Public interface


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
    for name, path in cases:
        case = load_truth_case(path, settings["track"])
        if settings["track"] == "interactive":
            item, ext = _score_interactive_case(ctx, name, case, sub / name)
        else:
            item, ext = _score_single_case(ctx, name, case, _find(sub, name))
        items.append(item)
        extended[name] = ext
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


@contextmanager
def _submission_relative(submission) -> Iterator[None]:
    """Rejections name paths inside the submission, never the server's folder (the array
    readers quote the full path of the file they were given)."""
    try:
        yield
    except Rejected as e:
        root = Path(submission)
        msg = str(e)
        # absolute forms only: a short relative name could match inside ordinary words
        for shown in sorted({str(root.absolute()), str(root.resolve())}, key=len,
                            reverse=True):
            msg = msg.replace(shown + os.sep, "").replace(shown, root.name)
        if msg == str(e):
            raise
        raise Rejected(msg) from e


def _missing_case_warning(name: str, settings: dict[str, Any], *, scoring: bool) -> str:
    verb = "scored" if scoring else "would be scored"
    if settings["track"] == "interactive":
        return (f"{name}/: no folder of step predictions in the submission, {verb} as "
                f"all-zero (DSC 0) for every step; add {name}/step_<k>.npz")
    return (f"{name}: no {name}.npz (or {name}.zarr) in the submission, {verb} as an all-zero "
            f"prediction (DSC 0, counted in the mean); add {name}.npz")


def _warn_unread(sub: Path, cases: list[str] | None, settings: dict[str, Any], *,
                 scoring: bool) -> None:
    """Warn about every submitted entry the scorer does not read: files of another type,
    predictions of unknown cases, a case given both as .npz and .zarr, stray files in an
    interactive case folder (``cases`` None: the truth is unknown, names are not checked)."""
    interactive = settings["track"] == "interactive"
    known = None if cases is None else set(cases)
    ignored, unknown, both = [], [], []
    for p in sorted(sub.iterdir(), key=lambda q: q.name):
        if p.name.startswith("."):
            continue  # .DS_Store and editor files
        if interactive:
            if not p.is_dir() or p.suffix == ".zarr":
                ignored.append(p.name)
            elif known is not None and p.name not in known:
                unknown.append(p.name + "/")
            continue
        if p.suffix not in SUFFIXES:
            ignored.append(p.name + ("/" if p.is_dir() else ""))
        elif known is not None and p.stem not in known:
            unknown.append(p.name)
        elif p.suffix == ".npz" and (sub / f"{p.stem}.zarr").exists():
            both.append(p.stem)
    verb = "" if scoring else "would be "
    if ignored:
        layout = "<case>/step_<k>.npz folders" if interactive else "<case>.npz files"
        warn(f"{_listing(ignored)}: {verb}ignored ({len(ignored)} entries that are not "
             f"{layout}); convert predictions to .npz with a 'segs' array")
    if unknown:
        warn(f"{_listing(unknown)}: {verb}ignored, no truth case of that name; name "
             "predictions as the truth cases")
    if both:
        warn(f"{_listing([f'{n}.npz' for n in both])}: {verb}ignored, the .zarr of the same "
             "case is scored; keep one file per case")
    if interactive and scoring:  # validate checks each step folder itself
        for case in sorted(c for c in (known or ()) if (sub / c).is_dir()):
            stray = [q.name for q in sorted((sub / case).iterdir())
                     if not q.name.startswith(".") and (
                         not (m := STEP_RE.match(q.name))
                         or not 1 <= int(m.group(1)) <= settings["n_steps"])]
            if stray:
                warn(f"{_listing([f'{case}/{n}' for n in stray])}: {verb}ignored (expected "
                     f"step_1..step_{settings['n_steps']}.npz); rename the step files")


def _listing(names: list[str], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


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


# --------------------------------------------------------------------------------------------
# Inputs


def truth_cases(truth) -> list[tuple[str, Path]]:
    """``(case name, path)`` of every ``<case>.npz`` (or ``.zarr``) in the truth folder,
    sorted by name."""
    root = Path(truth)
    if not root.is_dir():
        raise TruthError(f"truth {root} must be a folder of <case>.npz files")
    cases = sorted((p.stem, p) for p in root.iterdir() if p.suffix in SUFFIXES)
    if not cases:
        raise TruthError(f"truth folder {root} holds no .npz case")
    names = [n for n, _ in cases]
    if len(set(names)) != len(names):
        raise TruthError(f"truth folder {root} holds a case both as .npz and .zarr")
    return cases


def load_truth_case(path: Path, track: str) -> dict[str, Any]:
    """``gts``, ``spacing`` and (text track) the prompts of one truth case.

    The truth is the organiser's: it is read under the default limits, not the submission
    limits of the config's ``limits:`` mapping."""
    with use_limits(Limits()):
        return _load_truth_case(path, track)


def _load_truth_case(path: Path, track: str) -> dict[str, Any]:
    if path.suffix == ".zarr":
        return _load_zarr_truth(path, track)
    try:
        gts = load_npz_array(path, "gts")
        spacing = np.asarray(load_npz_array(path, "spacing"), dtype=np.float64).reshape(-1)
    except Rejected as e:
        raise TruthError(f"truth case {path.name}: {e}") from e
    if gts.ndim != 3:
        raise TruthError(f"truth case {path.name}: gts must be 3-D, got shape {gts.shape}")
    if not (np.issubdtype(gts.dtype, np.integer) or gts.dtype == bool):
        raise TruthError(f"truth case {path.name}: gts must hold integer labels, got {gts.dtype}")
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise TruthError(f"truth case {path.name}: spacing must be 3 positive numbers, "
                         f"got {spacing.tolist()}")
    case = {"gts": gts, "spacing": tuple(float(s) for s in spacing), "prompts": None,
            "has_box": _npz_has_box(path)}
    if track == "text":
        case["prompts"] = load_text_prompts(path)
    return case


def _npz_has_box(path: Path) -> bool:
    """Whether the interactive step 1 (box prompt) runs for this case (spec §5 "No box").

    Only an image npz tells: a truth npz that holds the image (``imgs``) but no ``boxes``
    key is a case without a box. A plain GT npz (``gts``, ``spacing``) carries no image, so
    the box is taken to exist.
    """
    with zipfile.ZipFile(path) as z:
        names = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
    return "imgs" not in names or "boxes" in names


def _load_zarr_truth(path: Path, track: str) -> dict[str, Any]:
    try:
        vol = open_volume(path, "gts")
    except Rejected as e:
        raise TruthError(f"truth case {path.name}: {e}") from e
    if vol.data.ndim != 3 or not (np.issubdtype(vol.dtype, np.integer) or vol.dtype == bool):
        raise TruthError(f"truth case {path.name}: gts must be a 3-D integer array")
    spacing = vol.attrs.get("spacing")
    if spacing is None:
        raise TruthError(f"truth case {path.name}: gts needs a 'spacing' attribute")
    spacing = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise TruthError(f"truth case {path.name}: spacing must be 3 positive numbers")
    has_imgs = (path / "imgs").exists()
    has_boxes = "boxes" in vol.attrs or (path / "boxes").exists()
    case = {"gts": vol.data, "spacing": tuple(float(v) for v in spacing), "prompts": None,
            "has_box": not has_imgs or has_boxes}
    if track == "text":
        prompts = vol.attrs.get("text_prompts")
        if isinstance(prompts, str):
            prompts = json.loads(prompts)
        case["prompts"] = _check_prompts(prompts, path.name)
    return case


def load_text_prompts(path: Path) -> dict[str, Any]:
    """The text prompts of a truth case: ``text_prompts_json`` (preferred) or the official
    pickled ``text_prompts`` (restricted unpickler: a plain dict of str/int only)."""
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        if "text_prompts_json.npy" in names:
            if z.getinfo("text_prompts_json.npy").file_size > MAX_PROMPT_BYTES:
                raise TruthError(f"truth case {path.name}: text_prompts_json is too large")
            with np.load(path, allow_pickle=False) as npz:
                raw = npz["text_prompts_json"]
            try:
                prompts = json.loads(str(raw.reshape(-1)[0] if raw.ndim else raw.item()))
            except (json.JSONDecodeError, IndexError) as e:
                raise TruthError(f"truth case {path.name}: text_prompts_json is not JSON") from e
        elif "text_prompts.npy" in names:
            if z.getinfo("text_prompts.npy").file_size > MAX_PROMPT_BYTES:
                raise TruthError(f"truth case {path.name}: text_prompts is too large")
            prompts = _pickled_prompts(z.read("text_prompts.npy"), path.name)
        else:
            raise TruthError(f"truth case {path.name}: the text track needs text_prompts_json "
                             "(or the official text_prompts)")
    return _check_prompts(prompts, path.name)


def _check_prompts(prompts: Any, name: str) -> dict[str, Any]:
    if isinstance(prompts, dict):
        # a pickled dict may hold NumPy scalars (np.int64 instance_label) or integer keys;
        # both mean the same as their plain Python forms
        prompts = {(str(int(k)) if isinstance(k, int | np.integer) else k):
                   (int(v) if isinstance(v, np.integer) else v) for k, v in prompts.items()}
    if not isinstance(prompts, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int) for k, v in prompts.items()):
        raise TruthError(f"truth case {name}: text prompts must be a dict of str -> str/int")
    if prompts.get("instance_label", 0) not in (0, 1):
        raise TruthError(f"truth case {name}: instance_label must be 0 or 1")
    return prompts


def _pickled_prompts(npy: bytes, name: str) -> Any:
    from gpueval.io.safe_pickle import NUMPY, restricted_load

    f = io.BytesIO(npy)
    try:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(f)
    except ValueError as e:
        raise TruthError(f"truth case {name}: text_prompts is not a NumPy array ({e})") from e
    if not dtype.hasobject or shape not in ((), (1,)):
        raise TruthError(f"truth case {name}: text_prompts must be one pickled dict")
    try:
        obj = restricted_load(f.read(), allowed=NUMPY)
    except Rejected as e:
        raise TruthError(f"truth case {name}: text_prompts: {e}") from e
    if isinstance(obj, np.ndarray):
        obj = obj.reshape(-1)[0]
    return obj


def load_prediction(path: Path, shape: tuple[int, ...] | None):
    """``segs`` of one prediction file, checked (integer labels, 3-D, the truth's shape):
    a NumPy array (npz) or a lazy dask array (zarr)."""
    if path.suffix == ".zarr":
        segs = _open_zarr_segs(path).data
    else:
        segs = load_npz_array(path, "segs", expect_shape=shape)  # refused before allocating
    where = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    if isinstance(segs, np.ndarray) and segs.dtype.kind == "f":
        segs = _integral_floats(segs, where)
    if not (np.issubdtype(segs.dtype, np.integer) or segs.dtype == bool):
        raise Rejected(f"{where}: segs must hold integer labels, got {segs.dtype}")
    if segs.ndim != 3:
        raise Rejected(f"{where}: segs must be 3-D (D, H, W), got shape {segs.shape}")
    if shape is not None and tuple(segs.shape) != tuple(shape):
        raise Rejected(f"{where}: segs has shape {segs.shape}, the ground truth "
                       f"{tuple(shape)}")
    return segs


def _integral_floats(segs: np.ndarray, where: str) -> np.ndarray:
    """Float labels that are whole numbers (the official scripts compare them as labels)
    become int64; anything else is refused."""
    if segs.size and not (np.isfinite(segs).all() and (segs == np.round(segs)).all()):
        raise Rejected(f"{where}: segs must hold integer labels; float values that are not "
                       "whole numbers were found")
    if segs.size and (segs.min() < -(2.0**53) or segs.max() > 2.0**53):
        raise Rejected(f"{where}: segs labels are out of range")
    return segs.astype(np.int64)


def _open_zarr_segs(path: Path):
    try:
        return open_volume(path, "segs")
    except Rejected:
        return open_volume(path)  # a bare array


def _find(folder: Path, stem: str) -> Path:
    """``<stem>.npz`` or ``<stem>.zarr`` in ``folder`` (the npz path when neither exists)."""
    for suffix in (".zarr", ".npz"):
        if (folder / f"{stem}{suffix}").exists():
            return folder / f"{stem}{suffix}"
    return folder / f"{stem}.npz"


def _running_time(path: Path) -> float:
    if path.suffix == ".zarr":
        value = np.asarray(_open_zarr_segs(path).attrs.get("running_time", 0.0))
    else:
        with zipfile.ZipFile(path) as z:
            if "running_time.npy" not in z.namelist():
                return 0.0
        value = load_npz_array(path, "running_time")
    if value.size != 1 or not np.issubdtype(value.dtype, np.number):
        raise Rejected(f"{path.name}: running_time must be one number of seconds")
    t = float(value.reshape(-1)[0])
    if not math.isfinite(t) or t < 0:
        raise Rejected(f"{path.name}: running_time must be finite and >= 0, got {t}")
    return t


def _truth_shape(path: Path) -> tuple[int, ...]:
    if path.suffix == ".zarr":
        return tuple(open_volume(path, "gts").shape)
    with zipfile.ZipFile(path) as z, z.open("gts.npy") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        return tuple(read(f)[0])


def _submission_dir(submission) -> Path:
    sub = Path(submission)
    if not sub.is_dir():
        raise Rejected(f"submission {sub.name} must be a folder of <case>.npz predictions")
    for _ in iter_files(sub):  # refuses links leaving the folder, hard links, FIFOs, floods
        pass
    return sub


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    track = str(config.get("track", "semantic"))
    if track not in TRACKS:
        raise TruthError(f"track must be one of {', '.join(TRACKS)}, not {track!r}")
    compat = str(config.get("compat", "official"))
    if compat not in ("official", "corrected"):
        raise TruthError(f"compat must be official or corrected, not {compat!r}")
    per = get_dotted(config, f"tracks.{track}", {}) or {}
    s = {
        "track": track,
        "compat": compat,
        "tolerance": float(config.get("nsd_tolerance_mm", 2.0)),
        "iou_threshold": float(config.get("iou_threshold", 0.5)),
        "connectivity": int(config.get("instance_connectivity", 6)),
        "class_set": per.get("class_set", "gt_prompted" if track == "text" else "gt"),
        "case_mean": per.get("case_mean", "nanmean" if track == "text" else "mean"),
        "nsd_gate": per.get("nsd_gate"),
        "uint8_cast": bool(per.get("uint8_cast", track == "text")) and compat == "official",
        "n_steps": int(get_dotted(config, "interactive.n_steps", 6)),
        "auc_steps": [int(k) for k in get_dotted(config, "interactive.auc_steps",
                                                 [2, 3, 4, 5, 6])],
        "final_step": int(get_dotted(config, "interactive.final_step", 6)),
        "time_limit": float(get_dotted(config, "interactive.time_limit_per_class_s", 90)),
        "time_action": str(get_dotted(config, "interactive.time_limit_action", "flag")),
        "missing_step": str(get_dotted(config, "interactive.missing_step", "zeros")),
        "chunk": int(config.get("chunk_size", 128)),
        "workers": int(config.get("kdtree_workers", 1)),
    }
    if s["nsd_gate"] is not None:
        s["nsd_gate"] = float(s["nsd_gate"])
    if s["time_action"] not in ("flag", "zero"):
        raise TruthError("interactive.time_limit_action must be flag or zero")
    if s["missing_step"] not in ("zeros", "previous"):
        raise TruthError("interactive.missing_step must be zeros or previous")
    return s


class _Context:
    def __init__(self, settings, device, scheduler, progress):
        self.settings = settings
        self.device = device
        self.scheduler = scheduler
        self.progress = progress
        self.voxels = 0


# --------------------------------------------------------------------------------------------
# Chunked statistics


def _zeros_like(x):
    if isinstance(x, da.Array):
        return da.zeros(x.shape, dtype=x.dtype, chunks=x.chunks)
    return np.zeros(x.shape, x.dtype)


def _lazy(x: np.ndarray, chunk: int) -> da.Array:
    if isinstance(x, da.Array):
        return x
    # da.from_array copies and hashes a NumPy array (0.1 s per 78 MB); a read-only wrapper
    # with a unique name avoids both.
    return da.from_array(_HostArray(x), chunks=(chunk,) * x.ndim, asarray=False,
                         name=f"medsegfm-{uuid.uuid4().hex}",
                         meta=np.empty((0,) * x.ndim, x.dtype))


class _HostArray:
    """An in-memory array seen by dask without being copied (never written to)."""

    def __init__(self, array: np.ndarray):
        self._array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim

    def __getitem__(self, key):
        return self._array[key]


def pair_table(ctx: _Context, gts, segs) -> Contingency:
    """Voxel counts of every (GT label, predicted label) pair, chunk by chunk."""
    chunk = ctx.settings["chunk"]
    ctx.voxels += int(np.prod(gts.shape))
    return map_reduce(contingency, [_lazy(gts, chunk), _lazy(segs, chunk)],
                      Contingency.combine, device=ctx.device, scheduler=ctx.scheduler,
                      progress=ctx.progress)


def class_surfaces(ctx: _Context, volume, classes: Sequence[int]) -> dict[int, SurfacePoints]:
    """Surface corners of every class of ``volume``, one task per corner chunk (1-voxel halo);
    cost follows the number of corners where labels change, not the bounding box."""
    classes = tuple(int(c) for c in classes)
    if not classes:
        return {}
    if 0 in classes:  # out-of-volume voxels are padded with 0; only negative labels get here
        raise TruthError("label 0 would be scored as a class: ground-truth labels must not be "
                         "negative")
    vol = _lazy(volume, ctx.settings["chunk"])
    tasks = []
    for lo, hi in corner_chunks(vol.shape, ctx.settings["chunk"]):
        slices, pads = block_request(vol.shape, lo, hi)
        tasks.append(delayed(_surface_task, pure=True)(vol[slices], pads, lo, classes,
                                                       ctx.device))
    total = tree_reduce(tasks, _merge_surfaces)
    return compute(total, scheduler=ctx.scheduler, progress=ctx.progress)[0]


@timed("kernel")
def _surface_task(block, pads, lo, classes, device):
    from gpueval.backend import to_device

    block = np.asarray(block)
    if any(p != (0, 0) for p in pads):
        block = np.pad(block, pads)
    return label_surfaces(to_device(block, device), classes, lo)


def _merge_surfaces(parts: list[dict[int, SurfacePoints]]) -> dict[int, SurfacePoints]:
    keys = sorted({k for p in parts for k in p})
    return {k: SurfacePoints.combine([p[k] for p in parts if k in p]) for k in keys}


# --------------------------------------------------------------------------------------------
# Semantic scores (DSC, NSD per class)


def class_set(gt_ids: np.ndarray, settings: dict[str, Any],
              prompts: dict[str, Any] | None = None) -> list[int]:
    """The scored classes of a case (spec §4), from the sorted unique GT labels."""
    ids = sorted(int(v) for v in gt_ids)
    if settings["compat"] == "official":
        classes = ids[1:]  # drops the first label, background or not (official quirk)
    else:
        classes = [v for v in ids if v != 0]
    if settings["class_set"] == "gt_prompted":
        prompted = {v for v in (_prompt_class(k) for k in (prompts or {})
                                if k != "instance_label") if v is not None}
        classes = [c for c in classes if c in prompted]
    return classes


def _prompt_class(key: Any) -> int | None:
    """A prompt key as the official ``int(k)`` reads it (``" 1"``, ``"+1"``, ``"01"``,
    ``"1_0"`` are classes 1, 1, 1, 10); None for a key ``int`` refuses (the script would fail
    on the case; gpueval ignores the key)."""
    try:
        return int(key)
    except (TypeError, ValueError):
        return None


def semantic_scores(ctx: _Context, gts, segs, spacing, classes: Sequence[int],
                    table: Contingency, gt_surfaces: dict[int, SurfacePoints] | None = None,
                    ) -> dict[int, dict[str, Any]]:
    """Per-class DSC, NSD and surface diagnostics (spec §2–§3)."""
    gt_ids, gt_sizes = table.sizes_a()
    pr_ids, pr_sizes = table.sizes_b()
    gsize = dict(zip(gt_ids.tolist(), gt_sizes.tolist(), strict=True))
    psize = dict(zip(pr_ids.tolist(), pr_sizes.tolist(), strict=True))
    same = table.ids_a == table.ids_b
    inter = dict(zip(table.ids_a[same].tolist(), table.counts[same].tolist(), strict=True))
    if gt_surfaces is None:
        gt_surfaces = class_surfaces(ctx, gts, classes)
    pr_surfaces = class_surfaces(ctx, segs, [c for c in classes if psize.get(c, 0)])
    out = {}
    for c in classes:
        g, p, tp = gsize.get(c, 0), psize.get(c, 0), inter.get(c, 0)
        dsc = 2 * tp / (g + p) if g + p else math.nan
        stats = surface_stats(gt_surfaces.get(c, SurfacePoints.empty()),
                              pr_surfaces.get(c, SurfacePoints.empty()), spacing,
                              tolerance=ctx.settings["tolerance"],
                              workers=ctx.settings["workers"], device=ctx.device)
        summary = stats.summary(ctx.settings["tolerance"])
        out[c] = {"dsc": dsc, "nsd_2mm": summary.pop("nsd"), "gt_voxels": g,
                  "pred_voxels": p, **summary}
    return out


def _case_mean(values: list[float], how: str) -> float:
    if not values:
        return math.nan
    arr = np.asarray(values, dtype=np.float64)
    if how == "nanmean":
        return float(np.nanmean(arr)) if np.any(~np.isnan(arr)) else math.nan
    return float(np.mean(arr))


# --------------------------------------------------------------------------------------------
# Cases


def _score_single_case(ctx: _Context, name: str, case: dict[str, Any], pred_path: Path):
    s = ctx.settings
    gts = case["gts"]
    missing = not pred_path.exists()
    if missing:
        segs = _zeros_like(gts)
        running_time = 0.0
    else:
        segs = load_prediction(pred_path, gts.shape)
        running_time = _running_time(pred_path)
    if s["uint8_cast"]:
        gts, segs = gts.astype(np.uint8), segs.astype(np.uint8)
    instance = s["track"] == "text" and int(case["prompts"].get("instance_label", 0)) == 1
    item: dict[str, Any] = {"id": name}
    if instance:
        inst = instance_scores(ctx, gts, segs)
        item.update({"dsc": math.nan, "nsd": math.nan, "f1": inst["f1"],
                     "dsc_tp": inst["dsc_tp"]})
        ext = {"kind": "instance", **inst}
    else:
        table = pair_table(ctx, gts, segs)
        classes = class_set(table.sizes_a()[0], s, case["prompts"])
        per_class = semantic_scores(ctx, gts, segs, case["spacing"], classes, table)
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


def _score_interactive_case(ctx: _Context, name: str, case: dict[str, Any], folder: Path):
    s = ctx.settings
    gts, spacing = case["gts"], case["spacing"]
    steps = list(range(1, s["n_steps"] + 1))
    gt_table = None
    gt_surfaces = None
    classes: list[int] = []
    dsc_k, nsd_k, time_k, per_step = {}, {}, {}, {}
    last_written: tuple[int, Path] | None = None
    absent_steps: list[str] = []
    for k in steps:
        path = _find(folder, f"step_{k}")
        if k == 1 and not case.get("has_box", True):
            # no box: step 1 is not run, DSC_1 = NSD_1 = 0, running time 0 (spec §5)
            time_k[k], dsc_k[k], nsd_k[k] = 0.0, 0.0, 0.0
            per_step[k] = {"dsc": 0.0, "nsd": 0.0, "nsd_ungated": 0.0, "present": False,
                           "not_run": "no box prompt", "per_class": {}}
            continue  # the class set comes from step 2's table
        reused = None
        if path.exists():
            segs = load_prediction(path, gts.shape)
            time_k[k] = _running_time(path)
            last_written = (k, path)
        elif s["missing_step"] == "previous" and last_written is not None:
            reused, prev_path = last_written  # the file the last step left in outputs/
            segs = load_prediction(prev_path, gts.shape)
            time_k[k] = 0.0
            absent_steps.append(f"step_{k} (step_{reused} reused)")
        else:
            segs = _zeros_like(gts)
            time_k[k] = 0.0
            absent_steps.append(f"step_{k}")
        table = pair_table(ctx, gts, segs)
        if gt_table is None:
            gt_table = table
            classes = class_set(table.sizes_a()[0], s)
            gt_surfaces = class_surfaces(ctx, gts, classes)
        per_class = semantic_scores(ctx, gts, segs, spacing, classes, table, gt_surfaces)
        dsc = _case_mean([v["dsc"] for v in per_class.values()], s["case_mean"])
        nsd = _case_mean([v["nsd_2mm"] for v in per_class.values()], s["case_mean"])
        gate = s["nsd_gate"]
        dsc_k[k] = dsc
        nsd_k[k] = nsd if gate is None or dsc > gate else 0.0
        per_step[k] = {"dsc": dsc, "nsd": nsd_k[k], "nsd_ungated": nsd,
                       "present": path.exists(),
                       "per_class": {str(c): v for c, v in per_class.items()}}
        if reused is not None:
            per_step[k]["reused_step"] = reused
    total_time = float(sum(time_k.values()))
    limit = s["time_limit"] * len(classes)
    exceeded = total_time > limit
    if exceeded and s["time_action"] == "zero":
        dsc_k = {k: 0.0 for k in steps}
        nsd_k = {k: 0.0 for k in steps}
    item = {"id": name,
            "dsc": dsc_k[s["final_step"]], "nsd": nsd_k[s["final_step"]],
            "dsc_auc": trapezoid_auc([dsc_k[k] for k in s["auc_steps"]]),
            "nsd_auc": trapezoid_auc([nsd_k[k] for k in s["auc_steps"]]),
            "dsc_final": dsc_k[s["final_step"]], "nsd_final": nsd_k[s["final_step"]]}
    item.update({f"dsc_{k}": dsc_k[k] for k in steps})
    item.update({f"nsd_{k}": nsd_k[k] for k in steps})
    item.update({f"running_time_{k}": time_k[k] for k in steps})
    item.update({"total_running_time": total_time, "num_class": len(classes),
                 "runtime_upperbound": limit, "time_limit_exceeded": exceeded})
    if not folder.is_dir():
        item["missing"] = True
        item["status"] = "missing"
        warn(_missing_case_warning(name, s, scoring=True))
    elif absent_steps:
        how = ("the previous step's file reused, as the official loop leaves it"
               if s["missing_step"] == "previous" else "scored as all-zero")
        warn(f"{name}/: no file for {', '.join(absent_steps)} ({how}, "
             f"interactive.missing_step={s['missing_step']}); add {name}/step_<k>.npz for "
             "every step")
    if exceeded:
        what = ("every DSC/NSD of the case set to 0" if s["time_action"] == "zero"
                else "only flagged (time_limit_exceeded)")
        warn(f"{name}/: total running time {total_time:g} s is over the limit {limit:g} s "
             f"({what}, interactive.time_limit_action={s['time_action']})")
    ext = {"kind": "interactive", "classes": classes,
           "steps": {str(k): v for k, v in per_step.items()}}
    return item, ext


def trapezoid_auc(values: Sequence[float]) -> float:
    """Trapezoid rule with unit spacing: ``½v₁ + v₂ + … + v_{n-1} + ½vₙ`` (not normalised).

    >>> trapezoid_auc([1, 1, 1, 1, 1])
    4.0
    """
    v = [float(x) for x in values]
    return sum((a + b) / 2 for a, b in zip(v[:-1], v[1:], strict=True))


# --------------------------------------------------------------------------------------------
# Instance scores (text track, instance_label = 1)


def instance_scores(ctx: _Context, gts: np.ndarray, segs: np.ndarray) -> dict[str, Any]:
    """TP/FP/FN, F1 and DSC_TP of one instance case (spec §6, steps 1–6)."""
    s = ctx.settings
    table = pair_table(ctx, gts, segs)
    pred_values = table.sizes_b()[0]
    if len(pred_values) == 2:  # exactly two distinct predicted values: binary
        segs = _binary_to_instances(ctx, segs, int(pred_values.max()), s["connectivity"],
                                    wrap=s["uint8_cast"])
        table = pair_table(ctx, gts, segs)
    gt_ids, gt_sizes = table.sizes_a()
    pr_ids, pr_sizes = table.sizes_b()
    gt_keep, pr_keep = gt_ids != 0, pr_ids != 0
    gt_ids, gt_sizes = gt_ids[gt_keep], gt_sizes[gt_keep]
    pr_ids, pr_sizes = pr_ids[pr_keep], pr_sizes[pr_keep]
    n_gt, n_pred = len(gt_ids), len(pr_ids)
    if n_pred == 0 or n_gt == 0:
        tp = 0
        fp = 0 if n_pred == 0 else n_pred
        fn = 0 if n_pred == 0 else n_gt
        dsc_tp = 0.0
    else:
        pairs = table.drop(a=0, b=0)
        gi = np.searchsorted(gt_ids, pairs.ids_a)  # sequential relabelling: rank of the id
        pj = np.searchsorted(pr_ids, pairs.ids_b)
        ov = pairs.counts.astype(np.float64)
        union = gt_sizes[gi] + pr_sizes[pj] - ov
        iou = ov / union
        mg, mp = match_iou_threshold(gi, pj, iou, n_gt, n_pred,
                                     threshold=s["iou_threshold"])
        tp = len(mg)
        fp, fn = n_pred - tp, n_gt - tp
        if tp:
            lookup = {(a, b): o for a, b, o in zip(gi.tolist(), pj.tolist(), ov.tolist(),
                                                   strict=True)}
            dices = [2 * lookup[(a, b)] / (gt_sizes[a] + pr_sizes[b])
                     for a, b in zip(mg.tolist(), mp.tolist(), strict=True)]
            dsc_tp = float(np.mean(dices))
        else:
            dsc_tp = 0.0
    precision, recall, f1 = precision_recall_f(tp, tp + fp, tp + fn)
    return {"tp": tp, "fp": fp, "fn": fn, "n_gt": n_gt, "n_pred": n_pred,
            "precision": precision, "recall": recall, "f1": f1, "dsc_tp": dsc_tp}


def _binary_to_instances(ctx: _Context, segs, seg_max: int, connectivity: int, *,
                         wrap: bool) -> da.Array:
    """Split the non-zero voxels of a two-valued prediction into connected components, ids
    offset by the prediction's maximum (uint8 wrap-around when ``wrap``, as officially).

    Chunk by chunk: :func:`gpueval.kernels.components.label_chunked` gives cc3d's labels
    (same ids, same order) without holding the prediction whole.
    """
    from gpueval.kernels.components import label_chunked

    x = _lazy(segs, ctx.settings["chunk"])
    cc = label_chunked(x, connectivity, device=ctx.device, scheduler=ctx.scheduler).data
    out = da.where(cc > 0, cc.astype(np.int64) + seg_max, x.astype(np.int64))
    return out.astype(np.uint8) if wrap else out


# --------------------------------------------------------------------------------------------
# Aggregation


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


def report_images(result: Result, truth, submission, config) -> list:
    """Pictures of where the submission fails, for the HTML report (see
    :func:`gpueval.report_images.medsegfm_images`)."""
    from gpueval.report_images import medsegfm_images

    return medsegfm_images(result, truth, submission, config)
