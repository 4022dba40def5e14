"""Progress of one-graph scorers: a Dask bar weighted by each task's work, naming its phase
and item (:class:`gpueval.progress.Work` maps on a phase), on the threaded, sync and
distributed schedulers."""

from __future__ import annotations

import io
import re

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval import engine, progress


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def closed(monkeypatch):
    """Every phase as it closes: (name, item, total, done)."""
    seen: list[tuple[str, str | None, float | None, float]] = []
    real = progress.Phase.close

    def close(self):
        seen.append((self.name, self.item, self.total, self.done))
        real(self)

    monkeypatch.setattr(progress.Phase, "close", close)
    return seen


def labels_drawn(text: str) -> set[str]:
    """The descriptions tqdm drew: each redraw starts with a carriage return."""
    return {m.strip() for m in re.findall(r"\r([^\r:|]*?)(?::|\s{2,}|\s\d)", text) if m.strip()}


def _two_item_graph():
    """Two items' chunked counts: 4 chunks of 16 voxels (item a) and 2 chunks of 50 (item b),
    each summed in a tree: the chunk tasks weigh their voxels, the rest nothing."""
    a = da.ones((8, 8), chunks=4, dtype=np.uint8)
    b = da.ones((10, 10), chunks=(5, 10), dtype=np.uint8)
    jobs = [engine.map_reduce_delayed(lambda x: int(x.sum()), [x], sum) for x in (a, b)]
    work = {}
    for item, job, arr in (("a", jobs[0], a), ("b", jobs[1], b)):
        per_chunk = arr.size / arr.npartitions
        for key, func in progress.graph_tasks(job):
            if func == "<lambda>":  # the kernel the engine's _apply runs, seen through it
                work[progress.layer_of(key)] = progress.Work("counting", item, per_chunk)
            elif isinstance(key, tuple):
                work[progress.layer_of(key)] = progress.Work("reading", item)
    return jobs, work


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_weighted_bar_ends_at_the_voxels_and_names_phase_and_item(scheduler, closed):
    jobs, work = _two_item_graph()
    out = Tty()
    with progress.enabled(True, out, immediate=True), progress.phase("scoring", work=work):
        totals = engine.compute(*jobs, scheduler=scheduler, progress=True)
    assert totals == (64, 100)
    bar = [c for c in closed if c[2] is not None]
    assert len(bar) == 1  # one bar for the graph, not one per item or phase
    # 4·16 + 2·50 voxels, whatever the number of tasks (6 chunk tasks, reads, the sums)
    assert bar[0][2] == bar[0][3] == 64 + 100
    drawn = labels_drawn(out.getvalue())
    assert {"counting a", "counting b"} <= drawn
    assert not any(d.startswith("computing") for d in drawn)


def test_without_work_the_bar_still_counts_tasks(closed):
    jobs, _ = _two_item_graph()
    out = Tty()
    with progress.enabled(True, out, immediate=True), progress.phase("scoring", item="z"):
        engine.compute(*jobs, scheduler="sync", progress=True)
    text = out.getvalue()
    assert "scoring z" in text and "task" in text and "counting" not in text
    assert not [c for c in closed if c[2] is not None]  # no weighted bar was made


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e9), st.sampled_from(["x", "y"])), min_size=1,
                max_size=30))
def test_done_equals_total_equals_summed_weights(tasks):
    """Whatever the weights and how many tasks the map leaves out (the final sum here), the
    bar's total is the summed weight of the mapped tasks and it ends there."""
    parts = [dask.delayed(lambda i: i, pure=True)(i) for i in range(len(tasks))]
    final = dask.delayed(lambda xs: len(xs), pure=True)(parts)
    work = {progress.layer_of(p.key): progress.Work("p", item, w)
            for p, (w, item) in zip(parts, tasks, strict=True)}
    made: list[progress.Phase] = []
    cb = progress.TqdmCallback(work=work, force=False)
    real = progress.Phase.__init__

    def init(self, *a, **k):
        real(self, *a, **k)
        made.append(self)

    progress.Phase.__init__ = init  # (hypothesis forbids function-scoped fixtures here)
    try:
        with cb:
            assert dask.compute(final, scheduler="sync")[0] == len(tasks)
    finally:
        progress.Phase.__init__ = real
    (bar,) = made
    assert bar.total == pytest.approx(sum(w for w, _ in tasks))
    assert bar.done == pytest.approx(bar.total)
    assert bar.item in {"x", "y"} and bar.name == "p"


def test_a_work_function_is_asked_per_key():
    x = da.ones((6,), chunks=2)
    asked = []

    def work(key):
        asked.append(key)
        return progress.Work("reading", "v", 2.0) if isinstance(key, tuple) else None

    with progress.enabled(True, Tty(), immediate=True), progress.phase("p", work=work):
        assert engine.compute(x.sum(), scheduler="sync", progress=True)[0] == 6
    assert asked and all(isinstance(k, tuple | str) for k in asked)


def test_task_function_sees_through_the_engine_appliers():
    def kernel(b):
        return int(b.sum())

    job = engine.map_reduce_delayed(kernel, [da.ones((4, 4), chunks=2)], sum)
    names = {f for _, f in progress.graph_tasks(job)}
    assert "kernel" in names and "_apply" not in names
    assert progress.task_function(object()) is None  # data, not a task
    assert progress.task_function((len, [1])) == "len"  # old-style tuple task


def test_layer_of():
    assert progress.layer_of(("rechunk-merge-abc", 1, 2)) == "rechunk-merge-abc"
    assert progress.layer_of("_apply-0123") == "_apply-0123"


def test_showing_follows_the_terminal_rule(capsys):
    assert not progress.showing()  # pytest's stderr is not a terminal
    with progress.enabled(True, Tty()):
        assert progress.showing()
        with progress.enabled(False):
            assert not progress.showing()


def test_a_distributed_scheduler_keeps_its_dashboard(closed):
    """``--workers N`` / ``--scheduler ADDRESS``: no local callback, the same result, no
    crash because the phase carries a work map."""
    distributed = pytest.importorskip("distributed")
    jobs, work = _two_item_graph()
    out = Tty()
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client, \
            progress.enabled(True, out, immediate=True), progress.phase("scoring", work=work):
        assert engine.compute(*jobs, scheduler=client, progress=True) == (64, 100)
    assert "counting" not in out.getvalue()
    assert not [c for c in closed if c[2] is not None]
