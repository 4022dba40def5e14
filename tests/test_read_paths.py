"""Read paths of the participant formats: the fast path gives exactly what the safe one gives.

U-RISC compressed TIFFs are decoded band by band by gpueval when they are 8-bit LZW/deflate
strips (``imread._StripLayout``), else whole when the per-process budget allows
(``imread._whole_page``), else in row bands through tifffile's zarr store; all must give the
same uint8 grey for every layout OpenCV/PIL/tifffile write (LZW strips of one row, deflate
tiles, colour with unassociated alpha, MINISWHITE, 16-bit).
"""

from __future__ import annotations

import gc
import zlib

import numpy as np
import pytest
import tifffile

from gpueval.challenges.urisc import imread

LAYOUTS = {
    "lzw-rows": dict(compression="lzw", rowsperstrip=1),
    "deflate-tiles": dict(compression="zlib", tile=(32, 48)),
    "none-strips": dict(rowsperstrip=7),  # contiguous: both reads take the pread path
    "lzw-minwhite": dict(compression="lzw", rowsperstrip=3, photometric="miniswhite"),
}


def _image(rng, dtype=np.uint8, samples=0):
    shape = (83, 101) + ((samples,) if samples else ())
    hi = 65536 if dtype == np.uint16 else 256
    return rng.integers(0, hi, size=shape, dtype=np.int64).astype(dtype)


def _both(path):
    """(band rows, whole rows) of one file, tifffile's band reader forced by an empty budget
    and no strip layout; the whole rows by the default path."""
    img = imread._GreyImage(path)
    img.strips = None
    left = imread._whole_budget.left
    imread._whole_budget.left = 0
    try:
        bands = np.concatenate([img.rows(a, min(a + 10, img.shape[0]))
                                for a in range(0, img.shape[0], 10)])
    finally:
        imread._whole_budget.left = left
    fresh = imread._GreyImage(path)
    whole = np.concatenate([fresh.rows(a, min(a + 10, fresh.shape[0]))
                            for a in range(0, fresh.shape[0], 10)])
    return bands, whole, fresh


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("kind", ["grey8", "grey16", "rgba8"])
def test_whole_decode_equals_band_decode(tmp_path, layout, kind):
    rng = np.random.default_rng(zlib.crc32(f"{layout}/{kind}".encode()))
    kw = dict(LAYOUTS[layout])
    if kind == "grey16":
        data = _image(rng, np.uint16)
    elif kind == "rgba8":
        if "photometric" in kw:
            pytest.skip("MINISWHITE is a grey photometric")
        data = _image(rng, samples=4)
        kw.update(photometric="rgb", extrasamples=[2])  # unassociated alpha: premultiplied
    else:
        data = _image(rng)
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, data, **kw)
    bands, whole, img = _both(path)
    assert bands.dtype == whole.dtype == np.uint8
    np.testing.assert_array_equal(bands, whole)
    fresh = imread._GreyImage(path)
    if fresh.offset is None and fresh.strips is None:  # not read here: decoded whole
        assert img._decoded is not None
    if kind != "grey16" and layout.startswith("lzw"):  # 8-bit LZW strips: read here, bands
        assert fresh.strips is not None and img._decoded is None


@pytest.mark.parametrize("predictor", [1, 2])
@pytest.mark.parametrize("compression", ["lzw", "zlib"])
@pytest.mark.parametrize("rows_per_strip", [1, 5, 200])
def test_strip_bands_equal_tifffile(tmp_path, predictor, compression, rows_per_strip):
    # bands that start and end inside strips, the last (short) strip, and both predictors
    data = _image(np.random.default_rng(rows_per_strip + predictor), samples=3)
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, data, compression=compression, predictor=predictor,
                     rowsperstrip=rows_per_strip, photometric="rgb")
    img = imread._GreyImage(path)
    assert img.strips is not None
    ref = imread._GreyImage(path)
    ref.strips = None
    for a, b in ((0, 83), (3, 4), (4, 11), (80, 83)):
        np.testing.assert_array_equal(img.rows(a, b), ref.rows(a, b))


def test_strips_that_do_not_decode_exactly_go_to_tifffile(tmp_path):
    # a strip cut short in the file: the band falls back to tifffile's verdict, never a band
    # of uninitialised bytes
    data = _image(np.random.default_rng(5))
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, data, compression="lzw", rowsperstrip=10)
    img = imread._GreyImage(path)
    lay = img.strips
    lay.counts = lay.counts.copy()
    lay.counts[2] //= 2  # strip 2 (rows 20-29) now ends early: LZW decodes too few bytes
    assert img._strip_rows(20, 30) is None
    np.testing.assert_array_equal(img.rows(20, 30), data[20:30])  # via tifffile
    np.testing.assert_array_equal(img.rows(0, 20), data[0:20])  # other bands unaffected


def test_budget_is_charged_and_given_back(tmp_path):
    path = tmp_path / "x.tif"  # tiles: decoded whole by tifffile, charged to the budget
    tifffile.imwrite(path, _image(np.random.default_rng(1)), compression="lzw", tile=(32, 32))
    before = imread._whole_budget.left
    img = imread._GreyImage(path)
    img.rows(0, 5)
    assert imread._whole_budget.left == before - img.size  # the grey copy is held
    del img
    gc.collect()
    assert imread._whole_budget.left == before


