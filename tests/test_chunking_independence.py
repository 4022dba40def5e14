"""Connected components, and the CellMap score built on them, do not depend on the chunking.

Issue 21 item 6: cc3d 4.1 overflows on uint64 ids ≥ 2⁶³ when a volume's only foreground is one
row, so a chunk holding just one row of such an id crashed ``label_chunked`` (and negative
float64 labels reached the same fast path through their bit patterns). These tests sweep every
chunk size 1..N on small volumes whose labels include ids next to 2⁶⁴ and negative floats, and
compare against whole-volume labelling computed independently of the code under test.
"""

from __future__ import annotations

import cc3d
import dask.array as da
import numpy as np
import pytest
from cellmap_cases import put, run
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.kernels.components import connected_components, label_chunked

TOP = 2**64 - 1
# uint64 palettes: small ids mixed with ids on both sides of 2**63 and next to 2**64
HUGE_IDS = [1, 2, 2**63 - 1, 2**63, 2**63 + 1, TOP - 1, TOP]
# float64 palettes: negatives (bit patterns ≥ 2**63), -0.0 (= background) and positives
FLOATS = [-1.5, -2.0, -1e300, -0.0, 0.5, 3.25, 1e300]


def _whole_volume_reference(a: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """cc3d on dense uint32 ids with the same equalities as ``a`` (0 and -0.0 background).

    ``np.unique`` compares values (so -0.0 == 0.0 and 0 stays background); dense ids never
    reach the overflowing fast path, so this does not depend on the fix under test."""
    values, inv = np.unique(a, return_inverse=True)
    dense = (inv.reshape(a.shape) + 1).astype(np.uint32)
    dense[a == 0] = 0
    return cc3d.connected_components(dense, connectivity=connectivity, return_N=True)


@st.composite
def labelled_volumes(draw):
    """(labels, connectivity): 'line' volumes (all axes but one of size 1), 2-D and 3-D."""
    kind = draw(st.sampled_from(["line2", "line3", "2d", "3d"]))
    n = draw(st.integers(1, 12))
    if kind == "line2":
        shape = draw(st.sampled_from([(1, n), (n, 1)]))
    elif kind == "line3":
        shape = draw(st.sampled_from([(1, 1, n), (1, n, 1), (n, 1, 1)]))
    elif kind == "2d":
        shape = tuple(draw(st.integers(1, 8)) for _ in range(2))
    else:
        shape = tuple(draw(st.integers(1, 4)) for _ in range(3))
    floats = draw(st.booleans())
    palette = np.array(FLOATS if floats else HUGE_IDS, np.float64 if floats else np.uint64)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    k = draw(st.integers(1, len(palette)))
    chosen = rng.choice(palette, k, replace=False)
    a = chosen[rng.integers(0, k, shape)]
    a[rng.random(shape) < draw(st.sampled_from([0.0, 0.3, 0.7]))] = 0
    if draw(st.booleans()) and len(shape) > 1 and shape[0] > 1:
        # the trigger: a chunk whose only foreground is one row of one huge id
        a[...] = 0
        a[(shape[0] // 2,) + (slice(None),) * (len(shape) - 1)] = chosen[0] or palette[-1]
    conn = draw(st.sampled_from([4, 8] if len(shape) == 2 else [6, 18, 26]))
    return a, conn


@settings(max_examples=40, deadline=None)
@given(labelled_volumes(), st.randoms(use_true_random=False))
def test_every_chunk_size_gives_whole_volume_components(vol, rnd):
    a, connectivity = vol
    ref, n = _whole_volume_reference(a, connectivity)
    whole, n_whole = connected_components(a, connectivity)
    assert n_whole == n
    np.testing.assert_array_equal(whole, ref)
    # every cubic chunk size 1..N, then one random per-axis chunking
    sizes = [(c,) * a.ndim for c in range(1, max(a.shape) + 1)]
    sizes.append(tuple(rnd.randint(1, s) for s in a.shape))
    for chunks in sizes:
        res = label_chunked(da.from_array(a, chunks=chunks), connectivity, scheduler="sync")
        assert res.n == n, chunks
        # cc3d's numbering (raster order of first voxels): ids equal voxel for voxel
        np.testing.assert_array_equal(res.data.compute(scheduler="sync"), ref,
                                      err_msg=str(chunks))


@pytest.mark.parametrize("value", [np.uint64(2**63), np.uint64(TOP), np.float64(-1.5)])
@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 3), (4, 1)])
def test_one_row_of_a_huge_or_negative_id(shape, value):
    # the reported crash: cc3d's one-row fast path converts the id to a C long
    a = np.zeros(shape, value.dtype)
    a[1] = value
    conn = 8 if len(shape) == 2 else 26
    out, n = connected_components(a, conn)
    assert n == 1 and (out[1] == 1).all() and (out[0] == 0).all()
    res = label_chunked(da.from_array(a, chunks=2), conn, scheduler="sync")
    assert res.n == 1
    np.testing.assert_array_equal(res.data.compute(scheduler="sync"), out)


def _cellmap_pair(tmp_path):
    """A 16³ CellMap crop: three truth mitochondria; the prediction reuses their shapes with
    ids ≥ 2**63, one object being a single row (alone in its 8³ and 4³ chunks)."""
    gt = np.zeros((16, 16, 16), np.uint32)
    gt[1:6, 1:6, 1:6] = 1
    gt[9:15, 2:7, 9:14] = 2
    gt[12, 10, 0:8] = 3          # a one-row object
    pred = np.zeros(gt.shape, np.uint64)
    pred[1:6, 1:6, 2:7] = 2**63 + 7
    pred[9:15, 2:7, 9:14] = TOP
    pred[12, 10, 0:8] = 2**63
    truth, sub = tmp_path / "truth.zarr", tmp_path / "sub.zarr"
    put(truth, "crop1", "mito", gt, chunks=(16, 16, 16))
    put(sub, "crop1", "mito", pred, chunks=(16, 16, 16))
    return truth, sub


def test_cellmap_score_does_not_depend_on_processing_chunks(tmp_path):
    truth, sub = _cellmap_pair(tmp_path)
    results = {}
    # before the fix 8³ and 4³ crashed (the row is alone in its chunk) while 16³ scored
    for c in ((16, 16, 16), (8, 8, 8), (4, 4, 4), (16, 16, 5)):
        res, items = run(truth, sub, "chunk=[{},{},{}]".format(*c))
        results[c] = (res.score, items)
    ref_score, ref_items = results[16, 16, 16]
    item = ref_items["crop1/mito"]
    # each predicted object overlaps only its own truth object: all three matched
    assert (item["tp"], item["fp"], item["fn"]) == (3, 0, 0)
    for c, (s, items) in results.items():
        assert s == pytest.approx(ref_score, rel=1e-12, abs=0), c
        assert items == ref_items, c
