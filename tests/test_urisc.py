"""U-RISC challenge: folders and zips end to end, variants, rejections, image reading."""

from __future__ import annotations

import json
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
from gpueval.challenges.urisc.imread import _GreyImage
from gpueval.config import load_config
from gpueval.errors import Rejected, TruthError, UsageError
from gpueval.kernels.boundary import boundary_counts, precision_recall_f

FIX = Path(__file__).parent / "fixtures" / "urisc"
SCORES = json.loads((FIX / "scores.json").read_text())


def _case(name):
    z = np.load(FIX / f"{name}.npz", allow_pickle=False)
    return z["gt"], z["pred"]


def _write_pair(gt_dir: Path, sub_dir: Path, stem: str, gt, pred, *, rgb_png=True, **tiff_kw):
    gt_dir.mkdir(parents=True, exist_ok=True)
    sub_dir.mkdir(parents=True, exist_ok=True)
    img = np.stack([gt] * 3, -1) if rgb_png else gt  # the sample GTs are 3-channel PNGs
    Image.fromarray(img).save(gt_dir / f"{stem}.png")
    if pred is not None:
        tifffile.imwrite(sub_dir / f"{stem}.tiff", pred, **tiff_kw)


def _score(gt, sub, *sets, **kw):
    return api.score("urisc", gt, sub, overrides=list(sets), device="cpu", **kw)


@pytest.fixture
def folder_mean_case(tmp_path):
    for name in SCORES["folder_mean"]["cases"]:
        _write_pair(tmp_path / "gt", tmp_path / "sub", name, *_case(name))
    return tmp_path / "gt", tmp_path / "sub"


def test_folder_mean_released_script(folder_mean_case):
    r = _score(*folder_mean_case, "variant=released-script")
    assert r.status == "ok"
    assert r.metric_version == "urisc-released-script-eaddb4a"
    assert r.score == pytest.approx(SCORES["folder_mean"]["official_eval_on_whole_dataset_bound0"],
                                    abs=1e-12)
    assert [it["id"] for it in r.items] == sorted(SCORES["folder_mean"]["cases"])
    for it in r.items:
        exp = SCORES["cases"][it["id"]]["official_gt_as_stored_bound0"]
        assert (it["precision"], it["recall"], it["f1"]) == pytest.approx(
            (exp["P"], exp["R"], exp["F"]), abs=1e-12)


def test_folder_default_metric_is_mean_of_binarised_f(folder_mean_case):
    r = _score(*folder_mean_case)
    assert r.metric_version == "urisc-2019-12-25"
    per_image = [SCORES["cases"][c]["official_gt_binarised_122_bound0"]["F"]
                 for c in sorted(SCORES["folder_mean"]["cases"])]
    assert r.score == pytest.approx(np.mean(per_image), abs=1e-12)
    assert r.metrics["f1"] == r.score and r.metrics["n_images"] == 4
    for it in r.items:
        exp = SCORES["cases"][it["id"]]
        assert it["n_pred"] == exp["diag_pred_membrane_px"]
        assert it["n_gt"] == exp["diag_gt_membrane_px_binarised"]
        assert it["tp"] == exp["diag_tp_px_binarised"]
    assert r.runtime["voxels"] == 4 * 256 * 256
    json.loads(r.to_json())  # strict JSON


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_bold_variant_radius(tmp_path, radius):
    for name in ("shift_2px_diag", "half_missing"):
        _write_pair(tmp_path / "gt", tmp_path / "sub", name, *_case(name))
    r = _score(tmp_path / "gt", tmp_path / "sub", "variant=bold", f"radius={radius}")
    assert r.metric_version == "urisc-bold-pre-2019-12-25"
    for it in r.items:
        exp = SCORES["cases"][it["id"]][f"official_gt_binarised_122_bound{radius}"]
        assert it["f1"] == pytest.approx(exp["F"], abs=1e-12)
    r = _score(tmp_path / "gt", tmp_path / "sub", "variant=released-script", f"radius={radius}")
    for it in r.items:
        exp = SCORES["cases"][it["id"]][f"official_gt_as_stored_bound{radius}"]
        assert it["f1"] == pytest.approx(exp["F"], abs=1e-12)


