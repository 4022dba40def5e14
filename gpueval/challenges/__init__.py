"""The challenges, one package each, found through one registry and one protocol.

Every challenge — the five built-ins and any installed from elsewhere — is a module registered
under the ``gpueval.challenges`` entry-point group (``name = "module.path"``) that satisfies
:class:`Challenge`::

    name: str                                   # the CLI's CHALLENGE
    config_resource: Path                       # its YAML (every constant + metric_version)
    score(truth, submission, config, *, device="cpu", scheduler=None, progress=True) -> Result
    validate(submission, config, *, truth=None) -> list[str]      # notes; raises Rejected
    resolve_config(config) -> dict              # idempotent; maps selector keys onto variants
    report_images(result, truth, submission, config=None) -> list[(title, rgb uint8 array)]

``config`` is the resolved mapping of :func:`gpueval.config.load_config`. ``score`` raises
:class:`~gpueval.errors.Rejected` for a bad submission and :class:`~gpueval.errors.TruthError`
for unusable truth; :func:`gpueval.api.score` turns those into results and exit codes. What a
scorer skips, ignores or reads differently goes to :func:`gpueval.notices.warn`.

Inside a built-in package the modules are named for what they hold: ``layout.py`` (finding and
reading the submission and truth, with the format quirks), ``score.py`` (composing kernels and
metrics into the result), ``images.py`` (its report pictures).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from gpueval.errors import UsageError

#: the built-ins, in the order the CLI lists them (also registered as entry points, so a source
#: checkout that was never installed still finds them)
BUILTIN = {name: f"gpueval.challenges.{name}"
           for name in ("urisc", "xpress", "cellmap", "medsegfm", "refuge")}
GROUP = "gpueval.challenges"


@runtime_checkable
class Challenge(Protocol):
    """What every challenge module exposes (checked for each registered one by a test)."""

    name: str
    config_resource: Path
    score: Callable[..., Any]
    validate: Callable[..., list[str]]
    resolve_config: Callable[[dict[str, Any]], dict[str, Any]]
    report_images: Callable[..., list[tuple[str, Any]]]


def config_as_given(config: Mapping[str, Any]) -> dict[str, Any]:
    """``resolve_config`` of a challenge without selector keys: a shallow copy (idempotent).

    U-RISC, XPRESS, MedSegFM and REFUGE use it: their variants are read by their options (or,
    for MedSegFM's ``track``/``variant``, resolved by :func:`gpueval.config.load_config`), so
    nothing maps onto other keys. CellMap's ``version`` does, in its own ``resolve_config``.
    """
    return dict(config)


def registered() -> dict[str, str]:
    """``{name: module path}`` of every challenge: the built-ins, then installed ones."""
    # importlib.metadata costs a process ~20 ms: only a listing or a non-built-in name asks it
    from importlib.metadata import entry_points  # noqa: PLC0415

    found = dict(BUILTIN)
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def names() -> tuple[str, ...]:
    """Every challenge's name: the built-ins, then installed ones (scans the entry points)."""
    return tuple(registered())


class Names(Sequence[str]):
    """The challenge names as a sequence that scans the installed entry points only when
    it must: ``name in Names()`` is answered from :data:`BUILTIN` for a built-in name, and
    listing, counting or indexing it (help text, an unknown name's error) scans once.

    The command line's parser takes it as its ``choices``: ``gpueval score medsegfm …``
    never loads ``importlib.metadata`` (~10-30 ms of every process, issue #19), while
    ``--help``, ``gpueval list`` and an installed sixth challenge see every name.
    """

    def __init__(self) -> None:
        self._all: tuple[str, ...] | None = None

    def _names(self) -> tuple[str, ...]:
        if self._all is None:
            self._all = names()
        return self._all

    def __contains__(self, name: object) -> bool:
        return name in BUILTIN or name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __getitem__(self, index):  # type: ignore[override] - int or slice, as tuple's
        return self._names()[index]

    def __repr__(self) -> str:
        return repr(self._names())


def get_challenge(name: str) -> ModuleType:
    """The module of challenge ``name`` (imported on first use: challenges are heavy)."""
    # a built-in wins over an installed name anyway: no scan of the installed packages'
    # entry points for it (~30-80 ms of start-up)
    known = BUILTIN if name in BUILTIN else registered()
    if name not in known:
        raise UsageError(f"unknown challenge {name!r}; choose one of {', '.join(known)}")
    module = importlib.import_module(known[name])
    if not isinstance(module, Challenge):
        missing = [a for a in Challenge.__annotations__ if not hasattr(module, a)]
        raise UsageError(f"challenge {name!r} ({known[name]}) does not implement the challenge "
                         f"protocol: missing {', '.join(missing)}")
    return module
