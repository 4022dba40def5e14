"""A NumPy-backed stand-in for CuPy, to run the GPU twins' *array logic* on a machine without
a GPU.

This is not a GPU test: raw CUDA kernels cannot run here and device semantics (streams, memory
pools, int32 indexing limits) are not emulated. What it does catch is the GPU path rotting —
a CuPy twin calling a function with the wrong arguments, mixing host and device arrays, or
computing something different from its CPU twin. The real check is ``pytest -m gpu`` on a
machine with a device.

``install(monkeypatch)`` puts modules named ``cupy``, ``cupyx``, ``cupyx.scipy`` and
``cupyx.scipy.ndimage`` into ``sys.modules``; their arrays are a NumPy subclass whose type
lives in a module called ``cupy`` (so :func:`gpueval.backend.is_cupy` sees them as device
arrays) and which has ``.get()``.
"""

from __future__ import annotations

import functools
import sys
import types

import numpy as np
import scipy.ndimage


class ndarray(np.ndarray):  # noqa: N801 - mirrors cupy.ndarray
    def get(self):
        return np.asarray(self).copy()


ndarray.__module__ = "cupy"


def _wrap(x):
    if isinstance(x, np.ndarray) and not isinstance(x, ndarray):
        return x.view(ndarray)
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _lift(fn):
    def wrapped(*args, **kwargs):
        return _wrap(fn(*args, **kwargs))

    wrapped.__name__ = getattr(fn, "__name__", "f")
    if isinstance(fn, np.ufunc):  # cupy.minimum.at(...) etc. (in place, returns None)
        wrapped.at = fn.at
    return wrapped


class _Module(types.ModuleType):
    """Forwards attribute access to a NumPy-like module, wrapping returned arrays."""

    def __init__(self, name, base):
        super().__init__(name)
        self._base = base

    def __getattr__(self, item):
        value = getattr(self._base, item)
        return _lift(value) if callable(value) and not isinstance(value, type) else value


class _MemoryPool:
    """Records the cap (no allocation is tracked: host memory backs every array)."""

    def __init__(self):
        self.limit = 0

    def set_limit(self, size=None, fraction=None):
        self.limit = int(size or 0)

    def get_limit(self):
        return self.limit

    def total_bytes(self):
        return 0


def asarray(x, dtype=None):
    return _wrap(np.asarray(x, dtype=dtype))


def asnumpy(x):
    return np.asarray(x)


def _needs_device(*args, **kwargs):
    """Raw CUDA cannot be emulated: a test reaching one is skipped, not passed."""
    import pytest

    pytest.skip("raw CUDA kernel: needs a real GPU (not emulated)")


def build() -> dict[str, types.ModuleType]:
    cupy = _Module("cupy", np)
    cupy.ndarray = ndarray
    cupy.asarray = asarray
    cupy.array = lambda x, dtype=None, copy=True: _wrap(np.array(x, dtype=dtype, copy=copy))
    cupy.asnumpy = asnumpy
    cupy.get_array_module = lambda *a: cupy
    cupy.RawModule = cupy.RawKernel = cupy.ElementwiseKernel = cupy.ReductionKernel = (
        _needs_device)
    cupy.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
        Device=lambda *a: types.SimpleNamespace(id=0, synchronize=lambda: None),
        Stream=None)
    for name in ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
                 "float32", "float64", "bool_", "intp", "inf", "nan", "newaxis", "dtype",
                 "iinfo", "finfo"):
        setattr(cupy, name, getattr(np, name))
    cupy.get_default_memory_pool = functools.cache(lambda: _MemoryPool())
    cupyx = types.ModuleType("cupyx")
    cupyx.scatter_add = lambda a, idx, v: np.add.at(a, idx, v)
    cupyx.scatter_min = lambda a, idx, v: np.minimum.at(a, idx, v)
    cupyx.scatter_max = lambda a, idx, v: np.maximum.at(a, idx, v)
    scipy_mod = types.ModuleType("cupyx.scipy")
    ndi = _Module("cupyx.scipy.ndimage", scipy.ndimage)
    cupyx.scipy = scipy_mod
    scipy_mod.ndimage = ndi
    return {"cupy": cupy, "cupyx": cupyx, "cupyx.scipy": scipy_mod, "cupyx.scipy.ndimage": ndi}


def install(monkeypatch) -> types.ModuleType:
    mods = build()
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return mods["cupy"]
