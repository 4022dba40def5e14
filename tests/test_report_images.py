"""Failure pictures of every challenge (each package's ``images.py``) and the report's
neuroglancer link."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image
from xpress_cases import fixture, write_case

from gpueval import api
from gpueval.challenges import cellmap, medsegfm, refuge, urisc, xpress
from gpueval.challenges.cellmap.images import instance_overlay
from gpueval.challenges.urisc import urisc_images
from gpueval.challenges.xpress import node_outcomes
from gpueval.pictures import BLUE, GREY, MAGENTA, ORANGE, RED, pool_colours
from gpueval.report import write_report
from gpueval.viewer import report_link

FIX = Path(__file__).parent / "fixtures"


def _load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _has(img: np.ndarray, colour) -> bool:
    return bool((img.reshape(-1, img.shape[-1]) == np.array(colour, np.uint8)).all(1).any())


def _check_images(images, *, min_side: int = 8):
    assert images, "no picture"
    for title, img in images:
        assert isinstance(title, str) and title
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert min(img.shape[:2]) >= min_side


# --------------------------------------------------------------------------------------------
# pure helpers (hand-checkable)


def test_pool_colours_keeps_thin_structures():
    rgb = np.zeros((4, 4, 3), np.uint8)
    valid = np.zeros((4, 4), bool)
    rgb[0, 0], valid[0, 0] = RED, True  # one red pixel in the top-left 2x2 block
    rgb[2, 2], valid[2, 2] = BLUE, True
    rgb[2, 3], valid[2, 3] = GREY, True
    out = pool_colours(rgb, valid, 2)
    assert out.shape == (2, 2, 3)
    assert out[0, 0].tolist() == list(RED)  # not diluted by the three empty pixels
    assert out[0, 1].tolist() == [0, 0, 0]
    assert out[1, 1].tolist() == [(BLUE[i] + GREY[i]) // 2 for i in range(3)]


def test_instance_overlay_splits_merges_misses():
    g = np.array([[1, 1, 1, 1, 2, 2, 0, 3]])
    p = np.array([[5, 5, 5, 6, 5, 5, 7, 0]])
    # gt 1 -> main 5 (3 voxels), gt 2 -> 5; pred 5 -> main gt 1, 6 -> 1
    maps = (np.array([1, 2, 3], np.uint64), np.array([5, 5, 0], np.uint64),
            np.array([5, 6], np.uint64), np.array([1, 1], np.uint64))
    rgb = instance_overlay(g, p, maps)
    assert rgb[0, 0].tolist() == list(GREY)
    assert rgb[0, 3].tolist() == list(ORANGE)   # a second fragment of gt 1: split
    assert rgb[0, 4].tolist() == list(MAGENTA)  # gt 2 inside pred 5 whose main is gt 1
    assert rgb[0, 6].tolist() == list(RED)      # predicted on background
    assert rgb[0, 7].tolist() == list(BLUE)     # missed


def test_node_outcomes():
    # skeleton 0: nodes 0-1-2, segments 10, 10, 11 (split); skeleton 1: node 3 in segment 11
    # (merged with skeleton 0's node 2); skeleton 2: nodes 4-5 in 12 (correct)
    sk = np.array([0, 0, 0, 1, 2, 2])
    seg = np.array([10, 10, 11, 11, 12, 12], np.uint64)
    edges = np.array([[0, 1], [1, 2], [4, 5]])
    out = node_outcomes(sk, seg, edges, next_id=13)
    assert out.tolist() == [0, 1, 2, 2, 0, 0]
    bg = node_outcomes(np.array([0, 0]), np.array([5, 13], np.uint64), np.array([[0, 1]]), 13)
    assert bg.tolist() == [1, 1]  # a background (fresh id) node counts as split


# --------------------------------------------------------------------------------------------
# U-RISC


@pytest.fixture(scope="module")
def urisc_case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("urisc")
    gt_dir, sub_dir = tmp / "gt", tmp / "sub"
    gt_dir.mkdir()
    sub_dir.mkdir()
    for name in ("perfect", "shift_1px"):
        z = _load(FIX / "urisc" / f"{name}.npz")
        Image.fromarray(z["gt"]).save(gt_dir / f"{name}.png")
        tifffile.imwrite(sub_dir / f"{name}.tiff", z["pred"])
    r = api.score("urisc", gt_dir, sub_dir)
    assert r.status == "ok"
    return r, gt_dir, sub_dir


def test_urisc_worst_image_agreement_map(urisc_case):
    r, gt, sub = urisc_case
    images = urisc.report_images(r, gt, sub, r.extra.get("config"))
    _check_images(images)
    title, img = images[0]
    assert title.startswith("shift_1px")  # the worst image, not the perfect one
    assert img.shape[:2] == (256, 256)
    assert _has(img, RED) and _has(img, BLUE) and _has(img, GREY)


def test_urisc_overview_is_downsampled(urisc_case):
    r, gt, sub = urisc_case
    _, img = urisc_images(r, gt, sub, None, max_side=100)[0]
    assert max(img.shape[:2]) <= 100 and img.shape[2] == 3
    assert (img.sum(-1) > 0).any()


# --------------------------------------------------------------------------------------------
# CellMap (the synthetic end-to-end fixture, zarr v2)


def _cellmap_write(root: Path, crop: str, label: str, data, vs, tr):
    g = zarr.open_group(str(root), mode="a", zarr_format=2)
    a = g.require_group(crop).create_array(label, shape=data.shape, dtype=data.dtype,
                                           chunks=(16,) * data.ndim)
    a[:] = data
    a.attrs["voxel_size"] = list(map(float, vs))
    a.attrs["translation"] = list(map(float, tr))


@pytest.fixture(scope="module")
def cellmap_case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cellmap")
    truth, sub = tmp / "truth", tmp / "sub.zarr"
    for f in sorted((FIX / "cellmap" / "e2e").glob("*.npz")):
        crop, label, kind = f.stem.split("_")
        z = _load(f)
        _cellmap_write(truth if kind == "truth" else sub, crop, label, z["data"],
                       z["voxel_size"], z["translation"])
    r = api.score("cellmap", truth, sub)
    assert r.status == "ok"
    return r, truth, sub


def test_cellmap_worst_items_slices(cellmap_case):
    r, truth, sub = cellmap_case
    images = cellmap.report_images(r, truth, sub, r.extra.get("config"))
    _check_images(images)
    errors = {it["id"] for it in r.items if it["fp"] + it["fn"] > 0 and it["status"] == "scored"}
    shown = {t.split(" ")[0] for t, _ in images}
    assert shown and shown <= errors
    # every picture of an item with errors shows some error colour
    for _, img in images:
        assert any(_has(img, c) for c in (RED, BLUE, ORANGE, MAGENTA))


# --------------------------------------------------------------------------------------------
# XPRESS (the "mixed" fixture: splits and merges)


@pytest.fixture(scope="module")
def xpress_case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("xpress")
    skel, sub, _ = write_case(tmp, "mixed")
    z = fixture("mixed")
    r = api.score("xpress", skel, sub, overrides=["roi=none"])
    assert r.status == "ok"
    return r, skel, sub, z["segmentation"].shape


def test_xpress_nodes_by_outcome(xpress_case):
    r, skel, sub, shape = xpress_case
    images = xpress.report_images(r, skel, sub, r.extra.get("config"))
    _check_images(images)
    title, img = images[0]
    assert img.shape[:2] == shape[1:]
    if r.metrics["split_count"] > 0 or r.metrics["merge_count"] > 0:
        assert _has(img, ORANGE) or _has(img, MAGENTA)


# --------------------------------------------------------------------------------------------
# MedSegFM


@pytest.fixture(scope="module")
def medsegfm_case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("medsegfm")
    truth, sub = tmp / "truth", tmp / "sub"
    truth.mkdir()
    sub.mkdir()
    for name in ("perfect", "ct_aniso_3class"):
        z = _load(FIX / "medsegfm" / f"{name}.npz")
        np.savez(truth / f"{name}.npz", gts=z["gts"], spacing=z["spacing"])
        np.savez(sub / f"{name}.npz", segs=z["segs"])
    r = api.score("medsegfm", truth, sub)
    assert r.status == "ok"
    return r, truth, sub


def test_medsegfm_worst_case_per_class(medsegfm_case):
    r, truth, sub = medsegfm_case
    worst = min(r.items, key=lambda it: it["dsc"])["id"]
    images = medsegfm.report_images(r, truth, sub, r.extra.get("config"))
    _check_images(images)
    assert all(t.startswith(worst) for t, _ in images)
    classes = r.extra["cases"][worst]["classes"]
    assert 1 <= len(images) <= len(classes)
    assert any(_has(img, RED) or _has(img, BLUE) for _, img in images)


# --------------------------------------------------------------------------------------------
# REFUGE


@pytest.fixture(scope="module")
def refuge_case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refuge")
    truth, sub = tmp / "truth", tmp / "sub"
    (truth / "Disc_Cup_Masks").mkdir(parents=True)
    (sub / "segmentation").mkdir(parents=True)
    for name in ("perfect", "shifted"):
        z = _load(FIX / "refuge" / f"seg_{name}.npz")
        Image.fromarray(z["gt"]).save(truth / "Disc_Cup_Masks" / f"{name}.bmp")
        Image.fromarray(z["pred"]).save(sub / "segmentation" / f"{name}.bmp")
    r = api.score("refuge", truth, sub)
    assert r.status == "ok"
    return r, truth, sub


def test_refuge_worst_image_disc_and_cup(refuge_case):
    r, truth, sub = refuge_case
    images = refuge.report_images(r, truth, sub, r.extra.get("config"))
    _check_images(images)
    assert len(images) == 2
    assert all(t.startswith("shifted.bmp") for t, _ in images)
    for _, img in images:
        assert img.shape[:2] == (300, 320)
        assert _has(img, RED) and _has(img, BLUE)


def test_report_renders_challenge_pictures(refuge_case, tmp_path):
    r, truth, sub = refuge_case
    text = write_report(r, tmp_path / "r.html", truth=str(truth),
                        submission=str(sub)).read_text()
    assert text.count("data:image/png;base64,") == 2
    assert "pictures unavailable" not in text


# --------------------------------------------------------------------------------------------
# Neuroglancer


def test_report_link_opens_the_worst_crop(cellmap_case):
    r, truth, sub = cellmap_case
    entry = report_link(r, truth, sub, url_prefix="https://data.example/pub")
    assert entry is not None and entry["url"].startswith("https://")
    assert entry["command"].startswith("gpueval view cellmap")
    names = [layer["name"] for layer in entry["state"]["layers"]]
    assert names == ["truth", "submission", "errors"]
    json.loads(json.dumps(entry))  # strict JSON


def test_medsegfm_zarr_case_lazy_pictures_and_link(tmp_path):
    z = _load(FIX / "medsegfm" / "ct_aniso_3class.npz")
    truth, sub = tmp_path / "truth", tmp_path / "sub"
    g = zarr.open_group(str(truth / "ct.zarr"), mode="w")
    a = g.create_array("gts", shape=z["gts"].shape, dtype=z["gts"].dtype, chunks=(8, 48, 48))
    a[:] = z["gts"]
    a.attrs["spacing"] = z["spacing"].tolist()
    s = zarr.open_group(str(sub / "ct.zarr"), mode="w")
    b = s.create_array("segs", shape=z["segs"].shape, dtype=z["segs"].dtype, chunks=(8, 48, 48))
    b[:] = z["segs"]
    r = api.score("medsegfm", truth, sub)
    assert r.status == "ok"
    images = medsegfm.report_images(r, truth, sub, r.extra.get("config"))
    _check_images(images)
    assert any(_has(img, RED) or _has(img, BLUE) for _, img in images)
    entry = report_link(r, truth, sub, url_prefix="https://data.example/pub")
    sources = [layer.get("source", "") for layer in entry["state"]["layers"]]
    assert sources[0].startswith("zarr3://") and sources[0].endswith("ct.zarr/gts")
    assert sources[1].endswith("ct.zarr/segs")
