"""Start-up of ``gpueval score`` on a built-in challenge: no entry-point scan, no tqdm when
no bar is drawn (issue #19). Each is checked through what a call does (a registry that
fails when scanned, ``sys.modules`` of a fresh interpreter), never through timings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fresh_cli import run_cli

from gpueval import challenges, progress
from gpueval.cli import build_parser


def _no_scan(monkeypatch) -> list[str]:
    """Make the entry-point scan record its calls (and answer the built-ins)."""
    calls: list[str] = []

    def registered():
        calls.append("scan")
        return dict(challenges.BUILTIN)

    monkeypatch.setattr(challenges, "registered", registered)
    return calls


@pytest.mark.parametrize("name", sorted(challenges.BUILTIN))
def test_builtin_challenge_parses_without_an_entry_point_scan(monkeypatch, name):
    calls = _no_scan(monkeypatch)
    args = build_parser().parse_args(["score", name, "--truth", "t", "--submission", "s"])
    assert args.challenge == name and calls == []


def test_unknown_name_and_help_list_every_registered_challenge(monkeypatch, capsys):
    # an installed sixth challenge (entry point) is a valid choice, listed in help and errors
    monkeypatch.setattr(challenges, "registered",
                        lambda: {**challenges.BUILTIN, "toy": "toy.module"})
    assert build_parser().parse_args(["config", "toy"]).challenge == "toy"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["score", "nope", "--truth", "t", "--submission", "s"])
    assert "'toy'" in capsys.readouterr().err and "'nope'" not in challenges.Names()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["score", "--help"])
    assert "one of: urisc, xpress, cellmap, medsegfm, refuge, toy" in capsys.readouterr().out


def test_names_is_a_sequence_scanned_once(monkeypatch):
    calls = _no_scan(monkeypatch)
    names = challenges.Names()
    assert "medsegfm" in names and calls == []
    assert list(names) == list(challenges.BUILTIN) and len(names) == 5
    assert names[0] == "urisc" and names[-1] == "refuge" and calls == ["scan"]


def test_a_bar_that_is_not_drawn_builds_no_tqdm(monkeypatch):
    def refuse(auto=False):
        raise AssertionError("tqdm built for a bar nobody sees")

    monkeypatch.setattr(progress, "tqdm_class", refuse)
    with progress.enabled(False), progress.phase("reading", total=10, unit="B") as ph:
        ph.update(4)
        ph.set_item("case")
        ph.describe("scanning", "case")
    assert ph.done == 4 and ph._bar is None
    assert list(progress.progress_iter(["a"], "cases", enabled=False)) == ["a"]


def test_every_bar_class_has_its_monitor_thread_off():
    # a monitor thread would switch off safe_pickle's fast unpickler (rescore's bar too)
    for auto in (False, True):
        cls = progress.tqdm_class(auto=auto)
        assert cls.monitor_interval == 0
        bar = cls(total=2, disable=True)
        bar.close()
        assert cls.monitor is None


def test_quiet_medsegfm_score_imports_neither_metadata_nor_tqdm(tmp_path):
    # a whole quiet score of a small npz case in a fresh interpreter
    truth, sub = tmp_path / "gt", tmp_path / "sub"
    truth.mkdir()
    sub.mkdir()
    gts = np.zeros((6, 16, 16), np.uint8)
    gts[1:5, 4:12, 4:12] = 1
    np.savez_compressed(truth / "c1.npz", gts=gts, spacing=np.array([1.0, 1.0, 1.0]))
    np.savez_compressed(sub / "c1.npz", segs=np.roll(gts, 1, axis=2))
    out = tmp_path / "r.json"
    code, loaded, err = run_cli(
        ["score", "medsegfm", "--truth", str(truth), "--submission", str(sub), "--device",
         "cpu", "--quiet", "--json", str(out)],
        ("importlib.metadata", "tqdm", "multiprocessing", "numpy.ma"))
    assert code == 0 and loaded == [], err
    assert json.loads(out.read_text())["status"] == "ok"
