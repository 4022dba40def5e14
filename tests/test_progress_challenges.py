"""Progress that means something on CellMap, XPRESS and REFUGE (issue #23): the bars name
the phase and the crop/label, file or image being worked on, weigh work (voxels or bytes),
and nothing at all is written when progress is off or ``--quiet`` is given."""

from __future__ import annotations

import io
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from cellmap_cases import put
from test_hostile_e2e import cellmap_setup, refuge_setup, xpress_setup

from gpueval import progress
from gpueval.api import score


class Tty(io.StringIO):
    def isatty(self):
        return True


def drawn(text: str) -> set[str]:
    """The descriptions tqdm drew (each redraw starts with a carriage return; the
    description ends at ':' before the percentage, or at the counts of a bar without
    total)."""
    return {m.strip() for m in re.findall(r"\r([^\r:|]*?)(?::|\s{2,}|\s\d)", text)
            if m.strip()}


@pytest.fixture
def phases(monkeypatch):
    """Every phase made during the test, and every update as (phase name, unit, n)."""
    made: list[progress.Phase] = []
    updates: list[tuple[str, str, float]] = []
    init, update = progress.Phase.__init__, progress.Phase.update

    def spy_init(self, *a, **k):
        init(self, *a, **k)
        made.append(self)

    def spy_update(self, n=1):
        updates.append((self.name, self.unit, n))
        update(self, n)

    monkeypatch.setattr(progress.Phase, "__init__", spy_init)
    monkeypatch.setattr(progress.Phase, "update", spy_update)
    return made, updates


SIDE, CHUNK = 8, 4


def _cellmap_two_crops(root: Path) -> tuple[Path, Path]:
    """Two crops with an instance label (mito: one 2³ blob in each of the 8 chunks, so every
    zarr chunk is stored and none is skipped) and a semantic one (ecs), predicted exactly."""
    inst = np.zeros((SIDE,) * 3, np.uint8)
    for n, (z, y, x) in enumerate(np.ndindex(2, 2, 2), start=1):
        inst[z * CHUNK + 1:z * CHUNK + 3, y * CHUNK + 1:y * CHUNK + 3,
             x * CHUNK + 1:x * CHUNK + 3] = n
    truth, sub = root / "truth.zarr", root / "sub.zarr"
    for crop in ("crop1", "crop2"):
        for where in (truth, sub):
            put(where, crop, "mito", inst, chunks=(CHUNK,) * 3)
            put(where, crop, "ecs", (inst > 0).astype(np.uint8), chunks=(CHUNK,) * 3)
    return truth, sub


def _cellmap_with_bars(root: Path, overrides: list[str]):
    """(result, descriptions drawn) of scoring the two-crop case with bars forced on."""
    truth, sub = _cellmap_two_crops(root)
    out = Tty()
    with progress.enabled(True, out, immediate=True):
        res = score("cellmap", truth, sub, device="cpu", progress=True, overrides=overrides)
    return res, drawn(out.getvalue())


def test_cellmap_bar_names_phases_and_crop_labels_and_weighs_voxels(tmp_path, phases):
    made, updates = phases
    res, seen = _cellmap_with_bars(tmp_path, [f"chunk=[{CHUNK},{CHUNK},{CHUNK}]"])
    assert res.status == "ok" and res.score == 1.0
    for crop in ("crop1", "crop2"):
        assert {f"labelling {crop}/mito", f"matching {crop}/mito", f"distances {crop}/mito",
                f"counting {crop}/ecs"} <= seen, seen
    # the one graph's bar: every chunk pass over a label counts its voxels once; an
    # instance label has three (labelling, matching, distances), a semantic one one
    voxels = SIDE ** 3
    per_phase: dict[str, float] = {}
    for name, unit, n in updates:
        if unit == "vx" and name in ("labelling", "matching", "distances", "counting"):
            per_phase[name] = per_phase.get(name, 0) + n
    assert per_phase == pytest.approx({"labelling": 2 * voxels, "matching": 2 * voxels,
                                       "distances": 2 * voxels, "counting": 2 * voxels})
    (graph_bar,) = [p for p in made if p.total and p.unit == "vx"]
    assert graph_bar.total == pytest.approx(2 * 3 * voxels + 2 * voxels)
    assert graph_bar.done == pytest.approx(graph_bar.total)
    # opening the arrays is a bar over the (crop, label) pairs
    (opening,) = [p for p in made if p.unit == "label"]
    assert opening.total == opening.done == 4


