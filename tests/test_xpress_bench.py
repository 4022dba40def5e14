"""The XPRESS bench workloads run end to end at a tiny scale and check themselves."""

from __future__ import annotations

import pytest

from gpueval.bench import load_all


@pytest.mark.parametrize("name", ["xpress", "xpress_sparse"])
def test_workload_tiny(name):
    rec = load_all()[name].func("cpu", 0.01)
    assert rec["check"] is True
    assert rec["voxels"] > 0 and rec["seconds"] > 0
    assert 0 < rec["chunks_read"] <= rec["chunks_total"]
    if name == "xpress_sparse":  # only the chunks holding nodes are read
        assert rec["chunks_read"] < rec["chunks_total"] / 1000
        assert rec["bytes_read"] < rec["declared_bytes"] / 1000
