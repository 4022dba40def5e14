"""`gpueval rescore --results-dir DIR --format NAME`: every scored submission's result in a
platform's layout, one file per submission name (issue #23's export on rescore)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tifffile
from test_hostile_e2e import urisc_setup

from gpueval.api import score
from gpueval.cli import main


@pytest.mark.slow
def test_rescore_writes_each_result_in_the_platform_layout(tmp_path):
    truth, good, _ = urisc_setup(tmp_path)
    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copytree(good, subs / "team_a")
    shutil.copytree(good, subs / "team_b")
    pred = tifffile.imread(good / "img.tiff")
    tifffile.imwrite(subs / "team_b" / "img.tiff", np.where(np.arange(pred.shape[1]) % 3,
                                                            pred, 255).astype(pred.dtype))
    (subs / "team_c").mkdir()  # rejected: no images, so no platform file
    out = tmp_path / "out"
    argv = ["rescore", "urisc", "--truth", str(truth), "--submissions", str(subs),
            "--db", f"sqlite:///{tmp_path / 'r.sqlite'}", "--results-dir", str(out),
            "--format", "grand-challenge", "--quiet"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["team_a.json", "team_b.json"]
    for team in ("team_a", "team_b"):
        doc = json.loads((out / f"{team}.json").read_text())
        direct = score("urisc", truth, subs / team, device="cpu")
        assert set(doc) == {"case", "aggregates"}
        assert doc["aggregates"]["score"] == pytest.approx(direct.score)
        assert doc["case"]["f1"]["img"] == pytest.approx(direct.items[0]["f1"])
    assert json.loads((out / "team_b.json").read_text())["aggregates"]["score"] < 1.0


def test_a_format_of_another_challenge_is_refused(tmp_path):
    truth, good, _ = urisc_setup(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["rescore", "urisc", "--truth", str(truth), "--submissions", str(good.parent),
              "--results-dir", str(tmp_path / "o"), "--format", "nonsense"])
    assert e.value.code == 2
