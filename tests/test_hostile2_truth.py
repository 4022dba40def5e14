"""Issue #24 part 4: truth files must not bypass the limits.

Small pickles that name only allowed classes but declare or imply huge sizes (an ndarray or
bytearray from a declared size, nested lists of shared references, deep nesting) are refused
while the restricted unpickler builds them; malformed skeletons (``_adj`` a list, an npz
declaring 4·10⁹ nodes, missing keys) are a one-line ``TruthError`` (exit 4). Memory-heavy
reproductions run in a child with an address-space cap and report their peak RSS.
"""

from __future__ import annotations

import copyreg
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.errors import Rejected, TruthError
from gpueval.io.safe_pickle import NUMPY, restricted_load
from gpueval.io.skeleton import GRAPH_GLOBALS, load_skeleton
from gpueval.limits import Limits, use_limits

ROOT = Path(__file__).resolve().parents[1]


# -- helpers -----------------------------------------------------------------------------------


def _shared_bomb(levels: int, fan: int = 10) -> list:
    """``fan**levels`` logical zeros in ``levels * fan`` references."""
    x: list = [0] * fan
    for _ in range(levels):
        x = [x] * fan
    return x


def _graph(n: int = 4) -> nx.Graph:
    g = nx.Graph()
    for i in range(n):
        g.add_node(i, position=np.array([i, 2.0 * i, 3.0 * i]))
    for i in range(1, n):
        g.add_edge(i - 1, i)
    return g


def _run_capped(code: str, cap_bytes: int = 3_000_000_000, timeout: float = 60) -> dict:
    """Run ``code`` in a child under an address-space cap; it prints one JSON line.

    The child reports ``error`` (the exception's type and message, or None) and its peak RSS.
    """
    body = textwrap.indent(textwrap.dedent(code).strip(), "    ")
    prog = "\n".join([
        "import json, resource",
        f"resource.setrlimit(resource.RLIMIT_AS, ({cap_bytes}, {cap_bytes}))",
        "err = None",
        "try:",
        body,
        "except Exception as e:",
        "    err = [type(e).__name__, str(e), getattr(e, 'exit_code', None)]",
        # VmHWM is this process's own peak; ru_maxrss can carry the parent's across exec
        "rss = next(int(line.split()[1]) * 1024 for line in open('/proc/self/status')",
        "           if line.startswith('VmHWM:'))",
        "print(json.dumps({'error': err, 'rss': rss}))",
    ])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True,
                         timeout=timeout, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _npz_with_headers(path: Path, headers: dict[str, tuple[tuple[int, ...], str]],
                      data: dict[str, bytes] | None = None, compress: bool = True) -> None:
    """An npz whose members declare any shape/dtype, followed by ``data`` (default none)."""
    data = data or {}
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", mode) as z:
        for key, (shape, dtype) in headers.items():
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
            z.writestr(key + ".npy", buf.getvalue() + data.get(key, b""))


# -- the unpickler's budget: hand-derived counts -----------------------------------------------


def test_shared_references_are_charged_their_whole_weight_each_time():
    """``[[0]*10]*10`` (protocol 2): inner APPENDS 10, nine BINGETs of the 11-weight inner
    list 99, outer APPENDS 10: 119 elements, so a budget of 119 loads it and 118 does not."""
    data = pickle.dumps([[0] * 10] * 10, protocol=2)
    assert restricted_load(data, max_items=119) == [[0] * 10] * 10
    with pytest.raises(Rejected, match="more than 118 elements"):
        restricted_load(data, max_items=118)


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_nested_shared_reference_bomb_is_refused(protocol):
    data = pickle.dumps(_shared_bomb(12), protocol=protocol)  # 10¹³ logical zeros
    assert len(data) < 2000
    with pytest.raises(Rejected, match="max_pickle_items"):
        restricted_load(data)
    with use_limits(Limits(max_pickle_items=10**5)):
        with pytest.raises(Rejected, match="more than 1e\\+05"):
            restricted_load(pickle.dumps(_shared_bomb(5), protocol=protocol))
        assert restricted_load(pickle.dumps(_shared_bomb(3), protocol=protocol)) == \
            _shared_bomb(3)


def test_dict_values_and_dup_fan_out_are_charged():
    big = list(range(1000))
    data = pickle.dumps({i: big for i in range(50)}, protocol=4)  # 49 GETs of 1001
    with pytest.raises(Rejected, match="max_pickle_items"):
        restricted_load(data, max_items=40_000)
    assert restricted_load(data, max_items=60_000)[7] == big
    # DUP: one list, duplicated on the stack 200 times into a tuple
    inner = pickle.dumps(list(range(500)), protocol=2)[2:-1]  # EMPTY_LIST BINPUT MARK … APPENDS
    dup = b"\x80\x02(" + inner + b"2" * 200 + b"t."
    assert len(restricted_load(dup, max_items=200_000)) == 201
    with pytest.raises(Rejected, match="max_pickle_items"):
        restricted_load(dup, max_items=50_000)


