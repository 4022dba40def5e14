"""throughput_carry.scope: a graph's carried chunks are dropped when its compute ends, also
when it is aborted, and its stragglers cannot put new ones."""

import numpy as np
import pytest

from gpueval.kernels import throughput_carry
from gpueval.kernels.throughput_carry import CarryStore


def test_close_drops_only_those_groups_and_refuses_later_puts():
    s = CarryStore(budget=1 << 20)
    a, b = ("x", "1"), ("x", "2")
    assert s.put((a, 0), [np.arange(10)]) and s.put((a, 1), [np.arange(5)])
    assert s.put((b, 0), [np.arange(3)])
    s.close([a])
    assert s.get((a, 0)) is None and s.get((a, 1)) is None
    assert s.nbytes == np.arange(3).nbytes and len(s) == 1
    assert s.put((a, 2), [np.arange(4)]) is False  # a straggler of the ended graph
    assert s.put((b, 1), [np.arange(4)]) is True


def test_scope_closes_groups_made_inside_even_on_error():
    store = throughput_carry.store
    outside = throughput_carry.new_group("t-outside")
    with pytest.raises(RuntimeError), throughput_carry.scope():
        inside = throughput_carry.new_group("t-inside")
        assert store.put((inside, 0), [np.ones(8)])
        assert store.put((outside, 0), [np.ones(8)])
        raise RuntimeError("one label rejected")
    assert store.get((inside, 0)) is None
    assert store.get((outside, 0), remove=True) is not None  # not this scope's


def test_aborted_submission_leaves_no_carried_chunks(tmp_path, monkeypatch):
    from test_cellmap import build_e2e

    from gpueval.api import score
    from gpueval.challenges.cellmap import scoring_2026

    def fail(*args, **kwargs):  # pass 3 fails after pass 2 carried every truth chunk
        raise RuntimeError("a label's chunk could not be read")

    monkeypatch.setattr(scoring_2026, "_hausdorff_chunk", fail)
    truth, sub = build_e2e(tmp_path)
    throughput_carry.store.clear()
    try:
        score("cellmap", truth, sub, device="cpu")
    except RuntimeError:
        pass  # how the failure surfaces is not this test's business; what it leaves is
    assert len(throughput_carry.store) == 0
