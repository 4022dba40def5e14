"""MedSegFM (CVPR 2025 foundation models for 3D biomedical segmentation): DSC, NSD, instance F1."""

from gpueval.challenges.medsegfm.score import *  # noqa: F403
from gpueval.challenges.medsegfm.score import (  # noqa: F401
    _binary_to_instances,
    _Context,
    _find,
    _settings,
)
