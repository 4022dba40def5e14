"""Results database: migrations, write rules, content hashes, crash safety, PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import pytest

from gpueval import db as gdb
from gpueval.db import Record, ResultConflict, connect, default_url, migrations, sqlite_path
from gpueval.rescore import content_hash, list_submissions


def make_record(score=0.5, *, status="ok", name="team", sub="s" * 64, version="v1",
                truth="t" * 64, challenge="urisc", error=None, metrics=None) -> Record:
    result = {"challenge": challenge, "metric_version": version, "status": status,
              "error": error, "score": score, "metrics": metrics or {"f1": score},
              "items": [], "runtime": {"seconds": 0.1, "device": "cpu", "voxels": 1}}
    now = gdb.utc_now()
    return Record(challenge, version, sub, truth, name, status, error, score,
                  json.dumps(result), 0.1, "cpu", "0.1.0", "c" * 64, now, now)


# ---------------------------------------------------------------------------------------------
# PostgreSQL: a throw-away cluster on a unix socket when the server binaries are installed


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).exists():
            return str(d / name)
    return None


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory):
    pytest.importorskip("psycopg", reason="psycopg 3 not installed (test extra)")
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    base = tmp_path_factory.mktemp("pg")
    prefix: list[str] = []
    own_base = False
    if os.geteuid() == 0:  # the server refuses to run as root: use the postgres account
        runuser = shutil.which("runuser")
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            pw = None
        if not (runuser and pw):
            pytest.skip("running as root without a 'postgres' account to start the server")
        # pytest's tmp folders are private to root: use a short folder the account can enter
        base, own_base = Path(tempfile.mkdtemp(prefix="gpueval-pg-")), True
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = [runuser, "-u", "postgres", "--"]
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    if own_base:
        os.chown(sock, pw.pw_uid, pw.pw_gid)
    env = dict(os.environ, LC_ALL="C")
    subprocess.run(prefix + [initdb, "-D", str(data), "-U", "gpueval", "-E", "UTF8", "--auth=trust",
                             "--no-sync"], check=True, capture_output=True, env=env)
    opts = f"-k {sock} -c listen_addresses='' -c fsync=off"
    subprocess.run(prefix + [pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "log"),
                             "-w", "start"], check=True, capture_output=True, env=env)
    try:
        yield f"postgresql://gpueval@/postgres?host={sock}"
    finally:
        subprocess.run(prefix + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, env=env)
        if own_base:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/results.sqlite"
    return fresh_pg_database(request.getfixturevalue("pg_url"))


def fresh_pg_database(server_url: str) -> str:
    """URL of a new, empty database on the test server."""
    import psycopg

    name = f"t{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(server_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return server_url.replace("/postgres?", f"/{name}?")


# ---------------------------------------------------------------------------------------------


def test_migrations_ship_inside_the_package():
    files = [p.name for p in resources.files("gpueval.migrations").iterdir()]
    assert {"0001_results.sql", "0002_file_digests.sql"} <= set(files)
    assert [v for v, _, _ in migrations()] == list(range(1, len(migrations()) + 1))


def test_migrate_is_applied_once(url):
    with connect(url) as d:
        assert d.schema_version() == len(migrations())
    with connect(url) as d:  # re-opening applies nothing twice
        assert d.schema_version() == len(migrations())
        rows = d._query("SELECT COUNT(*) FROM schema_version")
        assert rows[0][0] == len(migrations())


def test_an_older_database_is_upgraded_in_place(url):
    with connect(url) as d:
        d.insert(make_record(0.5))
        d._conn.execute("DROP TABLE file_digests")  # as a database made before 0002 looks
        d._conn.execute("DROP TABLE submission_names")
        d._conn.execute("DELETE FROM schema_version WHERE version >= 2")
        assert d.schema_version() == 1
    with connect(url) as d:
        assert d.schema_version() == len(migrations())
        d.store_digests([("/x", 1, 2, 3, 4, "ab" * 32)])
        assert d.cached_digests("/x") == {"/x": (1, 2, 3, 4, "ab" * 32)}
        assert d.count() == 1  # results kept


def test_insert_rules(url):
    with connect(url) as d:
        assert d.insert(make_record(0.5)) == "inserted"
        assert d.insert(make_record(0.5)) == "unchanged"  # same outcome: nothing written
        assert d.count() == 1
        with pytest.raises(ResultConflict, match="--force"):
            d.insert(make_record(0.6))  # never silently overwritten
        assert d.count() == 1
        assert d.insert(make_record(0.6), force=True) == "revised"
        hist = d.history(make_record().key)
        assert [r.revision for r in hist] == [0, 1]
        assert [r.score for r in hist] == [0.5, 0.6]
        assert hist[0].finished_at <= hist[1].finished_at
        latest = d.latest("urisc", "v1")
        assert len(latest) == 1 and latest[0].score == 0.6


def test_failed_results_are_retried_as_new_revisions(url):
    with connect(url) as d:
        d.insert(make_record(None, status="failed", error="exceeded the time limit of 1 s"))
        assert d.insert(make_record(0.7)) == "revised"
        hist = d.history(make_record().key)
        assert [(r.status, r.revision) for r in hist] == [("failed", 0), ("ok", 1)]


def test_latest_filters_and_versions(url):
    with connect(url) as d:
        d.insert(make_record(0.5, sub="a" * 64, version="v1"))
        d.insert(make_record(0.4, sub="b" * 64, version="v1"))
        d.insert(make_record(0.3, sub="a" * 64, version="v2"))
        d.insert(make_record(0.3, sub="a" * 64, version="v2", truth="u" * 64))
        assert d.metric_versions("urisc") == ["v1", "v2"]
        assert len(d.latest("urisc", "v1")) == 2
        assert len(d.latest("urisc", "v2")) == 2
        assert len(d.latest("urisc", "v2", "u" * 64)) == 1
        assert d.latest("refuge") == []


def test_sqlite_urls_and_default_location(tmp_path):
    assert sqlite_path("sqlite:///rel/x.db") == Path("rel/x.db")
    assert sqlite_path("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert sqlite_path(str(tmp_path / "x.db")) == tmp_path / "x.db"
    (tmp_path / "subs").mkdir()
    url = default_url(tmp_path / "subs")
    assert sqlite_path(url) == tmp_path / "subs.gpueval-results.sqlite"  # beside, not inside
    with pytest.raises(gdb.UsageError):
        connect("mysql://x/y")


def test_content_hash(tmp_path):
    a = tmp_path / "a"
    (a / "sub").mkdir(parents=True)
    (a / "sub" / "x.tiff").write_bytes(b"1234")
    (a / "y.tiff").write_bytes(b"5678")
    b = tmp_path / "b"  # same tree, created in another order: same hash
    b.mkdir()
    (b / "y.tiff").write_bytes(b"5678")
    (b / "sub").mkdir()
    (b / "sub" / "x.tiff").write_bytes(b"1234")
    assert content_hash(a) == content_hash(b)
    (b / "y.tiff").write_bytes(b"5679")
    assert content_hash(a) != content_hash(b)
    (b / "y.tiff").write_bytes(b"5678")
    (b / "sub" / "x.tiff").rename(b / "sub" / "z.tiff")  # a renamed member changes the hash
    assert content_hash(a) != content_hash(b)
    f = tmp_path / "y.tiff"
    f.write_bytes(b"5678")
    assert content_hash(f) != content_hash(tmp_path / "a")
    # a file's hash is its content's, whatever its name
    g = tmp_path / "other-name.bin"
    g.write_bytes(b"5678")
    assert content_hash(f) == content_hash(g)
    # a boundary-shifted pair of files must not collide (length-prefixed records)
    c, d = tmp_path / "c", tmp_path / "d"
    c.mkdir(), d.mkdir()
    (c / "p").write_bytes(b"ab")
    (c / "q").write_bytes(b"c")
    (d / "p").write_bytes(b"a")
    (d / "q").write_bytes(b"bc")
    assert content_hash(c) != content_hash(d)


def test_content_hash_does_not_follow_links(tmp_path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"x" * 10)
    s = tmp_path / "s"
    s.mkdir()
    (s / "link").symlink_to(secret)
    h = content_hash(s)
    secret.write_bytes(b"y" * 10)
    assert content_hash(s) == h


def test_list_submissions_skips_hidden_and_databases(tmp_path):
    for n in ("b", "a", ".hidden", "x.gpueval-results.sqlite", "mine.db", "mine.db-wal"):
        (tmp_path / n).write_text("1")
    got = [p.name for p in list_submissions(tmp_path, exclude=[tmp_path / "mine.db"])]
    assert got == ["a", "b"]


_WRITER = r"""
import sys, time
sys.path.insert(0, sys.argv[2])
from test_db import make_record
from gpueval.db import connect
d = connect(sys.argv[1])
i = 0
while True:
    d.insert(make_record(0.5, sub=f"{i:064d}", metrics={"big": "x" * 20000}))
    i += 1
    print(i, flush=True)
