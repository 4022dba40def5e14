"""One module per challenge. Each exposes the same two functions::

    score(truth, submission, config, *, device="cpu", scheduler=None, progress=True) -> Result
    validate(submission, config, *, truth=None) -> list[str]   # notes; raises Rejected

A module may also define ``resolve_config(config) -> dict`` (idempotent) to map its own
selector keys onto variants; :func:`gpueval.api.score` applies it first and records the result.

``config`` is the resolved mapping of :func:`gpueval.config.load_config`. ``score`` raises
:class:`~gpueval.errors.Rejected` for a bad submission and :class:`~gpueval.errors.TruthError`
for unusable truth; :func:`gpueval.api.score` turns those into results and exit codes.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from gpueval.config import CHALLENGES
from gpueval.errors import UsageError


def get_challenge(name: str) -> ModuleType:
    if name not in CHALLENGES:
        raise UsageError(f"unknown challenge {name!r}; choose one of {', '.join(CHALLENGES)}")
    return importlib.import_module(f"gpueval.challenges.{name}")
