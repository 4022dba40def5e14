"""The arrays API with device arrays: CuPy, a Dask array of CuPy chunks, a CUDA torch tensor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gpueval import arrays

pytestmark = pytest.mark.gpu
cupy = pytest.importorskip("cupy")

FIX = Path(__file__).parents[1] / "fixtures"


def _device_kinds():
    import dask.array as da

    kinds = {"cupy": cupy.asarray,
             "dask_cupy": lambda a: da.from_array(cupy.asarray(a), chunks=16, asarray=False)}
    try:
        import torch

        if torch.cuda.is_available():
            kinds["torch_cuda"] = lambda a: torch.as_tensor(np.ascontiguousarray(a),
                                                            device="cuda")
    except ImportError:
        pass
    return kinds


@pytest.mark.parametrize("kind", sorted(_device_kinds()))
def test_medsegfm_device_arrays_give_the_official_numbers(kind):
    make = _device_kinds()[kind]
    scores = json.loads((FIX / "medsegfm" / "scores.json").read_text())["semantic"]
    z = np.load(FIX / "medsegfm" / "ct_aniso_3class.npz", allow_pickle=False)
    r = arrays.medsegfm({"c": make(z["gts"])}, {"c": make(z["segs"])},
                        spacing=tuple(z["spacing"]), device="gpu")
    assert r.status == "ok", r.error
    assert r.items[0]["dsc"] == pytest.approx(scores["ct_aniso_3class"]["case_dsc"], abs=1e-6)


def test_host_array_of_cupy_is_equal():
    a = np.arange(60, dtype=np.uint32).reshape(3, 4, 5)
    np.testing.assert_array_equal(arrays.host_array(cupy.asarray(a)), a)
