"""``score --format``: the platforms' own result layouts, checked field by field."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from gpueval import formats
from gpueval.cli import main
from gpueval.errors import UsageError
from gpueval.result import Result

FIX = Path(__file__).parent / "fixtures"


def _hand_result() -> Result:
    # three cases, one NaN: every statistic below is derived by hand from these numbers
    items = [{"id": "a", "dsc": 0.5, "nsd": 1.0, "status": "scored"},
             {"id": "b", "dsc": 0.7, "nsd": float("nan"), "status": "scored"},
             {"id": "c", "dsc": 0.9, "nsd": 0.0, "status": "scored", "flag": True}]
    return Result("medsegfm", "v1", score=0.7, metrics={"dsc": 0.7, "nsd": 0.5, "auc": 0.25},
                  items=items)


def test_grand_challenge_case_and_aggregates_by_hand():
    doc = json.loads(formats.render(_hand_result(), "grand-challenge"))
    assert set(doc) == {"case", "aggregates"}
    # case: column by column, keyed by item id; strings and booleans are not metrics
    assert doc["case"] == {"dsc": {"a": 0.5, "b": 0.7, "c": 0.9},
                           "nsd": {"a": 1.0, "b": None, "c": 0.0}}
    dsc = doc["aggregates"]["dsc"]
    assert list(dsc) == list(formats.DESCRIBE_KEYS)
    assert dsc["count"] == 3 and dsc["mean"] == pytest.approx(0.7)
    assert dsc["std"] == pytest.approx(statistics.stdev([0.5, 0.7, 0.9]))  # ddof 1 = 0.2
    assert (dsc["min"], dsc["max"]) == (0.5, 0.9)
    # pandas' linear quantiles of (0.5, 0.7, 0.9): 25% halfway between 0.5 and 0.7
    assert (dsc["25%"], dsc["50%"], dsc["75%"]) == pytest.approx((0.6, 0.7, 0.8))
    nsd = doc["aggregates"]["nsd"]
    assert nsd["count"] == 2 and nsd["mean"] == pytest.approx(0.5)  # NaN left out
    # the challenge's own aggregates that are not item columns, and the headline
    assert doc["aggregates"]["auc"] == 0.25 and doc["aggregates"]["score"] == 0.7


def test_grand_challenge_headline_null_stays_null():
    r = Result("refuge", "v", score=None, metrics={"auc": float("nan")},
               items=[{"id": "x", "cup_dice": 1.0}])
    doc = json.loads(formats.render(r, "grand-challenge"))
    assert doc["aggregates"]["score"] is None and doc["aggregates"]["auc"] is None
    assert doc["aggregates"]["cup_dice"]["std"] is None  # one value: no sample deviation


def test_format_applies_to_its_challenge_only():
    with pytest.raises(UsageError, match="cellmap"):
        formats.check_format("cellmap", "urisc")
    with pytest.raises(UsageError, match="medsegfm"):
        formats.check_format("medsegfm-csv", "xpress")
    with pytest.raises(UsageError, match="rejected"):
        formats.render(Result.rejected("urisc", "v", "bad"), "grand-challenge")


def _medsegfm_folders(tmp_path: Path, names) -> tuple[Path, Path]:
    truth, sub = tmp_path / "truth", tmp_path / "sub"
    truth.mkdir()
    sub.mkdir()
    for name in names:
        z = np.load(FIX / "medsegfm" / f"{name}.npz", allow_pickle=False)
        np.savez(truth / f"{name}.npz", gts=z["gts"], spacing=z["spacing"])
        np.savez(sub / f"{name}.npz", segs=z["segs"])
    return truth, sub


def test_cli_medsegfm_csv_and_grand_challenge(tmp_path, capsys):
    scores = json.loads((FIX / "medsegfm" / "scores.json").read_text())["semantic"]
    names = ["perfect", "tiny_and_low_dice"]
    truth, sub = _medsegfm_folders(tmp_path, names)
    out = tmp_path / "o" / "result.csv"
    assert main(["score", "medsegfm", "--truth", str(truth), "--submission", str(sub),
                 "--device", "cpu", "--quiet", "--format", "medsegfm-csv",
                 "--json", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["CaseName", "DSC", "NSD"]  # the official semantic columns
    assert [r["CaseName"] for r in rows] == names
    for r in rows:
        assert float(r["DSC"]) == pytest.approx(scores[r["CaseName"]]["case_dsc"], abs=1e-6)
    gc = tmp_path / "metrics.json"
    assert main(["score", "medsegfm", "--truth", str(truth), "--submission", str(sub),
                 "--device", "cpu", "--quiet", "--format", "grand-challenge",
                 "--json", str(gc)]) == 0
    doc = json.loads(gc.read_text())
    for name in names:
        assert doc["case"]["dsc"][name] == pytest.approx(scores[name]["case_dsc"], abs=1e-6)
    mean = sum(scores[n]["case_dsc"] for n in names) / 2
    assert doc["aggregates"]["dsc"]["mean"] == pytest.approx(mean, abs=1e-6)
    assert doc["aggregates"]["score"] == pytest.approx(mean, abs=1e-6)


def test_cli_format_errors_before_scoring(tmp_path, capsys):
    # nothing exists at these paths: the format is refused first (exit 2), nothing is scored
    args = ["score", "urisc", "--truth", str(tmp_path / "no"), "--submission",
            str(tmp_path / "no")]
    assert main([*args, "--format", "cellmap", "--json", str(tmp_path / "r.json")]) == 2
    assert "--format cellmap" in capsys.readouterr().err
    assert main([*args, "--format", "grand-challenge"]) == 2
    assert "--json OUT" in capsys.readouterr().err


def test_cli_cellmap_result_json(tmp_path):
    from cellmap_cases import put

    truth, sub = tmp_path / "gt.zarr", tmp_path / "sub.zarr"
    gt = np.zeros((4, 4, 4), np.uint8)
    gt[:2] = 1  # one instance of 32 voxels
    put(truth, "crop1", "mito", gt)
    put(sub, "crop1", "mito", gt)  # perfect
    sem = np.zeros((4, 4, 4), np.uint8)
    sem[0, 0, :2] = 1  # 2 truth voxels; the submission finds one and adds one: IoU 1/3
    pred = np.zeros_like(sem)
    pred[0, 0, 1:3] = 1
    put(truth, "crop1", "er", sem)
    put(sub, "crop1", "er", pred)
    out = tmp_path / "result.json"
    assert main(["score", "cellmap", "--truth", str(truth), "--submission", str(sub),
                 "--device", "cpu", "--quiet", "--format", "cellmap", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc) == {"label_scores", "overall_instance_score", "overall_semantic_score",
                        "overall_score", "total_evals", "num_evals_done"}
    assert set(doc["label_scores"]) == {"mito", "er"}
    assert doc["label_scores"]["er"]["iou"] == pytest.approx(1 / 3)
    assert not {"tp", "fp", "fn"} & set(doc["label_scores"]["er"])
    assert doc["label_scores"]["mito"]["f1"] == 1.0
    assert doc["overall_instance_score"] == doc["label_scores"]["mito"]["combined_score"]
    assert doc["overall_semantic_score"] == pytest.approx(1 / 3)
    # overall = sqrt(instance · semantic) (cellmap.md §6)
    assert doc["overall_score"] == pytest.approx(math.sqrt(
        doc["overall_instance_score"] * doc["overall_semantic_score"]))
    assert doc["num_evals_done"] == 2
    assert isinstance(doc["total_evals"], int)
