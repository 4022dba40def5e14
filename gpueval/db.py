"""The results database of ``gpueval rescore``: SQLite by default, PostgreSQL by URL.

URLs
----
* ``sqlite:///relative/path.sqlite``, ``sqlite:////absolute/path.sqlite`` (SQLAlchemy's
  convention: three slashes then the path), or a plain file path: an embedded SQLite file
  (WAL journal, so readers such as ``gpueval leaderboard`` never block a running batch).
* ``postgresql://user@host/dbname`` (or ``postgres://``, any libpq URL or ``host=`` query such
  as ``postgresql:///db?host=/socket/dir``): PostgreSQL through psycopg 3, imported only then
  (``pip install "psycopg[binary]"``).

Schema
------
Gpueval's own, created and upgraded by the numbered SQL files in :mod:`gpueval.migrations`
(applied in order, each in one transaction with its ``schema_version`` row; concurrent openers
serialise on a lock, so two batches starting at once migrate once). One table, ``results``,
keyed by ``(challenge, metric_version, submission_hash, truth_hash, revision)``; and
``file_digests``, a memo of per-file sha256 digests (valid while size, mtime, ctime and inode
are unchanged) so that resuming a batch does not re-read terabytes of submissions;
``submission_names``, which content each name of the submissions folder holds, with every
revision kept (``current``, ``superseded`` when the file changed, ``withdrawn`` when it left the
folder): ``results`` is a cache by content, the names are the teams.

Write rules
-----------
Each result is inserted in its own transaction (a killed process leaves whole rows or none).
Rows of ``results`` are never updated nor deleted (``submission_names`` rows only change
state). :meth:`ResultsDB.insert` for a key that already has a row:

* the latest row ``failed`` (timeout, crash, memory: not the submission's verdict): the new
  result is added as the next revision (a retry; the failure is kept);
* same outcome (status, error, score, metrics, items) and no ``force``: nothing written;
* a different outcome and no ``force``: :class:`ResultConflict` (never silently overwritten);
* ``force``: added as the next revision (both kept, with their timestamps).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gpueval.errors import GpuevalError, UsageError
from gpueval.result import to_jsonable

COLUMNS = ("challenge", "metric_version", "submission_hash", "truth_hash", "revision",
           "submission_name", "status", "error", "score", "result_json", "runtime_seconds",
           "device", "gpueval_version", "config_hash", "started_at", "finished_at")
NAME_COLUMNS = ("challenge", "name", "revision", "submission_hash", "state", "first_seen",
                "state_changed_at")
_PG_LOCK_ID = 0x67707565  # advisory lock serialising migrations ("gpue")


class ResultConflict(GpuevalError):
    """A different result for a key that already holds one (re-run with ``--force``)."""

    exit_code = 1


@dataclass
class Record:
    """One row of ``results`` (see ``gpueval/migrations/0001_results.sql``)."""

    challenge: str
    metric_version: str
    submission_hash: str
    truth_hash: str
    submission_name: str
    status: str
    error: str | None
    score: float | None
    result_json: str
    runtime_seconds: float | None
    device: str | None
    gpueval_version: str
    config_hash: str
    started_at: str
    finished_at: str
    revision: int = 0

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.challenge, self.metric_version, self.submission_hash, self.truth_hash)

    @property
    def result(self) -> dict[str, Any]:
        return json.loads(self.result_json)

    def outcome(self) -> str:
        """Canonical text of what the metric said (no timings, no provenance)."""
        r = self.result
        keep = {k: r.get(k) for k in ("status", "error", "score", "metrics", "items")}
        return json.dumps(keep, sort_keys=True, allow_nan=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Record:
        d = dict(zip(COLUMNS, row, strict=True))
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass
class NameRow:
    """One revision of a submission name (``gpueval/migrations/0003_submission_names.sql``)."""

    challenge: str
    name: str
    revision: int
    submission_hash: str
    state: str
    first_seen: str
    state_changed_at: str


def utc_now() -> str:
    """ISO-8601 UTC with microseconds (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def default_url(submissions: str | Path) -> str:
    """The SQLite file beside the submissions folder: ``<DIR>.gpueval-results.sqlite``.

    Beside, not inside: the folder's every entry is a submission, and it may be read-only.
    """
    d = Path(submissions).resolve()
    return "sqlite:///" + str(d.parent / f"{d.name}.gpueval-results.sqlite")


def connect(url: str | Path) -> ResultsDB:
    """Open (creating and migrating as needed) the results database at ``url``."""
    db = ResultsDB(str(url))
    db.migrate()
    return db


class ResultsDB:
    """A connection to the results database; safe to share between threads of one process."""

    def __init__(self, url: str):
        self.url = url
        self._lock = threading.RLock()
        scheme = urlsplit(url).scheme.lower() if "://" in url else ""
        if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
            self.dialect = "postgresql"
            self._conn = _connect_pg(url)
        elif scheme in ("sqlite", ""):
            self.dialect = "sqlite"
            self.path = sqlite_path(url)
            self._conn = _connect_sqlite(self.path)
        else:
            raise UsageError(f"--db {url}: unsupported scheme {scheme!r}; use sqlite:///PATH "
                             "or postgresql://...")

    # -- plumbing --------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResultsDB:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            cur = self._conn.execute(self._sql(sql), tuple(params))
            return list(cur.fetchall())

    @contextmanager
    def transaction(self, *, lock_results: bool = False) -> Iterator[Any]:
        """One transaction; writers are serialised (SQLite ``BEGIN IMMEDIATE``, PostgreSQL a
        table lock when ``lock_results``) so a read-then-insert is atomic."""
        with self._lock:
            c = self._conn
            if self.dialect == "sqlite":
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield c
                except BaseException:
                    c.execute("ROLLBACK")
                    raise
                c.execute("COMMIT")
            else:
                with c.transaction():
                    if lock_results:
                        c.execute("LOCK TABLE results IN SHARE ROW EXCLUSIVE MODE")
                    yield c

    # -- schema ----------------------------------------------------------------------------

    def schema_version(self) -> int:
        self._ensure_version_table()
        rows = self._query("SELECT MAX(version) FROM schema_version")
        return int(rows[0][0] or 0)

    def _ensure_version_table(self) -> None:
        with self._lock:
            self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version ("
                               "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                               "applied_at TEXT NOT NULL)")

    def migrate(self) -> int:
        """Apply the migrations not yet applied, in order; return the schema version."""
        try:
            self._ensure_version_table()
        except Exception:
            if self.dialect != "postgresql":
                raise
            # two concurrent CREATE ... IF NOT EXISTS on PostgreSQL: the loser errors; retry
            self._ensure_version_table()
        for version, name, sql in migrations():
            with self.transaction() as c:
                if self.dialect == "postgresql":
                    c.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_ID,))
                done = c.execute(self._sql("SELECT 1 FROM schema_version WHERE version = ?"),
                                 (version,)).fetchall()
                if done:
                    continue
                for stmt in split_sql(sql):
                    c.execute(stmt)
                c.execute(self._sql("INSERT INTO schema_version (version, name, applied_at) "
                                    "VALUES (?, ?, ?)"), (version, name, utc_now()))
        return self.schema_version()

    # -- results ---------------------------------------------------------------------------

    def latest(self, challenge: str, metric_version: str | None = None,
               truth_hash: str | None = None) -> list[Record]:
        """The latest revision of every key (optionally of one version / one truth)."""
        where, params = ["challenge = ?"], [challenge]
        if metric_version is not None:
            where.append("metric_version = ?")
            params.append(metric_version)
        if truth_hash is not None:
            where.append("truth_hash = ?")
            params.append(truth_hash)
        cond = " AND ".join(where)
        cond_r = " AND ".join("r." + w for w in where)
        sql = (f"SELECT {', '.join('r.' + c for c in COLUMNS)} FROM results r JOIN ("
               "SELECT challenge, metric_version, submission_hash, truth_hash, "
               f"MAX(revision) AS revision FROM results WHERE {cond} GROUP BY challenge, "
               "metric_version, submission_hash, truth_hash) m ON r.challenge = m.challenge "
               "AND r.metric_version = m.metric_version AND r.submission_hash = "
               "m.submission_hash AND r.truth_hash = m.truth_hash AND r.revision = m.revision "
               f"WHERE {cond_r} ORDER BY r.finished_at, r.submission_name")
        return [Record.from_row(r) for r in self._query(sql, params + params)]

    def history(self, key: tuple[str, str, str, str]) -> list[Record]:
        """Every revision recorded for one key, oldest first."""
        sql = (f"SELECT {', '.join(COLUMNS)} FROM results WHERE challenge = ? AND "
               "metric_version = ? AND submission_hash = ? AND truth_hash = ? ORDER BY revision")
        return [Record.from_row(r) for r in self._query(sql, key)]

    def count(self, challenge: str | None = None) -> int:
        if challenge is None:
            return int(self._query("SELECT COUNT(*) FROM results")[0][0])
        return int(self._query("SELECT COUNT(*) FROM results WHERE challenge = ?",
                               (challenge,))[0][0])

    def metric_versions(self, challenge: str) -> list[str]:
        """Metric versions of ``challenge``, oldest first (by their first result)."""
        rows = self._query("SELECT metric_version, MIN(finished_at) FROM results WHERE "
                           "challenge = ? GROUP BY metric_version ORDER BY 2", (challenge,))
        return [r[0] for r in rows]

    def insert(self, rec: Record, *, force: bool = False) -> str:
        """Insert ``rec`` under the rules of the module docstring, in one transaction.

        Returns
        -------
        ``"inserted"`` (first result of the key), ``"revised"`` (added as a new revision) or
        ``"unchanged"`` (same outcome already recorded; nothing written).

        Raises
        ------
        ResultConflict : a different outcome is recorded for the key and ``force`` is false.
        """
        with self.transaction(lock_results=True) as c:
            cur = c.execute(self._sql(
                f"SELECT {', '.join(COLUMNS)} FROM results WHERE challenge = ? AND "
                "metric_version = ? AND submission_hash = ? AND truth_hash = ? "
                "ORDER BY revision DESC LIMIT 1"), rec.key)
            row = cur.fetchone()
            outcome = "inserted"
            rec.revision = 0
            if row is not None:
                last = Record.from_row(row)
                if not force and last.status != "failed":
                    if last.outcome() == rec.outcome():
                        return "unchanged"
                    raise ResultConflict(
                        f"{rec.submission_name}: a different result is already recorded for "
                        f"{rec.challenge} {rec.metric_version} (revision {last.revision}, "
                        f"{last.finished_at}); re-run with --force to keep both")
                rec.revision = last.revision + 1
                outcome = "revised"
            values = [getattr(rec, col) for col in COLUMNS]
            c.execute(self._sql(f"INSERT INTO results ({', '.join(COLUMNS)}) VALUES "
                                f"({', '.join('?' * len(COLUMNS))})"), values)
        return outcome


    # -- submission identity (migration 0003) ----------------------------------------------

    def names(self, challenge: str, *, states: Sequence[str] | None = None) -> list[NameRow]:
        """Revisions of the submission names of ``challenge`` (optionally only those in
        ``states``), by name then revision."""
        sql = f"SELECT {', '.join(NAME_COLUMNS)} FROM submission_names WHERE challenge = ?"
        params: list[Any] = [challenge]
        if states:
            sql += f" AND state IN ({', '.join('?' * len(states))})"
            params += list(states)
        rows = self._query(sql + " ORDER BY name, revision", params)
        return [NameRow(*r) for r in rows]

    def current_names(self, challenge: str) -> list[NameRow]:
        """The current revision of every name that is in the folder (not withdrawn)."""
        return self.names(challenge, states=("current",))

    def record_name(self, challenge: str, name: str, submission_hash: str) -> str:
        """Say that ``name`` holds ``submission_hash`` now (one transaction).

        Returns
        -------
        ``"same"`` (already its current content: nothing written), ``"new"`` (a name never
        seen, or seen only withdrawn: a new current revision) or ``"revised"`` (the name's
        content changed: the previous revision is marked ``superseded``, the new one added).
        """
        with self.transaction() as c:
            return self._record_name(c, challenge, name, submission_hash, utc_now())

    def record_names(self, challenge: str,
                     pairs: Sequence[tuple[str, str]]) -> dict[str, str]:
        """:meth:`record_name` for many ``(name, submission_hash)`` pairs in one transaction
        (a batch's first run records every name: one commit, not one per name). All or
        nothing: on an error, nothing is written."""
        now = utc_now()
        out: dict[str, str] = {}
        with self.transaction() as c:
            for name, submission_hash in pairs:
                out[name] = self._record_name(c, challenge, name, submission_hash, now)
        return out

    def _record_name(self, c: Any, challenge: str, name: str, submission_hash: str,
                     now: str) -> str:
        """One name's :meth:`record_name`, inside the caller's transaction ``c``."""
        row = c.execute(self._sql(
            "SELECT revision, submission_hash, state FROM submission_names WHERE "
            "challenge = ? AND name = ? ORDER BY revision DESC LIMIT 1"),
            (challenge, name)).fetchone()
        if row is not None and row[2] == "current" and row[1] == submission_hash:
            return "same"
        revision = 0 if row is None else int(row[0]) + 1
        outcome = "revised" if row is not None and row[2] == "current" else "new"
        if outcome == "revised":
            c.execute(self._sql(
                "UPDATE submission_names SET state = 'superseded', state_changed_at = ? "
                "WHERE challenge = ? AND name = ? AND revision = ?"),
                (now, challenge, name, int(row[0])))
        c.execute(self._sql(
            f"INSERT INTO submission_names ({', '.join(NAME_COLUMNS)}) VALUES "
            f"({', '.join('?' * len(NAME_COLUMNS))})"),
            (challenge, name, revision, submission_hash, "current", now, now))
        return outcome

    def withdraw_name(self, challenge: str, name: str) -> bool:
        """Mark the current revision of ``name`` withdrawn (its file left the folder); the
        row is kept. Returns whether there was a current revision."""
        with self.transaction() as c:
            cur = c.execute(self._sql(
                "UPDATE submission_names SET state = 'withdrawn', state_changed_at = ? "
                "WHERE challenge = ? AND name = ? AND state = 'current'"),
                (utc_now(), challenge, name))
            return bool(cur.rowcount)

    # -- file digest memo (migration 0002) -------------------------------------------------

    def cached_digests(self, root: str) -> dict[str, tuple[int, int, int, int, str]]:
        """``{path: (size, mtime_ns, ctime_ns, inode, sha256)}`` for ``root`` and below."""
        rows = self._query("SELECT path, size, mtime_ns, ctime_ns, inode, sha256 FROM "
                           "file_digests WHERE path = ? OR (path >= ? AND path < ?)",
                           (root, root + "/", root + "0"))  # "0" follows "/" in ASCII
        return {r[0]: (int(r[1]), int(r[2]), int(r[3]), int(r[4]), r[5]) for r in rows}

    def store_digests(self, rows: Sequence[tuple[str, int, int, int, int, str]]) -> None:
        """Remember ``(path, size, mtime_ns, ctime_ns, inode, sha256)`` rows (one
        transaction)."""
        now = utc_now()
        sql = self._sql("INSERT INTO file_digests (path, size, mtime_ns, ctime_ns, inode, "
                        "sha256, hashed_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO "
                        "UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
                        "ctime_ns = excluded.ctime_ns, inode = excluded.inode, "
                        "sha256 = excluded.sha256, hashed_at = excluded.hashed_at")
        with self.transaction() as c:
            for row in rows:
                c.execute(sql, (*row, now))