def test_constructors_are_charged_what_they_copy():
    class ListOfBytes:  # list(b"…") makes one int per byte
        def __reduce__(self):
            return (list, (b"\x00" * 5000,))

    class TupleOfStr:
        def __reduce__(self):
            return (tuple, ("x" * 5000,))

    for obj in (ListOfBytes(), TupleOfStr()):
        with pytest.raises(Rejected, match="max_pickle_items"):
            restricted_load(pickle.dumps(obj, protocol=2), max_items=4000)
        assert len(restricted_load(pickle.dumps(obj, protocol=2), max_items=20_000)) == 5000


@pytest.mark.parametrize("size", [10**12, 2**62])
def test_bytearray_and_array_from_a_declared_size_are_refused(size):
    class Bytearray:
        def __reduce__(self):
            return (bytearray, (size,))

    class Reconstructor:  # copyreg._reconstructor(bytearray, bytearray, size)
        def __reduce__(self):
            return (copyreg._reconstructor, (bytearray, bytearray, size))

    import numpy._core.multiarray as mu

    class Reconstruct:
        def __reduce__(self):
            return (mu._reconstruct, (np.ndarray, (size,), b"b"))

    for obj, match in ((Bytearray(), "declared size"), (Reconstructor(), "declared size"),
                       (Reconstruct(), "larger than a pickle may declare")):
        with pytest.raises(Rejected, match=match):
            restricted_load(pickle.dumps(obj, protocol=2), NUMPY)


def test_array_under_the_byte_cap_but_over_the_budget_is_refused():
    import numpy._core.multiarray as mu

    class Reconstruct:
        def __reduce__(self):
            return (mu._reconstruct, (np.ndarray, (10**7,), b"b"))

    with pytest.raises(Rejected, match="max_pickle_items"):
        restricted_load(pickle.dumps(Reconstruct(), protocol=2), NUMPY, max_items=10**6)


def test_object_arrays_load_but_not_from_a_declared_size():
    """MedSegFM's text prompts are a pickled object array: allowed, built element by element;
    ``_reconstruct`` with an object dtype and a size (never written by NumPy) is refused."""
    import numpy._core.multiarray as mu

    arr = np.empty(1, dtype=object)
    arr[0] = {"1": "liver", "instance_label": 0}
    for protocol in (2, 4, 5):
        out = restricted_load(pickle.dumps(arr, protocol=protocol), NUMPY)
        assert out.dtype == object and out[0] == arr[0]

    class ObjectReconstruct:
        def __reduce__(self):
            return (mu._reconstruct, (np.ndarray, (10**8,), "O"))

    with pytest.raises(Rejected, match="Python objects declared with a size"):
        restricted_load(pickle.dumps(ObjectReconstruct(), protocol=2), NUMPY)


def test_deep_nesting_is_refused():
    n = 100_000  # EMPTY_LIST × n then APPEND × (n - 1): a list nested n deep
    deep = b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b"."
    with pytest.raises(Rejected, match="nested deeper than 1000"):
        restricted_load(deep)
    with use_limits(Limits(max_pickle_depth=50)):
        shallow = b"\x80\x02" + b"]" * 50 + b"a" * 49 + b"."
        out = restricted_load(shallow)
        for _ in range(49):
            (out,) = out
        assert out == []
        with pytest.raises(Rejected, match="max_pickle_depth"):
            restricted_load(b"\x80\x02" + b"]" * 52 + b"a" * 51 + b".")


def test_limits_keys_configure_the_budget():
    lim = Limits.from_config({"limits": {"max_pickle_items": "1e3", "max_pickle_depth": 7}})
    assert (lim.max_pickle_items, lim.max_pickle_depth) == (1000, 7)
    with pytest.raises(TruthError, match="max_pickle_depth"):
        Limits.from_config({"limits": {"max_pickle_depth": 0}})


# -- identical results -------------------------------------------------------------------------


_plain = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda kids: st.lists(kids, max_size=6) | st.tuples(kids, kids)
    | st.dictionaries(st.text(max_size=5) | st.integers(), kids, max_size=5)
    | st.frozensets(st.integers() | st.text(max_size=4), max_size=5),
    max_leaves=40)


