"""``gpueval rescore``: score every stored submission into a results database, resumably.

::

    gpueval rescore urisc --truth gt/ --submissions all/ [--db URL] [--workers N |
        --scheduler ADDRESS] [--timeout S] [--force] [--export board.csv|board.parquet]
    gpueval leaderboard urisc --db URL [--metric-version V] [--compare V0] [--stability
        [--resamples N] [--seed S]] [--html OUT] [--json OUT] [--export board.csv]

What it does
------------
* Every entry of ``--submissions DIR`` (a file, a zip or a folder) is one submission, named by
  its entry name. Hidden entries (``.*``) and gpueval's own database files are skipped; so are
  files that are not submissions of the challenge (:func:`is_submission_entry`: folders, or
  the challenge's container suffixes such as ``.zip`` / ``.h5``), with a warning, never
  ranked. Names that are not valid UTF-8 are stored and shown escaped (:func:`escape_name`,
  lossless: :func:`unescape_name` gives back the bytes).
* **Identity.** A submission is (name in the folder, content hash). Content is hashed with
  sha256 (:func:`content_hash`: a file's bytes, or a folder tree's sorted relative paths and
  bytes, streamed; per-file digests are memoised in the database while size, mtime, ctime and
  inode are unchanged, so a resumed batch does not re-read every submission). Results are a
  cache keyed by ``(challenge, metric_version, submission hash, truth hash)`` with the config
  hash recorded (:mod:`gpueval.db`; default database: the SQLite file
  ``<DIR>.gpueval-results.sqlite`` beside ``DIR``): identical bytes under two names are scored
  once and both names are ranked. The ``submission_names`` table says which content each name
  holds: a changed file becomes a new revision of its name (the old one kept, ``superseded``),
  a file gone from the folder is marked ``withdrawn``, never deleted. One database holds one
  submissions folder per challenge.
* Resumable and idempotent: a key already recorded as ``ok`` or ``rejected`` under the same
  configuration is skipped; ``failed`` ones (crash, lost worker) are retried and the retry is
  added as a new revision. Each row is written in its own transaction as its submission
  finishes, so a run killed at any point (even SIGKILL) loses only the submissions in flight,
  and the next run scores just what is missing.
* Never silently overwritten: a submission already recorded under the same metric version but
  a different configuration hash (say ``--set radius=2`` without a new ``metric_version``) is
  scored again; an identical outcome writes nothing, a different one is a conflict (reported,
  exit status 1) unless ``--force``, which adds it as a new revision (both kept with their
  timestamps). ``--force`` re-scores everything.
* **One bad entry never kills the batch**, on any run: every step that touches an entry
  (accepting it, ``lstat``, link checks, hashing, the digest memo, the database writes) runs
  in that entry's own isolation. An entry that cannot be read (a link into ``/proc``, a
  FIFO, a link loop, permission denied) is recorded as rejected with a one-line reason naming
  the entry. Symbolic links at every level are refused when they leave the entry: a
  top-level entry that is a link, or a link inside a folder submission whose target is
  outside it. Messages name the entry, never server paths (:func:`_scrub`).
* Isolation of scoring: submissions are scored in a child scoring process (``python -c``, so
  it also works from daemonic dask workers) which a wall-clock limit (``--timeout``, default
  :data:`DEFAULT_TIMEOUT_S`) and a resident-memory limit (``--memory-limit`` or the variable
  ``GPUEVAL_RESCORE_MEMORY_LIMIT``, e.g. ``8GiB``; default :data:`DEFAULT_MEMORY_FRACTION` of
  the machine's memory; the child's whole resident set, imports included, counts) kill; ``0``
  lifts a limit. A submission over a limit is recorded as **rejected** with the reason (its
  verdict under the batch's limits: not retried); a crashing one as failed; the batch goes
  on. The child is kept warm between submissions (imports cost more than scoring a small
  one: 5-10x throughput on U-RISC-sized batches) and replaced after any crash or kill, every
  100 submissions, or when idling above 2 GiB; the scorers are pure functions, so nothing
  carries over. It dies with its parent (``PR_SET_PDEATHSIG``), so killing the batch leaves
  no orphan scoring.
* Parallelism: in-process by default (one child at a time, scheduled from this process);
  ``--workers N`` starts a dask ``LocalCluster`` of N single-threaded worker processes;
  ``--scheduler ADDRESS`` uses an existing dask.distributed cluster (the submissions and truth
  paths must be readable from its workers). Each submission's own scoring runs on local
  threads inside its child. A worker that dies mid-submission is replaced by its nanny and the
  submission is re-run elsewhere (dask's ``allowed-failures`` times, then recorded ``failed``).
  The dashboard link is printed when a cluster is used.
* Progress (a tqdm bar on a terminal): done / failed / remaining and submissions per second;
  the summary line gives the throughput in submissions per minute.
* A truth or configuration that is unusable (``TruthError``) stops the batch (exit status 4):
  it is not any submission's fault and would fail them all.

Leaderboards rank every current name under one metric version with the result of the content
it holds: by ``score`` (higher is better, ties share a rank: 1, 2, 2, 4), or for REFUGE by the
official final ranking (:func:`gpueval.metrics.ranking.refuge_leaderboard` with the config's
weights, teams in name order, the official table's row order). Columns: rank, name, score,
the challenge's :data:`HEADLINE_METRICS`, a 12-character hash, scored-at, the warnings count;
rejected, failed and unscored names are listed last, unranked (an empty rank), with their
reason. ``--compare`` (default: the previous metric version in the database) adds each name's
rank under that version and the change (positive = moved up). Exports (CSV/Parquet)
neutralise spreadsheet formula prefixes; the HTML page is :mod:`gpueval.leaderboard_page`.

What a metric change did, and whether the ranking is stable (:func:`analyse_board`): a
compared board gets the impact report (:func:`board_impact`:
:func:`gpueval.metrics.impact.metric_change_impact` on the two boards' own ranks and the
stored per-case items — Δscore, Δrank, Kendall τ, Spearman ρ, the items behind each rank
change); ``--stability`` the bootstrap over cases (:func:`board_stability`:
:func:`gpueval.metrics.stability.challenge_stability` with the challenge's rule, REFUGE with
the board's weights). Console: :func:`format_impact`, :func:`format_stability`; JSON:
:func:`analyses_json`; tables beside a board export: :func:`export_analyses`; HTML: sections
of the board page (:mod:`gpueval.board_html`).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib
import json
import math
import os
import select
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import as_completed as futures_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpueval import __version__
from gpueval.config import load_config
from gpueval.db import Record, ResultConflict, ResultsDB, config_hash, connect, default_url
from gpueval.errors import TruthError, UsageError
from gpueval.formats import check_format
from gpueval.formats import write as write_format
from gpueval.metrics.impact import ImpactReport, metric_change_impact
from gpueval.metrics.ranking import refuge_leaderboard
from gpueval.metrics.stability import (
    DEFAULT_RESAMPLES,
    HEADLINE_ITEM_METRIC,
    StabilityReport,
    challenge_stability,
    item_metric_for,
    unsupported,
)
from gpueval.notices import warn
from gpueval.result import Result, format_value, to_jsonable

DEFAULT_SCORER = "gpueval.api:score"
MEMORY_ENV = "GPUEVAL_RESCORE_MEMORY_LIMIT"
_HASH_BLOCK = 1 << 20
_POLL_S = 0.05
_CHILD_CODE = "from gpueval.rescore import _child_main; _child_main()"


# ---------------------------------------------------------------------------------------------
# submissions and their content hashes


def list_submissions(directory: str | Path, *, exclude: Iterable[str | Path] = ()) -> list[Path]:
    """Entries of ``directory`` that are submissions, sorted by name.

    Hidden entries and gpueval result databases (``*.gpueval-results.sqlite*``) are skipped,
    as are the paths in ``exclude`` (the database in use, with its ``-wal``/``-shm`` files).
    """
    d = Path(directory)
    if not d.is_dir():
        raise UsageError(f"--submissions {directory}: not a folder")
    skip = {Path(p).resolve() for p in exclude}
    skip |= {Path(str(p) + s) for p in skip for s in ("-wal", "-shm", "-journal")}
    out = []
    for entry in sorted(d.iterdir(), key=lambda p: os.fsencode(p.name)):
        if entry.name.startswith(".") or ".gpueval-results.sqlite" in entry.name:
            continue
        try:  # a link loop or an unreadable target is the entry's problem, found later
            if Path(os.path.abspath(entry)) in skip or entry.resolve() in skip:
                continue
        except (OSError, RuntimeError):
            pass
        out.append(entry)
    return out


def escape_name(name: str) -> str:
    """A file name as printable text that maps back to its exact bytes (:func:`unescape_name`).

    A name that is valid, printable UTF-8 is itself, except that ``\\`` is doubled; every
    byte that is not valid UTF-8 (Python's ``surrogateescape`` form of it) and every byte of a
    non-printable character is written ``\\xNN``. So no lone surrogate reaches the database or
    the JSON, and two different names never share an escaped form.
    """
    raw = os.fsencode(name) if isinstance(name, str) else bytes(name)
    out = []
    for ch in raw.decode("utf-8", "surrogateescape"):
        if ch == "\\":
            out.append("\\\\")
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif not ch.isprintable():
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


def unescape_name(text: str) -> bytes:
    """The bytes of the file name that :func:`escape_name` wrote as ``text``."""
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 2] == "\\":
            out += b"\\"
            i += 2
        elif text[i] == "\\" and text[i + 1:i + 2] == "x":
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            out += text[i].encode("utf-8")
            i += 1
    return bytes(out)


def clean_text(text: str) -> str:
    """``text`` without lone surrogates (undecodable file-name bytes become ``\\xNN``)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape" if _only_escapes(text)
                           else "backslashreplace").decode("utf-8", "backslashreplace")


