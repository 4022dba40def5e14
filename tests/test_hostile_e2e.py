"""Hostile submissions end to end: ``gpueval score <challenge>`` exits 3 and writes a rejected JSON.

For every challenge a small valid truth and submission are built from the repo fixtures; each
hostile variant replaces (part of) the submission with an input of ``tests/hostile_corpus.py``
in that challenge's layout. The good submission must score (exit 0). A challenge that crashes
or scores a hostile input is recorded as ``xfail`` with the reason (owned by its helper).

A batch mixing good and hostile submissions goes through ``gpueval.rescore`` (one child process
per submission): the good ones are scored and every hostile one recorded with its reason.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import hostile_corpus as hc
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from gpueval import cli

FIX = Path(__file__).parent / "fixtures"


@dataclass
class E2E:
    challenge: str
    name: str
    make: Callable[[Path, Path], Path]  # (tmp, good submission) -> hostile submission
    expect: str
    sets: tuple[str, ...] = ()
    xfail: str | None = None


def _run(challenge: str, truth: Path, sub: Path, out: Path, sets=()) -> tuple[int, dict]:
    argv = ["score", challenge, "--truth", str(truth), "--submission", str(sub), "--json",
            str(out), "--quiet", "--device", "cpu"]
    for s in sets:
        argv += ["--set", s]
    rc = cli.main(argv)
    return rc, json.loads(out.read_text()) if out.exists() else {}


# --------------------------------------------------------------------------------------------
# valid truth + submission per challenge


def urisc_setup(tmp: Path) -> tuple[Path, Path, tuple[str, ...]]:
    z = np.load(FIX / "urisc" / "perfect.npz", allow_pickle=False)
    (tmp / "gt").mkdir()
    (tmp / "sub").mkdir()
    Image.fromarray(z["gt"]).save(tmp / "gt" / "img.png")
    tifffile.imwrite(tmp / "sub" / "img.tiff", z["pred"])
    return tmp / "gt", tmp / "sub", ()


def medsegfm_setup(tmp: Path):
    z = np.load(FIX / "medsegfm" / "perfect.npz", allow_pickle=False)
    (tmp / "truth").mkdir()
    (tmp / "sub").mkdir()
    np.savez(tmp / "truth" / "case1.npz", gts=z["gts"], spacing=z["spacing"])
    np.savez(tmp / "sub" / "case1.npz", segs=z["segs"])
    return tmp / "truth", tmp / "sub", ()


def xpress_setup(tmp: Path):
    from gpueval.io.skeleton import Skeleton, save_skeleton_npz

    z = np.load(FIX / "xpress" / "perfect.npz", allow_pickle=False)
    save_skeleton_npz(Skeleton(z["node_ids"], z["node_position_xyz"], z["edges"]),
                      tmp / "skel.npz")
    _xpress_h5(tmp / "sub.h5", z["segmentation"], z["voxel_size"], z["offset"])
    return tmp / "skel.npz", tmp / "sub.h5", ("roi=none",)


def _xpress_h5(path: Path, seg, vs, off, **kw) -> Path:
    with h5py.File(path, "w") as f:
        d = f.create_dataset("submission", data=seg, **kw)
        d.attrs["resolution"] = np.asarray(vs)
        d.attrs["offset"] = np.asarray(off)
    return path


def _xpress_zarr(path: Path, seg, vs, off) -> Path:
    g = zarr.open_group(path, mode="w", zarr_format=2)
    a = g.create_array("submission", shape=seg.shape, dtype=seg.dtype, chunks=(8, 8, 8))
    a[:] = seg
    a.attrs["resolution"] = [float(v) for v in vs]
    a.attrs["offset"] = [float(v) for v in off]
    return path


def cellmap_setup(tmp: Path):
    truth, sub = tmp / "truth", tmp / "sub.zarr"
    for f in sorted((FIX / "cellmap" / "e2e").glob("*.npz")):
        crop, label, kind = f.stem.split("_")
        z = np.load(f, allow_pickle=False)
        g = zarr.open_group(truth if kind == "truth" else sub, mode="a", zarr_format=2)
        a = g.require_group(crop).create_array(label, shape=z["data"].shape,
                                               dtype=z["data"].dtype, chunks=(16, 16, 16))
        a[:] = z["data"]
        a.attrs["voxel_size"] = list(map(float, z["voxel_size"]))
        a.attrs["translation"] = list(map(float, z["translation"]))
    return truth, sub, ()


def refuge_setup(tmp: Path):
    truth, sub = tmp / "truth", tmp / "sub"
    (truth / "Disc_Cup_Masks").mkdir(parents=True)
    (sub / "segmentation").mkdir(parents=True)
    z = np.load(FIX / "refuge" / "seg_perfect.npz", allow_pickle=False)
    gt, pred = (z[k] for k in ("gt", "pred")) if "gt" in z.files else (z[z.files[1]],
                                                                       z[z.files[0]])
    for name in ("g0001", "n0001"):
        Image.fromarray(gt).save(truth / "Disc_Cup_Masks" / f"{name}.bmp")
        Image.fromarray(pred).save(sub / "segmentation" / f"{name}.bmp")
    _csv(truth / "glaucoma_labels.csv", ["filename", "label"],
         [("g0001.jpg", 1), ("n0001.jpg", 0), ("g0002.jpg", 1), ("n0002.jpg", 0)])
    _csv(truth / "fovea_locations.csv", ["filename", "x", "y"],
         [("g0001.jpg", 10.0, 12.0), ("n0001.jpg", 20.0, 22.0)])
    _csv(sub / "classification_results.csv", ["FileName", "Glaucoma Risk"],
         [("g0001.jpg", 0.9), ("n0001.jpg", 0.2), ("g0002.jpg", 0.7), ("n0002.jpg", 0.4)])
    _csv(sub / "fovea_location_results.csv", ["ImageName", "Fovea_X", "Fovea_Y"],
         [("g0001.jpg", 11.0, 12.0), ("n0001.jpg", 20.0, 25.0)])
    return truth, sub, ()


def _csv(path: Path, header, rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


SETUPS = {"urisc": urisc_setup, "medsegfm": medsegfm_setup, "xpress": xpress_setup,
          "cellmap": cellmap_setup, "refuge": refuge_setup}


# --------------------------------------------------------------------------------------------
# hostile variants in each layout


def _zip_of(folder: Path, dest: Path, extra=(), skip=()) -> Path:
    """Zip ``folder`` (relative names) plus ``extra`` (name, bytes | ZipInfo) members."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(folder.rglob("*")):
                rel = p.relative_to(folder).as_posix()
                if p.is_file() and rel not in skip:
                    z.write(p, rel)
            for name, data in extra:
                z.writestr(name, data)
    return dest