@settings(max_examples=60, deadline=None)
@given(_plain, st.integers(0, 5), st.booleans())
def test_plain_data_loads_identically_to_pickle(data, protocol, share):
    value = [data, data] if share else data  # shared references go through the memo
    blob = pickle.dumps(value, protocol=protocol)
    assert restricted_load(blob) == pickle.loads(blob)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_real_graph_loads_identically_to_pickle(protocol):
    g = _graph(300)
    _ = g.adj, g.nodes, g.edges, g.degree  # cached views, as in used graphs
    blob = pickle.dumps(g, protocol=protocol)
    out, ref = restricted_load(blob, GRAPH_GLOBALS), pickle.loads(blob)
    assert list(out.nodes) == list(ref.nodes) and list(out.edges) == list(ref.edges)
    for n in ref.nodes:
        np.testing.assert_array_equal(out.nodes[n]["position"], ref.nodes[n]["position"])


# -- malformed skeletons are TruthError (exit 4), one line -------------------------------------


def _write_graph(tmp_path: Path, g: nx.Graph, name: str = "skels.npz") -> Path:
    p = tmp_path / name
    p.write_bytes(pickle.dumps(g, protocol=4))
    return p


def _assert_truth_error(path: Path, match: str) -> None:
    with pytest.raises(TruthError, match=match) as err:
        load_skeleton(path)
    assert err.value.exit_code == 4 and "\n" not in str(err.value)
    assert str(err.value).startswith(path.name)


@pytest.mark.parametrize("field, value, match", [
    ("_adj", [], "_adj is a list"),
    ("_adj", None, "_adj is a NoneType"),
    ("_node", "abc", "_node is a str"),
    ("_adj", {0: {}, 1: {}, 2: {}, 7: {}}, "different nodes"),
    ("_adj", {0: [1], 1: {}, 2: {}, 3: {}}, "neighbours of node 0 are a list"),
    ("_adj", {0: {99: {}}, 1: {}, 2: {}, 3: {}}, r"edge \(0, 99\) names an unknown node"),
    ("_node", {0: [1, 2, 3], 1: {}, 2: {}, 3: {}}, "attributes of node 0 are a list"),
])
def test_graph_with_broken_internals_is_a_truth_error(tmp_path, field, value, match):
    g = _graph()
    g.__dict__[field] = value
    _assert_truth_error(_write_graph(tmp_path, g), match)


def test_graph_with_shadowed_methods_or_bad_positions_is_a_truth_error(tmp_path):
    g = _graph()
    g.__dict__["is_directed"] = 5  # an attribute shadowing a method
    assert load_skeleton(_write_graph(tmp_path, g)).n_nodes == 4
    g = _graph()
    g.nodes[2]["position"] = {"x": 1}
    _assert_truth_error(_write_graph(tmp_path, g), "position")
    g = _graph()
    g.nodes[1]["position"] = _shared_bomb(12)
    _assert_truth_error(_write_graph(tmp_path, g), "max_pickle_items")
    (tmp_path / "junk.npz").write_bytes(b"\x80\x04K\x05.")  # the int 5
    _assert_truth_error(tmp_path / "junk.npz", "expected an undirected networkx.Graph")


def test_npz_missing_keys_names_them(tmp_path):
    p = tmp_path / "s.npz"
    np.savez(p, node_ids=np.arange(3), positions=np.zeros((3, 3)))
    _assert_truth_error(p, "lacks edges")
    q = tmp_path / "other.npz"
    np.savez(q, something=np.arange(3))
    _assert_truth_error(q, "lacks node_ids, positions, edges")
    r = tmp_path / "broken.npz"
    r.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(TruthError):
        load_skeleton(r)


@pytest.mark.parametrize("headers, match", [
    ({"node_ids": ((4_000_000_000,), "<i8"), "positions": ((4_000_000_000, 3), "<f8"),
      "edges": ((0, 2), "<i8")}, "declares shape"),
    ({"node_ids": ((3,), "<i8"), "positions": ((3, 3), "<f8"),
      "edges": ((2**40, 2), "<i8")}, "declares shape"),
    ({"node_ids": ((3,), "|O"), "positions": ((3, 3), "<f8"), "edges": ((0, 2), "<i8")},
     "not numbers|not a readable"),
    ({"node_ids": ((3,), "<U4"), "positions": ((3, 3), "<f8"), "edges": ((0, 2), "<i8")},
     "not numbers"),
])
def test_npz_declarations_are_checked_before_allocating(tmp_path, headers, match):
    p = tmp_path / "s.npz"
    _npz_with_headers(p, headers)
    _assert_truth_error(p, match)


def test_npz_shapes_must_agree(tmp_path):
    p = tmp_path / "s.npz"
    np.savez(p, node_ids=np.arange(3), positions=np.zeros((4, 3)), edges=np.zeros((0, 2), int))
    _assert_truth_error(p, r"expected \(N,\), \(N, 3\), \(E, 2\)")
    np.savez(p, node_ids=np.arange(3), positions=np.zeros((3, 3)), edges=np.zeros((2, 3), int))
    _assert_truth_error(p, "expected")
    np.savez(p, node_ids=np.arange(3), positions=np.zeros((3, 3)), edges=np.zeros((0,), int))
    assert load_skeleton(p).edges.shape == (0, 2)  # an empty edge list of any shape is fine