def test_radius_refused_for_final_metric(folder_mean_case):
    with pytest.raises(UsageError, match="variant=bold"):
        _score(*folder_mean_case, "radius=2")


def test_repo_examples_whole_dataset(tmp_path):
    z = np.load(FIX / "repo_examples.npz", allow_pickle=False)
    for k in ("1", "2", "3"):
        _write_pair(tmp_path / "gt", tmp_path / "sub", k, z[f"gt_{k}"], z[f"pred_{k}"],
                    compression="zlib", rowsperstrip=100)
    r = _score(tmp_path / "gt", tmp_path / "sub", "variant=released-script",
               "band_bytes=40000")  # ~39 rows per band, strips of 100: bands follow storage
    exp = SCORES["repo_examples"]["official_eval_on_whole_dataset_pres_gts"]
    assert r.score == pytest.approx(exp, abs=1e-12)
    r = _score(tmp_path / "gt", tmp_path / "sub")
    exp = [SCORES["repo_examples"][k]["official_gt_binarised_122_bound0"]["F"] for k in "123"]
    assert r.score == pytest.approx(np.mean(exp), abs=1e-12)


@pytest.mark.parametrize("name", ["thick_pred", "too_much_membrane", "non_binary_pred",
                                  "empty_pred", "both_empty"])
def test_official_format_rejections(tmp_path, name):
    _write_pair(tmp_path / "gt", tmp_path / "sub", name, *_case(name))
    r = _score(tmp_path / "gt", tmp_path / "sub")
    assert r.status == "rejected" and r.score is None
    assert r.error.startswith(f"{name}.tiff: ")
    with pytest.raises(Rejected):
        api.validate("urisc", tmp_path / "sub")
    # without the check, the metric is the official one (fixtures give it for every case)
    r = _score(tmp_path / "gt", tmp_path / "sub", "format_check=skip")
    exp = SCORES["cases"][name]["official_gt_binarised_122_bound0"]
    assert r.items[0]["f1"] == pytest.approx(exp["F"], abs=1e-12)
    assert r.items[0]["precision"] == pytest.approx(exp["P"], abs=1e-12)


def test_empty_gt_scores_zero(tmp_path):
    _write_pair(tmp_path / "gt", tmp_path / "sub", "e", *_case("empty_gt"))
    r = _score(tmp_path / "gt", tmp_path / "sub")
    assert (r.items[0]["precision"], r.items[0]["recall"], r.score) == (0.0, 1.0, 0.0)


def test_missing_image_rejected_or_zero(tmp_path):
    gt, pred = _case("perfect")
    _write_pair(tmp_path / "gt", tmp_path / "sub", "a", gt, pred)
    _write_pair(tmp_path / "gt", tmp_path / "sub", "b", gt, None)
    r = _score(tmp_path / "gt", tmp_path / "sub")
    assert r.status == "rejected" and "missing" in r.error and "b" in r.error
    r = _score(tmp_path / "gt", tmp_path / "sub", "missing=zero")
    assert r.status == "ok" and r.score == 0.5
    assert [(it["id"], it["f1"], it["recall"]) for it in r.items] == [("a", 1.0, 1.0),
                                                                       ("b", 0.0, 0.0)]


