"""Issue #21 items 3/4 for U-RISC, XPRESS, MedSegFM and REFUGE: whatever a scorer skips,
ignores, reads differently or fills in is a user warning (``Result.warnings`` / validate's
``.warnings``) naming the file and the fix, with the score unchanged; messages name
submission-relative paths only."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gpueval import api
from gpueval.challenges import urisc

# ---------------------------------------------------------------------------------------------
# U-RISC


def _urisc_pair(root: Path, stem: str, pred: np.ndarray | None) -> tuple[Path, Path]:
    gt = np.full((24, 24), 255, np.uint8)
    gt[8, :] = 0  # one membrane row: 24 of 576 pixels
    (root / "gt").mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(parents=True, exist_ok=True)
    Image.fromarray(gt).save(root / "gt" / f"{stem}.png")
    if pred is not None:
        tifffile.imwrite(root / "sub" / f"{stem}.tiff", pred)
    return root / "gt", root / "sub"


def _urisc_good() -> np.ndarray:
    pred = np.full((24, 24), 255, np.uint8)
    pred[8, :12] = 0
    return pred


@pytest.mark.parametrize("low", [1, 127, 254])
def test_urisc_map_without_background_names_the_real_reason(tmp_path, low):
    """0/127 (no 255): the official check refuses it too, but the reason is "no pixel is
    background", not "too much membrane (inverted map?)"."""
    pred = np.full((24, 24), low, np.uint8)
    pred[8, :] = 0  # 24 / 576 = 4.2 % stored 0: the old message said "4.2 % membrane"
    gt, sub = _urisc_pair(tmp_path, "a", pred)
    r = api.score("urisc", gt, sub, device="cpu")
    assert r.status == "rejected"
    assert "no pixel is background" in r.error and f"0, {low}" in r.error
    assert "inverted" not in r.error and "a.tiff" in r.error
    with pytest.raises(Exception, match="no pixel is background"):
        api.validate("urisc", sub)


def test_urisc_all_membrane_and_thick_membrane_messages():
    h = np.zeros(256, np.int64)
    h[0] = 100
    assert "every pixel is 0" in urisc.value_problem(h, "x.tiff")
    h[255] = 400  # 20 % membrane: too thick, not inverted
    msg = urisc.value_problem(h, "x.tiff")
    assert "at most 1/6" in msg and "inverted" not in msg and "too thick" in msg
    h[0], h[255] = 400, 100  # 80 % membrane: an inverted map is the likely cause
    assert "inverted map?" in urisc.value_problem(h, "x.tiff")
    h[0], h[255] = 100, 500  # exactly 1/6: passes (official ratio 5)
    assert urisc.value_problem(h, "x.tiff") is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=256, max_size=256))
def test_urisc_value_problem_same_verdict_as_official_check(counts):
    """Only the wording changes: a map is refused exactly when the official check refuses."""
    from gpueval.kernels.boundary import format_problem

    h = np.zeros(256, np.int64)
    # sparse histograms: at most three values present, so every branch is reached
    for v in (0, 127, 255):
        h[v] = counts[v]
    assert (urisc.value_problem(h, "x") is None) == (format_problem(h, "x") is None)


def test_urisc_missing_image_is_warned_and_marked(tmp_path):
    gt, sub = _urisc_pair(tmp_path, "a", _urisc_good())
    _urisc_pair(tmp_path, "b", None)
    r = api.score("urisc", gt, sub, overrides=["missing=zero"], device="cpu")
    assert r.status == "ok"
    by_id = {it["id"]: it for it in r.items}
    assert by_id["b"]["status"] == "missing" and by_id["b"]["f1"] == 0.0
    assert "status" not in by_id["a"]
    # a: P = 1, R = 12/24, F = 2/3; b: empty prediction, F = 0 -> mean 1/3
    assert r.score == pytest.approx(1 / 3)
    assert any("b: no b.tiff" in w and "empty prediction" in w for w in r.warnings)
    v = api.validate("urisc", sub, truth=gt, overrides=["missing=zero"])
    assert any("b: no b.tiff" in w for w in v.warnings)


