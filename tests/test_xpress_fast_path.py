"""XPRESS's whole-process path stays off the heavy stacks and gives the same numbers (#19).

A ``gpueval score xpress`` of an HDF5 submission and a pickled graph needs neither Numba (its
tables have ~10⁵ rows: NumPy sorts them in milliseconds, Numba's import and cache cost
~0.15 s) nor Dask (one pass of chunk reads on a thread pool). Pinned through ``sys.modules``
of a fresh interpreter, never through timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]


def test_marginal_equals_a_sum_per_distinct_id():
    from gpueval.kernels.stats import _marginal

    ids_of = {np.uint64: st.sampled_from([0, 1, 7, 2**53 + 1, 2**64 - 1]),
              np.int32: st.integers(-3, 3), np.float64: st.sampled_from([0.0, -0.0, 1.5, 2.0])}

    @settings(max_examples=150, deadline=None)
    @given(st.sampled_from(sorted(ids_of, key=str)).flatmap(
        lambda dt: st.tuples(st.just(dt), st.lists(st.tuples(ids_of[dt], st.integers(0, 9)),
                                                   max_size=40))))
    def check(case):
        dtype, pairs = case
        ids = np.array([p[0] for p in pairs], dtype)
        counts = np.array([p[1] for p in pairs], np.int64)
        want: dict = {}
        for i, c in zip(ids.tolist(), counts.tolist(), strict=True):
            want[i] = want.get(i, 0) + c  # -0.0 and 0.0 are one key, as NumPy compares them
        got_ids, got_counts = _marginal(ids, counts)
        assert got_ids.dtype == ids.dtype and got_counts.dtype == np.int64
        assert got_ids.tolist() == sorted(want) and got_counts.tolist() == \
            [want[k] for k in sorted(want)]

    check()


def _score_in_fresh_interpreter(tmp_path: Path, extra: list[str] | None = None) -> dict:
    """Score the start-up benchmark's small XPRESS pair (pickled graph, HDF5-LZF) in a new
    interpreter; return the heavy modules it imported and the result."""
    from gpueval.bench.startup import _xpress_files

    argv, _ = _xpress_files(tmp_path)
    out_json = tmp_path / "r.json"
    probe = ("import json, sys\nfrom gpueval.cli import main\n"
             f"code = main({[*argv, *(extra or []), '--quiet', '--json', str(out_json)]!r})\n"
             "print(json.dumps([code, [m for m in ('numba', 'dask', 'dask.array', "
             "'distributed', 'zarr', 'scipy') if m in sys.modules]]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=120)
    code, modules = json.loads(out.stdout.strip().splitlines()[-1])
    assert code == 0, out.stderr[-800:]
    return {"modules": set(modules), "result": json.loads(out_json.read_text())}


def test_xpress_score_imports_no_numba(tmp_path):
    got = _score_in_fresh_interpreter(tmp_path)
    assert "numba" not in got["modules"]
    assert got["result"]["metrics"]["n_nodes_in_roi"] == 8
