"""Issue #22 identity and leaderboard: a submission is (name in the folder, content hash).

Results are a cache by content; names are the teams. The scorer is a test double
(:func:`rescore_cases.fake_score`: the score is the number written in the file) so every
expected score here is the one written by the test.
"""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rescore_cases import SCORER, batch_folders, let_children_import_tests

from gpueval import cli
from gpueval.db import Record, ResultsDB, connect, migrations, split_sql, utc_now
from gpueval.rescore import (
    Summary,
    export_board,
    format_board,
    is_submission_entry,
    leaderboard,
    rescore,
    write_board_html,
)


@pytest.fixture
def batch(tmp_path, monkeypatch):
    let_children_import_tests(monkeypatch)
    truth, subs = batch_folders(tmp_path)
    url = f"sqlite:///{tmp_path}/r.sqlite"

    def run(contents: dict[str, str | None], **kw):
        for name, text in contents.items():
            if text is None:
                (subs / name).unlink()
            else:
                (subs / name).write_text(text)
        return rescore("urisc", truth, subs, db=url, scorer=SCORER, progress=False, **kw)

    return run, url


def _board(url, version=None, **kw):
    with connect(url) as d:
        return leaderboard(d, "urisc", version, **kw)


def test_two_names_with_the_same_bytes_are_scored_once_and_both_ranked(batch):
    run, url = batch
    s = run({"team-a": "0.5", "team-b": "0.5", "team-c": "0.75"})
    assert s.ok == 2 and s.duplicates == {"team-b": "team-a"}
    with connect(url) as d:
        assert d.count() == 2  # one scoring per distinct content
    board = _board(url)
    assert [(r["name"], r["rank"], r["score"]) for r in board.rows] == [
        ("team-c", 1, 0.75), ("team-a", 2, 0.5), ("team-b", 2, 0.5)]  # a tie shares a rank
    assert board.rows[1]["hash"] == board.rows[2]["hash"]


def test_an_overwritten_file_is_a_new_revision_with_its_new_score(batch):
    run, url = batch
    run({"team-a": "0.4867", "team-b": "0.5"})
    s = run({"team-a": "0.5182"})
    assert s.revised == ["team-a"] and s.ok == 1 and s.skipped == 1
    with connect(url) as d:
        revs = [(n.revision, n.state) for n in d.names("urisc") if n.name == "team-a"]
        assert revs == [(0, "superseded"), (1, "current")]  # the old row is kept
        assert d.count() == 3
    rows = {r["name"]: r for r in _board(url).rows}
    assert rows["team-a"]["score"] == 0.5182 and rows["team-a"]["rank"] == 1
    assert rows["team-a"]["name_revision"] == 1
    # changing it back to the first content is one more revision, scored from the cache
    s = run({"team-a": "0.4867"})
    assert s.revised == ["team-a"] and s.ok == 0 and s.skipped == 2
    assert {r["name"]: r["score"] for r in _board(url).rows}["team-a"] == 0.4867


def test_a_removed_file_is_withdrawn_never_deleted(batch):
    run, url = batch
    run({"team-a": "0.5", "team-b": "0.25"})
    s = run({"team-b": None})
    assert s.withdrawn == ["team-b"] and "1 withdrawn" in s.line()
    with connect(url) as d:
        assert [(n.name, n.state) for n in d.names("urisc")] == [
            ("team-a", "current"), ("team-b", "withdrawn")]
        assert d.count() == 2  # its result stays
    assert [r["name"] for r in _board(url).rows] == ["team-a"]
    s = run({"team-b": "0.25"})  # back again: a new current revision
    assert s.withdrawn == [] and s.skipped == 2
    assert [r["name"] for r in _board(url).rows] == ["team-a", "team-b"]


def test_a_stray_file_is_skipped_with_a_warning_not_ranked(batch, tmp_path):
    run, url = batch
    s = run({"notes.txt": "0.9", "team-a.zip": "0.5"},
            accepts=lambda e: is_submission_entry("urisc", e))
    assert s.total == 1 and s.ok == 1 and list(s.not_submissions) == ["notes.txt"]
    assert s.warnings == ["notes.txt: not a urisc submission (expected a folder or a .zip "
                          "file); skipped, not ranked"]
    assert [r["name"] for r in _board(url).rows] == ["team-a.zip"]


@pytest.mark.parametrize(("challenge", "name", "ok"), [
    ("urisc", "team.zip", True), ("urisc", "notes.txt", False), ("urisc", "README", False),
    ("xpress", "team.h5", True), ("xpress", "team.HDF5", True), ("xpress", "team.csv", False),
    ("cellmap", "team.zip", True), ("medsegfm", "case.npz", False), ("refuge", "x.zip", True),
])
def test_which_files_are_submissions(tmp_path, challenge, name, ok):
    (tmp_path / name).write_bytes(b"x")
    assert (is_submission_entry(challenge, tmp_path / name) is None) is ok
    (tmp_path / "folder.zarr").mkdir()
    assert is_submission_entry(challenge, tmp_path / "folder.zarr") is None  # folders: always


