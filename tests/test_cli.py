"""The command-line contract: exit codes, JSON, config overrides, demo."""

import json
import math

import pytest

from gpueval.cli import main
from gpueval.config import load_config
from gpueval.errors import UsageError
from gpueval.result import Result


def test_demo_finds_the_planted_splits_and_merges(tmp_path, capsys):
    assert main(["demo", "--size", "64", "--json", str(tmp_path / "d.json")]) == 0
    out = json.loads((tmp_path / "d.json").read_text())
    m = out["metrics"]
    assert m["splits_found"] == m["splits_planted"] == 3
    assert m["merges_found"] == m["merges_planted"] == 3
    assert out["runtime"]["device"] == "cpu" and out["runtime"]["voxels"] == 64**3
    assert "splits_found" in capsys.readouterr().out


def test_bad_command_line_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["score", "nochallenge", "--truth", "a", "--submission", "b"])
    assert e.value.code == 2


def test_gpu_where_none_exists_is_exit_2(monkeypatch, tmp_path):
    from gpueval import backend

    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    assert main(["demo", "--device", "gpu"]) == 2


def test_result_json_is_strict():
    r = Result("x", "v1", score=math.nan, metrics={"a": math.inf, "b": 1},
               items=[{"id": "i", "f": float("nan")}])
    d = json.loads(r.to_json())
    assert d["score"] is None and d["metrics"] == {"a": None, "b": 1}
    assert d["items"][0]["f"] is None


def test_config_set_and_variants(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("metric_version: v1\nradius: 0\nlimits: {max_image_pixels: 1}\n"
                   "variants:\n  bold: {metric_version: v0, radius: 1}\n")
    c = load_config("urisc", cfg, ["limits.max_image_pixels=5", "variant=bold", "radius=3"])
    assert c["metric_version"] == "v0" and c["radius"] == 3
    assert c["limits"]["max_image_pixels"] == 5
    with pytest.raises(UsageError):
        load_config("urisc", cfg, ["variant=nope"])
    with pytest.raises(UsageError):
        load_config("urisc", cfg, ["noequals"])


def test_bench_lists_workloads(capsys):
    assert main(["bench", "--list"]) == 0
    assert "contingency" in capsys.readouterr().out


def test_skeleton_command_converts_a_pickled_graph(tmp_path):
    import pickle

    import networkx as nx
    import numpy as np

    g = nx.Graph()
    g.add_node(5, position=(100.0, 200.0, 300.0))
    g.add_node(7, position=(1.0, 2.0, 3.0))
    g.add_edge(5, 7)
    (tmp_path / "skel.npz").write_bytes(pickle.dumps(g))
    assert main(["skeleton", str(tmp_path / "skel.npz"), str(tmp_path / "out.npz")]) == 0
    with np.load(tmp_path / "out.npz", allow_pickle=False) as z:
        assert z["node_ids"].tolist() == [5, 7] and z["edges"].tolist() == [[5, 7]]
        assert z["positions"][0].tolist() == [100.0, 200.0, 300.0]