def in_zip(*members, skip=()):
    """The good folder zipped, plus hostile members."""
    return lambda tmp, good: _zip_of(good, tmp / "hostile.zip", members, skip)


def zip_with_corpus(case_name: str):
    """A corpus zip whose member names are kept (the archive itself is the hostile part)."""
    return lambda tmp, good: hc.by_name(case_name).build(_fresh(tmp))


def _fresh(tmp: Path) -> Path:
    d = tmp / "hostile_src"
    d.mkdir()
    return d


def _copy(good: Path, tmp: Path) -> Path:
    dst = tmp / ("hostile" + good.suffix)
    if good.is_dir():
        shutil.copytree(good, dst, symlinks=True)
    else:
        shutil.copy(good, dst)
    return dst


def replace_file(rel: str, build: Callable[[Path], Path]):
    """Copy the good submission, replace ``rel`` by what ``build`` writes."""
    def make(tmp: Path, good: Path) -> Path:
        sub = _copy(good, tmp)
        src = build(_fresh(tmp))
        target = sub / rel
        target.unlink()
        if src.is_dir():
            shutil.copytree(src, target, symlinks=True)
        else:
            shutil.copy(src, target)
        return sub
    return make


def link_file(rel: str, how: str):
    """Replace ``rel`` with a symlink / hard link to a file outside, or a FIFO."""
    def make(tmp: Path, good: Path) -> Path:
        sub = _copy(good, tmp)
        secret = tmp / "secret.bin"
        shutil.copy(sub / rel, secret)
        (sub / rel).unlink()
        if how == "symlink":
            (sub / rel).symlink_to(secret)
        elif how == "hardlink":
            os.link(secret, sub / rel)
        else:
            os.mkfifo(sub / rel)
        return sub
    return make


def edit_zarr(array_rel: str, edit: Callable[[Path, Path], None]):
    """Copy the good zarr submission and apply ``edit(array_folder, tmp)`` to one array."""
    def make(tmp: Path, good: Path) -> Path:
        sub = _copy(good, tmp)
        edit(sub / array_rel, tmp)
        return sub
    return make


