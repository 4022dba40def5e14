"""Ground-truth skeletons (XPRESS): the official pickled graph, or gpueval's safe ``.npz``.

Two on-disk forms hold the same thing, a graph of annotated points:

* **official** — ``XPRESS_*_skels.npz`` is, despite its name, a pickled ``networkx.Graph``
  (node attribute ``position`` = (x, y, z) nm; edges between nodes of one neuron). It is read
  with :func:`gpueval.io.safe_pickle.restricted_load`, admitting only the classes such a graph
  of plain numbers needs (:data:`GRAPH_GLOBALS`): never a plain ``pickle.load``.
* **gpueval npz** — a zip of three arrays, read with ``allow_pickle=False``:

  ==============  ========  =========  =========================================
  key             dtype     shape      meaning
  ==============  ========  =========  =========================================
  ``node_ids``    int64     (N,)       node ids, **in graph iteration order**
  ``positions``   float64   (N, 3)     x, y, z in nm (world units)
  ``edges``       int64     (E, 2)     undirected edges as pairs of node ids
  ==============  ========  =========  =========================================

The order of ``node_ids`` is the graph's iteration order, which the official score depends on
(fresh ids for background voxels and the numbering of connected components follow it; see
``shared/specs/xpress.md`` §2 and §5), so a conversion keeps it.
:func:`convert_skeleton` turns an official file into the npz form once, offline
(``gpueval convert-skeleton SRC DST`` where the CLI wires it).

Edges follow ``networkx.Graph`` semantics: ``(u, v)`` and ``(v, u)`` are one edge (duplicates
are dropped, first occurrence kept); self-loops are kept (length 0).
"""

from __future__ import annotations

import itertools
import math
import operator
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpueval.errors import GpuevalError, Rejected, TruthError
from gpueval.io.safe_pickle import restricted_load
from gpueval.limits import current_limits

#: The globals a pickled ``networkx.Graph`` of numbers needs beyond plain containers: the
#: class itself and NumPy scalars/arrays (positions and node ids are often NumPy values).
GRAPH_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("networkx.classes.graph", "Graph"),
    # networkx 3 caches its views in the instance dict, so pickles of used graphs hold them
    ("networkx.classes.coreviews", "AdjacencyView"), ("networkx.classes.coreviews", "AtlasView"),
    ("networkx.classes.reportviews", "NodeView"), ("networkx.classes.reportviews", "NodeDataView"),
    ("networkx.classes.reportviews", "EdgeView"), ("networkx.classes.reportviews", "EdgeDataView"),
    ("networkx.classes.reportviews", "DegreeView"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
})

#: Coordinates beyond this (nm) cannot be truncated to int64 safely; no real volume is near.
MAX_ABS_COORD = 2.0**52

NPZ_KEYS = ("node_ids", "positions", "edges")


@dataclass
class Skeleton:
    """Nodes (in graph iteration order) with x, y, z positions in nm, and undirected edges.

    Attributes
    ----------
    node_ids : int64 (N,)
    positions : float64 (N, 3), x, y, z in nm
    edges : int64 (E, 2), pairs of node ids
    """

    node_ids: np.ndarray
    positions: np.ndarray
    edges: np.ndarray

    @property
    def n_nodes(self) -> int:
        return len(self.node_ids)

    def edge_index(self) -> np.ndarray:
        """Edges as int64 (E, 2) positions into :attr:`node_ids` (graph order)."""
        order = np.argsort(self.node_ids, kind="stable")
        sorted_ids = self.node_ids[order]
        pos = np.searchsorted(sorted_ids, self.edges)
        return order[np.minimum(pos, len(order) - 1)].astype(np.int64)


