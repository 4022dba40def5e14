"""The CuPy twins' array logic, run on NumPy through ``tests/emulated/fake_cupy.py``.

Not a GPU verification (see that module): it keeps the GPU code paths from rotting between
sessions that have a device. Each test feeds the same data to the CPU twin and, as fake device
arrays, to the GPU twin, and asserts identical statistics.
"""

import numpy as np
import pytest
from emulated import fake_cupy


@pytest.fixture
def cp(monkeypatch):
    return fake_cupy.install(monkeypatch)


def test_fake_arrays_count_as_device_arrays(cp):
    from gpueval.backend import is_cupy

    assert is_cupy(cp.asarray(np.zeros(3))) and not is_cupy(np.zeros(3))


def test_contingency_twin(cp):
    from gpueval.kernels.stats import contingency

    rng = np.random.default_rng(0)
    a = rng.integers(0, 30, (20, 20, 20)).astype(np.uint64)
    b = rng.integers(0, 9, (20, 20, 20)).astype(np.int32)
    host, dev = contingency(a, b), contingency(cp.asarray(a), cp.asarray(b))
    for x, y in ((host.ids_a, dev.ids_a), (host.ids_b, dev.ids_b), (host.counts, dev.counts)):
        np.testing.assert_array_equal(x, np.asarray(y))


def test_confusion_twin(cp):
    from gpueval.kernels.stats import confusion_matrix

    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 4, 1000).astype(np.uint8), rng.integers(0, 4, 1000).astype(np.uint8)
    np.testing.assert_array_equal(confusion_matrix(a, b, 4),
                                  confusion_matrix(cp.asarray(a), cp.asarray(b), 4))


def test_engine_moves_chunks_to_the_device(cp):
    import dask.array as da

    from gpueval.backend import is_cupy
    from gpueval.engine import map_reduce

    seen = map_reduce(lambda x: [is_cupy(x)], [da.zeros((8, 8), chunks=4)],
                      lambda parts: sum(parts, []), device="gpu")
    assert seen == [True] * 4


@pytest.mark.parametrize("radius,threshold", [(0, 122), (2, 122), (1, None)])
def test_urisc_boundary_twin(cp, radius, threshold):
    from gpueval.kernels.boundary import boundary_counts

    rng = np.random.default_rng(2)
    gt = np.where(rng.random((60, 50)) < 0.1, 0, 255).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.05] = 100  # grey GT values
    pred = np.where(rng.random((60, 50)) < 0.1, 0, 255).astype(np.uint8)
    host = boundary_counts(gt, pred, radius=radius, gt_threshold=threshold, band_rows=17)
    dev = boundary_counts(cp.asarray(gt), cp.asarray(pred), radius=radius,
                          gt_threshold=threshold, band_rows=17)
    assert host.pixel_counts() == dev.pixel_counts()


def test_gpu_test_files_pass_under_emulation():
    """Every ``tests/gpu`` file, run with CuPy emulated by NumPy (see ``tests/conftest.py``)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    env = dict(os.environ, GPUEVAL_EMULATE_GPU="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(here / "gpu")], cwd=here.parent, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout.splitlines()[-1]


# --------------------------------------------------------------------------------------------
# Device-work budgets (issue 20): the counting fake CuPy caps ops, host waits and copies per
# chunk. Baselines measured on the previous twins (same 64³ blocky chunk): contingency 32 ops,
# 6 waits, 3 D2H and 3 x 262,144 voxels sorted; region stats 38 ops, 6 waits, 5 D2H, 262,144
# voxels sorted and every voxel scattered (background included) with same-address atomics.

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

_LABEL_DTYPES = [np.uint8, np.int8, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
                 np.float32, np.float64, np.bool_]


def _blocky(seed: int, dtype, shape=(64, 64, 64), ids: int = 50) -> np.ndarray:
    """Piecewise-constant labels (8-voxel runs along x, ~1/3 background), like segmentations."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, ids, shape[:-1] + (shape[-1] // 8,))
    coarse[rng.random(coarse.shape) < 0.33] = 0
    return np.repeat(coarse, 8, axis=-1).astype(dtype)


def _runs(*arrays) -> int:
    """Runs of equal tuples in C order (what a run-compacting twin may sort at most)."""
    flat = [x.reshape(-1) for x in arrays]
    change = np.zeros(flat[0].size, bool)
    change[0] = True
    for f in flat:
        change[1:] |= f[1:] != f[:-1]
    return int(change.sum())


