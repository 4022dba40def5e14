"""``gpueval leaderboard``: ranking, rank changes between metric versions, exports."""

from __future__ import annotations

import csv
import json

import pytest

from gpueval import cli
from gpueval.db import Record, connect, utc_now
from gpueval.errors import UsageError
from gpueval.rescore import export_board, format_board, leaderboard


def _rec(name, version, score, *, status="ok", challenge="urisc", metrics=None):
    sub = name.ljust(64, "0")
    error = None if status == "ok" else "a.tiff: not a TIFF"
    result = {"challenge": challenge, "metric_version": version, "status": status,
              "error": error, "score": score, "metrics": metrics or {"f1": score}, "items": [],
              "runtime": {"seconds": 0.1, "device": "cpu", "voxels": 1}}
    now = utc_now()
    return Record(challenge, version, sub, "t" * 64, name, status, error, score,
                  json.dumps(result), 0.1, "cpu", "0.1.0", "c" * 64, now, now)


@pytest.fixture
def two_versions(tmp_path):
    """v1: A .9, B .8, C .8 (tie), D rejected; v2: A .7, B .85, C .6, E .9 (new)."""
    url = f"sqlite:///{tmp_path}/r.sqlite"
    with connect(url) as d:
        for name, score in (("A", 0.9), ("B", 0.8), ("C", 0.8)):
            d.insert(_rec(name, "v1", score))
        d.insert(_rec("D", "v1", None, status="rejected"))
        for name, score in (("A", 0.7), ("B", 0.85), ("C", 0.6), ("E", 0.9)):
            d.insert(_rec(name, "v2", score))
    return url


def test_ranks_ties_and_unranked(two_versions):
    with connect(two_versions) as d:
        board = leaderboard(d, "urisc", "v1")
    assert board.compare is None  # v1 is the oldest: nothing before it
    got = [(r["name"], r["rank"]) for r in board.rows]
    assert got == [("A", 1), ("B", 2), ("C", 2), ("D", None)]  # ties share a rank


