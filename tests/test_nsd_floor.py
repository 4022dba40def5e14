"""The MedSegFM NSD decode floor (issue #19): the libdeflate reader decodes the very bytes
``np.load`` does, for compressed and stored members, and ``side_by_side`` reports a second
floor beside the one of record."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from gpueval.bench import floor
from gpueval.bench.medsegfm import floor_scripts


@pytest.mark.parametrize("save", [np.savez_compressed, np.savez])
def test_both_floor_scripts_decode_the_members_bytes(tmp_path, save):
    rng = np.random.default_rng(0)
    gts = rng.integers(0, 4, (5, 7, 9), dtype=np.uint8)
    segs = rng.integers(0, 300, (5, 7, 9)).astype(np.uint16)
    save(tmp_path / "t.npz", gts=gts, spacing=np.ones(3))
    save(tmp_path / "s.npz", segs=segs)
    for script in floor_scripts(tmp_path / "t.npz", tmp_path / "s.npz"):
        ns: dict = {}
        exec(compile(script, "floor", "exec"), ns)  # runs both loads once, then keep `load`
        for name, key, arr in (("t.npz", "gts", gts), ("s.npz", "segs", segs)):
            got = ns["load"]((str(tmp_path / name), key))
            npy = io.BytesIO()
            np.save(npy, arr)
            # libdeflate: the member's bytes (npy header + data); np.load: the array
            assert (bytes(got) == npy.getvalue() if not isinstance(got, np.ndarray)
                    else np.array_equal(got, arr) and got.dtype == arr.dtype)


def test_side_by_side_reports_other_floors():
    rec = floor.side_by_side([sys.executable, "-c", "pass"], "pass", repeat=2,
                             other_floors={"slow": "import time; time.sleep(0.05)"})
    assert len(rec["all_floor_slow_seconds"]) == 2
    assert rec["floor_slow_seconds"] == min(rec["all_floor_slow_seconds"]) >= 0.05
    assert rec["ratio_to_floor_slow"] == rec["seconds"] / rec["floor_slow_seconds"]
    assert rec["ratio_to_floor"] == rec["seconds"] / rec["floor_seconds"]
