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
