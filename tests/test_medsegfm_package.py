"""The MedSegFM package keeps the public names of the former module.

The protocol, resolve_config (with its ``track`` variants) and the import rules every
challenge package shares are tested for all of them in tests/test_challenge_protocol.py and
tests/test_import_layers.py.
"""

from __future__ import annotations

import gpueval.challenges.medsegfm as medsegfm

#: every public name of the former module ``gpueval/challenges/medsegfm.py``
FORMER_PUBLIC = (
    "CHALLENGE", "MAX_PROMPT_BYTES", "STEP_RE", "SUFFIXES", "TRACKS", "class_set",
    "class_surfaces", "instance_scores", "load_prediction", "load_text_prompts",
    "load_truth_case", "pair_table", "report_images", "score", "semantic_scores",
    "trapezoid_auc", "truth_cases", "validate", "write_official_csv",
)
PROTOCOL = ("name", "config_resource", "score", "validate", "resolve_config", "report_images")


def test_former_public_names_and_all():
    assert set(medsegfm.__all__) == set(FORMER_PUBLIC) | set(PROTOCOL)
