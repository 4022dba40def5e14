"""``nsd_scan.scan_volume`` on rows of several 64-bit words (issue #19, session 7).

The scan tests each dirty word's corners element-parallel on 64-bit words (shifts by one
element, XORs of the four rows) and runs its dense tests on the flat slab buffer, where the
neighbours of a row's last word wrap into the next row. The tests in
``test_medsegfm_nsd_resident.py`` draw rows of at most 9 voxels (one or two words); here rows
span many words of every element size, with runs that start and end at word boundaries,
and the surfaces and pair counts must equal the shifted-view reference exactly.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpueval.kernels.nsd_scan import pair_counts, scan_volume
from gpueval.kernels.stats import contingency
from gpueval.kernels.surface import SurfacePoints, volume_surfaces

DTYPES = [np.uint8, np.int8, np.uint16, np.int32, np.uint64, np.int64, bool]


def _canon(points: SurfacePoints):
    order = np.lexsort(points.coords.T[::-1])
    return points.coords[order].tolist(), points.codes[order].tolist()


@st.composite
def _wide_volume(draw):
    """Boxes of labels on a background, plus random single voxels, in rows of 9–70 voxels."""
    shape = (draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(9, 70)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    vol = np.zeros(shape, np.int64)
    for _ in range(draw(st.integers(0, 4))):  # boxes: runs aligned to words or not
        lo = [int(rng.integers(0, n)) for n in shape]
        hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, shape, strict=True)]
        vol[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = rng.integers(1, 4)
    strays = rng.random(shape) < draw(st.sampled_from([0.0, 0.01, 0.2]))
    vol[strays] = rng.integers(1, 4, int(strays.sum()))
    dtype = draw(st.sampled_from(DTYPES))
    return (vol > 0) if dtype is bool else vol.astype(dtype)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vol=_wide_volume(), slab=st.integers(1, 4))
def test_wide_rows_equal_shifted_view_reference(vol, slab):
    labels = [1] if vol.dtype == bool else [1, 2, 3]
    got = scan_volume(vol, labels, slab=slab)
    ref = volume_surfaces(vol, labels, chunks=5)
    for lab in labels:
        assert _canon(got.surfaces[lab]) == _canon(ref[lab])
    every = scan_volume(vol, None, slab=slab)  # labels found by the scan itself
    assert every.labels.tolist() == sorted({int(v) for v in vol.reshape(-1) if v != 0})
    for lab in every.labels.tolist():
        assert _canon(every.surfaces[lab]) == _canon(ref[lab])
    flipped = vol[:, :, ::-1]  # the same volume read against itself reversed: all pairs
    table = pair_counts(got, scan_volume(flipped, labels, slab=slab))
    want = contingency(vol.reshape(-1), np.ascontiguousarray(flipped).reshape(-1))
    def rows(t):
        return sorted(zip(t.ids_a.tolist(), t.ids_b.tolist(), t.counts.tolist(), strict=True))

    assert rows(table) == rows(want)


def test_word_boundary_runs_each_dtype():
    # a run ending exactly at a word boundary and one crossing it, for every element size:
    # the corner between two words must be found in both cases
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        e = 8 // np.dtype(dtype).itemsize
        vol = np.zeros((2, 3, 4 * e), dtype)
        vol[0, 1, e:2 * e] = 1  # exactly the second word
        vol[1, 1, e - 1:e + 1] = 2  # straddles words 0 and 1
        got = scan_volume(vol, [1, 2], slab=1)
        ref = volume_surfaces(vol, [1, 2], chunks=3)
        for lab in (1, 2):
            assert len(got.surfaces[lab]) == len(ref[lab]) > 0
            assert _canon(got.surfaces[lab]) == _canon(ref[lab])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300))
def test_codes_equal_packbits(seed, n):
    from gpueval.kernels.nsd_scan import _codes

    hit = np.random.default_rng(seed).random((n, 8)) < 0.5
    assert _codes(hit).tolist() == np.packbits(hit, axis=1).reshape(-1).tolist()


def test_any_nonzero_sees_every_position():
    from gpueval.kernels.nsd_scan import _any_nonzero

    for shape in [(1, 1, 1), (1, 1, 7), (2, 3, 5), (1, 1, 8), (1, 2, 9)]:
        for dtype in (np.uint8, np.int16, np.int64):
            for pos in range(int(np.prod(shape))):
                vol = np.zeros(shape, dtype)
                assert not _any_nonzero(vol)
                vol.reshape(-1)[pos] = -1 if dtype != np.uint8 else 1
                assert _any_nonzero(vol)
