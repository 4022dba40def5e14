"""Every registered challenge satisfies the protocol, and a sixth one installed from outside
gpueval (``tests/plugin_challenge``, registered through the ``gpueval.challenges`` entry-point
group) is scored through the CLI like the built-ins."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gpueval.challenges import BUILTIN, Challenge, get_challenge, registered
from gpueval.config import load_config
from gpueval.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = Path(__file__).with_name("plugin_challenge") / "gpueval_toy"

PROTOCOL = ("name", "config_resource", "score", "validate", "resolve_config", "report_images")
#: keys a built-in's resolve_config reads (only CellMap has any): a config without them is
#: copied unchanged
SELECTORS = ("version", "variant", "variants")
#: shipped configs, and variants chosen with --set: loading already resolves them, so resolving
#: the loaded config again changes nothing (CellMap's ``version`` selector is resolved by
#: resolve_config itself: tests/test_cellmap_package.py)
SHIPPED = [(name, []) for name in BUILTIN] + [
    ("medsegfm", ["track=text"]), ("medsegfm", ["variant=interactive"]),
]


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


@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtin_is_its_package_with_the_score_function_and_its_yaml(name):
    package = importlib.import_module(BUILTIN[name])
    assert get_challenge(name) is package
    assert isinstance(package.config_resource, Path)
    assert package.config_resource.name == f"{name}.yaml"
    assert "metric_version" in yaml.safe_load(package.config_resource.read_text())
    # ``score`` is the function, not the submodule score.py of the same name
    assert inspect.isfunction(package.score)
    assert package.score is sys.modules[f"{BUILTIN[name]}.score"].score
    # the pictures live in images.py, and the report may call them without a config
    assert package.report_images.__module__ == f"{BUILTIN[name]}.images"
    assert inspect.signature(package.report_images).parameters["config"].default is None


@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtin_exports_the_protocol_and_only_names_it_has(name):
    package = importlib.import_module(BUILTIN[name])
    assert set(PROTOCOL) <= set(package.__all__)
    assert len(package.__all__) == len(set(package.__all__))
    missing = [n for n in package.__all__ if getattr(package, n, None) is None]
    assert not missing


@pytest.mark.parametrize("name", list(BUILTIN))
@given(cfg=st.dictionaries(st.text(max_size=8).filter(lambda k: k not in SELECTORS),
                           st.integers() | st.text(max_size=8), max_size=6))
def test_resolve_config_copies_a_config_without_selectors(name, cfg):
    resolve = get_challenge(name).resolve_config
    once = resolve(cfg)
    assert once == cfg and once is not cfg
    assert resolve(once) == once


@pytest.mark.parametrize(("name", "overrides"), SHIPPED)
def test_a_loaded_config_is_already_resolved(name, overrides):
    cfg = load_config(name, overrides=overrides)
    once = get_challenge(name).resolve_config(cfg)
    assert once == cfg
    assert get_challenge(name).resolve_config(once) == once


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
