"""XPRESS (ISBI 2023): ERL + Rand of a dense axon segmentation on ground-truth skeletons.

The challenge protocol of :mod:`gpueval.challenges` (``name``, ``config_resource``, ``score``,
``validate``, ``resolve_config``, ``report_images``) and the public names of the scorer. The
modules hold, in reading order:

``layout``
    finding, opening and checking the submission container (HDF5 or zarr), lazily;
``grid``
    daisy's grid attribute rules (voxel size, offset), the configured ROI and the crop;
``score``
    the node table (labels gathered at skeleton nodes, fresh ids for background) and the
    metrics composed into the :class:`~gpueval.result.Result`; the choices made where the
    spec (``shared/specs/xpress.md``) is silent are listed in each module's docstring;
``images``
    the report picture (the densest slab of skeleton nodes, coloured by outcome).
"""

from __future__ import annotations

from pathlib import Path

from gpueval.challenges.xpress.images import node_outcomes, report_images, xpress_images
from gpueval.challenges.xpress.layout import SUFFIXES_H5, Submission, open_submission

# ``score`` is imported after every submodule is loaded: loading the submodule ``score`` binds
# the package attribute ``score`` to it, and this import rebinds it to the function
from gpueval.challenges.xpress.score import (
    CHALLENGE,
    COMPAT,
    FRESH,
    METRIC_NAMES,
    ROI_NAMES,
    NodeTable,
    evaluate_table,
    node_table,
    rand_voi_nodes,
    resolve_config,
    score,
    validate,
)

# the config resolver the tests, the bench and the report pictures call (kept reachable here
# as before the package split; private: not part of the protocol)
from gpueval.challenges.xpress.score import _settings as _settings
from gpueval.resources import config_dir

name = CHALLENGE
config_resource: Path = config_dir() / "xpress.yaml"

__all__ = ["CHALLENGE", "COMPAT", "FRESH", "METRIC_NAMES", "ROI_NAMES", "SUFFIXES_H5",
           "NodeTable", "Submission", "config_resource", "evaluate_table", "name",
           "node_outcomes", "node_table", "open_submission", "rand_voi_nodes", "report_images",
           "resolve_config", "score", "validate", "xpress_images"]
