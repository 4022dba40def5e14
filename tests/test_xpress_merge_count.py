"""XPRESS merge count (xpress.md §4) equals the official procedure, fixtures and random graphs.

The oracle below runs §4 literally: a ``networkx.Graph`` built in graph order, the real
``graph.subgraph`` view, networkx **3.0**'s set-based connected components (the pinned
version; the installed networkx builds its sets differently), the materialised
``itertools.combinations`` whose sets are depleted by ``.pop()``, the closest pair of every
pair of final clusters and one global set of tuples. ``merge_count`` shares none of that code
(it skips the distance search and replays the views with plain dicts and sets).
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xpress_cases import fixture

from gpueval.metrics.run_length import component_ids, merge_count

FIX = Path(__file__).parent / "fixtures" / "xpress"
CASES = json.loads((FIX / "scores.json").read_text())["cases"]
WITH_LOOKUPS = [c for c in CASES if "merge_count" in CASES[c]]


def _nx30_connected_components(g):
    """networkx 3.0 ``connected_components``: level-set BFS (spec §4 step 2a, pinned 3.0)."""
    done = set()
    for v in g:
        if v not in done:
            seen = set()
            nextlevel = {v}
            while nextlevel:
                thislevel = nextlevel
                nextlevel = set()
                for w in thislevel:
                    if w not in seen:
                        seen.add(w)
                        nextlevel.update(g.adj[w])
            done.update(seen)
            yield seen


def _official_merge_count(node_ids, positions, skeleton_ids, segment_ids, edges) -> int:
    """§4 step by step on a networkx graph (positions: zyx, nm)."""
    graph = nx.Graph()
    for n, p, k, s in zip(node_ids, positions, skeleton_ids, segment_ids, strict=True):
        graph.add_node(n, zyx_coord=tuple(p), skeleton_id=k, segment_id=s)
    graph.add_edges_from((node_ids[a], node_ids[b]) for a, b in edges)
    by_segment: dict = {}
    for n, data in graph.nodes(data=True):
        by_segment.setdefault(data["segment_id"], set()).add(n)
    found = set()
    for nodes in by_segment.values():
        sub = graph.subgraph(nodes)
        clusters = _nx30_connected_components(sub)
        seg_graph = nx.Graph()
        seg_graph.add_nodes_from(sub.nodes)
        seg_graph.add_edges_from(sub.edges)
        for c1, c2 in itertools.combinations(clusters, 2):
            try:
                n1 = c1.pop()
                n2 = c2.pop()
            except KeyError:
                continue
            if graph.nodes[n1]["skeleton_id"] == graph.nodes[n2]["skeleton_id"]:
                seg_graph.add_edge(n1, n2)
        final = list(nx.connected_components(seg_graph))  # a partition: any version will do
        if len(final) <= 1:
            continue
        for k1, k2 in itertools.combinations(final, 2):
            best, best_d = None, math.inf
            for n1, n2 in itertools.product(k1, k2):
                d = math.dist(graph.nodes[n1]["zyx_coord"], graph.nodes[n2]["zyx_coord"])
                if d < best_d:
                    best, best_d = (n1, n2), d
            found.add(best)
    return len(found)


def _in_roi(name):
    """The official §2 node table of a fixture: node ids, skeleton/segment ids, edges."""
    z = fixture(name)
    inside = z["official_node_in_roi"]
    ids = z["node_ids"][inside]
    where = {int(v): i for i, v in enumerate(ids)}
    edges = np.array([(where[a], where[b]) for a, b in z["edges"].tolist()
                      if a in where and b in where], np.int64).reshape(-1, 2)
    return (ids, z["node_position_xyz"][inside][:, ::-1], z["official_node_skeleton_id"][inside],
            z["official_node_seg_label"][inside], edges)


@pytest.mark.parametrize("name", WITH_LOOKUPS)
def test_every_fixture_matches_the_official_count(name):
    ids, pos, skel, seg, edges = _in_roi(name)
    want = CASES[name]["merge_count"]
    assert merge_count(skel, seg, edges, ids) == want
    # the oracle agrees with the official file too (it is a faithful §4)
    assert _official_merge_count(ids.tolist(), pos, skel.tolist(), seg.tolist(),
                                 edges.tolist()) == want


def test_voxel_faces_is_not_one_per_skeleton_pair():
    # the case the spec names: pieces of one skeleton stay separate clusters, official 3
    ids, _, skel, seg, edges = _in_roi("voxel_faces")
    assert merge_count(skel, seg, edges, ids) == 3
    pairs = 0
    for s in np.unique(seg):
        k = len(np.unique(skel[seg == s]))
        pairs += k * (k - 1) // 2
    assert pairs != 3  # the count a "C(k, 2) per segment" reading would give differs


def test_hand_derived_pops():
    # one segment, no edges, node ids 0..4 (a small-int set pops in increasing order).
    # All one skeleton: clusters {0}..{4}. Pair ({0},{1}) pops 0 and 1: same skeleton,
    # joined, and both sets are now empty, so every later pair of {0} or {1} is skipped;
    # ({2},{3}) joins 2 and 3; {4} is popped by nobody. Final clusters {0,1}, {2,3}, {4}:
    # C(3, 2) = 3 pairs although only one skeleton is there.
    assert merge_count(np.zeros(5, np.int64), np.full(5, 3, np.uint64)) == 3
    # two skeletons alternating: ({0},{1}) pops 0 (k0) and 1 (k1): no join; ({2},{3}): no
    # join; ({4},·) has no partner left. Five final clusters: C(5, 2) = 10.
    assert merge_count(np.array([0, 1, 0, 1, 0]), np.full(5, 3, np.uint64)) == 10
    # the same nodes in two segments are independent: segment 1 = {0, 1} (k0, k0) joins,
    # segment 2 = {2, 3} (k0, k1) does not: 0 + 1
    assert merge_count(np.array([0, 0, 0, 1]), np.array([1, 1, 2, 2], np.uint64)) == 1
    # an edge makes one cluster of 0-1 ({0, 1}); ({0,1},{2}) pops 0 from it and 2 (k0): joined
    assert merge_count(np.zeros(3, np.int64), np.full(3, 4, np.uint64),
                       np.array([[0, 1]])) == 0
    assert merge_count(np.zeros(0, np.int64), np.zeros(0, np.uint64)) == 0


def test_node_ids_change_the_count():
    # Segment 3 holds nodes 352 (skeleton 0), 608 (skeleton 3) and 544 (skeleton 0), no edge
    # between them (both edges go through node 128 of segment 2). 3 nodes < half of 7, so the
    # subgraph iterates its filter set: in an 8-slot table 352 takes slot 0; 608 and 544 also
    # hash to 0 and CPython's perturbed probe sends 608 to (1 + 608 >> 5) & 7 = 4 and 544 to
    # (1 + 544 >> 5) & 7 = 2. Clusters {352}, {544}, {608}: the first pair pops 352 and 544,
    # same skeleton, joined; the rest are skipped: 2 clusters, 1 pair. Segments 2 and 1 hold
    # two skeletons each: 1 pair each. Total 3. With ids 0..6 the same nodes are 0, 4, 5 in
    # increasing order: 0 (k0) meets 4 (k3), no join, 3 pairs: total 5.
    ids = np.array([352, 224, 32, 128, 608, 544, 576])
    edges = np.array([[3, 0], [5, 3]])
    skel = np.array([0, 1, 2, 0, 3, 0, 4])
    seg = np.array([3, 2, 1, 2, 3, 3, 1], np.uint64)
    assert merge_count(skel, seg, edges, ids) == 3
    assert merge_count(skel, seg, edges) == 5
    pos = np.zeros((7, 3))
    assert _official_merge_count(ids.tolist(), pos, skel.tolist(), seg.tolist(),
                                 edges.tolist()) == 3


@st.composite
def node_tables(draw):
    n = draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # ids that collide in small hash tables (multiples of 8/32), plus large and negative ones
    step = draw(st.sampled_from([1, 8, 32, 1024, 100003]))
    ids = rng.permutation(n * 3)[:n] * step + draw(st.sampled_from([0, 7, 100000, -50]))
    n_edges = draw(st.integers(0, 2 * n))
    edges = rng.integers(0, n, (n_edges, 2))
    n_seg = draw(st.integers(1, 4))
    seg = rng.integers(1, n_seg + 1, n).astype(np.uint64)
    # the §2 graph: skeleton ids are its connected components in networkx order
    skel = component_ids(n, edges)
    pos = rng.random((n, 3)) * 1000
    return ids, pos, skel, seg, edges


@settings(max_examples=150, deadline=None)
@given(node_tables())
def test_random_graphs_match_the_literal_procedure(table):
    ids, pos, skel, seg, edges = table
    want = _official_merge_count(ids.tolist(), pos, skel.tolist(), seg.tolist(),
                                 edges.tolist())
    assert merge_count(skel, seg, edges, ids) == want


def test_bad_lengths_are_errors():
    with pytest.raises(ValueError):
        merge_count(np.zeros(3, np.int64), np.zeros(2, np.uint64))
    with pytest.raises(ValueError):
        merge_count(np.zeros(2, np.int64), np.zeros(2, np.uint64), None, np.arange(3))


def test_cost_is_linear_in_the_clusters():
    # 30 000 isolated nodes of distinct skeletons in one segment: 30 000 clusters, ~4.5e8
    # cluster pairs for the official loop. Each pair (i, i+1) empties both sets and nothing
    # joins (distinct skeletons), so f = n and the count is C(n, 2); the loop cuts every
    # emptied cluster short, so this takes well under a second instead of hours.
    n = 30_000
    assert merge_count(np.arange(n), np.full(n, 1, np.uint64)) == n * (n - 1) // 2
