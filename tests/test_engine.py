"""Engine: chunk grids, reductions, and the same counts on a real distributed LocalCluster."""

import dask.array as da
import numpy as np
import pytest

from gpueval.engine import chunk_slices, map_reduce
from gpueval.kernels.stats import Contingency, contingency


def test_chunk_slices_cover_exactly_once():
    cover = np.zeros((7, 5, 3), int)
    for s in chunk_slices(cover.shape, (3, 2, 3)):
        cover[s] += 1
    assert (cover == 1).all()


def test_with_slices_sees_every_block_origin():
    x = da.zeros((10, 6), chunks=(4, 3))
    origins = map_reduce(lambda s, b: [(s[0].start, s[1].start)], [x],
                         lambda parts: sorted(sum(parts, [])), with_slices=True, split_every=2)
    assert origins == [(0, 0), (0, 3), (4, 0), (4, 3), (8, 0), (8, 3)]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        map_reduce(contingency, [da.zeros(4, chunks=2), da.zeros(5, chunks=2)],
                   Contingency.combine)


@pytest.mark.slow
def test_local_cluster_gives_in_process_counts():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 20, (32, 32, 16)).astype(np.uint64)
    b = rng.integers(0, 9, (32, 32, 16)).astype(np.int32)
    A, B = da.from_array(a, (16, 16, 8)), da.from_array(b, (8, 32, 16))
    here = map_reduce(contingency, [A, B], Contingency.combine)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        there = map_reduce(contingency, [A, B], Contingency.combine,
                           scheduler=cluster.scheduler_address)
    for x, y in zip((here.ids_a, here.ids_b, here.counts), (there.ids_a, there.ids_b,
                                                               there.counts), strict=True):
        np.testing.assert_array_equal(x, y)


