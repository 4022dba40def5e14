"""REFUGE challenge: per-image fixtures, end to end through gpueval.api (folder and zip)."""

from __future__ import annotations

import csv
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from gpueval import api
from gpueval.challenges import refuge
from gpueval.challenges.refuge.truth import _xlsx_rows
from gpueval.config import load_config
from gpueval.errors import Rejected

FIX = Path(__file__).parent / "fixtures" / "refuge"
SCORES = json.loads((FIX / "scores.json").read_text())
SEG = SCORES["segmentation"]


def _seg(name):
    z = np.load(FIX / f"seg_{name}.npz", allow_pickle=False)
    return z["pred"], z["gt"]


# ---------------------------------------------------------------------------- per image


@pytest.mark.parametrize("name", sorted(SEG))
def test_segmentation_fixture(name):
    pred, gt = _seg(name)
    if pred.ndim == 3:
        pred = pred[..., 0]  # the official reader keeps channel 0 (also tested end to end)
    ref = SEG[name]
    item = refuge.segmentation_item(name, refuge.mask_counts(pred, gt))
    d = ref["official_vdiam"]
    assert (item["cup_diameter_pred"], item["disc_diameter_pred"], item["cup_diameter_gt"],
            item["disc_diameter_gt"]) == (d["pred_cup"], d["pred_disc"], d["gt_cup"],
                                          d["gt_disc"])
    assert item["vcdr_pred"] == pytest.approx(ref["official_vcdr_pred"], abs=1e-12)
    assert item["vcdr_gt"] == pytest.approx(ref["official_vcdr_gt"], abs=1e-12)
    if ref["official_error"] == "ZeroDivisionError":
        assert math.isnan(item["cup_dice"])
        corrected = refuge.segmentation_item(name, refuge.mask_counts(pred, gt),
                                             compat="corrected")
        assert corrected["cup_dice"] == 1.0
        return
    assert item["cup_dice"] == pytest.approx(ref["official_cup_dice"], abs=1e-12)
    assert item["disc_dice"] == pytest.approx(ref["official_disc_dice"], abs=1e-12)
    assert item["vcdr_error"] == pytest.approx(ref["official_abs_err_vcdr"], abs=1e-12)


def test_mask_counts_hand_case():
    gt = np.full((6, 5), 255, np.uint8)
    gt[1:5, 1:4] = 128
    gt[2:4, 2] = 0
    pred = np.full((6, 5), 255, np.uint8)
    pred[1:5, 1:3] = 128
    pred[1, 1] = pred[3, 1] = 0  # two cup pixels in one column, apart: diameter 2
    c = refuge.mask_counts(pred, gt)
    assert (c.cup_pred, c.cup_gt, c.cup_both) == (2, 2, 0)
    assert (c.disc_pred, c.disc_gt, c.disc_both) == (8, 12, 8)
    assert (c.cup_diameter_pred, c.disc_diameter_pred) == (2, 4)
    assert (c.cup_diameter_gt, c.disc_diameter_gt) == (2, 4)
    assert refuge.dice(c.disc_both, c.disc_pred, c.disc_gt) == 16 / 20
    assert refuge.vertical_cdr(0, 0) == 0.0


masks = st.tuples(st.integers(1, 12), st.integers(1, 12)).flatmap(
    lambda shape: st.tuples(*(hnp.arrays(np.uint8, shape, elements=st.sampled_from(
        [0, 0, 100, 128, 128, 254, 255, 255, 255])) for _ in range(2))))


