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
