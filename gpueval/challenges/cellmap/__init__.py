"""CellMap Segmentation Challenge (``shared/specs/cellmap.md``); see :mod:`.score`."""

from __future__ import annotations

from pathlib import Path

from gpueval.challenges.cellmap.score import (
    CROP_RE,
    GEOMETRY_DEFAULTS,
    SAMPLE_BLOCKS,
    SAMPLE_EDGE,
    Grid,
    Options,
    Submission,
    TruthCrop,
    check_geometry,
    label_warnings,
    list_truth,
    load_pair,
    open_submission,
    read_manifest,
    report_images,
    resolve_config,
    score,
    stored_chunk_grid,
    submission_warnings,
    target_grid,
    validate,
    write_manifest,
)
from gpueval.resources import config_dir

name: str = "cellmap"
config_resource: Path = config_dir() / "cellmap.yaml"

__all__ = [
    "CROP_RE",
    "GEOMETRY_DEFAULTS",
    "SAMPLE_BLOCKS",
    "SAMPLE_EDGE",
    "Grid",
    "Options",
    "Submission",
    "TruthCrop",
    "check_geometry",
    "config_resource",
    "label_warnings",
    "list_truth",
    "load_pair",
    "name",
    "open_submission",
    "read_manifest",
    "report_images",
    "resolve_config",
    "score",
    "stored_chunk_grid",
    "submission_warnings",
    "target_grid",
    "validate",
    "write_manifest",
]
