"""Mutated submissions end to end: every challenge answers ``ok`` or ``rejected``, nothing else.

One file of a valid submission (built as in ``tests/test_hostile_e2e.py``) is mutated (bit flips,
extreme integers, truncation) and scored through :func:`gpueval.api.score` under the memory and
time bounds of ``tests/test_fuzz_readers.py``. A traceback, a ``MemoryError`` or a hang fails.
``GPUEVAL_FUZZ_EXAMPLES`` scales the number of examples (default here: 6 per challenge).
"""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_readers import _causes, _Hang, bounded, mutate, mutation
from test_hostile_e2e import SETUPS

from gpueval import api
from gpueval.errors import Rejected

EXAMPLES = max(3, int(os.environ.get("GPUEVAL_FUZZ_EXAMPLES", "25")) // 4)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=not os.environ.get("GPUEVAL_FUZZ_RANDOM"),
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    cache = {}

    def get(challenge):
        if challenge not in cache:
            tmp = tmp_path_factory.mktemp(f"fuzz-{challenge}")
            cache[challenge] = (tmp, *SETUPS[challenge](tmp))
        return cache[challenge]
    return get


@pytest.mark.parametrize("challenge", sorted(SETUPS))
@FUZZ
@given(data=st.data(), muts=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_submission_scores_or_is_rejected(challenge, data, muts, built):
    tmp, truth, good, sets = built(challenge)
    work = tmp / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    sub = work / good.name
    if good.is_dir():
        shutil.copytree(good, sub)
        files = sorted(p for p in sub.rglob("*") if p.is_file())
    else:
        shutil.copy(good, sub)
        files = [sub]
    target = data.draw(st.sampled_from(files))
    target.write_bytes(mutate(target.read_bytes(), muts))
    with bounded(seconds=60, extra=2 * 2**30):
        result = api.score(challenge, truth, sub, overrides=list(sets), device="cpu")
    assert result.status in ("ok", "rejected")
    if result.status == "rejected":
        assert result.error and "\n" not in result.error
        assert "MemoryError" not in result.error, result.error  # an unbounded allocation


def test_rejections_do_not_hide_memory_errors():
    e = Rejected("x")
    e.__cause__ = MemoryError()
    assert any(isinstance(c, MemoryError | _Hang) for c in _causes(e))
