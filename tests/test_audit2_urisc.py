"""Second independent audit of the U-RISC scorer against ``shared/specs/urisc.md``.

Every expected value below is worked out by hand in the comment beside it (or by a few lines of
the spec's formula written here), never taken from gpueval's output. Cases target what the
first audit (``test_audit_urisc.py``) leaves implicit: the exact threshold 122/123, the
format-check boundary 1/6, the shape of ``disk(r)`` (which offsets a radius reaches), matches
across band seams, per-image mean vs pooled counts, and how ``cv2.imread(path, 0)`` turns RGBA,
palette, grey+extra-sample, 16-bit and oddly encoded TIFFs into grey (libtiff's RGBA reader:
unassociated alpha is premultiplied; OpenCV refuses 2/4-bit grey).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from emulated.audit_device import DEVICE, _emulated_cupy  # noqa: F401  (autouse)
from PIL import Image

from gpueval.api import score
from gpueval.challenges.urisc.imread import _GreyImage
from gpueval.challenges.urisc.options import _Options
from gpueval.config import load_config
from gpueval.errors import Rejected, TruthError

BG, MEM = 255, 0  # stored values: white background, black membrane


def _blank(h: int, w: int) -> np.ndarray:
    return np.full((h, w), BG, np.uint8)


def _run(tmp_path: Path, pairs: dict[str, tuple[np.ndarray, np.ndarray]], *sets: str,
         writer=None):
    """GT as grey PNG, predictions as TIFF (``writer(path, pred)`` to choose the encoding)."""
    gt_dir, sub_dir = tmp_path / "gt", tmp_path / "sub"
    gt_dir.mkdir(exist_ok=True)
    sub_dir.mkdir(exist_ok=True)
    for stem, (gt, pred) in pairs.items():
        Image.fromarray(gt, mode="L").save(gt_dir / f"{stem}.png")
        if writer is None:
            tifffile.imwrite(sub_dir / f"{stem}.tiff", pred, photometric="minisblack")
        else:
            writer(sub_dir / f"{stem}.tiff", pred)
    return score("urisc", gt_dir, sub_dir, overrides=list(sets), device=DEVICE)


def _prf(res, stem="x"):
    it = {i["id"]: i for i in res.items}[stem]
    return it["precision"], it["recall"], it["f1"]


# ----------------------------------------------------------------------------- §2.2 threshold
def test_gt_threshold_is_less_or_equal_122(tmp_path):
    """Membrane ⇔ stored GT ≤ 122: 122 is membrane, 123 is background."""
    gt = _blank(8, 8)
    gt[1, 1] = 122
    gt[5, 5] = 123
    pred = _blank(8, 8)
    pred[1, 1] = pred[5, 5] = MEM  # 2 predicted pixels, 1 on the (binarised) GT
    res = _run(tmp_path, {"x": (gt, pred)})
    # P = 1/2, R = 1/1, F = 2·½·1/(½+1) = 2/3
    assert _prf(res) == pytest.approx((0.5, 1.0, 2 / 3), abs=1e-15)
    assert res.items[0]["n_gt"] == 1 and res.items[0]["tp"] == 1


def test_released_script_weights_recall_by_grey_level(tmp_path):
    """§4: without binarisation a GT pixel weighs 255 − value; precision sees GT ≠ 255."""
    gt = _blank(8, 8)
    gt[2, 2] = 0  # weight 255
    gt[4, 4] = 155  # weight 100
    pred = _blank(8, 8)
    pred[2, 2] = MEM
    res = _run(tmp_path, {"x": (gt, pred)}, "variant=released-script")
    # P = 255/255 = 1; R = 255 / (255 + 100); F = 2R/(1+R)
    r = 255 / 355
    assert _prf(res) == pytest.approx((1.0, r, 2 * r / (1 + r)), abs=1e-15)
    # binarised (default): 155 > 122 is background, so the prediction is perfect
    assert _prf(_run(tmp_path, {"x": (gt, pred)})) == (1.0, 1.0, 1.0)


# ----------------------------------------------------------------------------- §2.3 format
def test_format_check_membrane_exactly_one_sixth_is_accepted(tmp_path):
    """black // white ≥ 5 after inversion: 6 membrane in 36 pixels passes, 7 fail."""
    gt = _blank(6, 6)
    gt[0, :] = MEM
    pred = _blank(6, 6)
    pred[0, :] = MEM  # 6 membrane, 30 background: 30 // 6 = 5
    res = _run(tmp_path, {"x": (gt, pred)})
    assert res.status == "ok" and res.score == 1.0
    pred[1, 0] = MEM  # 7 membrane, 29 background: 29 // 7 = 4 < 5
    res = _run(tmp_path, {"x": (gt, pred)})
    assert res.status == "rejected" and "1/6" in res.error


