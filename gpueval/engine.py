"""The chunked engine: map a kernel over aligned chunks, reduce the statistics exactly.

One pattern serves every score::

    volume chunks ──read──▶ kernel(chunk, ...) ──▶ small statistic ──tree-combine──▶ result

Each task reads its own chunk (inside the task, straight from zarr/HDF5/TIFF through the lazy
dask array), moves it to the GPU when asked, computes a small host-side statistic and drops the
chunk. Nothing is concatenated, so peak memory is a few chunks per worker whatever the volume
size. The reduction is a tree with fan-in ``split_every``, so no single task holds all partial
results.

The same graph runs in-process (dask's threaded scheduler: Numba, cc3d and CuPy release the
GIL) or on a ``dask.distributed`` cluster when ``scheduler`` is an address
(``tcp://host:8786``) or a :class:`distributed.Client`.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import dask
import dask.threaded
import numpy as np
from dask.base import is_dask_collection, tokenize
from dask.callbacks import Callback
from dask.core import literal
from dask.delayed import Delayed, delayed
from dask.utils import funcname

if TYPE_CHECKING:  # dask.array costs ~0.2 s of start-up: imported where a graph is built
    import dask.array as da

from gpueval import bounds
from gpueval import progress as bars
from gpueval.backend import array_module, is_cupy, to_device
from gpueval.errors import Rejected
from gpueval.progress import TqdmCallback

#: the graph bound when no caller set one. The engine owns no limits: the caller sets them
#: (``gpueval.limits.use_limits`` does, from the config's ``limits:``) in :mod:`gpueval.bounds`.
DEFAULT_MAX_GRAPH_TASKS = bounds.DEFAULT_MAX_GRAPH_TASKS

T = TypeVar("T")


def chunk_slices(shape: Sequence[int], chunks: Sequence[int] | Sequence[Sequence[int]]
                 ) -> list[tuple[slice, ...]]:
    """The regular chunk grid of ``shape`` as slices, in C order.

    ``chunks`` is one size per axis or dask-style explicit sizes per axis.

    >>> chunk_slices((5, 4), (2, 4))
    [(slice(0, 2, None), slice(0, 4, None)), (slice(2, 4, None), slice(0, 4, None)), \
(slice(4, 5, None), slice(0, 4, None))]
    """
    per_axis = []
    for n, c in zip(shape, chunks, strict=True):
        sizes = list(c) if isinstance(c, Sequence) else [int(c)] * -(-int(n) // int(c))
        edges = np.cumsum([0] + sizes)
        edges[-1] = min(edges[-1], n)
        per_axis.append([slice(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a])
    return list(itertools.product(*per_axis))


def map_reduce(
    func: Callable[..., T],
    arrays: Sequence[da.Array],
    combine: Callable[[list[T]], T],
    *,
    device: str = "cpu",
    scheduler: Any = None,
    progress: bool = False,
    split_every: int = 8,
    with_slices: bool = False,
    extra: Sequence[Any] = (),
    phase: str | None = None,
) -> T:
    """Apply ``func`` to every aligned chunk of ``arrays`` and combine the results in a tree.

    Parameters
    ----------
    func : ``func(*blocks, *extra)`` or, with ``with_slices``, ``func(slices, *blocks, *extra)``
        where ``slices`` locates the chunk in the volume. Must return a small host object.
    arrays : dask arrays of one shape; they are rechunked to the first array's chunks when
        their chunks differ.
    combine : ``combine(list_of_results) -> result``; associative, exact.
    device : ``"cpu"`` or ``"gpu"`` (blocks are moved to CuPy before ``func``).
    scheduler : ``None`` (in-process threads), a scheduler address, or a distributed Client.
    split_every : fan-in of the reduction tree.
    phase : with ``progress``, show this pass as a named phase whose bar counts voxels (every
        chunk advances it by its size) instead of a bar counting tasks.
    """
    graph = map_reduce_delayed(func, arrays, combine, device=device, split_every=split_every,
                               with_slices=with_slices, extra=extra)
    if progress and phase:
        with bars.phase(phase, total=float(np.prod(arrays[0].shape)), unit="vx"):
            return compute(graph, scheduler=scheduler)[0]
    return compute(graph, scheduler=scheduler, progress=progress)[0]


def map_reduce_delayed(
    func: Callable[..., T],
    arrays: Sequence[da.Array],
    combine: Callable[[list[T]], T],
    *,
    device: str = "cpu",
    split_every: int = 8,
    with_slices: bool = False,
    extra: Sequence[Any] = (),
    skip: np.ndarray | None = None,
) -> Delayed:
    """The lazy form of :func:`map_reduce`, to put several reductions in one graph.

    ``skip`` (bool, shaped like the chunk grid) leaves out chunks the caller knows contribute
    nothing; see :func:`chunk_tasks`.
    """
    parts = chunk_tasks(func, arrays, device=device, with_slices=with_slices, extra=extra,
                        skip=skip)
    return tree_reduce(parts, combine, split_every=split_every)


def chunk_tasks(
    func: Callable[..., T],
    arrays: Sequence[da.Array],
    *,
    device: str = "cpu",
    with_slices: bool = False,
    extra: Sequence[Any] = (),
    skip: np.ndarray | None = None,
    read_in_task: bool = False,
) -> list[Delayed]:
    """One delayed ``func`` per aligned chunk of ``arrays`` (C order of the chunk grid).

    Parameters
    ----------
    func, arrays, device, with_slices, extra : as in :func:`map_reduce`.
    skip : bool array shaped like the chunk grid; ``True`` chunks get no task (and are not
        read).
    read_in_task : each task reads its chunks itself (through one graph node holding the
        arrays, see :class:`Opaque`) instead of depending on the arrays' read tasks. A second
        pass over the same arrays then never shares, and so never pins in memory, the first
        pass's chunks.
    """
    arrays = align_chunks(arrays)
    slices = chunk_slices(arrays[0].shape, arrays[0].chunks)
    keep = np.ones(len(slices), bool) if skip is None else ~np.asarray(skip, bool).ravel()
    if len(keep) != len(slices):
        raise ValueError(f"skip has {len(keep)} entries for {len(slices)} chunks")
    where = [s if with_slices else None for s in slices]
    extra = tuple(extra)
    applier = _apply_reading if read_in_task else _apply
    graph = TaskGraph(funcname(func), tokenize(func, applier, [a.name for a in arrays], device,
                                               with_slices, extra, keep))
    if read_in_task:
        holder = graph.data("opaque", Opaque(tuple(arrays)))
        cells = list(np.ndindex(*arrays[0].numblocks))
        refs = [graph.add(_apply_reading, func, where[i], device, extra, holder, cells[i],
                          index=(int(i),)) for i in np.flatnonzero(keep)]
    else:
        blocks = [a.to_delayed().ravel() for a in arrays]
        refs = [graph.add(_apply, func, where[i], device, extra, *(b[i] for b in blocks),
                          index=(int(i),)) for i in np.flatnonzero(keep)]
    return [graph.delayed(r) for r in refs]


class Opaque:
    """Hides dask arrays from dask's argument traversal, so a task can read the chunks it
    needs itself (which ones may be known only at run time) without the graph pinning them."""

    __slots__ = ("array",)

    def __init__(self, array: Any):
        self.array = array

    def __dask_tokenize__(self):  # cheap and deterministic: the arrays' graph names
        arrays = self.array if isinstance(self.array, tuple) else (self.array,)
        return ("gpueval-opaque", tuple(a.name for a in arrays))


def tree_reduce(parts: list[Any], combine: Callable[[list[T]], T], *,
                split_every: int = 8) -> Delayed:
    """Combine delayed partial results in a tree of fan-in ``split_every``.

    ``parts`` are :class:`~dask.delayed.Delayed` values or plain values. The tree is built as
    one :class:`TaskGraph` layer (node keys ``<combine's name>-<token>-<level>-<i>``), which
    costs microseconds per node where a ``dask.delayed`` call per node took milliseconds
    (see :class:`TaskGraph`).
    """
    if not parts:
        return delayed(combine)([])
    if len(parts) == 1 and isinstance(parts[0], Delayed):
        return parts[0]
    graph = TaskGraph(funcname(combine), tokenize(combine, list(parts), split_every))
    return graph.delayed(graph.reduce(combine, parts, split_every=split_every))


def align_chunks(arrays: Sequence[da.Array]) -> list[da.Array]:
    """Give every array the first one's chunks (rechunk only when they differ)."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("map_reduce needs at least one array")
    shape = arrays[0].shape
    for a in arrays[1:]:
        if a.shape != shape:
            raise ValueError(f"arrays differ in shape: {shape} vs {a.shape}")
    return [arrays[0]] + [a if a.chunks == arrays[0].chunks else a.rechunk(arrays[0].chunks)
                          for a in arrays[1:]]


def _apply(func, slices, device, extra, *blocks):
    t0 = time.perf_counter()
    blocks = [b if is_cupy(b) else to_device(np.asarray(b), device) for b in blocks]
    t1 = time.perf_counter()
    args = (slices, *blocks) if slices is not None else tuple(blocks)
    out = func(*args, *extra)
    if _STAGES is not None:
        _STAGES.add("to_device", t1 - t0)
        _STAGES.add("kernel", time.perf_counter() - t1)
    if blocks:
        bars.advance(blocks[0].size, unit="vx")  # progress weighted by voxels
    return out


def _apply_reading(func, slices, device, extra, holder: Opaque, idx):
    t0 = time.perf_counter()
    # dask.get, not "sync": a scheduler name makes dask import distributed (~0.1 s)
    blocks = [a.blocks[idx].compute(scheduler=dask.get) for a in holder.array]
    if _STAGES is not None:
        _STAGES.add("read", time.perf_counter() - t0)
    return _apply(func, slices, device, extra, *blocks)


# --------------------------------------------------------------------------------------------
# Graphs built as task dicts


class TaskRef:
    """A task added to a :class:`TaskGraph`: pass it as an argument of later tasks."""

    __slots__ = ("key",)

    def __init__(self, key: str):
        self.key = key

    def __repr__(self) -> str:
        return f"TaskRef({self.key!r})"


class TaskGraph:
    """Tasks added one by one to ONE graph layer as plain task tuples, handed out as
    :class:`~dask.delayed.Delayed` values: ``dask.delayed`` without its cost per call.

    Why: dask (2026.8) finalises every ``Delayed`` inside a list or tuple argument of a
    ``dask.delayed`` call by optimising and culling the whole graph behind it, at every call
    (``_finalize_args_collections``). A tree reduction (each node takes a list of parts) or a
    chunk labelling (each boundary task takes its neighbours' results) built that way spent
    ~0.1 s on ``cellmap_600`` before its compute — serial time that 2 threads cannot share
    (issue #18). Here a task is one dict entry; dependencies on other collections are
    merged once, when :meth:`delayed` first builds the graph.

    Keys are ``"<function name>-<token>[-<index>…]"`` strings, as ``dask.delayed`` names its
    tasks, so progress maps (:func:`gpueval.progress.task_function` reads the function of
    the task tuple) and dashboards (``dask.utils.key_split``) see the same names.

    Arguments (:meth:`add`): a :class:`TaskRef` or a ``Delayed`` is replaced by its result;
    lists and tuples are searched for them at any depth; every other value is a literal
    (strings, tuples, lists and dicts are quoted, so dask never reads them as keys or tasks).
    Refused: other dask collections (pass ``Delayed`` values, ``to_delayed``, or hide them
    from the graph, :class:`Opaque`) and ``Delayed`` values inside a dict or set.

    Parameters
    ----------
    name : the layer's name prefix (the layer is ``name-token``).
    token : unique for the inputs, e.g. :func:`dask.base.tokenize` of them: equal inputs give
        equal keys (dask then computes shared tasks once), different ones never collide.
    """

    def __init__(self, name: str, token: str):
        self.token = token
        self.layer = f"{name}-{token}"
        self.tasks: dict[str, Any] = {}
        self._dependencies: dict[int, Any] = {}  # by id: each collection's layers merged once
        self._graph: Any = None

    def add(self, func: Callable[..., Any], *args: Any, index: tuple = ()) -> TaskRef:
        """Add the task ``func(*args)`` under ``<func's name>-<token>[-<index>…]``."""
        if self._graph is not None:
            raise RuntimeError("TaskGraph: a task added after delayed() was called")
        key = "-".join((funcname(func), self.token, *map(str, index)))
        if key in self.tasks:
            raise ValueError(f"TaskGraph: key {key!r} added twice (give each task an index)")
        self.tasks[key] = (func, *(self._argument(a) for a in args))
        return TaskRef(key)

    def data(self, name: str, value: Any) -> TaskRef:
        """A node holding ``value`` (sent once to a cluster, shared by the tasks using it)."""
        key = f"{name}-{self.token}"
        self.tasks[key] = (literal(value),)
        return TaskRef(key)

    def reduce(self, combine: Callable[[list[Any]], Any], parts: Sequence[Any], *,
               split_every: int = 8, index: tuple = ()) -> TaskRef:
        """Tasks combining ``parts`` (task references, ``Delayed`` or plain values) in a tree
        of fan-in ``split_every``, as :func:`tree_reduce`; the root. Its nodes are indexed
        ``(*index, level, i)``: give each reduction of one graph and ``combine`` its own
        ``index``. One part that is a task is its own root; no part is refused."""
        if not parts:
            raise ValueError("TaskGraph.reduce: nothing to combine")
        if len(parts) == 1 and isinstance(parts[0], TaskRef | Delayed):
            return parts[0]
        level = list(parts)
        depth = 0
        while True:
            level = [self.add(combine, level[i:i + split_every], index=(*index, depth, j))
                     for j, i in enumerate(range(0, len(level), split_every))]
            if len(level) == 1:
                return level[0]
            depth += 1

    def delayed(self, ref: TaskRef | Delayed) -> Delayed:
        """The result of the task ``ref`` as a ``Delayed`` of the whole layer (adding
        tasks afterwards is an error: the graph is built once, shared by every value)."""
        from dask.highlevelgraph import HighLevelGraph

        if isinstance(ref, Delayed):
            return ref  # a reduction of one Delayed part
        if self._graph is None:
            self._graph = HighLevelGraph.from_collections(
                self.layer, self.tasks, dependencies=list(self._dependencies.values()))
        return Delayed(ref.key, self._graph, layer=self.layer)

    def _argument(self, value: Any) -> Any:
        if isinstance(value, TaskRef):
            return value.key
        if isinstance(value, Delayed):
            self._dependencies.setdefault(id(value), value)
            return value.key
        kind = type(value)
        if kind in (list, tuple) and any(_holds_ref(v) for v in value):
            items = [self._argument(v) for v in value]
            return items if kind is list else (tuple, items)
        if kind in (dict, set, frozenset) and any(_holds_ref(v) for v in (
                value.values() if kind is dict else value)):
            raise TypeError("TaskGraph: a Delayed value inside a dict or set is not computed; "
                            "pass it as its own argument or inside a list")
        if kind in (str, tuple, list, dict, set, frozenset):
            return (literal(value),)  # never read as a key or a task
        if is_dask_collection(value):
            raise TypeError(f"TaskGraph: pass a {kind.__name__} as Delayed values or hide it "
                            "in an Opaque")
        return value


def _holds_ref(value: Any) -> bool:
    if isinstance(value, TaskRef | Delayed):
        return True
    return type(value) in (list, tuple) and any(_holds_ref(v) for v in value)


# --------------------------------------------------------------------------------------------
# Where the time goes


class StageTimes:
    """Seconds per stage of the chunked computations run while :func:`stage_times` is active,
    summed over threads (so they may exceed the wall time).

    Stages: ``read`` — producing array blocks (storage read and decompression, slicing,
    rechunking: every dask-array task, and the reads of ``read_in_task`` chunk tasks);
    ``to_device`` — host→GPU copies of chunks (≈ 0 on the CPU); ``kernel`` — the per-chunk
    statistic (on the GPU this includes the device work, as each kernel returns host results);
    ``other`` — reductions and the global steps between passes. Only in-process schedulers
    are seen (a ``dask.distributed`` cluster has its own dashboard).
    """

    STAGES = ("read", "to_device", "kernel", "other")

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(self.STAGES, 0.0)
        self.tasks = dict.fromkeys(self.STAGES, 0)
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] += seconds
            self.tasks[stage] += 1

    def as_dict(self) -> dict[str, Any]:
        """``{stage: seconds}``, each stage's share of the total, and task counts."""
        total = sum(self.seconds.values())
        return {"seconds": dict(self.seconds),
                "share": {k: (v / total if total else 0.0) for k, v in self.seconds.items()},
                "tasks": dict(self.tasks)}


