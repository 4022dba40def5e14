"""MedSegFM's config read into the settings of one run, and the run's context.

:func:`_settings` reads ``configs/medsegfm.yaml`` (``track``, ``compat``, the per-track
constants under ``tracks.<track>``, the ``interactive`` section, chunk size and k-d tree
workers) into one flat dict, refusing unknown tracks and actions with a
:class:`~gpueval.errors.TruthError` (exit 4: the config is unusable). :class:`_Context` carries
the settings, the device and scheduler of the run and the voxel count it reports.

Choice where the spec is silent: ``compat=corrected`` keeps labels ≥ 256 apart on the text
track (``uint8_cast`` is off whatever the track says); ``compat=official`` casts both volumes
to uint8 as ``CVPR25_text_eval.py`` does.
"""

from __future__ import annotations

from typing import Any

from gpueval.config import get_dotted
from gpueval.errors import TruthError

TRACKS = ("semantic", "text", "interactive")


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
