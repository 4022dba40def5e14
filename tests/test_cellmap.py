"""CellMap end to end through gpueval.api (zarr v2 layout built from the e2e fixture)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr

from gpueval.api import score, validate

FIX = Path(__file__).parent / "fixtures" / "cellmap"
E2E = json.loads((FIX / "scores.json").read_text())["e2e"]


def _write(root: Path, crop: str, label: str, data, vs, tr, chunks=(16, 16, 16)):
    g = zarr.open_group(str(root), mode="a", zarr_format=2)
    cg = g.require_group(crop)
    a = cg.create_array(label, shape=data.shape, dtype=data.dtype, chunks=chunks)
    a[:] = data
    if vs is not None:
        a.attrs["voxel_size"] = list(map(float, vs))
    if tr is not None:
        a.attrs["translation"] = list(map(float, tr))
    return a


def build_e2e(tmp: Path, sub_name: str = "sub.zarr") -> tuple[Path, Path]:
    truth, sub = tmp / "truth", tmp / sub_name
    for f in sorted((FIX / "e2e").glob("*.npz")):
        crop, label, kind = f.stem.split("_")
        z = np.load(f, allow_pickle=False)
        _write(truth if kind == "truth" else sub, crop, label, z["data"], z["voxel_size"],
               z["translation"])
    return truth, sub


def _check_official(r):
    want = E2E["official_all_scores"]
    assert r.status == "ok", r.error
    assert r.score == pytest.approx(want["overall_score"], rel=1e-6)
    for k in ("overall_instance_score", "overall_semantic_score", "overall_score"):
        assert r.metrics[k] == pytest.approx(want[k], rel=1e-6)
    for label, vals in want["label_scores"].items():
        for k, v in vals.items():
            if k not in ("tp", "fp", "fn"):
                assert r.metrics[f"{label}_{k}"] == pytest.approx(v, rel=1e-6)
    items = {it["id"]: it for it in r.items}
    expected_ids = {f"{c}/{lab}" for c, labs in want.items() if c.startswith("crop")
                    for lab in labs}
    assert set(items) == expected_ids
    for c, labs in want.items():
        if not c.startswith("crop"):
            continue
        for lab, s in labs.items():
            it = items[f"{c}/{lab}"]
            for k in ("tp", "fp", "fn", "status", "num_voxels", "n_hausdorff"):
                if k in s:
                    assert it[k] == s[k], (c, lab, k)
            if "hausdorff_norm_sum" in s:
                assert it["hausdorff_norm_sum"] == pytest.approx(s["hausdorff_norm_sum"],
                                                                 rel=1e-6, abs=1e-12)
    pub = r.extra["public_scores"]
    assert set(pub["label_scores"]) == set(E2E["official_public_json"]["label_scores"])


def test_e2e_folder(tmp_path):
    truth, sub = build_e2e(tmp_path)
    r = score("cellmap", truth, sub, device="cpu")
    _check_official(r)
    assert r.runtime["voxels"] > 0
    json.loads(r.to_json())


def test_e2e_zip_nested_and_no_crop_prefix(tmp_path):
    truth, sub = build_e2e(tmp_path)
    # rename crop folders to bare ids and nest the zarr inside another folder in a zip
    for d in list(sub.iterdir()):
        if d.is_dir() and d.name.startswith("crop"):
            d.rename(sub / d.name.removeprefix("crop"))
    zpath = tmp_path / "upload.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for f in sub.rglob("*"):
            if f.is_file():
                z.write(f, "outer/" + f.relative_to(tmp_path).as_posix())
    r = score("cellmap", truth, zpath, device="cpu")
    _check_official(r)


def test_two_nested_zarr_rejected(tmp_path):
    truth, sub = build_e2e(tmp_path)
    shutil.copytree(sub, tmp_path / "wrap" / "a.zarr")
    shutil.copytree(sub, tmp_path / "wrap" / "b.zarr")
    r = score("cellmap", truth, tmp_path / "wrap", device="cpu")
    assert r.status == "rejected" and "nested" in r.error


def test_no_volumes_rejected(tmp_path):
    truth, _ = build_e2e(tmp_path)
    other = tmp_path / "other"
    _write(other, "cropX", "mito", np.zeros((4, 4, 4), np.uint8), None, None)
    r = score("cellmap", truth, other, device="cpu")
    assert r.status == "rejected" and "no volumes" in r.error.lower()


def _group_label_submission(tmp_path):
    """crop9002/er submitted as a plain multiscale group (s0 at 4 nm, s1 at 8 nm)."""
    truth, sub = build_e2e(tmp_path)
    z = np.load(FIX / "e2e" / "crop9002_er_pred.npz", allow_pickle=False)
    shutil.rmtree(sub / "crop9002" / "er")
    g = zarr.open_group(str(sub / "crop9002"), mode="a", zarr_format=2).require_group("er")
    for name, step, vs in (("s0", 1, 4.0), ("s1", 2, 8.0)):
        d = z["data"][::step, ::step, ::step]
        a = g.create_array(name, shape=d.shape, dtype=d.dtype, chunks=(16, 16, 16))
        a[:] = d
        a.attrs["voxel_size"] = [vs] * 3
        a.attrs["translation"] = z["translation"].tolist()
    return truth, sub


def test_group_label_is_missing_in_official_mode(tmp_path):
    truth, sub = _group_label_submission(tmp_path)
    r = score("cellmap", truth, sub, device="cpu")
    it = {i["id"]: i for i in r.items}["crop9002/er"]
    assert it["status"] == "missing" and it["fn"] == 40 * 48 * 56


def test_group_label_read_in_corrected_mode(tmp_path):
    truth, sub = _group_label_submission(tmp_path)
    r = score("cellmap", truth, sub, device="cpu", overrides=["compat=corrected"])
    it = {i["id"]: i for i in r.items}["crop9002/er"]
    want = E2E["official_all_scores"]["crop9002"]["er"]
    assert it["status"] == "scored"
    assert (it["tp"], it["fp"], it["fn"]) == (want["tp"], want["fp"], want["fn"])


def test_manifest_restricts_crops(tmp_path):
    truth, sub = build_e2e(tmp_path)
    man = tmp_path / "m.csv"
    man.write_text("crop_name,dataset,class_label,voxel_size,translation,shape\n"
                   "9002,synthetic,mito,[4.0;4.0;4.0],[400.0;400.0;400.0],[40;48;56]\n")
    r = score("cellmap", truth, sub, device="cpu", overrides=[f"manifest={man}"])
    assert {i["id"] for i in r.items} == {"crop9002/er", "crop9002/mito"}
    # er has no manifest row: its geometry comes from the GT array's attributes
    assert r.metrics["er_iou"] == 1.0
    assert r.metrics["mito_combined_score"] == 1.0


def test_mask_quirk_and_masking(tmp_path):
    truth, sub = build_e2e(tmp_path)
    mask = np.zeros((48, 48, 48), np.uint8)
    mask[:24] = 1
    _write(truth, "crop9001", "er_mask", mask, [8.0] * 3, [800.0, 1600.0, 2400.0])
    r = score("cellmap", truth, sub, device="cpu")
    items = {i["id"]: i for i in r.items}
    # official: the mask array is itself a (missing, semantic) label: every voxel a FN
    assert items["crop9001/er_mask"]["status"] == "missing"
    assert items["crop9001/er_mask"]["fn"] == 48 ** 3
    gt = np.load(FIX / "e2e" / "crop9001_er_truth.npz")["data"]
    pr = np.load(FIX / "e2e" / "crop9001_er_pred.npz")["data"]
    g, p = gt[:24] > 0, pr[:24] > 0
    assert items["crop9001/er"]["tp"] == int((g & p).sum())
    assert items["crop9001/er"]["fp"] == int((p & ~g).sum())
    r2 = score("cellmap", truth, sub, device="cpu", overrides=["compat=corrected"])
    assert "crop9001/er_mask" not in {i["id"] for i in r2.items}


def test_validate(tmp_path):
    truth, sub = build_e2e(tmp_path)
    notes = validate("cellmap", sub, truth=truth)
    assert any("crop9003: missing" in n for n in notes)
    assert any("crop9001/cyto: missing" in n for n in notes)


def test_folder_holding_one_zip(tmp_path):
    truth, sub = build_e2e(tmp_path)
    box = tmp_path / "box"
    box.mkdir()
    (box / "README.txt").write_text("our submission")
    with zipfile.ZipFile(box / "sub.zip", "w") as z:
        for f in sub.rglob("*"):
            if f.is_file():
                z.write(f, f.relative_to(sub).as_posix())
    _check_official(score("cellmap", truth, box, device="cpu"))


def test_zip_traversal_rejected(tmp_path):
    truth, _ = build_e2e(tmp_path)
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("crop9001/mito/.zarray", "{}")
        z.writestr("../../etc/evil", "x")
    r = score("cellmap", truth, zpath, device="cpu")
    assert r.status == "rejected"


def test_nan_instance_prediction_rejected(tmp_path):
    truth, sub = build_e2e(tmp_path)
    bad = np.zeros((48, 48, 48), np.float32)
    bad[3, 3, 3] = np.nan
    shutil.rmtree(sub / "crop9001" / "nuc")
    _write(sub, "crop9001", "nuc", bad, [8.0] * 3, [800.0, 1600.0, 2400.0])
    r = score("cellmap", truth, sub, device="cpu")
    assert r.status == "rejected" and r.error


def test_ome_ngff_group_in_corrected_mode(tmp_path):
    truth, sub = build_e2e(tmp_path)
    z = np.load(FIX / "e2e" / "crop9002_mito_pred.npz", allow_pickle=False)  # 2 nm, at 392
    shutil.rmtree(sub / "crop9002" / "mito")
    g = zarr.open_group(str(sub / "crop9002"), mode="a", zarr_format=2).require_group("mito")
    datasets = []
    for name, step in (("s0", 1), ("s1", 2)):
        d = z["data"][::step, ::step, ::step]
        a = g.create_array(name, shape=d.shape, dtype=d.dtype, chunks=(32, 32, 32))
        a[:] = d
        datasets.append({"path": name, "coordinateTransformations": [
            {"type": "scale", "scale": [2.0 * step] * 3},
            {"type": "translation", "translation": [392.0] * 3}]})
    g.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": a, "type": "space"}
                                                          for a in "zyx"],
                               "datasets": datasets}]
    official = {i["id"]: i for i in score("cellmap", truth, sub, device="cpu").items}
    assert official["crop9002/mito"]["status"] == "missing"
    r = score("cellmap", truth, sub, device="cpu", overrides=["compat=corrected"])
    it = {i["id"]: i for i in r.items}["crop9002/mito"]
    assert it["status"] == "scored" and it["fn"] == 0 and it["fp"] == 0 and it["tp"] > 0


@pytest.mark.parametrize("override", ["version=2025", "variant=2025"])
def test_version_2025_selected(tmp_path, override):
    truth, sub = build_e2e(tmp_path)
    r = score("cellmap", truth, sub, device="cpu", overrides=[override])
    assert r.status == "ok" and r.metric_version == "cellmap-2025"
    assert "mito_accuracy" in r.metrics and "er_dice" in r.metrics
    items = {i["id"]: i for i in r.items}
    assert items["crop9002/mito"]["combined_score"] == 1.0  # perfect after alignment
    assert items["crop9003/mito"]["status"] == "missing"
    assert items["crop9003/mito"]["combined_score"] == 0.0


def test_validate_without_truth(tmp_path):
    _, sub = build_e2e(tmp_path)
    notes = validate("cellmap", sub)
    assert any("crop9001 (er, mito, nuc)" in n for n in notes)
    from gpueval.errors import Rejected

    with pytest.raises(Rejected):
        validate("cellmap", sub / "crop9001")


def test_e2e_small_chunks_equal_official(tmp_path):
    # 16^3 work chunks: cross-chunk relabelling, chunked overlaps/boxes, grouped Hausdorff
    truth, sub = build_e2e(tmp_path)
    _check_official(score("cellmap", truth, sub, device="cpu", overrides=["chunk=[16,16,16]"]))


def test_e2e_on_distributed_scheduler(tmp_path):
    distributed = pytest.importorskip("distributed")
    truth, sub = build_e2e(tmp_path)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        r = score("cellmap", truth, sub, device="cpu", scheduler=client,
                  overrides=["chunk=[16,16,16]"])
    _check_official(r)