def test_all_membrane_gt_is_scored(tmp_path):
    """GT all membrane (no 0/0 anywhere): P = 1, R = k / n."""
    gt = np.full((6, 6), MEM, np.uint8)
    pred = _blank(6, 6)
    pred[3, :] = MEM  # 6 of 36
    res = _run(tmp_path, {"x": (gt, pred)})
    r = 6 / 36
    assert _prf(res) == pytest.approx((1.0, r, 2 * r / (1 + r)), abs=1e-15)


def test_format_check_skip_scores_empty_prediction_both_empty_as_one(tmp_path):
    """§2.6 with the check off: both empty → P = R = F = 1; empty prediction → 1, 0, 0."""
    res = _run(tmp_path, {"x": (_blank(5, 5), _blank(5, 5))}, "format_check=skip")
    assert _prf(res) == (1.0, 1.0, 1.0)
    gt = _blank(5, 5)
    gt[2, 2] = MEM
    res = _run(tmp_path, {"x": (gt, _blank(5, 5))}, "format_check=skip")
    assert _prf(res) == (1.0, 0.0, 0.0)
    # and with the check on, the official ZeroDivisionError is a rejection
    assert _run(tmp_path, {"x": (gt, _blank(5, 5))}).status == "rejected"


# ----------------------------------------------------------------------------- §3 disk(r)
@pytest.mark.parametrize(("offset", "reached_from"), [
    ((0, 1), 1), ((1, 1), 2), ((0, 2), 2), ((1, 2), 3), ((2, 2), 3), ((0, 3), 3), ((1, 3), 4)])
def test_disk_radius_reaches_offsets_with_dy2_plus_dx2_at_most_r2(tmp_path, offset, reached_from):
    """skimage ``disk(r)`` = offsets with dy² + dx² ≤ r²: (1, 2) has 5 > 4, so r = 2 misses
    it and r = 3 reaches it; (2, 2) has 8 ≤ 9; (1, 3) has 10 > 9."""
    gt = _blank(12, 12)
    gt[4, 4] = MEM
    pred = _blank(12, 12)
    pred[4 + offset[0], 4 + offset[1]] = MEM
    for r in range(0, 5):
        res = _run(tmp_path, {"x": (gt, pred)}, "variant=bold", f"radius={r}")
        expected = 1.0 if r >= reached_from else 0.0
        assert res.score == expected, (offset, r)


def test_bold_counts_undilated_map_against_dilated_other(tmp_path):
    """GT one pixel, prediction a 3×3 block around it, r = 1 (cross-shaped disk):
    P = |pred ∧ disk(gt)| / |pred| = 5/9, R = |gt ∧ dil(pred)| / |gt| = 1, F = 5/7."""
    gt = _blank(8, 8)
    gt[4, 4] = MEM
    pred = _blank(8, 8)
    pred[3:6, 3:6] = MEM  # 9 of 64 membrane: 55 // 9 = 6 ≥ 5
    res = _run(tmp_path, {"x": (gt, pred)}, "variant=bold", "radius=1")
    assert _prf(res) == pytest.approx((5 / 9, 1.0, 5 / 7), abs=1e-15)


@pytest.mark.parametrize("band_rows", [1, 2, 3, 10, 11, 40])
def test_matches_across_band_seams(tmp_path, band_rows):
    """GT on row 9, prediction on row 11 (2 rows apart), r = 2: every pixel matches whatever
    the band height (halo = r rows), so F = 1; with r = 1 nothing matches, F = 0."""
    gt = _blank(24, 20)
    gt[9, 2:18] = MEM
    pred = _blank(24, 20)
    pred[11, 2:18] = MEM
    band = f"band_bytes={band_rows * 20}"
    assert _run(tmp_path, {"x": (gt, pred)}, "variant=bold", "radius=2", band).score == 1.0
    assert _run(tmp_path, {"x": (gt, pred)}, "variant=bold", "radius=1", band).score == 0.0