def load_skeleton(path: str | Path) -> Skeleton:
    """Read a skeleton file: gpueval's npz or the official pickled ``networkx.Graph``.

    The form is recognised by content (a zip holding ``node_ids`` is the npz form; anything
    else is treated as the official pickle and read through the restricted unpickler).

    Raises
    ------
    TruthError
        Unreadable file, a pickle naming anything outside :data:`GRAPH_GLOBALS`, missing
        positions, non-integer node ids, edges to unknown nodes, non-finite coordinates.
    """
    p = Path(path)
    if not p.is_file():
        raise TruthError(f"skeleton file {p} not found")
    if zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as z:
                members = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise TruthError(f"{p.name}: unreadable zip ({e})") from e
        missing = [k for k in NPZ_KEYS if k not in members]
        if missing:  # the official pickle is never a zip: a broken npz, say what it lacks
            raise TruthError(f"{p.name}: skeleton npz lacks {', '.join(missing)} "
                             f"(needs {', '.join(NPZ_KEYS)})")
        return _load_npz(p)
    return _load_pickled_graph(p)


def save_skeleton_npz(skel: Skeleton, path: str | Path) -> None:
    """Write ``skel`` in gpueval's npz form (compressed, no pickles)."""
    skel = _checked(skel.node_ids, skel.positions, skel.edges, str(path))
    np.savez_compressed(path, node_ids=skel.node_ids, positions=skel.positions,
                        edges=skel.edges)


def convert_skeleton(src: str | Path, dst: str | Path) -> Skeleton:
    """Convert an official skeleton file (pickled graph) to gpueval's npz form, keeping order.

    Returns the skeleton that was written.
    """
    skel = load_skeleton(src)
    save_skeleton_npz(skel, dst)
    return skel


def skeleton_from_graph(graph, where: str = "graph") -> Skeleton:
    """Build a :class:`Skeleton` from a ``networkx.Graph`` with ``position`` node attributes.

    A graph unpickled from a hostile or broken file may be inconsistent inside (``_adj`` a
    list, an attribute shadowing a method, a neighbour missing from ``_node``): its internals
    are checked first and any failure while reading it is a one-line :class:`TruthError`.
    """
    try:
        return _skeleton_from_graph(graph, where)
    except GpuevalError:
        raise
    except (RecursionError, MemoryError) as e:
        raise TruthError(f"{where}: skeleton graph too large or too deep to read "
                         f"({type(e).__name__})") from e
    except Exception as e:  # anything an inconsistent graph object raises when walked
        detail = " ".join(str(e).split())[:120]
        raise TruthError(f"{where}: not a usable skeleton graph ({type(e).__name__}: "
                         f"{detail})") from e


def _skeleton_from_graph(graph, where: str) -> Skeleton:
    import networkx as nx

    if not isinstance(graph, nx.Graph) or type(graph).is_directed(graph) or \
            type(graph).is_multigraph(graph):
        raise TruthError(f"{where}: expected an undirected networkx.Graph, got "
                         f"{type(graph).__name__}")
    state = graph.__dict__
    for cached in ("adj", "nodes", "edges", "degree"):  # views cached at pickling time
        state.pop(cached, None)                         # are rebuilt from the graph's data
    _check_graph_internals(state, where)
    nodes = list(state["_node"])
    try:
        ids = _int_array(nodes).reshape(-1)
    except (TypeError, ValueError, OverflowError) as e:
        raise TruthError(f"{where}: node ids must be integers ({e})") from e
    try:
        pos = _positions(state["_node"], nodes)
    except KeyError as e:
        raise TruthError(f"{where}: a node has no 'position' attribute") from e
    except (TypeError, ValueError) as e:
        raise TruthError(f"{where}: node positions must be 3 numbers (x, y, z) ({e})") from e
    edges = _edges_in_view_order(state["_adj"])
    return _checked(ids, pos, edges, where)


def _edges_in_view_order(adj: dict) -> np.ndarray:
    """int64 (E, 2) node-id pairs in ``networkx.Graph.edges`` order, from its ``_adj``.

    The view walks ``_adj`` and yields ``(n, m)`` for each neighbour ``m`` of ``n`` not
    walked before (self-loops included), so an entry is an edge exactly when ``m`` comes no
    earlier than ``n`` in ``_adj``: one vectorised comparison instead of the view's Python
    loop and set (~0.15 s for 10⁵ edges). Node ids are integers here (checked before)."""
    adj_ids = _int_array(list(adj)).reshape(-1)
    degree = np.fromiter(map(len, adj.values()), np.int64, len(adj))
    nbrs = _int_array(list(itertools.chain.from_iterable(adj.values()))).reshape(-1)
    order = np.argsort(adj_ids, kind="stable")
    where_nbr = order[np.searchsorted(adj_ids[order], nbrs)] if len(nbrs) else \
        np.empty(0, np.int64)
    where_node = np.repeat(np.arange(len(adj_ids)), degree)
    keep = where_nbr >= where_node
    return np.stack([adj_ids[where_node[keep]], nbrs[keep]], axis=1).reshape(-1, 2)


