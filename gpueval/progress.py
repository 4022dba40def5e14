"""Progress that means something: named phases, the current item, a bar weighted by work.

Bars go to stderr, only when it is a terminal (or when forced with :func:`enabled`), appear
after one second so short runs and CI logs stay clean, and never appear under ``--quiet``
(``gpueval.api.score(progress=False)``).

How a scorer reports (all calls are cheap no-ops when nobody is watching)::

    from gpueval import progress

    with progress.phase("labelling", total=volume.size, unit="vx") as ph:
        for crop, label in pairs:
            ph.set_item(f"{crop}/{label}")      # shown beside the phase name
            ...                                 # per chunk, in any thread:
            progress.advance(chunk.size)        # voxels (or bytes with unit="B") done

Phases used so far: ``reading`` (decoding inputs, unit ``B``), ``labelling`` (connected
components), ``matching`` (instance matching), ``distances`` (surface / Hausdorff distances),
``counting`` (contingency and confusion tables), ``scoring`` (everything else, or a whole run).

A phase given a ``total`` is driven by :func:`advance`/:meth:`Phase.update` — weighted by
work, so a bar at 50 % means half the voxels are done, whatever the task sizes. A phase
without a total is driven by the Dask graphs computed inside it: each ``engine.compute`` call
gets its own bar, named after the phase and its item, over that graph's tasks
(:class:`TqdmCallback`); outside any phase that bar is called ``computing``.

Dask's worker threads do not inherit context variables, so the innermost phase is also kept
in a process-wide stack (as :mod:`gpueval.notices` does) for :func:`advance` to find.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, TypeVar

from tqdm.auto import tqdm

# no tqdm monitor thread: any second Python thread switches off safe_pickle's fast unpickler
# (its address-space cap is process-wide), and these bars are refreshed as work is reported
tqdm.monitor_interval = 0

T = TypeVar("T")

# None: show bars when stderr is a terminal; True/False: forced on/off (api progress=...)
_enabled: ContextVar[bool | None] = ContextVar("gpueval_progress", default=None)
_stream: ContextVar[IO[str] | None] = ContextVar("gpueval_progress_stream", default=None)
_phases: list[Phase] = []
_lock = threading.Lock()


def _shown(force: bool | None = None) -> bool:
    on = _enabled.get() if force is None else force
    if on is False:
        return False
    stream = _stream.get() or sys.stderr
    if on is True and _stream.get() is not None:
        return True  # forced onto a given stream (tests, notebooks)
    return bool(getattr(stream, "isatty", lambda: False)())


@contextmanager
def enabled(on: bool | None, stream: IO[str] | None = None) -> Iterator[None]:
    """Turn bars off (``False``), leave them to the terminal test (``None``/``True``), or force
    them onto ``stream`` (``True`` with a stream) for the calls made inside the block.

    ``True`` without a stream still shows bars only when stderr is a terminal: a score run from
    a script or CI never fills its log with bars.
    """
    t1, t2 = _enabled.set(on), _stream.set(stream)
    try:
        yield
    finally:
        _enabled.reset(t1)
        _stream.reset(t2)


class Phase:
    """One named step of a run, with its bar (see the module docstring).

    Parameters
    ----------
    name : what is being done (``reading``, ``labelling``, ``matching``, ``distances`` …).
    total : the work of the phase (voxels, bytes…); ``None`` lets Dask graphs drive it.
    unit : ``vx`` (voxels), ``B`` (bytes, shown in KiB/MiB) or any tqdm unit.
    item : the current crop/label, case or image.
    """

    def __init__(self, name: str, total: float | None = None, unit: str = "vx",
                 item: str | None = None, *, show: bool | None = None,
                 stream: IO[str] | None = None):
        self.name, self.total, self.unit, self.item = name, total, unit, item
        self.done = 0.0
        self._lock = threading.Lock()
        self._show = _shown() if show is None else show
        self._file = stream or _stream.get() or sys.stderr
        self._bar = None
        if total is not None:
            self._bar = self._new_bar(total, unit)

    @property
    def label(self) -> str:
        """``name`` and the current item, as the bar shows them."""
        return f"{self.name} {self.item}" if self.item else self.name

    @property
    def shown(self) -> bool:
        """Whether this phase draws bars at all."""
        return self._show

    def _new_bar(self, total: float | None, unit: str):
        return tqdm(total=total, desc=self.label, unit=unit, unit_scale=True,
                    unit_divisor=1024 if unit == "B" else 1000, delay=1.0, leave=False,
                    file=self._file, disable=not self._show, dynamic_ncols=True)

    def update(self, n: float = 1) -> None:
        """Count ``n`` units of work done (thread-safe)."""
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)

    def set_item(self, item: str | None) -> None:
        """Name the crop/label, case or image now being worked on."""
        with self._lock:
            self.item = item
            if self._bar is not None:
                self._bar.set_description_str(self.label, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextmanager
def phase(name: str, total: float | None = None, unit: str = "vx", item: str | None = None
          ) -> Iterator[Phase]:
    """Run the block as phase ``name`` (see :class:`Phase`); phases nest, the innermost is
    what :func:`advance` and Dask graphs report to."""
    ph = Phase(name, total, unit, item)
    with _lock:
        _phases.append(ph)
    try:
        yield ph
    finally:
        with _lock:
            _phases.remove(ph)
        ph.close()


def current() -> Phase | None:
    """The innermost active phase (from any thread), or ``None``."""
    with _lock:
        return _phases[-1] if _phases else None


def advance(n: float = 1, unit: str | None = None) -> None:
    """Count ``n`` units of work in the innermost phase; nothing when there is none, or when
    ``unit`` is given and the phase counts something else (a per-case phase ignores the
    voxels the engine's chunk tasks report)."""
    ph = current()
    if ph is not None and (unit is None or ph.unit == unit):
        ph.update(n)


def set_item(item: str | None) -> None:
    """Name the current crop/label, case or image in the innermost phase."""
    ph = current()
    if ph is not None:
        ph.set_item(item)


try:  # the Dask callback; dask is a dependency, the guard keeps `import` cheap paths honest
    from dask.callbacks import Callback
except ImportError:  # pragma: no cover
    Callback = object  # type: ignore[assignment,misc]


class TqdmCallback(Callback):
    """Dask local-scheduler callback: one bar over one graph's tasks, named after the
    innermost phase (and its item), unless that phase counts its own work."""

    def __init__(self, desc: str = "computing", force: bool | None = None):
        super().__init__()
        self._desc, self._force, self._bar = desc, force, None

    def _start_state(self, dsk, state):
        ph = current()
        if ph is not None and ph.total is not None:
            return  # the scorer reports voxels/bytes: a task count would only compete
        total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        show = _shown(self._force) if ph is None else ph.shown and self._force is not False
        self._bar = tqdm(total=total, desc=ph.label if ph else self._desc, unit="task",
                         delay=1.0, disable=not show, leave=False,
                         file=_stream.get() or sys.stderr)

    def _posttask(self, key, result, dsk, state, worker_id):
        if self._bar is not None:
            self._bar.update(1)

    def _finish(self, dsk, state, errored):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress_iter(items: Iterable[T], desc: str, total: int | None = None,
                  enabled: bool = True) -> Iterator[T]:
    """Loop over items (cases, images, crops) as phase ``desc``, naming each item.

    Parameters
    ----------
    items : the loop.
    desc : the phase name.
    total : number of items when ``items`` has no ``len``.
    enabled : ``False`` shows nothing.
    """
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    n = total if total is not None else len(items)  # type: ignore[arg-type]
    with phase(desc, total=n, unit="item") as ph:
        if not enabled:
            ph._show = False
            if ph._bar is not None:
                ph._bar.disable = True
        for it in items:
            ph.set_item(str(it) if isinstance(it, str | int) else None)
            yield it
            ph.update(1)
