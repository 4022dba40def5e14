"""The per-pair glue of the CellMap 2026 Hausdorff stage (issue #18, session 9, h9-p): the
masks built from a chunk's local component labels and the bit-packed pieces of pairs that
span chunks, against the plain NumPy they replace."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.challenges.cellmap import scoring_2026 as s

DTYPES = (np.uint8, np.uint16, np.uint32, np.uint64)


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from(DTYPES), shape=st.tuples(*[st.integers(1, 6)] * 3),
       n_local=st.integers(0, 7), seed=st.integers(0, 2**32 - 1))
def test_mask_of_locals_is_isin(dtype, shape, n_local, seed):
    rng = np.random.default_rng(seed)
    top = 9 if dtype is np.uint8 else 300  # ids beyond 255 need a wider dtype
    chunk = rng.integers(0, top, (8, 8, 8)).astype(dtype)
    # a strided box of the chunk, as the stage passes it
    box = chunk[1:1 + shape[0], 2:2 + shape[1], :shape[2]]
    wanted = rng.choice(top, n_local, replace=False).astype(np.int64)  # argsort's intp
    got = s._mask_of_locals(box, wanted)
    assert got.dtype == bool and got.shape == box.shape
    np.testing.assert_array_equal(got, np.isin(box, wanted))


@settings(max_examples=30, deadline=None)
@given(dtype=st.sampled_from(DTYPES), n_local=st.integers(0, 7), seed=st.integers(0, 2**32 - 1))
def test_mask_of_locals_into_a_buffer(dtype, n_local, seed):
    """With ``out`` (a slot of a piece's two-mask buffer) the same mask, written there."""
    rng = np.random.default_rng(seed)
    box = rng.integers(0, 12, (9, 9, 9)).astype(dtype)[2:7, 1:8, 3:5]
    wanted = rng.choice(12, n_local, replace=False).astype(np.int64)
    buffer = np.ones((2, *box.shape), bool)
    got = s._mask_of_locals(box, wanted, out=buffer[1])
    assert np.shares_memory(got, buffer)
    np.testing.assert_array_equal(buffer[1], np.isin(box, wanted))
    assert buffer[0].all()  # the other slot untouched


@settings(max_examples=30, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 9)] * 3), seed=st.integers(0, 2**32 - 1))
def test_pack_round_trip_of_two_masks(shape, seed):
    """A piece's stacked pair survives packing (shapes whose bit count is no multiple of 8
    included: the padding bits of the last byte are dropped)."""
    rng = np.random.default_rng(seed)
    ab = rng.random((2, *shape)) < 0.3
    a, b = s._unpack(s._pack(ab), (2, *shape))
    np.testing.assert_array_equal(a, ab[0])
    np.testing.assert_array_equal(b, ab[1])


def _blobs(rng, shape, n, ids):
    out = np.zeros(shape, np.uint32)
    for k in range(n):
        lo = [int(rng.integers(0, s - 2)) for s in shape]
        size = [int(rng.integers(2, 9)) for _ in shape]
        out[tuple(slice(a, min(a + b, s)) for a, b, s in zip(lo, size, shape, strict=True))] = \
            ids[k]
    return out


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), chunk=st.integers(4, 12))
def test_plan_counts_are_the_masks_counts(seed, chunk):
    """The voxel counts the plan takes from the statistics (so that no pass counts the masks)
    are the masks' own, for pairs inside one chunk and pairs put together from pieces, with
    splits, merges and the ID-collision quirk (prediction ids reused across blobs); and the
    distances are those measured with the masks counted."""
    import dask.array as da

    rng = np.random.default_rng(seed)
    shape = (20, 18, 16)
    gt = _blobs(rng, shape, 9, np.arange(1, 10))
    pred = _blobs(rng, shape, 11, rng.integers(1, 6, 11))
    seen = []
    measure = s._pair_hausdorff

    def checking(a, b, voxel_size, counts=None):
        assert counts == (int(np.count_nonzero(a)), int(np.count_nonzero(b)))
        value = measure(a, b, voxel_size, counts=counts)
        assert value == measure(a, b, voxel_size)  # bit for bit without the counts
        seen.append(value)
        return value

    consts = dict(final_instance_ratio_cutoff=10, initial_instance_ratio_cutoff=50,
                  instance_ratio_factor=5, max_overlap_edges=5_000_000,
                  mcmf_cost_scale=1_000_000)
    s._pair_hausdorff = checking
    try:
        s.score_instance(da.from_array(gt, chunks=chunk), da.from_array(pred, chunks=chunk),
                         (8.0, 8.0, 8.0), consts, scheduler="sync")
    finally:
        s._pair_hausdorff = measure
    assert seen  # some pairs were measured


def test_read_path_equals_carried_path(monkeypatch):
    """The stage's other path (chunks read and relabelled with global ids, as off the CPU)
    builds the same masks, pieces and counts as the carried local labels: same result."""
    import dask.array as da

    rng = np.random.default_rng(7)
    shape = (24, 20, 18)
    gt = _blobs(rng, shape, 14, np.arange(1, 15))
    pred = _blobs(rng, shape, 16, rng.integers(1, 8, 16))
    consts = dict(final_instance_ratio_cutoff=10, initial_instance_ratio_cutoff=50,
                  instance_ratio_factor=5, max_overlap_edges=5_000_000,
                  mcmf_cost_scale=1_000_000)

    def run():
        return s.score_instance(da.from_array(gt, chunks=7), da.from_array(pred, chunks=7),
                                (8.0, 8.0, 8.0), consts, scheduler="sync")

    carried = run()
    pieces = []
    assemble = s._hausdorff_assemble

    def counting(plan, j, chunk_results, vs):
        pieces.extend(p for _values, ps in chunk_results for p in ps)
        return assemble(plan, j, chunk_results, vs)

    monkeypatch.setattr(s, "_CarryKeys", lambda: None)  # no carry: the read path
    monkeypatch.setattr(s, "_hausdorff_assemble", counting)
    read = run()
    assert pieces  # pairs spanning chunks were put together from pieces
    assert {k: read[k] for k in ("tp", "fp", "fn", "hausdorff_norm_sum")} == \
        {k: carried[k] for k in ("tp", "fp", "fn", "hausdorff_norm_sum")}
    np.testing.assert_array_equal(read["_detail"]["hausdorff_per_gt"],
                                  carried["_detail"]["hausdorff_per_gt"])