def _only_escapes(text: str) -> bool:
    return all(not ("\ud800" <= c <= "\udfff") or "\udc80" <= c <= "\udcff" for c in text)


# Top-level files a challenge's scorer reads (folders are always candidates: the scorer
# checks their layout). Anything else in the folder (a notes.txt, a spreadsheet) is skipped
# with a warning rather than ranked as a rejected team.
SUBMISSION_FILE_SUFFIXES: dict[str, tuple[str, ...]] = {
    "urisc": (".zip",),
    "xpress": (".h5", ".hdf5", ".hdf", ".zip"),
    "cellmap": (".zip",),
    "medsegfm": (".zip",),
    "refuge": (".zip",),
}


def is_submission_entry(challenge: str, entry: str | Path) -> str | None:
    """Why ``entry`` is not a submission of ``challenge`` (None: it may be one).

    Folders (``.zarr`` and ``.n5`` included) are always candidates; files must carry one of
    :data:`SUBMISSION_FILE_SUFFIXES` (an unknown challenge accepts every file). Symbolic links
    and special files are candidates here: they are refused with their reason later.
    """
    p = Path(entry)
    try:
        st = p.lstat()
    except OSError:
        return None  # unreadable: recorded as rejected with its reason, not skipped
    if not stat.S_ISREG(st.st_mode):
        return None
    suffixes = SUBMISSION_FILE_SUFFIXES.get(challenge)
    if suffixes is None or p.name.lower().endswith(suffixes):
        return None
    return (f"not a {challenge} submission (expected a folder or a "
            f"{'/'.join(suffixes)} file); skipped, not ranked")


def content_hash(path: str | Path, cache: ResultsDB | None = None) -> str:
    """sha256 of a file's or folder tree's content, streamed (1 MiB blocks).

    A file: ``sha256(b"file\\0" + sha256(bytes))``. A folder: ``b"tree\\0"`` then, for every
    entry below it in sorted relative-POSIX-path order, a length-prefixed record of its kind
    (file, folder, symbolic link, other), path, and for a file its size and the sha256 of its bytes
    (for a link its target text: links below the top are never followed; the top-level path
    itself is resolved, so a symlinked entry hashes its target; FIFOs, sockets and devices
    count by kind and are never opened). Names, timestamps and
    permissions do not count, so a renamed or copied submission keeps its hash.

    ``cache``: a results database whose ``file_digests`` memo supplies the digest of every file
    whose size, mtime, ctime and inode are unchanged since it was hashed, and records the
    others (what makes resuming a batch of huge submissions cheap).
    """
    path = Path(path).resolve()
    memo = _DigestMemo(cache, escape_name(str(path)))
    h = hashlib.sha256()
    st = path.stat()
    if stat.S_ISDIR(st.st_mode):
        h.update(b"tree\0")
        for rel, p in _tree(path):
            _hash_entry(h, rel, p, memo)
    elif stat.S_ISREG(st.st_mode):
        h.update(b"file\0" + memo.digest(path, st))
    else:  # FIFO, socket, device: never opened (a FIFO would block); the scorer rejects it
        h.update(b"special\0" + stat.S_IFMT(st.st_mode).to_bytes(4, "little"))
    memo.save()
    return h.hexdigest()


class _DigestMemo:
    """Per-file digests of one tree, read from and written back to the database memo."""

    def __init__(self, cache: ResultsDB | None, root: str):
        self.cache = cache
        self.known = cache.cached_digests(root) if cache is not None else {}
        self.new: list[tuple[str, int, int, int, int, str]] = []

    def digest(self, p: Path, st: os.stat_result) -> bytes:
        sig = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        key = escape_name(str(p))  # undecodable bytes in a path: stored escaped, losslessly
        hit = self.known.get(key)
        if hit is not None and hit[:4] == sig:
            return bytes.fromhex(hit[4])
        d = hashlib.sha256()
        with open(p, "rb") as f:
            while block := f.read(_HASH_BLOCK):
                d.update(block)
        after = p.stat()  # changed while being read: use the digest, do not memoise it
        if self.cache is not None and sig == (after.st_size, after.st_mtime_ns,
                                              after.st_ctime_ns, after.st_ino):
            self.new.append((key, *sig, d.hexdigest()))
        return d.digest()

    def save(self) -> None:
        if self.cache is not None and self.new:
            self.cache.store_digests(self.new)


def _raise(e: OSError) -> None:
    raise e  # os.walk would skip an unreadable folder silently: the hash must not


def _tree(root: Path) -> list[tuple[str, Path]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=_raise):
        base = Path(dirpath)
        for n in dirnames + filenames:
            p = base / n
            out.append((p.relative_to(root).as_posix(), p))
    out.sort(key=lambda t: t[0].encode("utf-8", "surrogateescape"))
    return out


def _hash_entry(h: Any, rel: str, p: Path, memo: _DigestMemo) -> None:
    name = rel.encode("utf-8", "surrogateescape")
    st = p.lstat()
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(p).encode("utf-8", "surrogateescape")
        h.update(b"L" + len(name).to_bytes(8, "little") + name
                 + len(target).to_bytes(8, "little") + target)
    elif stat.S_ISDIR(st.st_mode):
        h.update(b"D" + len(name).to_bytes(8, "little") + name)
    elif not stat.S_ISREG(st.st_mode):  # FIFO, socket, device: kind only, never opened
        h.update(b"S" + len(name).to_bytes(8, "little") + name
                 + stat.S_IFMT(st.st_mode).to_bytes(4, "little"))
    else:
        h.update(b"F" + len(name).to_bytes(8, "little") + name + st.st_size.to_bytes(8, "little")
                 + memo.digest(p, st))


# ---------------------------------------------------------------------------------------------
# the batch


@dataclass
class Summary:
    """What one ``rescore`` run did."""

    challenge: str
    metric_version: str
    db_url: str
    total: int = 0
    skipped: int = 0
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    unchanged: int = 0
    conflicts: list[str] = field(default_factory=list)
    duplicates: dict[str, str] = field(default_factory=dict)
    not_submissions: dict[str, str] = field(default_factory=dict)
    revised: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def processed(self) -> int:
        return self.ok + self.rejected + self.failed

    def line(self) -> str:
        rate = self.processed / self.seconds * 60 if self.seconds > 0 else 0.0
        parts = [f"{self.challenge} {self.metric_version}: {self.total} submissions",
                 f"{self.skipped} already scored", f"{self.ok} scored",
                 f"{self.rejected} rejected", f"{self.failed} failed"]
        # the rarer outcomes are named only when they happened
        parts += [f"{count} {words}" for count, words in (
            (self.unchanged, "re-scored unchanged"),
            (len(self.conflicts), "CONFLICTS"),
            (len(self.duplicates), "duplicates"),
            (len(self.revised), "changed since last run"),
            (len(self.withdrawn), "withdrawn"),
            (len(self.not_submissions), "not submissions (skipped)"),
            (len(self.errors), "NOT RECORDED"),
        ) if count]
        return ", ".join(parts) + f" — {self.seconds:.1f} s, {rate:.1f} submissions/min"


DEFAULT_TIMEOUT_S = 3600.0
DEFAULT_MEMORY_FRACTION = 0.5


