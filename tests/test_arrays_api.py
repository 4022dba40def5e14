"""The arrays API (issue #23): the file path's numbers from NumPy, Dask and torch arrays."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

import gpueval
from gpueval import arrays

FIX = Path(__file__).parent / "fixtures"


class ArrayLike:
    """Only ``__array__``: what a third-party container (xarray, h5py dataset…) offers."""

    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


class DLPackOnly:
    """Only the DLPack protocol (what JAX, CuPy and torch share), on the CPU."""

    def __init__(self, a):
        self._a = np.ascontiguousarray(a)

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def _kinds():
    kinds = {"numpy": lambda a: a, "dask": lambda a: da.from_array(a, chunks=16),
             "array_like": ArrayLike, "dlpack": DLPackOnly}
    try:
        import torch

        kinds["torch"] = lambda a: torch.from_numpy(np.ascontiguousarray(a))
    except ImportError:
        pass
    return kinds


KINDS = _kinds()


def test_public_surface_is_lazy_and_listed():
    code = ("import sys, gpueval; assert 'gpueval.api' not in sys.modules; "
            "assert 'dask' not in sys.modules; from gpueval import score; "
            "import gpueval.api; assert score is gpueval.api.score")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
    for name in gpueval.__all__:
        assert getattr(gpueval, name) is not None
    assert gpueval.score_arrays is arrays.score_arrays


def test_host_array_kinds():
    a = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    for make in KINDS.values():
        h = arrays.host_array(make(a))
        np.testing.assert_array_equal(np.asarray(h), a)
    assert arrays.host_array(a) is a  # no copy
    with pytest.raises(TypeError, match="not an array"):
        arrays.host_array(object())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_medsegfm_semantic_fixtures(kind):
    scores = json.loads((FIX / "medsegfm" / "scores.json").read_text())["semantic"]
    names = ["ct_aniso_3class", "tiny_and_low_dice", "perfect"]
    make = KINDS[kind]
    truth, sub, spacing = {}, {}, {}
    for name in names:
        z = np.load(FIX / "medsegfm" / f"{name}.npz", allow_pickle=False)
        truth[name], sub[name] = make(z["gts"]), make(z["segs"])
        spacing[name] = tuple(z["spacing"])
    r = gpueval.arrays.medsegfm(truth, sub, spacing=spacing, device="cpu")
    assert r.status == "ok", r.error
    for it in r.items:  # the official per-case numbers
        assert it["dsc"] == pytest.approx(scores[it["id"]]["case_dsc"], abs=1e-6)
        assert it["nsd"] == pytest.approx(scores[it["id"]]["case_nsd_ungated"], abs=1e-6)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_urisc_fixtures_equal_file_path(tmp_path, kind):
    import tifffile
    from PIL import Image

    cases = json.loads((FIX / "urisc" / "scores.json").read_text())["cases"]
    names = ["shift_1px", "perfect", "grey_gt_loose"]
    make = KINDS[kind]
    truth, sub = {}, {}
    (tmp_path / "gt").mkdir()
    (tmp_path / "sub").mkdir()
    for name in names:
        z = np.load(FIX / "urisc" / f"{name}.npz", allow_pickle=False)
        truth[name], sub[name] = make(z["gt"]), make(z["pred"])
        Image.fromarray(z["gt"]).save(tmp_path / "gt" / f"{name}.png")
        tifffile.imwrite(tmp_path / "sub" / f"{name}.tiff", z["pred"])
    r = arrays.urisc(truth, sub, device="cpu", overrides=["variant=released-script"])
    f = gpueval.score("urisc", tmp_path / "gt", tmp_path / "sub", device="cpu",
                      overrides=["variant=released-script"])
    assert r.status == f.status == "ok"
    assert r.items == f.items and r.score == f.score
    for it in r.items:  # and the official script's numbers (GT as stored, radius 0)
        want = cases[it["id"]]["official_gt_as_stored_bound0"]
        assert it["f1"] == pytest.approx(want["F"], abs=1e-12)


def test_urisc_refuses_non_uint8_truth():
    with pytest.raises(TypeError, match="uint8"):
        arrays.urisc({"a": np.zeros((4, 4), np.float32)}, {"a": np.zeros((4, 4), np.uint8)})


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_cellmap_fixtures(kind):
    scores = json.loads((FIX / "cellmap" / "scores.json").read_text())
    make = KINDS[kind]
    inst = np.load(FIX / "cellmap" / "instance_mixed_errors.npz", allow_pickle=False)
    sem = np.load(FIX / "cellmap" / "semantic_prob_thresholded.npz", allow_pickle=False)
    truth = {(1, "mito"): make(inst["gt"]), (1, "er"): make(sem["gt"])}
    sub = {(1, "mito"): make(inst["pred"]), (1, "er"): make(sem["pred"])}
    r = arrays.cellmap(truth, sub, voxel_size=tuple(inst["voxel_size"]), device="cpu")
    assert r.status == "ok", r.error
    items = {it["id"]: it for it in r.items}
    for item, case in ((items["crop1/mito"], scores["instance"]["mixed_errors"]),
                       (items["crop1/er"], scores["semantic"]["prob_thresholded"])):
        for key, want in case["official"].items():  # counts and status exact, floats to 1e-9
            assert item[key] == (pytest.approx(want, rel=1e-9) if isinstance(want, float)
                                 else want), key


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_xpress_fixture(kind, tmp_path):
    from xpress_cases import fixture, write_case

    from gpueval.io.skeleton import Skeleton

    name = "mixed"
    want = json.loads((FIX / "xpress" / "scores.json").read_text())["cases"][name]
    z = fixture(name)
    skel_path, sub_path, overrides = write_case(tmp_path, name)
    on_files = gpueval.score("xpress", skel_path, sub_path, overrides=overrides, device="cpu")
    skeleton = Skeleton(z["node_ids"], z["node_position_xyz"], z["edges"])
    r = arrays.xpress(skeleton, KINDS[kind](z["segmentation"]), voxel_size=z["voxel_size"],
                      offset=z["offset"], overrides=overrides, device="cpu")
    assert r.status == "ok", r.error
    assert r.metrics == on_files.metrics
    assert r.score == pytest.approx(want["xpress_erl_rand"], rel=1e-6)


def test_score_arrays_dispatch_and_refusal():
    from gpueval.errors import UsageError

    with pytest.raises(UsageError, match="no array form"):
        gpueval.score_arrays("refuge", {}, {})
    z = np.load(FIX / "medsegfm" / "perfect.npz", allow_pickle=False)
    r = gpueval.score_arrays("medsegfm", {"p": z["gts"]}, {"p": z["segs"]},
                             spacing=tuple(z["spacing"]), device="cpu")
    assert r.items[0]["dsc"] == 1.0


def test_score_takes_arrays_too():
    from gpueval.errors import UsageError

    z = np.load(FIX / "medsegfm" / "tiny_and_low_dice.npz", allow_pickle=False)
    want = json.loads((FIX / "medsegfm" / "scores.json").read_text())["semantic"][
        "tiny_and_low_dice"]["case_dsc"]
    r = gpueval.score("medsegfm", da.from_array(z["gts"]), z["segs"],
                      spacing=tuple(z["spacing"]), device="cpu")
    assert [it["id"] for it in r.items] == ["case"]
    assert r.items[0]["dsc"] == pytest.approx(want, abs=1e-6)
    with pytest.raises(UsageError, match="only for array inputs"):
        gpueval.score("medsegfm", "gt/", "sub/", spacing=(1, 1, 1))


def test_writing_phase_counts_bytes(monkeypatch):
    from gpueval import progress

    done = []
    real = progress.Phase.update
    monkeypatch.setattr(progress.Phase, "update",
                        lambda self, n=1: done.append((self.label, n)) or real(self, n))
    z = np.load(FIX / "medsegfm" / "perfect.npz", allow_pickle=False)
    arrays.medsegfm({"p": z["gts"]}, {"p": da.from_array(z["segs"])},
                    spacing=tuple(z["spacing"]), device="cpu", progress=True)
    writes = [(label, n) for label, n in done if label.startswith("writing")]
    assert writes == [("writing p", z["gts"].nbytes), ("writing p", z["segs"].nbytes)]
