"""Third audit of the U-RISC scorer against ``shared/specs/urisc.md`` and ``cli.md``.

Audits 1 and 2 checked the metric against a spec-literal reference (hypothesis), the 122/123
threshold, the 1/6 boundary, ``disk(r)`` offsets, band seams, mean-vs-pooled and the TIFF
colour models. This file adds what they leave out, each expected value from the official
fixtures (``tests/fixtures/urisc/scores.json``) or worked out by hand beside the assertion:

* every fixture case under every variant and radius the fixtures give (P, R, F to 1e-12,
  counts exact) — earlier tests cover only a few cases per radius;
* the official format verdict of every fixture case;
* grey (non-binary) predictions with the check off: weights ``255 - v`` in the numerator and
  the denominator, and ``pred_dil = pred != 255`` under dilation;
* the released script with a grey GT *and* a radius (precision sees GT ≠ 255 dilated);
* two-valued predictions other than {0, 255} (ValueError / ZeroDivisionError cases);
* unweighted mean over images of different sizes; ``missing: zero`` with an empty GT;
* stem matching (dotted stems, upper-case suffixes, nested zip folders, duplicates in a zip);
* ``cv2.imread`` rules not pinned yet: 8/16-bit MINISWHITE, 1-bit MINISBLACK, 16-bit grey PNG
  high byte, palette PNG with transparency, 1-bit PNG;
* variant/radius ``--set`` order and unknown variants.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from emulated.audit_device import DEVICE, _emulated_cupy  # noqa: F401  (autouse)
from PIL import Image

from gpueval.api import score, validate
from gpueval.challenges.urisc import imread as urisc_imread
from gpueval.challenges.urisc.imread import _GreyImage
from gpueval.challenges.urisc.options import _Options
from gpueval.config import load_config
from gpueval.errors import Rejected, UsageError

FIX = Path(__file__).parent / "fixtures" / "urisc"
SCORES = json.loads((FIX / "scores.json").read_text())
BG, MEM = 255, 0


def _blank(h: int, w: int) -> np.ndarray:
    return np.full((h, w), BG, np.uint8)


def _write(root: Path, pairs: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> tuple[Path, Path]:
    gt_dir, sub_dir = root / "gt", root / "sub"
    gt_dir.mkdir(parents=True, exist_ok=True)
    sub_dir.mkdir(parents=True, exist_ok=True)
    for stem, (gt, pred) in pairs.items():
        Image.fromarray(gt, mode="L").save(gt_dir / f"{stem}.png")
        if pred is not None:
            tifffile.imwrite(sub_dir / f"{stem}.tiff", pred, photometric="minisblack")
    return gt_dir, sub_dir


def _run(root: Path, pairs, *sets: str):
    gt_dir, sub_dir = _write(root, pairs)
    return score("urisc", gt_dir, sub_dir, overrides=list(sets), device=DEVICE)


def _items(res) -> dict[str, dict]:
    assert res.status == "ok", res.error
    return {it["id"]: it for it in res.items}


# ----------------------------------------------------------------------------- fixtures
def _fixture_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    pairs = {}
    for name in SCORES["cases"]:
        z = np.load(FIX / f"{name}.npz", allow_pickle=False)
        pairs[name] = (z["gt"], z["pred"])
    z = np.load(FIX / "repo_examples.npz", allow_pickle=False)
    for k in ("pre_gt", "1", "2", "3"):
        pairs[f"repo_{k}"] = (z[f"gt_{k}"], z[f"pred_{k}"])
    return pairs


def _expected(stem: str) -> dict:
    if stem.startswith("repo_"):
        return SCORES["repo_examples"][stem[len("repo_"):]]
    return SCORES["cases"][stem]


@pytest.fixture(scope="module")
def fixture_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("all_fixtures")
    pairs = _fixture_pairs()
    gt_dir, sub_dir = _write(root, pairs)
    binary = {s for s, (_, pred) in pairs.items() if set(np.unique(pred)) <= {0, 255}}
    return gt_dir, sub_dir, sorted(pairs), binary


# (variant, radius, fixture key): §2 (binarised, r = 0), §3 (bold r), §4 (GT as stored, r)
PARITY = ([("2019-12-25", 0, "official_gt_binarised_122_bound0")]
          + [("bold", r, f"official_gt_binarised_122_bound{r}") for r in (0, 1, 2, 3)]
          + [("released-script", r, f"official_gt_as_stored_bound{r}") for r in (0, 1, 2, 3)])


@pytest.mark.parametrize(("variant", "radius", "key"), PARITY)
def test_every_fixture_case_every_variant_and_radius(fixture_folder, variant, radius, key):
    """All 18 fixture images at once (format check off so the rejected ones are scored too):
    per-image P, R, F as the official code gives them, and the score = their plain mean."""
    gt_dir, sub_dir, stems, binary = fixture_folder
    sets = [f"variant={variant}", "format_check=skip"]
    if radius:
        sets.append(f"radius={radius}")
    res = score("urisc", gt_dir, sub_dir, overrides=sets, device=DEVICE)
    items = _items(res)
    assert sorted(items) == stems
    fs = []
    for stem in stems:
        exp = _expected(stem)[key]
        it = items[stem]
        assert (it["precision"], it["recall"], it["f1"]) == pytest.approx(
            (exp["P"], exp["R"], exp["F"]), abs=1e-12), stem
        fs.append(exp["F"])
    assert res.score == pytest.approx(float(np.mean(fs)), abs=1e-12)
    if variant == "2019-12-25":  # pixel counts of the binarised metric, exact (the fixture
        for stem in sorted(binary):  # counts pred == 0 pixels: binary predictions only)
            exp = _expected(stem)
            if "diag_tp_px_binarised" in exp:
                it = items[stem]
                assert (it["n_pred"], it["n_gt"], it["tp"]) == (
                    exp["diag_pred_membrane_px"], exp["diag_gt_membrane_px_binarised"],
                    exp["diag_tp_px_binarised"]), stem


def test_repo_examples_whole_dataset_means():
    """eval_on_whole_dataset over pres/gts (raw GT, r = 0) and eval_on_onepic on pre/gt."""
    rx = SCORES["repo_examples"]
    raw = [rx[k]["official_gt_as_stored_bound0"]["F"] for k in ("1", "2", "3")]
    assert float(np.mean(raw)) == pytest.approx(rx["official_eval_on_whole_dataset_pres_gts"],
                                                abs=1e-12)
    assert rx["pre_gt"]["official_gt_as_stored_bound0"]["F"] == pytest.approx(
        rx["official_eval_on_onepic_pre_gt"], abs=1e-12)


@pytest.mark.parametrize("name", sorted(SCORES["cases"]))
def test_every_fixture_format_verdict(tmp_path, name):
    """§2.3: the official check's verdict ('ok', ValueError, ZeroDivisionError) per case;
    anything but 'ok' is a rejection with a reason naming the file."""
    z = np.load(FIX / f"{name}.npz", allow_pickle=False)
    f = tmp_path / f"{name}.tiff"
    tifffile.imwrite(f, z["pred"], photometric="minisblack")
    if SCORES["cases"][name]["official_format_check"] == "ok":
        assert validate("urisc", f)
    else:
        with pytest.raises(Rejected, match=name):
            validate("urisc", f)


# ----------------------------------------------------------------------------- §2.3 format
@pytest.mark.parametrize(("values", "why"), [
    ((0, 128), "ValueError: inverted {255, 127}: no 0 pixel, black // white = 0 < 5"),
    ((128, 255), "ZeroDivisionError: inverted {127, 0}: no 255 pixel"),
    ((0,), "ValueError: all membrane, black = 0"),
    ((77,), "ZeroDivisionError: one grey value"),
])
def test_two_valued_or_constant_non_binary_predictions_are_rejected(tmp_path, values, why):
    gt = _blank(12, 12)
    gt[3, :] = MEM
    pred = np.full((12, 12), values[-1], np.uint8)
    pred[3, :4] = values[0]  # 4 of 144 pixels
    res = _run(tmp_path, {"x": (gt, pred)})
    assert res.status == "rejected", why
    assert res.error.startswith("x.tiff: ")


# ----------------------------------------------------------------------------- weights
def test_grey_prediction_weights_with_check_skipped(tmp_path):
    """format_check=skip: a prediction pixel weighs 255 − v everywhere (§2.5, n_pred = Σ pred).
    GT membrane (1,1), (1,2). Pred: (1,1) = 100 (weight 155), (5,5) = 0 (weight 255).
    P = 155 / (155 + 255) = 155/410; R: pred_dil = pred ≠ 255 covers (1,1): 255/510 = 1/2."""
    gt = _blank(8, 8)
    gt[1, 1:3] = MEM
    pred = _blank(8, 8)
    pred[1, 1] = 100
    pred[5, 5] = MEM
    it = _items(_run(tmp_path, {"x": (gt, pred)}, "format_check=skip"))["x"]
    p, r = 155 / 410, 0.5
    assert (it["precision"], it["recall"]) == pytest.approx((p, r), abs=1e-15)
    assert it["f1"] == pytest.approx(2 * p * r / (p + r), abs=1e-15)
    assert it["n_pred"] == pytest.approx(410 / 255, abs=1e-12)
    # bold r = 1: a grey pixel dilates like a black one (nonzero after inversion).
    # pred (1,1) reaches (1,2): R = 1; P unchanged (pred (5,5) is far from the GT).
    it = _items(_run(tmp_path, {"x": (gt, pred)}, "format_check=skip", "variant=bold",
                     "radius=1"))["x"]
    assert (it["precision"], it["recall"]) == pytest.approx((155 / 410, 1.0), abs=1e-15)


def test_released_script_grey_gt_with_radius(tmp_path):
    """§4 + §3: raw GT, r = 1. GT (2,2) = 0 (weight 255) and (2,6) = 200 (weight 55).
    Pred (2,3) = 0. Precision: gt_dil = dilate(GT ≠ 255) contains (2,3): P = 1.
    Recall: pred_dil = cross around (2,3) covers (2,2), not (2,6): R = 255 / 310."""
    gt = _blank(6, 10)
    gt[2, 2] = 0
    gt[2, 6] = 200
    pred = _blank(6, 10)
    pred[2, 3] = MEM
    it = _items(_run(tmp_path, {"x": (gt, pred)}, "variant=released-script", "radius=1"))["x"]
    r = 255 / 310
    assert (it["precision"], it["recall"], it["f1"]) == pytest.approx(
        (1.0, r, 2 * r / (1 + r)), abs=1e-15)
    # the same pair under bold r = 1: 200 > 122 is background, GT = {(2,2)}: P = R = 1
    it = _items(_run(tmp_path, {"x": (gt, pred)}, "variant=bold", "radius=1"))["x"]
    assert (it["precision"], it["recall"], it["f1"]) == (1.0, 1.0, 1.0)
    # and r = 0 (default): (2,3) misses (2,2): P = 0, R = 0, F = 0 (P + R = 0)
    it = _items(_run(tmp_path, {"x": (gt, pred)}))["x"]
    assert (it["precision"], it["recall"], it["f1"]) == (0.0, 0.0, 0.0)


def test_gt_grey_levels_either_side_of_threshold_with_radius(tmp_path):
    """Binarisation happens before the dilation (§2.2 'before anything else'): a GT pixel of
    value 123 is background and gives no tolerance zone. GT (2,2) = 123, (2,6) = 0.
    Pred (2,3) and (2,7), bold r = 1: (2,3) lies next to a background pixel only → P = 1/2;
    R = |{(2,6)}| / 1 = 1 ((2,7) dilated reaches (2,6)). F = 2/3."""
    gt = _blank(6, 10)
    gt[2, 2] = 123
    gt[2, 6] = 0
    pred = _blank(6, 10)
    pred[2, 3] = pred[2, 7] = MEM
    it = _items(_run(tmp_path, {"x": (gt, pred)}, "variant=bold", "radius=1"))["x"]
    assert (it["precision"], it["recall"], it["f1"]) == pytest.approx((0.5, 1.0, 2 / 3),
                                                                      abs=1e-15)


# ----------------------------------------------------------------------------- aggregation
def test_mean_is_unweighted_over_images_of_different_sizes(tmp_path):
    """'arithmetic mean over images': a 4×4 image counts as much as a 30×30 one.
    small: GT 2 px, pred 1 of them → P = 1, R = 1/2, F = 2/3. big: perfect → F = 1.
    Mean = 5/6 (a pixel-weighted mean would be near 1)."""
    gs = _blank(4, 4)
    gs[1, 1:3] = MEM
    ps = _blank(4, 4)
    ps[1, 1] = MEM
    gb = _blank(30, 30)
    gb[10, :] = MEM
    res = _run(tmp_path, {"small": (gs, ps), "big": (gb, gb.copy())})
    assert res.score == pytest.approx(5 / 6, abs=1e-15)
    assert res.runtime["voxels"] == 16 + 900


def test_missing_zero_with_empty_gt_counts_as_one(tmp_path):
    """missing=zero scores a missing image as an empty prediction: §2.6 both empty → F = 1,
    GT non-empty → F = 0; both count in the mean: (1 + 0 + 1) / 3."""
    g = _blank(6, 6)
    g[2, :] = MEM
    res = _run(tmp_path, {"a": (g, g.copy()), "b": (g, None), "c": (_blank(6, 6), None)},
               "missing=zero")
    items = _items(res)
    assert (items["b"]["precision"], items["b"]["recall"], items["b"]["f1"]) == (1.0, 0.0, 0.0)
    assert (items["c"]["precision"], items["c"]["recall"], items["c"]["f1"]) == (1.0, 1.0, 1.0)
    assert res.score == pytest.approx(2 / 3, abs=1e-15)


# ----------------------------------------------------------------------------- stems / zip
def _pair():
    g = _blank(6, 6)
    g[2, :] = MEM
    p = g.copy()
    p[2, 5] = BG  # 5 of 6: P = 1, R = 5/6, F = 10/11
    return g, p


def test_dotted_stems_and_upper_case_suffixes(tmp_path):
    """`<stem>.png` ↔ `<stem>.tiff` with the stem taken up to the last dot only; suffixes
    compared case-insensitively (GT .PNG, prediction .TIFF)."""
    g, p = _pair()
    (tmp_path / "gt").mkdir()
    (tmp_path / "sub").mkdir()
    Image.fromarray(g).save(tmp_path / "gt" / "0164_1.1565791505_58.PNG", format="PNG")
    tifffile.imwrite(tmp_path / "sub" / "0164_1.1565791505_58.TIFF", p)
    res = score("urisc", tmp_path / "gt", tmp_path / "sub", device=DEVICE)
    items = _items(res)
    assert list(items) == ["0164_1.1565791505_58"]
    assert items["0164_1.1565791505_58"]["f1"] == pytest.approx(10 / 11, abs=1e-15)


def _tiff_bytes(arr: np.ndarray, tmp_path: Path) -> bytes:
    f = tmp_path / "member.tiff"
    tifffile.imwrite(f, arr, photometric="minisblack")
    return f.read_bytes()


def test_zip_nested_folder_and_macos_debris(tmp_path):
    """result.zip with its images under a folder plus __MACOSX/._<stem>.tiff debris: the
    images match by file name, the AppleDouble debris is skipped, not read as an image."""
    g, p = _pair()
    gt_dir, _ = _write(tmp_path, {"x": (g, None)})
    z = tmp_path / "result.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("result/x.tiff", _tiff_bytes(p, tmp_path))
        zf.writestr("__MACOSX/result/._x.tiff", b"\x00\x05\x16\x07 not a tiff")
    res = score("urisc", gt_dir, z, device=DEVICE)
    assert _items(res)["x"]["f1"] == pytest.approx(10 / 11, abs=1e-15)
    assert len(res.items) == 1  # the debris is skipped by SafeArchive.names()


def test_zip_same_stem_in_two_folders_is_rejected(tmp_path):
    g, p = _pair()
    gt_dir, _ = _write(tmp_path, {"x": (g, None)})
    z = tmp_path / "result.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a/x.tiff", _tiff_bytes(p, tmp_path))
        zf.writestr("b/x.tiff", _tiff_bytes(g, tmp_path))
    res = score("urisc", gt_dir, z, device=DEVICE)
    assert res.status == "rejected" and "two submission files" in res.error


def test_gt_tiff_suffix_accepted(tmp_path):
    """cli.md: truth folder of .png/.tif/.tiff."""
    g, p = _pair()
    (tmp_path / "gt").mkdir()
    (tmp_path / "sub").mkdir()
    tifffile.imwrite(tmp_path / "gt" / "y.tiff", g, photometric="minisblack")
    tifffile.imwrite(tmp_path / "sub" / "y.tiff", p, photometric="minisblack")
    res = score("urisc", tmp_path / "gt", tmp_path / "sub", device=DEVICE)
    assert _items(res)["y"]["f1"] == pytest.approx(10 / 11, abs=1e-15)


# ----------------------------------------------------------------------------- reading
def _read(path) -> np.ndarray:
    img = _GreyImage(path)
    return img.rows(0, img.shape[0])


def test_miniswhite_8_and_16_bit(tmp_path):
    """libtiff's RGBA reader maps MINISWHITE through 255 − x (8-bit) and takes the high byte
    of 16-bit samples first: 16-bit 0x1234 → 0x12 = 18 → 237."""
    a8 = np.array([[0, 255, 10]], np.uint8)
    tifffile.imwrite(tmp_path / "w8.tiff", a8, photometric="miniswhite")
    np.testing.assert_array_equal(_read(tmp_path / "w8.tiff"), [[255, 0, 245]])
    a16 = np.array([[0, 65535, 0x1234]], np.uint16)
    tifffile.imwrite(tmp_path / "w16.tiff", a16, photometric="miniswhite")
    np.testing.assert_array_equal(_read(tmp_path / "w16.tiff"), [[255, 0, 237]])


def test_one_bit_minisblack_and_miniswhite(tmp_path):
    """1-bit MINISBLACK: a set bit is white (255); MINISWHITE: a set bit is black (0)."""
    bits = np.array([[True, False, True]])
    tifffile.imwrite(tmp_path / "b.tiff", bits, photometric="minisblack")
    np.testing.assert_array_equal(_read(tmp_path / "b.tiff"), [[255, 0, 255]])
    tifffile.imwrite(tmp_path / "w.tiff", bits, photometric="miniswhite")
    np.testing.assert_array_equal(_read(tmp_path / "w.tiff"), [[0, 255, 0]])


def test_png_grey_16bit_high_byte_and_1bit(tmp_path):
    """OpenCV asks libpng for strip_16 (high byte) and expands 1-bit grey to 0/255."""
    a16 = np.array([[0, 255, 256, 65535, 0x80FF]], np.uint16)
    Image.fromarray(a16).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(_GreyImage(tmp_path / "g16.png", truth=True).rows(0, 1),
                                  [[0, 0, 1, 255, 128]])
    Image.fromarray(np.array([[True, False, True]])).save(tmp_path / "b.png")
    np.testing.assert_array_equal(_GreyImage(tmp_path / "b.png", truth=True).rows(0, 1),
                                  [[255, 0, 255]])


def test_palette_png_with_transparency_ignores_alpha(tmp_path):
    """IMREAD_GRAYSCALE strips alpha: a palette PNG whose white entry is fully transparent
    still reads white (255), black reads 0, a colour entry through libpng's weights:
    (10, 200, 30) → (97970 + 3846800 + 112110) >> 15 = 4056880 >> 15 = 123."""
    idx = np.array([[0, 1, 2]], np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([255, 255, 255, 0, 0, 0, 10, 200, 30])
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png", transparency=0)
    np.testing.assert_array_equal(_GreyImage(tmp_path / "p.png", truth=True).rows(0, 1),
                                  [[255, 0, 123]])


# ----------------------------------------------------------------------------- variants
def test_explicit_radius_wins_whatever_the_set_order():
    """cli.md: `--set variant=bold --set radius=2` in either order gives radius 2."""
    for order in (["radius=2", "variant=bold"], ["variant=bold", "radius=2"]):
        cfg = load_config("urisc", overrides=order)
        assert cfg["radius"] == 2 and cfg["metric_version"] == "urisc-bold-pre-2019-12-25"
        assert _Options.from_config(cfg).gt_threshold == 122
    cfg = load_config("urisc", overrides=["variant=released-script", "radius=3"])
    opts = _Options.from_config(cfg)
    assert (opts.radius, opts.gt_threshold) == (3, None)


def test_unknown_variant_and_negative_radius_are_usage_errors():
    with pytest.raises(UsageError, match="variant"):
        load_config("urisc", overrides=["variant=2020-01-15"])
    with pytest.raises(UsageError, match="radius"):
        _Options.from_config(load_config("urisc", overrides=["variant=bold",
                                                             "radius=-1"]))


# ----------------------------------------------------------------------------- huge strips
def test_opencv_raw_scanline_path_for_huge_single_strips(tmp_path, monkeypatch):
    """OpenCV reads a single strip whose RGBA buffer would reach 95 % of 1 GiB (about 255 M
    pixels) scanline by scanline, bypassing libtiff's RGBA reader: no MINISWHITE inversion,
    16-bit high byte, and RGB through BGR2Gray without the R/B swap. The thresholds are
    lowered here to the size of a 3×4 image (4·3·4 = 48 bytes) so small files take the path.
    RGB (10, 200, 30): (1868·10 + 9617·200 + 4899·30 + 8192) >> 14 = 2097242 >> 14 = 128
    (the RGBA path gives (4899·10 + 9617·200 + 1868·30 + 8192) >> 14 = 124)."""
    grey = np.array([[0, 255, 10, 77]] * 3, np.uint8)
    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[...] = (10, 200, 30)
    tifffile.imwrite(tmp_path / "w.tiff", grey, photometric="miniswhite")
    tifffile.imwrite(tmp_path / "c.tiff", rgb, photometric="rgb")
    tifffile.imwrite(tmp_path / "c16.tiff", rgb.astype(np.uint16) << 8 | 0xFF, photometric="rgb")
    tifffile.imwrite(tmp_path / "strips.tiff", rgb, photometric="rgb", rowsperstrip=1)
    # below the threshold: libtiff's RGBA reader (inverted MINISWHITE, OpenCV weights)
    np.testing.assert_array_equal(_read(tmp_path / "w.tiff"), 255 - grey)
    np.testing.assert_array_equal(_read(tmp_path / "c.tiff"), np.full((3, 4), 124))
    monkeypatch.setattr(urisc_imread, "_CV_SCANLINE_MIN_BYTES", 48)
    np.testing.assert_array_equal(_read(tmp_path / "w.tiff"), grey)
    np.testing.assert_array_equal(_read(tmp_path / "c.tiff"), np.full((3, 4), 128))
    np.testing.assert_array_equal(_read(tmp_path / "c16.tiff"), np.full((3, 4), 128))
    # strips of one row (16 RGBA bytes) stay on the RGBA path
    np.testing.assert_array_equal(_read(tmp_path / "strips.tiff"), np.full((3, 4), 124))
    # a huge single-strip image the scanline path cannot take (palette) fails in OpenCV once
    # its RGBA buffer reaches 1 GiB: rejected rather than scored
    idx = np.zeros((3, 4), np.uint8)
    cmap = np.full((3, 256), 65535, np.uint16)
    tifffile.imwrite(tmp_path / "p.tiff", idx, photometric="palette", colormap=cmap)
    np.testing.assert_array_equal(_read(tmp_path / "p.tiff"), np.full((3, 4), 255))
    monkeypatch.setattr(urisc_imread, "_CV_RGBA_MAX_BYTES", 48)
    with pytest.raises(Rejected, match="too large for OpenCV"):
        _read(tmp_path / "p.tiff")