@given(masks, st.randoms(use_true_random=False))
def test_counts_match_spec_formulas_and_ignore_row_column_order(pair, rnd):
    pred, gt = pair
    c = refuge.mask_counts(pred, gt)
    for region, (n_p, n_g, n_b, d_p, d_g) in {
        (lambda m: m == 0): (c.cup_pred, c.cup_gt, c.cup_both, c.cup_diameter_pred,
                             c.cup_diameter_gt),
        (lambda m: m < 255): (c.disc_pred, c.disc_gt, c.disc_both, c.disc_diameter_pred,
                              c.disc_diameter_gt),
    }.items():
        p, g = region(pred), region(gt)
        assert (n_p, n_g, n_b) == (p.sum(), g.sum(), (p & g).sum())
        # vertical diameter: the largest per-column count (spec §2), not an extent
        assert d_p == max(int(p[:, j].sum()) for j in range(p.shape[1]))
        assert d_g == max(int(g[:, j].sum()) for j in range(g.shape[1]))
    rows = list(range(pred.shape[0]))
    cols = list(range(pred.shape[1]))
    rnd.shuffle(rows)
    rnd.shuffle(cols)
    assert refuge.mask_counts(pred[rows][:, cols], gt[rows][:, cols]) == c
    # transposing swaps what "vertical" means: Dice counts stay, diameters may not
    t = refuge.mask_counts(pred.T, gt.T)
    assert (t.cup_both, t.disc_both) == (c.cup_both, c.disc_both)


def test_fovea_fixture():
    z = np.load(FIX / "fovea.npz", allow_pickle=False)
    d = refuge.fovea_distances(z["gt_xy"], z["pred_xy"])
    np.testing.assert_allclose(d, SCORES["fovea"]["official_distances"], rtol=0, atol=1e-12)
    assert float(np.mean(d)) == pytest.approx(SCORES["fovea"]["official_mean"], abs=1e-12)


