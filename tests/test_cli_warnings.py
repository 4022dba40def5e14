"""Warnings reach the user, output paths fail early, messages hide server paths (issue #21
items 5 and the contract's ``warnings``; issue #24 part 6's safety net).

Scoring runs on the tiny U-RISC / MedSegFM pairs of ``test_audit2_cli``; a warning is planted
by wrapping the challenge module's ``score``/``validate`` with one :func:`gpueval.notices.warn`
call, so these tests do not depend on which scorer warns about what.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_audit2_cli import BUILD

import gpueval.challenges.medsegfm as medsegfm_module
import gpueval.challenges.urisc as urisc_module
from gpueval import api
from gpueval.api import scrub_paths
from gpueval.cli import main
from gpueval.errors import Rejected, TruthError
from gpueval.notices import warn

ROOT = Path(__file__).resolve().parents[1]
PLANTED = "img1.tiff: planted warning; fix: nothing"


@pytest.fixture
def urisc_pair(tmp_path):
    truth, sub, _ = BUILD["urisc"](tmp_path)
    return truth, sub


@pytest.fixture
def warns(monkeypatch):
    """Make U-RISC's score and validate emit :data:`PLANTED` (and count the score calls)."""
    calls = {"score": 0}
    score, validate = urisc_module.score, urisc_module.validate

    def scoring(*a, **k):
        calls["score"] += 1
        warn(PLANTED)
        return score(*a, **k)

    def validating(*a, **k):
        warn(PLANTED)
        return validate(*a, **k)

    monkeypatch.setattr(urisc_module, "score", scoring)
    monkeypatch.setattr(urisc_module, "validate", validating)
    return calls


def _score_args(truth, sub, *extra):
    return ["score", "urisc", "--truth", str(truth), "--submission", str(sub), "--device",
            "cpu", *extra]


# ------------------------------------------------------------------------------ score


def test_score_prints_warnings_on_stderr_and_writes_them_in_the_json(
        urisc_pair, warns, tmp_path, capsys):
    truth, sub = urisc_pair
    out = tmp_path / "r.json"
    assert main(_score_args(truth, sub, "--json", str(out))) == 0
    captured = capsys.readouterr()
    assert f"warning: {PLANTED}" in captured.err.splitlines()
    assert PLANTED not in captured.out  # the table is stdout, warnings stderr
    assert json.loads(out.read_text())["warnings"] == [PLANTED]


def test_quiet_prints_nothing_but_errors(urisc_pair, warns, tmp_path, capsys):
    truth, sub = urisc_pair
    rc = main(_score_args(truth, sub, "--quiet", "--json", str(tmp_path / "r.json"),
                          "--report", str(tmp_path / "r.html")))
    assert rc == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # no table, warning, "report written"
    assert (tmp_path / "r.html").exists()
    assert json.loads((tmp_path / "r.json").read_text())["warnings"] == [PLANTED]


def test_report_line_is_printed_without_quiet(urisc_pair, tmp_path, capsys):
    truth, sub = urisc_pair
    assert main(_score_args(truth, sub, "--report", str(tmp_path / "r.html"))) == 0
    assert "report written to" in capsys.readouterr().err


def test_json_into_a_missing_folder_creates_it(urisc_pair, tmp_path):
    truth, sub = urisc_pair
    out = tmp_path / "new" / "deeper" / "r.json"
    report = tmp_path / "other" / "r.html"
    assert main(_score_args(truth, sub, "--quiet", "--json", str(out), "--report",
                            str(report))) == 0
    assert json.loads(out.read_text())["status"] == "ok" and report.exists()


@pytest.mark.parametrize("option", ["--json", "--report"])
def test_an_output_that_cannot_be_written_is_exit_2_before_scoring(
        urisc_pair, warns, tmp_path, capsys, option):
    truth, sub = urisc_pair
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    rc = main(_score_args(truth, sub, option, str(blocker / "r.out")))
    assert rc == 2 and warns["score"] == 0  # nothing was scored
    err = capsys.readouterr().err
    assert err.startswith("gpueval: ") and option in err and "Traceback" not in err
    (tmp_path / "dir.json").mkdir()
    assert main(_score_args(truth, sub, option, str(tmp_path / "dir.json"))) == 2
    assert warns["score"] == 0


