"""``io.align.rescale`` builds its graph as one task dict (issue #18, session 9): no
``dask.delayed`` call per output block, a number of graph layers that does not grow with the
blocks, no ``distributed`` import — and still skimage's one-shot result, voxel for voxel, over
any chunking of the source (irregular chunks, windows)."""

from __future__ import annotations

import importlib
import json

import dask.array as da
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.io import align
from tests.fresh_cli import run_cli
from tests.rescale_reference import record_region_sizes, skimage_rescale


def _irregular_chunks(draw, n: int) -> tuple[int, ...]:
    """A random partition of ``n`` into chunk sizes (irregular, as a rechunked source)."""
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=4))) if n > 1 else []
    edges = [0, *cuts, n]
    return tuple(b - a for a, b in zip(edges, edges[1:], strict=False))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(2, 14), min_size=2, max_size=3), st.data(),
       st.sampled_from(["instance", "bool", "bool-full", "float32"]), st.integers(2, 6),
       st.integers(0, 2**31 - 1))
def test_rescale_over_irregular_chunks_equals_skimage_one_shot(shape, data, kind, block, seed):
    """Each block's region is put together from the source chunks it overlaps (any chunk
    sizes, a window anywhere): the result is the slice of skimage's whole-image rescale.
    ``bool-full`` is all foreground: skimage's clip to the source minimum then bites."""
    scale = tuple(data.draw(st.sampled_from([0.25, 0.4, 0.5, 2 / 3, 1.0, 1.5, 2.0, 3.0]))
                  for _ in shape)
    rng = np.random.default_rng(seed)
    if kind == "instance":
        img = rng.integers(0, 9, shape).astype(np.uint16)
    elif kind == "bool":
        img = rng.random(shape) > 0.5
    elif kind == "bool-full":
        img = np.ones(shape, bool)
    else:
        img = (rng.random(shape) * 0.8 + 0.1).astype(np.float32)  # minimum > 0: clipped
    chunks = tuple(_irregular_chunks(data.draw, n) for n in shape)
    full = align.rescaled_shape(shape, scale)
    window = tuple((a, data.draw(st.integers(a + 1, m)))
                   for a, m in ((data.draw(st.integers(0, m - 1)), m) for m in full))
    got = align.rescale(da.from_array(img, chunks=chunks), scale, instance=kind == "instance",
                        block=block, footprint=2 * block, window=window).compute()
    want = skimage_rescale(img, scale, kind == "instance")[tuple(slice(a, b) for a, b in window)]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_rescale_graph_makes_no_delayed_call_and_its_layers_do_not_grow(monkeypatch):
    """One layer of block tasks (each reads its region itself) and one of array keys,
    whatever the number of blocks (a ``dask.delayed`` call per block with a sliced dask array
    built ~4 layers per block, serially, ~1.3 ms each); the source's own tasks are hidden
    from the graph (the semantic clip floor is a task of the block layer too, session 10)."""
    def refuse(*args, **kwargs):
        raise AssertionError("dask.delayed called per block")

    # every dask.delayed(func)(...) call goes through this function of the module
    monkeypatch.setattr(importlib.import_module("dask.delayed"), "call_function", refuse)
    img = np.random.default_rng(1).integers(0, 5, (40, 40, 40)).astype(np.uint32)
    x = da.from_array(img, chunks=8)
    for instance in (True, False):
        few = align.rescale(x, (0.5,) * 3, instance=instance, block=16, footprint=64)
        many = align.rescale(x, (0.5,) * 3, instance=instance, block=4, footprint=8)
        assert few.numblocks == (2, 2, 2) and many.numblocks == (5, 5, 5)
        assert len(many.dask.layers) == len(few.dask.layers) == 2
        np.testing.assert_array_equal(many.compute(), few.compute())


def test_score_of_a_resampled_label_does_not_import_distributed(tmp_path, monkeypatch):
    """``gpueval score cellmap`` of a prediction at half the truth's voxel size (resampled,
    then rechunked onto the truth grid) in a fresh interpreter: scored, no ``distributed``
    (the first per-block ``dask.delayed`` call with a dask array argument imported it)."""
    import zarr

    from gpueval.bench.cellmap import build_crop
    from gpueval.challenges.cellmap.manifest import write_manifest
    from gpueval.io.align import Grid

    gt, pred = build_crop(40, 6, seed=18)
    fine = pred.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    for name, data, vs in (("truth", gt, 8.0), ("sub.zarr", fine, 4.0)):
        grp = zarr.open_group(str(tmp_path / name), mode="a", zarr_format=2)
        arr = grp.require_group("crop1").create_array("mito", shape=data.shape,
                                                      dtype=data.dtype, chunks=(16,) * 3)
        arr[:] = data
        arr.attrs.update(voxel_size=[vs] * 3, translation=[0.0] * 3)
    write_manifest(tmp_path / "m.csv",
                   [(1, "synthetic", "mito", Grid((8.0,) * 3, (0.0,) * 3, gt.shape))])
    # what the command line's entry point sets (gpueval.startup.run): no rechunk looks for a
    # distributed client, so only a rescale that imports it is caught here
    monkeypatch.setenv("DASK_ARRAY__RECHUNK__METHOD", "tasks")
    code, loaded, err = run_cli(
        ["score", "cellmap", "--truth", str(tmp_path / "truth"), "--submission",
         str(tmp_path / "sub.zarr"), "--device", "cpu", "--quiet", "--json",
         str(tmp_path / "r.json"), "--set", f"manifest={tmp_path / 'm.csv'}"],
        ["distributed"])
    assert code == 0 and loaded == [], err[-2000:]
    item = json.loads((tmp_path / "r.json").read_text())["items"][0]
    assert item["status"] == "scored" and item["tp"] > 0


class _CountingSource:
    """An array-like that counts the voxels read from it (what a storage array decodes)."""

    def __init__(self, data: np.ndarray):
        self.data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.voxels_read = 0

    def __getitem__(self, key):
        out = self.data[key]
        self.voxels_read += out.size
        return out


def test_rescale_reads_the_block_regions_and_the_floor_once(monkeypatch):
    """Each block reads its own region (so it holds no more), and a semantic label reads the
    source once more for skimage's clip floor — once, not once per block (the floor handed to
    each ``dask.delayed`` call as a dask array was reduced again in every one) — and only up
    to the first piece holding a voxel ≤ 0 (session 10: only a positive minimum is used): a
    label with background in its first corner reads that corner, an all-foreground one (its
    floor clips) the corner then every chunk."""
    regions = record_region_sizes(monkeypatch)
    img = np.random.default_rng(2).random((48, 48, 48)) > 0.4
    full = np.ones((48, 48, 48), bool)
    corner = min(48, align.FLOOR_PROBE) ** 3
    for source, instance, scale, floor_read in ((img, True, 2.0, 0), (img, False, 0.5, corner),
                                                (full, False, 0.5, corner + full.size)):
        regions.clear()
        src = _CountingSource(source)
        x = da.from_array(src, chunks=16, asarray=False, lock=False)
        got = align.rescale(x, (scale,) * 3, instance=instance, block=16 if instance else 4,
                            footprint=12)
        assert got.numblocks == (6, 6, 6)  # 2 blocks per source chunk, regions across
        np.testing.assert_array_equal(got.compute(),
                                      skimage_rescale(source, (scale,) * 3, instance))
        assert len(regions) == 6**3
        assert src.voxels_read == sum(regions) + floor_read