def _int_array(values: list) -> np.ndarray:
    """int64 array of node ids; plain ``int``s (what networkx graphs hold) in one NumPy call,
    anything else checked one by one (:func:`_as_int`: no bools, floats or strings)."""
    if set(map(type, values)) <= {int}:  # the check in C
        return np.array(values, dtype=np.int64)  # OverflowError beyond int64, as int64 would
    return np.array([_as_int(v) for v in values], dtype=np.int64)


def _positions(node_attrs: dict, nodes: list) -> np.ndarray:
    """(N, 3) float64 positions; float64 arrays of 3 (what the official files hold) are
    stacked in one call, anything else converted node by node."""
    values = list(map(operator.itemgetter("position"), map(node_attrs.__getitem__, nodes)))
    if set(map(type, values)) <= {np.ndarray} and \
            set(map(operator.attrgetter("dtype"), values)) <= {np.dtype(np.float64)} and \
            set(map(operator.attrgetter("shape"), values)) <= {(3,)}:  # the checks in C
        return np.stack(values) if values else np.empty((0, 3))
    return np.array([np.asarray(v, dtype=np.float64).reshape(3) for v in values],
                    dtype=np.float64).reshape(-1, 3)


def _check_graph_internals(state: dict, where: str) -> None:
    """``_node`` and ``_adj`` are dicts of dicts over the same nodes (networkx's invariant)."""
    node, adj = state.get("_node"), state.get("_adj")
    for name, table in (("_node", node), ("_adj", adj)):
        if type(table) is not dict:
            raise TruthError(f"{where}: graph {name} is a {type(table).__name__}, not a dict "
                             "(a corrupt or hand-made pickle)")
    if len(node) != len(adj) or adj.keys() != node.keys():
        raise TruthError(f"{where}: graph _adj and _node name different nodes")
    # the usual graph passes in C (set operations over ~10⁵ entries); a failure is located
    # by the loops below, which name the node
    if set(map(type, node.values())) <= {dict} and set(map(type, adj.values())) <= {dict} and \
            node.keys() >= set(itertools.chain.from_iterable(adj.values())):
        return
    for n, attrs in node.items():
        if type(attrs) is not dict:
            raise TruthError(f"{where}: attributes of node {n!r:.40} are a "
                             f"{type(attrs).__name__}, not a dict")
    for n, nbrs in adj.items():
        if type(nbrs) is not dict:
            raise TruthError(f"{where}: neighbours of node {n!r:.40} are a "
                             f"{type(nbrs).__name__}, not a dict")
        for m in nbrs:
            if m not in node:
                raise TruthError(f"{where}: edge ({n!r:.40}, {m!r:.40}) names an unknown node")


# --------------------------------------------------------------------------------------------


def _as_int(v) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer):
        raise TypeError(f"node id {v!r} is not an integer")
    return int(v)


def _load_npz(p: Path) -> Skeleton:
    _check_npz_headers(p)
    try:
        with np.load(p, allow_pickle=False) as z:
            ids, pos, edges = (np.asarray(z[k]) for k in NPZ_KEYS)
    except (ValueError, OSError, zipfile.BadZipFile, KeyError, EOFError, MemoryError) as e:
        raise TruthError(f"{p.name}: not a readable skeleton npz ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:120]})") from e
    if ids.dtype.kind not in "iu" or edges.dtype.kind not in "iu" or pos.dtype.kind not in "fiu":
        raise TruthError(f"{p.name}: node_ids/edges must be integers and positions numbers")
    return _checked(ids.astype(np.int64).reshape(-1), pos.astype(np.float64),
                    edges.astype(np.int64), p.name)


