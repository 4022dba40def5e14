"""U-RISC membrane segmentation: per-image membrane F-score, mean over images.

The challenge protocol (:class:`gpueval.challenges.Challenge`) over four modules:

==========  ==================================================================================
module      holds
==========  ==================================================================================
layout      finding the truth images and the submission's files (folder, single file or zip,
            streamed per group of images), extra and duplicate files, the size check
imread      reading an image as ``cv2.imread(path, 0)`` does (libtiff/libpng/OpenCV quirks),
            band by band
options     ``configs/urisc.yaml`` checked into one record (variant, radius, limits)
score       :func:`score`, :func:`validate`, :func:`value_problem`: the band kernels of
            :mod:`gpueval.kernels.boundary` composed into the result
images      the report picture (membrane agreement map of the worst image)
==========  ==================================================================================

Names with a leading underscore (``_GreyImage``, ``_Options``, ``_Submission``, …) are private
to this package: its modules share them, nothing outside imports them.
"""

from pathlib import Path

from gpueval.challenges.urisc.images import urisc_images
from gpueval.challenges.urisc.imread import PNG_SUFFIXES, TIFF_SUFFIXES
from gpueval.challenges.urisc.layout import SUBMISSION_SUFFIXES, TRUTH_SUFFIXES
from gpueval.challenges.urisc.score import (
    CHALLENGE,
    resolve_config,
    score,
    validate,
    value_problem,
)
from gpueval.resources import config_dir

name = "urisc"
config_resource: Path = config_dir() / "urisc.yaml"
report_images = urisc_images

__all__ = [
    "CHALLENGE",
    "PNG_SUFFIXES",
    "SUBMISSION_SUFFIXES",
    "TIFF_SUFFIXES",
    "TRUTH_SUFFIXES",
    "config_resource",
    "name",
    "report_images",
    "resolve_config",
    "score",
    "urisc_images",
    "validate",
    "value_problem",
]
