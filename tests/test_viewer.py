"""Neuroglancer for errors: published links in the report, and ``gpueval view``'s server."""

from __future__ import annotations

import io
import json
import urllib.parse
import urllib.request
import zlib

import dask.array as da
import numpy as np
import pytest
from cellmap_cases import put

from gpueval import viewer
from gpueval.errors import UsageError
from gpueval.result import Result


@pytest.fixture
def cellmap_pair(tmp_path):
    # truth: two slabs (ids 1, 2) along z; submission: two slabs (5, 6) along y — every truth
    # object is split by the submission and every submitted object merges two truth objects
    gt = np.zeros((8, 8, 8), np.uint32)
    gt[:4], gt[4:] = 1, 2
    gt[:, :, 7] = 0  # a column only the submission labels: false objects
    pred = np.zeros_like(gt)
    pred[:, :4], pred[:, 4:] = 5, 6
    pred[:, 7, :] = 0  # a row only the truth labels: misses
    truth, sub = tmp_path / "gt.zarr", tmp_path / "sub.zarr"
    put(truth, "crop1", "mito", gt, chunks=(4, 4, 4))
    put(sub, "crop1", "mito", pred, chunks=(4, 4, 4))
    return truth, sub, gt, pred


def _cellmap_result():
    return Result("cellmap", "v", score=0.5, items=[
        {"id": "crop1/mito", "tp": 1, "fp": 1, "fn": 1, "status": "scored"}])


def test_published_source_keeps_the_path_inside_the_folder(cellmap_pair):
    truth, _, _, _ = cellmap_pair
    src = viewer.published_source(truth / "crop1" / "mito", truth, "https://host/data/")
    assert src == "zarr2://https://host/data/gt.zarr/crop1/mito"
    assert viewer.published_source(truth, truth, "s3://b/p") == "zarr2://s3://b/p/gt.zarr"


def test_report_link_with_prefix_opens_the_published_layers(cellmap_pair, tmp_path):
    from gpueval.report import write_report

    truth, sub, _, _ = cellmap_pair
    r = _cellmap_result()
    html = write_report(r, tmp_path / "r.html", truth=str(truth), submission=str(sub),
                        url_prefix="https://host/data").read_text()
    entry = r.extra["neuroglancer"]
    sources = {layer["name"]: layer.get("source") for layer in entry["state"]["layers"]}
    assert set(sources) == {"truth", "submission", "errors"}  # the layers `view` serves
    assert sources["truth"] == "zarr2://https://host/data/gt.zarr/crop1/mito"
    assert sources["submission"] == "zarr2://https://host/data/sub.zarr/crop1/mito"
    assert entry["state"]["dimensions"] == {k: [8e-9, "m"] for k in "zyx"}
    fragment = entry["url"].split("#!", 1)[1]
    assert json.loads(urllib.parse.unquote(fragment)) == entry["state"]  # the link is the state
    assert "id='neuroglancer'" in html and "https://host/data/gt.zarr" in html
    assert "file://" not in html


def test_report_without_prefix_shows_the_view_command(cellmap_pair, tmp_path):
    from gpueval.report import write_report

    truth, sub, _, _ = cellmap_pair
    r = _cellmap_result()
    html = write_report(r, tmp_path / "r.html", truth=str(truth), submission=str(sub)
                        ).read_text()
    assert "url" not in r.extra["neuroglancer"]
    assert f"gpueval view cellmap --truth {truth}" in html and "file://" not in html


def test_error_classes_by_hand(cellmap_pair):
    _, _, gt, pred = cellmap_pair
    err = viewer.error_classes(da.from_array(gt, chunks=4), da.from_array(pred, chunks=3),
                               instance=True).compute()
    want = np.zeros_like(err)
    want[(pred != 0) & (gt == 0)] = 1
    want[(gt != 0) & (pred == 0)] = 2
    # both labelled: every submitted object covers two truth objects -> merge outranks split
    want[(gt != 0) & (pred != 0)] = 4
    np.testing.assert_array_equal(err, want)
    one = np.where(pred == 6, 0, pred)  # only object 5 left: it still merges 1 and 2
    err = viewer.error_classes(da.from_array(gt, chunks=4), da.from_array(one, chunks=4),
                               instance=True).compute()
    assert set(np.unique(err[(gt != 0) & (one != 0)])) == {4}
    split_only = np.where(gt == 2, 0, gt)  # truth 1 alone, covered by 5 and 6: a split
    err = viewer.error_classes(da.from_array(split_only, chunks=4),
                               da.from_array(pred, chunks=4), instance=True).compute()
    both = (split_only != 0) & (pred != 0)
    assert set(np.unique(err[both])) == {3}


def test_semantic_error_classes():
    t = np.array([[0, 1, 2, 2]], np.uint8)
    s = np.array([[1, 0, 2, 3]], np.uint8)
    err = viewer.error_classes(da.from_array(t), da.from_array(s), instance=False).compute()
    np.testing.assert_array_equal(err, [[1, 2, 0, 3]])


def test_view_refuses_2d_challenges_and_unknown_items(cellmap_pair):
    truth, sub, _, _ = cellmap_pair
    with pytest.raises(UsageError, match="2-D"):
        viewer.input_volumes("urisc", truth, sub)
    with pytest.raises(UsageError, match="crop1/mito"):
        viewer.input_volumes("cellmap", truth, sub, item="crop9/er")
    (truth.parent / "sub.zip").write_bytes(b"PK")
    with pytest.raises(UsageError, match="unzip"):
        viewer.input_volumes("cellmap", truth, truth.parent / "sub.zip")