def test_counters_model_cupy_waits_and_copies(cp):
    x = cp.asarray(np.arange(10, dtype=np.int64))  # pageable upload: one copy, one wait
    with fake_cupy.counting() as c:
        y = x * 2
        total = int(y.sum())  # reduction → 0-d device array → int() waits
        host = y.get()
    assert total == 90 and host.tolist() == list(range(0, 20, 2))
    assert (c.ops, c.syncs, c.d2h, c.d2h_bytes, c.h2d) == (2, 2, 2, 8 + 80, 0)
    with fake_cupy.counting() as c:
        cp.asarray(np.zeros(7, np.uint32))
        cp.asarray(x)  # already on the device: no copy
        x[x > 3]  # boolean mask: the output size waits on the device
        cp.argsort(x)
    assert (c.h2d, c.h2d_bytes, c.syncs, c.sorted_keys) == (1, 28, 2, 10)


def test_contingency_twin_budget(cp):
    from gpueval.kernels.stats import contingency

    a, b = _blocky(3, np.uint32), _blocky(4, np.uint64)
    da_, db_ = cp.asarray(a), cp.asarray(b)
    with fake_cupy.counting() as c:
        dev = contingency(da_, db_)
    host = contingency(a, b)
    for x, y in ((host.ids_a, dev.ids_a), (host.ids_b, dev.ids_b), (host.counts, dev.counts)):
        np.testing.assert_array_equal(x, y)
    # waits: run compaction, range of the 64-bit side, pair segments, the one table D2H
    assert c.syncs <= 4 and c.d2h <= 2 and c.h2d == 0
    assert c.sorted_keys <= _runs(a, b) < a.size // 4  # one sort of run heads, not 3 of voxels
    assert c.ops <= 45
    assert c.d2h_bytes <= 8 * 3 * len(host) + 64  # only the table (+ the 4-value range)


def test_contingency_twin_budget_without_range_wait(cp):
    from gpueval.kernels.stats import contingency

    a, b = _blocky(5, np.uint32), _blocky(6, np.int16)  # 32 + 16 bits pack by dtype
    da_, db_ = cp.asarray(a), cp.asarray(b)
    with fake_cupy.counting() as c:
        contingency(da_, db_)
    assert c.syncs <= 3 and c.d2h == 1


def test_region_stats_twin_budget(cp):
    from gpueval.kernels.regions import chunk_region_stats

    a = _blocky(7, np.uint64)
    dev_a = cp.asarray(a)
    with fake_cupy.counting() as c:
        dev = chunk_region_stats(dev_a, (64, 0, 0), (128, 64, 64))
    host = chunk_region_stats(a, (64, 0, 0), (128, 64, 64))
    assert _region_tuple(host) == _region_tuple(dev)
    assert c.syncs <= 4 and c.d2h == 1 and c.h2d == 0  # ≤ 4 waits per region, one D2H
    rows = a.reshape(-1, a.shape[-1])  # runs along x, cut at row starts, background dropped
    heads = np.ones(rows.shape, bool)
    heads[:, 1:] = rows[:, 1:] != rows[:, :-1]
    foreground_runs = int((heads & (rows != 0)).sum())
    assert c.sorted_keys == foreground_runs < a.size // 8
    assert c.ops <= 64


def _region_tuple(s):
    return (s.ids.dtype, s.ids.tolist(), s.counts.tolist(), s.bbox_min.tolist(),
            s.bbox_max.tolist(), s.first_index.tolist())


@st.composite
def _label_volumes(draw, n: int):
    dtype = draw(st.sampled_from(_LABEL_DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=7))
    palette = draw(st.lists(st.integers(-3, 4), min_size=1, max_size=5))
    out = []
    for _ in range(n):
        idx = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, len(palette) - 1)))
        vol = np.asarray(palette)[idx].astype(dtype)
        if dtype == np.uint64 and draw(st.booleans()):  # ids ≥ 2**63 take the range path
            vol = np.where(vol != 0, vol | np.uint64(2**63), vol)
        out.append(vol)
    return out


