"""Device for the independent audits (``tests/test_audit_*.py``).

``GPUEVAL_AUDIT_DEVICE=gpu`` runs every audit on the CuPy paths (where a GPU exists);
``=emulated`` runs the CuPy twins' array logic on :mod:`emulated.fake_cupy` (no GPU needed).
Import both names into an audit module: the fixture is autouse.
"""

import os

import pytest

_MODE = os.environ.get("GPUEVAL_AUDIT_DEVICE", "cpu")
DEVICE = "gpu" if _MODE == "emulated" else _MODE


@pytest.fixture(autouse=True, scope="module")
def _emulated_cupy():
    if _MODE != "emulated":
        yield
        return
    import gpueval.backend
    from emulated import fake_cupy

    with pytest.MonkeyPatch.context() as mp:
        fake_cupy.install(mp)
        mp.setattr(gpueval.backend, "gpu_available", lambda: True)
        yield