def _check_npz_headers(p: Path) -> None:
    """Check each member's declared shape and dtype before NumPy allocates from them.

    ``np.load`` allocates ``shape × itemsize`` from a member's header before reading it: a
    few hundred bytes declaring 4·10⁹ nodes would take 32 GiB. Refused here: shapes other
    than (N,), (N, 3), (E, 2), non-number dtypes, a header declaring more bytes than the
    member holds, and more elements in all than ``limits.max_pickle_items`` (the bound on
    what one truth skeleton may build, pickled or not).
    """
    from numpy.lib import format as npy

    budget = current_limits().max_pickle_items
    shapes: dict[str, tuple[int, ...]] = {}
    total = 0
    try:
        with zipfile.ZipFile(p) as z:
            for key in NPZ_KEYS:
                info = z.getinfo(key + ".npy")
                with z.open(info) as f:
                    version = npy.read_magic(f)
                    read_header = {(1, 0): npy.read_array_header_1_0,
                                   (2, 0): npy.read_array_header_2_0}.get(version)
                    if read_header is None:
                        raise TruthError(f"{p.name}: {key} is .npy format {version}, not "
                                         "1.0/2.0")
                    shape, _, dtype = read_header(f, max_header_size=10_000)
                    header_end = f.tell()
                if dtype.hasobject or dtype.kind not in "biuf":
                    raise TruthError(f"{p.name}: {key} has dtype {dtype}, not numbers")
                n = 1
                for d in shape:
                    n *= int(d)
                if header_end + n * dtype.itemsize > info.file_size:
                    raise TruthError(f"{p.name}: {key} declares shape {shape} ({n} values) but "
                                     f"the member holds only {info.file_size} bytes")
                total += n
                if total > budget:
                    raise TruthError(f"{p.name}: {key} declares shape {shape}: more than "
                                     f"{budget:.3g} values in all (limits.max_pickle_items)")
                shapes[key] = tuple(int(d) for d in shape)
    except (ValueError, OSError, zipfile.BadZipFile, KeyError, EOFError) as e:
        raise TruthError(f"{p.name}: not a readable skeleton npz ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:120]})") from e
    ids, pos, edges = (shapes[k] for k in NPZ_KEYS)
    edges_ok = (len(edges) == 2 and edges[1] == 2) or math.prod(edges) == 0
    if len(ids) != 1 or pos != (ids[0], 3) or not edges_ok:
        raise TruthError(f"{p.name}: shapes node_ids {ids}, positions {pos}, edges {edges}; "
                         "expected (N,), (N, 3), (E, 2)")


def _load_pickled_graph(p: Path) -> Skeleton:
    try:
        graph = restricted_load(p, GRAPH_GLOBALS)
    except Rejected as e:  # the truth is the organiser's file: exit 4, not 3
        raise TruthError(f"{p.name}: {e}") from e
    return skeleton_from_graph(graph, p.name)


def _checked(ids: np.ndarray, pos: np.ndarray, edges: np.ndarray, where: str) -> Skeleton:
    ids = np.asarray(ids, np.int64).reshape(-1)
    if pos.ndim != 2 or pos.shape != (len(ids), 3):
        raise TruthError(f"{where}: positions must be ({len(ids)}, 3), got {pos.shape}")
    edges = np.asarray(edges, np.int64)
    if edges.size == 0:
        edges = edges.reshape(0, 2)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise TruthError(f"{where}: edges must be (E, 2), got {edges.shape}")
    if not np.isfinite(pos).all() or (np.abs(pos) > MAX_ABS_COORD).any():
        raise TruthError(f"{where}: node positions must be finite nm values")
    if len(np.unique(ids)) != len(ids):
        raise TruthError(f"{where}: node ids are not unique")
    known = np.isin(edges, ids)
    if not known.all():
        bad = edges[~known.all(axis=1)][0]
        raise TruthError(f"{where}: edge {tuple(int(v) for v in bad)} names an unknown node")
    # networkx.Graph semantics: (u, v) == (v, u), one edge each; keep the first occurrence
    if len(edges):
        key = np.sort(edges, axis=1)
        _, first = np.unique(key, axis=0, return_index=True)
        edges = edges[np.sort(first)]
    return Skeleton(ids, np.ascontiguousarray(pos, np.float64), np.ascontiguousarray(edges))
