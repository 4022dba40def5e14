"""A NumPy-backed stand-in for CuPy, to run the GPU twins' *array logic* on a machine without
a GPU.

This is not a GPU test: raw CUDA kernels cannot run here — the kernels of ``kernels/*.cu``
that have a NumPy stand-in with the same contract (:data:`RAW_STANDINS`, the connected-component
union-find) run as that stand-in, any other raw kernel skips the test — and device semantics
(streams, memory pools, int32 indexing limits) are not emulated. What it does catch is the GPU
path rotting — a CuPy twin calling a function with the wrong arguments, mixing host and device
arrays, or computing something different from its CPU twin. The real check is ``pytest -m gpu``
on a machine with a device.

``install(monkeypatch)`` puts modules named ``cupy``, ``cupyx``, ``cupyx.scipy`` and
``cupyx.scipy.ndimage`` into ``sys.modules``; their arrays are a NumPy subclass whose type
lives in a module called ``cupy`` (so :func:`gpueval.backend.is_cupy` sees them as device
arrays) and which has ``.get()``.

Counters (issue 20). ``with counting() as c:`` records what the code under it would ask of a
real device, so tests can cap it per chunk or region:

* ``ops``: one per kernel launch — a ufunc call, reduction or ``ufunc.at``, a ``cupy.*``
  function (``unique``/``sort``/``argsort``/``lexsort`` count :data:`SORT_OPS`: a radix sort is
  several passes), an index with an array, an assignment into an array;
* ``syncs``: one per host wait on the device — ``.get()``, ``int()``/``float()``/``bool()``/
  ``__index__``/``.item()`` of a device value, boolean-mask indexing, ``unique``/``nonzero``/
  ``flatnonzero``/``argwhere`` (their output size is only known on the device), and an upload of
  pageable host memory (a synchronous copy on the null stream);
* ``d2h``/``d2h_bytes`` and ``h2d``/``h2d_bytes``: copies and their sizes;
* ``sorted_keys``: elements handed to sorts (the cost that launches do not show).

Reductions return 0-d device arrays, as CuPy's do, so ``int(x.sum())`` counts a sync. Work
done *inside* one counted call (NumPy running the emulated kernel on the subclass) is not
counted again. Counts are a model of CuPy, not a measurement: the real numbers come from the
device script (``benchmarks/on_device.sh``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import threading
import types

import numpy as np
import scipy.ndimage

SORT_OPS = 8  # launches of one CUB/thrust radix sort of 64-bit keys (a few passes + scans)
_SYNCING = {"unique", "nonzero", "flatnonzero", "argwhere"}
_SORTING = {"unique", "sort", "argsort", "lexsort"}
_HOST_RESULTS = {"ndim", "shape", "size", "result_type", "can_cast", "isscalar", "iinfo",
                 "finfo", "dtype", "promote_types", "min_scalar_type"}


@dataclasses.dataclass
class DeviceCounters:
    """What the emulated code asked of the device (see the module docstring)."""

    ops: int = 0
    syncs: int = 0
    d2h: int = 0
    d2h_bytes: int = 0
    h2d: int = 0
    h2d_bytes: int = 0
    sorted_keys: int = 0  # elements passed to sorts (unique/sort/argsort/lexsort)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


_counters = DeviceCounters()
_lock = threading.Lock()
_state = threading.local()  # depth > 0: inside a counted call, whose internals are not counted


def _depth() -> int:
    return getattr(_state, "depth", 0)


@contextlib.contextmanager
def _inside():
    _state.depth = _depth() + 1
    try:
        yield
    finally:
        _state.depth -= 1


def _count(ops=0, syncs=0, d2h=0, d2h_bytes=0, h2d=0, h2d_bytes=0, sorted_keys=0) -> None:
    if _depth():
        return
    with _lock:
        _counters.ops += ops
        _counters.syncs += syncs
        _counters.d2h += d2h
        _counters.d2h_bytes += d2h_bytes
        _counters.h2d += h2d
        _counters.h2d_bytes += h2d_bytes
        _counters.sorted_keys += sorted_keys


@contextlib.contextmanager
def counting():
    """Count the device work of the block: ``with counting() as c: ...; c.syncs``.

    Yields a :class:`DeviceCounters` filled in when the block ends (counts of all threads)."""
    with _lock:
        before = dataclasses.replace(_counters)
    out = DeviceCounters()
    try:
        yield out
    finally:
        with _lock:
            for f in dataclasses.fields(DeviceCounters):
                setattr(out, f.name, getattr(_counters, f.name) - getattr(before, f.name))


def _is_bool_index(key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, np.ndarray) and k.dtype == bool for k in keys)


def _is_array_index(key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (np.ndarray, list)) for k in keys)


class ndarray(np.ndarray):  # noqa: N801 - mirrors cupy.ndarray
    def get(self):
        _count(syncs=1, d2h=1, d2h_bytes=self.nbytes)
        return np.asarray(self).copy()

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _count(ops=1)
        with _inside():
            args = [np.asarray(x) if isinstance(x, ndarray) else x for x in inputs]
            if "out" in kwargs:
                kwargs["out"] = tuple(np.asarray(x) if isinstance(x, ndarray) else x
                                      for x in kwargs["out"])
            result = getattr(ufunc, method)(*args, **kwargs)
        if method == "at":
            return None
        return _wrap_result(result)

    def _scalar(self):
        _count(syncs=1, d2h=1, d2h_bytes=self.itemsize)

    def __int__(self):
        self._scalar()
        return int(np.asarray(self))

    def __float__(self):
        self._scalar()
        return float(np.asarray(self))

    def __bool__(self):
        self._scalar()
        return bool(np.asarray(self))

    def __index__(self):
        self._scalar()
        return np.asarray(self).__index__()

    def item(self, *args):
        self._scalar()
        return np.asarray(self).item(*args)

    def tolist(self):
        _count(syncs=1, d2h=1, d2h_bytes=self.nbytes)
        return np.asarray(self).tolist()

    def astype(self, dtype, *args, **kwargs):
        if kwargs.get("copy", True) or np.dtype(dtype) != self.dtype:
            _count(ops=1)
        with _inside():
            return _wrap(super().astype(dtype, *args, **kwargs))

    def copy(self, *args, **kwargs):
        _count(ops=1)
        with _inside():
            return _wrap(super().copy(*args, **kwargs))

    def __getitem__(self, key):
        if _is_bool_index(key):
            _count(ops=2, syncs=1)  # mask → count → compaction, size known only on device
        elif _is_array_index(key):
            _count(ops=1)
        with _inside():
            return _wrap(super().__getitem__(key))

    def __setitem__(self, key, value):
        _count(ops=1, syncs=1 if _is_bool_index(key) else 0)
        with _inside():
            super().__setitem__(key, value)


ndarray.__module__ = "cupy"


def _wrap(x):
    if isinstance(x, np.ndarray) and not isinstance(x, ndarray):
        return x.view(ndarray)
    if isinstance(x, np.generic):  # CuPy reductions return 0-d device arrays
        return np.asarray(x).view(ndarray)
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _wrap_result(x):
    if isinstance(x, (bool, int, float)) and not isinstance(x, np.generic):
        return np.asarray(x).view(ndarray)
    return _wrap(x)


def _lift(fn):
    name = getattr(fn, "__name__", "f")

    def wrapped(*args, **kwargs):
        keys = np.size(args[0]) if name in _SORTING and args else 0
        _count(ops=SORT_OPS if name in _SORTING else 1, syncs=1 if name in _SYNCING else 0,
               sorted_keys=keys)
        with _inside():
            result = fn(*args, **kwargs)
        return _wrap(result) if name in _HOST_RESULTS else _wrap_result(result)

    wrapped.__name__ = name
    if isinstance(fn, np.ufunc):  # cupy.minimum.at(...) etc. (in place, returns None)
        def at(*args, **kwargs):
            _count(ops=1)
            with _inside():
                fn.at(*[np.asarray(x) if isinstance(x, ndarray) else x for x in args],
                      **kwargs)

        wrapped.at = at
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


def _upload(x):
    """Count an upload when ``x`` is host data (a device array stays where it is)."""
    if isinstance(x, ndarray) or hasattr(x, "__cuda_array_interface__"):
        return  # already device memory (CuPy wraps it without a copy)
    nbytes = np.asarray(x).nbytes
    _count(ops=1, syncs=1, h2d=1, h2d_bytes=nbytes)  # pageable: synchronous on the null stream


def asarray(x, dtype=None):
    _upload(x)
    if isinstance(x, ndarray) and dtype is not None and np.dtype(dtype) != x.dtype:
        _count(ops=1)
    with _inside():
        return _wrap(np.asarray(x, dtype=dtype))


def _array(x, dtype=None, copy=True):
    _upload(x)
    if isinstance(x, ndarray):
        _count(ops=1)
    with _inside():
        return _wrap(np.array(x, dtype=dtype, copy=copy))


def asnumpy(x):
    if isinstance(x, ndarray):
        _count(syncs=1, d2h=1, d2h_bytes=x.nbytes)
    return np.asarray(x)


def _needs_device(*args, **kwargs):
    """Raw CUDA cannot be emulated: a test reaching one is skipped, not passed."""
    import pytest

    pytest.skip("raw CUDA kernel: needs a real GPU (not emulated)")


# NumPy stand-ins for the raw kernels of ``kernels/*.cu``, with the same contract (issue 20:
# "the raw kernels have NumPy stand-ins"), so code around them runs here. Each is called as
# CuPy calls a RawKernel: ``kernel(grid, block, args)``, writing into device arrays in place.

_NEIGHBOURS_TO_CONNECTIVITY = {13: 26, 4: 26, 9: 18, 3: 6, 2: 6}  # 3-D and 2-D (nz = 1)


def _cc_init(grid, block, args):
    keys, parent, n = args
    np.asarray(parent)[:] = np.where(np.asarray(keys) != 0, np.arange(int(n)), -1)


def _cc_merge(grid, block, args):
    """cc_union_find.cu's contract: afterwards every voxel's root is the first (smallest
    linear index) voxel of its component, same non-zero key, given connectivity."""
    import cc3d
    import fastremap

    keys, parent, nz, ny, nx, nbrs, n_nbrs, binary = args
    keys = np.asarray(keys).reshape(int(nz), int(ny), int(nx))
    dense = (keys != 0).astype(np.uint32) if int(binary) else \
        fastremap.renumber(keys, in_place=False)[0].astype(np.uint32)  # cc3d-safe ids
    labels = cc3d.connected_components(
        dense, connectivity=_NEIGHBOURS_TO_CONNECTIVITY[int(n_nbrs)]).reshape(-1)
    _, first = np.unique(labels, return_index=True)  # first occurrence = smallest index
    lut = np.full(int(labels.max()) + 1, -1, np.int64)
    lut[labels[first]] = first
    lut[0] = -1
    np.asarray(parent)[:] = lut[labels]


def _cc_compress(grid, block, args):
    pass  # _cc_merge already points every voxel at its root


RAW_STANDINS = {"cc_init": _cc_init, "cc_merge": _cc_merge, "cc_compress": _cc_compress}


class _RawModule:
    """``cupy.RawModule``: functions with a NumPy stand-in run, others skip the test."""

    def __init__(self, *args, **kwargs):
        pass

    def get_function(self, name):
        fn = RAW_STANDINS.get(name)
        if fn is None:
            _needs_device()

        def launch(grid, block, args, **kwargs):
            _count(ops=1)
            with _inside():
                fn(grid, block, args)

        return launch


def _stable_argsort(a, axis=-1, kind=None):
    return np.argsort(a, axis=axis, kind="stable")


def _stable_sort(a, axis=-1, kind=None):
    return np.sort(a, axis=axis, kind="stable")


_stable_argsort.__name__, _stable_sort.__name__ = "argsort", "sort"


def build() -> dict[str, types.ModuleType]:
    cupy = _Module("cupy", np)
    cupy.ndarray = ndarray
    cupy.asarray = asarray
    cupy.array = _array
    cupy.asnumpy = asnumpy
    cupy.get_array_module = lambda *a: cupy
    cupy.RawModule = _RawModule
    cupy.RawKernel = cupy.ElementwiseKernel = cupy.ReductionKernel = _needs_device
    cupy.cuda = types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDeviceCount=lambda: 1),
        Device=lambda *a: types.SimpleNamespace(id=0, synchronize=lambda: None),
        Stream=None,
        get_current_stream=lambda: types.SimpleNamespace(ptr=0))
    for name in ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
                 "float32", "float64", "bool_", "intp", "inf", "nan", "newaxis", "dtype",
                 "iinfo", "finfo"):
        setattr(cupy, name, getattr(np, name))
    # CuPy's sorts are always stable (thrust/CUB radix sort); NumPy's default is not
    cupy.argsort = _lift(_stable_argsort)
    cupy.sort = _lift(_stable_sort)
    cupy.get_default_memory_pool = functools.cache(lambda: _MemoryPool())
    cupyx = types.ModuleType("cupyx")
    cupyx.scatter_add = _lift(np.add).at
    cupyx.scatter_min = _lift(np.minimum).at
    cupyx.scatter_max = _lift(np.maximum).at
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