def rescore(
    challenge: str,
    truth: str | Path,
    submissions: str | Path,
    *,
    db: str | ResultsDB | None = None,
    config: str | Path | None = None,
    overrides: Iterable[str] | dict[str, Any] = (),
    device: str = "auto",
    scheduler: Any = None,
    workers: int = 0,
    force: bool = False,
    timeout: float | None = None,
    memory_limit: int | str | None = None,
    progress: bool | None = None,
    scorer: str = DEFAULT_SCORER,
    accepts: Callable[[Path], str | None] | None = None,
    on_record: Callable[[Record], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> Summary:
    """Score every submission in ``submissions`` into the results database.

    Parameters
    ----------
    challenge, truth, config, overrides, device : as for :func:`gpueval.api.score`.
    submissions : folder whose entries are one submission each.
    db : database URL or an open :class:`~gpueval.db.ResultsDB` (default: SQLite beside the
        folder, :func:`gpueval.db.default_url`).
    scheduler : a dask.distributed address or ``Client`` to run the submissions on.
    workers : start a ``LocalCluster`` with this many worker processes (0: in-process).
    force : re-score everything; changed results are kept as new revisions.
    timeout : wall-clock seconds allowed per submission (its child is killed after and the
        submission recorded as rejected); None: :data:`DEFAULT_TIMEOUT_S`; 0: no limit.
    memory_limit : resident bytes (or ``"8GiB"``) allowed per submission's child (over it:
        rejected); None: ``$GPUEVAL_RESCORE_MEMORY_LIMIT`` or :data:`DEFAULT_MEMORY_FRACTION`
        of this machine's memory shared between the ``workers``; 0: no limit.
    progress : show a tqdm bar (default: when stderr is a terminal).
    scorer : ``"module:function"`` called in the child like :func:`gpueval.api.score`.
    accepts : ``entry -> reason or None``: which folder entries are submissions (default:
        :func:`is_submission_entry` for gpueval's own scorer, every entry for another).
    on_record : called in this process with each record as it is written.
    echo : where to print the dashboard link (default: stderr; ``None``-like: silent).

    Returns
    -------
    Summary
    """
    t0 = time.perf_counter()
    cfg = load_config(challenge, config, overrides)
    metric_version = str(cfg["metric_version"])
    echo = echo or (lambda s: print(s, file=sys.stderr))
    if accepts is None:
        accepts = ((lambda e: is_submission_entry(challenge, e)) if scorer == DEFAULT_SCORER
                   else (lambda e: None))
    sub_dir = Path(submissions)
    own_db = not isinstance(db, ResultsDB)
    store = connect(db or default_url(sub_dir)) if own_db else db
    try:
        exclude = [store.path] if store.dialect == "sqlite" else []
        listed = list_submissions(sub_dir, exclude=exclude)
        summary = Summary(challenge, metric_version, store.url)
        truth_hash = _truth_hash(truth, store)
        cfg_hash = config_hash(cfg)
        entries = _check_all(listed, store, accepts, summary)
        summary.total = len(entries)
        _sync_names(store, challenge, entries, summary)
        limits = (_timeout_s(timeout), _memory_bytes(memory_limit, max(1, workers)))
        todo = _plan(store, challenge, metric_version, truth_hash, cfg_hash, entries, force,
                     summary)
        if todo:
            tasks = [_task(challenge, truth, e, truth_hash, cfg, cfg_hash, device, *limits,
                           scorer) for e in todo]
            _run(tasks, store, summary, scheduler=scheduler, workers=workers, force=force,
                 progress=progress, on_record=on_record, echo=echo)
    finally:
        if own_db:
            store.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _truth_hash(truth: str | Path, store: ResultsDB) -> str:
    if not Path(truth).exists():
        raise TruthError(f"--truth {truth}: not found")
    return content_hash(truth, store)


@dataclass
class Entry:
    """One entry of the submissions folder, as checked before scoring.

    ``name`` is the escaped entry name (:func:`escape_name`); ``submission_hash`` its content
    hash, or for an entry refused before scoring (``problem``: the one-line reason) a hash of
    its name and reason, so that the refusal is recorded once and found again on resume.
    """

    path: Path
    name: str
    submission_hash: str
    problem: str | None = None


def _check_all(listed: Sequence[Path], store: ResultsDB,
               accepts: Callable[[Path], str | None], summary: Summary) -> list[Entry]:
    """Check and hash every listed entry, each in its own isolation: whatever one entry does
    (an undecodable name, a link into /proc, a FIFO, no permission) is that entry's reason."""
    entries: list[Entry] = []
    candidates: list[tuple[Path, str]] = []
    for path in listed:
        name = escape_name(path.name)
        try:
            why_not = accepts(path)
        except Exception as e:  # noqa: BLE001 - an acceptor error is the entry's, not the batch's
            entries.append(_refused(path, name, f"cannot be read: {_os_reason(e, path)}"))
            continue
        if why_not:
            msg = f"{name}: {why_not}"
            summary.not_submissions[name] = why_not
            summary.warnings.append(msg)
            warn(msg)
            continue
        candidates.append((path, name))
    # hashing is I/O bound and hashlib releases the GIL on large blocks
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(candidates)))) as ex:
        entries += ex.map(lambda c: _check_entry(c[0], c[1], store), candidates)
    entries.sort(key=lambda e: os.fsencode(e.path.name))
    return entries


def _check_entry(path: Path, name: str, store: ResultsDB) -> Entry:
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            return _refused(path, name, "symbolic link leaving the submission: the entries of "
                                        "the submissions folder must be the submissions "
                                        "themselves")
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            return _refused(path, name, f"not a regular file or folder ({_kind(st.st_mode)})")
        if stat.S_ISDIR(st.st_mode):
            leaving = _link_leaving(path)
            if leaving is not None:
                return _refused(path, name, f"{leaving}: symbolic link leaving the submission")
        return Entry(path, name, content_hash(path, store))
    except Exception as e:  # noqa: BLE001 - whatever reading it raised is the entry's reason
        return _refused(path, name, f"cannot be read: {_os_reason(e, path)}")


def _refused(path: Path, name: str, reason: str) -> Entry:
    digest = hashlib.sha256(b"refused\0" + name.encode() + b"\0" + reason.encode()).hexdigest()
    return Entry(path, name, digest, f"{name}: {reason}")


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return "a special file"


def _link_leaving(root: Path) -> str | None:
    """The escaped relative path of the first symbolic link below ``root`` whose target is
    outside ``root`` (None: every link stays inside)."""
    top = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=_raise):
        for n in sorted(dirnames + filenames):
            p = os.path.join(dirpath, n)
            if os.path.islink(p):
                target = os.path.realpath(p)
                if target != top and not target.startswith(top + os.sep):
                    return escape_name(os.path.relpath(p, root))
    return None


def _os_reason(e: BaseException, entry: Path) -> str:
    """One line for an error reading ``entry``, naming paths relative to it (never the
    server's absolute paths)."""
    if isinstance(e, OSError) and e.strerror:
        where = ""
        if e.filename is not None:
            rel = os.path.relpath(os.fsdecode(e.filename), entry)
            where = "" if rel == "." else f"{escape_name(rel)}: "
            if rel.startswith(".."):
                where = ""
        return f"{where}{e.strerror.lower()}"
    text = _one_line(e)
    for prefix in (str(entry.resolve()) if entry.exists() else "", str(entry.absolute())):
        if prefix:
            text = text.replace(prefix, escape_name(entry.name))
    return clean_text(f"{type(e).__name__}: {text}")


def _sync_names(store: ResultsDB, challenge: str, entries: Sequence[Entry],
                summary: Summary) -> None:
    """Record which content each name holds now; mark names gone from the folder withdrawn.
    One transaction per name, each isolated: a write that fails is reported, not fatal."""
    present = {e.name for e in entries}
    try:  # one transaction for the whole folder (a first run records every name) ...
        states = store.record_names(challenge, [(e.name, e.submission_hash) for e in entries])
    except Exception:  # noqa: BLE001 - ... and on any error, each name on its own
        states = {}
        for e in entries:
            try:
                states[e.name] = store.record_name(challenge, e.name, e.submission_hash)
            except Exception as err:  # noqa: BLE001 - reported; the batch goes on
                summary.errors.append(f"{e.name}: could not be recorded: {_one_line(err)}")
    summary.revised += [e.name for e in entries if states.get(e.name) == "revised"]
    for row in store.current_names(challenge):
        if row.name not in present:
            try:
                if store.withdraw_name(challenge, row.name):
                    summary.withdrawn.append(row.name)
            except Exception as err:  # noqa: BLE001
                summary.errors.append(f"{row.name}: could not be marked withdrawn: "
                                      f"{_one_line(err)}")


def _plan(store: ResultsDB, challenge: str, metric_version: str, truth_hash: str, cfg_hash: str,
          entries: Sequence[Entry], force: bool, summary: Summary) -> list[Entry]:
    """Which entries need scoring; fills ``summary.skipped`` and ``summary.duplicates``.

    Results are a cache by content: identical bytes under two names are scored once (the
    leaderboard gives both names their row)."""
    done = {r.submission_hash: r for r in store.latest(challenge, metric_version, truth_hash)}
    todo, first_name = [], {}
    for e in entries:
        if e.submission_hash in first_name:
            summary.duplicates[e.name] = first_name[e.submission_hash]
            continue
        first_name[e.submission_hash] = e.name
        rec = done.get(e.submission_hash)
        if (not force and rec is not None and rec.status != "failed"
                and rec.config_hash == cfg_hash):
            summary.skipped += 1
            continue
        todo.append(e)
    return todo


def _task(challenge: str, truth: str | Path, entry: Entry, truth_hash: str,
          cfg: dict[str, Any], cfg_hash: str, device: str, timeout: float | None,
          memory_limit: int | None, scorer: str) -> dict[str, Any]:
    return {"challenge": challenge, "truth": str(Path(truth).resolve()),
            "submission": os.path.abspath(entry.path), "name": entry.name,
            "problem": entry.problem,
            "submission_hash": entry.submission_hash, "truth_hash": truth_hash,
            "config": to_jsonable(cfg), "config_hash": cfg_hash,
            "metric_version": str(cfg["metric_version"]), "device": device, "timeout": timeout,
            "memory_limit": memory_limit, "scorer": scorer, "gpueval_version": __version__}


def _timeout_s(timeout: float | None) -> float | None:
    if timeout is None:
        return DEFAULT_TIMEOUT_S
    return float(timeout) if timeout > 0 else None


def _memory_bytes(limit: int | str | None, children: int = 1) -> int | None:
    """Resident bytes allowed per scoring child (None: no limit). The default shares
    :data:`DEFAULT_MEMORY_FRACTION` of this machine's memory between the ``children`` that
    may score at once (``--workers``)."""
    limit = limit if limit is not None else os.environ.get(MEMORY_ENV) or None
    if limit is None:
        import psutil

        return int(psutil.virtual_memory().total * DEFAULT_MEMORY_FRACTION
                   / max(1, children))
    if isinstance(limit, int | float):
        return int(limit) if limit > 0 else None
    from dask.utils import parse_bytes

    try:
        value = int(parse_bytes(str(limit)))
    except ValueError as e:
        raise UsageError(f"memory limit {limit!r}: write bytes or e.g. 8GiB") from e
    return value if value > 0 else None