def test_rank_changes_against_the_previous_version(two_versions, tmp_path, capsys):
    out_csv = tmp_path / "board.csv"
    html = tmp_path / "board.html"
    rc = cli.main(["leaderboard", "urisc", "--db", two_versions, "--export", str(out_csv),
                   "--html", str(html)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "metric version v2" in text and "against v1" in text
    rows = {r["name"]: r for r in csv.DictReader(out_csv.open())}
    # v2 ranks: E 1, B 2, A 3, C 4; v1 ranks: A 1, B 2, C 2
    assert {n: r["rank"] for n, r in rows.items()} == {"E": "1", "B": "2", "A": "3", "C": "4"}
    assert {n: r["previous_rank"] for n, r in rows.items()} == {"E": "", "B": "2", "A": "1",
                                                                "C": "2"}
    assert {n: r["rank_change"] for n, r in rows.items()} == {"E": "", "B": "0", "A": "-2",
                                                              "C": "-2"}
    line_a = next(ln for ln in text.splitlines() if " A " in f" {ln} ")
    assert "-2" in line_a
    line_e = next(ln for ln in text.splitlines() if " E " in f" {ln} ")
    assert "new" in line_e
    assert "Rank changes" in html.read_text()


def test_explicit_versions_and_errors(two_versions, tmp_path):
    with connect(two_versions) as d:
        b = leaderboard(d, "urisc", "v1", compare="v2")
        assert {r["name"]: r["rank_change"] for r in b.rows} == {
            "A": 2, "B": 0, "C": 2, "D": None}  # C: 4th under v2, 2nd under v1
        assert "rank change against v2" in format_board(b)
        with pytest.raises(UsageError, match="recorded: v1, v2"):
            leaderboard(d, "urisc", "v3")
        with pytest.raises(UsageError, match="no refuge results"):
            leaderboard(d, "refuge")
        with pytest.raises(UsageError, match=".csv or .parquet"):
            export_board(b, tmp_path / "board.xlsx")
    with pytest.raises(SystemExit):
        cli.main(["leaderboard", "urisc"])  # --db is required
    assert cli.main(["leaderboard", "urisc", "--db", str(tmp_path / "missing.sqlite")]) == 2


def test_parquet_export(two_versions, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow", reason="parquet export needs pyarrow")
    with connect(two_versions) as d:
        export_board(leaderboard(d, "urisc"), tmp_path / "b.parquet")
    df = pd.read_parquet(tmp_path / "b.parquet")
    assert list(df["name"]) == ["E", "B", "A", "C"]
    assert list(df["rank"]) == [1, 2, 3, 4]


def test_refuge_uses_the_official_final_ranking(tmp_path):
    ranking = pytest.importorskip("gpueval.metrics.ranking")
    teams = {
        "t1": {"mean_cup_dice": 0.80, "mean_disc_dice": 0.90, "vcdr_mae": 0.05, "auc": 0.90},
        "t2": {"mean_cup_dice": 0.85, "mean_disc_dice": 0.95, "vcdr_mae": 0.04, "auc": 0.80},
        "t3": {"mean_cup_dice": 0.70, "mean_disc_dice": 0.93, "vcdr_mae": 0.08, "auc": 0.97},
        "t4": {"mean_cup_dice": None, "mean_disc_dice": 0.93, "vcdr_mae": 0.08, "auc": 0.97},
    }
    url = f"sqlite:///{tmp_path}/r.sqlite"
    with connect(url) as d:
        for name, m in teams.items():
            d.insert(_rec(name, "refuge-2018", None, challenge="refuge", metrics=m))
        d.insert(_rec("t5", "refuge-2018", None, challenge="refuge", status="rejected"))
        board = leaderboard(d, "refuge")
    expected = ranking.refuge_leaderboard(teams)["final"]["teams_in_order"]
    ranked = [r["name"] for r in board.rows if r["rank"] is not None]
    assert ranked == expected and "t4" not in ranked  # no cup Dice: off the final board
    assert [r["rank"] for r in board.rows if r["rank"] is not None] == [1, 2, 3]
    seg = ranking.refuge_leaderboard(teams)["segmentation"]["teams_in_order"]
    assert {r["name"]: r["segmentation_rank"] for r in board.rows if r["name"] in seg} == {
        t: i + 1 for i, t in enumerate(seg)}
    assert board.rows[-1]["name"] == "t5" and board.rows[-1]["rank"] is None


def test_refuge_ranking_weights_come_from_the_config(tmp_path):
    """configs/refuge.yaml ranking.* (or --set) reach the final board, not built-in weights."""
    ranking = pytest.importorskip("gpueval.metrics.ranking")
    teams = {  # t1 leads classification, t2 segmentation: the final weights decide
        "t1": {"mean_cup_dice": 0.70, "mean_disc_dice": 0.90, "vcdr_mae": 0.08, "auc": 0.99},
        "t2": {"mean_cup_dice": 0.85, "mean_disc_dice": 0.95, "vcdr_mae": 0.04, "auc": 0.80},
    }
    url = f"sqlite:///{tmp_path}/r.sqlite"
    with connect(url) as d:
        for name, m in teams.items():
            d.insert(_rec(name, "refuge-2018", None, challenge="refuge", metrics=m))
        default = leaderboard(d, "refuge")
        cls_heavy = leaderboard(d, "refuge", ranking={"final_weights": [0.1, 0.9]})
    first = {b: next(r["name"] for r in board.rows if r["rank"] == 1)
             for b, board in (("default", default), ("cls", cls_heavy))}
    assert first["default"] == ranking.refuge_leaderboard(teams)["final"]["teams_in_order"][0]
    want = ranking.refuge_leaderboard(teams, final_weights=(0.1, 0.9))
    assert first["cls"] == want["final"]["teams_in_order"][0] == "t1"
    assert first["default"] == "t2"
    db = str(tmp_path / "r.sqlite")
    assert cli.main(["leaderboard", "refuge", "--db", db, "--export", str(tmp_path / "a.csv"),
                     "--set", "ranking.final_weights=[0.1,0.9]"]) == 0
    assert (tmp_path / "a.csv").read_text().splitlines()[1].split(",")[1] == "t1"