# ---------------------------------------------------------------------------------------------
# migrations


def migrations() -> list[tuple[int, str, str]]:
    """``(version, name, sql)`` of every file in :mod:`gpueval.migrations`, in order."""
    out = []
    for entry in resources.files("gpueval.migrations").iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        num, _, rest = name.partition("_")
        if not num.isdigit():
            raise RuntimeError(f"migration file {name} must be named NNNN_<name>.sql")
        out.append((int(num), rest.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    out.sort()
    versions = [v for v, _, _ in out]
    if versions != list(range(1, len(out) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return out


def split_sql(script: str) -> list[str]:
    """Statements of a migration file: ``--`` comments removed, split on ``;``.

    Migration files hold no string literal containing ``;`` or ``--`` (kept simple on purpose).
    """
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


# ---------------------------------------------------------------------------------------------
# connections


def sqlite_path(url: str) -> Path:
    """File of a ``sqlite:///PATH`` URL (or a plain path)."""
    if "://" not in url:
        return Path(url)
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        raise UsageError(f"--db {url}: write sqlite:///relative/file or sqlite:////abs/file")
    return Path(rest[1:])


def _connect_sqlite(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # autocommit mode (isolation_level=None): transactions are explicit BEGIN ... COMMIT
    conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a committed row survives even a power cut
    conn.execute("PRAGMA busy_timeout=60000")
    return conn


def _connect_pg(url: str):
    try:
        import psycopg
    except ImportError as e:
        raise UsageError(f"--db {url}: PostgreSQL needs psycopg 3 "
                         "(pip install 'psycopg[binary]')") from e
    if url.startswith("postgresql+"):
        url = "postgresql://" + url.split("://", 1)[1]
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.Error as e:
        raise UsageError(f"--db {url}: cannot connect: {' '.join(str(e).split())}") from e
    # text comes back as str even from an SQL_ASCII database (psycopg returns bytes there)
    conn.execute("SET client_encoding TO 'UTF8'")
    return conn


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the resolved configuration (``variants`` dropped: only the applied one
    matters), as canonical JSON."""
    cfg = {k: v for k, v in config.items() if k != "variants"}
    text = json.dumps(to_jsonable(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
