"""CellMap per-crop scores and aggregation against the official fixtures (tests/fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gpueval.challenges.cellmap.scoring_2026 import (
    INSTANCE_CLASSES,
    combine_scores,
    score_instance,
    score_semantic,
)

FIX = Path(__file__).parent / "fixtures" / "cellmap"
SCORES = json.loads((FIX / "scores.json").read_text())
CONSTS = dict(final_instance_ratio_cutoff=10, initial_instance_ratio_cutoff=50,
              instance_ratio_factor=5, max_overlap_edges=5_000_000, mcmf_cost_scale=1_000_000)


def _close(a, b):
    if isinstance(b, float):
        return a == pytest.approx(b, rel=1e-6, abs=1e-9)
    return a == b


@pytest.mark.parametrize("name", sorted(SCORES["instance"]))
def test_instance_fixture(name):
    case = SCORES["instance"][name]
    z = np.load(FIX / f"instance_{name}.npz", allow_pickle=False)
    r = score_instance(z["gt"], z["pred"], z["voxel_size"], CONSTS)
    detail = r.pop("_detail", None)
    for key, want in case["official"].items():
        assert _close(r[key], want), (key, r[key], want)
    if detail is None:
        return
    assert detail["n_pred_cc"] == case["n_pred_cc"]
    np.testing.assert_array_equal(detail["truth_ids"], z["official_truth_ids"])
    np.testing.assert_allclose(detail["hausdorff_per_gt"], z["official_hausdorff_per_gt"],
                               rtol=1e-6)
    om = z["official_mapping"]
    if om.tolist() != [[0, 0]]:
        assert sorted(map(tuple, detail["mapping"].tolist())) == sorted(map(tuple, om.tolist()))


@pytest.mark.parametrize("name", sorted(SCORES["semantic"]))
def test_semantic_fixture(name):
    z = np.load(FIX / f"semantic_{name}.npz", allow_pickle=False)
    assert score_semantic(z["gt"], z["pred"]) == SCORES["semantic"][name]["official"]


@pytest.mark.parametrize("include", [True, False])
def test_aggregation_fixture(include):
    agg = SCORES["aggregation"]
    want = agg["official_include_missing" if include else "official_exclude_missing"]
    got = combine_scores(agg["input_per_crop"], INSTANCE_CLASSES, include_missing=include)
    for key in ("overall_instance_score", "overall_semantic_score", "overall_score"):
        assert got[key] == pytest.approx(want[key], rel=1e-9)
    assert set(got["label_scores"]) == set(want["label_scores"])
    for label, vals in want["label_scores"].items():
        for k, v in vals.items():
            assert _close(got["label_scores"][label][k], v), (label, k)


def test_ratio_cutoff_values():
    from gpueval.challenges.cellmap.scoring_2026 import ratio_cutoff

    assert ratio_cutoff(1, 10, 50, 5) == pytest.approx(50.94, abs=0.01)
    assert ratio_cutoff(5, 10, 50, 5) == pytest.approx(28.39, abs=0.01)
    assert ratio_cutoff(20, 10, 50, 5) == pytest.approx(10.92, abs=0.01)
