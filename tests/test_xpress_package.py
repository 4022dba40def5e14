"""The XPRESS package keeps the public names of the single-module scorer it replaced (issue 25).

The protocol, resolve_config and the import rules every challenge package shares are tested
for all of them in tests/test_challenge_protocol.py and tests/test_import_layers.py.
"""

from __future__ import annotations

import gpueval.challenges.xpress as xpress
from gpueval.config import load_config

#: every public name of the single-module scorer before the split, plus the picture names
#: that lived in gpueval/report_images.py: all must stay importable from the package
OLD_PUBLIC = ("CHALLENGE", "COMPAT", "FRESH", "METRIC_NAMES", "ROI_NAMES", "SUFFIXES_H5",
              "NodeTable", "Submission", "evaluate_table", "node_table", "open_submission",
              "rand_voi_nodes", "report_images", "score", "validate", "node_outcomes",
              "xpress_images")


def test_name_is_the_old_constant():
    assert xpress.name == "xpress" == xpress.CHALLENGE


def test_public_names_kept():
    assert set(OLD_PUBLIC) <= set(xpress.__all__)


def test_the_shipped_config_scores_the_test_roi():
    assert xpress._settings(xpress.resolve_config(load_config("xpress")))["roi"] == "test"
