"""Help that teaches (issue #23): every option of every command explains itself."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from gpueval import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (group,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(group.choices)


COMMANDS = sorted(_subparsers())


def test_every_command_is_dispatched():
    assert set(COMMANDS) == set(cli.COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help(command):
    sub = _subparsers()[command]
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in sub._actions
               if not isinstance(a, argparse._HelpAction)
               and (not a.help or a.help == argparse.SUPPRESS or not a.help.strip())]
    assert missing == [], f"gpueval {command}: options without help: {missing}"


def test_top_level_options_have_help():
    parser = cli.build_parser()
    assert all(a.help for a in parser._actions if not isinstance(a, argparse._HelpAction))


@pytest.mark.parametrize("command", COMMANDS)
def test_help_runs(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: gpueval {command}")


def test_score_help_points_to_config(capsys):
    with pytest.raises(SystemExit):
        cli.main(["score", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "gpueval config CHALLENGE" in out
    assert "--format" in out


def test_bench_scale_in_user_terms(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "issue" not in out  # the old help pointed at "the size the issue names"
    assert "each edge" in out and "gpueval bench all" in out


def test_bare_bench_runs_the_quick_set(monkeypatch, capsys):
    from gpueval import bench

    ran = []
    monkeypatch.setattr(bench, "run_isolated", lambda name, device, scale: ran.append(
        (name, scale)) or {"workload": name, "seconds": 1.0, "peak_rss_bytes": 2**20})
    assert cli.main(["bench", "--device", "cpu"]) == 0
    assert ran == [(n, bench.QUICK_SCALE) for n in bench.QUICK]
    assert "gpueval bench all" in capsys.readouterr().err
    ran.clear()
    assert cli.main(["bench", "all", "--device", "cpu"]) == 0
    assert [n for n, _ in ran] == sorted(bench.load_all())
    assert {s for _, s in ran} == {1.0}


def test_readme_usage_lists_every_command():
    text = README.read_text()
    listed = set(re.findall(r"^(?:gpueval|\s+python3 -m gpueval) (\w+)", text, re.M))
    assert set(COMMANDS) <= listed, set(COMMANDS) - listed
    assert "python3 -m venv .venv" in text
