"""Expected run length (ERL) and its XPRESS normalisation, on a node table (no voxels).

Inputs are per node (graph iteration order): the skeleton id ``k`` (connected-component index,
:func:`component_ids`) and the segment id ``s`` found at the node's voxel (after the fresh-id
relabelling of background nodes); per edge: the two node positions and the edge length.
Definitions follow ``shared/specs/xpress.md`` §3 (funlib.evaluate's ``expected_run_length``):

* ``L_k`` = summed edge length of skeleton ``k``; ``T = Σ L_k`` over skeletons with an edge.
* A segment is *merging* when the nodes carrying it (isolated nodes included) belong to ≥ 2
  skeletons. Under ``float64_merge_keys=True`` (compat ``official``) merging is decided on
  ``float64(s)`` — ids ≥ 2⁵³ that round to the same double are one key — and a segment is then
  looked up by its exact id, which finds a key only when the id is exactly representable as a
  double (the official lookup hashes the exact integer; fixture ``huge_ids``).
* An edge is *correct* when both ends carry the same non-merging segment; ``c_{k,s}`` is the
  summed length of the correct edges of skeleton ``k`` in segment ``s``.
* ``ERL = Σ_k (L_k / T) · Σ_s c_{k,s}² / L_k``; a skeleton with ``L_k = 0`` and a correct edge
  makes it NaN (0/0), as the official does.
* ``erl_norm = ERL / mean(L_k | L_k > 0)`` (not bounded by 1).

Arithmetic follows the official one (§7): coordinates and edge lengths in float32, ``L_k`` and
the ERL sum in float64, each ``c_{k,s}`` a float32 ``np.sum`` (NumPy's pairwise order) of the
piece's edges in edge order. A float64 implementation differs by up to ~1.4e-6 relative on raw
ERL for tiny skeletons; this one reproduces the official values to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class RunLength:
    """ERL and its parts; arrays are indexed by skeleton id."""

    erl: float
    erl_norm: float
    total_length: float
    mean_length: float
    skeleton_lengths: np.ndarray      # L_k (0 for skeletons without edges)
    skeleton_n_edges: np.ndarray
    contributions: np.ndarray         # (L_k / T) · Σ_s c_{k,s}² / L_k, NaN where 0/0
    merging_nodes: np.ndarray         # bool per node: its segment counts as merging


def component_ids(n_nodes: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component index of every node, numbered as ``networkx.connected_components``.

    networkx yields components in the order of their first node in graph iteration order, so
    the component of node 0 is 0, the component of the next node not yet seen is 1, and so on.
    Each node is labelled with the smallest node of its component by min-label hooking and
    pointer jumping in NumPy (a few vectorised rounds, no Python loop per node; SciPy's
    ``csgraph`` costs an XPRESS process ~0.15 s of import for ~10⁵ edges); the smallest node
    is the component's first, so ranking the labels numbers the components in that order.

    >>> component_ids(5, np.array([[3, 4], [1, 2]])).tolist()
    [0, 1, 1, 2, 2]
    """
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    if n_nodes == 0:
        return np.empty(0, np.int64)
    label = np.arange(n_nodes, dtype=np.int64)
    u, v = edges[:, 0], edges[:, 1]
    for _ in range(_MAX_HOOK_ROUNDS):
        lu, lv = label[u], label[v]
        differ = lu != lv
        if not differ.any():
            break
        lu, lv = lu[differ], lv[differ]
        low = np.minimum(lu, lv)
        # hook each root met by an edge under the smaller label at its other end
        np.minimum.at(label, np.maximum(lu, lv), low)
        while True:  # pointer jumping: every node straight to its root
            up = label[label]
            if (up == label).all():
                break
            label = up
    else:  # a graph the rounds did not settle (none seen: ~log2(nodes) rounds): SciPy
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        g = coo_matrix((np.ones(len(edges), np.int8), (u, v)), shape=(n_nodes, n_nodes))
        _, scipy_labels = connected_components(g, directed=False)
        _, first = np.unique(scipy_labels, return_index=True)
        label = first[scipy_labels]  # the smallest node of each component, as above
    _, rank = np.unique(label, return_inverse=True)
    return rank.reshape(-1).astype(np.int64)


#: rounds of hooking before :func:`component_ids` hands a graph to SciPy (paths of 2·10⁵
#: nodes in random or bit-reversed order settle in 11-17)
_MAX_HOOK_ROUNDS = 64