def test_urisc_ignored_files_warned_with_relative_names(tmp_path):
    gt, sub = _urisc_pair(tmp_path, "a", _urisc_good())
    (sub / "deep").mkdir()
    (sub / "deep" / "notes.txt").write_text("x")
    tifffile.imwrite(sub / "deep" / "zz.tiff", _urisc_good())  # stem without GT
    Image.fromarray(_urisc_good()).save(sub / "a.png")  # lower priority than a.tiff
    clean = api.score("urisc", *_urisc_pair(tmp_path / "clean", "a", _urisc_good()),
                      device="cpu")
    r = api.score("urisc", gt, sub, device="cpu")
    assert r.score == clean.score == pytest.approx(2 / 3)
    text = " | ".join(r.warnings)
    assert "deep/notes.txt" in text and "a.png" in text and "deep/zz.tiff" in text
    assert str(tmp_path) not in text
    assert not clean.warnings
    v = api.validate("urisc", sub)
    assert any("deep/notes.txt" in w for w in v.warnings)


def test_urisc_format_skip_is_warned(tmp_path):
    pred = _urisc_good()
    pred[0, 0] = 128  # a third value: refused by the official check
    gt, sub = _urisc_pair(tmp_path, "a", pred)
    r = api.score("urisc", gt, sub, overrides=["format_check=skip"], device="cpu")
    assert r.status == "ok"
    assert any("a.tiff" in w and "not binarised" in w and "format_check=skip" in w
               for w in r.warnings)


def test_urisc_rejections_name_relative_paths(tmp_path):
    gt, sub = _urisc_pair(tmp_path, "a", _urisc_good())
    (sub / "x").mkdir()
    tifffile.imwrite(sub / "x" / "a.tif", _urisc_good())  # .tif vs .tiff: different rank
    tifffile.imwrite(sub / "x" / "a.tiff", _urisc_good())
    r = api.score("urisc", gt, sub, device="cpu")
    assert r.status == "rejected" and "x/a.tiff" in r.error and str(tmp_path) not in r.error
    # an unreadable zip member: the message names the member, not the spooled temp file
    z = tmp_path / "result.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.tiff", b"II*\x00garbage")
    r = api.score("urisc", gt, z, device="cpu")
    assert r.status == "rejected" and "a.tiff" in r.error
    assert "gpueval-urisc-" not in r.error and "/tmp" not in r.error


# ---------------------------------------------------------------------------------------------
# REFUGE


def _refuge_mask(cup_rows: slice) -> np.ndarray:
    m = np.full((16, 16), 255, np.uint8)
    m[2:14, 2:14] = 128  # disc
    m[cup_rows, 5:11] = 0  # cup
    return m


def _refuge_case(root: Path) -> tuple[Path, Path]:
    """Truth: masks a/b, labels (a glaucoma, b not); submission: both masks, both scores."""
    truth, sub = root / "truth", root / "sub"
    (truth / "Disc_Cup_Masks").mkdir(parents=True)
    (sub / "segmentation").mkdir(parents=True)
    for name in ("a", "b"):
        Image.fromarray(_refuge_mask(slice(5, 11))).save(truth / "Disc_Cup_Masks" / f"{name}.bmp")
        Image.fromarray(_refuge_mask(slice(6, 11))).save(sub / "segmentation" / f"{name}.bmp")
    (truth / "glaucoma_labels.csv").write_text("filename,label\na.jpg,1\nb.jpg,0\n")
    (sub / "classification_results.csv").write_text("FileName,Glaucoma Risk\na.jpg,0.9\n"
                                                    "b.jpg,0.2\n")
    return truth, sub


def test_refuge_png_masks_give_nan_with_a_warning(tmp_path):
    truth, sub = _refuge_case(tmp_path)
    for name in ("a", "b"):
        (sub / "segmentation" / f"{name}.bmp").rename(sub / "segmentation" / f"{name}.png")
    r = api.score("refuge", truth, sub, device="cpu")
    assert r.status == "ok" and np.isnan(r.metrics["mean_cup_dice"])
    assert r.metrics["auc"] == 1.0  # the other task is unaffected
    text = " | ".join(r.warnings)
    assert "segmentation/a.png" in text and ".bmp" in text and str(tmp_path) not in text
    v = api.validate("refuge", sub, truth=truth)
    assert any("segmentation/a.png" in w for w in v.warnings)