def _record(name, sub_hash, score, finished):
    result = {"challenge": "urisc", "metric_version": "v1", "status": "ok", "error": None,
              "score": score, "metrics": {"f1": score}, "items": [],
              "runtime": {"seconds": 0.1, "device": "cpu", "voxels": 1}}
    return Record("urisc", "v1", sub_hash, "t" * 64, name, "ok", None, score,
                  json.dumps(result), 0.1, "cpu", "0.1.0", "c" * 64, finished, finished)


def test_a_database_of_the_previous_release_is_migrated_and_read(tmp_path):
    """Schema 0001+0002 (today's release) with rows as its rescore wrote them: one row per
    content, named by the first name seen; an overwritten file left two contents under one
    name. After migrating, each name's newest content is current, the older superseded."""
    path = tmp_path / "old.sqlite"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                "applied_at TEXT NOT NULL)")
    for version, name, sql in migrations()[:2]:
        for stmt in split_sql(sql):
            raw.execute(stmt)
        raw.execute("INSERT INTO schema_version VALUES (?, ?, ?)", (version, name, utc_now()))
    raw.close()
    old = ResultsDB(f"sqlite:///{path}")  # no migrate(): the old schema, as it was
    old.insert(_record("team-a", "a1" * 32, 0.4867, "2026-11-01T00:00:00+00:00"))
    old.insert(_record("team-b", "b1" * 32, 0.5, "2026-11-01T00:00:01+00:00"))
    old.insert(_record("team-a", "a2" * 32, 0.5182, "2026-11-02T00:00:00+00:00"))
    assert old.schema_version() == 2
    old.close()
    with connect(f"sqlite:///{path}") as d:
        assert d.schema_version() == len(migrations()) >= 3
        assert d.count() == 3  # results untouched
        assert [(n.name, n.revision, n.submission_hash[:2], n.state)
                for n in d.names("urisc")] == [("team-a", 0, "a1", "superseded"),
                                              ("team-a", 1, "a2", "current"),
                                              ("team-b", 0, "b1", "current")]
        board = leaderboard(d, "urisc")
    assert [(r["name"], r["rank"], r["score"]) for r in board.rows] == [
        ("team-a", 1, 0.5182), ("team-b", 2, 0.5)]


def test_leaderboard_columns_console_csv_and_html(batch, tmp_path):
    run, url = batch
    run({"team-a": "warn 0.5", "team-b": "0.75", "=evil": "0.25", "team-x": "reject"})
    board = _board(url)
    text = format_board(board)
    lines = text.splitlines()
    assert lines[2].split() == ["rank", "submission", "score", "f1", "mean_precision",
                                "mean_recall",
                                "hash", "scored", "at", "warn", "status"]
    assert lines[-1].split()[0] == "team-x" and "a.tiff: not a TIFF" in lines[-1]  # no rank
    assert "null" not in text and "None" not in text
    assert not any(len(w) == 64 for w in text.split())  # 12-character hashes only
    row_a = next(ln for ln in lines if ln.split()[1:2] == ["team-a"])
    assert " 2 " in f" {row_a} "  # two warnings
    export_board(board, tmp_path / "b.csv")
    got = list(csv.DictReader((tmp_path / "b.csv").open()))
    assert list(got[0])[:13] == ["rank", "name", "score", "f1", "mean_precision",
                                 "mean_recall", "hash",
                                 "scored_at", "warnings", "status", "reason",
                                 "metric_version", "submission_hash"]
    assert [(r["rank"], r["name"]) for r in got] == [("1", "team-b"), ("2", "team-a"),
                                                     ("3", "'=evil"), ("", "team-x")]
    assert got[1]["warnings"] == "2" and len(got[1]["hash"]) == 12
    assert got[3]["reason"] == "a.tiff: not a TIFF" and got[0]["reason"] == ""
    html = write_board_html(board, tmp_path / "b.html",
                            sections=[("Plugged in", "<p id='plug'>x</p>")]).read_text()
    assert "<title>urisc leaderboard — metric version urisc-2019-12-25</title>" in html
    assert "Items (" not in html and "null" not in html
    assert "&lt;" not in html.split("<table", 1)[0]  # a readable heading, not a dump
    assert html.index("team-b") < html.index("team-a") < html.index("team-x")
    assert "<p id='plug'>x</p>" in html and html.index("leaderboard'") < html.index("plug")
    assert "=evil" in html  # HTML shows names as they are (escaped), no formula prefix


