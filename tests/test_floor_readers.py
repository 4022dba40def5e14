"""The fast readers of issue #19 give exactly what the safe ones give.

HDF5 volumes in h5py's small default chunks are read through a chunk index listed once per
process (``io.arrays._ChunkIndex``) with ``os.pread`` outside h5py's lock; blocks must equal
h5py's own reads for every filter pipeline gpueval decodes, with unwritten chunks (fill
value), and the index must step aside (per-chunk lookups) where it cannot vouch for an entry.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from gpueval.io import arrays

PIPELINES = {
    "lzf": dict(compression="lzf"),
    "gzip-shuffle-fletcher": dict(compression="gzip", shuffle=True, fletcher32=True),
    "gzip": dict(compression="gzip", compression_opts=1),
}
KEYS = [(slice(None),) * 3, (slice(3, 29), slice(5, 44), slice(0, 60)), (4, slice(None), 7),
        (slice(0, 40, 3), slice(10, 11), slice(None))]


def _volume(path, pipeline: str, chunks=(7, 11, 13), partial: bool = True) -> np.ndarray:
    rng = np.random.default_rng(len(pipeline))
    data = rng.integers(0, 2**40, (40, 50, 60), dtype=np.uint64)
    with h5py.File(path, "w") as f:
        d = f.create_dataset("seg", shape=data.shape, dtype=data.dtype, chunks=chunks,
                             fillvalue=9, **PIPELINES[pipeline])
        if partial:  # leave some chunks unwritten: they read as the fill value
            d[:20] = data[:20]
            d[27:, 20:] = data[27:, 20:]
            data[20:27] = 9
            data[27:, :20] = 9
        else:
            d[...] = data
    return data


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_indexed_reads_equal_h5py(tmp_path, pipeline):
    path = tmp_path / "v.h5"
    data = _volume(path, pipeline)
    reader = arrays._Hdf5Reader(str(path), "seg")
    assert reader.chunk_index(reader._array()) is not None  # the index path is the one tested
    for key in KEYS:
        np.testing.assert_array_equal(reader[key], data[key])


def test_default_h5py_chunks_through_open_volume(tmp_path):
    path = tmp_path / "v.h5"
    data = np.arange(32 * 40 * 48, dtype=np.uint64).reshape(32, 40, 48) * 7919
    with h5py.File(path, "w") as f:
        f.create_dataset("seg", data=data, chunks=True, compression="lzf")
    vol = arrays.open_volume(path, "seg")
    np.testing.assert_array_equal(vol.data.compute(scheduler="threads"), data)


def test_index_steps_aside_where_it_cannot_vouch(tmp_path, monkeypatch):
    path = tmp_path / "v.h5"
    data = _volume(path, "lzf")
    real = arrays.os.path.getsize(path)
    # a chunk that would lie past the end of the file: no index, h5py's lookups read it
    monkeypatch.setattr(arrays.os.path, "getsize", lambda p: real // 2)
    reader = arrays._Hdf5Reader(str(path), "seg")
    assert reader.chunk_index(reader._array()) is None
    np.testing.assert_array_equal(reader[KEYS[1]], data[KEYS[1]])
    monkeypatch.undo()
    # too many chunks for an index: per-chunk lookups too
    monkeypatch.setattr(arrays._ChunkIndex, "MAX_CHUNKS", 10)
    reader = arrays._Hdf5Reader(str(path), "seg")
    assert reader.chunk_index(reader._array()) is None
    np.testing.assert_array_equal(reader[KEYS[0]], data)


def test_index_is_not_pickled_and_rebuilds(tmp_path):
    import pickle

    path = tmp_path / "v.h5"
    data = _volume(path, "gzip", partial=False)
    reader = arrays._Hdf5Reader(str(path), "seg")
    reader[KEYS[2]]
    assert reader._index is not None
    copy = pickle.loads(pickle.dumps(reader))
    assert not hasattr(copy, "_index")
    np.testing.assert_array_equal(copy[KEYS[1]], data[KEYS[1]])


def test_corrupt_chunk_is_a_rejection_naming_it(tmp_path):
    from gpueval.errors import Rejected

    path = tmp_path / "v.h5"
    _volume(path, "lzf", partial=False)
    reader = arrays._Hdf5Reader(str(path), "seg")
    index = reader.chunk_index(reader._array())
    start = int(index.offset[0])
    with open(path, "r+b") as f:  # garble the first chunk's LZF stream
        f.seek(start)
        f.write(b"\xff" * 64)
    with pytest.raises(Rejected, match=r"chunk at \(0, 0, 0\)"):
        reader[(slice(0, 7), slice(0, 11), slice(0, 13))]


# -- the fast unpickler's afterwards-measure: inlined cases weigh what the recursion weighs ---

def _reference_weight(roots, max_weight: int, max_depth: int) -> int:
    """The measure before its inner loop was inlined (one recursive call per non-number)."""
    import itertools

    from gpueval.io.safe_pickle import _ATOMS, _TooLarge

    info: dict[int, tuple[int, int]] = {}
    on_path: set[int] = set()

    def walk(x, level):
        t = type(x)
        if t in _ATOMS:
            return 1, 0
        if t is str or t is bytes or t is bytearray:
            return 1 + len(x) // 8, 0
        if id(x) in info:
            return info[id(x)]
        if id(x) in on_path:
            return 1, 0
        if level > max_depth:
            raise _TooLarge
        if isinstance(x, dict):
            items = itertools.chain(x.keys(), x.values())
        elif isinstance(x, list | tuple | set | frozenset):
            items = x
        elif isinstance(x, np.ndarray):
            if not x.dtype.hasobject:
                return 1 + int(x.size), 1
            items = x.ravel().tolist()
        elif isinstance(x, np.generic | np.dtype | type):
            return 1, 0
        elif hasattr(x, "__dict__"):  # an instance (a networkx view) weighs its attributes
            items = list(vars(x).values())
        else:
            return 1, 0
        on_path.add(id(x))
        weight, depth = 1, 0
        for item in items:
            w, d = walk(item, level + 1)
            weight += w
            depth = max(depth, d + 1)
        if weight > max_weight:
            raise _TooLarge
        on_path.discard(id(x))
        info[id(x)] = (weight, depth)
        return weight, depth

    total = 0
    for root in roots:
        total += walk(root, 0)[0]
        if total > max_weight:
            raise _TooLarge
    return total


class _View:
    """An object with attributes, as a networkx view holding its graph."""

    def __init__(self, of):
        self.of = of


def _with_cycle(x):
    """A list holding ``x``, a view of itself and itself (cut by the walk: weighs 1)."""
    box = [x]
    box.append(_View(box))
    box.append(box)
    return box


def _containers(x, seen=None) -> list:
    """Every container and instance reachable from ``x``, parents first (as a C
    unpickler's memo lists dicts; the measure's roots are the result and the memo)."""
    seen = {} if seen is None else seen
    if id(x) in seen or not isinstance(x, list | tuple | dict | _View):
        return []
    seen[id(x)] = x
    out = [x]
    entries = [*x.keys(), *x.values()] if isinstance(x, dict) else \
        list(vars(x).values()) if isinstance(x, _View) else list(x)
    for e in entries:
        out += _containers(e, seen)
    return out


def _verdict(measure, roots, max_weight, max_depth):
    from gpueval.io.safe_pickle import _TooLarge

    try:
        return measure(roots, max_weight, max_depth)
    except _TooLarge:
        return "too large"


def test_inlined_weight_equals_the_recursive_measure():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from gpueval.io.safe_pickle import _logical_weight

    leaves = st.one_of(st.integers(-5, 5), st.floats(allow_nan=False), st.none(),
                       st.text(max_size=20), st.binary(max_size=20).map(bytearray),
                       st.just({}), st.just([]), st.just(()),
                       st.integers(0, 5).map(lambda n: np.arange(n, dtype=np.float64)),
                       st.just(np.dtype("f8")), st.just(np.array([None, 1], object)))
    flat_dicts = st.one_of(  # what a networkx graph holds per node: attributes, adjacency
        st.builds(lambda a: {"position": a}, st.integers(0, 4).map(np.ones)),
        st.dictionaries(st.integers(0, 9), st.just({}), min_size=1, max_size=3),
        st.builds(lambda b: (b, np.dtype("f8"), (3,), "C"),  # protocol 5's array arguments
                  st.binary(max_size=24).map(bytearray)))
    trees = st.recursive(st.one_of(leaves, flat_dicts), lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.integers(0, 9), inner, max_size=3),
        inner.map(lambda x: [x, x, [x]]),  # shared references
        inner.map(_View), inner.map(_with_cycle)),  # instances, cycles
        max_leaves=12)

    @settings(max_examples=400, deadline=None)
    @given(trees, st.integers(0, 6), st.integers(1, 400), st.booleans())
    def check(tree, max_depth, max_weight, with_memo):
        # with_memo: the roots of the fast path, the result then every container in it
        roots = [tree, *(_containers(tree)[1:] if with_memo else
                         tree if isinstance(tree, list) else [])]
        # far from the limits both weigh the same
        assert _logical_weight(roots, 10**9, 100) == _reference_weight(roots, 10**9, 100)
        # near them the inlined measure is never looser; it may be stricter where a shared
        # empty container is met shallow first and deep later (the recursion's memo skips
        # its depth check): that pickle then goes to the exact unpickler, which decides
        new = _verdict(_logical_weight, roots, max_weight, max_depth)
        assert new in (_verdict(_reference_weight, roots, max_weight, max_depth), "too large")

    check()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_weight_of_an_unpickled_graph_equals_the_recursive_measure(protocol):
    # what the fast path measures in practice: a networkx graph (node attributes, shared
    # edge dicts, cached views of the graph: a cycle through instances) and the C
    # unpickler's memo; within the limits and at depth limits around its real depth
    import gc
    import io
    import pickle

    import networkx as nx

    from gpueval.io import safe_pickle
    from gpueval.io.skeleton import GRAPH_GLOBALS

    g = nx.Graph()
    # 100 nodes: _node and _adj take the measure's path for big dicts keyed by numbers
    g.add_nodes_from((i, {"position": np.array([i, 2.0, 3.0])}) for i in range(100))
    g.add_edges_from((i, (i * 7) % 100) for i in range(100))
    _ = g.adj, g.nodes, g.edges, g.degree  # networkx 3 caches these views in the instance
    unpickler = safe_pickle._FastRestricted(io.BytesIO(pickle.dumps(g, protocol=protocol)),
                                            safe_pickle.PLAIN | GRAPH_GLOBALS, 10**9)
    obj = unpickler.load()
    roots = [obj, *unpickler.memo.copy().values()]
    want = _reference_weight(roots, 10**9, 100)
    assert safe_pickle._logical_weight(roots, 10**9, 100) == want
    for max_depth in range(1, 8):
        for max_weight in (want - 1, want):
            new = _verdict(safe_pickle._logical_weight, roots, max_weight, max_depth)
            assert new in (_verdict(_reference_weight, roots, max_weight, max_depth),
                           "too large")
    was = gc.isenabled()
    assert safe_pickle.restricted_load(pickle.dumps(g, protocol=protocol), GRAPH_GLOBALS
                                       ).number_of_edges() == g.number_of_edges()
    assert gc.isenabled() == was  # the collector's pause ends with the load


def test_node_contingency_equals_the_numba_kernel():
    # XPRESS's node table counts pairs in NumPy (Numba's first call costs ~0.4 s per process)
    import sys

    from hypothesis import given, settings
    from hypothesis import strategies as st

    import gpueval.challenges.xpress.score  # noqa: F401 - the module, not the package's score
    from gpueval.kernels.stats import contingency

    score_module = sys.modules["gpueval.challenges.xpress.score"]
    ids = st.lists(st.tuples(st.integers(0, 6), st.sampled_from([0, 1, 5, 2**53 + 1, 2**64 - 1])),
                   max_size=60)

    @settings(max_examples=200, deadline=None)
    @given(ids)
    def check(pairs):
        a = np.array([p[0] for p in pairs], np.uint64)
        b = np.array([p[1] for p in pairs], np.uint64)
        got, want = score_module._node_contingency(a, b), contingency(a, b)
        for x, y in ((got.ids_a, want.ids_a), (got.ids_b, want.ids_b),
                     (got.counts, want.counts)):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)

    check()


def test_skeleton_load_leaves_no_cyclic_garbage(tmp_path):
    # the unpickled graph and the fast path's measuring table are freed by reference counting
    # when the load returns (a cycle would keep ~2 KB per node until a collection, raising
    # XPRESS's peak memory by the graph's size during the gather)
    import gc
    import pickle

    import networkx as nx

    from gpueval.io.skeleton import load_skeleton

    g = nx.Graph()
    g.add_nodes_from((i, {"position": np.array([i, 2.0, 3.0])}) for i in range(500))
    g.add_edges_from((i, i + 1) for i in range(499))
    path = tmp_path / "skel.pkl"
    path.write_bytes(pickle.dumps(g, protocol=5))
    load_skeleton(path)  # imports and first-use caches
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        skel = load_skeleton(path)
        gc.collect()
        garbage = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert skel.n_nodes == 500
    assert "Graph" not in garbage and garbage.count("dict") < 50, garbage[:20]


def test_xpress_cli_loads_the_truth_pickle_on_the_fast_path(tmp_path):
    # the C unpickler's fast path runs only while no other Python thread does (its address-
    # space cap is process-wide); a thread started before the truth is read (a progress
    # bar's monitor, a pool) silently sends every skeleton to the exact unpickler, ~5x slower
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from gpueval.bench.startup import _xpress_files

    argv, _ = _xpress_files(tmp_path)
    code = ("import json, sys\nfrom gpueval.io import safe_pickle\nseen = []\n"
            "real = safe_pickle._fast_load\n"
            "def spy(*a, **k):\n    out = real(*a, **k)\n    seen.append(out[0])\n"
            "    return out\n"
            "safe_pickle._fast_load = spy\nfrom gpueval.cli import main\n"
            f"code = main({[*argv, '--quiet', '--json', str(tmp_path / 'r.json')]!r})\n"
            "print(json.dumps([code, seen]))")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(root)}, cwd=root, timeout=120)
    code, seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert code == 0 and seen == [True], out.stderr[-500:]