def test_refuge_extra_files_warned_score_unchanged(tmp_path):
    truth, sub = _refuge_case(tmp_path)
    clean = api.score("refuge", truth, sub, device="cpu")
    assert clean.warnings == []
    Image.fromarray(_refuge_mask(slice(6, 11))).save(sub / "segmentation" / "c.png")
    (sub / "fovea_results.csv").write_text("ImageName,Fovea_X,Fovea_Y\nx.jpg,1,2\n")
    r = api.score("refuge", truth, sub, device="cpu")
    # cup Dice per image: 2*30/(36+30) = 10/11 for both masks (5 rows x 6 vs 6 rows x 6)
    assert r.metrics["mean_cup_dice"] == clean.metrics["mean_cup_dice"] == pytest.approx(10 / 11)
    text = " | ".join(r.warnings)
    assert "segmentation/c.png" in text and "fovea_results.csv" in text


@pytest.mark.parametrize("compat", ["official", "corrected"])
def test_refuge_unknown_rows_and_masks_are_warned(tmp_path, compat):
    truth, sub = _refuge_case(tmp_path)
    with open(sub / "classification_results.csv", "a") as f:
        f.write("zz.jpg,0.5\n")
    Image.fromarray(_refuge_mask(slice(6, 11))).save(sub / "segmentation" / "zz.bmp")
    r = api.score("refuge", truth, sub, overrides=[f"compat={compat}"], device="cpu")
    text = " | ".join(r.warnings)
    assert "classification_results.csv" in text and "zz.jpg" in text
    assert "segmentation/zz.bmp" in text
    if compat == "official":
        assert np.isnan(r.metrics["auc"]) and np.isnan(r.metrics["mean_cup_dice"])
    else:
        assert r.metrics["auc"] == 1.0
        assert r.metrics["mean_cup_dice"] == pytest.approx(10 / 11)


def test_refuge_data_looking_header_is_warned(tmp_path):
    truth, sub = _refuge_case(tmp_path)
    (sub / "classification_results.csv").write_text("c.jpg,0.4\na.jpg,0.9\nb.jpg,0.2\n")
    r = api.score("refuge", truth, sub, overrides=["compat=corrected"], device="cpu")
    assert any("classification_results.csv" in w and "header" in w for w in r.warnings)
    v = api.validate("refuge", sub)
    assert any("header" in w for w in v.warnings)


def test_refuge_unreadable_mask_message_has_no_server_path(tmp_path):
    truth, sub = _refuge_case(tmp_path)
    (sub / "segmentation" / "a.bmp").write_bytes(b"BMnot really")
    r = api.score("refuge", truth, sub, device="cpu")
    assert r.status == "rejected" and "segmentation/a.bmp" in r.error
    assert str(tmp_path) not in r.error
    with pytest.raises(Exception) as e:
        api.validate("refuge", sub)
    assert "segmentation/a.bmp" in str(e.value) and str(tmp_path) not in str(e.value)


# ---------------------------------------------------------------------------------------------
# MedSegFM


def _medseg_case(root: Path, names=("c1", "c2"), *, interactive=False) -> tuple[Path, Path]:
    """Cases with one 4x4x4 cube of class 1 in an 8^3 volume; perfect predictions."""
    truth, sub = root / "truth", root / "sub"
    truth.mkdir(parents=True)
    sub.mkdir(parents=True)
    gts = np.zeros((8, 8, 8), np.uint8)
    gts[2:6, 2:6, 2:6] = 1
    for name in names:
        np.savez(truth / f"{name}.npz", gts=gts, spacing=np.array([1.0, 1.0, 1.0]))
        if interactive:
            (sub / name).mkdir()
            for k in range(1, 7):  # n_steps = 6 (configs/medsegfm.yaml)
                np.savez(sub / name / f"step_{k}.npz", segs=gts)
        else:
            np.savez(sub / f"{name}.npz", segs=gts)
    return truth, sub


