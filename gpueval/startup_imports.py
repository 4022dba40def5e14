"""Imports that a short ``gpueval`` process does not need to pay for (issue #19, start-up).

A ``gpueval score cellmap`` of a small crop spends most of its CPU time importing (session 9,
this 2-core VM: about 0.62 of 0.9 CPU-s; ``benchmarks/README.md`` § "session 9 — graph build
and start-up"). Most of it is needed — NumPy, dask and ``dask.array``, Numba and its first
cache load — but two SciPy packages come along that the scorer never uses:

* ``scipy.fftpack`` (and through it ``scipy.fft``): ``dask.array.fft`` imports it at module
  level, only to recognise SciPy's FFT functions handed to ``dask.array.fft.fft_wrap``, which
  gpueval never calls. :func:`skip_dask_fftpack` makes that optional import fail while
  ``dask.array.fft`` initialises (dask then sets its ``scipy`` to ``None`` and wraps NumPy's
  FFTs as usual); any other import of ``scipy.fftpack`` is untouched. Installed by the
  command line only (:func:`gpueval.startup.run`): a library user's dask stays as imported.
* ``scipy.optimize``: its ``__init__`` imports every solver (and ``scipy.fft``,
  ``scipy.special``, ``scipy.spatial``) while the scorers need one C function,
  ``linear_sum_assignment``. :func:`linear_sum_assignment` loads that function's extension
  module (``scipy/optimize/_lsap*.so``, where SciPy ≥ 1.6 keeps it) by itself, and falls back
  to ``from scipy.optimize import linear_sum_assignment`` whenever the layout differs.

Saved together, interleaved whole processes on a 112³ CellMap crop: see the README section.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

#: the module whose optional ``scipy.fftpack`` import is skipped, and that import
_DASK_FFT, _FFTPACK = "dask.array.fft", "scipy.fftpack"


class _SkipDaskFftpack(importlib.abc.MetaPathFinder):
    """Refuses ``scipy.fftpack`` to ``dask.array.fft`` while that module initialises."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: Any = None) -> None:
        if fullname == _FFTPACK and _initialising(_DASK_FFT):
            raise ImportError(f"{_FFTPACK} skipped while {_DASK_FFT} initialises "
                              "(gpueval.startup_imports: dask's optional SciPy FFTs)")
        if _DASK_FFT in sys.modules and not _initialising(_DASK_FFT):
            # its one job is done: a new list, as the import system is iterating the old one
            sys.meta_path = [f for f in sys.meta_path if f is not self]
        return None  # every import: the next finder


def _initialising(name: str) -> bool:
    """True while module ``name`` runs its body (the import system marks its spec)."""
    module = sys.modules.get(name)
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


def skip_dask_fftpack() -> None:
    """Let ``dask.array`` import without ``scipy.fftpack`` in this process (see the module
    notes). Has no effect once ``dask.array`` or ``scipy.fftpack`` is imported; idempotent."""
    if _DASK_FFT in sys.modules or _FFTPACK in sys.modules:
        return
    if not any(isinstance(f, _SkipDaskFftpack) for f in sys.meta_path):
        sys.meta_path.insert(0, _SkipDaskFftpack())


_LSA: Callable[..., Any] | None = None


def linear_sum_assignment(cost: Any, maximize: bool = False) -> tuple[Any, Any]:
    """:func:`scipy.optimize.linear_sum_assignment` itself, without importing the rest of
    ``scipy.optimize`` (see the module notes; same function, same results)."""
    global _LSA
    if _LSA is None:
        # scipy.optimize imported already (paid for): its public name
        _LSA = (None if "scipy.optimize" in sys.modules else lsap_extension()) or \
            _from_scipy_optimize()
    return _LSA(cost, maximize=maximize)


def _from_scipy_optimize() -> Callable[..., Any]:
    from scipy.optimize import linear_sum_assignment as lsa  # noqa: PLC0415 - the fallback

    return lsa


def lsap_extension() -> Callable[..., Any] | None:
    """``linear_sum_assignment`` of SciPy's ``_lsap`` extension module, loaded on its own
    (without the ``scipy.optimize`` package), or ``None`` where SciPy keeps it elsewhere."""
    try:
        import scipy  # noqa: PLC0415 - the package root only (~5 ms)

        folder = os.path.join(os.path.dirname(scipy.__file__), "optimize")
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(folder, "_lsap" + suffix)
            if os.path.isfile(path):
                loader = importlib.machinery.ExtensionFileLoader("scipy.optimize._lsap", path)
                spec = importlib.util.spec_from_loader(loader.name, loader, origin=path)
                module = importlib.util.module_from_spec(spec)
                loader.exec_module(module)
                func = getattr(module, "linear_sum_assignment", None)
                return func if callable(func) else None
    except (ImportError, OSError, AttributeError):
        return None
    return None