def test_limits_threads_caps_the_in_process_scheduler():
    """``limits.threads`` bounds the tasks in flight (peak memory ≈ chunks per thread)."""
    import threading
    import time

    import dask

    from gpueval.engine import compute
    from gpueval.limits import Limits, use_limits

    running, peak, lock = [0], [0], threading.Lock()

    def task(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return i

    tasks = [dask.delayed(task)(i) for i in range(24)]
    with use_limits(Limits(threads=2)):
        assert sum(compute(*tasks)) == sum(range(24))
    assert 1 <= peak[0] <= 2


def test_limits_threads_zero_is_allowed_and_negative_is_not():
    from gpueval.errors import TruthError
    from gpueval.limits import Limits

    assert Limits.from_config({"limits": {"threads": 0}}).threads == 0
    assert Limits.from_config({"limits": {"threads": 3}}).threads == 3
    assert Limits.from_config({"limits": {"gpu_memory_bytes": 0}}).gpu_memory_bytes == 0
    assert Limits.from_config({"limits": {"gpu_memory_bytes": "8e9"}}).gpu_memory_bytes == 8e9
    with pytest.raises(TruthError, match="threads"):
        Limits.from_config({"limits": {"threads": -1}})


@pytest.mark.parametrize("read_in_task", [False, True])
def test_skipped_chunks_are_neither_read_nor_counted(read_in_task):
    import dask

    from gpueval.engine import chunk_tasks, map_reduce_delayed

    x = np.arange(24, dtype=np.int64).reshape(4, 6)
    read = []

    def watch(block, block_info=None):
        read.append(tuple(block_info[0]["chunk-location"]))
        return block

    arr = da.from_array(x, chunks=(2, 3)).map_blocks(watch, dtype=x.dtype)
    skip = np.array([[False, True], [True, False]])
    parts = chunk_tasks(lambda s, b: [(s[0].start, s[1].start, int(b.sum()))], [arr],
                        with_slices=True, skip=skip, read_in_task=read_in_task)
    got = sorted(sum(dask.compute(*parts, scheduler="sync"), []))
    assert got == [(0, 0, int(x[:2, :3].sum())), (2, 3, int(x[2:, 3:].sum()))]
    assert sorted(set(read)) == [(0, 0), (1, 1)]
    total = map_reduce_delayed(lambda b: int(b.sum()), [arr], sum, skip=skip)
    assert total.compute(scheduler="sync") == int(x[:2, :3].sum() + x[2:, 3:].sum())
    with pytest.raises(ValueError, match="skip has 3 entries"):
        chunk_tasks(np.sum, [arr], skip=np.zeros(3, bool))


@pytest.mark.parametrize("read_in_task", [False, True])
def test_stage_times_split_reading_from_the_kernel(read_in_task):
    """A slow read lands in 'read', a slow kernel in 'kernel', the reduction in 'other'."""
    import time

    from gpueval.engine import chunk_tasks, compute, stage_times, tree_reduce

    def slow_read(block):
        time.sleep(0.05)
        return block

    def slow_kernel(block):
        time.sleep(0.02)
        return int(block.sum())

    arr = da.ones((8, 8), chunks=4).map_blocks(slow_read, dtype=float)
    with stage_times() as t:
        total = compute(tree_reduce(chunk_tasks(slow_kernel, [arr], read_in_task=read_in_task),
                                    sum), scheduler="sync")[0]
    assert total == 64
    s = t.as_dict()
    assert s["tasks"]["kernel"] == 4 and s["tasks"]["to_device"] == 4
    assert 4 * 0.05 <= s["seconds"]["read"] < 4 * 0.05 + 1.0
    assert 4 * 0.02 <= s["seconds"]["kernel"] < s["seconds"]["read"]
    assert s["tasks"]["other"] >= 1
    assert abs(sum(s["share"].values()) - 1) < 1e-9
    with stage_times() as outside:  # nothing computed: nothing recorded
        pass
    assert sum(outside.seconds.values()) == 0


def test_engine_and_limits_share_the_default_graph_bound():
    """The engine owns no limits, but refuses graphs even when no caller set a bound: its
    fallback is the config default, and inside ``use_limits`` the config's own value wins."""
    import dask.array as da

    from gpueval import engine
    from gpueval.limits import Limits, use_limits

    assert engine.DEFAULT_MAX_GRAPH_TASKS == Limits().max_graph_tasks
    x = da.ones((40, 40), chunks=(1, 1)) + 1  # 3,200 tasks
    with use_limits(Limits(max_graph_tasks=100)), pytest.raises(engine.GraphTooLarge):
        engine.compute(x.sum())
    assert engine.compute(x.sum())[0] == 3200


# -- graphs built as task dicts (engine.TaskGraph; issue #18, session 9) -----------------------


def _concat(parts):
    """Associative but not commutative: a tree that reorders or drops a part shows."""
    return sum(parts, ())


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 99), st.booleans()), min_size=1, max_size=40),
       st.integers(2, 9))