def test_extra_and_duplicate_files(tmp_path):
    gt, pred = _case("perfect")
    _write_pair(tmp_path / "gt", tmp_path / "sub", "a", gt, pred)
    tifffile.imwrite(tmp_path / "sub" / "zzz.tiff", pred)
    (tmp_path / "sub" / "readme.txt").write_text("hi")
    r = _score(tmp_path / "gt", tmp_path / "sub")
    assert r.status == "ok" and r.score == 1.0 and len(r.items) == 1
    assert any("zzz" in n for n in r.extra["notes"])
    tifffile.imwrite(tmp_path / "sub" / "a.tif", np.full_like(pred, 255))  # lower priority
    r = _score(tmp_path / "gt", tmp_path / "sub")
    assert r.status == "ok" and r.score == 1.0 and any("a.tif" in n for n in r.extra["notes"])
    (tmp_path / "sub" / "deeper").mkdir()
    tifffile.imwrite(tmp_path / "sub" / "deeper" / "a.tiff", pred)
    r = _score(tmp_path / "gt", tmp_path / "sub")
    assert r.status == "rejected" and "two submission files" in r.error


def test_png_predictions_accepted(tmp_path):
    """The released folder mode globs *.png predictions; they are read like the GT."""
    gt, pred = _case("shift_1px")
    _write_pair(tmp_path / "gt", tmp_path / "sub", "a", gt, None)
    Image.fromarray(np.stack([pred] * 3, -1)).save(tmp_path / "sub" / "a.png")
    r = _score(tmp_path / "gt", tmp_path / "sub")
    exp = SCORES["cases"]["shift_1px"]["official_gt_binarised_122_bound0"]["F"]
    assert r.status == "ok" and r.score == pytest.approx(exp, abs=1e-12)


def test_wrong_size_rejected(tmp_path):
    gt, pred = _case("perfect")
    _write_pair(tmp_path / "gt", tmp_path / "sub", "a", gt, pred[:, :200])
    r = _score(tmp_path / "gt", tmp_path / "sub")
    assert r.status == "rejected" and "256×200" in r.error and "256×256" in r.error


def test_not_a_tiff_rejected_and_bad_truth(tmp_path):
    gt, pred = _case("perfect")
    _write_pair(tmp_path / "gt", tmp_path / "sub", "a", gt, None)
    Image.fromarray(pred).save(tmp_path / "sub" / "a.tiff", format="PNG")
    r = _score(tmp_path / "gt", tmp_path / "sub")
    assert r.status == "rejected" and r.error.startswith("a.tiff: ")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TruthError):
        _score(tmp_path / "empty", tmp_path / "sub")


