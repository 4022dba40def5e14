"""MedSegFM npz cases scanned while they are decoded (issue #19, session 7).

``load_npz_array(on_slices=...)`` reports the slices it has filled; ``resident.SlabFeed``
feeds them to a ``nsd_scan.VolumeScanner``, the prediction's with its classes as a future
(known once the truth is read). The scans must equal ``scan_volume`` of the whole arrays,
whatever the piece size, the order in which the classes arrive or the raw-corner budget,
and the scores must equal those of the path that scans after decoding. Since session 8 a
stored or deflated member (what ``np.savez*`` writes) is decoded whole by libdeflate and
reported once; the slice-by-slice tests write bzip2 members, which still stream.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from gpueval.challenges.medsegfm import resident
from gpueval.config import load_config
from gpueval.errors import Rejected, TruthError
from gpueval.io import arrays
from gpueval.io.arrays import load_npz_array
from gpueval.kernels import nsd_scan
from gpueval.kernels.nsd_scan import scan_volume


def _canon(scan):
    out = {}
    for lab, pts in scan.surfaces.items():
        order = np.lexsort(pts.coords.T[::-1])
        out[lab] = (pts.coords[order].tolist(), pts.codes[order].tolist())
    return out, scan.row_keys.tolist(), scan.after.tolist(), scan.labels.tolist()


def _blobs(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    vol = np.zeros(shape, np.int64)
    for lab in (1, 2, 3):
        lo = [int(rng.integers(0, n)) for n in shape]
        hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, shape, strict=True)]
        vol[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = lab
    vol[0, 0, 0] = 2  # a stray voxel in a corner
    return vol.astype(dtype)


def _save_streamed(path: Path, v: np.ndarray) -> None:
    """An npz whose member ``v`` is bzip2-compressed: zipfile's streaming reader fills it."""
    npy = io.BytesIO()
    np.save(npy, v)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as z:
        z.writestr("v.npy", npy.getvalue())


@pytest.mark.parametrize("fortran", [False, True])
def test_on_slices_reports_whole_filled_slices(tmp_path, monkeypatch, fortran):
    vol = _blobs((7, 5, 6), np.uint16, 1)
    if fortran:
        vol = np.asfortranarray(vol)
    _save_streamed(tmp_path / "v.npz", vol)
    monkeypatch.setattr(arrays, "READ_PIECE_BYTES", 50)  # 60-byte slices: pieces cut them
    calls = []

    def seen(arr, n):
        assert arr.shape == vol.shape
        calls.append((n, arr[:n].copy()))

    got = load_npz_array(tmp_path / "v.npz", "v", on_slices=seen)
    assert np.array_equal(got, vol)
    counts = [n for n, _ in calls]
    assert counts == sorted(counts) and counts[-1] == vol.shape[0]
    if fortran:
        assert counts == [vol.shape[0]]  # not filled slice by slice: reported once, whole
    else:
        assert len(set(counts)) > 3  # slice by slice
    for n, head in calls:  # what was reported as filled is the final data
        assert np.array_equal(head, vol[:n])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.uint64, bool])
@pytest.mark.parametrize("budget", [0, 1 << 30])
def test_fed_scan_equals_scan_volume(tmp_path, monkeypatch, dtype, budget):
    vol = _blobs((9, 6, 13), np.int64, 2)
    vol = (vol > 0) if dtype is bool else vol.astype(dtype)
    labels = [1] if dtype is bool else [1, 2, 3]
    _save_streamed(tmp_path / "v.npz", vol)
    monkeypatch.setattr(arrays, "READ_PIECE_BYTES", 64)
    monkeypatch.setattr(nsd_scan, "RAW_BUDGET_BYTES", budget)  # 0: waits for the labels
    classes: Future = Future()
    feed = resident.SlabFeed(classes)
    # the labels arrive from another thread while the reader may be waiting for them
    timer = threading.Timer(0.05, classes.set_result, (labels,))
    timer.start()
    got = load_npz_array(tmp_path / "v.npz", "v", on_slices=feed)
    timer.join()
    streamed = feed.scan(got)
    assert streamed is not None
    assert _canon(streamed) == _canon(scan_volume(vol, labels, slab=3))
    every = resident.SlabFeed()  # the truth's: every non-zero label
    again = load_npz_array(tmp_path / "v.npz", "v", on_slices=every)
    assert _canon(every.scan(again)) == _canon(scan_volume(vol, None))


