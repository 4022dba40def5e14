"""gpueval — score segmentation challenge submissions out of core, on the GPU or the CPU.

Public surface (imported lazily, so ``import gpueval`` stays cheap)::

    from gpueval import score, validate              # files, as the command line
    from gpueval import score_arrays, arrays         # arrays: NumPy, Dask, CuPy, torch, ...
    r = gpueval.arrays.medsegfm({"c1": gts}, {"c1": segs}, spacing=(2.5, 0.8, 0.8))

Layers (each score can be followed from top to bottom):

* :mod:`gpueval.io`         open, validate and align arrays lazily (dask), safe archives
* :mod:`gpueval.kernels`    per-chunk statistics, one CPU (NumPy/Numba) and one GPU (CuPy) twin
* :mod:`gpueval.engine`     chunked map → exact tree reduction over a dask graph
* :mod:`gpueval.metrics`    pure formulas on reduced statistics (no arrays of voxels)
* :mod:`gpueval.challenges` one module per challenge, composing the above from ``configs/``
* :mod:`gpueval.api`        :func:`score` / :func:`validate` on files; :mod:`gpueval.arrays`
  on arrays; :mod:`gpueval.formats` the platforms' result layouts
* :mod:`gpueval.cli`        the command-line contract of ``shared/specs/cli.md``
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "Rejected", "Result", "TruthError", "UsageError", "Validation", "__version__", "arrays",
    "formats", "progress", "score", "score_arrays", "validate", "viewer",
]

# name -> (module, attribute or None for the module itself)
_LAZY = {
    "score": ("gpueval.api", "score"),
    "validate": ("gpueval.api", "validate"),
    "Validation": ("gpueval.api", "Validation"),
    "score_arrays": ("gpueval.arrays", "score_arrays"),
    "Result": ("gpueval.result", "Result"),
    "Rejected": ("gpueval.errors", "Rejected"),
    "TruthError": ("gpueval.errors", "TruthError"),
    "UsageError": ("gpueval.errors", "UsageError"),
    "arrays": ("gpueval.arrays", None),
    "formats": ("gpueval.formats", None),
    "progress": ("gpueval.progress", None),
    "viewer": ("gpueval.viewer", None),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'gpueval' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    return value if attr is None else getattr(value, attr)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
