"""HTML reports: self-contained, sortable, with pictures; rendered in headless Chromium."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from gpueval.cli import main
from gpueval.report import error_overlay, write_leaderboard

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep") / "demo.html"
    assert main(["demo", "--size", "48", "--report", str(out)]) == 0
    return out


def test_report_is_self_contained(demo_report):
    text = demo_report.read_text()
    assert not re.search(r"src=['\"]https?://", text)  # nothing fetched at view time
    assert text.count("data:image/png;base64,") == 3
    assert "id='items'" in text and "class='sortable'" in text
    blob = text.split("<pre>")[1].split("</pre>")[0]
    assert "splits_found" in blob


def test_error_overlay_colours():
    rgb = error_overlay(np.array([[1, 1, 0]]), np.array([[1, 0, 1]]))
    assert rgb[0, 0].tolist() == [200, 200, 200]  # agreement
    assert rgb[0, 1].tolist() == [40, 90, 230]  # missed (false negative)
    assert rgb[0, 2].tolist() == [220, 40, 40]  # false positive


def test_leaderboard_slope_chart(tmp_path):
    before = [{"name": "a", "rank": 1, "score": 0.9}, {"name": "b", "rank": 2, "score": 0.8}]
    after = [{"name": "b", "rank": 1, "score": 0.85}, {"name": "a", "rank": 2, "score": 0.84}]
    text = write_leaderboard(after, tmp_path / "lb.html", previous=before).read_text()
    assert "id='slope'" in text and text.count("<line") == 2


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed")
def test_report_renders_in_headless_chromium(demo_report, tmp_path):
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    url = demo_report.as_uri()
    dom = subprocess.run(flags + ["--dump-dom", url], capture_output=True, text=True,
                         timeout=120).stdout
    assert 'data-ready="1"' in dom  # the script ran to its end: no JavaScript error
    assert "<table" in dom and "id=\"items\"" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1000,1200", url],
                   capture_output=True, timeout=120, check=True)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"))
    assert img.std() > 5  # not a blank page


def test_report_links_zarr_inputs_to_neuroglancer(tmp_path):
    import zarr

    from gpueval.report import write_report
    from gpueval.result import Result

    for name in ("truth.zarr", "pred.zarr"):
        z = zarr.create_array(tmp_path / name, shape=(8, 8, 8), chunks=(4, 4, 4), dtype="u4")
        z[:] = 1
    r = Result("demo", "demo-1", score=1.0, items=[{"id": "x", "f1": 1.0}])
    text = write_report(r, tmp_path / "r.html", truth=str(tmp_path / "truth.zarr"),
                        submission=str(tmp_path / "pred.zarr")).read_text()
    assert "id='neuroglancer'" in text and "truth.zarr" in text


# -------------------------------------------------- missing items and per-class metrics (#21)

INF = float("inf")


def _medsegfm_result():
    from gpueval.result import Result

    # case "a" had no prediction (scored as zeros), case "b" was predicted
    items = [{"id": "a", "dsc": 0.0, "nsd": 0.0, "running_time": 0.0, "missing": True},
             {"id": "b", "dsc": 0.8, "nsd": 0.9, "running_time": 1.5}]
    cases = {"a": {"per_class": {"1": {"dsc": 0.0, "nsd_2mm": 0.0, "hd95_mm": INF},
                                 "2": {"dsc": 0.0, "nsd_2mm": 0.0, "hd95_mm": INF}}},
             "b": {"per_class": {"1": {"dsc": 0.6, "nsd_2mm": 0.8, "hd95_mm": 2.0},
                                 "2": {"dsc": 1.0, "nsd_2mm": 1.0, "hd95_mm": 0.0}}}}
    return Result("medsegfm", "v", score=0.4, metrics={"dsc": 0.4}, items=items,
                  extra={"cases": cases}, warnings=["a.npz: missing <b>case</b>"])


def test_table_shows_a_missing_case_as_missing_not_zero():
    from gpueval.result import format_table

    text = format_table(_medsegfm_result())
    row_a = next(ln for ln in text.splitlines() if ln.startswith("a "))
    assert row_a.split() == ["a", "missing", "missing", "missing", "missing"]
    row_b = next(ln for ln in text.splitlines() if ln.startswith("b "))
    assert row_b.split() == ["b", "0.8", "0.9", "1.5", "scored"]
    assert "1 of 2 item(s) missing" in text


def test_per_class_means_are_hand_derived():
    from gpueval.result import per_class_rows

    rows = {r["class"]: r for r in per_class_rows(_medsegfm_result())}
    # class 1: DSC (0 + 0.6) / 2 = 0.3, NSD (0 + 0.8) / 2 = 0.4, HD95 over finite cases: 2.0
    assert rows["1"] == pytest.approx({"class": "1", "dsc": 0.3, "nsd": 0.4,
                                       "hd95_finite_mm": 2.0, "cases": 2})
    # class 2: DSC (0 + 1) / 2, NSD (0 + 1) / 2, HD95 only case b's 0
    assert rows["2"] == pytest.approx({"class": "2", "dsc": 0.5, "nsd": 0.5,
                                       "hd95_finite_mm": 0.0, "cases": 2})


def test_per_class_of_interactive_cases_uses_the_final_step():
    from gpueval.result import Result, per_case_class_rows

    steps = {str(k): {"per_class": {"1": {"dsc": k / 10, "nsd_2mm": k / 20}}}
             for k in range(1, 7)}
    r = Result("medsegfm", "v", items=[{"id": "c", "dsc": 0.6}],
               extra={"cases": {"c": {"kind": "interactive", "steps": steps}}})
    (row,) = per_case_class_rows(r)
    assert row["dsc"] == 0.6 and row["nsd"] == 0.3 and row["missing"] is False


def test_cellmap_per_class_rows_from_label_metrics():
    from gpueval.result import Result, format_table, per_class_rows

    r = Result("cellmap", "v", metrics={"overall_score": 0.3, "er_iou": 0.25,
                                        "er_mem_iou": 0.5, "mito_f1": 0.75,
                                        "mito_combined_score": 0.5},
               items=[{"id": "crop1/er", "tp": 0, "fn": 9, "status": "missing"},
                      {"id": "crop1/er_mem", "tp": 4, "fn": 0, "status": "scored"},
                      {"id": "crop2/mito", "tp": 2, "fn": 1, "status": "scored"}])
    rows = per_class_rows(r)
    # "er" must not take "er_mem_iou"; the order is the items' order
    assert rows == [{"class": "er", "iou": 0.25}, {"class": "er_mem", "iou": 0.5},
                    {"class": "mito", "f1": 0.75, "combined_score": 0.5}]
    text = format_table(r)
    assert "crop1/er      0   9   missing" in text  # counts stay numbers
    assert "per class" in text


def test_report_has_warnings_per_class_and_missing_cells(tmp_path):
    from gpueval.report import write_report

    text = write_report(_medsegfm_result(), tmp_path / "r.html").read_text()
    assert "id='warnings'" in text and "&lt;b&gt;case&lt;/b&gt;" in text  # escaped
    assert text.index("id='warnings'") < text.index("id='score'")
    assert "id='per-class'" in text and "id='per-case-class'" in text
    assert "<td class=missing data-v='0.0'>missing</td>" in text
    assert "Items (2, 1 missing" in text


def test_real_medsegfm_missing_case_and_per_class_in_the_table(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_audit2_cli import BUILD

    from gpueval import api
    from gpueval.result import format_table

    truth, sub, _ = BUILD["medsegfm"](tmp_path)
    (truth / "case2.npz").write_bytes((truth / "case1.npz").read_bytes())  # no prediction
    r = api.score("medsegfm", truth, sub, device="cpu")
    assert r.status == "ok"
    text = format_table(r)
    row = next(ln for ln in text.splitlines() if ln.startswith("case2 "))
    assert "missing" in row and " 0 " not in f" {row} "
    assert "per class (mean over cases)" in text


def test_scorer_notes_are_shown_in_the_table_and_the_report(tmp_path):
    from gpueval.report import write_report
    from gpueval.result import Result, format_table

    notes = [f"x{i}.png: not a .bmp mask, segmentation metrics are NaN" for i in range(7)]
    r = Result("refuge", "v", metrics={"mean_disc_dice": None}, extra={"notes": notes})
    text = format_table(r)
    assert "note: x0.png: not a .bmp mask" in text and "note: x5.png" not in text
    assert "... 2 more notes" in text
    page = write_report(r, tmp_path / "r.html").read_text()
    assert "id='notes'" in page and page.count("not a .bmp mask") >= 7
