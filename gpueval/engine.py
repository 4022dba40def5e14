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
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed

from gpueval.backend import to_device
from gpueval.limits import current_limits

T = TypeVar("T")


def chunk_slices(shape: Sequence[int], chunks: Sequence[int] | Sequence[Sequence[int]]
                 ) -> list[tuple[slice, ...]]:
    """The regular chunk grid of ``shape`` as slices, in C order.

    ``chunks`` is one size per axis or dask-style explicit sizes per axis.

    >>> chunk_slices((5, 4), (2, 4))
    [(slice(0, 2, None), slice(0, 4, None)), (slice(2, 4, None), slice(0, 4, None)), \
(slice(4, 5, None), slice(0, 4, None))]
    """
    bounds = []
    for n, c in zip(shape, chunks, strict=True):
        sizes = list(c) if isinstance(c, Sequence) else [int(c)] * -(-int(n) // int(c))
        edges = np.cumsum([0] + sizes)
        edges[-1] = min(edges[-1], n)
        bounds.append([slice(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a])
    return list(itertools.product(*bounds))


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
    """
    return compute(map_reduce_delayed(func, arrays, combine, device=device,
                                      split_every=split_every, with_slices=with_slices,
                                      extra=extra),
                   scheduler=scheduler, progress=progress)[0]


def map_reduce_delayed(
    func: Callable[..., T],
    arrays: Sequence[da.Array],
    combine: Callable[[list[T]], T],
    *,
    device: str = "cpu",
    split_every: int = 8,
    with_slices: bool = False,
    extra: Sequence[Any] = (),
) -> Delayed:
    """The lazy form of :func:`map_reduce`, to put several reductions in one graph."""
    arrays = align_chunks(arrays)
    first = arrays[0]
    slices = chunk_slices(first.shape, first.chunks)
    blocks = [a.to_delayed().ravel() for a in arrays]
    task = delayed(_apply, pure=True)
    parts = [task(func, s if with_slices else None, device, extra, *(b[i] for b in blocks))
             for i, s in enumerate(slices)]
    return tree_reduce(parts, combine, split_every=split_every)


def tree_reduce(parts: list[Delayed], combine: Callable[[list[T]], T], *,
                split_every: int = 8) -> Delayed:
    """Combine delayed partial results in a tree of fan-in ``split_every``."""
    if not parts:
        return delayed(combine)([])
    node = delayed(combine, pure=True)
    while len(parts) > 1:
        parts = [node(parts[i:i + split_every]) for i in range(0, len(parts), split_every)]
    return node(parts) if not isinstance(parts[0], Delayed) else parts[0]


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
    blocks = [to_device(np.asarray(b), device) for b in blocks]
    args = (slices, *blocks) if slices is not None else tuple(blocks)
    return func(*args, *extra)


def compute(*objs: Any, scheduler: Any = None, progress: bool = False) -> tuple:
    """``dask.compute`` in-process (threads) or on a distributed scheduler, with a progress bar.

    ``scheduler`` may be ``None``, ``"threads"``, ``"sync"``, an address such as
    ``"tcp://127.0.0.1:8786"``, or a :class:`distributed.Client`.
    """
    with _scheduler(scheduler) as (kwargs, client), _progress(progress, client):
        return dask.compute(*objs, **kwargs)


@contextlib.contextmanager
def _scheduler(scheduler: Any) -> Iterator[tuple[dict, Any]]:
    if scheduler is None or scheduler in ("threads", "threading"):
        threads = current_limits().threads  # 0: dask's default, one per core
        yield {"scheduler": "threads", **({"num_workers": threads} if threads else {})}, None
    elif scheduler in ("sync", "synchronous", "single-threaded"):
        yield {"scheduler": "sync"}, None
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
        from gpueval.progress import TqdmCallback

        with TqdmCallback():
            yield
    else:
        yield  # the dashboard shows progress on a cluster
