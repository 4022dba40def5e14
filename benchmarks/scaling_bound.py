"""How far a score could scale on P cores, from its task graphs alone (issue #18's 16-core goal,
measured on a 2-core machine).

A score runs as a sequence of Dask graphs (each ``dask.threaded.get`` call is a barrier) with
serial Python between them. This script runs the score once on **one thread**, recording
every graph (its tasks, their dependencies and Dask's priorities) and every task's duration
(Dask's ``Profiler``), and the serial time outside the tasks. It then replays each graph on P
simulated workers the way the threaded scheduler runs it — a free worker takes the ready task
of highest Dask priority — with the one-thread durations:

    T(P) = serial + sum over graphs of the graph's makespan on P workers

and reports ``T(1) / (P · T(P))``: the efficiency the graph *shape* allows (task count per
pass, the longest task, the critical path, the serial glue). Real runs reach less: tasks slow
each other down (memory bandwidth, the GIL in Python glue). The measured 2-thread efficiency
beside the bound says how much of the gap is that contention; the bound at 16 says whether
the 16-core goal (≥ 70 %) is within reach of the graph before a 16-core host is lent.

Workloads: ``cellmap_600`` (the crop built once in ``/tmp/c600`` by
:func:`gpueval.bench.cellmap.cellmap_600_crop`) and ``dense`` (a zarr pair ``gt``/``pred``
in a folder, e.g. ``cellmap_dense``'s uint32 label that ``percore_profile.py --data`` writes),
both scored by ``score_instance`` in the scorer's 256³ processing chunks.

Usage: ``python benchmarks/scaling_bound.py cellmap_600|dense [--data DIR] [--chunk N]
[--out OUT.json]`` (``--chunk``: the processing chunk, default the scorer's 256).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import time

import dask
import dask.threaded
from dask.core import get_deps
from dask.diagnostics import Profiler
from dask.order import order

from gpueval.limits import Limits, use_limits

PROCESSORS = (1, 2, 4, 8, 16, 32)


class _Recorder:
    """Each graph the threaded scheduler runs: its tasks' dependencies and Dask's
    priorities (the per-task durations come from :class:`dask.diagnostics.Profiler`)."""

    def __init__(self) -> None:
        self.graphs: list[dict] = []

    def wrap(self, get):
        def recorded_get(dsk, keys, **kwargs):
            # what the scheduler runs (an expression is materialised, as dask.local does)
            if hasattr(dsk, "__dask_graph__"):
                dsk = dict(dsk.__dask_graph__())
            deps, _ = get_deps(dsk)
            self.graphs.append({"deps": deps, "priority": order(dsk)})
            return get(dsk, keys, **kwargs)
        return recorded_get


def makespan(graph: dict, workers: int) -> float:
    """The graph's length on ``workers`` simulated workers: a free worker takes the ready task
    of highest priority (lowest Dask order), as the threaded scheduler does."""
    deps, prio, secs = graph["deps"], graph["priority"], graph["seconds"]
    waiting = {k: len(d) for k, d in deps.items()}
    dependents: dict = {k: [] for k in deps}
    for k, d in deps.items():
        for dep in d:
            dependents[dep].append(k)
    ready = [(prio.get(k, 0), i, k) for i, k in enumerate(deps) if waiting[k] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int, object]] = []  # (finish time, tie, key)
    now, tie = 0.0, 0
    while ready or running:
        while ready and len(running) < workers:
            _, _, k = heapq.heappop(ready)
            tie += 1
            heapq.heappush(running, (now + secs.get(k, 0.0), tie, k))
        now, _, done = heapq.heappop(running)
        for k in dependents[done]:
            waiting[k] -= 1
            if waiting[k] == 0:
                heapq.heappush(ready, (prio.get(k, 0), tie, k))
    return now


def critical_path(graph: dict) -> list[tuple[str, float]]:
    """The chain of tasks that bounds the graph's length on any number of workers:
    ``[(task name, seconds), ...]`` from first to last."""
    deps, secs = graph["deps"], graph["seconds"]
    finish: dict = {}
    via: dict = {}

    def end(k):  # longest path ending with k (iterative: graphs can be deep)
        stack = [k]
        while stack:
            top = stack[-1]
            todo = [d for d in deps[top] if d not in finish]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            if top in finish:
                continue
            best = max(deps[top], key=lambda d: finish[d], default=None)
            via[top] = best
            finish[top] = (finish[best] if best is not None else 0.0) + secs.get(top, 0.0)
        return finish[k]

    last = max(deps, key=end)
    chain = []
    while last is not None:
        chain.append((_name(last), secs.get(last, 0.0)))
        last = via[last]
    return chain[::-1]


def _name(key) -> str:
    head = key[0] if isinstance(key, tuple) else key
    return str(head).rsplit("-", 1)[0]


def _score(workload: str, data: str | None, chunk: int):
    from gpueval.bench.cellmap import CONSTS, _open_label, cellmap_600_crop
    from gpueval.challenges.cellmap.scoring_2026 import score_instance

    root = data or ("/tmp/c600" if workload == "cellmap_600" else "/tmp/dense512v2")
    if workload == "cellmap_600":
        cellmap_600_crop(root)
    gt, pred = (_open_label(f"{root}/{name}", chunk) for name in ("gt", "pred"))
    return lambda: score_instance(gt, pred, (8.0,) * 3, CONSTS, device="cpu")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=("cellmap_600", "dense"))
    ap.add_argument("--data")
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--out")
    args = ap.parse_args()
    workload = args.workload
    run = _score(workload, args.data, args.chunk)
    with use_limits(Limits(threads=1)):
        run()  # warm: Numba caches, first imports
        rec = _Recorder()
        real_get = dask.threaded.get
        dask.threaded.get = rec.wrap(real_get)
        try:
            with Profiler() as prof:
                t0 = time.perf_counter()
                result = run()
                total = time.perf_counter() - t0
        finally:
            dask.threaded.get = real_get
    durations = {r.key: r.end_time - r.start_time for r in prof.results}
    for g in rec.graphs:
        g["seconds"] = {k: durations[k] for k in g["deps"] if k in durations}
    task_sum = sum(sum(g["seconds"].values()) for g in rec.graphs)
    # serial: outside any graph, plus each graph's own scheduling time beyond its tasks
    serial = total - task_sum
    bound = {}
    for p in PROCESSORS:
        t_p = serial + sum(makespan(g, p) for g in rec.graphs)
        bound[p] = {"seconds": t_p, "efficiency": total / (p * t_p)}
    largest = sorted(((len(g["seconds"]), max(g["seconds"].values(), default=0.0),
                       sum(g["seconds"].values())) for g in rec.graphs), key=lambda r: -r[2])
    out = {"workload": workload, "chunk": args.chunk, "one_thread_seconds": total,
           "task_seconds": task_sum,
           "serial_seconds": serial, "graphs": len(rec.graphs),
           "heaviest_graphs_tasks_longest_sum": largest[:6], "bound": bound,
           "result": {k: result[k] for k in ("tp", "fp", "fn", "hausdorff_norm_sum")},
           "cores": os.cpu_count(),
           "load": os.getloadavg()[0]}
    print(out["result"])
    print(f"{workload}: 1 thread {total:.2f} s = tasks {task_sum:.2f} s + serial {serial:.2f} s"
          f" in {len(rec.graphs)} graphs")
    print("heaviest graphs (tasks, longest task s, task s):",
          [(n, round(m, 3), round(s, 3)) for n, m, s in largest[:6]])
    heaviest = max(rec.graphs, key=lambda g: sum(g["seconds"].values()))
    kinds: dict[str, list[float]] = {}
    for key, sec in heaviest["seconds"].items():
        kinds.setdefault(_name(key).split("-")[0], []).append(sec)
    out["task_kinds"] = {k: {"tasks": len(v), "seconds": sum(v), "longest": max(v)}
                         for k, v in kinds.items()}
    print("task kinds (tasks, seconds, longest):",
          {k: (len(v), round(sum(v), 3), round(max(v), 3))
           for k, v in sorted(kinds.items(), key=lambda kv: -sum(kv[1]))})
    chain = critical_path(heaviest)
    out["critical_path"] = chain
    print(f"critical path of the heaviest graph: {sum(t for _, t in chain):.3f} s:",
          [(n, round(t, 3)) for n, t in chain])
    for p, b in bound.items():
        print(f"  P={p:2d}: T {b['seconds']:.3f} s, efficiency bound {b['efficiency']:.0%}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
