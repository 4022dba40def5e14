"""U-RISC membrane segmentation (the scorer moved here from ``challenges/urisc.py``; see
:mod:`gpueval.challenges.urisc.score`)."""

from gpueval.challenges.urisc.score import (
    CHALLENGE,
    PNG_SUFFIXES,
    SUBMISSION_SUFFIXES,
    TIFF_SUFFIXES,
    TRUTH_SUFFIXES,
    report_images,
    score,
    validate,
    value_problem,
)

__all__ = ["CHALLENGE", "PNG_SUFFIXES", "SUBMISSION_SUFFIXES", "TIFF_SUFFIXES", "TRUTH_SUFFIXES",
           "report_images", "score", "validate", "value_problem"]
