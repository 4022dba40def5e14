"""A batch mixing good and hostile submissions: the good ones score, the rest are recorded.

Runs through :func:`gpueval.rescore.rescore` (one child process per submission, results in a
SQLite database); falls back to looping over :func:`gpueval.api.score` where rescore is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import hostile_corpus as hc
import pytest
from test_hostile_e2e import _truncated_pred_tiff, _zip_of, urisc_setup

BAD = {  # submission name -> regex its recorded error must match
    "bad_traversal.zip": "path traversal",
    "bad_bomb.zip": "zip bomb",
    "bad_nested.zip": "nested archives",
    "bad_symlink.zip": "link or special file",
    "bad_truncated.zip": "not a readable zip",
    "bad_overlap.zip": "overlap",
    "bad_link_out": "symbolic link leaving",
    "bad_tiff_truncated": "truncat|corrupt|cannot",
    # issue #24 part 1/5: entries of the folder itself
    "bad_top_link_to_truth": "symbolic link leaving",
    "bad_proc_link": "symbolic link leaving",
    "bad_fifo": "FIFO",
}


def _batch(tmp: Path) -> tuple[Path, Path]:
    truth, good, _ = urisc_setup(tmp)
    subs = tmp / "subs"
    subs.mkdir()
    shutil.copytree(good, subs / "good_folder")
    _zip_of(good, subs / "good_zipped.zip")
    _zip_of(good, subs / "bad_traversal.zip", [("../evil.tiff", b"x")])
    _zip_of(good, subs / "bad_bomb.zip", [("bomb.bin", bytes(40 << 20))])
    _zip_of(good, subs / "bad_nested.zip", [("inner.zip", b"PK\x05\x06" + bytes(18))])
    for name, case in (("bad_symlink.zip", "zip_symlink"), ("bad_truncated.zip",
                                                            "zip_truncated"),
                       ("bad_overlap.zip", "zip_overlap")):
        d = tmp / name
        d.mkdir()
        shutil.move(hc.by_name(case).build(d), subs / name)
    shutil.copytree(good, subs / "bad_link_out")
    (tmp / "secret.tiff").write_bytes((good / "img.tiff").read_bytes())
    (subs / "bad_link_out" / "img.tiff").unlink()
    (subs / "bad_link_out" / "img.tiff").symlink_to(tmp / "secret.tiff")
    shutil.copytree(good, subs / "bad_tiff_truncated")
    (subs / "bad_tiff_truncated" / "img.tiff").unlink()
    _truncated_pred_tiff(subs / "bad_tiff_truncated")
    (subs / "bad_top_link_to_truth").symlink_to(truth, target_is_directory=True)
    (subs / "bad_proc_link").symlink_to("/proc/self/environ")
    os.mkfifo(subs / "bad_fifo")
    # a good submission whose name is not valid UTF-8: scored, stored escaped
    shutil.copytree(good, os.fsdecode(os.fsencode(str(subs)) + b"/good_\xff"))
    return truth, subs


def test_mixed_batch_scores_good_and_records_hostile(tmp_path):
    truth, subs = _batch(tmp_path)
    try:
        from gpueval.rescore import rescore
    except ImportError:
        rescore = None
    if rescore is not None:
        from gpueval.db import connect

        url = f"sqlite:///{tmp_path / 'results.sqlite'}"
        summary = rescore("urisc", truth, subs, db=url, device="cpu", progress=False,
                          timeout=120, echo=lambda s: None)
        with connect(url) as db:
            by_hash = {r.submission_hash: (r.status, r.error, r.score)
                       for r in db.latest("urisc")}
            rows = {n.name: by_hash[n.submission_hash] for n in db.current_names("urisc")}
        assert (summary.ok, summary.rejected, summary.failed) == (2, len(BAD), 0), rows
        assert not summary.errors
        # the same bytes as good_folder: scored once, but the name has its own row
        assert summary.duplicates == {"good_\\xff": "good_folder"}
        assert rows["good_\\xff"][:2] == ("ok", None) and rows["good_\\xff"][2] == 1.0
        for _status, error, _ in rows.values():
            assert error is None or str(tmp_path) not in error  # no server path shown
        # a resume finds every verdict recorded: nothing raises, nothing is re-scored
        again = rescore("urisc", truth, subs, db=url, device="cpu", progress=False,
                        timeout=120, echo=lambda s: None)
        assert (again.ok, again.rejected, again.failed) == (0, 0, 0)
        assert again.skipped == 2 + len(BAD)
    else:  # pragma: no cover - rescore has landed
        from gpueval.api import score

        rows = {}
        for p in sorted(subs.iterdir()):
            r = score("urisc", truth, p, device="cpu")
            rows[p.name] = (r.status, r.error, r.score)
    assert rows["good_folder"][0] == "ok" and rows["good_zipped.zip"][0] == "ok"
    assert rows["good_folder"][2] == rows["good_zipped.zip"][2] == 1.0  # the perfect case
    for name, expect in BAD.items():
        status, error, score = rows[name]
        assert status == "rejected" and score is None, (name, status, error)
        assert __import__("re").search(expect, error), (name, error)


def test_rescore_hashing_does_not_hang_on_a_fifo(tmp_path):
    """A FIFO inside a folder submission must not block the batch (content_hash once did)."""
    sub = tmp_path / "sub"
    sub.mkdir()
    os.mkfifo(sub / "img.tiff")
    code = textwrap.dedent(f"""
        from gpueval.rescore import content_hash
        try:
            print(content_hash({str(sub)!r}))
        except Exception as e:
            print(type(e).__name__, e)
    """)
    try:
        done = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True,
                              text=True)
    except subprocess.TimeoutExpired:
        pytest.fail("content_hash blocked on a FIFO for 60 s")
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