def _run(tasks: list[dict], store: ResultsDB, summary: Summary, *, scheduler: Any,
         workers: int, force: bool, progress: bool | None,
         on_record: Callable[[Record], None] | None, echo: Callable[[str], None]) -> None:
    from gpueval.progress import tqdm_class  # monitor thread off: see tqdm_class

    tqdm = tqdm_class(auto=True)
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(tasks), unit="sub", desc="rescore", disable=not show, leave=False)
    try:
        for task, outcome in _execute(tasks, scheduler, workers, echo):
            try:
                rec = _record(task, outcome)
                state = store.insert(rec, force=force)
            except ResultConflict as e:
                summary.conflicts.append(str(e))
                state = "conflict"
            except Exception as e:  # noqa: BLE001 - one entry's write never stops the batch
                summary.errors.append(f"{task['name']}: could not be recorded: "
                                      f"{_one_line(e)}")
                bar.update(1)
                continue
            if state == "unchanged":
                summary.unchanged += 1
            if state != "conflict":
                setattr(summary, rec.status, getattr(summary, rec.status) + 1)
                if on_record is not None:
                    on_record(rec)
            bar.update(1)
            bar.set_postfix(done=summary.processed, failed=summary.failed + summary.rejected,
                            remaining=len(tasks) - bar.n, refresh=False)
    finally:
        bar.close()


def _execute(tasks: list[dict], scheduler: Any, workers: int,
             echo: Callable[[str], None]) -> Iterator[tuple[dict, dict]]:
    """Yield ``(task, outcome)`` as submissions finish; stop everything on a TruthError.
    Entries refused before scoring (``task["problem"]``) are answered here, never run."""
    from gpueval.db import utc_now

    for t in tasks:
        if t.get("problem"):
            now = utc_now()
            yield t, {"kind": "refused", "error": t["problem"], "started_at": now,
                      "finished_at": now, "seconds": 0.0}
    tasks = [t for t in tasks if not t.get("problem")]
    if not tasks:
        return
    if scheduler is None and workers <= 0:
        yield from _execute_local(tasks)
    else:
        yield from _execute_dask(tasks, scheduler, workers, echo)


def _execute_local(tasks: list[dict]) -> Iterator[tuple[dict, dict]]:
    ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpueval-rescore")
    futures = {ex.submit(run_task, t): t for t in tasks}
    try:
        for fut in futures_completed(futures):
            outcome = fut.result()
            _check_truth(outcome)
            yield futures[fut], outcome
    finally:
        for fut in futures:
            fut.cancel()
        ex.submit(_close_thread_child)  # runs after the task in flight, on the same thread
        ex.shutdown(wait=True)


def _execute_dask(tasks: list[dict], scheduler: Any, workers: int,
                  echo: Callable[[str], None]) -> Iterator[tuple[dict, dict]]:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if isinstance(scheduler, Client):
        client, own_client = scheduler, False
    else:
        if scheduler is None:
            import logging

            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=logging.ERROR)
            scheduler = cluster
        client, own_client = Client(scheduler), True
    echo(f"dask dashboard: {client.dashboard_link}")
    futures = {}
    for t in tasks:
        key = f"gpueval-rescore-{t['name'][:60]}-{uuid.uuid4().hex[:12]}"  # unique per run
        futures[client.submit(run_task, t, key=key, pure=False)] = t
    try:
        for fut in as_completed(list(futures)):
            task = futures[fut]
            try:
                outcome = fut.result()
            except Exception as e:  # KilledWorker (the worker died each time), cancellation
                outcome = {"kind": "failed", "error": _lost_worker_reason(e),
                           "seconds": None, "started_at": None}
            _check_truth(outcome)
            yield task, outcome
    finally:
        client.cancel(list(futures), force=True)
        try:
            client.run(close_idle_children)  # no warm scoring process outlives the batch
        except Exception:  # noqa: S110 - best effort: a worker may be gone already
            pass
        if own_client:
            client.close()
        if cluster is not None:
            cluster.close()


def _lost_worker_reason(e: BaseException) -> str:
    name = type(e).__name__
    if name == "KilledWorker":
        return ("the dask worker scoring it died each time it was tried (crash or memory); "
                f"{_one_line(e)}")
    return f"lost on the cluster: {name}: {_one_line(e)}"


def _check_truth(outcome: dict) -> None:
    if outcome.get("kind") == "truth_error":
        raise TruthError(outcome["error"])


def _record(task: dict, outcome: dict) -> Record:
    """The database row for one finished task."""
    from gpueval.db import utc_now

    finished = outcome.get("finished_at") or utc_now()
    if outcome.get("kind") == "result":
        result = _scrub(outcome["result"], task)
    else:
        # a refusal before scoring, or a time/memory limit: the submission's verdict under
        # the batch's limits (rejected, not retried); a crash or a lost worker: failed
        status = "rejected" if outcome.get("kind") in ("refused", "limit") else "failed"
        error = _scrub(outcome["error"], task)
        if status == "rejected" and outcome.get("kind") == "limit":
            error = f"{task['name']}: {error}"
        result = Result(task["challenge"], task["metric_version"], status=status,
                        error=error).to_dict()
        result["runtime"]["seconds"] = outcome.get("seconds")
        result["runtime"]["device"] = None
    runtime = result.get("runtime") or {}
    score = result.get("score")
    return Record(
        challenge=task["challenge"], metric_version=task["metric_version"],
        submission_hash=task["submission_hash"], truth_hash=task["truth_hash"],
        submission_name=task["name"], status=result["status"], error=result.get("error"),
        score=float(score) if isinstance(score, int | float) else None,
        result_json=json.dumps(result, allow_nan=False),
        runtime_seconds=runtime.get("seconds", outcome.get("seconds")),
        device=runtime.get("device"), gpueval_version=task["gpueval_version"],
        config_hash=task["config_hash"], started_at=outcome.get("started_at") or finished,
        finished_at=finished)


def _scrub(value: Any, task: dict) -> Any:
    """``value`` (a result, or a string in it) with server paths replaced by the entry name
    (the submission's) or ``<truth>``, and lone surrogates escaped: what participants see."""
    if isinstance(value, dict):
        return {k: _scrub(v, task) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, task) for v in value]
    if not isinstance(value, str):
        return value
    sub = task["submission"]
    for prefix, name in ((sub, task["name"]), (os.path.dirname(sub) + os.sep, ""),
                         (task["truth"], "<truth>")):
        if prefix and prefix != os.sep:
            value = value.replace(prefix, name)
    return clean_text(value)


# ---------------------------------------------------------------------------------------------
# one submission in a child process (this part runs on the worker)


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Score one submission in this thread's child process, within its time and memory limits.

    The child is kept warm between submissions (Python, NumPy and dask imports cost more than
    scoring a small submission) and replaced whenever it crashes, is killed for a limit, has
    scored :data:`MAX_TASKS_PER_CHILD` submissions, or idles above :data:`RECYCLE_RSS` bytes.

    Returns ``{"kind": "result", "result": {...}}``, ``{"kind": "failed", "error": reason}``
    or ``{"kind": "truth_error", "error": ...}``, with ``started_at``, ``finished_at`` and
    ``seconds``. Never raises for anything the submission does.
    """
    from gpueval.db import utc_now

    started, t0 = utc_now(), time.perf_counter()
    child = _thread_child(task)
    try:
        outcome = child.run(task)
    finally:
        if not child.healthy():
            child.close()
            _LOCAL.child = None
    outcome.update(started_at=started, finished_at=utc_now(), seconds=time.perf_counter() - t0)
    return outcome


MAX_TASKS_PER_CHILD = 100
STARTUP_TIMEOUT_S = 300.0  # imports on a cold, busy node; not counted in --timeout
RECYCLE_RSS = 2 << 30
_LOCAL = threading.local()
_CHILDREN: weakref.WeakSet = weakref.WeakSet()


def _thread_child(task: dict[str, Any]) -> _Child:
    child = getattr(_LOCAL, "child", None)
    if child is None or not child.healthy():
        if child is not None:
            child.close()
        preload = [task["scorer"].partition(":")[0], f"gpueval.challenges.{task['challenge']}"]
        child = _LOCAL.child = _Child(preload)
    return child


def _close_thread_child() -> None:
    child = getattr(_LOCAL, "child", None)
    if child is not None:
        child.close()
        _LOCAL.child = None


def close_idle_children() -> int:
    """Stop this process's warm children that are not scoring (end of a batch)."""
    n = 0
    for child in list(_CHILDREN):
        if not child.busy:
            child.close()
            n += 1
    return n