def test_missing_json_folder_end_to_end_as_a_subprocess(urisc_pair, tmp_path):
    truth, sub = urisc_pair
    out = tmp_path / "made" / "r.json"
    p = subprocess.run([sys.executable, "-m", "gpueval", *_score_args(truth, sub, "--json",
                                                                      str(out))],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(out.read_text())["warnings"] == []
    assert "Traceback" not in p.stderr


# ------------------------------------------------------------------------------ validate


def test_validate_prints_warnings_and_strict_exits_3(urisc_pair, warns, capsys):
    _, sub = urisc_pair
    assert main(["validate", "urisc", "--submission", str(sub)]) == 0
    captured = capsys.readouterr()
    assert f"warning: {PLANTED}" in captured.err
    assert "valid, with 1 warning(s)" in captured.out
    assert main(["validate", "urisc", "--submission", str(sub), "--strict"]) == 3
    captured = capsys.readouterr()
    assert f"warning: {PLANTED}" in captured.err and "rejected (--strict)" in captured.out


def test_validate_strict_without_warnings_is_valid(urisc_pair, capsys):
    _, sub = urisc_pair
    assert main(["validate", "urisc", "--submission", str(sub), "--strict"]) == 0
    assert capsys.readouterr().out.strip().endswith("valid")


# ------------------------------------------------------------------------------ report


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.order: list[str] = []

    def handle_starttag(self, tag, attrs):
        ident = dict(attrs).get("id")
        if ident:
            self.order.append(ident)


def test_html_report_shows_the_warnings_at_the_top(urisc_pair, warns, tmp_path):
    truth, sub = urisc_pair
    out = tmp_path / "r.html"
    assert main(_score_args(truth, sub, "--quiet", "--report", str(out))) == 0
    page = out.read_text()
    ids = _Ids()
    ids.feed(page)
    assert ids.order[:2] == ["warnings", "score"]  # before the score, pictures and tables
    assert "planted warning" in page


# ------------------------------------------------------------------------------ scrubbing


def test_a_rejection_naming_the_submission_folder_does_not_leak_its_path(tmp_path):
    truth, sub, _ = BUILD["medsegfm"](tmp_path)
    empty = tmp_path / "team_empty"
    empty.mkdir()
    # medsegfm says "<folder>: no prediction for any of the ... case(s)"
    result = api.score("medsegfm", truth, empty, device="cpu")
    assert result.status == "rejected"
    assert "team_empty" in result.error
    assert str(tmp_path) not in result.error and tempfile.gettempdir() + "/" not in result.error


def test_errors_and_warnings_are_scrubbed_in_score_and_validate(monkeypatch, tmp_path):
    truth, sub, _ = BUILD["medsegfm"](tmp_path)
    tmp = Path(tempfile.gettempdir())

    def score(truth_, sub_, *a, **k):
        warn(f"{Path(sub_).resolve()}/case1.npz ignored; truth {Path(truth_).resolve()}/x.npz")
        raise Rejected(f"{Path(sub_).absolute()}/case1.npz: bad, unpacked at {tmp}/gpueval-x/y")

    def validate(sub_, cfg, *, truth=None):
        warn(f"{tmp}/scratch/z.npz skipped")
        raise TruthError(f"{Path(truth).absolute()}/case1.npz unreadable")

    monkeypatch.setattr(medsegfm_module, "score", score)
    monkeypatch.setattr(medsegfm_module, "validate", validate)
    result = api.score("medsegfm", truth, sub, device="cpu")
    assert result.error == "sub/case1.npz: bad, unpacked at <tmp>/gpueval-x/y"
    assert result.warnings == ["sub/case1.npz ignored; truth <truth>/x.npz"]
    with pytest.raises(TruthError) as e:
        api.validate("medsegfm", sub, truth=truth)
    assert str(e.value) == "<truth>/case1.npz unreadable"


@pytest.mark.parametrize("message, expected", [
    ("/srv/subs/team1/a.tif: bad", "team1/a.tif: bad"),
    ("not found: /srv/subs/team1.", "not found: team1."),
    ("/srv/subs/team10/a.tif", "/srv/subs/team10/a.tif"),  # a sibling, not the submission
    ("'/srv/gt/img.png' vs /srv/subs/team1", "'<truth>/img.png' vs team1"),
    ("relative subs/team1/a.tif kept", "relative subs/team1/a.tif kept"),
])
def test_scrub_paths_rules(message, expected):
    assert scrub_paths(message, submission="/srv/subs/team1", truth="/srv/gt") == expected
