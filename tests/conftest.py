"""Shared test setup: GPU tests are skipped cleanly where CuPy or a device is missing.

``GPUEVAL_EMULATE_GPU=1 python -m pytest tests/gpu`` runs the GPU test files against the
NumPy-backed CuPy stand-in of ``tests/emulated/fake_cupy.py`` (array logic only; see there).
"""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

EMULATE_GPU = os.environ.get("GPUEVAL_EMULATE_GPU") == "1"
if EMULATE_GPU:
    sys.path.insert(0, os.path.dirname(__file__))
    from emulated import fake_cupy

    sys.modules.update(fake_cupy.build())

settings.register_profile("ci", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


def pytest_collection_modifyitems(config, items):
    from gpueval.backend import gpu_available

    if EMULATE_GPU or gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
