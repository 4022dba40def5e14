"""What a ``gpueval score cellmap`` process does not import (issue #19, session 9):
``scipy.optimize`` (one C function of it is loaded alone) and ``scipy.fftpack``/``scipy.fft``
(``dask.array.fft``'s optional import, skipped by the command line). Checked through
``sys.modules`` of a fresh interpreter and equal results, never through timings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import linear_sum_assignment as scipy_lsa

from gpueval import startup_imports

ROOT = Path(__file__).resolve().parents[1]


@settings(max_examples=60, deadline=None)
@given(arrays(st.sampled_from([np.int64, np.float64]),
              st.tuples(st.integers(0, 6), st.integers(0, 6)),
              elements=st.integers(-50, 50)),
       st.booleans())
def test_the_lone_extension_is_scipys_function(cost, maximize):
    """Same assignment as ``scipy.optimize.linear_sum_assignment`` (ties included: it is the
    same C code), through the lone extension and through the public fallback."""
    lone = startup_imports.lsap_extension()
    assert lone is not None  # this SciPy keeps it in scipy/optimize/_lsap*.so
    want = scipy_lsa(cost, maximize=maximize)
    for got in (lone(cost, maximize=maximize),
                startup_imports.linear_sum_assignment(cost, maximize=maximize)):
        assert [a.tolist() for a in got] == [a.tolist() for a in want]


def test_skip_dask_fftpack_is_a_no_op_once_dask_array_is_imported():
    import dask.array  # noqa: F401 - imported: nothing left to skip

    before = list(sys.meta_path)
    startup_imports.skip_dask_fftpack()
    assert sys.meta_path == before


_PROBE = """
import json, os, runpy, sys
os.environ["GPUEVAL_FULL_EXIT"] = "1"  # main returns instead of ending the process
sys.argv = ["gpueval"] + json.loads(sys.argv[1])
try:
    runpy.run_module("gpueval", run_name="__main__")
except SystemExit as e:
    code = e.code
import dask.array.fft
finders = [type(f).__name__ for f in sys.meta_path]
loaded = [m for m in ("scipy.optimize", "scipy.fft", "scipy.fftpack", "distributed", "zarr",
                      "tensorstore") if m in sys.modules]
import scipy.fftpack  # after the score, an ordinary import works as ever
print(json.dumps([code, loaded, dask.array.fft.scipy is None, scipy.fftpack.__name__,
                  "_SkipDaskFftpack" in finders]))
"""


def _shifted_case(root: Path) -> list[str]:
    """A 40³ ``mito`` crop whose submission starts one voxel further (so it is pasted onto
    the truth grid and rechunked) with a one-row manifest: the ``score`` arguments."""
    import zarr

    from gpueval.bench.cellmap import build_crop
    from gpueval.challenges.cellmap.manifest import write_manifest
    from gpueval.io.align import Grid

    gt, pred = build_crop(40, 6, seed=9)
    for name, data, shift in (("truth", gt, 0.0), ("sub.zarr", pred[1:, 1:, 1:], 8.0)):
        grp = zarr.open_group(str(root / name), mode="a", zarr_format=2)
        arr = grp.require_group("crop1").create_array("mito", shape=data.shape,
                                                      dtype=data.dtype, chunks=(16,) * 3)
        arr[:] = data
        arr.attrs.update(voxel_size=[8.0] * 3, translation=[shift] * 3)
    write_manifest(root / "m.csv", [(1, "synthetic", "mito", Grid((8.0,) * 3, (0.0,) * 3,
                                                                  gt.shape))])
    return ["score", "cellmap", "--truth", str(root / "truth"), "--submission",
            str(root / "sub.zarr"), "--device", "cpu", "--quiet", "--json",
            str(root / "r.json"), "--set", f"manifest={root / 'm.csv'}",
            "--set", "chunk=[24,24,24]"]


def test_cellmap_score_process_loads_no_scipy_optimize_fft_or_distributed(tmp_path):
    """``python -m gpueval score cellmap`` (the real entry point) of a submission that is
    pasted and rechunked: no ``scipy.optimize``, no SciPy FFT (and ``dask.array.fft`` without
    it), no ``distributed`` (dask imports it at each rechunk unless told the method), no
    zarr or tensorstore; ``scipy.fftpack`` still imports afterwards."""
    argv = _shifted_case(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    p = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv)], capture_output=True,
                       text=True, env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=120)
    assert p.stdout.strip(), p.stderr[-2000:]
    code, loaded, dask_fft_without_scipy, fftpack, finder_left = json.loads(
        p.stdout.splitlines()[-1])
    assert code == 0 and loaded == [], p.stderr[-2000:]
    assert dask_fft_without_scipy and fftpack == "scipy.fftpack" and not finder_left
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["status"] == "ok" and result["items"][0]["tp"] > 0


@pytest.mark.parametrize("found", [True, False])
def test_the_fallback_is_scipy_optimize(monkeypatch, found):
    """The lone extension serves where it is found (and ``scipy.optimize`` is not imported);
    elsewhere (another SciPy layout) the public import does."""
    asked = []
    monkeypatch.setattr(startup_imports, "_LSA", None)
    monkeypatch.setattr(startup_imports, "lsap_extension",
                        lambda: asked.append(1) or (scipy_lsa if found else None))
    monkeypatch.setattr(startup_imports, "_from_scipy_optimize",
                        lambda: asked.append(2) or scipy_lsa)
    monkeypatch.delitem(sys.modules, "scipy.optimize", raising=False)
    got = startup_imports.linear_sum_assignment(np.array([[3, 1], [1, 3]]))
    assert [a.tolist() for a in got] == [[0, 1], [1, 0]]
    assert asked == ([1] if found else [1, 2])
