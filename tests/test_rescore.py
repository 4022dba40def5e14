"""``gpueval rescore`` / ``leaderboard`` end to end on the real U-RISC scorer (tiny images)."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import test_db
import tifffile
from PIL import Image

from gpueval import cli
from gpueval.db import connect
from gpueval.rescore import _child_env, rescore

pg_url = test_db.pg_url  # the throw-away PostgreSQL server fixture

SIDE = 64
STEMS = ("a", "b")
BAD = {"sub_05": "wrong size", "sub_11": "missing image", "sub_17": "not a TIFF"}


def _gt(stem: str, side: int = SIDE) -> np.ndarray:
    gt = np.full((side, side), 255, np.uint8)
    gt[::16 if stem == "a" else 10, :] = 0  # membrane well under the 1/6 format limit
    if stem == "a":
        gt[:, ::16] = 0
    return gt


def make_urisc_batch(root, n=20, bad=BAD, side=SIDE):
    """GT folder + ``n`` submission folders; entries named in ``bad`` are broken."""
    gt_dir, subs = root / "gt", root / "subs"
    gt_dir.mkdir(parents=True)
    subs.mkdir()
    for stem in STEMS:
        Image.fromarray(_gt(stem, side)).save(gt_dir / f"{stem}.png")
    rng = np.random.default_rng(7)
    for i in range(n):
        name = f"sub_{i:02d}"
        d = subs / name
        d.mkdir()
        for stem in STEMS:
            pred = _gt(stem, side).copy()
            flip = rng.random(pred.shape) < 0.002 * (i + 1)  # a different F per submission
            pred[flip] = 255 - pred[flip]
            if name in bad and bad[name] == "wrong size":
                pred = pred[:-3]
            if name in bad and bad[name] == "missing image" and stem == "b":
                continue
            if name in bad and bad[name] == "not a TIFF":
                (d / f"{stem}.tiff").write_bytes(b"II*\x00garbage" * 10)
                continue
            tifffile.imwrite(d / f"{stem}.tiff", pred)
    return gt_dir, subs


def _rows(url):
    with connect(url) as d:
        return {r.submission_name: r for r in d.latest("urisc")}


def _score_alone(gt, sub, out):
    """``gpueval score`` on one submission, as a person would run it."""
    rc = cli.main(["score", "urisc", "--truth", str(gt), "--submission", str(sub),
                   "--json", str(out), "--quiet", "--device", "cpu"])
    return rc, json.loads(out.read_text())


def test_local_cluster_with_a_worker_killed_mid_run(tmp_path):
    """20 submissions (3 broken) on a real 2-worker LocalCluster; one worker is SIGKILLed
    after the third result: all 20 are accounted for, equal to `gpueval score` alone."""
    from distributed import Client, LocalCluster

    gt, subs = make_urisc_batch(tmp_path)
    url = f"sqlite:///{tmp_path}/results.sqlite"
    seen, killed, said = [], [], []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        pids = client.run(os.getpid)

        def on_record(rec):
            seen.append(rec.submission_name)
            if len(seen) == 3:
                victim = sorted(pids.values())[0]
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        summary = rescore("urisc", gt, subs, db=url, scheduler=client, device="cpu",
                          progress=False, on_record=on_record, echo=said.append)
        new_pids = client.run(os.getpid)
        # the nanny's worker tuning (MALLOC_TRIM_THRESHOLD_ ...) is not passed to the scorer
        worker_env = client.run(lambda: dict(os.environ))
        child_env = client.submit(_child_env, pure=False).result()
    assert killed and killed[0] not in new_pids.values()  # the worker really died
    assert any("dashboard" in s for s in said)
    assert all("MALLOC_TRIM_THRESHOLD_" in e for e in worker_env.values())
    assert child_env is not None and "MALLOC_TRIM_THRESHOLD_" not in child_env
    assert (summary.ok, summary.rejected, summary.failed) == (17, 3, 0)
    rows = _rows(url)
    assert sorted(rows) == [f"sub_{i:02d}" for i in range(20)]
    assert all(r.revision == 0 for r in rows.values())
    assert "61×64" in rows["sub_05"].error
    assert "missing" in rows["sub_11"].error
    assert "not a readable image" in rows["sub_17"].error
    for name, row in rows.items():
        rc, alone = _score_alone(gt, subs / name, tmp_path / f"{name}.json")
        assert rc == (0 if name not in BAD else 3)
        got = row.result
        for key in ("status", "error", "score", "metrics", "items", "metric_version"):
            assert got[key] == alone[key], (name, key)
        assert row.score == alone["score"]
    # a re-run has nothing left to do
    again = rescore("urisc", gt, subs, db=url, device="cpu", progress=False)
    assert (again.skipped, again.processed) == (20, 0)


def _count(db_file):
    try:
        with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_sigkill_the_whole_command_then_resume(tmp_path):
    N = 24  # 256² images: enough work that the kill lands mid-run even on a fast machine
    gt, subs = make_urisc_batch(tmp_path, n=N, bad={"sub_05": "wrong size"}, side=256)
    db_file = tmp_path / "r.sqlite"
    cmd = [sys.executable, "-m", "gpueval", "rescore", "urisc", "--truth", str(gt),
           "--submissions", str(subs), "--db", f"sqlite:///{db_file}", "--device", "cpu"]
    proc = subprocess.Popen(cmd + ["--quiet"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while _count(db_file) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its scoring children
    proc.wait()
    with sqlite3.connect(db_file) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    before = {n: r.finished_at for n, r in _rows(f"sqlite:///{db_file}").items()}
    assert 2 <= len(before) < N, "the kill should land mid-run"

    board_csv = tmp_path / "board.csv"
    done = subprocess.run(cmd + ["--export", str(board_csv)], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    assert f"{len(before)} already scored" in done.stdout
    rows = _rows(f"sqlite:///{db_file}")
    assert sorted(rows) == [f"sub_{i:02d}" for i in range(N)]
    assert all(r.revision == 0 for r in rows.values())  # nothing scored twice
    assert {n: rows[n].finished_at for n in before} == before  # first run's rows untouched
    assert sum(r.status == "ok" for r in rows.values()) == N - 1
    board = list(csv.DictReader(board_csv.open()))
    assert [b["rank"] for b in board] == [str(i) for i in range(1, N)] + [""]
    assert board[-1]["name"] == "sub_05" and board[-1]["status"] == "rejected"
    scores = [float(b["score"]) for b in board[:N - 1]]
    assert scores == sorted(scores, reverse=True)


def test_rescore_into_postgresql(tmp_path, pg_url):
    url = test_db.fresh_pg_database(pg_url)
    gt, subs = make_urisc_batch(tmp_path, n=4, bad={"sub_02": "missing image"})
    html = tmp_path / "board.html"
    rc = cli.main(["rescore", "urisc", "--truth", str(gt), "--submissions", str(subs),
                   "--db", url, "--device", "cpu", "--quiet", "--report", str(html)])
    assert rc == 0 and html.exists()
    with connect(url) as d:
        rows = {r.submission_name: r for r in d.latest("urisc")}
        assert sorted(rows) == [f"sub_{i:02d}" for i in range(4)]
        assert rows["sub_02"].status == "rejected" and "missing" in rows["sub_02"].error
        _, alone = _score_alone(gt, subs / "sub_03", tmp_path / "alone.json")
        assert rows["sub_03"].score == alone["score"]
        assert rows["sub_03"].result["items"] == alone["items"]
    again = rescore("urisc", gt, subs, db=url, device="cpu", progress=False)
    assert (again.skipped, again.processed) == (4, 0)


def test_default_database_sits_beside_the_submissions(tmp_path, capsys):
    gt, subs = make_urisc_batch(tmp_path, n=2, bad={})
    rc = cli.main(["rescore", "urisc", "--truth", str(gt), "--submissions", str(subs),
                   "--device", "cpu"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "2 scored" in out and "submissions/min" in out
    db_file = tmp_path / "subs.gpueval-results.sqlite"
    assert db_file.exists() and not any(p.name.endswith(".sqlite") for p in subs.iterdir())
    assert cli.main(["leaderboard", "urisc", "--db", f"sqlite:///{db_file}"]) == 0
    assert "sub_00" in capsys.readouterr().out
