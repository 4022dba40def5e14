"""The REFUGE package keeps the public names of the former module.

The protocol, resolve_config and the import rules every challenge package shares are tested
for all of them in tests/test_challenge_protocol.py and tests/test_import_layers.py.
"""

from __future__ import annotations

import gpueval.challenges.refuge as refuge

#: every public name of the former module ``gpueval/challenges/refuge.py``
FORMER_PUBLIC = (
    "CHALLENGE", "CLASSIFICATION_FILE", "FOVEA_FILES", "MASK_DIR", "MAX_XLSX_BYTES",
    "MAX_XLSX_COLUMNS", "MAX_XLSX_ROWS", "SEGMENTATION_DIR", "MaskCounts", "RefugeTruth",
    "dice", "fovea_distances", "load_truth", "mask_counts", "read_mask", "report_images",
    "score", "segmentation_item", "validate", "vertical_cdr",
)
PROTOCOL = ("name", "config_resource", "score", "validate", "resolve_config", "report_images")


def test_former_public_names_and_all():
    assert set(refuge.__all__) == set(FORMER_PUBLIC) | set(PROTOCOL)