def test_refuge_board_is_its_final_ranking_with_its_weights(tmp_path, capsys):
    teams = {  # t1 leads classification, t2 segmentation
        "t1": {"mean_cup_dice": 0.70, "mean_disc_dice": 0.90, "vcdr_mae": 0.08, "auc": 0.99},
        "t2": {"mean_cup_dice": 0.85, "mean_disc_dice": 0.95, "vcdr_mae": 0.04, "auc": 0.80},
    }
    url = f"sqlite:///{tmp_path}/r.sqlite"
    with connect(url) as d:
        for name, m in teams.items():
            result = {"challenge": "refuge", "metric_version": "r1", "status": "ok",
                      "error": None, "score": None, "metrics": m, "items": [],
                      "runtime": {"seconds": 0.1, "device": "cpu", "voxels": 1}}
            now = utc_now()
            d.insert(Record("refuge", "r1", name.ljust(64, "0"), "t" * 64, name, "ok", None,
                            None, json.dumps(result), 0.1, "cpu", "0", "c" * 64, now, now))
        board = leaderboard(d, "refuge", ranking={"final_weights": [0.1, 0.9]})
    assert [r["name"] for r in board.rows] == ["t1", "t2"]
    assert "final weights [0.1, 0.9]" in board.notes[0]
    html = write_board_html(board, tmp_path / "r.html").read_text()
    assert "final score" in html and "segmentation rank" in html
    assert "final weights [0.1, 0.9]" in html and "null" not in html
    text = format_board(board)
    assert text.splitlines()[2].split()[:5] == ["rank", "submission", "final", "seg", "cls"]
    assert "final weights [0.1, 0.9]" in text
    assert cli.main(["leaderboard", "refuge", "--db", str(tmp_path / "r.sqlite"),
                     "--set", "ranking.final_weights=[0.1,0.9]"]) == 0
    assert "final weights [0.1, 0.9]" in capsys.readouterr().out


def test_compare_follows_names_across_versions(batch):
    run, url = batch
    run({"team-a": "0.5", "team-b": "0.75"})
    run({"team-a": "0.9"}, overrides=["metric_version=v2"])
    board = _board(url, "v2")
    assert board.compare == "urisc-2019-12-25"
    got = {r["name"]: (r["rank"], r["previous_rank"], r["rank_change"]) for r in board.rows}
    assert got == {"team-a": (1, 2, 1), "team-b": (2, 1, -1)}


def test_leaderboard_page_renders_in_headless_chromium(tmp_path):
    import shutil
    import subprocess

    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no headless Chromium on this machine (.ci/run installs it where it can)")
    url = f"sqlite:///{tmp_path}/r.sqlite"
    with connect(url) as d:
        for name, score in (("a", 0.9), ("<b>", 0.8)):
            d.insert(_record(name, name.ljust(64, "0"), score, utc_now()))
        page = write_board_html(leaderboard(d, "urisc"), tmp_path / "b.html")
    try:
        done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                               "--dump-dom", page.as_uri()], capture_output=True, text=True,
                              timeout=60)
    except subprocess.TimeoutExpired:
        pytest.skip("headless Chromium did not answer in 60 s")
    dom = done.stdout
    assert 'data-ready="1"' in dom  # the page's script ran to its end
    assert "&lt;b&gt;" in dom and "<b>" not in dom.split("<table", 1)[1]  # names escaped


#: Summary's list-valued fields and the words its line gives their count with
RARE = {"conflicts": "CONFLICTS", "duplicates": "duplicates", "revised": "changed since last run",
        "withdrawn": "withdrawn", "not_submissions": "not submissions (skipped)",
        "errors": "NOT RECORDED"}


@given(unchanged=st.integers(0, 3), counts=st.fixed_dictionaries(
    {field: st.integers(0, 3) for field in RARE}))
def test_the_summary_line_names_each_rarer_outcome_only_when_it_happened(unchanged, counts):
    s = Summary("urisc", "v1", "sqlite://", total=9, skipped=1, ok=2, rejected=3, failed=0,
                unchanged=unchanged, seconds=2.0)
    for field, n in counts.items():
        names = [f"n{i}" for i in range(n)]
        setattr(s, field, dict.fromkeys(names, "x") if field in ("duplicates",
                                                                  "not_submissions") else names)
    parts = s.line().split(" — ")[0].split(", ")
    # 5 processed in 2 s: 150 a minute
    assert s.line().endswith(" — 2.0 s, 150.0 submissions/min")
    assert parts[:5] == ["urisc v1: 9 submissions", "1 already scored", "2 scored",
                         "3 rejected", "0 failed"]
    want = [(unchanged, "re-scored unchanged")] + [(counts[f], w) for f, w in RARE.items()]
    assert parts[5:] == [f"{n} {words}" for n, words in want if n]