"""


def test_sigkill_while_writing_leaves_whole_rows(tmp_path):
    url = f"sqlite:///{tmp_path}/r.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, url, str(Path(__file__).parent)],
                            stdout=subprocess.PIPE, text=True)
    written = 0
    while written < 20:
        line = proc.stdout.readline()
        if not line:
            break
        written = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert written >= 20
    with sqlite3.connect(tmp_path / "r.sqlite") as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with connect(url) as d:
        rows = d.latest("urisc", "v1")
        assert len(rows) >= written  # every reported commit survived
        for r in rows:  # and every row is whole
            assert r.result["metrics"]["big"] == "x" * 20000


def test_a_symlinked_entry_hashes_its_target(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.tiff").write_bytes(b"123")
    (tmp_path / "entry").symlink_to(real)
    before = content_hash(tmp_path / "entry")
    assert before == content_hash(real)
    (real / "a.tiff").write_bytes(b"124")  # the target changed: so does the entry's hash
    assert content_hash(tmp_path / "entry") != before


def test_digest_memo(url, tmp_path):
    sub = tmp_path / "sub"
    (sub / "d").mkdir(parents=True)
    (sub / "d" / "x.tiff").write_bytes(b"x" * 3000)
    (sub / "y.tiff").write_bytes(b"y" * 10)
    (tmp_path / "sub2").mkdir()  # a sibling whose name extends the root's: not under it
    (tmp_path / "sub2" / "z").write_bytes(b"z")
    plain = content_hash(sub)
    with connect(url) as d:
        assert content_hash(sub, d) == plain  # the memo never changes a hash
        content_hash(tmp_path / "sub2", d)
        memo = d.cached_digests(str(sub.resolve()))
        assert sorted(Path(p).name for p in memo) == ["x.tiff", "y.tiff"]
        # the memo is trusted while size, mtimes and inode are unchanged: prove it is used
        # by planting a wrong digest, then see a real change invalidate it
        x = str((sub / "d" / "x.tiff").resolve())
        size, mt, ct, ino, _ = memo[x]
        d.store_digests([(x, size, mt, ct, ino, "00" * 32)])
        assert content_hash(sub, d) != plain
        (sub / "d" / "x.tiff").write_bytes(b"X" * 3000)  # same size, new content
        changed = content_hash(sub, d)
        assert changed == content_hash(sub)
        assert changed != plain


def test_content_hash_never_opens_a_fifo(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    os.mkfifo(sub / "img.tiff")  # opening it would block for ever
    os.mkfifo(tmp_path / "top.tiff")
    code = ("import sys; from gpueval.rescore import content_hash; "
            "print(content_hash(sys.argv[1]), content_hash(sys.argv[2]))")
    done = subprocess.run([sys.executable, "-c", code, str(sub), str(tmp_path / "top.tiff")],
                          timeout=60, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    h_sub, h_top = done.stdout.split()
    (sub / "img.tiff").unlink()
    (sub / "img.tiff").write_bytes(b"")
    assert content_hash(sub) != h_sub  # an empty file is not a FIFO