def test_feed_declines_what_the_scan_does_not_take():
    feed = resident.SlabFeed()
    floats = np.zeros((2, 3, 4), np.float32)
    feed(floats, 2)
    assert feed.scan(floats) is None
    ints = np.zeros((2, 3, 4), np.uint8)
    other = resident.SlabFeed()
    other(ints, 2)
    assert other.scan(ints.copy()) is None  # the reader returned another array


def _case(tmp_path: Path, gts, segs, spacing=(2.5, 0.8, 0.8)) -> tuple[Path, Path]:
    truth, sub = tmp_path / "truth", tmp_path / "sub"
    truth.mkdir(exist_ok=True)
    sub.mkdir(exist_ok=True)
    np.savez_compressed(truth / "c.npz", gts=gts, spacing=np.array(spacing))
    np.savez_compressed(sub / "c.npz", segs=segs)
    return truth, sub


def _json(result) -> dict:
    doc = json.loads(result.to_json())
    doc.pop("runtime", None)
    return doc


def test_streamed_score_equals_scan_after_decoding(tmp_path, monkeypatch):
    from gpueval.bench.medsegfm import organ_case
    from gpueval.challenges import medsegfm as M

    gts, segs = organ_case((20, 28, 36), seed=4)
    truth, sub = _case(tmp_path, gts, segs)
    cfg = load_config("medsegfm")
    monkeypatch.setattr(arrays, "READ_PIECE_BYTES", 3000)  # ~3 slices a piece
    scanned = []
    original = resident.SlabFeed.scan

    def spy(self, volume):
        scanned.append(original(self, volume))
        return scanned[-1]

    monkeypatch.setattr(resident.SlabFeed, "scan", spy)
    streamed = M.score(truth, sub, cfg)
    assert len(scanned) == 2 and all(s is not None for s in scanned)  # truth and prediction
    monkeypatch.setattr(resident, "streams", lambda ctx: False)
    after = M.score(truth, sub, cfg)
    assert _json(streamed) == _json(after)
    assert streamed.items[0]["dsc"] < 1  # a real case, not an empty one


def test_streamed_scan_error_is_raised_not_a_rejection(tmp_path, monkeypatch):
    from gpueval.challenges import medsegfm as M

    gts = np.zeros((4, 5, 6), np.uint8)
    gts[1:3, 1:4, 2:5] = 1
    truth, sub = _case(tmp_path, gts, gts)

    def broken(self, vol, filled):
        raise RuntimeError("scan bug")

    monkeypatch.setattr(nsd_scan.VolumeScanner, "feed", broken)
    with pytest.raises(RuntimeError, match="scan bug"):
        M.score(truth, sub, load_config("medsegfm"))


def test_streamed_negative_truth_labels_refused(tmp_path):
    from gpueval.challenges import medsegfm as M

    gts = np.zeros((3, 4, 5), np.int32)
    gts[0, 0, 0] = -1  # official: the first label (-1) is dropped, 0 becomes a class
    gts[1:3, 1:3, 1:4] = 1
    truth, sub = _case(tmp_path, gts, gts)
    with pytest.raises(TruthError, match="must not be negative"):
        M.score(truth, sub, load_config("medsegfm"))