def _zip(path: Path, members: dict[str, bytes], method=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _tiff_bytes(arr, tmp_path):
    p = tmp_path / "tmp.tiff"
    tifffile.imwrite(p, arr)
    return p.read_bytes()


def test_zip_intake(tmp_path, folder_mean_case):
    gt_dir, sub_dir = folder_mean_case
    members = {f"result/{p.name}": p.read_bytes() for p in sorted(sub_dir.iterdir())}
    z = _zip(tmp_path / "result.zip", members)
    folder = _score(gt_dir, sub_dir)
    zipped = _score(gt_dir, z, "group_pixels=70000")  # one image per spooled group
    assert zipped.status == "ok"
    assert zipped.items == folder.items and zipped.score == folder.score
    assert api.validate("urisc", z, truth=gt_dir)[0].startswith("4 prediction images")


def test_zip_traversal_rejected(tmp_path, folder_mean_case):
    gt_dir, _ = folder_mean_case
    data = _tiff_bytes(_case("perfect")[1], tmp_path)
    z = _zip(tmp_path / "evil.zip", {"../perfect.tiff": data})
    r = _score(gt_dir, z)
    assert r.status == "rejected" and "traversal" in r.error


def test_zip_bomb_rejected(tmp_path, folder_mean_case):
    gt_dir, _ = folder_mean_case
    z = _zip(tmp_path / "bomb.zip", {"perfect.tiff": bytes(300 * 2**20)})  # 300 MiB of zeros
    assert z.stat().st_size < 2**20
    r = _score(gt_dir, z)
    assert r.status == "rejected" and "bomb" in r.error
    z = _zip(tmp_path / "big.zip", {"perfect.tiff": bytes(3 * 2**20)}, zipfile.ZIP_STORED)
    r = _score(gt_dir, z, "limits.max_archive_bytes=1000000")
    assert r.status == "rejected" and "exceeds" in r.error


def test_tiff_layouts_and_bands_agree(tmp_path):
    z = np.load(FIX / "repo_examples.npz", allow_pickle=False)
    gt, pred = z["gt_1"], z["pred_1"]
    ref = None
    layouts = [{}, {"compression": "zlib"}, {"tile": (64, 128)}, {"rowsperstrip": 7},
               {"compression": "lzw", "rowsperstrip": 33}]
    for i, kw in enumerate(layouts):
        d = tmp_path / str(i)
        _write_pair(d / "gt", d / "sub", "x", gt, pred, **kw)
        for band in ("4096", "100000", "8388608"):
            r = _score(d / "gt", d / "sub", "variant=bold", "radius=2", f"band_bytes={band}")
            ref = ref or r.items
            assert r.items == ref
    exp = SCORES["repo_examples"]["1"]["official_gt_binarised_122_bound2"]["F"]
    assert ref[0]["f1"] == pytest.approx(exp, abs=1e-12)


def test_greyscale_reading_rules(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (200, 100, 50)
    rgb[0, 1] = (10, 250, 130)
    rgb[1, 2] = (77, 77, 77)
    tifffile.imwrite(tmp_path / "c.tiff", rgb, photometric="rgb")
    got = _GreyImage(tmp_path / "c.tiff").rows(0, 2)
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    np.testing.assert_array_equal(got, (4899 * r + 9617 * g + 1868 * b + 8192) >> 14)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    got = _GreyImage(tmp_path / "c.png", truth=True).rows(0, 2)
    lib = (9797 * r + 19234 * g + 3737 * b) >> 15
    np.testing.assert_array_equal(got, np.where((r == g) & (g == b), r, lib))
    v16 = np.array([[0, 255, 256], [65535, 32768, 511]], np.uint16)
    tifffile.imwrite(tmp_path / "w.tiff", v16)
    np.testing.assert_array_equal(_GreyImage(tmp_path / "w.tiff").rows(0, 2),
                                  [[0, 0, 1], [255, 128, 1]])
    bits = np.zeros((3, 9), bool)
    bits[1, 2] = True
    tifffile.imwrite(tmp_path / "b.tiff", bits)  # 1-bit MINISWHITE: a set bit is black
    np.testing.assert_array_equal(_GreyImage(tmp_path / "b.tiff").rows(0, 3),
                                  np.where(bits, 0, 255))
    planar = np.random.default_rng(0).integers(0, 256, (3, 6, 7)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "p.tiff", planar, photometric="rgb", planarconfig="separate")
    r, g, b = (planar[i].astype(np.int64) for i in range(3))
    np.testing.assert_array_equal(_GreyImage(tmp_path / "p.tiff").rows(1, 4),
                                  ((4899 * r + 9617 * g + 1868 * b + 8192) >> 14)[1:4])
    tifffile.imwrite(tmp_path / "f.tiff", v16.astype(np.float32))
    with pytest.raises(Rejected, match="float32"):
        _GreyImage(tmp_path / "f.tiff")


def test_config_variants_and_purity(folder_mean_case):
    cfg = load_config("urisc", overrides=["variant=bold", "radius=1"])
    assert cfg["metric_version"] == "urisc-bold-pre-2019-12-25" and cfg["radius"] == 1
    a = urisc.score(*folder_mean_case, cfg)
    b = urisc.score(*folder_mean_case, cfg)
    assert a.to_dict() == b.to_dict()
    assert load_config("urisc", overrides=["variant=2019-12-25"])["gt_threshold"] == 122


def test_tolerance_option(tmp_path):
    _write_pair(tmp_path / "gt", tmp_path / "sub", "s", *_case("shift_1px"))
    r = _score(tmp_path / "gt", tmp_path / "sub", "tolerance_px=1")
    it = r.items[0]
    assert it["f1"] < 0.8 and it["tolerance_f1"] > 0.99
    assert r.metrics["tolerance_f1"] == it["tolerance_f1"]


def test_cli_exit_codes_and_json(tmp_path, folder_mean_case):
    from gpueval.cli import main

    gt_dir, sub_dir = folder_mean_case
    out = tmp_path / "out.json"
    assert main(["score", "urisc", "--truth", str(gt_dir), "--submission", str(sub_dir),
                 "--json", str(out), "--quiet"]) == 0
    d = json.loads(out.read_text())
    assert d["status"] == "ok" and d["metric_version"] == "urisc-2019-12-25"
    assert set(d["items"][0]) >= {"id", "precision", "recall", "f1"} and "f1" in d["metrics"]
    assert main(["score", "urisc", "--truth", str(gt_dir), "--submission", str(sub_dir),
                 "--set", "radius=2", "--quiet"]) == 2
    bad = tmp_path / "bad"
    _write_pair(tmp_path / "gt2", bad, "t", *_case("thick_pred"))
    assert main(["score", "urisc", "--truth", str(tmp_path / "gt2"), "--submission", str(bad),
                 "--json", str(out), "--quiet"]) == 3
    assert json.loads(out.read_text())["status"] == "rejected"
    assert main(["validate", "urisc", "--submission", str(bad)]) == 3
    assert main(["score", "urisc", "--truth", str(tmp_path / "nowhere"), "--submission",
                 str(sub_dir), "--quiet"]) == 4


@settings(max_examples=12)
@given(seed=st.integers(0, 2**31 - 1), radius=st.integers(0, 4), band=st.integers(1, 40),
       rowsperstrip=st.integers(1, 50), released=st.booleans())
def test_chunked_scoring_equals_whole_image(tmp_path_factory, seed, radius, band,
                                            rowsperstrip, released):
    tmp = tmp_path_factory.mktemp("h")
    rng = np.random.default_rng(seed)
    gt = np.where(rng.random((47, 31)) < 0.12, 0, 255).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.1] = 100  # grey GT values, as the simple track has
    pred = np.where(rng.random(gt.shape) < 0.1, 0, 255).astype(np.uint8)
    _write_pair(tmp / "gt", tmp / "sub", "x", gt, pred, rowsperstrip=rowsperstrip,
                compression="zlib")
    variant = "released-script" if released else "bold"
    r = _score(tmp / "gt", tmp / "sub", f"variant={variant}", f"radius={radius}",
               f"band_bytes={band * 31}")
    c = boundary_counts(gt, pred, radius=radius, gt_threshold=None if released else 122)
    p, rc, f = precision_recall_f(c.tp_pred, c.tp_gt, c.n_pred, c.n_gt)
    assert (r.items[0]["precision"], r.items[0]["recall"], r.items[0]["f1"]) == (p, rc, f)


def test_bench_workloads_tiny_scale():
    from gpueval.bench.urisc import bench_urisc, bench_urisc_r3

    rec = bench_urisc("cpu", 1e-4)  # 80 x 80 pair written to disk, closed-form check
    assert rec["status"] == "ok" and rec["check"] and rec["voxels"] == 80 * 80
    assert bench_urisc_r3("cpu", 1e-4)["status"] == "ok"


def test_pickled_image_reads_the_same(tmp_path):
    import pickle

    gt, _ = _case("grey_gt_exact")
    Image.fromarray(np.stack([gt] * 3, -1)).save(tmp_path / "g.png")
    img = _GreyImage(tmp_path / "g.png", truth=True)
    a, b = pickle.loads(pickle.dumps(img)), pickle.loads(pickle.dumps(img))
    np.testing.assert_array_equal(a.rows(3, 60), gt[3:60])
    assert b.rows(0, 256) is not None and a._decoded is b._decoded  # decoded once per process
    np.testing.assert_array_equal(img.rows(0, 256), gt)
