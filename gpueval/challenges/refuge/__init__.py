"""REFUGE 2018 (optic disc/cup segmentation, glaucoma classification, fovea localisation)."""

from gpueval.challenges.refuge.score import *  # noqa: F403
from gpueval.challenges.refuge.score import (  # noqa: F401
    _open_submission,
    _Options,
    _xlsx_rows,
)