_STAGES: StageTimes | None = None


def record_stage(stage: str, seconds: float) -> None:
    """Add ``seconds`` to ``stage`` of the active :func:`stage_times` (no-op without one),
    for tasks that time part of their work themselves (e.g. a read inside a kernel task)."""
    if _STAGES is not None:
        _STAGES.add(stage, seconds)


def timed(stage: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate a per-chunk task function so that its run time counts as ``stage`` in
    :class:`StageTimes` (the scheduler callback then leaves its tasks alone)."""
    if stage not in StageTimes.STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {StageTimes.STAGES}")

    def deco(func: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(func)
        def run(*args, **kwargs):
            if _STAGES is None:
                return func(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                _STAGES.add(stage, time.perf_counter() - t0)

        run._gpueval_stage = stage  # type: ignore[attr-defined]
        return run

    return deco


def serial_step(func: Callable[..., T]) -> Callable[..., T]:
    """Decorate a task that every other task of its graph waits for (a global matching or
    plan between two chunk passes): Python's cyclic garbage collector is held off while it
    runs. Such a step builds many small containers (tuples per instance) and so tends to be
    where a collection falls, a full one scanning every object of the imported modules
    (~40–50 ms, measured on the dense 1024³ CellMap plan: 0.12 → 0.07 s) while every worker
    is idle; deferred, the collection runs later, beside other tasks. Nothing these steps
    build is cyclic garbage (reference counting frees it), and the collector is re-enabled
    afterwards only if it was enabled before."""

    @functools.wraps(func)
    def run(*args, **kwargs):
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return run


class _StageCallback(Callback):
    """Times every task the local scheduler runs that the engine does not time itself."""

    def __init__(self, times: StageTimes) -> None:
        super().__init__()
        self._times = times
        self._began: dict[Any, float] = {}

    def _pretask(self, key, dsk, state):
        self._began[key] = time.perf_counter()

    def _posttask(self, key, result, dsk, state, worker_id):
        t0 = self._began.pop(key, None)
        if t0 is None or _self_timed(dsk.get(key)):
            return
        # array blocks have tuple keys (name, i, j, ...); delayed steps have string keys
        self._times.add("read" if isinstance(key, tuple) else "other", time.perf_counter() - t0)


def _self_timed(task: Any) -> bool:
    """The task's function records its own stage time (:func:`timed`, or the engine's own
    chunk appliers)."""
    func = getattr(task, "func", None)
    if func is None and isinstance(task, tuple) and task and callable(task[0]):
        func = task[0]  # older dask: tuple tasks
    return func in (_apply, _apply_reading) or hasattr(func, "_gpueval_stage")


@contextlib.contextmanager
def stage_times() -> Iterator[StageTimes]:
    """Collect :class:`StageTimes` of everything computed in-process inside the block.

    >>> import dask.array as da
    >>> x = da.ones((8, 8), chunks=4)
    >>> with stage_times() as t:
    ...     total = map_reduce(lambda b: int(b.sum()), [x], sum)
    >>> total, t.tasks["kernel"]
    (64, 4)
    """
    global _STAGES
    times, previous = StageTimes(), _STAGES
    _STAGES = times
    try:
        with _StageCallback(times):
            yield times
    finally:
        _STAGES = previous


class GraphTooLarge(Rejected):
    """A Dask graph with more tasks than ``limits.max_graph_tasks`` (exit 3, like any refusal).

    Raised by :func:`compute` (through :func:`check_graph_size`) before anything runs. The
    usual cause is a submission whose declared geometry or chunking multiplies the tasks (tiny
    chunks, an absurd voxel size); a legitimate huge job raises the limit with
    ``--set limits.max_graph_tasks=...``.
    """


def graph_size(*objs: Any) -> int:
    """Number of tasks of the graphs of ``objs`` (shared layers counted once; cheap).

    Counted layer by layer without materialising blockwise layers, so a graph of 10⁸ tasks is
    measured in microseconds. Objects that are not Dask collections count 0.
    """
    from dask.base import is_dask_collection
    from dask.highlevelgraph import HighLevelGraph

    layers: dict[Any, int] = {}
    plain = 0
    for obj in objs:
        if not is_dask_collection(obj):
            continue
        graph = obj.__dask_graph__()
        if isinstance(graph, HighLevelGraph):
            for name, layer in graph.layers.items():
                if name not in layers:
                    layers[name] = len(layer)
        else:
            plain += len(graph)
    return plain + sum(layers.values())


def check_graph_size(*objs: Any, limit: int | None = None) -> int:
    """Refuse graphs over ``limit`` tasks (default ``limits.max_graph_tasks``); their size.

    Raises
    ------
    GraphTooLarge
        With the task count and the limit, in one line.
    """
    if limit is None:
        limit = bounds.max_graph_tasks()  # set by gpueval.limits.use_limits
    n = graph_size(*objs)
    if n > int(limit):
        raise GraphTooLarge(f"the computation needs {n:.3g} tasks, over the limit {limit:.3g} "
                            "(limits.max_graph_tasks): tiny chunks or an absurd geometry")
    return n


def compute(*objs: Any, scheduler: Any = None, progress: bool = False) -> tuple:
    """``dask.compute`` in-process (threads) or on a distributed scheduler, with a progress bar.

    ``scheduler`` may be ``None``, ``"threads"``, ``"sync"``, an address such as
    ``"tcp://127.0.0.1:8786"``, or a :class:`distributed.Client`.

    Raises
    ------
    GraphTooLarge
        The graphs of ``objs`` hold more than ``limits.max_graph_tasks`` tasks (checked
        before anything runs).
    """
    check_graph_size(*objs)
    with _scheduler(scheduler) as (kwargs, client), _progress(progress, client):
        return dask.compute(*objs, **kwargs)


@contextlib.contextmanager
def local_processes(workers: int) -> Iterator[Any]:
    """A ``dask.distributed`` client of ``workers`` local processes (one thread each), to
    pass as ``scheduler``; closed on exit.

    The GIL limits the threaded scheduler wherever a stage is Python glue (per-object loops,
    small-array NumPy calls); processes side-step it at the cost of pickling what moves
    between tasks (chunk statistics, never whole chunks: each task reads its own). The graph
    is the same, so the result is too.
    """
    from distributed import Client, LocalCluster

    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, not {workers}")
    # dashboard on a free port: no clash with a cluster already running on this host
    with LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        yield client


@contextlib.contextmanager
def _scheduler(scheduler: Any) -> Iterator[tuple[dict, Any]]:
    if scheduler is None or scheduler in ("threads", "threading"):
        # set by gpueval.limits.use_limits; 0 or unset: dask's default, one per core
        threads = bounds.threads()
        # the threaded scheduler's function itself, not the name "threads": dask.compute
        # imports distributed (~0.1 s) to look for a default client whenever the scheduler
        # is given by name, even with no cluster anywhere
        yield {"scheduler": dask.threaded.get,
               **({"num_workers": threads} if threads else {})}, None
    elif scheduler in ("sync", "synchronous", "single-threaded"):
        yield {"scheduler": dask.get}, None  # the synchronous scheduler (see above)
    elif isinstance(scheduler, str):
        from distributed import Client

        with Client(scheduler, set_as_default=False) as client:
            yield {"scheduler": client}, client
    else:  # a Client
        yield {"scheduler": scheduler}, scheduler


@contextlib.contextmanager
def _progress(enabled: bool, client: Any) -> Iterator[None]:
    if not enabled:
        yield
        return
    if client is None:
        with TqdmCallback():
            yield
    else:
        yield  # the dashboard shows progress on a cluster


# --------------------------------------------------------------------------------------------
# Content checks, chunk by chunk


def check_finite(x: Any, where: str = "submission", *, scheduler: Any = None) -> None:
    """Refuse NaN or ±inf anywhere in a float array, chunk by chunk (integer arrays pass).

    ``x`` may be a dask array (one small count per chunk, never the whole volume in memory),
    a NumPy or a CuPy array.

    Raises
    ------
    Rejected
        With the number of non-finite values found.
    """
    if np.dtype(x.dtype).kind not in "fc":
        return
    def per_block(b):
        return b.size - array_module(b).count_nonzero(array_module(b).isfinite(b))

    bad = _count(x, per_block, scheduler)
    if bad:
        raise Rejected(f"{where}: {bad} NaN or infinite value(s) in a float submission")


def check_nonnegative(x: Any, where: str = "submission", *, scheduler: Any = None) -> None:
    """Refuse negative values (label ids must be ≥ 0), chunk by chunk; unsigned arrays pass."""
    if np.dtype(x.dtype).kind in "ub":
        return
    bad = _count(x, lambda b: array_module(b).count_nonzero(b < 0), scheduler)
    if bad:
        raise Rejected(f"{where}: {bad} negative value(s); label ids must be 0 or positive")


def _count(x: Any, per_block, scheduler: Any) -> int:
    # a dask array exists only once dask.array was imported; a NumPy/CuPy caller never pays it
    if "dask.array" in sys.modules and isinstance(x, sys.modules["dask.array"].Array):
        counts = x.map_blocks(lambda b: np.array([int(per_block(b))]).reshape((1,) * b.ndim),
                              dtype=np.int64, chunks=(1,) * x.ndim)
        (total,) = compute(counts.sum(), scheduler=scheduler)
        return int(total)
    return int(per_block(x))
