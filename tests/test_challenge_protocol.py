"""Every registered challenge satisfies the protocol, and a sixth one installed from outside
gpueval (``tests/plugin_challenge``, registered through the ``gpueval.challenges`` entry-point
group) is scored through the CLI like the built-ins."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpueval.challenges import BUILTIN, Challenge, get_challenge, registered
from gpueval.config import load_config
from gpueval.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = Path(__file__).with_name("plugin_challenge") / "gpueval_toy"


@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtin_challenges_implement_the_protocol(name):
    module = get_challenge(name)
    assert isinstance(module, Challenge)
    assert module.name == name
    assert Path(module.config_resource).is_file()
    for fn in ("score", "validate", "resolve_config", "report_images"):
        assert callable(getattr(module, fn))
    cfg = load_config(name)
    once = module.resolve_config(cfg)
    assert module.resolve_config(once) == once  # idempotent


def test_unknown_challenge_is_a_usage_error():
    with pytest.raises(UsageError, match="choose one of"):
        get_challenge("urisk")


def test_a_module_without_the_protocol_is_refused(monkeypatch, tmp_path):
    (tmp_path / "half_challenge.py").write_text("def score(*a, **k):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("gpueval.challenges.registered",
                        lambda: {**BUILTIN, "half": "half_challenge"})
    with pytest.raises(UsageError, match="validate"):
        get_challenge("half")


def _install_plugin(site: Path) -> None:
    """Install the toy challenge the way pip leaves it: the package plus a dist-info."""
    shutil.copytree(PLUGIN, site / "gpueval_toy")
    info = site / "gpueval_toy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: gpueval-toy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[gpueval.challenges]\ntoy = gpueval_toy\n")


def _gpueval(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    return subprocess.run([sys.executable, "-m", "gpueval", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_an_installed_sixth_challenge_scores_through_the_cli(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install_plugin(site)
    truth, sub, out = tmp_path / "truth.txt", tmp_path / "sub.txt", tmp_path / "out.json"
    truth.write_text("1 2 3 4")
    sub.write_text("1 2 0 4")

    done = _gpueval(site, "score", "toy", "--truth", str(truth), "--submission", str(sub),
                    "--json", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["challenge"] == "toy" and result["metric_version"] == "toy-1"
    assert result["score"] == 0.75 and result["warnings"] == []
    assert [it["agree"] for it in result["items"]] == [1, 1, 0, 1]

    # its own config keys are checked like a built-in's
    done = _gpueval(site, "score", "toy", "--truth", str(truth), "--submission", str(sub),
                    "--set", "max_lables=3")
    assert done.returncode == 2 and "max_labels" in done.stderr

    # a bad submission is a rejection (exit 3), with the JSON still written
    sub.write_text("1 2")
    done = _gpueval(site, "score", "toy", "--truth", str(truth), "--submission", str(sub),
                    "--json", str(out), "--quiet")
    assert done.returncode == 3
    assert json.loads(out.read_text())["status"] == "rejected"


def test_the_plugin_is_listed_only_when_installed(tmp_path):
    assert "toy" not in registered()
    site = tmp_path / "site"
    site.mkdir()
    _install_plugin(site)
    done = _gpueval(site, "score", "--help")
    assert done.returncode == 0 and "toy" in done.stdout