def test_over_budget_reads_bands(tmp_path, monkeypatch):
    path = tmp_path / "x.tif"
    data = _image(np.random.default_rng(2))
    tifffile.imwrite(path, data, compression="lzw", tile=(32, 32))
    monkeypatch.setattr(imread._whole_budget, "left", data.size - 1)
    img = imread._GreyImage(path)
    np.testing.assert_array_equal(img.rows(10, 20), data[10:20])
    assert img._decoded is None and imread._whole_budget.left == data.size - 1


def test_unpickled_copy_reads_bands(tmp_path):
    import pickle

    path = tmp_path / "x.tif"
    data = _image(np.random.default_rng(3))
    tifffile.imwrite(path, data, compression="zlib", tile=(16, 16))
    img = pickle.loads(pickle.dumps(imread._GreyImage(path)))
    np.testing.assert_array_equal(img.rows(3, 9), data[3:9])
    assert img._decoded is None


# -- truth pickles: the C unpickler fast path gives what the exact unpickler gives -------------

def _graph_pickle(n: int, protocol: int) -> bytes:
    import pickle

    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from((i, {"position": np.array([i * 1.5, 2.0, 3.0])}) for i in range(n))
    g.add_edges_from((i, i + 1) for i in range(n - 1))
    _ = g.adj, g.nodes, g.edges  # networkx 3 caches views in the instance dict
    return pickle.dumps(g, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_fast_path_loads_graphs_identically(protocol, monkeypatch):
    import pickle

    from gpueval.io import safe_pickle
    from gpueval.io.skeleton import GRAPH_GLOBALS

    data = _graph_pickle(300, protocol)
    exact = safe_pickle.restricted_load(data, GRAPH_GLOBALS, fast=False)

    def no_exact(*a, **k):
        raise AssertionError("the exact unpickler ran: the fast path gave up")

    monkeypatch.setattr(safe_pickle, "_Restricted", no_exact)
    # an earlier test's zarr I/O thread (idle) would switch the fast path off: not this test
    monkeypatch.setattr(safe_pickle.threading, "active_count", lambda: 1)
    fast = safe_pickle.restricted_load(data, GRAPH_GLOBALS)
    assert pickle.dumps(fast, protocol=4) == pickle.dumps(exact, protocol=4)


def test_fast_path_defers_to_the_exact_unpickler_near_the_limits():
    import pickle

    from gpueval.errors import Rejected
    from gpueval.io import safe_pickle

    data = pickle.dumps([[0] * 10] * 10, protocol=2)  # exact weight 119 (tests/hostile2)
    # logical weight 111 (+ the memo's inner list, 11): fast path keeps it only below 1/4
    assert safe_pickle._logical_weight([pickle.loads(data)], 10**6, 10) == 111
    with pytest.raises(Rejected, match="more than 118 elements"):
        safe_pickle.restricted_load(data, max_items=118)
    assert safe_pickle.restricted_load(data, max_items=119) == [[0] * 10] * 10


def test_logical_weight_expands_shared_references_and_survives_cycles():
    from gpueval.io import safe_pickle

    inner = [0] * 10                       # 1 + 10
    outer = [inner] * 10                   # 1 + 10 * 11 = 111
    assert safe_pickle._logical_weight([outer], 10**6, 10) == 111
    with pytest.raises(safe_pickle._TooLarge):
        safe_pickle._logical_weight([outer], 110, 10)
    with pytest.raises(safe_pickle._TooLarge):
        safe_pickle._logical_weight([[[[[1]]]]], 10**6, 2)  # 4 nested lists, levels 0-3

    class Node:  # an object whose attribute leads back to it (a networkx view)
        pass

    a = Node()
    a.me = [a, "x" * 16]                   # list: 1 + 1 (cycle) + (1 + 16 // 8) = 5
    assert safe_pickle._logical_weight([a], 10**6, 10) == 1 + 5


def test_fast_path_caps_address_space_only_while_loading():
    resource = pytest.importorskip("resource")
    from gpueval.io import safe_pickle

    before = resource.getrlimit(resource.RLIMIT_AS)
    with safe_pickle._address_space_cap(2**30) as capped:
        if capped:
            soft = resource.getrlimit(resource.RLIMIT_AS)[0]
            assert soft != resource.RLIM_INFINITY and soft <= safe_pickle._vm_size() + 2**30
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def test_fast_path_stays_off_while_other_threads_run(monkeypatch):
    import threading

    from gpueval.io import safe_pickle
    from gpueval.io.skeleton import GRAPH_GLOBALS

    data = _graph_pickle(20, 4)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:  # the address-space cap is process-wide: never set under another thread's feet
        assert safe_pickle._fast_load(data, safe_pickle.PLAIN | frozenset(GRAPH_GLOBALS),
                                      10**8, 1000) == (False, None)
    finally:
        stop.set()
        other.join()
    monkeypatch.setattr(safe_pickle.threading, "active_count", lambda: 1)  # see above
    assert safe_pickle._fast_load(data, safe_pickle.PLAIN | frozenset(GRAPH_GLOBALS),
                                  10**8, 1000)[0] is True
