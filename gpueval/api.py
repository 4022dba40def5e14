"""Python entry points behind the CLI: score or validate one submission.

>>> from gpueval.api import score                                   # doctest: +SKIP
>>> result = score("urisc", truth="gt/", submission="result.zip")   # doctest: +SKIP
>>> result.score, result.status                                     # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gpueval.backend import limit_gpu_memory, resolve_device
from gpueval.challenges import get_challenge
from gpueval.config import load_config
from gpueval.errors import Rejected
from gpueval.limits import Limits, use_limits
from gpueval.notices import collecting
from gpueval.result import Result


def score(
    challenge: str,
    truth: str | Path,
    submission: str | Path,
    *,
    config: str | Path | dict[str, Any] | None = None,
    overrides: Iterable[str] | dict[str, Any] = (),
    device: str = "auto",
    scheduler: str | None = None,
    progress: bool = False,
) -> Result:
    """Score one submission. A rejected submission returns a ``status="rejected"`` result;
    unusable truth or config raises :class:`~gpueval.errors.TruthError`."""
    cfg = config if isinstance(config, dict) else load_config(challenge, config, overrides)
    dev = resolve_device(device)
    module = get_challenge(challenge)
    # a challenge may map its own selector keys (CellMap's ``version``) onto variants; resolve
    # first so the result records the configuration that actually ran
    cfg = getattr(module, "resolve_config", dict)(cfg)
    limits = Limits.from_config(cfg)
    if dev == "gpu":
        limit_gpu_memory(limits.gpu_memory_bytes)
    t0 = time.perf_counter()
    with collecting() as warnings:
        try:
            with use_limits(limits):  # the config's `limits:` reach every reader
                result = module.score(truth, submission, cfg, device=dev, scheduler=scheduler,
                                      progress=progress)
        except Rejected as e:
            result = Result.rejected(challenge, str(cfg["metric_version"]), str(e))
    result.warnings = list(dict.fromkeys([*result.warnings, *warnings]))
    result.runtime["seconds"] = time.perf_counter() - t0
    result.runtime["device"] = dev
    result.runtime.setdefault("voxels", 0)
    result.extra.setdefault("config", {k: v for k, v in cfg.items() if k != "variants"})
    return result


class Validation(list):
    """The notes of :func:`validate` (a ``list[str]``), with the ``warnings`` it raised."""

    def __init__(self, notes: Iterable[str] = (), warnings: Iterable[str] = ()):
        super().__init__(notes)
        self.warnings: list[str] = list(warnings)


def validate(
    challenge: str,
    submission: str | Path,
    *,
    truth: str | Path | None = None,
    config: str | Path | dict[str, Any] | None = None,
    overrides: Iterable[str] | dict[str, Any] = (),
) -> Validation:
    """Format checks only. Returns the notes (with ``.warnings``: what ``validate --strict``
    refuses); raises :class:`~gpueval.errors.Rejected`."""
    cfg = config if isinstance(config, dict) else load_config(challenge, config, overrides)
    module = get_challenge(challenge)
    cfg = getattr(module, "resolve_config", dict)(cfg)
    with collecting() as warnings, use_limits(Limits.from_config(cfg)):
        notes = module.validate(submission, cfg, truth=truth)
    return Validation(notes, warnings)
