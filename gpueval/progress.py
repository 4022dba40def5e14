"""Progress bars: a tqdm bar over dask tasks in-process, and over items for loops.

Bars go to stderr and only when it is a terminal (or when forced), appear after one second,
so short runs and CI logs stay clean.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from dask.callbacks import Callback
from tqdm.auto import tqdm

T = TypeVar("T")


def _enabled(force: bool | None = None) -> bool:
    return sys.stderr.isatty() if force is None else force


class TqdmCallback(Callback):
    """Dask local-scheduler callback driving one tqdm bar over the graph's tasks."""

    def __init__(self, desc: str = "chunks", force: bool | None = None):
        super().__init__()
        self._desc, self._force, self._bar = desc, force, None

    def _start_state(self, dsk, state):
        total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        self._bar = tqdm(total=total, desc=self._desc, unit="task", delay=1.0,
                         disable=not _enabled(self._force), leave=False)

    def _posttask(self, key, result, dsk, state, worker_id):
        if self._bar is not None:
            self._bar.update(1)

    def _finish(self, dsk, state, errored):
        if self._bar is not None:
            self._bar.close()


def progress_iter(items: Iterable[T], desc: str, total: int | None = None,
                  enabled: bool = True) -> Iterator[T]:
    """Wrap a loop over items (cases, images, crops) in a bar shown after one second."""
    yield from tqdm(items, desc=desc, total=total, delay=1.0, leave=False,
                    disable=not (enabled and _enabled()))
