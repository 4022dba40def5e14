"""Each zarr chunk is read (and so decoded: gpueval's zarr v2 reader keeps no decoded chunk)
at most once per CellMap instance score on the CPU (issue 18). The arrays are zarr v2, as
participants submit them, opened as ``gpueval score cellmap`` opens them
(:func:`gpueval.io.arrays.open_volume`), and the reads are counted by the reader itself
(:func:`gpueval.io.arrays.observe_chunk_reads`: one call per chunk file read and decoded).

The passes of :func:`gpueval.challenges.cellmap.scoring_2026.instance_delayed`:

1. labelling the prediction (prediction chunks: one read each; the local labels are carried
   on, compressed, in :mod:`gpueval.kernels.throughput_carry`);
2. relabel + overlaps + boxes (truth: one read each, carried on; prediction: from the carry);
3. Hausdorff inputs (truth and prediction from the carry).

So every chunk is read once, whatever the number of instances; before issue 18 the Hausdorff
stage read the hull of every group of instances again (a chunk as often as groups touched
it), and until session 6 passes 2 and 3 read both volumes again (≤ 2 truth, ≤ 3 prediction
reads per chunk). Without the carry (an evicted entry, another worker process) a pass reads
the chunk again: the result is the same, as the last test checks.
"""

from __future__ import annotations

import collections
import contextlib
import threading

import dask.array as da
import numpy as np
import zarr

from gpueval.bench.cellmap import CONSTS, build_crop
from gpueval.challenges.cellmap.scoring_2026 import score_instance
from gpueval.io.arrays import _open_reader, _ZarrV2Reader, observe_chunk_reads, open_volume
from gpueval.limits import resolve


@contextlib.contextmanager
def _counting(root, counts: dict[str, collections.Counter]):
    """Count, per array folder name in ``counts`` (the arrays under ``root``), every chunk
    file gpueval's zarr v2 reader reads and decodes (one decode per read: it keeps no decoded
    chunk) inside the block; reads of anything else in the process are not this test's."""
    lock = threading.Lock()
    mine = {str(root / name): name for name in counts}

    def note(path, key, _nbytes):
        if path in mine:
            with lock:
                counts[mine[path]][key] += 1

    with observe_chunk_reads(note):
        yield


def _record_carry_keys(monkeypatch) -> list:
    """The carry keys this test's graphs store (checked afterwards: all collected). The
    store is process-wide and a graph an earlier test aborted (a rejected label among
    others) may leave entries, or add them late from tasks still running, so the test
    looks only at its own keys, not at the store's length."""
    from gpueval.kernels import throughput_carry

    keys: list = []
    real = throughput_carry.store.put

    def put(key, arrays):
        keys.append(key)
        return real(key, arrays)

    monkeypatch.setattr(throughput_carry.store, "put", put)
    return keys


def _left_in_carry(keys: list) -> list:
    from gpueval.kernels import throughput_carry

    return [k for k in keys if throughput_carry.store.get(k) is not None]


def _open_counted(path) -> da.Array:
    """``path`` as ``gpueval score cellmap`` reads a label (``open_volume``: gpueval's direct
    v2 reader), in dask blocks of the storage chunks so the passes work chunk by chunk."""
    assert type(_open_reader(str(path), None, resolve(None))[0]) is _ZarrV2Reader
    return open_volume(str(path), chunks=(16, 16, 16), finite=False).data


def _write(path, data, chunk):
    a = zarr.create_array(str(path), shape=data.shape, chunks=(chunk,) * 3, dtype=data.dtype,
                          zarr_format=2, fill_value=0)
    a[:] = data


