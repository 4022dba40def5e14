"""Config key names are checked and described (issue #21 items 2 and "gpueval config").

A misspelt ``--set`` key, a misspelt key in a ``--config`` file and a misspelt key in the API's
``overrides`` are a bad command line (exit 2) naming the closest known key; every known key has
a one-line description that ``gpueval config CHALLENGE`` prints.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval import api
from gpueval.cli import main
from gpueval.config import (
    CHALLENGES,
    check_key,
    describe_key,
    format_config,
    known_keys,
    load_config,
    unknown_file_keys,
)
from gpueval.errors import UsageError
from gpueval.limits import Limits

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------ every key described


@pytest.mark.parametrize("challenge", CHALLENGES)
def test_every_known_key_has_a_one_line_description(challenge):
    undescribed = [k for k in sorted(known_keys(challenge)) if not describe_key(challenge, k)]
    assert undescribed == []
    for key in known_keys(challenge):
        assert "\n" not in describe_key(challenge, key)


def test_keys_yaml_names_only_keys_that_exist():
    # a description of a key no config has (a typo in keys.yaml) would describe nothing
    table = yaml.safe_load((ROOT / "configs" / "keys.yaml").read_text())
    everywhere = set().union(*(known_keys(c) for c in CHALLENGES))
    for section, keys in table.items():
        known = everywhere if section == "common" else known_keys(section)
        assert set(keys) - known == set(), section


# ----------------------------------------------------- every key a scorer reads is declared


class _Recorder(dict):
    """A config mapping that records the dotted path of every key looked up in it."""

    def __init__(self, data, seen, prefix=""):
        super().__init__(data)
        self._seen, self._prefix = seen, prefix

    def _wrap(self, key, value):
        if isinstance(value, dict) and not isinstance(value, _Recorder):
            return _Recorder(value, self._seen, f"{self._prefix}{key}.")
        return value

    def get(self, key, default=None):
        self._seen.add(f"{self._prefix}{key}")
        return self._wrap(key, super().get(key, default))

    def __getitem__(self, key):
        self._seen.add(f"{self._prefix}{key}")
        return self._wrap(key, super().__getitem__(key))

    def __contains__(self, key):
        self._seen.add(f"{self._prefix}{key}")
        return super().__contains__(key)


def _read_keys(challenge: str, overrides=()) -> set[str]:
    from gpueval.challenges import cellmap, xpress
    from gpueval.challenges.medsegfm import options as medsegfm_options
    from gpueval.challenges.refuge import options as refuge
    from gpueval.challenges.urisc import options as urisc

    readers = {
        "urisc": urisc._Options.from_config,
        "xpress": xpress._settings,
        "medsegfm": medsegfm_options._settings,
        "refuge": refuge._Options.from_config,
        "cellmap": cellmap.Options.from_config,
    }
    seen: set[str] = set()
    cfg = _Recorder(load_config(challenge, overrides=list(overrides)), seen)
    readers[challenge](cfg)
    Limits.from_config(cfg)
    return seen


@pytest.mark.parametrize("challenge, overrides", [
    ("urisc", ()), ("urisc", ("variant=bold", "radius=2")),
    ("xpress", ()), ("xpress", ("roi=validation",)),
    ("medsegfm", ("track=semantic",)), ("medsegfm", ("track=text",)),
    ("medsegfm", ("track=interactive",)),
    ("refuge", ()),
    ("cellmap", ()), ("cellmap", ("version=2025",)),
])
def test_every_key_a_scorer_reads_is_a_known_key(challenge, overrides):
    # the option parsers of each challenge read their whole config; a key read there but not
    # declared in configs/<challenge>.yaml could not be set (--set would call it unknown)
    read = _read_keys(challenge, overrides)
    assert read, "the recorder saw no key: the test would prove nothing"
    assert read - known_keys(challenge) == set()


def test_the_recorder_sees_nested_reads():
    # guards the test above: medsegfm reads tracks.<track>.class_set through get_dotted
    assert "tracks.text.class_set" in _read_keys("medsegfm", ("track=text",))
    assert "limits.max_member_bytes" in _read_keys("urisc")


def test_cellmap_keys_its_module_reads_are_declared():
    # the CellMap engineer adds keys to cellmap.yaml on another branch: these must stay
    for key in ("version", "compat", "manifest", "chunk", "instance_classes",
                "semantic_threshold", "max_volume_size_ratio", "hausdorff_base",
                "final_instance_ratio_cutoff", "initial_instance_ratio_cutoff",
                "instance_ratio_factor", "max_overlap_edges", "mcmf_cost_scale",
                "instance_ratio_cutoff_2025"):
        assert key in known_keys("cellmap"), key


# ------------------------------------------------------------------------ unknown keys refused


@pytest.mark.parametrize("challenge, typo, closest", [
    ("urisc", "radious", "radius"),
    ("cellmap", "versoin", "version"),
    ("xpress", "limits.max_voxel", "limits.max_voxels"),
    ("medsegfm", "interactive.missing_steps", "interactive.missing_step"),
    ("refuge", "segmentation.cup_valeu", "segmentation.cup_value"),
])
def test_unknown_set_key_names_the_closest_known_key(challenge, typo, closest):
    with pytest.raises(UsageError) as e:
        load_config(challenge, overrides=[f"{typo}=1"])
    assert e.value.exit_code == 2
    assert repr(typo) in str(e.value) and f"did you mean {closest!r}" in str(e.value)
    assert f"gpueval config {challenge}" in str(e.value)


def test_misspelt_radius_with_bold_is_refused_not_ignored():
    # the case: exit 0 labelled as the bold metric, with the radius-0 score
    with pytest.raises(UsageError, match="radius"):
        load_config("urisc", overrides=["variant=bold", "radious=2"])


def test_known_keys_from_limits_variants_and_always_are_accepted():
    cfg = load_config("xpress", overrides=["limits.max_voxels=100", "metric_version=x"])
    assert cfg["limits"]["max_voxels"] == 100 and cfg["metric_version"] == "x"
    # declared only inside the 2025 variant
    assert load_config("cellmap", overrides={"instance_ratio_cutoff_2025": 10})[
        "instance_ratio_cutoff_2025"] == 10
    # a whole mapping may be replaced
    assert load_config("medsegfm", overrides={"interactive": {"n_steps": 6}})["interactive"]


@settings(max_examples=40, deadline=None)
@given(challenge=st.sampled_from(CHALLENGES), data=st.data())
def test_any_known_key_passes_and_any_other_names_a_known_key(challenge, data):
    known = sorted(known_keys(challenge))
    key = data.draw(st.sampled_from(known))
    check_key(challenge, key)
    other = data.draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.", min_size=1,
                              max_size=30))
    if other in known:
        return
    with pytest.raises(UsageError) as e:
        check_key(challenge, other)
    suggested = str(e.value).split("did you mean ", 1)[1].split("?", 1)[0].strip("'")
    assert suggested in known


def test_api_overrides_with_an_unknown_key_are_refused_before_reading_anything(tmp_path):
    with pytest.raises(UsageError, match="did you mean 'radius'"):
        api.score("urisc", tmp_path / "no_truth", tmp_path / "no_sub",
                  overrides={"radious": 2})
    with pytest.raises(UsageError, match="did you mean 'version'"):
        api.validate("cellmap", tmp_path / "no_sub", overrides=["versoin=2025"])


def test_unknown_key_in_a_config_file_is_exit_2(tmp_path, capsys):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("metric_version: mine\nroi: none\nrios: {test: {begin: [0, 0, 0]}}\n")
    rc = main(["score", "xpress", "--truth", str(tmp_path / "t"), "--submission",
               str(tmp_path / "s"), "--config", str(cfg)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "'rios'" in err and "did you mean 'rois'" in err


def test_config_file_keys_are_walked_through_mappings_and_variants():
    known = known_keys("xpress")
    cfg = {"metric_version": "m", "roi": {"begin": [0, 0, 0], "shape": [1, 1, 1]},
           "rois": {"test": {"begin": [1, 2, 3], "exactt": True}},
           "limits": {"max_voxels": 5, "max_voxel": 5},
           "variants": {"mine": {"compat": "corrected", "compot": "x"}}}
    # roi's value is a mapping, not more keys; typos at every level are found
    assert unknown_file_keys(cfg, known) == ["rois.test.exactt", "limits.max_voxel", "compot"]


# ------------------------------------------------------------------------ gpueval config


@pytest.mark.parametrize("challenge", CHALLENGES)
def test_config_output_is_the_resolved_config_and_reusable_with_config(challenge, tmp_path):
    cfg = load_config(challenge)
    text = format_config(challenge, cfg)
    parsed = yaml.safe_load(text)
    assert parsed == {k: v for k, v in cfg.items()}
    # every key of the resolved config is printed on a line with its description
    top = text.split("\n# variants")[0].splitlines()  # the keys, before the variants dump
    lines = {ln.split(":", 1)[0]: ln for ln in top if ln and ln[0] not in " #"}
    for key in cfg:
        if key != "variants":
            assert "  # " in lines[yaml.safe_dump(key).split("\n")[0]], key
    path = tmp_path / "dumped.yaml"
    path.write_text(text)
    assert load_config(challenge, path) == cfg


def test_config_command_applies_set_and_describes_keys(capsys):
    assert main(["config", "urisc", "--set", "variant=bold", "--set", "radius=2"]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["radius"] == 2
    assert "metric_version: urisc-bold-pre-2019-12-25" in out
    radius_line = next(ln for ln in out.splitlines() if ln.startswith("radius:"))
    assert "dilation" in radius_line and "0..64" in radius_line
    assert "limits.max_voxels" in out  # limits left at their defaults are listed too
    assert main(["config", "urisc", "--set", "radious=2"]) == 2


def test_score_help_points_to_the_config_command(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    assert "gpueval config CHALLENGE" in capsys.readouterr().out


def test_misspelt_set_key_exits_2_as_a_subprocess(tmp_path):
    p = subprocess.run([sys.executable, "-m", "gpueval", "score", "urisc", "--truth",
                        str(tmp_path), "--submission", str(tmp_path), "--set", "variant=bold",
                        "--set", "radious=2", "--json", str(tmp_path / "out" / "r.json")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "did you mean 'radius'" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was created


def test_api_overrides_apply_to_a_config_mapping_too():
    # a mapping config (as rescore passes) used to ignore overrides silently
    base = load_config("urisc")
    from gpueval.config import apply_overrides

    out = apply_overrides("urisc", base, ["variant=bold", "radius=2"])
    assert out["radius"] == 2 and out["metric_version"] == "urisc-bold-pre-2019-12-25"
    assert base["radius"] == 0  # the caller's mapping is not modified
    with pytest.raises(UsageError, match="did you mean 'radius'"):
        api.score("urisc", "no_truth", "no_sub", config=base, overrides={"radious": 2})


def test_a_key_added_to_a_yaml_with_a_comment_is_described_by_that_comment():
    # the CellMap engineer adds keys to cellmap.yaml on another branch: a commented key needs
    # no line in keys.yaml to be described
    from gpueval.config import yaml_key_comments

    text = ("metric_version: v  # the version\n"
            "# checked before any graph is built\n# (voxels, nm)\n"
            "limits:\n  min_voxel_size: 0.1   # smallest voxel size, nm\n"
            "  max_translation: 1.0e+9\n"
            "variants:\n  \"2025\":\n    version: \"2025\"  # old\n")
    assert yaml_key_comments(text) == {
        "metric_version": "the version",
        "limits": "checked before any graph is built (voxels, nm)",
        "limits.min_voxel_size": "smallest voxel size, nm",
        "variants.2025.version": "old",
    }


def test_config_command_resolves_as_scoring_does(capsys):
    # CellMap's `version` selects its variant at scoring time: show what would run
    assert main(["config", "cellmap", "--set", "version=2025"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["metric_version"] == "cellmap-2025"
    assert shown["instance_ratio_cutoff_2025"] == 50