def test_cellmap_2025_names_each_crop_label(tmp_path, phases):
    made, _ = phases
    res, seen = _cellmap_with_bars(tmp_path, ["version=2025"])
    assert res.status == "ok"
    assert {f"scoring {c}/{lab}" for c in ("crop1", "crop2") for lab in ("mito", "ecs")} \
        <= seen, seen
    (labels,) = [p for p in made if p.unit == "label"]
    assert labels.total == labels.done == 4


def test_cellmap_progress_off_writes_nothing(tmp_path):
    truth, sub = _cellmap_two_crops(tmp_path)
    out = Tty()
    with progress.enabled(True, out, immediate=True):
        assert score("cellmap", truth, sub, device="cpu", progress=False).status == "ok"
    with progress.enabled(False, out, immediate=True):
        assert score("cellmap", truth, sub, device="cpu", progress=True).status == "ok"
    assert out.getvalue() == ""


def test_xpress_names_reading_gathering_and_scoring(tmp_path, phases):
    made, _ = phases
    skel, sub, sets = xpress_setup(tmp_path)
    out = Tty()
    with progress.enabled(True, out, immediate=True):
        res = score("xpress", skel, sub, device="cpu", progress=True, overrides=list(sets))
    assert res.status == "ok"
    seen = drawn(out.getvalue())
    assert {"reading skel.npz", "gathering sub.h5", "scoring ERL", "scoring Rand/VOI",
            "scoring split count", "scoring merge count"} <= seen, seen
    reading = [p for p in made if p.unit == "B"]
    assert reading[0].total == reading[0].done == skel.stat().st_size
    # fresh_ids: scan reads every chunk of the ROI: the gathering bar ends at its voxels
    (gathering,) = [p for p in made if p.total and p.unit == "vx"]
    roi = math.prod(res.extra["roi"]["shape_voxels"])
    assert gathering.total == pytest.approx(roi) and gathering.done == pytest.approx(roi)


def test_refuge_names_each_image_and_weighs_mask_bytes(tmp_path, phases):
    made, _ = phases
    truth, sub, _ = refuge_setup(tmp_path)
    out = Tty()
    with progress.enabled(True, out, immediate=True):
        res = score("refuge", truth, sub, device="cpu", progress=True)
    assert res.status == "ok"
    seen = drawn(out.getvalue())
    assert {"reading g0001.bmp", "segmentation g0001.bmp", "reading n0001.bmp",
            "segmentation n0001.bmp", "classification classification_results.csv",
            "fovea fovea_location_results.csv"} <= seen, seen
    (bar,) = [p for p in made if p.unit == "B"]
    masks = sum(f.stat().st_size for f in (truth / "Disc_Cup_Masks").glob("*.bmp"))
    assert bar.total == bar.done == masks


@pytest.mark.parametrize("quiet", [False, True])
def test_cli_quiet_writes_nothing_but_errors_even_on_a_terminal(tmp_path, monkeypatch,
                                                                 capsys, quiet):
    """On a terminal (stderr a tty, bars drawn at once) the CellMap fixture shows its phases;
    ``--quiet`` writes nothing at all, on either stream."""
    from gpueval.cli import main

    truth, sub, _ = cellmap_setup(tmp_path)
    err = Tty()
    monkeypatch.setattr(sys, "stderr", err)
    with progress.enabled(None, immediate=True):
        rc = main(["score", "cellmap", "--truth", str(truth), "--submission", str(sub),
                   "--device", "cpu", *(["--quiet"] if quiet else [])])
    assert rc == 0
    out = capsys.readouterr().out
    if quiet:
        assert err.getvalue() == "" and out == ""
    else:
        assert any(d.startswith("labelling crop") for d in drawn(err.getvalue()))
        assert "overall_score" in out  # the table, on stdout
