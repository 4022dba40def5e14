"""The CellMap package: the former public names, its ``version`` selector, and the two version
scorers side by side.

The protocol, resolve_config of a config without selectors and the import rules every
challenge package shares are tested for all of them in tests/test_challenge_protocol.py and
tests/test_import_layers.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import gpueval.challenges.cellmap as cellmap
from gpueval.config import load_config

PKG = Path(cellmap.__file__).parent

#: every public name of the former module ``gpueval/challenges/cellmap.py`` (``Grid`` was
#: imported there from :mod:`gpueval.io.align` and is used through it by tests)
FORMER_PUBLIC = (
    "CROP_RE", "SAMPLE_BLOCKS", "SAMPLE_EDGE", "Grid", "Options",
    "Submission", "TruthCrop", "check_geometry", "label_warnings", "list_truth", "load_pair",
    "open_submission", "read_manifest", "report_images", "resolve_config", "score",
    "stored_chunk_grid", "submission_warnings", "target_grid", "validate", "write_manifest",
)
PROTOCOL = ("name", "config_resource", "score", "validate", "resolve_config", "report_images")


def test_former_public_names_and_all():
    assert set(cellmap.__all__) == set(FORMER_PUBLIC) | set(PROTOCOL)


def test_version_scorers_side_by_side():
    assert {"scoring_2025.py", "scoring_2026.py"} <= {p.name for p in PKG.glob("*.py")}
    assert not (PKG.parent / "_cellmap_scoring.py").exists()
    assert not (PKG.parent / "_cellmap_2025.py").exists()


@pytest.mark.parametrize("version", [None, "2026-06", "2025"])
def test_resolve_config_of_the_shipped_config_is_idempotent(version):
    cfg = load_config("cellmap")
    if version is not None:
        cfg["version"] = version
    once = cellmap.resolve_config(cfg)
    assert cellmap.resolve_config(once) == once
    assert ("2025" in str(once["metric_version"])) == (version == "2025")