def test_each_chunk_read_once_per_pass(tmp_path):
    # 48³ in 16³ chunks (27 chunks), 60 balls of radius 2-4: many boxes cross chunk borders
    # and many groups of instances share a chunk (the old per-group hull reads re-read them)
    gt, pred = build_crop(48, 60, seed=3)
    _write(tmp_path / "gt", gt, 16)
    _write(tmp_path / "pred", pred, 16)
    counts = {"gt": collections.Counter(), "pred": collections.Counter()}
    g_counts, p_counts = counts["gt"], counts["pred"]
    g = _open_counted(tmp_path / "gt")
    p = _open_counted(tmp_path / "pred")
    with _counting(tmp_path, counts):
        res = score_instance(g, p, (8.0, 8.0, 8.0), CONSTS)
    assert res["status"] == "scored" and res["tp"] > 10
    # (zarr leaves all-zero chunks unwritten: those are never read)
    assert len(g_counts) >= 20 and len(p_counts) >= 20, (g_counts, p_counts)
    assert max(g_counts.values()) == 1, g_counts
    assert max(p_counts.values()) == 1, p_counts
    # the result is the whole-volume (one chunk) scorer's
    ref = score_instance(gt, pred, (8.0, 8.0, 8.0), CONSTS)
    for key in ("tp", "fp", "fn", "n_hausdorff", "hausdorff_norm_sum"):
        assert res[key] == ref[key], key
    np.testing.assert_array_equal(res["_detail"]["hausdorff_per_gt"],
                                  ref["_detail"]["hausdorff_per_gt"])


def test_without_the_carry_the_passes_read_again_and_score_the_same(tmp_path, monkeypatch):
    from gpueval.kernels import throughput_carry

    gt, pred = build_crop(48, 60, seed=3)
    _write(tmp_path / "gt", gt, 16)
    _write(tmp_path / "pred", pred, 16)
    keys = _record_carry_keys(monkeypatch)
    most: dict[int, tuple[int, int]] = {}  # most reads of one (truth, prediction) chunk
    results = {}
    for budget in (throughput_carry.BUDGET_BYTES, 0):  # 0: nothing fits, every pass reads
        monkeypatch.setattr(throughput_carry.store, "budget", budget)
        counts = {"gt": collections.Counter(), "pred": collections.Counter()}
        g = _open_counted(tmp_path / "gt")
        p = _open_counted(tmp_path / "pred")
        with _counting(tmp_path, counts):
            results[budget] = score_instance(g, p, (8.0, 8.0, 8.0), CONSTS)
        most[budget] = max(counts["gt"].values()), max(counts["pred"].values())
    assert most[throughput_carry.BUDGET_BYTES] == (1, 1)
    assert most[0] == (2, 3)  # the reads before session 6: passes 2 and 3 read again
    a, b = results.values()
    for key in ("tp", "fp", "fn", "n_hausdorff", "hausdorff_norm_sum"):
        assert a[key] == b[key], key
    np.testing.assert_array_equal(a["_detail"]["hausdorff_per_gt"],
                                  b["_detail"]["hausdorff_per_gt"])
    assert keys and _left_in_carry(keys) == []  # every entry the graphs left was collected


def test_a_pass_that_misses_the_carry_leaves_its_labels_for_the_next(tmp_path, monkeypatch):
    # as on a dask.distributed cluster where pass 2 of a chunk runs in another process than
    # pass 1: pass 2 reads and labels the chunk itself, and pass 3 (beside it) reuses that
    from gpueval.kernels import components, throughput_carry

    gt, pred = build_crop(48, 60, seed=3)
    _write(tmp_path / "gt", gt, 16)
    _write(tmp_path / "pred", pred, 16)
    real = components.carried_local

    def pass_2_misses(carry, index, *, remove=False):
        if not remove:  # pass 2 asks without removing: pretend pass 1 ran elsewhere
            throughput_carry.store.discard((carry, index))
            return None
        return real(carry, index, remove=remove)

    monkeypatch.setattr(components, "carried_local", pass_2_misses)
    keys = _record_carry_keys(monkeypatch)
    counts = {"gt": collections.Counter(), "pred": collections.Counter()}
    with _counting(tmp_path, counts):
        res = score_instance(_open_counted(tmp_path / "gt"),
                             _open_counted(tmp_path / "pred"), (8.0, 8.0, 8.0), CONSTS)
    assert max(counts["gt"].values()) == 1 and max(counts["pred"].values()) == 2  # not 3
    ref = score_instance(gt, pred, (8.0, 8.0, 8.0), CONSTS)
    for key in ("tp", "fp", "fn", "n_hausdorff", "hausdorff_norm_sum"):
        assert res[key] == ref[key], key
    assert keys and _left_in_carry(keys) == []
