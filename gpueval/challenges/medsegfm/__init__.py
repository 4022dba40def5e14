"""MedSegFM (CVPR 2025 foundation models for 3D biomedical segmentation): DSC, NSD, instance F1.

Implements ``shared/specs/medsegfm.md``; constants live in ``configs/medsegfm.yaml``. Three
tracks (config key ``track``):

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

The package, by what each module holds (each documents the choices it makes where the spec is
silent):

* :mod:`.layout` — finding and reading the truth cases and predictions (npz and zarr), with
  the format quirks, what is rejected and which unread entries are warned about;
* :mod:`.score` — cases composed into the :class:`~gpueval.result.Result` (``score``,
  ``validate``, ``resolve_config``), the aggregates across cases and the official CSV;
* :mod:`.semantic` — per-class DSC and NSD (every track);
* :mod:`.text` — the text track's instance F1 and DSC_TP;
* :mod:`.interactive` — the interactive track's steps, AUCs, time limit;
* :mod:`.chunked` — the chunk-by-chunk pair table and class surfaces of one case;
* :mod:`.options` — the config read into settings;
* :mod:`.images` — the report pictures.

This module exposes the challenge protocol (:class:`gpueval.challenges.Challenge`) and the
public names of the former ``gpueval.challenges.medsegfm`` module. Note that the attribute
``score`` of this package is the function, not the submodule ``score.py``: import the
submodule's names with ``from gpueval.challenges.medsegfm.score import ...``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from gpueval.challenges.medsegfm.images import report_images
from gpueval.challenges.medsegfm.layout import (
    MAX_PROMPT_BYTES,
    STEP_RE,
    SUFFIXES,
    load_prediction,
    load_text_prompts,
    load_truth_case,
    truth_cases,
)
from gpueval.challenges.medsegfm.options import TRACKS
from gpueval.challenges.medsegfm.score import (
    CHALLENGE,
    resolve_config,
    score,
    validate,
    write_official_csv,
)
from gpueval.challenges.medsegfm.semantic import class_set, semantic_scores
from gpueval.resources import config_dir

#: names whose modules import dask.array, SciPy's optimisers or Numba (together ~0.5–0.9 s
#: of start-up): loaded on first use, so scoring an npz case on the CPU never imports them
_LAZY = {"class_surfaces": "chunked", "pair_table": "chunked",
         "trapezoid_auc": "interactive", "instance_scores": "text"}


def __getattr__(attr: str) -> Any:
    if attr in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[attr]}"), attr)
        globals()[attr] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


name: str = CHALLENGE
config_resource: Path = config_dir() / "medsegfm.yaml"

__all__ = [
    "CHALLENGE",
    "MAX_PROMPT_BYTES",
    "STEP_RE",
    "SUFFIXES",
    "TRACKS",
    "class_set",
    "class_surfaces",
    "config_resource",
    "instance_scores",
    "load_prediction",
    "load_text_prompts",
    "load_truth_case",
    "name",
    "pair_table",
    "report_images",
    "resolve_config",
    "score",
    "semantic_scores",
    "trapezoid_auc",
    "truth_cases",
    "validate",
    "write_official_csv",
]
