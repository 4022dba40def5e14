"""Impact and stability pages: parse, escape every name, draw what they say; render in Chromium."""

import html
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from gpueval.board_html import (
    display_name,
    impact_page,
    stability_page,
    write_impact_page,
    write_stability_page,
)
from gpueval.metrics.impact import metric_change_impact
from gpueval.metrics.stability import bootstrap_mean_ranking, unsupported

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# hostile names: markup, an ampersand, quotes, and a non-UTF-8 byte carried by os.fsdecode
NAMES = ["<script>alert(1)</script>", "Tom & Jerry", "it's \"quoted\"", "caf\udce9",
         "plain", "a" * 60]


class _Collect(HTMLParser):
    """Text, tags and attributes of a page, failing on nothing (html.parser is lenient)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.text, self.tags, self.stack = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "br", "circle", "line", "path", "rect"):
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(page):
    p = _Collect()
    p.feed(page)
    p.close()
    assert p.stack == [], f"unclosed: {p.stack}"
    return p


@pytest.fixture(scope="module")
def impact():
    old = {n: 0.9 - 0.1 * i for i, n in enumerate(NAMES)}
    new = dict(old)
    new[NAMES[0]], new[NAMES[1]] = old[NAMES[1]] - 0.01, old[NAMES[0]]  # swap the first two
    items_old = {n: {"case <1>": s, "case&2": s} for n, s in old.items()}
    items_new = {n: {"case <1>": 2 * new[n] - s, "case&2": s} for n, s in old.items()}
    return metric_change_impact(old, new, items_old, items_new, old_version="v<1>",
                                new_version="v&2")


@pytest.fixture(scope="module")
def stability():
    rng = np.random.default_rng(0)
    table = {n: {f"c{j}": float(v) for j, v in enumerate(rng.random(8) + 0.1 * i)}
             for i, n in enumerate(NAMES)}
    return bootstrap_mean_ranking(table, n_resamples=100, seed=1)


def test_impact_page_parses_and_escapes_every_name(impact):
    page = impact_page(impact, challenge="urisc")
    p = _parse(page)
    text = "".join(p.text)
    for name in NAMES:
        assert display_name(name) in text  # each name readable once unescaped
    assert "<script>" not in page and "alert(1)</script>" not in page
    assert html.escape("<script>alert(1)</script>") in page
    assert "caf\\xe9" in text  # the undecodable byte shown as \xNN
    assert "case <1>" in text and "v&2" in text
    tags = [t for t, _ in p.tags]
    assert tags.count("svg") == 1 and "script" not in tags and "link" not in tags
    # one curve per submission ranked under both versions; the swap drawn in colour
    assert tags.count("path") == len(NAMES)
    strokes = [a["stroke"] for t, a in p.tags if t == "path"]
    assert strokes.count("#17813a") == 1 and strokes.count("#c0302b") == 1
    rows = page.split("<tbody>")[1].count("<tr>")
    assert rows == len(NAMES)
    assert "Kendall τ" in text and "Spearman ρ" in text


def test_stability_page_parses_escapes_and_draws_every_rank(stability):
    page = stability_page(stability, challenge="medsegfm")
    p = _parse(page)
    text = "".join(p.text)
    for name in NAMES:
        assert display_name(name) in text
    assert "<script>" not in page
    # one blob per (submission, rank) taken, plus one median dot per submission
    blobs = [a for t, a in p.tags if t == "circle"]
    assert len(blobs) == int((stability.rank_counts > 0).sum()) + len(NAMES)
    assert page.count("<tr>") == len(NAMES) + 1
    assert "100 bootstrap resamples of 8 cases (seed 1)" in text


def test_unsupported_stability_page_says_why():
    page = stability_page(unsupported("xpress"), challenge="xpress")
    _parse(page)
    assert "no per-case items" in page and "<svg" not in page


def test_pages_are_written_as_utf8_files(tmp_path, impact, stability):
    a = write_impact_page(impact, tmp_path / "impact.html")
    b = write_stability_page(stability, tmp_path / "stability.html")
    for f in (a, b):
        data = f.read_bytes().decode("utf-8")  # surrogates never reach the file
        assert data.startswith("<!doctype html>")
        assert not re.search(r"(src|href)=['\"]https?://", data)


@pytest.mark.skipif(CHROMIUM is None, reason="neither chromium nor chromium-browser is on PATH")
def test_pages_render_in_headless_chromium(tmp_path, impact, stability):
    from PIL import Image

    pages = {"impact": write_impact_page(impact, tmp_path / "impact.html"),
             "stability": write_stability_page(stability, tmp_path / "stability.html")}
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    for kind, page in pages.items():
        dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True,
                             text=True, timeout=120).stdout
        assert "<svg" in dom and ("id=\"bump\"" in dom or "id=\"blob\"" in dom)
        shot = tmp_path / f"{kind}.png"
        subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1200,1000",
                                page.as_uri()], capture_output=True, timeout=120, check=True)
        img = np.asarray(Image.open(shot).convert("RGB"))
        assert img.shape[0] > 100 and (img < 200).any()  # something dark was drawn
        # the blue of the blobs / the green and red of the bump chart reached the pixels
        colour = (img[..., 2] > img[..., 0] + 40) if kind == "stability" else \
            (img[..., 1] > img[..., 0] + 40)
        assert colour.any()
