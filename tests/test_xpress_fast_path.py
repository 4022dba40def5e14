"""XPRESS's whole-process path stays off the heavy stacks and gives the same numbers (#19).

A ``gpueval score xpress`` of an HDF5 submission and a pickled graph needs neither Numba (its
tables have ~10⁵ rows: NumPy sorts them in milliseconds, Numba's import and cache cost
~0.15 s) nor Dask (one pass of chunk reads on a thread pool). Pinned through ``sys.modules``
of a fresh interpreter, never through timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from fresh_cli import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]


def test_marginal_equals_a_sum_per_distinct_id():
    from gpueval.kernels.stats import _marginal

    ids_of = {np.uint64: st.sampled_from([0, 1, 7, 2**53 + 1, 2**64 - 1]),
              np.int32: st.integers(-3, 3), np.float64: st.sampled_from([0.0, -0.0, 1.5, 2.0])}

    @settings(max_examples=150, deadline=None)
    @given(st.sampled_from(sorted(ids_of, key=str)).flatmap(
        lambda dt: st.tuples(st.just(dt), st.lists(st.tuples(ids_of[dt], st.integers(0, 9)),
                                                   max_size=40))))
    def check(case):
        dtype, pairs = case
        ids = np.array([p[0] for p in pairs], dtype)
        counts = np.array([p[1] for p in pairs], np.int64)
        want: dict = {}
        for i, c in zip(ids.tolist(), counts.tolist(), strict=True):
            want[i] = want.get(i, 0) + c  # -0.0 and 0.0 are one key, as NumPy compares them
        got_ids, got_counts = _marginal(ids, counts)
        assert got_ids.dtype == ids.dtype and got_counts.dtype == np.int64
        assert got_ids.tolist() == sorted(want) and got_counts.tolist() == \
            [want[k] for k in sorted(want)]

    check()


def _score_in_fresh_interpreter(tmp_path: Path, extra: list[str] | None = None) -> dict:
    """Score the start-up benchmark's small XPRESS pair (pickled graph, HDF5-LZF) in a new
    interpreter; return the heavy modules it imported and the result."""
    from gpueval.bench.startup import _xpress_files

    argv, _ = _xpress_files(tmp_path)
    out_json = tmp_path / "r.json"
    code, modules, err = run_cli([*argv, *(extra or []), "--quiet", "--json", str(out_json)],
                                 ("numba", "dask", "dask.array", "distributed", "zarr", "scipy"))
    assert code == 0, err[-800:]
    return {"modules": set(modules), "result": json.loads(out_json.read_text())}


def test_xpress_score_imports_no_numba(tmp_path):
    got = _score_in_fresh_interpreter(tmp_path)
    assert "numba" not in got["modules"]
    assert got["result"]["metrics"]["n_nodes_in_roi"] == 8


def test_xpress_score_of_hdf5_imports_no_dask(tmp_path):
    got = _score_in_fresh_interpreter(tmp_path)
    assert got["modules"] & {"dask", "dask.array", "distributed", "zarr", "scipy"} == set()


def _h5_volume(path: Path, data: np.ndarray, chunks, partial: bool = False) -> None:
    """``data`` in HDF5-LZF; ``partial``: only its first half along z is written, the
    rest (chunks never written included) reads as the fill value 7."""
    import h5py

    with h5py.File(path, "w") as f:
        d = f.create_dataset("seg", shape=data.shape, dtype=data.dtype, chunks=chunks,
                             compression="lzf", fillvalue=7)
        if partial:
            half = data.shape[0] // 2
            d[:half] = data[:half]
            data[half:] = 7
        else:
            d[...] = data


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_threaded_gather_equals_the_dask_graph(tmp_path_factory, data):
    # the same window (crop, stride) of the same stored blocks, gathered on threads and as a
    # Dask graph: same values, extrema and statistics (blocks read, bytes, total)
    from gpueval.challenges.xpress.layout import Submission
    from gpueval.kernels.gather import BlockWindow, gather

    shape = tuple(data.draw(st.integers(3, 12), label="n") for _ in range(3))
    chunks = tuple(data.draw(st.integers(1, n), label="c") for n in shape)
    signed = data.draw(st.booleans(), label="signed")
    rng = np.random.default_rng(data.draw(st.integers(0, 99), label="seed"))
    vol = rng.integers(-5 if signed else 0, 50, shape).astype(np.int16 if signed else np.uint64)
    path = tmp_path_factory.mktemp("g") / "v.h5"
    _h5_volume(path, vol, chunks, partial=data.draw(st.booleans(), label="partial"))
    start = tuple(data.draw(st.integers(0, n - 1), label="start") for n in shape)
    size = tuple(data.draw(st.integers(1, n - a), label="size")
                 for a, n in zip(start, shape, strict=True))
    step = data.draw(st.integers(1, 3), label="step")
    block = tuple(data.draw(st.integers(1, 6), label="block") for _ in range(3))
    from gpueval.io.arrays import _Hdf5Reader

    window = BlockWindow.whole(_Hdf5Reader(str(path), "seg"), block).crop(start, size)
    window = window.strided(step)
    want_vol = vol[tuple(slice(a, a + n, step) for a, n in zip(start, size, strict=True))]
    assert window.shape == want_vol.shape
    sub = Submission(str(path), window, vol.dtype, shape, (0, 0, 0), (1, 1, 1), window.shape,
                     0, step, dataset="seg", chunks=block)
    lazy = sub.dask_data()
    assert lazy.chunks == window.chunks
    points = rng.integers(0, np.array(window.shape), (data.draw(st.integers(0, 20)), 3))
    np.testing.assert_array_equal(window[2 % window.shape[0], ::2, :],
                                  want_vol[2 % window.shape[0], ::2, :])
    for extrema in (False, True):
        for scheduler in (None, "sync"):
            got = gather(window, points, scheduler=scheduler, with_extrema=extrema)
            want = gather(lazy, points, scheduler="sync", with_extrema=extrema)
            np.testing.assert_array_equal(got.values, want.values)
            np.testing.assert_array_equal(got.values, want_vol[tuple(points.T)])
            assert (got.max, got.min) == (want.max, want.min)
            assert vars(got.stats) == vars(want.stats)


@settings(max_examples=120, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=60))),
    st.booleans())
def test_component_ids_number_components_as_networkx(case, through_scipy):
    # the NumPy hooking, and the SciPy fallback it keeps for graphs that do not settle
    import networkx as nx

    from gpueval.metrics import run_length as rl

    n, pairs = case
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(pairs)
    want = np.empty(n, np.int64)
    for k, nodes in enumerate(nx.connected_components(g)):
        want[list(nodes)] = k
    rounds = rl._MAX_HOOK_ROUNDS
    try:
        rl._MAX_HOOK_ROUNDS = 0 if through_scipy else rounds
        got = rl.component_ids(n, np.array(pairs, np.int64).reshape(-1, 2))
    finally:
        rl._MAX_HOOK_ROUNDS = rounds
    assert got.tolist() == want.tolist()


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 12), st.integers(-3, 12)), max_size=40),
       st.lists(st.integers(-3, 12), max_size=5), st.booleans())
def test_skeleton_edges_in_networkx_view_order(pairs, lone, reorder):
    # the skeleton's edges, read from the graph's adjacency, come in the order (and with
    # the self-loops) networkx's edge view yields; also where _adj's order is not _node's
    import networkx as nx

    from gpueval.io.skeleton import skeleton_from_graph

    g = nx.Graph()
    g.add_nodes_from((n, {"position": np.array([n, 0.0, 1.0])}) for n in lone)
    g.add_edges_from(pairs)
    for n in g.nodes:
        g.nodes[n]["position"] = np.array([n, 0.0, 1.0])
    if reorder:  # a hand-made pickle may list _adj in another order than _node
        g._adj = dict(reversed(list(g._adj.items())))  # noqa: SLF001
    want = [e for e in g.edges]
    skel = skeleton_from_graph(g)
    assert [tuple(e) for e in skel.edges.tolist()] == want
    assert skel.node_ids.tolist() == list(g._node)  # noqa: SLF001


def test_threaded_gather_extrema_lie_in_any_chunk(tmp_path):
    # the scan's max and min come from whichever stored chunk holds them (first, middle,
    # last), as a whole-block max would find them
    from gpueval.io.arrays import _Hdf5Reader
    from gpueval.kernels.gather import BlockWindow, gather

    for where in [(0, 0, 0), (5, 6, 3), (11, 9, 5)]:
        vol = np.zeros((12, 10, 8), np.int32)
        vol[where] = 99
        vol[tuple(n - 1 - w for n, w in zip(vol.shape, where, strict=True))] = -4
        path = tmp_path / f"v{where[0]}.h5"
        _h5_volume(path, vol.copy(), (4, 5, 3))
        window = BlockWindow.whole(_Hdf5Reader(str(path), "seg"), (8, 10, 6))
        got = gather(window, np.array([list(where)]), with_extrema=True)
        assert (got.max, got.min, got.values.tolist()) == (99, -4, [99])


def test_xpress_package_imports_no_hdf5_before_the_skeleton_is_read():
    # the skeleton (a Python open) is the first byte a score reads; h5py (~0.03 s) is
    # imported when the submission is opened, after it
    probe = ("import sys, gpueval.challenges.xpress, gpueval.cli, gpueval.api\n"
             "print(sorted(m for m in ('h5py', 'dask', 'numba', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr[-500:]
