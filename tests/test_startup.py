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
         "scipy", "h5py", "networkx", "cupy", "pandas", "skimage", "PIL", "openpyxl")


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
    # budget), numba, tensorstore, HDF5 or graph libraries, and no dask.array (gpueval.engine
    # imports it only where a graph over arrays is built)
    got = _imported_after("import gpueval.challenges.urisc")
    assert got & {"dask.array", "zarr", "numcodecs", "numba", "tensorstore", "h5py",
                  "networkx", "scipy", "distributed", "cupy", "pandas", "skimage"} == set()


def test_engine_imports_no_array_stack():
    assert _imported_after("import gpueval.engine") & {"dask.array", "distributed", "scipy",
                                                        "zarr", "numba"} == set()


def test_threaded_compute_does_not_import_distributed():
    # dask.compute(scheduler="threads") imports distributed (~0.1 s) to look for a default
    # client; the engine hands dask the threaded scheduler's function instead
    code = ("from dask import delayed\nfrom gpueval.engine import compute\n"
            "assert compute(delayed(sum)([1, 2]), delayed(len)('ab')) == (3, 2)\n"
            "assert compute(delayed(sum)([1, 2]), scheduler='sync') == (3,)")
    assert _imported_after(code) & {"distributed", "zarr"} == set()


def test_urisc_score_imports_only_what_it_reads_with(tmp_path):
    # a whole U-RISC score of a small LZW TIFF pair, in a fresh interpreter: what it imports
    # on the way (not only at import time) stays off the volume stack
    import numpy as np
    import tifffile

    (tmp_path / "gt").mkdir()
    (tmp_path / "sub").mkdir()
    img = np.full((64, 48), 255, np.uint8)
    img[::8] = 0
    tifffile.imwrite(tmp_path / "gt" / "a.tif", img, compression="lzw", rowsperstrip=1)
    tifffile.imwrite(tmp_path / "sub" / "a.tiff", np.roll(img, 1, 0), compression="lzw",
                     rowsperstrip=1)
    code = ("import gpueval\n"
            f"r = gpueval.score('urisc', {str(tmp_path / 'gt')!r}, {str(tmp_path / 'sub')!r}, "
            "device='cpu')\nassert r.status == 'ok' and r.items[0]['n_gt'] == 8 * 48, r")
    assert _imported_after(code) & {"dask.array", "distributed", "zarr", "numcodecs", "numba",
                                    "scipy", "tensorstore", "h5py", "networkx", "PIL"} == set()


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


def test_xpress_scorer_imports_no_zarr():
    # XPRESS submissions are HDF5 (h5py) or zarr: zarr (~0.1 s) is imported for a .zarr only
    # and numba (~0.15 s) only when a Numba kernel first runs: XPRESS builds its table in NumPy
    assert _imported_after("import gpueval.challenges.xpress") & {
        "zarr", "numcodecs", "dask.array", "distributed", "tensorstore", "PIL",
        "numba"} == set()


def test_refuge_scorer_imports_no_array_stack():
    # REFUGE reads BMP/CSV: no Dask at all (limits and progress set and draw without it), and
    # openpyxl only for an .xlsx truth
    assert _imported_after("import gpueval.challenges.refuge, gpueval.cli, gpueval.api\n"
                           "from gpueval.limits import use_limits\n"
                           "with use_limits({}): pass") & {
        "dask", "dask.array", "zarr", "numba", "tensorstore", "scipy", "h5py", "networkx",
        "distributed", "openpyxl"} == set()


def test_numba_kernels_compile_on_first_call_in_a_fresh_process():
    code = ("import sys, numpy as np\nfrom gpueval.kernels import stats\n"
            "assert 'numba' not in sys.modules\n"
            "c = stats.contingency(np.array([1, 1, 2]), np.array([3, 3, 4]))\n"
            "assert c.counts.tolist() == [2, 1], c\n"
            "assert type(stats._insert).__name__ == 'CPUDispatcher'")
    assert "numba" in _imported_after(code)