def test_tree_reduce_keeps_every_part_in_order(spec, split_every):
    """Delayed and plain parts mixed, any fan-in: the root is the ordered combination, and the
    tree has one node per group of each level (as dask.delayed built it)."""
    import dask

    from gpueval import engine

    parts = [dask.delayed(lambda v: (v,), pure=True)(v) if lazy else (v,) for v, lazy in spec]
    root = engine.tree_reduce(parts, _concat, split_every=split_every)
    assert root.compute(scheduler="sync") == tuple(v for v, _ in spec)
    nodes, level = 0, len(parts)
    while not (level == 1 and (nodes or spec[0][1])):
        level = -(-level // split_every)
        nodes += level
    combines = [k for k in dict(root.__dask_graph__()) if str(k).startswith("_concat-")]
    assert len(combines) == nodes


def test_task_graph_literals_are_never_read_as_tasks_or_keys():
    """Strings equal to a key, tuples that look like tasks, lists and dicts reach the task
    as they are; Delayed values and references inside lists and tuples are replaced by
    their results."""
    import dask

    from gpueval.engine import TaskGraph

    g = TaskGraph("t", "tok")
    first = g.add(lambda: 5, index=(0,))
    outside = dask.delayed(lambda: 7, pure=True)()
    looks_like_a_task = (len, [1, 2, 3])
    got = g.add(lambda *a: a, first.key, looks_like_a_task, [first, (outside, 1)], {"k": [1]},
                ("x",), "cpu", index=(1,))
    assert g.delayed(got).compute(scheduler="sync") == (
        first.key, looks_like_a_task, [5, (7, 1)], {"k": [1]}, ("x",), "cpu")
    with pytest.raises(RuntimeError, match="after delayed"):
        g.add(len, [1], index=(2,))


def test_task_graph_refuses_repeated_keys_and_bare_collections():
    from gpueval.engine import TaskGraph

    g = TaskGraph("t", "tok")
    g.add(len, [1])
    with pytest.raises(ValueError, match="added twice"):
        g.add(len, [2])
    with pytest.raises(TypeError, match="Delayed values"):
        g.add(len, da.ones(3, chunks=1), index=(1,))
    with pytest.raises(TypeError, match="inside a dict"):
        g.add(len, {"k": g.add(len, [1], index=(2,))}, index=(3,))


def test_equal_inputs_give_equal_keys():
    """Keys come from a token of the inputs (as ``dask.delayed(pure=True)``): two builds of
    the same reduction share their tasks, different inputs never collide."""
    from gpueval.engine import map_reduce_delayed

    x, y = da.ones((8, 8), chunks=4), da.zeros((8, 8), chunks=4)
    a, b = (map_reduce_delayed(lambda blk: int(blk.sum()), [x], sum) for _ in range(2))
    assert a.key == b.key
    assert map_reduce_delayed(lambda blk: int(blk.sum()), [y], sum).key != a.key


def test_instance_graph_build_never_culls_per_call(monkeypatch):
    """The CellMap instance graph (labelling, statistics, Hausdorff) is built without one
    ``dask.delayed`` list-argument finalisation: each culled the whole graph behind it and
    together they were the serial graph build of issue #18 (~0.1 s on ``cellmap_600``)."""
    import importlib

    from gpueval.bench.cellmap import CONSTS, build_crop
    from gpueval.challenges.cellmap.scoring_2026 import instance_delayed, score_instance

    dd = importlib.import_module("dask.delayed")
    real = getattr(dd, "_finalize_args_collections", None)
    if real is None:
        pytest.skip("this dask has no per-call finalisation to avoid")
    calls = []
    monkeypatch.setattr(dd, "_finalize_args_collections",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    gt, pred = build_crop(24, 12, seed=3)
    g, p = da.from_array(gt, chunks=8), da.from_array(pred, chunks=8)  # 27 chunks
    for device in ("cpu", "gpu"):  # the carried pass, and the pass reading in its tasks
        job = instance_delayed(g, p, (8.0,) * 3, CONSTS, device=device)
        assert calls == [], device
    names = {str(k).split("-")[0] for k in dict(job.__dask_graph__()) if isinstance(k, str)}
    assert {"_label_task", "_edges_task", "_merge_tables", "_stats_combine", "_plan_instance",
            "_hausdorff_assemble", "_finish_instance"} <= names
    whole = score_instance(gt, pred, (8.0,) * 3, CONSTS)  # one chunk: no graph to speak of
    chunked = score_instance(g, p, (8.0,) * 3, CONSTS)
    assert {k: chunked[k] for k in ("tp", "fp", "fn", "hausdorff_norm_sum")} == \
        {k: whole[k] for k in ("tp", "fp", "fn", "hausdorff_norm_sum")}


def test_serial_step_holds_off_the_garbage_collector_and_restores_it():
    import gc

    from gpueval.engine import serial_step

    @serial_step
    def step(fail=False):
        if fail:
            raise RuntimeError("boom")
        return gc.isenabled()

    assert gc.isenabled()
    assert step() is False and gc.isenabled()
    with pytest.raises(RuntimeError):
        step(fail=True)
    assert gc.isenabled()  # restored on an exception too
    gc.disable()
    try:
        assert step() is False
        assert not gc.isenabled()  # a collector disabled before stays disabled
    finally:
        gc.enable()
