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