def _cellmap_pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A tiny CellMap truth and submission (zarr v2, 8³ chunks, two mito instances, one of
    them shifted in the prediction) and a one-row manifest, written in this process."""
    import numpy as np
    import zarr

    from gpueval.challenges.cellmap.manifest import write_manifest
    from gpueval.io.align import Grid

    gt = np.zeros((16, 16, 16), np.uint32)
    gt[2:6, 2:6, 2:6] = 1
    gt[9:14, 8:15, 3:9] = 2
    pred = np.roll(gt, 1, axis=2)
    for root, data in ((tmp_path / "truth", gt), (tmp_path / "sub.zarr", pred)):
        grp = zarr.open_group(str(root), mode="a", zarr_format=2)
        arr = grp.require_group("crop1").create_array("mito", shape=data.shape,
                                                      dtype=data.dtype, chunks=(8, 8, 8))
        arr[:] = data
        arr.attrs["voxel_size"] = [8.0] * 3
        arr.attrs["translation"] = [0.0] * 3
    manifest = tmp_path / "manifest.csv"
    write_manifest(manifest, [(1, "synthetic", "mito", Grid((8.0,) * 3, (0.0,) * 3,
                                                               gt.shape))])
    return tmp_path / "truth", tmp_path / "sub.zarr", manifest


def test_cellmap_local_score_imports_neither_distributed_nor_zarr(tmp_path):
    # a local CellMap score never needs dask.distributed (~0.1 s of start-up): every compute
    # hands dask a scheduler function, since a scheduler *name* (or none) makes dask import
    # distributed to look for a client. The report pictures compute too, so it is drawn here.
    # Plain zarr v2 arrays are decoded from their chunk files (io.arrays._ZarrV2Reader): no
    # zarr (~0.1 s) either.
    truth, sub, manifest = _cellmap_pair(tmp_path)
    code = ("import gpueval\n"
            f"r = gpueval.score('cellmap', {str(truth)!r}, {str(sub)!r}, device='cpu', "
            f"overrides=['manifest={manifest}'])\n"
            "assert r.status == 'ok' and r.items[0]['tp'] == 2, r\n"
            "from gpueval.report import write_report\n"
            f"write_report(r, {str(tmp_path / 'r.html')!r}, truth={str(truth)!r}, "
            f"submission={str(sub)!r})")
    assert _imported_after(code) & {"distributed", "zarr"} == set()


def _run_main_module(args: list[str], tmp_path: Path, env: dict | None = None,
                     before: str = ""):
    """``python -m gpueval ARGS`` as runpy runs it, with an ``atexit`` handler registered
    first (it must run on every exit path), an object whose ``__del__`` prints only if the
    interpreter tears the modules down, and the code ``before`` run first."""
    mark = tmp_path / "atexit-ran"
    code = ("import atexit, runpy, sys\n"
            f"atexit.register(lambda: open({str(mark)!r}, 'w').write('ran'))\n"
            f"{before}"
            "class Teardown:\n"
            "    def __del__(self):\n"
            "        sys.stderr.write('torn down\\n')\n"
            "sys.modules['teardown_probe'] = type(sys)('teardown_probe')\n"
            "sys.modules['teardown_probe'].probe = Teardown()\n"
            f"sys.argv = ['gpueval', *{args!r}]\n"
            "runpy.run_module('gpueval', run_name='__main__')\n")
    full_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    full_env.pop("GPUEVAL_FULL_EXIT", None)
    full_env.update(env or {})
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=full_env, cwd=ROOT, timeout=120)
    return p, mark.exists()


def test_score_process_skips_the_teardown_but_not_the_atexit_handlers(tmp_path):
    truth, sub, manifest = _cellmap_pair(tmp_path)
    out = tmp_path / "out.json"
    args = ["score", "cellmap", "--truth", str(truth), "--submission", str(sub), "--set",
            f"manifest={manifest}", "--device", "cpu", "--json", str(out)]
    p, ran = _run_main_module(args, tmp_path)
    assert p.returncode == 0, p.stderr
    assert ran and "torn down" not in p.stderr  # atexit handlers yes, module teardown no
    # no JIT on the hot path: in a second fresh process every Numba kernel that runs is
    # loaded from the cache the first one wrote (or found); none compiles (a kernel without
    # cache=True would count a miss in every process)
    jit = tmp_path / "jit.json"
    probe = ("def _compiled():\n"
             "    import gc, json, numba\n"
             "    found = {d.py_func.__qualname__: [sum(d._cache_hits.values()),\n"
             "                                      sum(d._cache_misses.values())]\n"
             "             for d in gc.get_objects()\n"
             "             if isinstance(d, numba.core.dispatcher.Dispatcher) and d.signatures}\n"
             f"    open({str(jit)!r}, 'w').write(json.dumps(found))\n"
             "atexit.register(_compiled)\n")
    p, _ = _run_main_module(args, tmp_path, before=probe)
    kernels = json.loads(jit.read_text())
    assert p.returncode == 0 and len(kernels) >= 3, (p.stderr, kernels)
    assert all(hits >= 1 and misses == 0 for hits, misses in kernels.values()), kernels
    assert json.loads(out.read_text())["items"][0]["tp"] == 2
    assert "mito" in p.stdout  # the table, flushed before the process ended
    # a rejection keeps its exit status (3) and its message
    (sub / "crop1" / "mito" / ".zattrs").write_text('{"voxel_size": [8, 8, "x"]}')
    p, ran = _run_main_module(args, tmp_path)
    assert p.returncode == 3 and ran and "rejected" in json.loads(out.read_text())["status"]


def test_full_exit_when_asked_or_for_other_commands(tmp_path):
    p, ran = _run_main_module(["config", "cellmap"], tmp_path)
    assert p.returncode == 0 and ran and "torn down" in p.stderr
    p, ran = _run_main_module(["validate", "cellmap", "--submission", str(tmp_path / "nope")],
                              tmp_path, env={"GPUEVAL_FULL_EXIT": "1"})
    assert ran and "torn down" in p.stderr
