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
``counting`` (contingency and confusion tables), ``gathering`` (XPRESS labels at skeleton
nodes), ``segmentation``/``classification``/``fovea`` (REFUGE's tasks), ``cases``/``images``
(MedSegFM, U-RISC), ``scoring`` (everything else, or a whole run).

A phase given a ``total`` is driven by :func:`advance`/:meth:`Phase.update` — weighted by
work, so a bar at 50 % means half the voxels are done, whatever the task sizes. A phase
without a total is driven by the Dask graphs computed inside it: each ``engine.compute`` call
gets its own bar, named after the phase and its item, over that graph's tasks
(:class:`TqdmCallback`); outside any phase that bar is called ``computing``.

One-graph scorers (CellMap computes every crop, label and pass as ONE graph) say what each
task is with ``phase(name, work=...)``: a mapping from layer name (a task key's prefix,
:func:`layer_of`) to :class:`Work` ``(phase, item, weight)``, or a function of the key. Each
graph computed inside then gets one bar over the summed weights (voxels), and the bar names
the phase and item of the task that is running or just finished::

    work = {layer: Work("labelling", "crop1/mito", 64**3), ...}
    with progress.phase("scoring", work=work):
        engine.compute(*jobs, progress=True)    # "labelling crop1/mito  37%|███▋  | 1.2G/3.2G vx"

Tasks the mapping does not name weigh nothing and leave the description as it is.

Dask's worker threads do not inherit context variables, so the innermost phase is also kept
in a process-wide stack (as :mod:`gpueval.notices` does) for :func:`advance` to find.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO, Any, TypeVar

T = TypeVar("T")

# None: show bars when stderr is a terminal; True/False: forced on/off (api progress=...)
_enabled: ContextVar[bool | None] = ContextVar("gpueval_progress", default=None)
_stream: ContextVar[IO[str] | None] = ContextVar("gpueval_progress_stream", default=None)
# draw at once and on every change (tests, demos) instead of after 1 s and 10 times a second
_immediate: ContextVar[bool] = ContextVar("gpueval_progress_immediate", default=False)
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
def enabled(on: bool | None, stream: IO[str] | None = None, *,
            immediate: bool | None = None) -> Iterator[None]:
    """Turn bars off (``False``), leave them to the terminal test (``None``/``True``), or force
    them onto ``stream`` (``True`` with a stream) for the calls made inside the block.

    ``True`` without a stream still shows bars only when stderr is a terminal: a score run from
    a script or CI never fills its log with bars. ``immediate=True`` draws every bar at once and
    on every change (no one-second delay, no redraw throttle), so a short run leaves each
    phase and item it went through on ``stream`` (tests); ``None`` keeps the current setting.
    """
    t1, t2 = _enabled.set(on), _stream.set(stream)
    t3 = _immediate.set(_immediate.get() if immediate is None else bool(immediate))
    try:
        yield
    finally:
        _enabled.reset(t1)
        _stream.reset(t2)
        _immediate.reset(t3)


def showing() -> bool:
    """Whether a bar started now would be drawn (innermost phase's setting, else the terminal
    test): scorers skip building what only a bar needs (:class:`Work` maps) when it is not."""
    ph = current()
    return ph.shown if ph is not None else _shown()


def _tqdm(total: float | None, desc: str, unit: str, show: bool, file: IO[str]) -> Any:
    """A bar that appears after one second (at once under ``immediate``) and is cleared at
    the end; ``None`` when it would not be drawn (``--quiet``, not a terminal): a disabled
    tqdm costs its import (~7 ms) and a multiprocessing lock (~3 ms) of every quiet run's
    start-up (issue #19)."""
    if not show:
        return None
    now = _immediate.get()
    # voxels and bytes in k/M/G (and KiB/MiB); counts of items, steps and tasks as integers
    return _bar_class()(total=total, desc=desc, unit=unit, unit_scale=unit in ("vx", "B", "px"),
                        unit_divisor=1024 if unit == "B" else 1000,
                        delay=0.0 if now else 1.0, mininterval=0.0 if now else 0.1,
                        leave=False, file=file, disable=not show, dynamic_ncols=True)


def _bar_class() -> type:
    """tqdm's notebook-aware class inside IPython, its plain one elsewhere (``tqdm.auto``
    imports asyncio, ~15 ms of every scorer's start-up, issue #19)."""
    return tqdm_class(auto="IPython" in sys.modules)


def tqdm_class(auto: bool = False) -> type:
    """tqdm's bar class (``tqdm.auto``'s with ``auto``), imported on first use, with its
    monitor thread switched off.

    Every tqdm bar of gpueval comes from here (``rescore``'s too): a monitor thread is a
    second Python thread, and any second thread switches off safe_pickle's fast unpickler
    (its address-space cap is process-wide); these bars are refreshed as work is reported.
    The setting is a class attribute of tqdm's base class, so the notebook bars of
    ``tqdm.auto`` inherit it.
    """
    from tqdm.std import tqdm as plain  # noqa: PLC0415 - only a drawn bar pays the import

    plain.monitor_interval = 0
    if auto:
        from tqdm.auto import tqdm as notebook_aware  # noqa: PLC0415

        return notebook_aware
    return plain


@dataclass(frozen=True)
class Work:
    """What one task of a graph does, for a work-weighted bar (see the module docstring).

    Parameters
    ----------
    phase : the phase the task belongs to (``reading``, ``labelling``, ``matching`` …).
    item : the crop/label, case or image it works on.
    weight : the work of the task in the bar's unit (voxels): 0 for tasks whose cost is not
        proportional to data (merges, plans), so the bar measures data, not task counts.
    """

    phase: str
    item: str | None = None
    weight: float = 0.0


#: how a phase names its tasks' work: ``{layer name: Work}`` or ``key -> Work | None``
WorkMap = Mapping[str, Work] | Callable[[Hashable], "Work | None"]


def layer_of(key: Hashable) -> str:
    """The layer name of a task key: ``name`` of an array block ``(name, i, j, …)``, the key
    itself for a delayed value (``func-<token>``)."""
    if isinstance(key, tuple) and key:
        return str(key[0])
    return str(key)


#: gpueval.engine's chunk appliers (``_apply(kernel, …)``, ``_apply_reading(kernel, …)``):
#: a task running one of them is named after the kernel it applies
_APPLIERS = frozenset({"_apply", "_apply_reading"})


def task_function(task: Any) -> str | None:
    """The name of the function a graph task runs (``None`` for data and aliases).

    For the engine's chunk appliers it is the kernel they apply (``_stats_chunk``,
    ``_semantic_chunk`` …), the name that says what the task does.
    """
    func = getattr(task, "func", None)
    args: tuple = tuple(getattr(task, "args", ()) or ())
    if func is None and isinstance(task, tuple) and task and callable(task[0]):
        func, args = task[0], task[1:]  # older dask: tuple tasks
    if func is None:
        return None
    name = getattr(func, "__name__", None)
    if name in _APPLIERS and args:
        kernel = getattr(args[0], "value", args[0])  # a literal argument may come wrapped
        name = getattr(kernel, "__name__", name)
    return name


def graph_tasks(collection: Any) -> Iterator[tuple[Hashable, str | None]]:
    """Every task of a dask collection's graph as ``(key, function name)``
    (:func:`task_function`), for building :class:`Work` maps."""
    for key, task in dict(collection.__dask_graph__()).items():
        yield key, task_function(task)


class Phase:
    """One named step of a run, with its bar (see the module docstring).

    Parameters
    ----------
    name : what is being done (``reading``, ``labelling``, ``matching``, ``distances`` …).
    total : the work of the phase (voxels, bytes…); ``None`` lets Dask graphs drive it.
    unit : ``vx`` (voxels), ``B`` (bytes, shown in KiB/MiB) or any tqdm unit.
    item : the current crop/label, case or image.
    work : for a phase without a total, what the tasks of the graphs computed inside do
        (:class:`Work` by layer name, or a function of the key): their bar is weighted by
        that work and names each task's phase and item.
    """

    def __init__(self, name: str, total: float | None = None, unit: str = "vx",
                 item: str | None = None, *, show: bool | None = None,
                 stream: IO[str] | None = None, work: WorkMap | None = None):
        self.name, self.total, self.unit, self.item = name, total, unit, item
        self.work = work
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
        return _tqdm(total, self.label, unit, self._show, self._file)

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

    def describe(self, name: str, item: str | None = None) -> None:
        """Say that phase ``name`` now works on ``item`` (one bar running through several
        phases: a scorer's steps, the tasks of one graph); redrawn at most 10 times a second
        (at once under ``immediate``), and never before the bar's one-second delay."""
        with self._lock:
            self.name, self.item = name, item
            bar = self._bar
            if bar is None or bar.disable:
                return
            bar.set_description_str(self.label, refresh=False)
            now = time.time()  # tqdm's own clock
            if now - bar.last_print_t >= bar.mininterval and now >= bar.start_t + bar.delay:
                bar.refresh()
                bar.last_print_t = now

    def close(self) -> None:
        """Clear the bar (it is not left on the terminal)."""
        if self._bar is not None:
            self._bar.close()


@contextmanager
def phase(name: str, total: float | None = None, unit: str = "vx", item: str | None = None,
          *, work: WorkMap | None = None) -> Iterator[Phase]:
    """Run the block as phase ``name`` (see :class:`Phase`); phases nest, the innermost is
    what :func:`advance` and Dask graphs report to."""
    ph = Phase(name, total, unit, item, work=work)
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


def describe(name: str, item: str | None = None) -> None:
    """:meth:`Phase.describe` the innermost phase (from any thread); nothing without one."""
    ph = current()
    if ph is not None:
        ph.describe(name, item)


def __getattr__(name: str) -> Any:
    """``TqdmCallback`` is built on first use: its base class is Dask's, whose import costs
    ~0.1 s of start-up to scorers that never build a graph (issue #19)."""
    if name == "TqdmCallback":
        cls = globals()["TqdmCallback"] = _tqdm_callback_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _tqdm_callback_class() -> type:
    from dask.callbacks import Callback

    class TqdmCallback(Callback):
        """Dask local-scheduler callback: one bar per graph, named after the innermost phase (and
        its item), unless that phase counts its own work.

        Without :class:`Work` (neither ``work`` here nor on the innermost phase) the bar counts
        tasks. With it, the bar's total is the summed weight of the graph's tasks, it advances by
        each finished task's weight, and its description is the phase and item of the task that
        started or finished last. Only the scheduler's own thread calls these hooks; nested
        computes inside tasks do not see them (dask hands global callbacks to the outermost
        scheduler only).
        """

        def __init__(self, desc: str = "computing", force: bool | None = None,
                     work: WorkMap | None = None):
            super().__init__()
            self._desc, self._force, self._work = desc, force, work
            self._bar: Any = None
            self._weighted: Phase | None = None
            self._lookup: Callable[[Hashable], Work | None] | None = None

        def _start_state(self, dsk, state):
            ph = current()
            if ph is not None and ph.total is not None:
                return  # the scorer reports voxels/bytes: a task count would only compete
            show = _shown(self._force) if ph is None else ph.shown and self._force is not False
            file = _stream.get() or sys.stderr
            work = self._work if self._work is not None else (ph.work if ph else None)
            if work is not None:
                lookup = _lookup_of(work)
                weights = [w for w in map(lookup, dsk) if w is not None]
                first = weights[0] if weights else Work(ph.name if ph else self._desc)
                self._lookup = lookup
                # not pushed on the phase stack: the engine's per-chunk advance() calls keep going
                # to the enclosing phase, so no voxel is counted twice
                self._weighted = Phase(first.phase, sum(w.weight for w in weights),
                                       ph.unit if ph else "vx", first.item, show=show,
                                       stream=file)
                return
            total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
            self._bar = _tqdm(total, ph.label if ph else self._desc, "task", show, file)

        def _pretask(self, key, dsk, state):
            if self._weighted is not None:
                w = self._lookup(key)
                if w is not None:
                    self._weighted.describe(w.phase, w.item)

        def _posttask(self, key, result, dsk, state, worker_id):
            if self._weighted is not None:
                w = self._lookup(key)
                if w is not None:
                    self._weighted.describe(w.phase, w.item)
                    self._weighted.update(w.weight)
            elif self._bar is not None:
                self._bar.update(1)

        def _finish(self, dsk, state, errored):
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            if self._weighted is not None:
                self._weighted.close()
                self._weighted = None

    return TqdmCallback


def _lookup_of(work: WorkMap) -> Callable[[Hashable], Work | None]:
    if isinstance(work, Mapping):
        get = work.get
        return lambda key: get(layer_of(key))
    return work


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
                ph._bar.close()
                ph._bar = None
        for it in items:
            ph.set_item(str(it) if isinstance(it, str | int) else None)
            yield it
            ph.update(1)