def test_palette_and_one_bit_masks_read_like_scipy(tmp_path):
    idx = np.array([[0, 1, 2, 2]], np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette([0, 0, 0, 128, 128, 128, 255, 255, 255] + [9, 9, 9] * 253)
    im.save(tmp_path / "p.bmp")
    # palette indices would be 0,1,2; scipy's imread converted to RGB first: palette values
    np.testing.assert_array_equal(refuge.read_mask(tmp_path / "p.bmp"), [[0, 128, 255, 255]])
    Image.fromarray(np.array([[0, 1]], bool)).save(tmp_path / "b.bmp")
    np.testing.assert_array_equal(refuge.read_mask(tmp_path / "b.bmp"), [[0, 255]])


# ---------------------------------------------------------------------------- end to end

CASES = SCORES["segmentation_folder_mean"]["cases"]
CLS = "continuous_40_360"


def _cls_names(n):
    return [f"T{i + 1:04d}" for i in range(n)]


def _write_xlsx(path, header, rows):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append(list(r))
    wb.save(path)


def _make_truth(root: Path, *, csv_variant=False, cases=CASES):
    (root / "Disc_Cup_Masks").mkdir(parents=True)
    for name in cases:
        Image.fromarray(_seg(name)[1]).save(root / "Disc_Cup_Masks" / f"{name}.bmp")
    z = np.load(FIX / f"cls_{CLS}.npz", allow_pickle=False)
    names = _cls_names(len(z["labels"]))
    fz = np.load(FIX / "fovea.npz", allow_pickle=False)
    fnames = [f"F{i:03d}.jpg" for i in range(len(fz["gt_xy"]))]
    if csv_variant:
        with open(root / "glaucoma_labels.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["filename", "label"])
            w.writerows([(f"{n}.jpg", int(lab)) for n, lab in zip(names, z["labels"],
                                                                  strict=True)])
        with open(root / "fovea_locations.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["filename", "x", "y"])
            w.writerows([(n, repr(float(x)), repr(float(y)))
                         for n, (x, y) in zip(fnames, fz["gt_xy"], strict=True)])
    else:
        # GT names end .bmp: the official reader turns the last 3 characters into "jpg"
        _write_xlsx(root / "GT.xlsx", ["ImgName", "Glaucoma Label"],
                    [(f"{n}.bmp", int(lab)) for n, lab in zip(names, z["labels"], strict=True)])
        _write_xlsx(root / "Fovea_locations.xlsx",
                    ["ID", "ImgName", "Glaucoma Label", "Fovea_X", "Fovea_Y"],
                    [(i + 1, n, 0, float(x), float(y))
                     for i, (n, (x, y)) in enumerate(zip(fnames, fz["gt_xy"], strict=True))])
    return root


def _make_submission(root: Path, *, cases=CASES, fovea_name="fovea_location_results.csv"):
    (root / "segmentation").mkdir(parents=True)
    for name in cases:
        Image.fromarray(_seg(name)[0]).save(root / "segmentation" / f"{name}.bmp")
    z = np.load(FIX / f"cls_{CLS}.npz", allow_pickle=False)
    names = _cls_names(len(z["labels"]))
    rows = [(n.lower() if i % 2 else n) + ".jpg" for i, n in enumerate(names)]
    order = np.random.default_rng(1).permutation(len(rows))
    with open(root / "classification_results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["FileName", "Glaucoma Risk"])
        w.writerows([(rows[i], repr(float(z["scores"][i]))) for i in order])
    fz = np.load(FIX / "fovea.npz", allow_pickle=False)
    with open(root / fovea_name, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageName", "Fovea_X", "Fovea_Y"])
        w.writerows([(f"F{i:03d}.jpg", repr(float(x)), repr(float(y)))
                     for i, (x, y) in enumerate(fz["pred_xy"])])
    return root


def _zip(folder: Path, dest: Path, wrap="team_x") -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                z.write(p, f"{wrap}/{p.relative_to(folder).as_posix()}")
        z.writestr("__MACOSX/team_x/._classification_results.csv", b"junk")
    return dest


def _check_official_numbers(res):
    assert res.status == "ok", res.error
    assert res.score is None
    m, ref = res.metrics, SCORES["segmentation_folder_mean"]
    assert m["mean_cup_dice"] == pytest.approx(ref["official_mean_cup_dice"], abs=1e-12)
    assert m["mean_disc_dice"] == pytest.approx(ref["official_mean_disc_dice"], abs=1e-12)
    assert m["vcdr_mae"] == pytest.approx(ref["official_mae_vcdr"], abs=1e-12)
    e2e = SCORES["classification_end_to_end"]
    assert m["auc"] == pytest.approx(e2e["official_auc"], abs=1e-12)
    assert m["sensitivity_at_085_specificity"] == pytest.approx(
        e2e["official_sensitivity_at_spec_0.85"], abs=1e-12)
    assert m["fovea_mean_distance"] == pytest.approx(SCORES["fovea"]["official_mean"],
                                                     abs=1e-12)
    items = {it["id"]: it for it in res.items}
    assert sorted(items) == sorted(f"{c}.bmp" for c in CASES)
    ring = items["ring_cup.bmp"]
    assert ring["cup_diameter_pred"] == SEG["ring_cup"]["official_vdiam"]["pred_cup"]
    assert ring["cup_dice"] == pytest.approx(SEG["ring_cup"]["official_cup_dice"], abs=1e-12)
    assert res.runtime["voxels"] == 9 * 300 * 320
    json.loads(res.to_json())  # strict JSON


def test_end_to_end_folder_xlsx(tmp_path):
    truth = _make_truth(tmp_path / "truth")
    sub = _make_submission(tmp_path / "sub")
    _check_official_numbers(api.score("refuge", truth, sub, device="cpu"))


def test_end_to_end_zip_wrapped_csv_truth(tmp_path):
    truth = _make_truth(tmp_path / "truth", csv_variant=True)
    sub = _make_submission(tmp_path / "sub", fovea_name="fovea_localization_results.csv")
    zpath = _zip(sub, tmp_path / "result.zip")
    _check_official_numbers(api.score("refuge", truth, zpath, device="cpu"))
    notes = api.validate("refuge", zpath, truth=truth)
    assert any("9 masks" in n for n in notes)


def test_both_empty_cup_official_nan_and_corrected(tmp_path):
    cases = ["perfect", "both_no_cup"]
    truth = _make_truth(tmp_path / "truth", cases=cases)
    sub = _make_submission(tmp_path / "sub", cases=cases)
    res = api.score("refuge", truth, sub, device="cpu")
    assert res.status == "ok"
    assert math.isnan(res.metrics["mean_cup_dice"]) and math.isnan(res.metrics["vcdr_mae"])
    assert any("0 by 0" in n for n in res.extra["notes"])
    assert json.loads(res.to_json())["metrics"]["mean_disc_dice"] is None
    assert not math.isnan(res.metrics["auc"])  # other tasks unaffected
    res = api.score("refuge", truth, sub, overrides=["compat=corrected"], device="cpu")
    assert res.metrics["mean_cup_dice"] == 1.0  # both images: Dice 1
    assert res.metrics["vcdr_mae"] == 0.0


def test_mask_without_ground_truth(tmp_path):
    truth = _make_truth(tmp_path / "truth", cases=["perfect"])
    sub = _make_submission(tmp_path / "sub", cases=["perfect", "shifted"])
    res = api.score("refuge", truth, sub, device="cpu")
    assert math.isnan(res.metrics["mean_cup_dice"])
    assert any("without ground truth" in n for n in res.extra["notes"])
    res = api.score("refuge", truth, sub, overrides=["compat=corrected"], device="cpu")
    assert res.metrics["mean_cup_dice"] == 1.0
    assert [it["id"] for it in res.items] == ["perfect.bmp"]
    (truth / "Disc_Cup_Masks" / "perfect.bmp").rename(truth / "Disc_Cup_Masks" / "other.bmp")
    res = api.score("refuge", truth, sub, overrides=["compat=corrected"], device="cpu")
    assert res.status == "ok" and math.isnan(res.metrics["vcdr_mae"]) and res.items == []


def test_name_matching_rules(tmp_path):
    truth = _make_truth(tmp_path / "truth", cases=["perfect"])
    sub = _make_submission(tmp_path / "sub", cases=["perfect"])
    # fovea names are case-sensitive: a lower-cased name is unknown -> official NaN
    p = sub / "fovea_location_results.csv"
    p.write_text(p.read_text().replace("F000.jpg", "f000.jpg"))
    res = api.score("refuge", truth, sub, device="cpu")
    assert math.isnan(res.metrics["fovea_mean_distance"])
    res = api.score("refuge", truth, sub, overrides=["compat=corrected"], device="cpu")
    fz = np.load(FIX / "fovea.npz", allow_pickle=False)
    expected = np.mean(refuge.fovea_distances(fz["gt_xy"], fz["pred_xy"])[1:])
    assert res.metrics["fovea_mean_distance"] == pytest.approx(expected, abs=1e-12)
    # a classification row missing: official NaN (unequal lengths), corrected rejects
    p = sub / "classification_results.csv"
    p.write_text("\n".join(p.read_text().splitlines()[:-1]) + "\n")
    res = api.score("refuge", truth, sub, device="cpu")
    assert math.isnan(res.metrics["auc"])
    res = api.score("refuge", truth, sub, overrides=["compat=corrected"], device="cpu")
    assert res.status == "rejected" and "no score" in res.error


def test_sensitivity_variant(tmp_path):
    truth = _make_truth(tmp_path / "truth", cases=["perfect"])
    sub = _make_submission(tmp_path / "sub", cases=["perfect"])
    res = api.score("refuge", truth, sub, overrides=["sensitivity=tie-robust"], device="cpu")
    assert res.metrics["sensitivity_at_085_specificity"] == 18 / 40  # see test_classification
    assert res.metrics["auc"] == pytest.approx(0.799375, abs=1e-12)


def test_wrapping_folder_beside_loose_files(tmp_path):
    truth = _make_truth(tmp_path / "truth", cases=["perfect"])
    sub = _make_submission(tmp_path / "outer" / "team", cases=["perfect"])
    (tmp_path / "outer" / "README.txt").write_text("hello")
    res = api.score("refuge", truth, tmp_path / "outer", device="cpu")
    assert res.status == "ok" and res.metrics["mean_cup_dice"] == 1.0
    _make_submission(tmp_path / "outer" / "team2", cases=["perfect"])
    res = api.score("refuge", truth, tmp_path / "outer", device="cpu")
    assert res.status == "rejected" and "several folders" in res.error
    assert sub.exists()


def test_rejections(tmp_path):
    truth = _make_truth(tmp_path / "truth", cases=["perfect"])
    sub = _make_submission(tmp_path / "sub", cases=["perfect"])
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(sub / "segmentation" / "perfect.bmp")
    res = api.score("refuge", truth, sub, device="cpu")
    assert res.status == "rejected" and "10x10" in res.error
    with pytest.raises(Rejected, match="10x10"):
        api.validate("refuge", sub, truth=truth)

    sub2 = _make_submission(tmp_path / "sub2", cases=["perfect"])
    p = sub2 / "classification_results.csv"
    p.write_text(p.read_text() + "T0001.jpg,high\n")
    res = api.score("refuge", truth, sub2, device="cpu")
    assert res.status == "rejected" and "'high' is not a number" in res.error

    empty = tmp_path / "empty"
    (empty / "other").mkdir(parents=True)
    res = api.score("refuge", truth, empty, device="cpu")
    assert res.status == "rejected" and "segmentation/" in res.error

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../segmentation/perfect.bmp", b"x")
    res = api.score("refuge", truth, evil, device="cpu")
    assert res.status == "rejected" and "outside" in res.error


def test_ignored_files_and_missing_parts(tmp_path):
    truth = _make_truth(tmp_path / "truth", cases=["perfect"])
    sub = _make_submission(tmp_path / "sub", cases=["perfect"])
    (sub / "fovea_location_results.csv").unlink()
    Image.fromarray(_seg("nothing")[0]).save(sub / "segmentation" / "nothing.BMP")
    res = api.score("refuge", truth, sub, device="cpu")
    assert res.status == "ok"
    assert res.metrics["mean_cup_dice"] == 1.0  # the .BMP file is not listed (official)
    assert math.isnan(res.metrics["fovea_mean_distance"])
    assert any(".BMP" in n or "nothing.BMP" in n for n in res.extra["notes"])


def test_config_is_complete():
    cfg = load_config("refuge")
    assert cfg["metric_version"]
    assert cfg["segmentation"]["vcdr_eps"] == 1e-7
    assert cfg["ranking"]["segmentation_weights"] == [0.35, 0.25, 0.4]
    assert (cfg["sensitivity"], cfg["specificity"], cfg["compat"]) == ("official", 0.85,
                                                                       "official")


def test_validate_reports_coverage(tmp_path):
    truth = _make_truth(tmp_path / "truth", cases=["perfect"])
    sub = _make_submission(tmp_path / "sub", cases=["perfect", "shifted"])
    p = sub / "fovea_location_results.csv"
    p.write_text(p.read_text().replace("F000.jpg", "f000.jpg"))
    notes = api.validate("refuge", sub, truth=truth)
    assert "segmentation/shifted.bmp has no ground truth" in notes
    assert any(n.startswith("fovea: 1 name(s) not in the ground truth (f000.jpg)") for n in notes)
    assert any(n.startswith("fovea: 1 ground-truth image(s) without a row (F000.jpg)")
               for n in notes)
    assert not any(n.startswith("classification: ") and "not in" in n for n in notes)


def test_bench_workload_small():
    from gpueval.bench import refuge as bench

    rec = bench.bench_refuge("cpu", 0.01)
    assert rec["check"] is True
    assert rec["images"] == 4
    assert rec["voxels"] == 4 * bench.SIZE**2


# --------------------------------------------------------------------------------------------
# Truth .xlsx files are zips of XML: what reading them inflates is bounded (issue 24)


def _raw_zip(path: Path, members: list[tuple[str, bytes, int, int]]) -> None:
    """Write a zip by hand: (name, raw deflate stream, declared size, crc) per member, so a
    member may declare (and hold) gigabytes that ``zipfile`` could not write quickly."""
    import struct

    local, central, offset = b"", b"", 0
    for name, data, size, crc in members:
        n = name.encode()
        head = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), size,
                           len(n), 0) + n
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc,
                               len(data), size, len(n), 0, 0, 0, 0, 0, offset) + n
        local += head + data
        offset += len(head) + len(data)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                      offset, 0)
    path.write_bytes(local + central + end)


def _deflate(prefix: bytes, fill: bytes, repeats: int, suffix: bytes) -> bytes:
    """Raw deflate of ``prefix + fill * repeats + suffix`` without compressing every repeat:
    after a full flush the compressor's state is reset, so each repeat is the same bytes."""
    import zlib

    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(fill) + c.flush(zlib.Z_FULL_FLUSH)
    return head + block * repeats + c.compress(suffix) + c.flush()


def _bomb_xlsx(tmp_path: Path, *, honest: bool) -> Path:
    """A valid GT.xlsx whose sharedStrings.xml holds one 3.5 GiB string (``honest``: the zip
    declares it; otherwise the header declares 1 kB and the stream still inflates 3.5 GiB)."""
    import zlib

    good = tmp_path / "good.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["ImgName", "Glaucoma Label"])
    wb.active.append(["V0001.bmp", 1])
    wb.save(good)
    members = []
    with zipfile.ZipFile(good) as z:
        for info in z.infolist():
            raw = z.read(info.filename)
            if info.filename == "xl/sharedStrings.xml":
                continue
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            members.append((info.filename, c.compress(raw) + c.flush(), len(raw),
                            zlib.crc32(raw)))
    prefix = b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>'
    fill, repeats = b"A" * (16 << 20), 224  # 3.5 GiB
    suffix = b"</t></si><si><t>V0001.bmp</t></si></sst>"
    size = len(prefix) + len(fill) * repeats + len(suffix)
    declared = size if honest else 1024
    crc = zlib.crc32((prefix + fill)[:1024]) if not honest else 0
    members.append(("xl/sharedStrings.xml", _deflate(prefix, fill, repeats, suffix), declared,
                    crc))
    truth = tmp_path / "truth"
    truth.mkdir()
    _raw_zip(truth / "GT.xlsx", members)
    return truth


@pytest.mark.parametrize("honest", [True, False], ids=["declared", "lying-header"])
def test_truth_xlsx_shared_string_bomb_is_refused_bounded(tmp_path, honest):
    """One multi-GiB shared string: TruthError within seconds, under a 3 GB address-space cap
    (openpyxl would build the whole string; zipfile stops at the declared size)."""
    import subprocess
    import sys
    import textwrap

    truth = _bomb_xlsx(tmp_path, honest=honest)
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3_000_000_000, 3_000_000_000))
        from gpueval.challenges import refuge
        from gpueval.errors import TruthError
        try:
            refuge.load_truth({str(truth)!r})
        except TruthError as e:
            print("TruthError:", e)
            sys.exit(0)
        sys.exit(5)
    """)
    import os
    import time

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "GT.xlsx" in out.stdout and str(tmp_path) not in out.stdout
    assert time.monotonic() - t0 < 30


def test_truth_xlsx_huge_declared_dimension_is_capped(tmp_path):
    """A sheet declaring A1:XFD1048576 reads as its real cells (openpyxl would pad every row to
    16384 cells and add a million empty rows)."""
    import re

    good = tmp_path / "good.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["ImgName", "Glaucoma Label"])
    wb.active.append(["V0001.bmp", 1])
    wb.save(good)
    truth = tmp_path / "truth"
    truth.mkdir()
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(truth / "GT.xlsx", "w",
                                                        zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            raw = src.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                raw, n = re.subn(rb'<dimension ref="[^"]*" ?/>',
                                 b'<dimension ref="A1:XFD1048576"/>', raw)
                assert n == 1
            dst.writestr(info.filename, raw)
    rows = _xlsx_rows(truth / "GT.xlsx")
    assert rows[:2] == [("ImgName", "Glaucoma Label"), ("V0001.bmp", 1)]
    assert refuge.load_truth(truth).labels == [("V0001.jpg", True)]