@given(_label_volumes(2), st.sampled_from(_LABEL_DTYPES))
def test_contingency_twin_equals_cpu_bit_for_bit(pair, dtype_b):
    import pytest

    from gpueval.kernels.stats import contingency

    a, b = pair[0], pair[1].astype(dtype_b)
    with pytest.MonkeyPatch.context() as mp:
        cp = fake_cupy.install(mp)
        dev = contingency(cp.asarray(a), cp.asarray(b))
    host = contingency(a, b)
    for x, y in ((host.ids_a, dev.ids_a), (host.ids_b, dev.ids_b), (host.counts, dev.counts)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@given(_label_volumes(1))
def test_region_stats_twin_equals_cpu_bit_for_bit(vols):
    import pytest

    from gpueval.kernels.regions import chunk_region_stats

    a = vols[0]
    origin = tuple(range(1, a.ndim + 1))
    shape = tuple(s + 9 for s in a.shape)
    with pytest.MonkeyPatch.context() as mp:
        cp = fake_cupy.install(mp)
        dev = chunk_region_stats(cp.asarray(a), origin, shape)
    assert _region_tuple(chunk_region_stats(a, origin, shape)) == _region_tuple(dev)


@pytest.mark.parametrize(("shape", "connectivity"), [((6, 7, 5), 26), ((6, 7, 5), 18),
                                                    ((6, 7, 5), 6), ((11, 9), 8), ((11, 9), 4)])
def test_raw_kernel_standins_label_like_cc3d(cp, shape, connectivity):
    # the fake's RawModule runs NumPy stand-ins of cc_union_find.cu (first voxel = root), so
    # the CuPy labelling twin runs here end to end; ids >= 2**63 exercise the key path
    import cc3d

    from gpueval.kernels.components import connected_components

    rng = np.random.default_rng(11)
    a = (rng.integers(1, 3, shape) * (rng.random(shape) < 0.6)).astype(np.uint64)
    a[a == 2] = np.uint64(2**63 + 5)
    ref = cc3d.connected_components(a.reshape((1,) * (3 - a.ndim) + shape).astype(np.uint32),
                                    connectivity=connectivity if a.ndim == 3 else
                                    {8: 26, 4: 6}[connectivity]).reshape(shape)
    with fake_cupy.counting() as c:
        out, n = connected_components(cp.asarray(a), connectivity)
    np.testing.assert_array_equal(np.asarray(out), ref)
    assert n == ref.max() and c.ops >= 3  # three launches at least


# --------------------------------------------------------------------------------------------
# The fused twin (kernels/fused.py): three statistics from one run compaction


def _stats_tuple(t: tuple):
    table, ra, rb = t
    return ((table.ids_a.dtype, table.ids_b.dtype, table.ids_a.tolist(), table.ids_b.tolist(),
             table.counts.tolist()), _region_tuple(ra), _region_tuple(rb))


def test_fused_statistics_budget_against_the_separate_twins(cp):
    from gpueval.kernels.fused import chunk_statistics
    from gpueval.kernels.regions import chunk_region_stats
    from gpueval.kernels.stats import contingency

    a, b = _blocky(8, np.uint32), _blocky(9, np.uint64)
    da_, db_ = cp.asarray(a), cp.asarray(b)
    with fake_cupy.counting() as separate:
        parts = (contingency(da_, db_), chunk_region_stats(da_, (0, 0, 64), (64, 64, 128)),
                 chunk_region_stats(db_, (0, 0, 64), (64, 64, 128)))
    with fake_cupy.counting() as fused:
        out = chunk_statistics(da_, db_, (0, 0, 64), (64, 64, 128))
    assert _stats_tuple(out) == _stats_tuple(parts)
    assert _stats_tuple(out) == _stats_tuple(chunk_statistics(a, b, (0, 0, 64), (64, 64, 128)))
    # waits: runs, 64-bit range, segment sizes, tables (the separate twins: 4 + 4 + 4)
    assert fused.syncs <= 4 < separate.syncs and fused.d2h <= 3 < separate.d2h
    rows_a, rows_b = a.reshape(-1, 64), b.reshape(-1, 64)  # runs along x, cut at row starts
    heads = np.ones(rows_a.shape, bool)
    heads[:, 1:] = (rows_a[:, 1:] != rows_a[:, :-1]) | (rows_b[:, 1:] != rows_b[:, :-1])
    assert fused.sorted_keys == 2 * int(heads.sum()) < separate.sorted_keys  # pair, b
    assert fused.ops <= separate.ops


@given(_label_volumes(2), st.sampled_from(_LABEL_DTYPES))
def test_fused_statistics_equal_the_cpu_twins_bit_for_bit(pair, dtype_b):
    import pytest

    from gpueval.kernels.fused import chunk_statistics

    a, b = pair[0], pair[1].astype(dtype_b)
    origin = tuple(range(2, a.ndim + 2))
    shape = tuple(s + 5 for s in a.shape)
    with pytest.MonkeyPatch.context() as mp:
        cp = fake_cupy.install(mp)
        dev = chunk_statistics(cp.asarray(a), cp.asarray(b), origin, shape)
    assert _stats_tuple(dev) == _stats_tuple(chunk_statistics(a, b, origin, shape))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint32, np.float32, np.bool_])
