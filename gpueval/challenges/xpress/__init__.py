"""XPRESS (ISBI 2023): ERL + Rand of a dense axon segmentation on ground-truth skeletons."""

from gpueval.challenges.xpress.score import (
    CHALLENGE,
    COMPAT,
    FRESH,
    METRIC_NAMES,
    ROI_NAMES,
    SUFFIXES_H5,
    NodeTable,
    Submission,
    _settings,
    evaluate_table,
    node_table,
    open_submission,
    rand_voi_nodes,
    report_images,
    score,
    validate,
)

__all__ = ["CHALLENGE", "COMPAT", "FRESH", "METRIC_NAMES", "ROI_NAMES", "SUFFIXES_H5",
           "NodeTable", "Submission", "evaluate_table", "node_table", "open_submission",
           "rand_voi_nodes", "report_images", "score", "validate"]
