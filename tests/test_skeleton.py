"""Skeleton files: the official pickled networkx graph (restricted) and gpueval's npz."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import h5py
import networkx as nx
import numpy as np
import pytest

from gpueval.api import score
from gpueval.errors import TruthError
from gpueval.io.skeleton import (
    Skeleton,
    convert_skeleton,
    load_skeleton,
    save_skeleton_npz,
    skeleton_from_graph,
)

FIX = Path(__file__).parent / "fixtures" / "xpress"
CASES = json.loads((FIX / "scores.json").read_text())["cases"]


def _graph(ids, pos, edges, *, numpy_values=False) -> nx.Graph:
    g = nx.Graph()
    for i, p in zip(ids, pos, strict=True):
        node = np.int64(i) if numpy_values else int(i)
        g.add_node(node, position=np.asarray(p) if numpy_values else tuple(float(v) for v in p))
    g.add_edges_from((int(u), int(v)) for u, v in edges)
    return g


def test_npz_roundtrip(tmp_path):
    s = Skeleton(np.array([7, 3, 5]), np.array([[1.0, 2, 3], [4, 5, 6], [7, 8, 9.5]]),
                 np.array([[7, 3], [3, 5]]))
    save_skeleton_npz(s, tmp_path / "s.npz")
    t = load_skeleton(tmp_path / "s.npz")
    np.testing.assert_array_equal(t.node_ids, [7, 3, 5])  # order kept, not sorted
    np.testing.assert_array_equal(t.positions, s.positions)
    np.testing.assert_array_equal(t.edge_index(), [[0, 1], [1, 2]])


def test_duplicate_edges_follow_graph_semantics():
    s = skeleton_from_graph(_graph([1, 2], [[0, 0, 0], [1, 1, 1]], [[1, 2]]))
    assert len(s.edges) == 1
    from gpueval.io.skeleton import _checked

    t = _checked(np.array([1, 2]), np.zeros((2, 3)), np.array([[1, 2], [2, 1], [1, 2]]), "x")
    assert t.edges.tolist() == [[1, 2]]


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("numpy_values", [False, True])
def test_official_pickle_loads_in_graph_order(tmp_path, protocol, numpy_values):
    ids = [40, 2, 17, 5]
    pos = [[1.5, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]]
    g = _graph(ids, pos, [[40, 2], [17, 5]], numpy_values=numpy_values)
    p = tmp_path / "XPRESS_validation_skels.npz"   # the official name, pickle content
    p.write_bytes(pickle.dumps(g, protocol=protocol))
    s = load_skeleton(p)
    np.testing.assert_array_equal(s.node_ids, ids)
    np.testing.assert_allclose(s.positions, pos)
    assert sorted(map(tuple, np.sort(s.edges, axis=1).tolist())) == [(2, 40), (5, 17)]
    out = convert_skeleton(p, tmp_path / "safe.npz")
    np.testing.assert_array_equal(load_skeleton(tmp_path / "safe.npz").node_ids, ids)
    np.testing.assert_array_equal(out.node_ids, ids)


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused(tmp_path):
    marker = tmp_path / "owned"
    p = tmp_path / "skels.npz"
    p.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(TruthError, match="not allowed"):
        load_skeleton(p)
    assert not marker.exists()
    # a graph whose attribute smuggles a callable is refused too
    g = nx.Graph()
    g.add_node(1, position=(0.0, 0.0, 0.0), extra=_Exploit(marker))
    p.write_bytes(pickle.dumps(g))
    with pytest.raises(TruthError, match="not allowed"):
        load_skeleton(p)
    assert not marker.exists()


def test_other_graph_classes_refused(tmp_path):
    p = tmp_path / "skels.npz"
    p.write_bytes(pickle.dumps(nx.DiGraph([(1, 2)])))
    with pytest.raises(TruthError):
        load_skeleton(p)


@pytest.mark.parametrize("graph, match", [
    (nx.Graph([(1, 2)]), "position"),
    (nx.Graph([("a", "b")]), "integer"),
    (_graph([1], [[math.nan, 0, 0]], []), "finite"),
])
def test_bad_graphs_are_truth_errors(tmp_path, graph, match):
    p = tmp_path / "skels.npz"
    p.write_bytes(pickle.dumps(graph))
    with pytest.raises(TruthError, match=match):
        load_skeleton(p)


def test_edge_to_unknown_node(tmp_path):
    p = tmp_path / "s.npz"
    np.savez(p, node_ids=np.array([1, 2]), positions=np.zeros((2, 3)),
             edges=np.array([[1, 9]]))
    with pytest.raises(TruthError, match="unknown node"):
        load_skeleton(p)


@pytest.mark.parametrize("name", ["order_first_B", "roi_crop"])
def test_official_form_scores_as_fixture(tmp_path, name):
    """The fixture's graph pickled as the official file gives the official scores."""
    with np.load(FIX / f"{name}.npz", allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    g = _graph(d["node_ids"], d["node_position_xyz"], d["edges"], numpy_values=True)
    skel = tmp_path / "XPRESS_test_skels.npz"
    skel.write_bytes(pickle.dumps(g))
    sub = tmp_path / "submission.h5"
    with h5py.File(sub, "w") as f:
        ds = f.create_dataset("submission", data=d["segmentation"])
        ds.attrs["resolution"] = d["voxel_size"]
        ds.attrs["offset"] = d["offset"]
    ov = {"roi": {"begin": d["roi_begin"].tolist(), "shape": d["roi_shape"].tolist()}} \
        if d["roi_begin"].size else {"roi": "none"}
    r = score("xpress", skel, sub, overrides=ov, device="cpu")
    for key in ("erl_norm", "rand_split", "rand_merge", "xpress_erl_rand", "n_neurons"):
        assert abs(r.metrics[key] - CASES[name][key]) <= 1e-6, key


def test_graph_with_cached_views_loads(tmp_path):
    """networkx 3 pickles the views a script touched (adj, nodes, edges, degree)."""
    g = _graph([4, 8, 15], [[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[4, 8], [8, 15]])
    _ = g.adj, g.nodes, g.edges, g.degree, g.nodes(data=True), g.edges(data=True)
    p = tmp_path / "skels.npz"
    p.write_bytes(pickle.dumps(g))
    s = load_skeleton(p)
    np.testing.assert_array_equal(s.node_ids, [4, 8, 15])
    assert len(s.edges) == 2