def test_honest_but_huge_npz_is_over_the_budget(tmp_path):
    p = tmp_path / "s.npz"
    np.savez_compressed(p, node_ids=np.arange(2000), positions=np.zeros((2000, 3)),
                        edges=np.zeros((0, 2), np.int64))
    with use_limits(Limits(max_pickle_items=5000)):
        _assert_truth_error(p, "max_pickle_items")
    with use_limits(Limits(max_pickle_items=8000)):
        assert load_skeleton(p).n_nodes == 2000


# -- memory-capped reproductions: refused, with a bounded peak RSS ------------------------------


RSS_BOUND = 400 * 2**20  # an interpreter with NumPy and networkx is ~100-150 MiB


def test_capped_npz_declaring_4e9_nodes(tmp_path):
    p = tmp_path / "s.npz"
    _npz_with_headers(p, {"node_ids": ((4_000_000_000,), "<i8"),
                          "positions": ((4_000_000_000, 3), "<f8"), "edges": ((0, 2), "<i8")},
                      data={"node_ids": b"\x00" * 64}, compress=False)
    got = _run_capped(f"""
        from gpueval.io.skeleton import load_skeleton
        load_skeleton({str(p)!r})
    """)
    assert got["error"][0] == "TruthError" and got["error"][2] == 4, got
    assert got["rss"] < RSS_BOUND


def test_capped_shared_reference_positions(tmp_path):
    g = _graph()
    g.nodes[1]["position"] = _shared_bomb(9)  # np.asarray would want 10¹⁰ floats
    p = _write_graph(tmp_path, g)
    got = _run_capped(f"""
        from gpueval.io.skeleton import load_skeleton
        load_skeleton({str(p)!r})
    """)
    assert got["error"][0] == "TruthError" and "max_pickle_items" in got["error"][1], got
    assert got["rss"] < RSS_BOUND


def test_capped_declared_sizes_in_the_pickle(tmp_path):
    import numpy._core.multiarray as mu

    class Reconstruct:
        def __reduce__(self):
            return (mu._reconstruct, (np.ndarray, (2**31 - 1,), b"b"))

    # a 2 GiB array (under the 2 GiB byte cap, over a 10⁶ budget), a plain list, 10¹⁴ zeros
    blobs = [pickle.dumps(Reconstruct(), protocol=2), pickle.dumps(list(range(10)), protocol=2),
             pickle.dumps(_shared_bomb(14), protocol=4)]
    p = tmp_path / "blobs.json"
    p.write_text(json.dumps([b.hex() for b in blobs]))
    got = _run_capped(f"""
        import json
        from gpueval.errors import Rejected
        from gpueval.io.safe_pickle import NUMPY, restricted_load
        out = []
        for h in json.load(open({str(p)!r})):
            try:
                v = restricted_load(bytes.fromhex(h), NUMPY, max_items=10**6)
                out.append(type(v).__name__)
            except Rejected as e:
                out.append(str(e))
        raise ValueError(json.dumps(out))
    """)
    results = json.loads(got["error"][1])
    assert results[0].startswith("refused to unpickle") and "max_pickle_items" in results[0]
    assert results[1] == "list"
    assert results[2].startswith("refused to unpickle") and "max_pickle_items" in results[2]
    assert got["rss"] < RSS_BOUND


# -- end to end: ``gpueval score xpress`` with a hostile truth exits 4 with one line ------------


@pytest.mark.parametrize("case", ["adj_list", "npz_4e9", "npz_missing", "bomb"])
def test_cli_hostile_truth_exits_4_with_one_line(tmp_path, capsys, case):
    from gpueval.cli import main

    truth = tmp_path / "skels.npz"
    if case == "adj_list":
        g = _graph()
        g.__dict__["_adj"] = []
        truth.write_bytes(pickle.dumps(g))
    elif case == "npz_4e9":
        _npz_with_headers(truth, {"node_ids": ((4_000_000_000,), "<i8"),
                                  "positions": ((4_000_000_000, 3), "<f8"),
                                  "edges": ((0, 2), "<i8")})
    elif case == "npz_missing":
        np.savez(truth, node_ids=np.arange(3), edges=np.zeros((0, 2), np.int64))
    else:
        g = _graph()
        g.graph["junk"] = _shared_bomb(12)
        truth.write_bytes(pickle.dumps(g))
    sub = tmp_path / "sub.zarr"
    sub.mkdir()
    rc = main(["score", "xpress", "--truth", str(truth), "--submission", str(sub), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 4, err
    assert err.startswith("gpueval: skels.npz: ") and "\n" not in err
    assert "Traceback" not in err