def test_non_integral_radius_is_refused_not_truncated(tmp_path):
    gt = _blank(6, 6)
    gt[2, 2] = MEM
    with pytest.raises(TruthError, match="whole number"):
        _run(tmp_path, {"x": (gt, gt)}, "variant=bold", "radius=1.5")
    with pytest.raises(TruthError, match="whole number"):
        _run(tmp_path, {"x": (gt, gt)}, "min_background_ratio=4.5")
    cfg = load_config("urisc", overrides=["variant=bold", "radius=2.0"])
    assert _Options.from_config(cfg).radius == 2


# ----------------------------------------------------------------------------- aggregation
def test_score_is_mean_of_per_image_f_not_pooled(tmp_path):
    """a: perfect (F = 1). b: GT 10 px on row 1, prediction 1 px elsewhere (F = 0).
    Mean = 0.5; pooled would be P = 1/2, R = 1/11, F = 2/13."""
    ga = _blank(10, 10)
    ga[5, 5] = MEM
    gb = _blank(10, 10)
    gb[1, :] = MEM
    pb = _blank(10, 10)
    pb[7, 7] = MEM
    res = _run(tmp_path, {"a": (ga, ga.copy()), "b": (gb, pb)})
    assert res.score == 0.5 and res.metrics["f1"] == 0.5
    assert res.metrics["pooled_f1"] == pytest.approx(2 / 13, abs=1e-15)
    assert res.metrics["n_images"] == 2


def test_transposed_size_is_rejected(tmp_path):
    gt = _blank(4, 6)
    gt[0, 0] = MEM
    pred = _blank(6, 4)
    pred[0, 0] = MEM
    res = _run(tmp_path, {"x": (gt, pred)})
    assert res.status == "rejected" and "6×4" in res.error and "4×6" in res.error


# ----------------------------------------------------------------------------- reading
def _read(path) -> np.ndarray:
    img = _GreyImage(path)
    return img.rows(0, img.shape[0])