def test_medsegfm_volumes_are_in_mm(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "s").mkdir()
    np.savez(tmp_path / "t" / "c1.npz", gts=np.ones((2, 3, 4), np.uint8),
             spacing=np.array([2.5, 0.8, 0.8]))
    np.savez(tmp_path / "s" / "c1.npz", segs=np.ones((2, 3, 4), np.uint8))
    vols = viewer.input_volumes("medsegfm", tmp_path / "t", tmp_path / "s")
    assert vols["item"] == "c1" and vols["units"] == "mm"
    assert tuple(vols["truth"].voxel_size) == (2.5, 0.8, 0.8)
    assert vols["submission"].shape == (2, 3, 4)


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=20) as r:
        assert r.status == 200
        return r.read()


def test_view_server_answers_with_chunks_of_the_files(cellmap_pair):
    pytest.importorskip("neuroglancer", reason="the viewer extra (neuroglancer) is absent")
    import neuroglancer.server

    truth, sub, gt, pred = cellmap_pair
    v = viewer.serve("cellmap", truth, sub, bind_address="127.0.0.1", port=0)
    base = neuroglancer.server.global_server.server_url.rstrip("/")
    assert v.get_viewer_url().startswith(base)
    layers = {layer.name: layer.layer.source[0].url for layer in v.state.layers}
    assert set(layers) == {"truth", "submission", "errors"}
    want = {"truth": gt, "submission": pred,
            "errors": viewer.error_classes(da.from_array(gt), da.from_array(pred),
                                           instance=True).compute()}
    for name, source in layers.items():
        token = source.split("python://volume/", 1)[1]
        info = json.loads(_fetch(f"{base}/neuroglancer/info/{token}"))
        assert info["dataType"] == str(want[name].dtype)
        # the corner chunk (4³ of 8³), decoded as neuroglancer's npz encoding (zlib + .npy)
        raw = _fetch(f"{base}/neuroglancer/npz/{token}/1,1,1/0,0,4/4,4,8")
        chunk = np.load(io.BytesIO(zlib.decompress(raw)), allow_pickle=False)
        np.testing.assert_array_equal(chunk, want[name][:4, :4, 4:8])


def test_view_without_neuroglancer_is_a_usage_error(cellmap_pair, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_neuroglancer(name, *a, **k):
        if name == "neuroglancer":
            raise ImportError("absent")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_neuroglancer)
    truth, sub, _, _ = cellmap_pair
    with pytest.raises(UsageError, match=r"gpueval\[viewer\]"):
        viewer.serve("cellmap", truth, sub)


def test_cli_view_help_lists_the_3d_challenges(capsys):
    from gpueval.cli import main

    with pytest.raises(SystemExit):
        main(["view", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "cellmap, medsegfm or xpress" in out


def test_cli_view_prints_the_url_and_stops_on_ctrl_c(cellmap_pair, monkeypatch, capsys):
    import threading

    from gpueval.cli import main

    class FakeViewer:
        def get_viewer_url(self):
            return "http://127.0.0.1:1/v/x/"

    calls = {}

    def fake_serve(challenge, truth, submission, **kw):
        calls.update(challenge=challenge, **kw)
        return FakeViewer()

    def interrupted(self, timeout=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(viewer, "serve", fake_serve)
    monkeypatch.setattr(threading.Event, "wait", interrupted)
    truth, sub, _, _ = cellmap_pair
    assert main(["view", "cellmap", "--truth", str(truth), "--submission", str(sub),
                 "--item", "crop1/mito", "--no-browser", "--port", "8123"]) == 0
    assert "http://127.0.0.1:1/v/x/" in capsys.readouterr().out
    assert calls == {"challenge": "cellmap", "item": "crop1/mito", "bind_address": "127.0.0.1",
                     "port": 8123}


def test_xpress_view_shows_the_volume_and_skeleton_nodes(tmp_path):
    from xpress_cases import fixture, write_case

    skel, sub, _ = write_case(tmp_path, "mixed", fmt="zarr")
    z = fixture("mixed")
    vols = viewer.input_volumes("xpress", skel, sub)
    assert vols["truth"] is None and vols["submission"].shape == z["segmentation"].shape
    # node positions (x, y, z nm) become (z, y, x) voxels of the submission's grid
    want = (z["node_position_xyz"][:, ::-1] - z["offset"]) / z["voxel_size"]
    np.testing.assert_allclose(vols["points"], want)


def test_view_requests_decode_only_the_storage_chunks_under_them(tmp_path):
    import collections

    import zarr

    from gpueval.io.arrays import observe_chunk_reads, open_volume

    data = np.arange(16 ** 3, dtype=np.uint32).reshape(16, 16, 16)
    a = zarr.create_array(str(tmp_path / "v.zarr"), shape=data.shape, chunks=(4, 4, 4),
                          dtype=data.dtype, zarr_format=2, fill_value=0)
    a[:] = data
    vol = open_volume(tmp_path / "v.zarr")
    assert vol.data.numblocks == (1, 1, 1)  # one dask chunk holds all 64 storage chunks
    lazy = viewer.LazyChunks(vol.data)
    seen: collections.Counter = collections.Counter()
    with observe_chunk_reads(lambda path, key, _n: seen.update([key])):
        got = lazy[np.s_[2:6, 0:4, 12:16]]
    np.testing.assert_array_equal(got, data[2:6, 0:4, 12:16])
    assert sum(seen.values()) == 2 and max(seen.values()) == 1  # z chunks 0 and 1, once each
    # a derived array (the errors layer) still goes through dask, with the same values
    twice = viewer.LazyChunks(vol.data * 2)
    np.testing.assert_array_equal(twice[np.s_[0:3, 5:9, 1:2]], 2 * data[0:3, 5:9, 1:2])
