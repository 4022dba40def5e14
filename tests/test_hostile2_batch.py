"""Issue #24's batch rule for the readers' hostile cases: an XPRESS ``rescore`` folder holding
every file-shaped case of ``tests/hostile2_cases.py`` (links leaving the file, decompression
bombs, special files, corrupt chunks) next to good submissions records each bad one as rejected
with its reason and scores the good ones exactly as a batch of the good ones alone."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import hostile2_cases as h2
import pytest
from xpress_cases import write_case

from gpueval.db import connect
from gpueval.rescore import rescore

#: cases whose input is an XPRESS-shaped submission (an .h5 or .zarr holding `submission`)
XPRESS_CASES = [c for c in h2.CASES if c.reader == "volume" and c.dataset == "submission"]


def _run(subs: Path, truth: Path, overrides: dict, db: Path) -> dict:
    url = f"sqlite:///{db}"
    summary = rescore("xpress", truth, subs, db=url, overrides=overrides, device="cpu",
                      progress=False, timeout=300, echo=lambda s: None)
    assert not summary.errors
    with connect(url) as store:
        by_hash = {r.submission_hash: r for r in store.latest("xpress")}
        return {n.name: by_hash[n.submission_hash] for n in store.current_names("xpress")}


@pytest.mark.slow
def test_xpress_batch_with_every_hostile_reader_case(tmp_path):
    assert len(XPRESS_CASES) >= 8  # links, bombs and broken files, not an empty sweep
    clean, mixed = tmp_path / "clean", tmp_path / "mixed"
    clean.mkdir()
    mixed.mkdir()
    skel, good_h5, ov = write_case(tmp_path, "merge", "h5")
    _, good_zarr, _ = write_case(tmp_path, "merge", "zarr")
    for folder in (clean, mixed):
        shutil.copy(good_h5, folder / "good.h5")
        shutil.copytree(good_zarr, folder / "good.zarr")
    words = {}
    for case in XPRESS_CASES:
        work = tmp_path / "build" / case.name
        work.mkdir(parents=True)
        path, expect = case.build(work)
        entry = mixed / f"{case.name}{''.join(Path(path).suffixes) or '.h5'}"
        if Path(path).is_dir():
            shutil.copytree(path, entry, symlinks=True)
        else:
            shutil.move(path, entry)
            for sibling in work.iterdir():  # an external link's target stays beside it
                shutil.move(sibling, mixed.parent / "build" / sibling.name)
        words[entry.name] = expect

    clean_rows = _run(clean, skel, ov, tmp_path / "clean.sqlite")
    rows = _run(mixed, skel, ov, tmp_path / "mixed.sqlite")

    for name in ("good.h5", "good.zarr"):
        assert rows[name].status == "ok"
        assert rows[name].result["metrics"] == clean_rows[name].result["metrics"]
        assert rows[name].score == clean_rows[name].score
    for name in words:
        rec = rows[name]
        assert rec.status == "rejected", (name, rec.status, rec.error)
        assert rec.error and "\n" not in rec.error and str(tmp_path) not in rec.error
        assert rec.error.startswith(name), (name, rec.error)  # named as the organiser sees it
        # the reader's own reason, with the file name the case was built under taken off
        reason = re.sub(r"^\^?[\w-]+\\\.(h5|zarr)", "", words[name])
        assert re.search(reason, rec.error), (name, rec.error, reason)
