"""The engine's run-time bounds: its worker threads and the largest Dask graph it will run.

:func:`gpueval.limits.use_limits` sets them (from the config's ``limits:``) and
:mod:`gpueval.engine` reads them; neither imports the other, and setting them imports nothing
(Dask's own config would cost a scorer that never builds a graph ~0.1 s of start-up, issue
#19). Process-wide, like Dask's config: the scheduler's worker threads see what the caller set.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: the graph bound when no caller set one (equal to ``Limits.max_graph_tasks``'s default; a
#: test keeps them equal): an unbounded graph would be built and run before anything refused it
DEFAULT_MAX_GRAPH_TASKS = 10**7

_values = {"threads": 0, "max_graph_tasks": DEFAULT_MAX_GRAPH_TASKS}
_lock = threading.Lock()


def threads() -> int:
    """Worker threads of the local scheduler; 0: Dask's default, one per core."""
    return _values["threads"]


def max_graph_tasks() -> int:
    """The most tasks one computation may have (:func:`gpueval.engine.check_graph_size`)."""
    return _values["max_graph_tasks"]


@contextmanager
def bounded(*, threads: int, max_graph_tasks: int) -> Iterator[None]:
    """Make these bounds current inside the ``with`` block, then restore the previous ones.

    >>> with bounded(threads=1, max_graph_tasks=5):
    ...     threads(), max_graph_tasks()
    (1, 5)
    """
    with _lock:
        before = dict(_values)
        _values.update(threads=int(threads), max_graph_tasks=int(max_graph_tasks))
    try:
        yield
    finally:
        with _lock:
            _values.update(before)