class _Child:
    """One warm scoring process: tasks as JSON lines on its stdin, outcomes as JSON lines on
    a private pipe (its stdout is pointed at its log, so a scorer's prints cannot interfere)."""

    def __init__(self, preload: Sequence[str] = ()) -> None:
        self.log = tempfile.TemporaryFile(prefix="gpueval-rescore-")
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD_CODE, *preload],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, env=_child_env())
        self.ready = False  # it says "ready" once its imports are done
        self.tasks = 0
        self.busy = False
        self.dead = False
        _CHILDREN.add(self)

    def healthy(self) -> bool:
        if self.dead or self.proc.poll() is not None or self.tasks >= MAX_TASKS_PER_CHILD:
            return False
        import psutil

        return _tree_rss(psutil, self.proc.pid) < RECYCLE_RSS

    def run(self, task: dict[str, Any]) -> dict[str, Any]:
        self.busy = True
        self.tasks += 1
        log_from = self.log.seek(0, os.SEEK_END)
        try:
            if not self.ready:  # start-up is not the submission's time
                line, killed = self._wait(STARTUP_TIMEOUT_S, None)
                if line.strip() != b"ready":
                    self.dead = True
                    self.log.seek(log_from)
                    tail = _last_line(self.log.read()[-4000:])
                    why = _outcome(self.proc.returncode, killed, tail)["error"]
                    return {"kind": "failed", "error": f"the scoring process did not start: {why}"}
                self.ready = True
            try:
                self.proc.stdin.write(json.dumps(task).encode() + b"\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass  # it died: reported below from its exit status
            line, killed = self._wait(task.get("timeout"), task.get("memory_limit"))
            if line:
                return json.loads(line)
            self.dead = True
            self.log.seek(log_from)
            tail = _last_line(self.log.read()[-4000:])
            return _outcome(self.proc.returncode, killed, tail)
        finally:
            self.busy = False

    def _wait(self, timeout: float | None, memory_limit: int | None) -> tuple[bytes, str | None]:
        """The child's answer line, or ``b""`` and why it was killed (None: it died)."""
        import psutil

        t0, peak = time.monotonic(), 0
        out = self.proc.stdout
        while True:
            ready, _, _ = select.select([out], [], [], _POLL_S)
            if ready:
                line = out.readline()
                if not line:  # EOF: the child exited
                    self.proc.wait()
                return line, None
            why = None
            if timeout is not None and time.monotonic() - t0 > timeout:
                why = f"exceeded the time limit of {timeout:g} s"
            elif memory_limit is not None:
                peak = max(peak, _tree_rss(psutil, self.proc.pid))
                if peak > memory_limit:
                    why = (f"exceeded the memory limit of {memory_limit / 2**20:.0f} MiB "
                           f"(resident {peak / 2**20:.0f} MiB)")
            if why is not None:
                _kill_tree(psutil, self.proc)
                return b"", why

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # a clean exit: the child's loop reads EOF
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                import psutil

                _kill_tree(psutil, self.proc)
        self.dead = True
        for f in (self.proc.stdout, self.log):
            try:
                f.close()
            except OSError:
                pass
        _CHILDREN.discard(self)


def _child_env() -> dict[str, str] | None:
    """The environment of a scoring process: this one's, less what a dask nanny injects into
    its worker (``distributed.nanny.pre-spawn-environ``) when we run on a worker. Those tune
    a worker, not a scorer: ``MALLOC_TRIM_THRESHOLD_`` alone made U-RISC scoring 2-4x slower
    (every large array became an mmap/munmap pair), ``OMP_NUM_THREADS=1`` pins the scorer's
    own thread pools."""
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return None  # not on a dask worker: inherit as is
    import dask

    env = dict(os.environ)
    for key in dask.config.get("distributed.nanny.pre-spawn-environ", None) or {}:
        env.pop(key, None)
    return env


def _tree_rss(psutil: Any, pid: int) -> int:
    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.Error:
            pass
    return total


def _kill_tree(psutil: Any, proc: subprocess.Popen) -> None:
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        kids = []
    for q in kids:
        try:
            q.kill()
        except psutil.Error:
            pass
    proc.kill()
    proc.wait()


def _outcome(rc: int | None, killed: str | None, tail: str) -> dict[str, Any]:
    if killed:
        return {"kind": "limit", "error": killed}
    if rc is not None and rc < 0:
        try:
            sig = signal.Signals(-rc).name
        except ValueError:
            sig = f"signal {-rc}"
        hint = " (out of memory?)" if -rc == signal.SIGKILL else ""
        return {"kind": "failed",
                "error": f"the scoring process crashed: killed by {sig}{hint}"
                         + (f"; last output: {tail}" if tail else "")}
    return {"kind": "failed", "error": f"the scoring process exited with status {rc}"
                                       + (f": {tail}" if tail else "")}


def _last_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:500] or type(e).__name__


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphaned scoring)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _child_main() -> None:
    """The child's loop: imports the modules named in ``argv`` and says ``ready``; then one
    task JSON per line on stdin, one outcome JSON per line on the protocol pipe (the original
    stdout; fd 1 is pointed at stderr for the scorer's prints)."""
    ppid = os.getppid()
    _die_with_parent()
    if os.getppid() != ppid:  # the parent died before the death signal was armed
        os._exit(1)
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for module in sys.argv[1:]:  # warm up: the scorer and its challenge
        try:
            importlib.import_module(module)
        except Exception:  # noqa: S112 - the task reports it with its reason
            continue
    proto.write("ready\n")
    proto.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        payload = _score_here(json.loads(line))
        proto.write(json.dumps(payload, allow_nan=False) + "\n")
        proto.flush()


def _score_here(task: dict[str, Any]) -> dict[str, Any]:
    from gpueval.errors import GpuevalError

    try:
        module, _, name = task["scorer"].partition(":")
        scorer = getattr(importlib.import_module(module), name)
        result = scorer(task["challenge"], task["truth"], task["submission"],
                        config=task["config"], device=task["device"])
        return {"kind": "result", "result": result.to_dict()}
    except TruthError as e:
        return {"kind": "truth_error", "error": str(e)}
    except GpuevalError as e:
        return {"kind": "failed", "error": f"{type(e).__name__}: {_one_line(e)}"}
    except MemoryError:
        return {"kind": "failed", "error": "ran out of memory (MemoryError)"}
    except Exception as e:
        return {"kind": "failed", "error": f"the scorer raised {type(e).__name__}: "
                                           f"{_one_line(e)}"}


# ---------------------------------------------------------------------------------------------
# leaderboards


# The metrics a leaderboard shows as columns, per challenge (those a participant compares;
# shared/specs/cli.md's per-challenge table). A challenge not listed shows every scalar metric.
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    "urisc": ("f1", "mean_precision", "mean_recall"),
    "xpress": ("xpress_erl_rand", "xpress_erl_voi", "erl_norm", "rand_split", "rand_merge",
               "voi_split", "voi_merge"),
    "cellmap": ("overall_score", "overall_instance_score", "overall_semantic_score"),
    "medsegfm": ("dsc", "nsd", "f1", "dsc_tp", "dsc_auc", "nsd_auc", "dsc_final", "nsd_final"),
    "refuge": ("mean_cup_dice", "mean_disc_dice", "vcdr_mae", "auc",
               "sensitivity_at_085_specificity", "fovea_mean_distance"),
}
SHORT_HASH = 12


@dataclass
class Board:
    """A ranked table of one metric version (``rows``: dicts, ranked first, unranked last).

    ``weights``: REFUGE's effective ranking weights (``segmentation_weights``,
    ``final_weights``); ``sections``: extra ``(heading, html)`` parts the HTML page appends
    after the table (the metric-change impact report, rank stability, ...); ``impact`` and
    ``stability``: the reports :func:`analyse_board` attached (None until then)."""

    challenge: str
    metric_version: str
    rows: list[dict[str, Any]]
    compare: str | None = None
    previous: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)
    weights: dict[str, list[float]] = field(default_factory=dict)
    sections: list[tuple[str, str]] = field(default_factory=list)
    impact: ImpactReport | None = None
    stability: StabilityReport | None = None

    @property
    def metric_columns(self) -> list[str]:
        """The headline metrics present in at least one row (column order of the board)."""
        present = {k for r in self.rows for k, v in (r.get("_metrics") or {}).items()
                   if _finite(v)}
        names = HEADLINE_METRICS.get(self.challenge)
        if names is None:
            names = tuple(dict.fromkeys(k for r in self.rows for k, v in
                                        (r.get("_metrics") or {}).items() if _finite(v)))
        return [n for n in names if n in present]


def leaderboard(store: ResultsDB, challenge: str, metric_version: str | None = None,
                compare: str | None = None, *, auto_compare: bool = True,
                ranking: dict[str, Any] | None = None) -> Board:
    """Rank every submission of ``challenge`` under ``metric_version`` (default: the newest
    in the database).

    A submission is a name of the submissions folder (the ``submission_names`` table that
    ``rescore`` keeps): every current name gets a row with the result of the content it holds
    now, so two names holding the same bytes are both ranked; withdrawn names and superseded
    contents are not shown (they stay in the database). A name whose content has no result
    under this version is listed unranked as ``not scored``. A database without names (rows
    inserted directly) ranks its results by their recorded name.

    ``ranking`` is the config's ``ranking`` section (REFUGE: ``segmentation_weights``,
    ``final_weights``); default: the shipped config's.

    ``compare`` (default with ``auto_compare``: the version recorded before it, if any) adds
    ``previous_rank``, ``rank_change`` (positive = moved up) and ``previous_score`` per
    submission, matched by name.
    """
    versions = store.metric_versions(challenge)
    if not versions:
        raise UsageError(f"no {challenge} results in {store.url}")
    if metric_version is None:
        metric_version = versions[-1]
    if metric_version not in versions:
        raise UsageError(f"no {challenge} results for metric version {metric_version!r}; "
                         f"recorded: {', '.join(versions)}")
    if compare is None and auto_compare:
        i = versions.index(metric_version)
        compare = versions[i - 1] if i > 0 else None
    if compare is not None and compare not in versions:
        raise UsageError(f"--compare {compare}: no {challenge} results for it; recorded: "
                         f"{', '.join(versions)}")
    notes: list[str] = []
    if ranking is None:
        ranking = load_config(challenge).get("ranking") or {}
    names = store.current_names(challenge)
    rows = _ranked_rows(store, challenge, metric_version, notes, ranking, names)
    board = Board(challenge, metric_version, rows, compare, notes=notes)
    if challenge == "refuge":
        board.weights = _refuge_weights(ranking)
        board.notes.insert(0, "final ranking: segmentation weights "
                              f"{_weights_text(board.weights['segmentation_weights'])} (cup "
                              "Dice, disc Dice, vCDR MAE ranks), final weights "
                              f"{_weights_text(board.weights['final_weights'])} "
                              "(segmentation, classification positions)")
    if compare is not None:
        # each current name as it stood under the older version: the newest of its contents
        # (current or superseded) scored under it, so a file changed since still compares
        history: dict[str, list[Any]] = {}
        for n in store.names(challenge, states=("current", "superseded")):
            history.setdefault(n.name, []).append(n)
        prev = _ranked_rows(store, challenge, compare, notes, ranking, names, history)
        by_name = {r["name"]: r for r in prev}
        for r in rows:
            p = by_name.get(r["name"])
            r["previous_rank"] = p["rank"] if p else None
            r["previous_score"] = p["score"] if p else None
            r["rank_change"] = (p["rank"] - r["rank"]
                                if p and p["rank"] is not None and r["rank"] is not None
                                else None)
        board.previous = prev
    return board


