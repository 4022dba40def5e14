"""Warnings a person must see: what a scorer skipped, ignored, read differently or took from a
fallback (``shared/specs/cli.md``: the result's ``warnings`` list).

Any layer may call :func:`warn`; :func:`gpueval.api.score` and :func:`gpueval.api.validate`
collect what was said during the call into ``Result.warnings`` (score) or the returned
:class:`Validation` (validate). A warning is one line naming the file/label and the fix.

The collector is found through a context variable; Dask's worker threads do not inherit
context variables, so the collector of the innermost active call is also kept in a
process-wide stack that :func:`warn` falls back to.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[list[str] | None] = ContextVar("gpueval_warnings", default=None)
_stack: list[list[str]] = []
_lock = threading.Lock()


def warn(message: str) -> None:
    """Record one warning (one line; repeated identical warnings are kept once)."""
    message = " ".join(str(message).split())
    sink = _current.get()
    if sink is None:
        with _lock:
            sink = _stack[-1] if _stack else None
    if sink is None:
        return  # nobody is collecting: a direct call of a low-level function
    with _lock:
        if message not in sink:
            sink.append(message)


@contextmanager
def collecting() -> Iterator[list[str]]:
    """Collect every :func:`warn` made inside the block (and in its Dask threads)."""
    sink: list[str] = []
    token = _current.set(sink)
    with _lock:
        _stack.append(sink)
    try:
        yield sink
    finally:
        _current.reset(token)
        with _lock:
            _stack.remove(sink)
