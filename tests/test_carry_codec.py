"""The carry (issue #18, session 9): LZ4-compressed entries round-trip exactly (any dtype,
empty arrays, a wide codec beyond LZ4's input limit), and ``get(copy=False)`` hands back a
raw entry as a read-only view without copying it."""

from __future__ import annotations

import numpy as np
import pytest

from gpueval.kernels import throughput_carry
from gpueval.kernels.throughput_carry import CarryStore


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint32, ">u4", np.float64, bool])
def test_compressed_entries_round_trip(dtype):
    rng = np.random.default_rng(1)
    a = (rng.integers(0, 5, (30, 40, 50)) * (rng.random((30, 40, 50)) < 0.2)).astype(dtype)
    s = CarryStore(budget=2 * a.nbytes - 2)  # over half the budget: compressed
    assert s.put("k", [a, a[:0]])
    assert all(dt is not None for dt, *_ in s._items["k"][1])  # held compressed
    got, empty = s.get("k")
    assert got.dtype == a.dtype and got.flags.writeable
    np.testing.assert_array_equal(got, a)
    assert empty.shape == (0, 40, 50)
    got[0, 0, 0] = 1  # private: the entry is unchanged
    np.testing.assert_array_equal(s.get("k", remove=True)[0], a)


def test_arrays_beyond_lz4s_limit_take_the_wide_codec(monkeypatch):
    monkeypatch.setattr(throughput_carry, "_LZ4_MAX_INPUT", 1000)
    a = np.arange(5000, dtype=np.uint16)
    dtype, shape, data, codec = throughput_carry._encode(a)
    assert codec is throughput_carry._WIDE_CODEC
    np.testing.assert_array_equal(throughput_carry._decode(dtype, shape, data, codec), a)
    assert throughput_carry._encode(a[:100])[3] is throughput_carry._CODEC


def test_get_without_copy_is_a_read_only_view_of_a_raw_entry():
    s = CarryStore(budget=10**6)
    x = np.arange(1000, dtype=np.uint32)
    assert s.put("raw", [x])
    view = s.get("raw", copy=False)[0]
    assert np.shares_memory(view, x) and not view.flags.writeable
    with pytest.raises(ValueError):
        view[0] = 7
    copied = s.get("raw")[0]  # the default stays a private, writeable copy
    assert not np.shares_memory(copied, x) and copied.flags.writeable
    assert s.get("raw", remove=True, copy=False)[0] is x  # the last use takes the array