def test_streamed_float_prediction_scored_as_labels(tmp_path):
    from gpueval.challenges import medsegfm as M

    gts = np.zeros((4, 6, 7), np.uint8)
    gts[1:3, 1:5, 2:6] = 1
    segs = np.roll(gts, 1, axis=2)
    truth, sub = _case(tmp_path, gts, segs)
    ints = M.score(truth, sub, load_config("medsegfm"))
    np.savez_compressed(sub / "c.npz", segs=segs.astype(np.float32))  # whole-number floats
    floats = M.score(truth, sub, load_config("medsegfm"))
    assert _json(floats) == _json(ints)
    np.savez_compressed(sub / "c.npz", segs=segs.astype(np.float32) + 0.5)
    with pytest.raises(Rejected, match="integer labels"):
        M.score(truth, sub, load_config("medsegfm"))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int32, np.uint64, bool])
def test_truth_ids_from_transitions_equal_unique(dtype):
    rng = np.random.default_rng(3)
    for trial in range(60):
        shape = tuple(int(v) for v in rng.integers(1, 6, 3))
        fill = rng.random()
        vol = np.where(rng.random(shape) < fill, rng.integers(-2 if dtype in (np.int8, np.int32)
                                                              else 1, 4, shape), 0)
        if trial % 3 == 0:
            vol[:] = rng.integers(1, 3)  # no background at all
        vol = (vol > 0) if dtype is bool else vol.astype(dtype)
        got = resident.truth_ids(scan_volume(vol))
        assert got.tolist() == np.unique(vol).astype(got.dtype).tolist()


@pytest.mark.parametrize("stream", [True, False])
def test_too_many_label_changes_take_the_chunked_path(tmp_path, monkeypatch, stream):
    """A noise-like volume (memory of the scan ~ its label changes) is scored by the chunked
    path: same JSON as when the in-memory path is off, voxels counted once."""
    from gpueval.bench.medsegfm import organ_case
    from gpueval.challenges import medsegfm as M

    gts, segs = organ_case((12, 20, 24), seed=6)
    truth, sub = _case(tmp_path, gts, segs)
    cfg = load_config("medsegfm", overrides=["chunk_size=8"])
    monkeypatch.setattr(resident, "applies", lambda ctx, *v: False)
    chunked = M.score(truth, sub, cfg)
    monkeypatch.undo()
    if not stream:
        monkeypatch.setattr(resident, "streams", lambda ctx: False)
    monkeypatch.setattr(resident, "transition_limit", lambda voxels: 50)  # the organs: ~300
    calls = []
    real = resident.scan_volume
    monkeypatch.setattr(resident, "scan_volume", lambda *a, **k: calls.append(1) or real(*a, **k))
    dense = M.score(truth, sub, cfg)
    assert _json(dense) == _json(chunked)
    assert dense.runtime["voxels"] == chunked.runtime["voxels"] == gts.size
    assert len(calls) == (0 if stream else 1)  # streamed: no second try after decoding


@pytest.mark.parametrize("n_labels", [3, nsd_scan.DEFER_MAX_LABELS + 5])
@pytest.mark.parametrize("budget", [0, 1 << 30])
def test_every_label_scan_defers_its_codes_and_equals_scan_volume(monkeypatch, n_labels,
                                                                   budget):
    """A scan of every label keeps its corners raw and computes the codes of the labels
    its transitions list at the end (few labels), or each slab's own by histogram (many
    labels, or past the raw budget): the same scan either way; ``transitions`` gives the
    transitions and labels before the codes."""
    rng = np.random.default_rng(n_labels)
    vol = np.zeros((11, 9, 14), np.uint8)
    for lab in range(1, n_labels + 1):
        z, y, x = (int(rng.integers(0, n)) for n in vol.shape)
        vol[z:z + 3, y:y + 2, x:x + 4] = lab
    monkeypatch.setattr(nsd_scan, "RAW_BUDGET_BYTES", budget)
    feed = resident.SlabFeed()
    for filled in (4, 8, 11):
        feed(vol, filled)
    early = feed.transitions(vol)
    whole = feed.scan(vol)
    want = scan_volume(vol, None, slab=3)
    assert _canon(whole) == _canon(want)
    assert early.row_keys.tolist() == want.row_keys.tolist()
    assert early.labels.tolist() == want.labels.tolist() and early.surfaces == {}
    assert resident.truth_ids(early).tolist() == resident.truth_ids(want).tolist()
