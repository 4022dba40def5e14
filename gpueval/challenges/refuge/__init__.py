"""REFUGE 2018: optic disc/cup segmentation, glaucoma classification and fovea localisation.

Spec: ``shared/specs/refuge.md``; constants in ``configs/refuge.yaml``; layouts in
``shared/specs/cli.md``. ``score`` is null for a single submission (the official ranking needs
all teams: :func:`gpueval.metrics.ranking.refuge_leaderboard`, used by ``rescore``).

The package, by what each module holds:

* :mod:`.layout` — finding the submission's three parts (folder or zip, one wrapping folder)
  and reading its masks and CSVs, with the format quirks and what is rejected;
* :mod:`.truth` — the truth folder: masks, ``GT.xlsx``/``glaucoma_labels.csv``, fovea sheets;
* :mod:`.score` — per-image counts, Dice/vCDR, AUC/sensitivity, fovea distances composed into
  the :class:`~gpueval.result.Result`, and the ``compat`` table (the choices where the official
  code fails);
* :mod:`.images` — the report pictures;
* :mod:`.options` — the config read into typed options.

This module exposes the challenge protocol (:class:`gpueval.challenges.Challenge`) and the
public names of the former ``gpueval.challenges.refuge`` module. Note that the attribute
``score`` of this package is the function, not the submodule ``score.py``: import the
submodule's names with ``from gpueval.challenges.refuge.score import ...``.
"""

from __future__ import annotations

from pathlib import Path

from gpueval.challenges.refuge.images import report_images
from gpueval.challenges.refuge.layout import (
    CLASSIFICATION_FILE,
    FOVEA_FILES,
    SEGMENTATION_DIR,
    read_mask,
)
from gpueval.challenges.refuge.score import (
    CHALLENGE,
    MaskCounts,
    dice,
    fovea_distances,
    mask_counts,
    resolve_config,
    score,
    segmentation_item,
    validate,
    vertical_cdr,
)
from gpueval.challenges.refuge.truth import (
    MASK_DIR,
    MAX_XLSX_BYTES,
    MAX_XLSX_COLUMNS,
    MAX_XLSX_ROWS,
    RefugeTruth,
    load_truth,
)
from gpueval.resources import config_dir

name: str = CHALLENGE
config_resource: Path = config_dir() / "refuge.yaml"

__all__ = [
    "CHALLENGE",
    "CLASSIFICATION_FILE",
    "FOVEA_FILES",
    "MASK_DIR",
    "MAX_XLSX_BYTES",
    "MAX_XLSX_COLUMNS",
    "MAX_XLSX_ROWS",
    "SEGMENTATION_DIR",
    "MaskCounts",
    "RefugeTruth",
    "config_resource",
    "dice",
    "fovea_distances",
    "load_truth",
    "mask_counts",
    "name",
    "read_mask",
    "report_images",
    "resolve_config",
    "score",
    "segmentation_item",
    "validate",
    "vertical_cdr",
]