def edge_lengths(positions: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Euclidean length of every edge in float32 (coordinates cast to float32 first, as the
    official ``np.linalg.norm`` of float32 vectors), ``edges`` as node positions."""
    p = np.asarray(positions, np.float32)
    d = p[edges[:, 0]] - p[edges[:, 1]]
    sq = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]
    return np.sqrt(sq, dtype=np.float32)


def merging_segments(skeleton_ids: np.ndarray, segment_ids: np.ndarray, *,
                     float64_merge_keys: bool = False) -> np.ndarray:
    """Bool per node: the node's segment is *merging* (holds nodes of ≥ 2 skeletons)."""
    seg = np.asarray(segment_ids, np.uint64)
    k = np.asarray(skeleton_ids, np.int64)
    if not len(seg):
        return np.zeros(0, bool)
    key = seg.astype(np.float64) if float64_merge_keys else seg
    order = np.lexsort((k, key))
    ks, keys = k[order], key[order]
    new_key = np.concatenate([[True], keys[1:] != keys[:-1]])
    new_pair = new_key | np.concatenate([[True], ks[1:] != ks[:-1]])
    key_group = np.cumsum(new_key) - 1
    n_skel = np.bincount(key_group, weights=new_pair).astype(np.int64)
    merging_sorted = n_skel[key_group] >= 2
    merging = np.empty(len(seg), bool)
    merging[order] = merging_sorted
    if float64_merge_keys:
        # the official looks the exact id up among double keys: only ids a double represents
        # exactly can be found (hash(int) == hash(float) only for equal integral values)
        merging &= exactly_representable(seg)
    return merging


def exactly_representable(ids: np.ndarray) -> np.ndarray:
    """Bool per uint64 id: the id equals its float64 rounding."""
    ids = np.asarray(ids, np.uint64)
    f = ids.astype(np.float64)
    ok = f < 2.0**64
    back = np.zeros(len(ids), np.uint64)
    back[ok] = f[ok].astype(np.uint64)
    return ok & (back == ids)


def expected_run_length(
    skeleton_ids: np.ndarray,
    segment_ids: np.ndarray,
    edges: np.ndarray,
    lengths: np.ndarray,
    *,
    n_skeletons: int | None = None,
    float64_merge_keys: bool = False,
) -> RunLength:
    """ERL and normalised ERL of a node table (see the module docstring).

    Parameters
    ----------
    skeleton_ids : int (N,) component index per node.
    segment_ids : uint64 (N,) segment per node (no zeros after the fresh-id relabelling).
    edges : int (E, 2) node positions of the edges (both ends in one skeleton).
    lengths : float (E,) edge lengths.
    n_skeletons : number of skeletons (default ``max(skeleton_ids) + 1``).
    float64_merge_keys : reproduce the official float64 merge detection (ids ≥ 2⁵³).
    """
    k = np.asarray(skeleton_ids, np.int64)
    seg = np.asarray(segment_ids, np.uint64)
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    piece_lengths = np.asarray(lengths)  # float32 as the official (see the module docstring)
    lengths = piece_lengths.astype(np.float64)
    n_k = int(n_skeletons if n_skeletons is not None else (k.max() + 1 if len(k) else 0))
    ek = k[edges[:, 0]]
    L = np.bincount(ek, weights=lengths, minlength=n_k)
    n_edges = np.bincount(ek, minlength=n_k)
    has_edges = n_edges > 0
    T = float(L[has_edges].sum())

    merging = merging_segments(k, seg, float64_merge_keys=float64_merge_keys)
    su, sv = seg[edges[:, 0]], seg[edges[:, 1]]
    correct = (su == sv) & ~merging[edges[:, 0]]
    # c_{k,s}: summed correct length per (skeleton, segment)
    ck, cs, cl = ek[correct], su[correct], lengths[correct]
    order = np.lexsort((cs, ck))
    ck, cs, cl = ck[order], cs[order], cl[order]
    if len(ck):
        start = np.concatenate([[True], (ck[1:] != ck[:-1]) | (cs[1:] != cs[:-1])])
        idx = np.flatnonzero(start)
        c = _piece_sums(piece_lengths[correct][order], idx)
        c_k = ck[idx]
    else:
        c, c_k = np.empty(0), np.empty(0, np.int64)
    sum_c2 = np.bincount(c_k, weights=c * c, minlength=n_k)
    has_credit = np.bincount(c_k, minlength=n_k) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = np.where(has_credit, sum_c2 / np.where(has_credit, L, 1.0), 0.0)
        inner[has_credit & (L == 0)] = math.nan  # 0²/0 as in the official
        weight = L / T if T else np.where(has_edges, math.nan, 0.0)
        contrib = np.where(has_edges, weight * inner, 0.0)
    erl = float(contrib[has_edges].sum()) if has_edges.any() else 0.0
    positive = L[has_edges & (L > 0)]
    mean_len = float(positive.mean()) if len(positive) else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        erl_norm = erl / mean_len if mean_len else math.nan
    return RunLength(erl, float(erl_norm), T, mean_len, L, n_edges, contrib, merging)


def _piece_sums(lengths: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per-piece sums as NumPy's ``np.sum`` of each run (pairwise for float32), in float64."""
    if lengths.dtype == np.float64:
        return np.add.reduceat(lengths, starts)
    bounds = np.append(starts, len(lengths))
    return np.array([float(np.sum(lengths[a:b])) for a, b in zip(bounds[:-1], bounds[1:],
                                                                  strict=True)])


def split_count(segment_ids: np.ndarray, edges: np.ndarray) -> int:
    """Number of edges whose two nodes carry different segments (xpress.md §4)."""
    seg = np.asarray(segment_ids)
    edges = np.asarray(edges, np.int64).reshape(-1, 2)
    return int((seg[edges[:, 0]] != seg[edges[:, 1]]).sum())


def merge_count(skeleton_ids: np.ndarray, segment_ids: np.ndarray,
                edges: np.ndarray | None = None, node_ids: np.ndarray | None = None) -> int:
    """Diagnostic merge count of the official ``find_merge_errors`` (xpress.md §4), exactly.

    The official result depends on the order in which CPython's ``set.pop()`` returns node ids
    from the sets that networkx builds, so it is reproduced with the same Python structures
    and insertion histories (which fix each set's hash-table layout, hence its pop order):

    1. a ``dict`` of ``set`` per segment id, node ids added in graph order;
    2. per segment, the clusters of ``networkx.connected_components(graph.subgraph(nodes))``
       as **networkx 3.0** (the pinned version) builds them: the subgraph's filter set is
       ``set(...)`` of the segment's set in its iteration order; the subgraph iterates that
       set when it holds fewer than half the graph's nodes, else the graph's node order; each
       cluster is the ``seen`` set of networkx 3.0's set-based ``_plain_bfs`` (``thislevel``
       iterated in set order, neighbours in adjacency order). Later networkx releases changed
       that BFS (list-based), and the pop order with it, so the installed networkx is not used;
    3. the pairs of ``itertools.combinations(clusters, 2)`` in order: ``c1.pop()`` then
       ``c2.pop()``, a pair skipped when a ``pop`` finds its set empty (a node popped from
       ``c1`` stays removed); the two pieces are joined when the popped nodes share a skeleton;
    4. the segment contributes one closest node pair per pair of its ``f`` joined clusters.

    The closest-pair search itself is not run: each pair of distinct clusters adds a tuple of
    one node from each, the clusters are disjoint and every node has one segment, so all the
    tuples added to the official global set are distinct, and its size is ``Σ C(f, 2)``
    whichever pair is closest (positions are finite, so every search finds a pair). This
    turns the official quadratic distance search into nothing.

    Cost: building the sets and the BFS is O(N + E) (Python loops over nodes and edges). The
    pop loop is linear too: for cluster ``i`` every pair ``(i, j)`` pops from ``c_i`` until it
    is empty, after which the remaining pairs of ``i`` are no-ops and are cut short, so at
    most ``Σ |c_i| ≤ N`` pairs do work, plus O(clusters) per segment.

    Parameters
    ----------
    skeleton_ids : int (N,) skeleton (connected-component) index per node, graph order.
    segment_ids : uint64 (N,) segment per node after the fresh-id relabelling (exact ids are
        grouped; no float64 quirk here).
    edges : int (E, 2) node *positions* of the graph's edges, in the order they were added
        (each node's neighbours are iterated in that order, as in ``networkx.Graph``);
        ``None``: no edges. A skeleton read from a pickled graph lists ``graph.edges``, which
        rebuilds a node's neighbour order except where the original graph met a later node
        before an earlier one; that order only matters when ids collide in a BFS level set.
    node_ids : int (N,) the file's node ids (their hashes place them in the sets, so they
        change the pop order); ``None``: ``0..N-1``.

    Returns
    -------
    int
        The size of the official global set of closest pairs. Not part of any score.

    Examples
    --------
    Four nodes in one segment: nodes 0 and 1 are one skeleton split into two pieces (no edge),
    nodes 2 and 3 a second skeleton. Clusters {0}, {1}, {2, 3}: the pair ({0}, {1}) pops 0
    and 1, same skeleton, joined; the later pairs find {0} and {1} empty. So 2 final clusters,
    1 pair.

    >>> merge_count(np.array([0, 0, 1, 1]), np.full(4, 9, np.uint64), np.array([[2, 3]]))
    1
    """
    seg = np.asarray(segment_ids, np.uint64).tolist()
    skel = np.asarray(skeleton_ids, np.int64).tolist()
    n = len(seg)
    if len(skel) != n:
        raise ValueError(f"{len(skel)} skeleton ids for {n} segment ids")
    ids = list(range(n)) if node_ids is None else np.asarray(node_ids, np.int64).tolist()
    if len(ids) != n:
        raise ValueError(f"{len(ids)} node ids for {n} segment ids")
    # networkx.Graph._adj: nodes in graph order, each neighbour dict in edge-insertion order
    adj: dict[int, dict[int, None]] = {node: {} for node in ids}
    pairs = [] if edges is None else np.asarray(edges, np.int64).reshape(-1, 2).tolist()
    for a, b in pairs:
        u, v = ids[a], ids[b]
        adj[u][v] = None
        adj[v][u] = None
    skeleton_of = dict(zip(ids, skel, strict=True))
    by_segment: dict[int, set[int]] = {}
    for node, s in zip(ids, seg, strict=True):
        if s not in by_segment:
            by_segment[s] = set()
        by_segment[s].add(node)
    total = 0
    for members in by_segment.values():
        f = _joined_clusters(_nx30_clusters(adj, members), skeleton_of)
        total += f * (f - 1) // 2
    return total


def _nx30_clusters(adj: dict[int, dict[int, None]], members: set[int]) -> list[set[int]]:
    """``list(networkx.connected_components(G.subgraph(members)))`` as networkx 3.0 builds
    the sets (see :func:`merge_count`); every set is built by the same sequence of ``add``s."""
    # show_nodes(G.nbunch_iter(members)): set() of a generator adds one by one in the
    # iteration order of ``members`` (a set copy would lay the table out differently)
    shown = set(node for node in members if node in adj)
    # FilterAtlas.__iter__: the filter set's own order when it is under half the graph
    if 2 * len(shown) < len(adj):
        order = [node for node in shown if node in adj]
    else:
        order = [node for node in adj if node in shown]
    seen: set[int] = set()
    clusters = []
    for v in order:
        if v not in seen:
            # networkx 3.0 _plain_bfs: level sets, neighbours filtered in adjacency order
            component: set[int] = set()
            nextlevel = {v}
            while nextlevel:
                thislevel = nextlevel
                nextlevel = set()
                for w in thislevel:
                    if w not in component:
                        component.add(w)
                        nextlevel.update(x for x in adj[w] if x in shown)
            seen.update(component)
            clusters.append(component)
    return clusters


def _joined_clusters(clusters: list[set[int]], skeleton_of: dict[int, int]) -> int:
    """Number of connected components left after the official pop-and-join over
    ``itertools.combinations(clusters, 2)`` (the sets are depleted in place)."""
    parent = list(range(len(clusters)))
    cluster_of = {node: i for i, c in enumerate(clusters) for node in c}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    f = len(clusters)
    for i, c1 in enumerate(clusters):
        for j in range(i + 1, len(clusters)):  # indices, not a slice: O(|c1|) per i, not O(C)
            if not c1:
                break  # every later pair of c1 raises KeyError at c1.pop(): no effect
            c2 = clusters[j]
            n1 = c1.pop()
            if not c2:
                continue  # c2.pop() raises; n1 stays removed from c1
            n2 = c2.pop()
            if skeleton_of[n1] == skeleton_of[n2]:
                a, b = root(cluster_of[n1]), root(cluster_of[n2])
                if a != b:
                    parent[a] = b
                    f -= 1
    return f
