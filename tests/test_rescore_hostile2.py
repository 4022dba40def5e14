"""Issue #24 part 5 and the rescore half of parts 1 and 6: one bad entry never kills a batch.

Each class of hostile *entry* of a submissions folder (an undecodable name, a link into
/proc, a FIFO, an unreadable file, a top-level link to the truth, a link leaving a folder
submission, a hang) is recorded as rejected with its reason, on the first run and on every
resume, while the good entries are scored as in a clean batch. The scorer is a test double
(:func:`rescore_cases.fake_score`, imported by name in the child process) so the tests stay
fast; the real
U-RISC scorer runs the same classes in ``test_hostile_batch.py``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rescore_cases import SCORER, batch_folders, let_children_import_tests

from gpueval.db import connect
from gpueval.rescore import (
    DEFAULT_TIMEOUT_S,
    Board,
    _memory_bytes,
    _timeout_s,
    clean_text,
    escape_name,
    export_board,
    neutralise_formula,
    rescore,
    unescape_name,
)


@pytest.fixture
def child_imports_tests(monkeypatch):
    let_children_import_tests(monkeypatch)


def _good(subs: Path) -> None:
    (subs / "a-team").mkdir()
    (subs / "a-team" / "score.txt").write_text("0.75")
    (subs / "b-team").write_text("0.5")


def _hostile(root: Path, subs: Path, truth: Path) -> dict[str, str]:
    """Add one entry per class; return {escaped name: regex its recorded error matches}."""
    bad = {}
    raw = os.fsencode(str(subs)) + b"/team-\xff\xfe"  # not valid UTF-8
    os.mkdir(raw)
    with open(raw + b"/score.txt", "w") as f:
        f.write("0.25")
    bad_name = escape_name(os.fsdecode(b"team-\xff\xfe"))
    (subs / "proc-link").symlink_to("/proc/self/environ")
    bad["proc-link"] = "symbolic link leaving"
    os.mkfifo(subs / "fifo")
    bad["fifo"] = "FIFO"
    (subs / "truth-link").symlink_to(truth, target_is_directory=True)
    bad["truth-link"] = "symbolic link leaving"
    (subs / "inner-link").mkdir()
    (subs / "inner-link" / "score.txt").symlink_to(root / "secret.txt")
    (root / "secret.txt").write_text("1.0")
    bad["inner-link"] = r"score\.txt: symbolic link leaving"
    (subs / "loop").symlink_to(subs / "loop")
    bad["loop"] = "symbolic link leaving"
    (subs / "hangs").write_text("hang")
    bad["hangs"] = "time limit of 2 s"
    if os.geteuid() != 0:  # root reads anything: no permission error to provoke
        (subs / "locked").mkdir()
        (subs / "locked" / "score.txt").write_text("0.1")
        os.chmod(subs / "locked" / "score.txt", 0)
        bad["locked"] = "score.txt: permission denied"
    return bad_name, bad


def _rows(url: str) -> dict[str, tuple]:
    with connect(url) as d:
        names = {n.name: n.submission_hash for n in d.current_names("urisc")}
        by_hash = {r.submission_hash: r for r in d.latest("urisc")}
    return {n: (by_hash[h].status, by_hash[h].error, by_hash[h].score, by_hash[h].result_json)
            for n, h in names.items() if h in by_hash}


def test_hostile_entries_are_recorded_and_the_good_ones_score_as_in_a_clean_batch(
        tmp_path, child_imports_tests):
    truth, subs = batch_folders(tmp_path)
    clean = tmp_path / "clean"
    clean.mkdir()
    _good(clean)
    clean_url = f"sqlite:///{tmp_path}/clean.sqlite"
    rescore("urisc", truth, clean, db=clean_url, scorer=SCORER, progress=False, timeout=2)

    _good(subs)
    bad_name, bad = _hostile(tmp_path, subs, truth)
    url = f"sqlite:///{tmp_path}/r.sqlite"
    s = rescore("urisc", truth, subs, db=url, scorer=SCORER, progress=False, timeout=2)
    assert not s.errors and s.failed == 0
    assert (s.ok, s.rejected) == (3, len(bad)), {k: v[:3] for k, v in _rows(url).items()}
    rows = _rows(url)
    want = _rows(clean_url)
    for name in ("a-team", "b-team"):  # identical to the clean batch
        assert rows[name][:3] == want[name][:3] == ("ok", None, want[name][2])
    # the undecodable name is stored escaped, losslessly, and scored
    assert bad_name == "team-\\xff\\xfe" and rows[bad_name][2] == 0.25
    assert unescape_name(bad_name) == b"team-\xff\xfe"
    for name, pattern in bad.items():
        status, error, score, result_json = rows[name]
        assert status == "rejected" and score is None, (name, status, error)
        assert re.search(pattern, error), (name, error)
        assert str(tmp_path) not in error  # never a server path
        assert error.startswith(name)
        json.loads(result_json)
    for *_, result_json in rows.values():
        result_json.encode("utf-8")  # no lone surrogate anywhere in what is stored
        assert "\\ud" not in result_json

    # every resume: nothing re-scored, nothing raised, the same rows
    s2 = rescore("urisc", truth, subs, db=url, scorer=SCORER, progress=False, timeout=2)
    assert (s2.ok, s2.rejected, s2.failed, s2.skipped) == (0, 0, 0, 3 + len(bad))
    assert _rows(url) == rows


def test_limits_have_defaults_and_can_be_lifted(monkeypatch):
    monkeypatch.delenv("GPUEVAL_RESCORE_MEMORY_LIMIT", raising=False)
    import psutil

    assert _timeout_s(None) == DEFAULT_TIMEOUT_S and _timeout_s(0) is None
    assert _timeout_s(12) == 12.0
    total = psutil.virtual_memory().total
    assert 0 < _memory_bytes(None) < total
    assert _memory_bytes(None, 4) == pytest.approx(_memory_bytes(None) / 4, abs=1)
    assert _memory_bytes("1GiB") == 1 << 30 and _memory_bytes(0) is None
    monkeypatch.setenv("GPUEVAL_RESCORE_MEMORY_LIMIT", "2GiB")
    assert _memory_bytes(None) == 2 << 30


@given(st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b))
def test_escaped_names_round_trip_and_are_clean_text(raw):
    text = escape_name(os.fsdecode(raw))
    assert unescape_name(text) == raw
    text.encode("utf-8")  # strict: no surrogates
    assert text.isprintable()


def test_clean_text_escapes_lone_surrogates():
    assert clean_text("ok") == "ok"
    assert clean_text(os.fsdecode(b"a\xff")) == "a\\xff"
    clean_text("x\ud800").encode("utf-8")


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)",
                                  "\tx", "\rx"])
def test_formula_prefixes_are_neutralised(cell):
    assert neutralise_formula(cell) == "'" + cell
    assert neutralise_formula("team " + cell) == "team " + cell
    assert neutralise_formula(-2.5) == -2.5  # numbers stay numbers


def test_csv_export_neutralises_formula_names(tmp_path):
    rows = [{"rank": 1, "name": "=HYPERLINK(\"http://evil\",\"x\")", "score": -0.5,
             "status": "ok", "error": None},
            {"rank": None, "name": "@cmd", "score": None, "status": "rejected",
             "error": "-x: not a TIFF"}]
    export_board(Board("urisc", "v1", rows), tmp_path / "b.csv")
    got = list(csv.DictReader((tmp_path / "b.csv").open()))
    assert got[0]["name"] == "'=HYPERLINK(\"http://evil\",\"x\")"
    assert got[0]["score"] == "-0.5"  # a number, not text: untouched
    assert got[1]["name"] == "'@cmd"
    assert got[1]["rank"] == ""  # unranked: empty, not "null"


def test_a_failing_database_write_costs_only_its_entry(tmp_path, child_imports_tests,
                                                        monkeypatch):
    truth, subs = batch_folders(tmp_path)
    for name, text in (("a", "0.5"), ("b", "0.25"), ("c", "0.125")):
        (subs / name).write_text(text)
    with connect(f"sqlite:///{tmp_path}/r.sqlite") as store:
        insert = store.insert

        def flaky_insert(rec, force=False):
            if rec.submission_name == "b":
                raise sqlite3.OperationalError("disk I/O error")
            return insert(rec, force=force)

        monkeypatch.setattr(store, "insert", flaky_insert)
        s = rescore("urisc", truth, subs, db=store, scorer=SCORER, progress=False)
        assert s.ok == 2 and s.errors == ["b: could not be recorded: disk I/O error"]
        assert "1 NOT RECORDED" in s.line()
        monkeypatch.setattr(store, "insert", insert)
        s = rescore("urisc", truth, subs, db=store, scorer=SCORER, progress=False)
        assert (s.ok, s.skipped, s.errors) == (1, 2, [])  # the next run records it


def test_an_unreadable_folder_inside_an_entry_is_its_reason(tmp_path, monkeypatch):
    """os.walk skips folders it cannot list unless told not to: the entry must be refused,
    not hashed (and scored) without them. Simulated: root reads every folder."""
    from gpueval.rescore import _check_entry

    entry = tmp_path / "subs" / "team"
    (entry / "locked").mkdir(parents=True)
    (entry / "score.txt").write_text("0.5")
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    got = _check_entry(entry, "team", None)
    assert got.problem == "team: cannot be read: locked: permission denied"
    assert str(tmp_path) not in got.problem


def test_a_failing_name_write_costs_only_its_entry(tmp_path, monkeypatch):
    """The names are written in one transaction; if that fails, each on its own, so one bad
    write is reported for its entry and the others are recorded."""
    from gpueval.rescore import Entry, Summary, _sync_names

    entries = [Entry(tmp_path / n, n, n * 32) for n in ("aa", "bb", "cc")]
    with connect(f"sqlite:///{tmp_path}/r.sqlite") as store:
        one = store.record_name

        def flaky(challenge, name, h):
            if name == "bb":
                raise OSError("disk full")
            return one(challenge, name, h)

        def batch_fails(challenge, pairs):
            raise OSError("disk full")

        monkeypatch.setattr(store, "record_names", batch_fails)
        monkeypatch.setattr(store, "record_name", flaky)
        summary = Summary("urisc", "v", store.url)
        _sync_names(store, "urisc", entries, summary)
        assert summary.errors == ["bb: could not be recorded: disk full"]
        assert [n.name for n in store.current_names("urisc")] == ["aa", "cc"]
        assert summary.withdrawn == []  # a name not written is not "gone"
