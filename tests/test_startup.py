"""Start-up: the CLI and the U-RISC scorer import only what they need.

Every ``gpueval score`` process pays for its imports before it reads a byte; on the inputs the
official U-RISC/REFUGE scorers finish in seconds, dask.array, zarr, numba or tensorstore alone
(0.2-0.7 s each) would cap every ratio. Checked in a fresh interpreter through ``sys.modules``
(never timings, which depend on the machine's load).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("dask", "dask.array", "distributed", "zarr", "numcodecs", "numba", "tensorstore",
         "scipy", "h5py", "networkx", "cupy", "pandas", "skimage")


def _imported_after(code: str) -> set[str]:
    """Which of :data:`HEAVY` a fresh interpreter has imported after running ``code``."""
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_help_imports_nothing_heavy():
    code = ("import contextlib, io, sys\nsys.argv = ['gpueval', '--help']\n"
            "from gpueval.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    main()")
    assert _imported_after(code) == set()


@pytest.mark.parametrize("module", ["gpueval", "gpueval.api", "gpueval.io.arrays",
                                    "gpueval.io.archive"])
def test_entry_points_and_readers_import_no_array_stack(module):
    # dask.array/zarr load only when a volume is opened (open_volume), not with the module
    assert _imported_after(f"import {module}") & {"dask.array", "zarr", "numba", "tensorstore",
                                                   "h5py", "networkx", "scipy"} == set()


def test_urisc_scorer_imports_no_volume_stack():
    # U-RISC reads TIFF/PNG with tifffile/PIL: no zarr (bands only over the whole-decode
    # budget), numba, tensorstore, HDF5 or graph libraries; dask itself still comes with
    # gpueval.engine, which imports dask.array at the top (see benchmarks/README.md)
    got = _imported_after("import gpueval.challenges.urisc")
    assert got & {"zarr", "numcodecs", "numba", "tensorstore", "h5py", "networkx",
                  "distributed", "cupy", "pandas", "skimage"} == set()


def test_floor_timing_reports_each_child_and_refuses_failures():
    from gpueval.bench import floor

    # a child that allocates ~200 MB reports it; a bare interpreter does not inherit it
    big = [sys.executable, "-c", "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])"]
    seconds, rss_big, code = floor.run_process(big)
    assert code == 0 and seconds > 0 and rss_big > 200 * 2**20
    _, rss_bare, _ = floor.run_process([sys.executable, "-c", "pass"])
    assert rss_bare < 100 * 2**20
    rec = floor.side_by_side([sys.executable, "-c", "pass"], "pass", repeat=2,
                             spec_anchor_seconds=9.0)
    assert rec["seconds"] == min(rec["all_seconds"]) and len(rec["all_floor_seconds"]) == 2
    assert rec["ratio_to_floor"] == rec["seconds"] / rec["floor_seconds"]
    assert rec["spec_anchor_seconds"] == 9.0 and len(rec["load_average"]) == 3
    with pytest.raises(RuntimeError, match="status 3"):
        floor.best_of([sys.executable, "-c", "raise SystemExit(3)"], repeat=1)


def test_refuge_scorer_imports_no_array_stack():
    # REFUGE reads BMP/CSV. (XPRESS imports h5py and zarr at the top of its layout module on
    # purpose: tests/test_xpress_package.py forbids function-local imports there.)
    assert _imported_after("import gpueval.challenges.refuge") & {
        "dask.array", "zarr", "numba", "tensorstore", "scipy", "h5py", "networkx",
        "distributed"} == set()