def _z_meta(**changes):
    def edit(arr: Path, tmp: Path) -> None:
        meta = json.loads((arr / ".zarray").read_text())
        meta.update(changes)
        (arr / ".zarray").write_text(json.dumps(meta))
    return edit


def _z_symlink_chunk(arr: Path, tmp: Path) -> None:
    chunk = next(p for p in sorted(arr.iterdir()) if not p.name.startswith("."))
    shutil.copy(chunk, tmp / "outside_chunk")
    chunk.unlink()
    chunk.symlink_to(tmp / "outside_chunk")


def _z_corrupt_chunk(arr: Path, tmp: Path) -> None:
    chunk = next(p for p in sorted(arr.iterdir()) if not p.name.startswith("."))
    chunk.write_bytes(b"not a compressed chunk")


def _z_rewrite(dtype=None, poke=None):
    """Rewrite one array with another dtype and a poked value (NaN, -1 ...)."""
    def edit(arr: Path, tmp: Path) -> None:
        a = zarr.open_array(arr, mode="r")
        data = a[:].astype(dtype or a.dtype)
        attrs = dict(a.attrs)
        chunks = a.chunks
        shutil.rmtree(arr)
        data.flat[len(data.flat) // 2] = poke
        b = zarr.create_array(arr, shape=data.shape, dtype=data.dtype, chunks=chunks,
                              zarr_format=2)
        b[:] = data
        b.attrs.update(attrs)
    return edit


def _npz(**arrays):
    def build(d: Path) -> Path:
        np.savez(d / "case1.npz", **arrays)
        return d / "case1.npz"
    return build


def _float_tiff_with_nan(d: Path) -> Path:
    z = np.load(FIX / "urisc" / "perfect.npz", allow_pickle=False)
    pred = z["pred"].astype(np.float32)
    pred[3, 3] = np.nan
    tifffile.imwrite(d / "img.tiff", pred)
    return d / "img.tiff"


def _xpress_variant(kind: str):
    def make(tmp: Path, good: Path) -> Path:
        z = np.load(FIX / "xpress" / "perfect.npz", allow_pickle=False)
        seg, vs, off = z["segmentation"], z["voxel_size"], z["offset"]
        if kind == "nan_zarr":
            s = seg.astype(np.float32)
            s[1, 1, 1] = np.nan
            return _xpress_zarr(tmp / "hostile.zarr", s, vs, off)
        if kind == "negative_zarr":
            s = seg.astype(np.int64)
            s[1, 1, 1] = -7
            return _xpress_zarr(tmp / "hostile.zarr", s, vs, off)
        p = _xpress_zarr(tmp / "hostile.zarr", seg, vs, off)
        arr = p / "submission"
        {"symlink_chunk": _z_symlink_chunk, "corrupt_chunk": _z_corrupt_chunk,
         "separator": _z_meta(dimension_separator="/../"),
         "huge_chunk": _z_meta(shape=[10**4] * 3, chunks=[10**4] * 3),
         "huge_shape": _z_meta(shape=[10**7] * 3)}[kind](arr, tmp)
        return p
    return make


def _h5_corpus(case_name: str):
    def make(tmp: Path, good: Path) -> Path:
        return hc.by_name(case_name).build(_fresh(tmp))
    return make


def _bz2_info(name: str) -> zipfile.ZipInfo:
    """bzip2 reaches ratios of 10^6 on zeros (deflate stops near 1000), over every config."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_BZIP2
    return info


ZIP_HOSTILE = [  # (name, members added to the zipped good folder, expect)
    ("zip_traversal", [("../evil.tiff", b"x")], "path traversal"),
    ("zip_absolute", [("/tmp/evil.tiff", b"x")], "absolute path"),
    ("zip_nested", [("inner.zip", b"PK\x05\x06" + bytes(18))], "nested archives"),
    ("zip_ratio_bomb", [(_bz2_info("bomb.bin"), bytes(40 << 20))], "zip bomb"),
    ("zip_long_name", [("a" * 2000, b"x")], "over the limit 1024"),
]
ZIP_CORPUS = [("zip_symlink", "link or special file"), ("zip_encrypted", "encrypted"),
              ("zip_truncated", "not a readable zip"), ("zip_overlap", "overlap"),
              ("zip_duplicate", "duplicate archive member"),
              ("zip_case_collision", "differ only in case"),
              ("zip_past_end", "past the end"), ("zip_bad_method", "unsupported compression")]


def _zip_cases(challenge: str) -> list[E2E]:
    out = [E2E(challenge, n, in_zip(*m), e) for n, m, e in ZIP_HOSTILE]
    out += [E2E(challenge, n, zip_with_corpus(n), e) for n, e in ZIP_CORPUS]
    return out


CASES: list[E2E] = [
    *_zip_cases("urisc"),
    E2E("urisc", "folder_symlink_out", link_file("img.tiff", "symlink"), "symbolic link"),
    E2E("urisc", "folder_hardlink", link_file("img.tiff", "hardlink"), "hard link"),
    E2E("urisc", "folder_fifo", link_file("img.tiff", "fifo"), "not a regular file"),
    E2E("urisc", "tiff_truncated", replace_file("img.tiff", lambda d: _truncated_pred_tiff(d)),
        "truncat|corrupt|cannot"),
    E2E("urisc", "tiff_huge_strip", replace_file("img.tiff", hc.tiff_huge_strip),
        "over the limit|truncat|pixels"),
    E2E("urisc", "tiff_complex", replace_file("img.tiff", hc.tiff_complex),
        "not supported|number type|complex"),
    E2E("urisc", "tiff_nan", replace_file("img.tiff", _float_tiff_with_nan),
        "NaN|not supported|float"),
    E2E("medsegfm", "npz_object", replace_file("case1.npz", _npz(segs=np.array([{}]))),
        "pickles are refused"),
    E2E("medsegfm", "npz_huge_header", replace_file("case1.npz", hc.npz_huge_header),
        "voxels, over the limit"),
    E2E("medsegfm", "npz_truncated_data", replace_file("case1.npz", hc.npz_truncated_data),
        "its header declares|data size differs|declared, expected"),
    E2E("medsegfm", "npz_complex", replace_file("case1.npz", hc.npz_complex),
        "not a number type|integer"),
    E2E("medsegfm", "npz_not_a_zip", replace_file("case1.npz", hc.npz_not_a_zip),
        "not a readable .npz"),
    E2E("medsegfm", "npz_negative_dim", replace_file("case1.npz", hc.npz_negative_dim),
        "negative dimension"),
    E2E("medsegfm", "npz_negative_ids", replace_file(
        "case1.npz", _npz(segs=-np.ones((4, 4, 4), np.int16))), "negative|shape"),
    E2E("medsegfm", "folder_symlink_out", link_file("case1.npz", "symlink"), "symbolic link"),
    E2E("medsegfm", "folder_hardlink", link_file("case1.npz", "hardlink"), "hard link"),
    E2E("medsegfm", "folder_fifo", link_file("case1.npz", "fifo"), "not a regular file"),
    E2E("xpress", "h5_truncated", _h5_corpus("h5_truncated"), "truncated file", ("roi=none",)),
    E2E("xpress", "h5_external", _h5_corpus("h5_external"), "external files", ("roi=none",)),
    E2E("xpress", "h5_external_link", _h5_corpus("h5_external_link"), "external link",
        ("roi=none",)),
    E2E("xpress", "h5_virtual", _h5_corpus("h5_virtual"), "virtual dataset", ("roi=none",)),
    E2E("xpress", "h5_huge_shape", _h5_corpus("h5_huge_shape"), "voxels, over the limit",
        ("roi=none",)),
    E2E("xpress", "h5_huge_chunk", _h5_corpus("h5_huge_chunk"), "one chunk of shape",
        ("roi=none",)),
    E2E("xpress", "zarr_symlink_chunk", _xpress_variant("symlink_chunk"),
        "link leaving the zarr store", ("roi=none",)),
    E2E("xpress", "zarr_corrupt_chunk", _xpress_variant("corrupt_chunk"), "corrupt",
        ("roi=none",)),
    E2E("xpress", "zarr_separator", _xpress_variant("separator"), "dimension_separator",
        ("roi=none",)),
    E2E("xpress", "zarr_huge_chunk", _xpress_variant("huge_chunk"),
        "one chunk of shape|declared array size",
        ("roi=none",)),
    E2E("xpress", "zarr_huge_shape", _xpress_variant("huge_shape"), "voxels, over the limit",
        ("roi=none",)),
    E2E("xpress", "zarr_nan", _xpress_variant("nan_zarr"), "NaN|not an integer",
        ("roi=none",)),
    E2E("xpress", "zarr_negative", _xpress_variant("negative_zarr"), "negative",
        ("roi=none",)),
    *_zip_cases("cellmap"),
    E2E("cellmap", "zarr_symlink_chunk", edit_zarr("crop9001/mito", _z_symlink_chunk),
        "link leaving the (zarr store|submission)"),
    E2E("cellmap", "zarr_corrupt_chunk", edit_zarr("crop9001/mito", _z_corrupt_chunk),
        "corrupt"),
    E2E("cellmap", "zarr_separator", edit_zarr("crop9001/mito",
                                               _z_meta(dimension_separator="/../")),
        "dimension_separator"),
    E2E("cellmap", "zarr_huge_shape", edit_zarr("crop9001/mito", _z_meta(shape=[10**7] * 3)),
        "voxels, over the limit"),
    E2E("cellmap", "zarr_huge_chunk", edit_zarr("crop9001/mito", _z_meta(
        shape=[10**4] * 3, chunks=[10**4] * 3)), "one chunk of shape|declared array size"),
    E2E("cellmap", "zarr_object_dtype", edit_zarr("crop9001/mito", _z_meta(dtype="|O")),
        "Python objects"),
    E2E("cellmap", "zarr_nan", edit_zarr("crop9001/mito", _z_rewrite(np.float32, np.nan)),
        "NaN"),
    *_zip_cases("refuge"),
    E2E("refuge", "bmp_huge_header", replace_file("segmentation/g0001.bmp",
                                                  hc.bmp_huge_header),
        "too large|over the limit|decompression bomb"),
    E2E("refuge", "bmp_truncated", replace_file("segmentation/g0001.bmp",
                                                lambda d: _truncated_bmp(d)),
        "truncated|not a readable|cannot"),
    E2E("refuge", "folder_symlink_out", link_file("segmentation/g0001.bmp", "symlink"),
        "symbolic link"),
    E2E("refuge", "folder_fifo", link_file("classification_results.csv", "fifo"),
        "not a regular file"),
    E2E("refuge", "csv_nan_risk", lambda tmp, good: _refuge_csv(tmp, good, "nan"),
        "NaN|finite|not a number"),
    E2E("refuge", "csv_inf_risk", lambda tmp, good: _refuge_csv(tmp, good, "inf"),
        "inf|finite|not a number"),
]


def _truncated_bmp(d: Path) -> Path:
    z = np.load(FIX / "refuge" / "seg_perfect.npz", allow_pickle=False)
    Image.fromarray(z["pred"]).save(d / "a.bmp")
    (d / "a.bmp").write_bytes((d / "a.bmp").read_bytes()[:5000])
    return d / "a.bmp"


def _truncated_pred_tiff(d: Path) -> Path:
    z = np.load(FIX / "urisc" / "perfect.npz", allow_pickle=False)
    tifffile.imwrite(d / "img.tiff", z["pred"], rowsperstrip=16)
    (d / "img.tiff").write_bytes((d / "img.tiff").read_bytes()[:3000])
    return d / "img.tiff"


def _refuge_csv(tmp: Path, good: Path, value: str) -> Path:
    sub = _copy(good, tmp)
    _csv(sub / "classification_results.csv", ["FileName", "Glaucoma Risk"],
         [("g0001.jpg", value), ("n0001.jpg", 0.2), ("g0002.jpg", 0.7), ("n0002.jpg", 0.4)])
    return sub


# Cases a challenge module crashes on or scores; filled in from the runs (owned elsewhere).
XFAIL: dict[tuple[str, str], str] = {}

for c in CASES:
    c.xfail = XFAIL.get((c.challenge, c.name))


def _available(challenge: str) -> bool:
    try:
        from gpueval.challenges import get_challenge

        get_challenge(challenge)
        return True
    except ImportError:
        return False


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    cache = {}

    def get(challenge):
        if challenge not in cache:
            tmp = tmp_path_factory.mktemp(f"good-{challenge}")
            cache[challenge] = SETUPS[challenge](tmp)
        return cache[challenge]
    return get


@pytest.mark.parametrize("challenge", sorted(SETUPS))
def test_good_submission_scores(challenge, setups, tmp_path):
    if not _available(challenge):
        pytest.skip(f"{challenge} has not landed")
    truth, good, sets = setups(challenge)
    rc, res = _run(challenge, truth, good, tmp_path / "out.json", sets)
    assert rc == 0 and res["status"] == "ok", res.get("error")


def _params():
    out = []
    for c in CASES:
        marks = [pytest.mark.xfail(reason=c.xfail, strict=True)] if c.xfail else []
        out.append(pytest.param(c, id=f"{c.challenge}-{c.name}", marks=marks))
    return out


@pytest.mark.parametrize("case", _params())
def test_hostile_submission_is_rejected_end_to_end(case, setups, tmp_path):
    if not _available(case.challenge):
        pytest.skip(f"{case.challenge} has not landed")
    truth, good, sets = setups(case.challenge)
    hostile = case.make(tmp_path, good)
    rc, res = _run(case.challenge, truth, hostile, tmp_path / "out.json", sets or case.sets)
    assert rc == 3, f"exit {rc}: {res.get('status')} {res.get('error')}"
    assert res["status"] == "rejected" and res["score"] is None
    assert re.search(case.expect, res["error"]), res["error"]
    assert "\n" not in res["error"]


def test_corpus_covers_every_challenge():
    assert {c.challenge for c in CASES} == set(SETUPS)
    assert len(CASES) >= 30


# --------------------------------------------------------------------------------------------
# the config's ``limits:`` reach the readers


_NOT_WIRED = ("neither gpueval.api.score nor this challenge makes Limits.from_config(cfg) "
              "current, so `limits:` in its config does not reach the shared readers (fix in "
              "api.score: `with use_limits(Limits.from_config(cfg)):` around module.score)")
LIMIT_CASES = [
    ("xpress", "limits.max_voxels=10", "over the limit 10", None, False),
    ("cellmap", "limits.max_archive_bytes=1000", "1000", None, True),
    ("medsegfm", "limits.max_voxels=10", "over the limit 10", None, False),
    ("urisc", "limits.max_archive_bytes=1000", "1000", None, True),
    ("refuge", "limits.max_archive_bytes=1000", "1000", None, True),
]


@pytest.mark.parametrize("challenge,setting,expect,xfail,as_zip", [
    pytest.param(*c, id=c[0], marks=[pytest.mark.xfail(reason=c[3], strict=True)] if c[3]
                 else []) for c in LIMIT_CASES])
def test_config_limits_reach_the_readers(challenge, setting, expect, xfail, as_zip, setups,
                                         tmp_path):
    truth, good, sets = setups(challenge)
    sub = _zip_of(good, tmp_path / "sub.zip") if as_zip else good
    rc, res = _run(challenge, truth, sub, tmp_path / "out.json", (*sets, setting))
    assert rc == 3 and res["status"] == "rejected", res.get("error")
    assert expect in res["error"]


# --------------------------------------------------------------------------------------------
# found by tests/test_fuzz_challenges.py (random campaign), kept as fixed examples


def _tiff_samples_edit(d: Path) -> Path:
    """The urisc prediction with SamplesPerPixel edited to 65281 (a 4-byte header edit)."""
    import struct

    z = np.load(FIX / "urisc" / "perfect.npz", allow_pickle=False)
    tifffile.imwrite(d / "img.tiff", z["pred"])
    data = bytearray((d / "img.tiff").read_bytes())
    with tifffile.TiffFile(d / "img.tiff") as tif:
        off = tif.pages[0].tags[277].valueoffset
    data[off:off + 2] = struct.pack("<H", 65281)
    (d / "img.tiff").write_bytes(bytes(data))
    return d / "img.tiff"


@pytest.mark.parametrize("reader", ["image", "volume"])
def test_tiff_samples_per_pixel_edit_is_refused_by_the_readers(reader, tmp_path):
    from test_fuzz_readers import bounded

    from gpueval.errors import Rejected

    path = _tiff_samples_edit(tmp_path)
    with pytest.raises(Rejected) as info, bounded(seconds=60):
        hc.read(reader, path)
    assert "MemoryError" not in str(info.value)


def test_urisc_tiff_samples_per_pixel_edit(setups, tmp_path):
    from test_fuzz_readers import bounded

    truth, good, sets = setups("urisc")
    sub = _copy(good, tmp_path)
    (sub / "img.tiff").unlink()
    src = _fresh(tmp_path)
    shutil.copy(_tiff_samples_edit(src), sub / "img.tiff")
    with bounded(seconds=60, extra=2 * 2**30):
        rc, res = _run("urisc", truth, sub, tmp_path / "out.json", sets)
    assert rc == 3 and "MemoryError" not in res["error"], res["error"]
