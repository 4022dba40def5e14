"""CellMap Segmentation Challenge: instance (F1 × Hausdorff) and semantic (IoU) scores.

Spec: ``shared/specs/cellmap.md`` (``metric_version cellmap-2026-06``; the challenge-era
scorer with ``--set version=2025``, §10); constants in ``configs/cellmap.yaml``; the shipped
test-crop manifest ``configs/cellmap_test_crops.csv``.

The package, by what each module holds:

* :mod:`.layout` — finding and reading the truth (``<truth>/crop<ID>/<label>``) and the
  submission (zip, folder, nested ``*.zarr``, ``<ID>`` for ``crop<ID>``), zarr arrays and
  multiscale groups, the ``compat`` reading quirks, and which zarr chunks are stored;
* :mod:`.manifest` — the test-crop manifest and the target grid of each (crop, label);
* :mod:`.checks` — geometry attributes read and sanity-checked before any graph is built;
* :mod:`.warnings` — what is skipped, ignored or read differently than meant
  (:func:`gpueval.notices.warn`);
* :mod:`.pairs` — one (crop, label): truth, mask and the prediction aligned to the grid;
* :mod:`.score` — the 2026-06 scores composed into the :class:`~gpueval.result.Result` as one
  Dask graph (with the never-written-chunk fast path), ``validate`` and ``resolve_config``;
* :mod:`.scoring_2026`, :mod:`.scoring_2025` — the version-specific per-(crop, label) scorers
  and their aggregation, side by side;
* :mod:`.images` — the report pictures;
* :mod:`.options` — the config read into typed options.

This module exposes the challenge protocol (:class:`gpueval.challenges.Challenge`) and the
public names of the former ``gpueval.challenges.cellmap`` module. The attribute ``score`` of
this package is the function, not the submodule ``score.py``: import the submodule's names
with ``from gpueval.challenges.cellmap.score import ...``.
"""

from __future__ import annotations

from pathlib import Path

from gpueval.challenges.cellmap.checks import check_geometry
from gpueval.challenges.cellmap.images import report_images
from gpueval.challenges.cellmap.layout import (
    CROP_RE,
    Submission,
    TruthCrop,
    list_truth,
    open_submission,
    stored_chunk_grid,
)
from gpueval.challenges.cellmap.manifest import read_manifest, target_grid, write_manifest
from gpueval.challenges.cellmap.options import Options
from gpueval.challenges.cellmap.pairs import load_pair
from gpueval.challenges.cellmap.score import resolve_config, score, validate
from gpueval.challenges.cellmap.warnings import (
    SAMPLE_BLOCKS,
    SAMPLE_EDGE,
    label_warnings,
    submission_warnings,
)
from gpueval.io.align import Grid
from gpueval.resources import config_dir

name: str = "cellmap"
config_resource: Path = config_dir() / "cellmap.yaml"

__all__ = [
    "CROP_RE",
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