@pytest.mark.parametrize("labels", [[1, 2, 3], [0, 1, 2, 3, 4, 5, 300], [2, 5, 9, 1, 7, 8]])
def test_label_surfaces_twin_budget(cp, dtype, labels):
    # all labels' codes in one pass: ≤ 4 waits per block (mixed corners, label upload,
    # code compaction, one D2H) where the per-label loop waited 4 times a label
    from gpueval.kernels.surface import label_surfaces

    rng = np.random.default_rng(12)
    block = np.repeat(rng.integers(0, 10, (17, 18, 5)), 4, axis=2).astype(dtype)
    block[3:6] = 0
    host = label_surfaces(block, labels, (3, 4, 5))
    dev_block = cp.asarray(block)
    with fake_cupy.counting() as c:
        dev = label_surfaces(dev_block, labels, (3, 4, 5))
    for lab in labels:
        assert host[lab].coords.dtype == dev[lab].coords.dtype == np.int64
        assert host[lab].codes.dtype == dev[lab].codes.dtype == np.uint8
        np.testing.assert_array_equal(host[lab].coords, dev[lab].coords)
        np.testing.assert_array_equal(host[lab].codes, dev[lab].codes)
    assert c.syncs <= 4 and c.d2h == 1


def test_cellmap_instance_chunks_use_the_fused_statistics_on_the_device(cp, monkeypatch):
    """The GPU path of a CellMap instance score takes each chunk's pair counts and both
    region statistics from one fused call on device arrays (≤ 4 waits a chunk), and scores
    as the CPU path does."""
    import dask.array as da

    from gpueval.backend import is_cupy
    from gpueval.bench.cellmap import CONSTS
    from gpueval.challenges.cellmap import scoring_2026
    from gpueval.limits import Limits, use_limits

    rng = np.random.default_rng(8)
    cells = np.arange(1, 4 * 6 * 8 + 1, dtype=np.uint32).reshape(4, 6, 8)
    cells[rng.random(cells.shape) < 0.3] = 0  # background between the objects
    g = np.kron(cells, np.ones((4, 4, 4), np.uint32))  # 4³ cubes, one id each
    p = np.roll(g, 1, axis=2)  # shifted objects: partial overlaps across chunk borders
    p[np.isin(p, [5, 6, 7])] = 0  # misses
    p[10:14, 2:6, 20:28] = 999  # an extra object over truth and background
    chunks = (8, 12, 16)
    waits = []
    fused = scoring_2026.chunk_statistics

    def counted(a, b, origin, shape):
        assert is_cupy(a) and is_cupy(b)  # on the device
        with fake_cupy.counting() as c:
            out = fused(a, b, origin, shape)
        waits.append(c.syncs)
        return out

    monkeypatch.setattr(scoring_2026, "chunk_statistics", counted)
    with use_limits(Limits(threads=1)):
        cpu = scoring_2026.score_instance(da.from_array(g, chunks=chunks),
                                          da.from_array(p, chunks=chunks), (8.0,) * 3,
                                          CONSTS, device="cpu")
        assert waits == []  # the CPU path works from its carried labels instead
        gpu = scoring_2026.score_instance(da.from_array(g, chunks=chunks),
                                          da.from_array(p, chunks=chunks), (8.0,) * 3,
                                          CONSTS, device="gpu")
    assert len(waits) == 8 and max(waits) <= 4
    cpu.pop("_detail", None), gpu.pop("_detail", None)
    assert gpu == cpu and cpu["tp"] > 0 and cpu["fp"] + cpu["fn"] > 0
