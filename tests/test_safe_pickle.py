"""The restricted unpickler admits plain data and allow-listed classes, nothing else."""

import os
import pickle

import networkx as nx
import numpy as np
import pytest

from gpueval.errors import Rejected
from gpueval.io.safe_pickle import NUMPY, restricted_load


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_plain_data_loads():
    data = {"1": "liver", "instance_label": 1, "s": {1, 2}, "t": (1.5, None)}
    assert restricted_load(pickle.dumps(data)) == data


def test_code_execution_is_refused():
    with pytest.raises(Rejected, match="not allowed"):
        restricted_load(pickle.dumps(Exploit()))
    with pytest.raises(Rejected, match="not allowed"):
        restricted_load(pickle.dumps(nx.Graph()))  # not allow-listed here


def test_allow_listed_graph_with_numpy_positions():
    g = nx.Graph()
    g.add_node(3, position=np.array([1.0, 2.0, 3.0]))
    g.add_edge(3, 4)
    out = restricted_load(pickle.dumps(g), NUMPY | {("networkx.classes.graph", "Graph")})
    assert list(out.edges) == [(3, 4)]
    np.testing.assert_array_equal(out.nodes[3]["position"], [1, 2, 3])


def test_truncated_pickle():
    with pytest.raises(Rejected, match="corrupt or truncated"):
        restricted_load(pickle.dumps(list(range(100)))[:20])


class _BytearrayBomb:
    def __reduce__(self):
        return (bytearray, (10**12,))


class _ArrayBomb:
    def __reduce__(self):
        return (np.ndarray.__new__, (np.ndarray, (10**12,), np.uint8))


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_every_protocol_round_trips_plain_data_and_arrays(protocol):
    data = {"a": [1, 2.5, None], "b": {3, 4}, "c": frozenset({"x"}), "d": bytearray(b"xy"),
            "e": (1j, "text")}
    assert restricted_load(pickle.dumps(data, protocol=protocol)) == data
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = restricted_load(pickle.dumps(arr, protocol=protocol), NUMPY)
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == arr.dtype


def test_allocation_from_a_declared_size_is_refused():
    with pytest.raises(Rejected, match="allocation from a declared size"):
        restricted_load(pickle.dumps(_BytearrayBomb()))
    hostile = pickle.dumps(_ArrayBomb())  # names numpy ndarray.__new__ directly: not allowed
    with pytest.raises(Rejected, match="not allowed"):
        restricted_load(hostile, NUMPY)
    # the allowed reconstruct helper with a huge shape
    import numpy._core.multiarray as mu

    class Reconstruct:
        def __reduce__(self):
            return (mu._reconstruct, (np.ndarray, (10**12,), b"b"))

    with pytest.raises(Rejected, match="larger than a pickle may declare"):
        restricted_load(pickle.dumps(Reconstruct()), NUMPY)


def test_codecs_encode_only_latin1():
    import codecs

    class Zlib:
        def __reduce__(self):
            return (codecs.encode, ("x" * 10, "zlib"))

    with pytest.raises(Rejected, match="encoding 'zlib' is not allowed"):
        restricted_load(pickle.dumps(Zlib()))


def test_size_limit_and_garbage():
    with pytest.raises(Rejected, match="larger than 10 bytes"):
        restricted_load(pickle.dumps(list(range(100))), max_bytes=10)
    for junk in (b"", b"\x80\x05garbage", b"(((((", bytes(range(256))):
        with pytest.raises(Rejected):
            restricted_load(junk)


def test_declared_sizes_in_opcodes_allocate_nothing():
    """C unpickler bombs: a 5-byte memo index asking for a 64 GiB table, a 1 TiB bytes."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    vm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status")
              if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, hard))
    try:
        assert restricted_load(b"\x80\x02]r\xff\xff\xff\xff.") == []
        for bomb in (b"\x80\x04\x8e" + (2**40).to_bytes(8, "little") + b"abc.",
                     b"\x80\x04\x8d" + (2**40).to_bytes(8, "little") + b"abc.",
                     b"\x80\x05\x96" + (2**40).to_bytes(8, "little") + b"abc."):
            with pytest.raises(Rejected, match="corrupt or truncated|BYTEARRAY8 declares"):
                restricted_load(bomb)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_bytearray8_declaring_more_than_the_input_is_refused():
    bomb = b"\x80\x05\x96" + (2**36).to_bytes(8, "little") + b"abc."
    with pytest.raises(Rejected, match="BYTEARRAY8 declares"):
        restricted_load(bomb)
    ok = pickle.dumps(bytearray(b"abc"), protocol=5)
    assert restricted_load(ok) == bytearray(b"abc")
