"""Python entry points behind the CLI: score or validate one submission.

>>> from gpueval.api import score                                   # doctest: +SKIP
>>> result = score("urisc", truth="gt/", submission="result.zip")   # doctest: +SKIP
>>> result.score, result.status                                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gpueval.backend import limit_gpu_memory, resolve_device
from gpueval.challenges import get_challenge
from gpueval.config import apply_overrides, load_config
from gpueval.errors import GpuevalError, Rejected, UsageError
from gpueval.io.arrays import shown_relative_to
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
    workers: int = 0,
    **array_options: Any,
) -> Result:
    """Score one submission, given as files or as arrays.

    Parameters
    ----------
    challenge : one of :data:`gpueval.config.CHALLENGES`.
    truth, submission : paths in the challenge's layout (``shared/specs/cli.md``), or arrays
        (NumPy, Dask, CuPy, torch, DLPack, ``__array__``) as :mod:`gpueval.arrays` takes them:
        one array or ``{name: array}`` (U-RISC images, MedSegFM cases), ``{(crop, label):
        array}`` (CellMap), a skeleton graph and a volume (XPRESS).
    **array_options : for array inputs only, the geometry files would carry: ``spacing``
        (MedSegFM), ``voxel_size``/``translation`` (CellMap), ``voxel_size``/``offset``
        (XPRESS); see :mod:`gpueval.arrays`.
    config : a YAML path replacing the shipped config, or an already loaded config mapping
        (used as is; ``overrides`` still apply to it).
    overrides : ``"key=value"`` strings or a mapping; an unknown key raises
        :class:`~gpueval.errors.UsageError` naming the closest known key.
    device, scheduler : where to compute.
    workers : with no ``scheduler``, ``N > 0`` runs the same graph on a local
        ``dask.distributed`` cluster of ``N`` processes (:func:`gpueval.engine.local_processes`;
        same result, no GIL between them); ``0`` uses in-process threads.
    progress : show progress bars (named phases, the current item) on stderr when it is a
        terminal; ``False`` shows none (:mod:`gpueval.progress`).

    Returns
    -------
    Result
        ``status="rejected"`` with a one-line ``error`` for an invalid submission. The error and
        every warning are scrubbed of server paths (:func:`scrub_paths`).

    Raises
    ------
    UsageError, TruthError
        Bad arguments or config (exit 2); unusable truth or config (exit 4). Messages are
        scrubbed as well.
    """
    if workers and scheduler is None:
        from gpueval.engine import local_processes

        with local_processes(workers) as client:
            return score(challenge, truth, submission, config=config, overrides=overrides,
                         device=device, scheduler=client, progress=progress, **array_options)
    if not (_is_path(truth) and _is_path(submission)):
        from gpueval.arrays import score_arrays

        return score_arrays(challenge, truth, submission, config=config, overrides=overrides,
                            device=device, scheduler=scheduler, progress=progress,
                            **array_options)
    if array_options:
        raise UsageError(f"{', '.join(sorted(array_options))}: only for array inputs; files "
                         "carry their own geometry")
    from gpueval import progress as bars

    # progress=False (the CLI's --quiet) silences every bar; True shows them on a terminal only
    quiet = contextlib.nullcontext() if progress else bars.enabled(False)
    with _scrubbed(submission, truth), quiet, bars.phase("scoring", item=challenge):
        return _score(challenge, truth, submission, config=config, overrides=overrides,
                      device=device, scheduler=scheduler, progress=progress)


def _score(challenge, truth, submission, *, config, overrides, device, scheduler,
           progress) -> Result:
    cfg = (apply_overrides(challenge, config, overrides) if isinstance(config, dict)
           else load_config(challenge, config, overrides))
    dev = resolve_device(device, workload=challenge)  # auto: the GPU only where it measured faster
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
            # the config's `limits:` reach every reader; readers name files from the
            # submission's folder down (crop1/mito), never by a server path
            with use_limits(limits), shown_relative_to(_shown_root(submission)):
                result = module.score(truth, submission, cfg, device=str(dev), scheduler=scheduler,
                                      progress=progress)
        except Rejected as e:
            result = Result.rejected(challenge, str(cfg["metric_version"]), str(e))
    result.warnings = list(dict.fromkeys([*result.warnings, *warnings]))
    result.runtime["seconds"] = time.perf_counter() - t0
    result.runtime["device"] = str(dev)
    result.runtime["device_reason"] = dev.reason  # why this device ran (an addition to cli.md)
    result.runtime.setdefault("voxels", 0)
    result.extra.setdefault("config", {k: v for k, v in cfg.items() if k != "variants"})
    clean = _cleaner(submission, truth)
    if result.error:
        result.error = clean(result.error)
    result.warnings = list(dict.fromkeys(clean(w) for w in result.warnings))
    notes = result.extra.get("notes")
    if isinstance(notes, list):
        result.extra["notes"] = [clean(n) if isinstance(n, str) else n for n in notes]
    return result


def _is_path(x: Any) -> bool:
    return isinstance(x, str | os.PathLike)


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
    """Format checks only, no scoring.

    Returns
    -------
    Validation
        The notes (a list of lines) with ``.warnings`` (what ``validate --strict`` refuses);
        every line scrubbed of server paths (:func:`scrub_paths`).

    Raises
    ------
    Rejected
        The submission is invalid (exit 3); also ``UsageError``/``TruthError`` as :func:`score`.
    """
    with _scrubbed(submission, truth):
        cfg = (apply_overrides(challenge, config, overrides) if isinstance(config, dict)
           else load_config(challenge, config, overrides))
        module = get_challenge(challenge)
        cfg = getattr(module, "resolve_config", dict)(cfg)
        with collecting() as warnings, use_limits(Limits.from_config(cfg)), \
                shown_relative_to(_shown_root(submission)):
            notes = module.validate(submission, cfg, truth=truth)
    clean = _cleaner(submission, truth)
    return Validation([clean(str(n)) for n in notes or []],
                      list(dict.fromkeys(clean(w) for w in warnings)))


# --------------------------------------------------------------------------------------------
# Messages never show server paths (issue #24 part 6: participants read them).

# what may follow a path inside a message: its own separator, or the end of the path
_PATH_END = r"(?=[/\\\s'\":,;)\]}>]|\.(?:\s|$)|$)"


def scrub_paths(message: str, *, submission: str | Path | None = None,
                truth: str | Path | None = None) -> str:
    """``message`` without the absolute paths of the inputs and of the temp folder.

    The submission's absolute path becomes its base name (``/srv/subs/team1/a.tif`` →
    ``team1/a.tif``), the truth's becomes ``<truth>`` and the system temp folder (where
    archives are unpacked) ``<tmp>``. Both the path as given (made absolute) and its resolved
    form (symlinks followed) are replaced, the longest first, so a submission stored under the
    temp folder still shows as its base name.

    Parameters
    ----------
    message : one error or warning line.
    submission, truth : the paths given to :func:`score` / :func:`validate`.

    Returns
    -------
    str
    """
    return _cleaner(submission, truth)(message)


def _cleaner(submission: str | Path | None, truth: str | Path | None) -> Callable[[str], str]:
    swaps: dict[str, str] = {}
    for path, name in ((truth, "<truth>"), (submission, None)):
        if path is None or str(path) == "":
            continue
        for form in _absolute_forms(path):
            if form not in ("/", "") and form not in swaps:
                swaps[form] = name or (Path(form).name or form)
    tmp_swaps = {form: "<tmp>" for form in _absolute_forms(tempfile.gettempdir())
                 if form not in ("/", "")}
    # inputs first (they often live under the temp folder), longest prefix first
    ordered = sorted(swaps.items(), key=lambda kv: -len(kv[0]))
    ordered += sorted(tmp_swaps.items(), key=lambda kv: -len(kv[0]))
    patterns = [(re.compile(re.escape(old) + _PATH_END), new) for old, new in ordered]

    def clean(message: str) -> str:
        for pattern, new in patterns:
            message = pattern.sub(lambda _m, new=new: new, message)
        return message

    return clean


def _absolute_forms(path: str | Path) -> list[str]:
    raw = os.fspath(path)
    forms = [os.path.abspath(raw)]
    try:
        forms.append(os.path.realpath(raw))
    except (OSError, ValueError):
        pass
    return [f.rstrip(os.sep) or f for f in dict.fromkeys(forms)]


class _scrubbed:
    """Re-raise any :class:`~gpueval.errors.GpuevalError` with its message scrubbed."""

    def __init__(self, submission, truth):
        self.submission, self.truth = submission, truth

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, GpuevalError) and exc.args:
            exc.args = (_cleaner(self.submission, self.truth)(str(exc.args[0])),
                        *exc.args[1:])
        return False


def _shown_root(submission: str | Path) -> Path:
    """The folder messages name files from: the submission folder, or a file's own folder."""
    p = Path(submission)
    return p if p.is_dir() else p.parent