def _ranked_rows(store: ResultsDB, challenge: str, metric_version: str, notes: list[str],
                 ranking: dict[str, Any], names: Sequence[Any],
                 history: dict[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    recs = store.latest(challenge, metric_version)
    truths = {r.truth_hash for r in recs}
    if len(truths) > 1:  # several truths scored under one version: the most recent wins
        latest_truth = max(recs, key=lambda r: r.finished_at).truth_hash
        notes.append(f"{metric_version}: results against {len(truths)} truths recorded; "
                     f"ranking those against the most recent ({latest_truth[:SHORT_HASH]})")
        recs = [r for r in recs if r.truth_hash == latest_truth]
    if names:
        by_hash = {r.submission_hash: r for r in recs}
        if history is not None:
            names = [next((h for h in sorted(history.get(n.name, [n]),
                                             key=lambda h: -h.revision)
                           if h.submission_hash in by_hash), n) for n in names]
        rows = [_row(by_hash[n.submission_hash], n.name, n.revision)
                if n.submission_hash in by_hash else _unscored_row(n, metric_version)
                for n in names]
    else:  # no identity recorded (rows inserted directly): the results' own names
        recs.sort(key=lambda r: r.submission_name)
        rows = [_row(r, r.submission_name, None) for r in recs]
    if challenge == "refuge":
        _rank_refuge(rows, ranking)
    else:
        _rank_by_score(rows)
    rows.sort(key=lambda r: (r["rank"] is None, r["rank"] or 0, r["name"]))
    return rows


def _row(r: Record, name: str, name_revision: int | None) -> dict[str, Any]:
    result = r.result
    row: dict[str, Any] = {"rank": None, "name": name, "score": r.score,
                           "status": r.status, "error": r.error,
                           "hash": r.submission_hash[:SHORT_HASH],
                           "scored_at": r.finished_at,
                           "warnings": len(result.get("warnings") or []),
                           "metric_version": r.metric_version,
                           "submission_hash": r.submission_hash, "truth_hash": r.truth_hash,
                           "name_revision": name_revision, "revision": r.revision,
                           "runtime_seconds": r.runtime_seconds, "device": r.device,
                           "finished_at": r.finished_at}
    for k, v in (result.get("metrics") or {}).items():
        if v is None or isinstance(v, int | float | str | bool):
            row[f"metrics.{k}"] = v
    row["_metrics"] = result.get("metrics") or {}
    row["_warnings"] = list(result.get("warnings") or [])
    row["_items"] = result.get("items") or []  # per-case values: impact and stability
    row["_track"] = (result.get("extra") or {}).get("track")  # MedSegFM's item metric
    return row


def _unscored_row(n: Any, metric_version: str) -> dict[str, Any]:
    return {"rank": None, "name": n.name, "score": None, "status": "not scored",
            "error": f"not scored under {metric_version} yet (run gpueval rescore)",
            "hash": n.submission_hash[:SHORT_HASH], "scored_at": None, "warnings": 0,
            "metric_version": metric_version, "submission_hash": n.submission_hash,
            "truth_hash": None, "name_revision": n.revision, "revision": None,
            "runtime_seconds": None, "device": None, "finished_at": None,
            "_metrics": {}, "_warnings": [], "_items": [], "_track": None}


def _rank_by_score(rows: list[dict[str, Any]]) -> None:
    scores = [r["score"] if r["status"] == "ok" and _finite(r["score"]) else None for r in rows]
    for r, s in zip(rows, scores, strict=True):
        r["rank"] = None if s is None else 1 + sum(1 for t in scores if t is not None and t > s)


def _refuge_weights(ranking: dict[str, Any]) -> dict[str, list[float]]:
    import inspect

    params = inspect.signature(refuge_leaderboard).parameters
    return {k: [float(w) for w in (ranking.get(k) or params[k].default)]
            for k in ("segmentation_weights", "final_weights")}


def _weights_text(weights: Sequence[float]) -> str:
    return "[" + ", ".join(f"{w:g}" for w in weights) + "]"


def _rank_refuge(rows: list[dict[str, Any]], ranking: dict[str, Any]) -> None:
    ok = [r for r in rows if r["status"] == "ok"]
    boards = refuge_leaderboard({r["name"]: r["_metrics"] for r in ok},
                                **_refuge_weights(ranking))
    final = boards["final"]["teams_in_order"]
    seg = boards["segmentation"]["teams_in_order"]
    cls = boards["classification"]["teams_in_order"]
    for r in rows:
        n = r["name"]
        r["rank"] = final.index(n) + 1 if n in final else None
        r["segmentation_rank"] = seg.index(n) + 1 if n in seg else None
        r["classification_rank"] = cls.index(n) + 1 if n in cls else None
        r["final_score"] = None
        if r["rank"] is None and r["status"] == "ok":
            r["error"] = "not on the final ranking (a metric it needs is missing)"
    by_name = {r["name"]: r for r in rows}
    for i, n in enumerate(final):
        by_name[n]["final_score"] = boards["final"]["scores"][i][0]


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def public_rows(board: Board) -> list[dict[str, Any]]:
    """The board's rows without private keys."""
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in board.rows]


def board_columns(board: Board) -> list[str]:
    """Column order of every presentation: rank, name, score (REFUGE: its final ranking),
    the headline metrics, short hash, scored-at, warnings count, status and reason; then the
    comparison with the older version, if any."""
    cols = ["rank", "name"]
    cols += (["final_score", "segmentation_rank", "classification_rank"]
             if board.challenge == "refuge" else ["score"])
    cols += board.metric_columns
    cols += ["hash", "scored_at", "warnings", "status", "reason"]
    if board.compare:
        cols += ["previous_rank", "rank_change", "previous_score"]
    return cols


def _presented(board: Board, r: dict[str, Any], cols: Sequence[str],
               metrics: Sequence[str]) -> dict[str, Any]:
    """One row as shown: a value per column (``cols``; ``metrics``: the headline ones)."""
    row = {c: r.get(c) for c in cols}
    for m in metrics:
        row[m] = r["_metrics"].get(m) if _finite(r["_metrics"].get(m)) else None
    row["reason"] = r.get("error") if r["status"] != "ok" or r["rank"] is None else None
    return row


def export_rows(board: Board) -> list[dict[str, Any]]:
    """The rows an export writes (CSV/Parquet): the :func:`board_columns`, then provenance
    (full hashes, revisions, runtime) and every other scalar metric as ``metrics.<name>``."""
    out = []
    cols, metrics = board_columns(board), board.metric_columns
    shown = set(cols) | {f"metrics.{m}" for m in metrics}
    for r in board.rows:
        row = _presented(board, r, cols, metrics)
        row.update({k: v for k, v in r.items() if not k.startswith("_") and k not in shown
                    and k not in ("error", "finished_at")})
        out.append(row)
    return out


def format_board(board: Board, max_rows: int | None = None) -> str:
    """Plain-text ranked table (with rank changes when compared)."""
    head = f"{board.challenge} leaderboard — metric version {board.metric_version}"
    if board.compare:
        head += f" (rank change against {board.compare})"
    cols = ["rank"] + (["change", "was"] if board.compare else []) + ["submission"]
    cols += (["final", "seg", "cls"] if board.challenge == "refuge" else ["score"])
    metrics = board.metric_columns
    cols += metrics + ["hash", "scored at", "warn", "status"]
    shown = board_columns(board)
    lines_ = []
    for r in board.rows[:max_rows]:
        p = _presented(board, r, shown, metrics)
        cells = {"rank": _cell(r["rank"]), "submission": r["name"],
                 "score": format_value(r["score"]) if r["score"] is not None else "",
                 "final": format_value(r.get("final_score"))
                 if r.get("final_score") is not None else "",
                 "seg": _cell(r.get("segmentation_rank")),
                 "cls": _cell(r.get("classification_rank")),
                 "hash": r["hash"], "scored at": _when(r["scored_at"]),
                 "warn": str(r["warnings"]) if r["warnings"] else "",
                 "status": r["status"] + (f": {p['reason']}" if p["reason"] else "")}
        for m in metrics:
            cells[m] = "" if p[m] is None else format_value(p[m])
        if board.compare:
            ch = r.get("rank_change")
            cells["change"] = "new" if r.get("previous_rank") is None and r["rank"] else (
                "" if ch is None else ("=" if ch == 0 else f"{ch:+d}"))
            cells["was"] = _cell(r.get("previous_rank"))
        lines_.append([cells[c] for c in cols])
    widths = [max([len(c)] + [len(row[i]) for row in lines_]) for i, c in enumerate(cols)]
    out = [head, "",
           "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip(),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            for row in lines_]
    out += [f"note: {n}" for n in board.notes]
    return "\n".join(out)


def _cell(v: Any) -> str:
    return "" if v is None else str(v)  # an unranked row's rank is empty, not "null"


def _when(iso: str | None) -> str:
    """``2026-12-05T23:12:35.123456+00:00`` → ``2026-12-05 23:12Z``."""
    return "" if not iso else iso[:16].replace("T", " ") + "Z"


def export_board(board: Board, path: str | Path) -> Path:
    """Write the board as ``.csv`` or ``.parquet`` (pandas; parquet needs pyarrow).

    Columns: :func:`export_rows`. Text cells that a spreadsheet would run as a formula are
    prefixed with ``'`` (:func:`neutralise_formula`): names are chosen by participants."""
    return _write_table(export_rows(board), path,
                        ("rank", "previous_rank", "rank_change", "segmentation_rank",
                         "classification_rank", "revision", "name_revision", "warnings"))


def _write_table(rows: Sequence[dict[str, Any]], path: str | Path,
                 int_columns: Sequence[str] = ()) -> Path:
    """``rows`` as a CSV or Parquet table at ``path`` (by suffix), atomically, formulas
    neutralised, ``int_columns`` as nullable integers."""
    import pandas as pd

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UsageError(f"--export {path}: name a .csv or .parquet file")
    df = pd.DataFrame(list(rows))
    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]):  # object or pandas' string dtype
            df[col] = df[col].map(neutralise_formula)
    for col in int_columns:
        if col in df:
            df[col] = df[col].astype("Int64")  # integers with missing values, not floats
    tmp = path.with_name(path.name + ".tmp")
    if suffix == ".csv":
        df.to_csv(tmp, index=False)
    else:
        try:
            df.to_parquet(tmp, index=False)
        except ImportError as e:
            raise UsageError(f"--export {path}: parquet needs pyarrow "
                             "(pip install pyarrow)") from e
    tmp.replace(path)
    return path


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula (it starts with ``=``, ``+``,
    ``-``, ``@``, a tab or a carriage return), prefixed with ``'`` so it is shown as text;
    anything else unchanged. (OWASP's CSV-injection advice; names are the participants'.)"""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def write_board_html(board: Board, path: str | Path,
                     sections: Sequence[tuple[str, str]] = ()) -> Path:
    """Write the leaderboard as one self-contained HTML page (:mod:`gpueval.leaderboard_page`).

    ``sections``: extra ``(heading, html)`` parts appended after the table, with
    ``board.sections`` (where the metric-change impact report and rank stability plug in)."""
    from gpueval.leaderboard_page import render

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    cols, metrics = board_columns(board), board.metric_columns
    tmp.write_text(render(board, [_presented(board, r, cols, metrics) | {"_row": r}
                                  for r in board.rows], cols, [*board.sections, *sections]),
                   encoding="utf-8")
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------
# what a metric change did to the board, and how stable the board is (issue #22)


def board_impact(board: Board, *, top_k: int = 3) -> ImpactReport | None:
    """The metric-change impact of a compared board (None when ``board.compare`` is not set).

    Compares ``board.previous`` (each current name under ``board.compare``) with ``board.rows``
    through :func:`gpueval.metrics.impact.metric_change_impact`, with each board's own ranks
    (REFUGE: positions on its final ranking with the board's weights) and the stored
    per-case items read at :func:`gpueval.metrics.stability.item_metric_for` (MedSegFM: the
    track recorded in the results). REFUGE has no headline score: its Δscore is the change of
    mean cup Dice, the metric its item contributions explain (a note says so). Challenges
    whose score is not a mean of items (XPRESS, CellMap) get Δscore and Δrank without items.

    Parameters
    ----------
    board : from :func:`leaderboard` with a ``compare`` version.
    top_k : how many items to name per rank change.

    Returns
    -------
    :class:`gpueval.metrics.impact.ImpactReport` (rows in new-rank order), or None.
    """
    if board.compare is None or board.previous is None:
        return None
    refuge = board.challenge == "refuge"
    metric = item_metric_for(board.challenge, _board_track(board))

    def scores(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if refuge:
            return {r["name"]: r["_metrics"].get("mean_cup_dice") if r["status"] == "ok"
                    else None for r in rows}
        return {r["name"]: r["score"] if r["status"] == "ok" else None for r in rows}

    def items(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
        if metric is None:
            return None
        return {r["name"]: r["_items"] for r in rows if r["status"] == "ok" and r["_items"]}

    def ranks(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {r["name"]: r["rank"] for r in rows}

    kwargs = dict(item_metric=metric, old_ranks=ranks(board.previous),
                  new_ranks=ranks(board.rows), top_k=top_k, old_version=board.compare,
                  new_version=board.metric_version)
    try:
        report = metric_change_impact(scores(board.previous), scores(board.rows),
                                      items(board.previous), items(board.rows), **kwargs)
    except ValueError as e:  # items stored in a shape the report cannot read
        report = metric_change_impact(scores(board.previous), scores(board.rows), **kwargs)
        report.notes.append(f"item contributions left out: {e}")
    if callable(metric):  # MedSegFM's text track: the report (and its JSON) carry a name
        report.item_metric = "f1 (dsc where f1 is undefined: semantic cases)"
    if metric is None:
        report.notes.append(f"{board.challenge}: the score is not a mean of per-case items, so "
                            "no item contributions are given")
    elif not any(r["_items"] for r in (*board.previous, *board.rows)):
        report.notes.append("the stored results carry no per-case items: no item "
                            "contributions")
    if refuge:
        report.notes.insert(0, "refuge: ranks are the final ranking (weights "
                               f"{_weights_text(board.weights['segmentation_weights'])}, "
                               f"{_weights_text(board.weights['final_weights'])}); scores "
                               "and item contributions are mean cup Dice")
    return report


def board_stability(board: Board, *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                    alpha: float = 0.05) -> StabilityReport:
    """Bootstrap rank stability of the board over its stored per-case items.

    :func:`gpueval.metrics.stability.challenge_stability` with the challenge's own rule: the
    ranked submissions' items (U-RISC per-image F, MedSegFM per-case DSC/F1 by the recorded
    track); REFUGE: every scored team in name order (the official table's row order) with
    the board's ranking weights — per-image glaucoma probabilities are not stored, so its
    segmentation board is the one resampled (the report's notes say so). A challenge without
    per-case items in its score (XPRESS, CellMap), or results stored without items, gives an
    unsupported report whose ``message`` says why.

    Parameters
    ----------
    board : from :func:`leaderboard`.
    n_resamples, seed, alpha : as :func:`gpueval.metrics.stability.bootstrap_mean_ranking`.

    Returns
    -------
    :class:`gpueval.metrics.stability.StabilityReport`.
    """
    challenge = board.challenge
    if challenge != "refuge" and challenge not in HEADLINE_ITEM_METRIC:
        return unsupported(challenge)
    if challenge == "refuge":
        rows = sorted((r for r in board.rows if r["status"] == "ok"), key=lambda r: r["name"])
    else:
        rows = [r for r in board.rows if r["rank"] is not None]
    items = {r["name"]: r["_items"] for r in rows if r["_items"]}
    if not items:
        return unsupported(challenge, f"no per-case items stored for the ranked {challenge} "
                                      f"submissions under {board.metric_version}")
    return challenge_stability(challenge, items, n_resamples=n_resamples, seed=seed,
                               alpha=alpha, track=_board_track(board), ranking=board.weights)


def _board_track(board: Board) -> str | None:
    """The MedSegFM track the board's results were scored on (recorded in each result)."""
    return next((r["_track"] for r in board.rows if r.get("_track")), None)


def analyse_board(board: Board, *, stability: bool = False,
                  n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                  top_k: int = 3) -> Board:
    """Attach the impact report (when the board is compared) and, with ``stability``, the
    rank stability to ``board`` (``board.impact``, ``board.stability``), and their HTML
    sections to ``board.sections`` (one page: :func:`write_board_html`). Returns ``board``."""
    from gpueval.board_html import impact_section, stability_section

    board.impact = board_impact(board, top_k=top_k)
    if board.impact is not None:
        board.sections.append((f"What metric version {board.metric_version} did to the "
                               f"ranking under {board.compare}", impact_section(board.impact)))
    if stability:
        board.stability = board_stability(board, n_resamples=n_resamples, seed=seed)
        board.sections.append(("Rank stability", stability_section(board.stability)))
    return board


def format_impact(report: ImpactReport) -> str:
    """Plain-text impact report: τ and ρ, then per submission Δrank, Δscore and, for each rank
    change, the items that contributed most (``item (old → new: contribution)``)."""
    def num(x: Any, digits: int = 4) -> str:
        return "" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"

    head = [f"metric-change impact: {report.old_version} -> {report.new_version} "
            f"({len(report.changed)} of {report.n_compared} submissions ranked under both "
            "changed rank)",
            f"Kendall tau = {num(report.kendall_tau)} (p = {num(report.kendall_pvalue)}), "
            f"Spearman rho = {num(report.spearman_rho)} (p = {num(report.spearman_pvalue)}), "
            f"over {report.n_compared} submissions",
            f"Δrank = old − new (positive: moved up); items: {report.contribution_rule}"
            + (f", item metric {report.item_metric}" if isinstance(report.item_metric, str)
               else "")]
    cols = ["rank", "was", "Δrank", "submission", "old score", "new score", "Δscore",
            "items that contributed most"]
    lines_ = []
    for r in report.rows:
        d = r.delta_rank
        lines_.append([_cell(r.new_rank), _cell(r.old_rank),
                       "" if d is None else ("=" if d == 0 else f"{d:+d}"), r.name,
                       num(r.old_score), num(r.new_score),
                       "" if r.delta_score is None else f"{r.delta_score:+.4f}",
                       "; ".join(f"{c.item} ({num(c.old)} -> {num(c.new)}: "
                                 f"{c.contribution:+.4f})" for c in r.top_items)])
    return "\n".join([*head, "", *_columns(cols, lines_),
                      *(f"note: {n}" for n in report.notes)])


def format_stability(report: StabilityReport) -> str:
    """Plain-text rank stability: each submission's observed and median rank, its interval
    and tied group, then the groups; an unsupported report is its one-line message."""
    if not report.supported:
        return report.message
    cover = round(100 * (1 - report.alpha))
    seed = "explicit resamples" if report.seed is None else f"seed {report.seed}"
    group_of = {n: g + 1 for g, grp in enumerate(report.tied_groups) for n in grp}
    cols = ["rank", "submission", "median", f"{cover}% interval", "group"]
    lines_ = [[str(report.observed_rank[i]), n, str(report.median_rank[i]),
               f"{report.interval[i][0]}-{report.interval[i][1]}", str(group_of.get(n, ""))]
              for i, n in enumerate(report.names)]
    out = [f"rank stability: {report.n_resamples} bootstrap resamples of {report.n_cases} "
           f"cases ({seed}); {report.rule}", "", *_columns(cols, lines_), ""]
    out += [f"tied group {g + 1}: {', '.join(grp)}" for g, grp in enumerate(report.tied_groups)]
    out += [f"note: {n}" for n in report.notes]
    return "\n".join(out)


def _columns(cols: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(cols)]
    return ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip(),
            "  ".join("-" * w for w in widths),
            *("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
              for row in rows)]


def analyses_json(board: Board) -> dict[str, Any]:
    """The board and its analyses as one JSON-ready dict (``gpueval leaderboard --json``):
    ``challenge``, ``metric_version``, ``compare``, ``board`` (:func:`export_rows`),
    ``impact`` (:meth:`ImpactReport.as_dict` or None), ``stability``
    (:meth:`StabilityReport.as_dict` or None)."""
    return to_jsonable({"challenge": board.challenge, "metric_version": board.metric_version,
                        "compare": board.compare, "board": export_rows(board),
                        "impact": board.impact.as_dict() if board.impact else None,
                        "stability": board.stability.as_dict() if board.stability else None})


def export_analyses(board: Board, path: str | Path) -> list[Path]:
    """Write the analyses next to a board export ``path`` (same format): ``<stem>.impact<ext>``
    (one row per submission: ranks, scores, deltas, the top items as text) and
    ``<stem>.stability<ext>`` (observed and median rank, interval, tied group, the fraction of
    resamples at each rank as ``p_rank_<r>``). Only the analyses the board carries (an
    unsupported stability report writes nothing). Returns the paths written."""
    path = Path(path)
    written = []
    if board.impact is not None:
        rows = [{"name": r.name, "new_rank": r.new_rank, "old_rank": r.old_rank,
                 "delta_rank": r.delta_rank, "old_score": r.old_score,
                 "new_score": r.new_score, "delta_score": r.delta_score,
                 "top_items": "; ".join(f"{c.item} ({c.old} -> {c.new}: {c.contribution:+.6g})"
                                        for c in r.top_items)}
                for r in board.impact.rows]
        written.append(_write_table(rows, path.with_name(f"{path.stem}.impact{path.suffix}"),
                                    ("new_rank", "old_rank", "delta_rank")))
    st = board.stability
    if st is not None and st.supported:
        group_of = {n: g + 1 for g, grp in enumerate(st.tied_groups) for n in grp}
        b = max(st.n_resamples, 1)
        rows = [{"name": n, "observed_rank": st.observed_rank[i],
                 "median_rank": st.median_rank[i], "interval_low": st.interval[i][0],
                 "interval_high": st.interval[i][1], "tied_group": group_of.get(n),
                 **{f"p_rank_{k + 1}": float(c) / b for k, c in enumerate(st.rank_counts[i])}}
                for i, n in enumerate(st.names)]
        written.append(_write_table(rows,
                                    path.with_name(f"{path.stem}.stability{path.suffix}"),
                                    ("tied_group",)))
    return written


# ---------------------------------------------------------------------------------------------
# command line (declared in gpueval.cli)


def run_cli(args: Any) -> int:
    """``gpueval rescore``: exit 0 when the batch finished (rejected and failed submissions
    are results), 1 when conflicting results were refused, 4 for unusable truth/config."""
    quiet = getattr(args, "quiet", False)
    echo = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr))
    db_url = args.db or default_url(args.submissions)
    with connect(db_url) as store:
        summary = rescore(
            args.challenge, args.truth, args.submissions, db=store, config=args.config,
            overrides=args.overrides, device=args.device, scheduler=args.scheduler,
            workers=args.workers, force=args.force, timeout=args.timeout,
            memory_limit=getattr(args, "memory_limit", None),
            progress=None if not quiet else False, echo=echo)
        for c in summary.conflicts:
            print(f"gpueval: conflict: {c}", file=sys.stderr)
        for e in summary.errors:
            print(f"gpueval: not recorded: {e}", file=sys.stderr)
        for w in summary.warnings:
            print(f"warning: {w}", file=sys.stderr)
        if not quiet:
            print(summary.line())
            print(f"results: {db_url}")
            for dup, first in summary.duplicates.items():
                print(f"note: {dup} has the same content as {first} (scored once, both "
                      "ranked)")
            for name in summary.revised:
                print(f"note: {name} changed since the last run: a new revision (the old "
                      "one is kept, superseded)")
            for name in summary.withdrawn:
                print(f"note: {name} is no longer in the folder: marked withdrawn")
        if args.export or args.report:
            cfg = load_config(args.challenge, args.config, args.overrides)
            board = leaderboard(store, args.challenge, summary.metric_version,
                                ranking=cfg.get("ranking") or {})
            # under a new metric version the board compares with the one before: its impact
            # report goes into the same exports and page as with `gpueval leaderboard`
            analyse_board(board)
            if args.export:
                export_board(board, args.export)
                export_analyses(board, args.export)
            if args.report:
                write_board_html(board, args.report)
        if getattr(args, "results_dir", None):
            written = export_results(store, args.challenge, summary.metric_version,
                                     args.format, args.results_dir)
            if not quiet:
                print(f"{len(written)} results written to {args.results_dir} ({args.format})")
    return 1 if summary.conflicts else 0