def test_rgba_tiff_unassociated_alpha_is_premultiplied(tmp_path):
    """libtiff's RGBA reader (cv2.imread of an 8-bit TIFF) premultiplies unassociated alpha:
    c' = (c·a + 127) // 255; OpenCV grey then (4899 R + 9617 G + 1868 B + 8192) >> 14."""
    rgba = np.zeros((1, 4, 4), np.uint8)
    rgba[0, :, :3] = 200
    rgba[0, :, 3] = [255, 0, 128, 1]
    tifffile.imwrite(tmp_path / "u.tiff", rgba, photometric="rgb")  # ExtraSamples = 2
    # alpha 255 → 200; 0 → 0; 128 → (25600 + 127) // 255 = 100; 1 → 327 // 255 = 1
    # (equal channels: grey = (16384 v + 8192) >> 14 = v)
    np.testing.assert_array_equal(_read(tmp_path / "u.tiff"), [[200, 0, 100, 1]])
    tifffile.imwrite(tmp_path / "a.tiff", rgba, photometric="rgb", extrasamples=[1])
    np.testing.assert_array_equal(_read(tmp_path / "a.tiff"), [[200, 200, 200, 200]])
    planar = np.moveaxis(rgba, -1, 0)
    tifffile.imwrite(tmp_path / "p.tiff", planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(_read(tmp_path / "p.tiff"), [[200, 0, 100, 1]])


def test_rgba_16bit_unassociated_alpha(tmp_path):
    """16-bit samples go through libtiff's map (v + 128) // 257 first, then premultiply."""
    rgba = np.zeros((1, 2, 4), np.uint16)
    rgba[0, :, :3] = 51400  # → (51400 + 128) // 257 = 200
    rgba[0, :, 3] = [65535, 32896]  # → 255, (32896 + 128) // 257 = 128
    tifffile.imwrite(tmp_path / "u16.tiff", rgba, photometric="rgb")
    np.testing.assert_array_equal(_read(tmp_path / "u16.tiff"), [[200, 100]])


def test_transparent_background_rgba_prediction_reads_as_membrane(tmp_path):
    """End to end: an RGBA prediction whose background is white but fully transparent reads
    black everywhere (premultiplied), i.e. all membrane: rejected by the 1/6 rule."""
    gt = _blank(6, 6)
    gt[2, :] = MEM

    def write_rgba(path, pred):
        rgba = np.dstack([pred, pred, pred, np.where(pred == BG, 0, 255).astype(np.uint8)])
        tifffile.imwrite(path, rgba, photometric="rgb")

    res = _run(tmp_path, {"x": (gt, gt.copy())}, writer=write_rgba)
    assert res.status == "rejected" and "membrane" in res.error

    def write_opaque(path, pred):
        tifffile.imwrite(path, np.dstack([pred, pred, pred, np.full_like(pred, 255)]),
                         photometric="rgb")

    assert _run(tmp_path, {"x": (gt, gt.copy())}, writer=write_opaque).score == 1.0


def test_palette_tiff_reads_through_the_colormap(tmp_path):
    """Palette: a 16-bit colormap (any entry ≥ 256) is shifted >> 8, an 8-bit one kept,
    then OpenCV grey. Index 0 = white, 1 = black, 2 = (10, 200, 30):
    48990 + 1923400 + 56040 + 8192 = 2036622, >> 14 = 124."""
    idx = np.array([[0, 1, 2]], np.uint8)
    cmap16 = np.zeros((3, 256), np.uint16)
    cmap16[:, 0] = 65535
    cmap16[:, 2] = [10 << 8, 200 << 8, 30 << 8]
    tifffile.imwrite(tmp_path / "p16.tiff", idx, photometric="palette", colormap=cmap16)
    np.testing.assert_array_equal(_read(tmp_path / "p16.tiff"), [[255, 0, 124]])
    cmap8 = np.zeros((3, 256), np.uint16)
    cmap8[:, 0] = 255
    cmap8[:, 2] = [10, 200, 30]
    tifffile.imwrite(tmp_path / "p8.tiff", idx, photometric="palette", colormap=cmap8)
    np.testing.assert_array_equal(_read(tmp_path / "p8.tiff"), [[255, 0, 124]])
    # Pillow's "P" mode TIFF: a binary mask saved with a white/black palette scores normally
    gt = _blank(6, 6)
    gt[3, :] = MEM

    def write_p(path, pred):
        im = Image.fromarray((pred == MEM).astype(np.uint8), mode="P")
        im.putpalette([255, 255, 255, 0, 0, 0])
        im.save(path)

    assert _run(tmp_path, {"x": (gt, gt.copy())}, writer=write_p).score == 1.0


def test_grey_tiff_with_extra_samples_reads_sample_zero(tmp_path):
    """libtiff's grey reader takes the first sample and skips extra ones."""
    arr = np.dstack([np.full((2, 2), 10, np.uint8), np.full((2, 2), 200, np.uint8),
                     np.full((2, 2), 90, np.uint8)])
    tifffile.imwrite(tmp_path / "g.tiff", arr, photometric="minisblack", extrasamples=[0, 0],
                     planarconfig="contig")
    np.testing.assert_array_equal(_read(tmp_path / "g.tiff"), np.full((2, 2), 10))


def test_16bit_grey_prediction_high_byte(tmp_path):
    """16-bit grey → high byte: 0..255 reads 0 (membrane), 65535 and 65280 read 255."""
    gt = _blank(6, 6)
    gt[1, :] = MEM
    pred16 = np.where(gt == MEM, 255, 65280).astype(np.uint16)  # 255 >> 8 = 0; 65280 >> 8 = 255
    res = _run(tmp_path, {"x": (gt, pred16)},
               writer=lambda p, a: tifffile.imwrite(p, a, photometric="minisblack"))
    assert res.status == "ok" and res.score == 1.0


@pytest.mark.parametrize("kind", ["4bit", "orientation"])
def test_tiffs_opencv_cannot_read_as_is_are_rejected(tmp_path, kind):
    """4-bit grey: OpenCV refuses it (``cv2.imread`` → None, the official script crashes).
    Orientation ≠ 1: OpenCV re-orients; this reader does not, so it refuses to guess."""
    arr = np.array([[0, 15], [7, 1]], np.uint8)
    if kind == "4bit":
        tifffile.imwrite(tmp_path / "t.tiff", arr, bitspersample=4, photometric="minisblack")
    else:
        tifffile.imwrite(tmp_path / "t.tiff", arr * 17, extratags=[(274, 3, 1, 4, True)])
    with pytest.raises(Rejected, match="4-bit|Orientation"):
        _GreyImage(tmp_path / "t.tiff")
    with pytest.raises(TruthError):  # the same file as GT is a truth error
        _GreyImage(tmp_path / "t.tiff", truth=True)


def test_orientation_one_is_accepted(tmp_path):
    arr = np.array([[0, 255], [255, 255]], np.uint8)
    tifffile.imwrite(tmp_path / "o.tiff", arr, extratags=[(274, 3, 1, 1, True)])
    np.testing.assert_array_equal(_read(tmp_path / "o.tiff"), arr)