def test_medsegfm_missing_case_warned_and_marked(tmp_path):
    truth, sub = _medseg_case(tmp_path)
    (sub / "c2.npz").unlink()
    r = api.score("medsegfm", truth, sub, device="cpu")
    by_id = {it["id"]: it for it in r.items}
    assert by_id["c2"]["status"] == "missing" and by_id["c2"]["dsc"] == 0.0
    assert "status" not in by_id["c1"]
    assert r.score == pytest.approx(0.5)  # (1 + 0) / 2: the missing case counts as zero
    assert any(w.startswith("c2: no c2.npz") and "all-zero" in w for w in r.warnings)
    v = api.validate("medsegfm", sub, truth=truth)
    assert any("c2: no c2.npz" in w for w in v.warnings)


def test_medsegfm_unread_files_warned_score_unchanged(tmp_path):
    truth, sub = _medseg_case(tmp_path)
    clean = api.score("medsegfm", truth, sub, device="cpu")
    assert clean.score == 1.0 and clean.warnings == []
    (sub / "c1.nii.gz").write_bytes(b"x")
    np.savez(sub / "zz.npz", segs=np.zeros((8, 8, 8), np.uint8))
    r = api.score("medsegfm", truth, sub, device="cpu")
    assert r.score == clean.score
    text = " | ".join(r.warnings)
    assert "c1.nii.gz" in text and "zz.npz" in text and str(tmp_path) not in text
    v = api.validate("medsegfm", sub)
    assert any("c1.nii.gz" in w for w in v.warnings)


@pytest.mark.parametrize("how", ["zeros", "previous"])
def test_medsegfm_interactive_missing_step_warned(tmp_path, how):
    truth, sub = _medseg_case(tmp_path, ["c1"], interactive=True)
    (sub / "c1" / "step_3.npz").unlink()
    (sub / "c1" / "notes.txt").write_text("x")
    r = api.score("medsegfm", truth, sub, overrides=["track=interactive",
                                                     f"interactive.missing_step={how}"],
                  device="cpu")
    assert r.status == "ok", r.error
    text = " | ".join(r.warnings)
    assert "c1/: no file for step_3" in text and "c1/notes.txt" in text
    # zeros: DSC_3 = 0; previous: step 2's perfect file is reused, DSC_3 = 1
    assert r.items[0]["dsc_3"] == (0.0 if how == "zeros" else 1.0)
    assert r.items[0]["dsc"] == 1.0  # the final step is present either way


def test_medsegfm_rejection_names_relative_path(tmp_path):
    truth, sub = _medseg_case(tmp_path)
    (sub / "c1.npz").write_bytes(b"PK\x03\x04 not a zip")
    r = api.score("medsegfm", truth, sub.resolve(), device="cpu")
    assert r.status == "rejected" and "c1.npz" in r.error
    assert str(tmp_path.resolve()) not in r.error


# ---------------------------------------------------------------------------------------------
# XPRESS


def _xpress(tmp_path: Path, *, dtype=None, attrs=None, name="merge"):
    """Fixture ``name`` written as h5; ``dtype`` recasts the labels, ``attrs`` replaces the
    grid attributes (None: the fixture's resolution/offset)."""
    import h5py
    from xpress_cases import fixture, write_case

    tmp_path.mkdir(parents=True, exist_ok=True)
    skel, sub, ov = write_case(tmp_path, name)
    if dtype is not None or attrs is not None:
        seg = fixture(name)["segmentation"]
        with h5py.File(sub, "r+") as f:
            old = dict(f["submission"].attrs)
            del f["submission"]
            d = f.create_dataset("submission", data=seg.astype(dtype or seg.dtype))
            for k, v in (old if attrs is None else attrs).items():
                d.attrs[k] = v
    return skel, sub, ov


