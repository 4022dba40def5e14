"""Process shutdown of ``python -m gpueval``: end the process without tearing the interpreter
down (issue #19, whole-process time).

After a ``gpueval score`` of a small input the work is done in about a second, and CPython's
own shutdown then spends another 0.15-0.3 s on this machine: collecting and freeing the
objects of dask, SciPy and especially Numba (whose typing registries fill the heap), module by
module. Nothing in that teardown is observable — the JSON and report files are closed,
temporary folders of archives are removed before ``main`` returns — so :func:`exit_now` does
what the interpreter would do that matters (flush stdout/stderr, join non-daemon threads, run
the ``atexit`` handlers: ``weakref.finalize`` objects, coverage collectors) and then leaves
with :func:`os._exit`.

:func:`run` is the whole entry point (``python -m gpueval``; a console script pointed at
``gpueval.startup:run`` would end the same way). Only ``score`` and ``validate`` end this way
(:data:`FAST_EXIT_COMMANDS`), only without a profiler or tracer attached (``python -m
cProfile -m gpueval …`` and ``coverage run -m gpueval …`` report after the module returns),
and never with ``GPUEVAL_FULL_EXIT=1`` in the environment.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Sequence

#: the commands whose process ends through :func:`exit_now` (read-only apart from the files
#: they have closed: no database connection or server is open when ``main`` returns)
FAST_EXIT_COMMANDS = frozenset({"score", "validate"})


def wants_fast_exit(argv: Sequence[str]) -> bool:
    """True when a ``python -m gpueval`` process with arguments ``argv`` (without the
    program name) may end through :func:`exit_now`."""
    if os.environ.get("GPUEVAL_FULL_EXIT", "") not in ("", "0"):
        return False
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return False  # a profiler or coverage tracer reports after the module returns
    if not hasattr(atexit, "_run_exitfuncs"):  # pragma: no cover - other interpreters
        return False
    command = next((a for a in argv if not a.startswith("-")), None)
    return command in FAST_EXIT_COMMANDS


def exit_now(code: int) -> None:
    """End the process with exit status ``code`` without the interpreter's teardown.

    Flushes the standard streams, joins non-daemon threads and runs the ``atexit`` handlers
    (in that order, as CPython's shutdown does), then calls :func:`os._exit`. Never returns.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`gpueval ... | head`) or stream
            pass
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):  # what the handlers printed
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(int(code))


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line (:func:`gpueval.cli.main`); after ``score``/``validate`` end the
    process at once (:func:`wants_fast_exit`, :func:`exit_now`), else return the status.
    As the process's entry point (``argv`` None) it first keeps large freed buffers for
    reuse (:func:`gpueval.heap.keep_freed_memory`), lets ``dask.array`` import without
    ``scipy.fftpack`` (:func:`gpueval.startup_imports.skip_dask_fftpack`) and names dask's
    rechunk method, so that no rechunk imports ``distributed`` to look for a client."""
    from gpueval.cli import main  # noqa: PLC0415 - the entry point above the command line

    if argv is None:
        from gpueval.heap import keep_freed_memory  # noqa: PLC0415 - this process only
        from gpueval.startup_imports import skip_dask_fftpack  # noqa: PLC0415 - likewise

        keep_freed_memory()
        skip_dask_fftpack()  # dask.array without scipy.fftpack (~60 ms, never used)
        # rechunk's method: "tasks", which dask picks anyway without a default distributed
        # client (gpueval's clients never are one) but only after importing distributed to
        # ask (~0.11 CPU-s at every CellMap label whose chunks are realigned)
        os.environ.setdefault("DASK_ARRAY__RECHUNK__METHOD", "tasks")
    args = list(sys.argv[1:] if argv is None else argv)
    code = main(args)
    if wants_fast_exit(args):
        exit_now(code)
    return code
