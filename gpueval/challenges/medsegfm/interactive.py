"""MedSegFM's interactive track (``CVPR25_iter_eval.py``; spec §5): six steps per case.

DSC_k, NSD_k with NSD_k := 0 unless DSC_k > 0.2; AUC over steps 2–6 (trapezoid, unit
spacing, not normalised); finals = step 6; time limit 90 s × number of classes. The class set
comes from the first scored step's pair table, the GT surfaces are computed once per case.

Choices where the spec is silent or says "unknown":

* **No box** (spec §5): for a case without a box (see :mod:`.layout`) step 1 is not run:
  DSC_1 = NSD_1 = 0 and RunningTime_1 = 0 whatever ``step_1`` holds.
* **Time limit**: the script only warns, the README says DSC and NSD are set to 0 on the
  final test set without saying which. ``time_limit_action: flag`` (default, = the code) only
  sets ``time_limit_exceeded``; ``zero`` sets every DSC/NSD of the case (steps, AUCs, finals)
  to 0. Either way the overrun is a user warning.
* **Missing interactive step** (``interactive.missing_step``): ``zeros`` (default, spec §5
  "Failed step") scores an all-zero prediction. The official loop never clears its output
  folder between steps, so a step that writes nothing leaves the previous step's file in
  place and that stale prediction is scored (zeros only when no earlier step wrote one);
  ``previous`` reproduces this (the reused step is in ``extra``; its running time is 0).
  Absent steps are user warnings. A case with no step folder at all is scored as all-zero
  too, also where the official script writes no CSV row for the case.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpueval.challenges.medsegfm import resident
from gpueval.challenges.medsegfm.chunked import class_surfaces, pair_table, zeros_like
from gpueval.challenges.medsegfm.layout import (
    _find,
    _missing_case_warning,
    _running_time,
    load_prediction,
)
from gpueval.challenges.medsegfm.options import _Context
from gpueval.challenges.medsegfm.semantic import _case_mean, class_set, semantic_scores
from gpueval.notices import warn


def _score_interactive_case(ctx: _Context, name: str, case: dict[str, Any], folder: Path):
    s = ctx.settings
    gts, spacing = case["gts"], case["spacing"]
    steps = list(range(1, s["n_steps"] + 1))
    gt_table = None
    gt_surfaces = None
    truth_scan = grid = None
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
            if isinstance(gts, np.ndarray):
                segs = np.zeros(gts.shape, gts.dtype)
            else:
                segs = zeros_like(gts)
            time_k[k] = 0.0
            absent_steps.append(f"step_{k}")
        if resident.applies(ctx, gts, segs):  # npz steps on the CPU: one pass per volume
            if truth_scan is None:
                truth_scan = resident.scan_truth(ctx, gts)
                classes = class_set(resident.truth_ids(truth_scan), s)
                grid = resident.grid(gts.shape, spacing, s)
            pred_scan = resident.scan_prediction(segs, classes)
            per_class = semantic_scores(ctx, gts, segs, spacing, classes,
                                        resident.case_table(truth_scan, pred_scan),
                                        truth_scan.surfaces, pred_scan.surfaces, grid)
        else:
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