def _xpress_score(skel, sub, ov):
    import json

    sets = [f"{k}={json.dumps(v)}" if not isinstance(v, str) else f"{k}={v}"
            for k, v in ov.items()]
    return api.score("xpress", skel, sub, overrides=sets, device="cpu")


def test_xpress_non_uint64_dtype_is_warned_same_score(tmp_path):
    clean = _xpress_score(*_xpress(tmp_path / "a"))
    assert clean.status == "ok", clean.error
    assert clean.warnings == []
    r = _xpress_score(*_xpress(tmp_path / "b", dtype=np.int32))
    assert r.score == clean.score
    assert any("merge.h5:submission" in w and "int32" in w and "uint64" in w
               for w in r.warnings)


def test_xpress_ignored_and_missing_grid_attributes_are_warned(tmp_path):
    from xpress_cases import fixture

    z = fixture("merge")
    attrs = {"voxel_size": np.asarray(z["voxel_size"]), "translation": np.asarray(z["offset"])}
    skel, sub, ov = _xpress(tmp_path, attrs=attrs)
    r = _xpress_score(skel, sub, ov)
    text = " | ".join(r.warnings)
    assert "voxel_size, translation ignored" in text and "'resolution'" in text
    assert "no 'resolution' attribute" in text and str(tmp_path) not in text
    v = api.validate("xpress", sub, overrides=[f"roi={ov['roi']}"] if isinstance(
        ov["roi"], str) else [])
    assert any("voxel_size, translation ignored" in w for w in v.warnings)


def test_xpress_nodes_outside_the_roi_are_warned(tmp_path):
    from xpress_cases import fixture

    z = fixture("merge")
    far = np.asarray(z["offset"]) + 1000 * np.asarray(z["voxel_size"])  # far from every node
    skel, sub, ov = _xpress(tmp_path, attrs={"resolution": np.asarray(z["voxel_size"]),
                                             "offset": far})
    r = _xpress_score(skel, sub, ov)
    assert any("skeleton nodes lie outside the scored ROI" in w and "'offset'" in w
               for w in r.warnings), (r.status, r.error, r.warnings)


def test_xpress_rejections_name_the_submission_not_the_server_path(tmp_path):
    import h5py

    sub = tmp_path / "team.h5"
    with h5py.File(sub, "w") as f:
        f.create_dataset("other", data=np.zeros((4, 4, 4), np.uint64))
    skel, _, _ = _xpress(tmp_path)
    r = api.score("xpress", skel, sub.resolve(), overrides=["roi=none"], device="cpu")
    assert r.status == "rejected" and "team.h5" in r.error
    assert str(tmp_path.resolve()) not in r.error
    r = api.score("xpress", skel, (tmp_path / "nope.h5").resolve(), overrides=["roi=none"],
                  device="cpu")
    assert r.status == "rejected" and str(tmp_path.resolve()) not in r.error


def test_xpress_transform_translate_fallback_is_warned_same_score(tmp_path):
    """A zarr whose offset is only in transform.translate scores as with 'offset' (the
    fallback), with a warning saying so."""
    import zarr
    from xpress_cases import fixture, write_case

    skel, sub, ov = write_case(tmp_path, "merge", fmt="zarr")
    clean = _xpress_score(skel, sub, ov)
    a = zarr.open_group(str(sub), mode="r+")["submission"]
    offset = a.attrs["offset"]
    attrs = dict(a.attrs)
    del attrs["offset"]
    a.attrs.clear()
    a.attrs.update({**attrs, "transform": {"translate": offset}})
    r = _xpress_score(skel, sub, ov)
    assert r.score == clean.score and fixture("merge")["offset"].tolist() == offset
    assert any("transform.translate" in w and "'offset'" in w for w in r.warnings)


def test_medsegfm_validate_warns_stray_step_files(tmp_path):
    truth, sub = _medseg_case(tmp_path, ["c1"], interactive=True)
    (sub / "c1" / "step_7.npz").write_bytes(b"")  # n_steps = 6
    v = api.validate("medsegfm", sub, overrides=["track=interactive"])
    assert any("c1/step_7.npz: would be ignored" in w for w in v.warnings)