def export_results(store: ResultsDB, challenge: str, metric_version: str, fmt: str,
                   out_dir: str | Path) -> list[Path]:
    """Write the result of every current submission name scored under ``metric_version``
    into ``out_dir`` in platform format ``fmt`` (:mod:`gpueval.formats`), one file per name:
    ``<name>.json`` (``<name>.csv`` for ``medsegfm-csv``). Rejected submissions are skipped:
    a platform format has no place for a rejection (the leaderboard lists them)."""
    check_format(fmt, challenge)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_hash = {r.submission_hash: r for r in store.latest(challenge, metric_version)}
    suffix = ".csv" if fmt == "medsegfm-csv" else ".json"
    written = []
    for row in store.current_names(challenge):
        rec = by_hash.get(row.submission_hash)
        if rec is None or rec.status != "ok":
            continue
        # a name is one folder entry; its escaped form never holds a separator
        path = out / (row.name.replace(os.sep, "_") + suffix)
        write_format(Result.from_dict(rec.result), fmt, path)
        written.append(path)
    return written


def leaderboard_cli(args: Any) -> int:
    """``gpueval leaderboard``: print the ranked table, the metric-change impact (when compared)
    and the rank stability (``--stability``); write ``--export`` (with the analyses beside it),
    ``--html`` (one page) and ``--json``."""
    from gpueval.cli import prepare_output
    from gpueval.db import sqlite_path

    if "://" not in args.db or args.db.startswith("sqlite:"):
        if not sqlite_path(args.db).exists():
            raise UsageError(f"--db {args.db}: no such database file")
    resamples = getattr(args, "resamples", DEFAULT_RESAMPLES)
    if resamples < 1:
        raise UsageError(f"--resamples {resamples}: at least 1")
    top_k = getattr(args, "top_items", 3)
    if top_k < 0:
        raise UsageError(f"--top-items {top_k}: 0 or more")
    for option in ("export", "html", "json"):
        if getattr(args, option, None):
            prepare_output(getattr(args, option), f"--{option}")
    with connect(args.db) as store:
        cfg = load_config(args.challenge, getattr(args, "config", None),
                          getattr(args, "overrides", ()))
        board = leaderboard(store, args.challenge, args.metric_version, args.compare,
                            ranking=cfg.get("ranking") or {})
    analyse_board(board, stability=getattr(args, "stability", False), n_resamples=resamples,
                  seed=getattr(args, "seed", 0), top_k=top_k)
    print(format_board(board))
    if board.impact is not None:
        print()
        print(format_impact(board.impact))
    if board.stability is not None:
        print()
        print(format_stability(board.stability))
    if args.export:
        export_board(board, args.export)
        export_analyses(board, args.export)
    if args.html:
        write_board_html(board, args.html)
    if getattr(args, "json", None):
        tmp = Path(args.json).with_name(Path(args.json).name + ".tmp")
        tmp.write_text(json.dumps(analyses_json(board), indent=1, allow_nan=False) + "\n",
                       encoding="utf-8")
        tmp.replace(args.json)
    return 0
