"""CPU/GPU backend selection, and the array-module dispatch every kernel uses.

``resolve_device("auto")`` picks ``"gpu"`` when CuPy imports and sees a CUDA device, else
``"cpu"``. Asking for ``"gpu"`` where there is none is a :class:`~gpueval.errors.UsageError`
(exit 2), never a silent fallback. Kernels dispatch on the *type of the chunk* (NumPy or CuPy
array, as dask-image does), so the same task graph runs on either device; CuPy is imported
only when a GPU is asked for.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from gpueval.errors import UsageError

DEVICES = ("auto", "cpu", "gpu")


@functools.cache
def gpu_available() -> bool:
    """True when CuPy imports and at least one CUDA device answers."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def resolve_device(device: str = "auto") -> str:
    """Turn ``auto|cpu|gpu`` into the device that will run: ``"cpu"`` or ``"gpu"``."""
    if device not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "auto":
        return "gpu" if gpu_available() else "cpu"
    if device == "gpu" and not gpu_available():
        raise UsageError("--device gpu was asked for, but CuPy sees no CUDA device here "
                         "(install gpueval[gpu] on a machine with a GPU, or use --device cpu)")
    return device


def is_cupy(x: Any) -> bool:
    return type(x).__module__.startswith("cupy")


def array_module(x: Any):
    """``numpy`` or ``cupy``, whichever owns ``x``."""
    if is_cupy(x):
        import cupy

        return cupy
    return np


def to_device(x: np.ndarray, device: str):
    """Move a host chunk to the device that will process it (no-op on the CPU)."""
    if device == "gpu":
        import cupy

        return cupy.asarray(x)
    return x


def to_host(x: Any) -> Any:
    """Bring a (small) result back to NumPy."""
    if is_cupy(x):
        return x.get()
    return x


def limit_gpu_memory(nbytes: int) -> None:
    """Cap CuPy's default memory pool at ``nbytes`` (0: no cap) for this process.

    Called once per scoring call with ``--device gpu`` (``limits.gpu_memory_bytes``), so one
    scorer never takes more of a shared card than configured.
    """
    import cupy

    cupy.get_default_memory_pool().set_limit(size=int(nbytes))


def gpu_pool_bytes() -> int | None:
    """Bytes CuPy's default pool holds now (≈ the peak: the pool keeps freed blocks)."""
    try:
        import cupy

        return int(cupy.get_default_memory_pool().total_bytes())
    except Exception:
        return None
