"""CPU results are bit-identical on 1 thread, N threads and N processes (issue 18).

Every reduction of the CellMap graph is exact (integer counts, min/max boxes, per-instance
float32 distances written to fixed slots), so the schedule must not change a bit of the
result: not the order tasks finish in, not the process a task ran in.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from gpueval.bench.cellmap import CONSTS, build_crop
from gpueval.challenges.cellmap.scoring_2026 import instance_delayed, semantic_delayed
from gpueval.engine import compute, local_processes
from gpueval.limits import Limits, use_limits

VS = (8.0, 8.0, 12.0)  # anisotropic: the distances are not all integers


def _graph():
    gt, pred = build_crop(40, 50, seed=7)
    g = da.from_array(gt, chunks=(16, 16, 16))
    p = da.from_array(pred, chunks=(16, 16, 16))
    return (instance_delayed(g, p, VS, CONSTS),
            semantic_delayed(g > 0, p > 0))


def _summary(inst, sem):
    d = inst["_detail"]
    return ({k: inst[k] for k in ("tp", "fp", "fn", "n_hausdorff", "hausdorff_norm_sum",
                                  "status")},
            d["hausdorff_per_gt"].tobytes(), d["mapping"].tobytes(), dict(sem))


def test_threads_and_processes_give_identical_bits():
    distributed = pytest.importorskip("distributed")
    del distributed
    one = _summary(*compute(*_graph(), scheduler="sync"))
    with use_limits(Limits(threads=4)):
        threads = _summary(*compute(*_graph()))
    with local_processes(2) as client:
        procs = _summary(*compute(*_graph(), scheduler=client))
    assert one[0]["status"] == "scored" and one[0]["tp"] > 10
    assert threads == one
    assert procs == one
    # the per-instance distances are real work, not all capped or empty
    per_gt = np.frombuffer(one[1], np.float32)
    assert len(np.unique(per_gt)) > 3


def test_local_processes_rejects_zero_workers():
    pytest.importorskip("distributed")
    with pytest.raises(ValueError, match="workers"), local_processes(0):
        pass


def test_cli_rejects_negative_workers(tmp_path, capsys):
    from gpueval.cli import main

    code = main(["score", "cellmap", "--truth", str(tmp_path), "--submission", str(tmp_path),
                 "--workers", "-1", "--quiet"])
    assert code == 2 and "--workers" in capsys.readouterr().err
