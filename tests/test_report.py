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
