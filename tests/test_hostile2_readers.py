"""Issue #24 round two, reader classes: no reads outside the submission (HDF5), every decoder
bounded by the declared (checked) shape, and messages without server paths, temp folders or
``slice(...)`` reprs. The hostile inputs are built in :mod:`tests.hostile2_cases`; here each
is read and must be one line naming the submission-relative file — plus controls showing the
same readers still read legitimate files (links inside the file, every codec) exactly."""

from __future__ import annotations

import re
import resource
import zlib

import h5py
import hostile2_cases as hc
import numcodecs
import numpy as np
import pytest
import zarr
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gpueval.errors import Rejected
from gpueval.io import bounded
from gpueval.io.arrays import load_npz_array, open_volume, shown_relative_to


@pytest.fixture(autouse=True)
def _cap_address_space():
    """A bomb that got through would take gigabytes: fail fast instead of swapping."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("case", hc.CASES, ids=[c.name for c in hc.CASES])
def test_hostile2_case_is_one_line_rejection_without_server_paths(tmp_path, case):
    path, words = case.build(tmp_path)
    with pytest.raises(Rejected) as info:
        hc.read(case, path)
    msg = str(info.value)
    assert re.search(words, msg), f"{case.name}: {msg!r} does not match {words!r}"
    assert "\n" not in msg and len(msg) < 600
    assert str(tmp_path) not in msg and "/tmp" not in msg, msg
    assert "slice(" not in msg, msg


def test_every_class_has_cases():
    assert {c.cls for c in hc.CASES} == {"outside", "decode", "messages"}
    decoded = {c.name for c in hc.CASES if c.cls == "decode"}
    for codec in ("zlib", "gzip", "zstd", "lz4", "blosc", "bz2", "lzma"):
        assert f"zarr_v2_{codec}_bomb" in decoded


def test_outside_case_would_have_read_the_other_file(tmp_path):
    """The HDF5 cases are real: h5py itself follows the soft link into other.h5."""
    path, _ = hc.h5_soft_to_external(tmp_path)
    with h5py.File(path, "r") as f:
        assert (f["submission"][...] == hc.SECRET).all()


def test_links_inside_the_file_are_followed(tmp_path):
    p = tmp_path / "ok.h5"
    with h5py.File(p, "w") as f:
        f["g/real"] = hc.DATA
        f["g/rel"] = h5py.SoftLink("real")  # relative to its group
        f["alias"] = h5py.SoftLink("/g")
        f["chain"] = h5py.SoftLink("/alias/rel")
    for name in ("g/real", "g/rel", "alias/real", "alias/rel", "chain"):
        assert (open_volume(p, name).data.compute() == hc.DATA).all(), name


@pytest.mark.parametrize("filters", [dict(compression="gzip"), dict(compression="lzf"),
                                     dict(compression="gzip", shuffle=True),
                                     dict(compression="lzf", shuffle=True, fletcher32=True),
                                     dict(fletcher32=True)])
def test_hdf5_bounded_path_equals_h5py(tmp_path, filters):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2**16, (13, 9, 7)).astype("<u2")
    p = tmp_path / "f.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("x", data=a, chunks=(4, 5, 3), **filters)
        f.create_dataset("partial", shape=a.shape, dtype=a.dtype, chunks=(4, 5, 3),
                         fillvalue=7, **filters)
        f["partial"][:4, :5, :3] = 1
    with h5py.File(p, "r") as f:
        partial = f["partial"][...]
    v = open_volume(p, "x", chunks=(5, 4, 7))
    assert (v.data.compute() == a).all()
    assert (open_volume(p, "partial").data.compute() == partial).all()


@pytest.mark.parametrize("codec", ["zlib", "gzip", "zstd", "lz4", "blosc", "bz2", "lzma", None])
def test_zarr_v2_codecs_read_exactly(tmp_path, codec):
    comp = None if codec is None else numcodecs.get_codec({"id": codec})
    a = (np.arange(30 * 20) * 7919 % 65521).astype("u2").reshape(30, 20)
    z = zarr.create_array(tmp_path / "a.zarr", shape=a.shape, chunks=(8, 7), dtype="u2",
                          zarr_format=2, compressors=comp)
    z[...] = a
    assert (open_volume(tmp_path / "a.zarr").data.compute() == a).all()


@pytest.mark.parametrize("codec", ["gzip", "zstd", "blosc"])
@pytest.mark.parametrize("sharded", [False, True])
def test_zarr_v3_codecs_read_exactly(tmp_path, codec, sharded):
    comp = {"gzip": zarr.codecs.GzipCodec(), "zstd": zarr.codecs.ZstdCodec(),
            "blosc": zarr.codecs.BloscCodec()}[codec]
    a = (np.arange(30 * 20) * 7919 % 65521).astype("u2").reshape(30, 20)
    z = zarr.create_array(tmp_path / "a.zarr", shape=a.shape, chunks=(8, 5),
                          shards=(16, 10) if sharded else None, dtype="u2",
                          compressors=[comp])
    z[...] = a
    v = open_volume(tmp_path / "a.zarr")
    assert (v.data.compute() == a).all()
    assert (v.data[3:17, 2:9].compute() == a[3:17, 2:9]).all()


def test_npz_of_the_expected_shape_still_reads(tmp_path):
    np.savez_compressed(tmp_path / "ok.npz", segs=hc.DATA)
    out = load_npz_array(tmp_path / "ok.npz", "segs", expect_shape=hc.DATA.shape)
    assert (out == hc.DATA).all()


def test_messages_relative_to_the_submission_root(tmp_path):
    sub = tmp_path / "team" / "crop7"
    sub.mkdir(parents=True)
    path, _ = hc.h5_virtual(sub)
    with shown_relative_to(tmp_path / "team"), pytest.raises(Rejected) as info:
        open_volume(path, "submission")
    assert str(info.value).startswith("crop7/vds.h5:submission: a virtual dataset")
    with pytest.raises(Rejected) as info:  # no root: the file's name only
        open_volume(path, "submission")
    assert str(info.value).startswith("vds.h5:submission")


def test_missing_file_is_not_found_without_its_folder(tmp_path):
    with pytest.raises(Rejected, match=r"^nothing\.zarr: not found$"):
        open_volume(tmp_path / "nothing.zarr")


# -- the choke point itself -------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=3000), codec=st.sampled_from(bounded.CODECS),
       max_out=st.integers(0, 4096))
def test_decode_is_exact_or_refuses(data, codec, max_out):
    """Any bytes: either the codec's own output, at most ``max_out`` long, or Rejected."""
    try:
        out = bounded.decode(codec, data, max_out, "x")
    except Rejected as e:
        assert str(e).startswith("x: ")
        return
    assert len(out) <= max_out


@settings(max_examples=25, deadline=None)
@given(payload=st.binary(max_size=5000), codec=st.sampled_from(bounded.CODECS),
       slack=st.integers(0, 3))
def test_decode_round_trips_and_bounds(payload, codec, slack):
    """Encoded ``payload`` decodes to itself when allowed ``len + slack`` bytes and is
    refused when allowed one byte less than its length."""
    import imagecodecs

    assume(payload or codec != "lzf")  # LZF cannot encode nothing
    enc = {"zlib": lambda b: zlib.compress(b), "gzip": numcodecs.GZip().encode,
           "bz2": numcodecs.BZ2().encode, "lzma": numcodecs.LZMA().encode,
           "zstd": numcodecs.Zstd().encode, "lz4": numcodecs.LZ4().encode,
           "blosc": numcodecs.Blosc().encode, "lzf": imagecodecs.lzf_encode}[codec]
    raw = bytes(enc(payload))
    assert bounded.decode(codec, raw, len(payload) + slack, "x") == payload
    assert bounded.decode(codec, raw, len(payload), "x", exact=True) == payload
    if payload:
        with pytest.raises(Rejected, match="^x: "):
            bounded.decode(codec, raw, len(payload) - 1, "x")


def test_unknown_codec_is_refused():
    with pytest.raises(Rejected, match="compression 'snappy' is not accepted"):
        bounded.decode("snappy", b"", 10, "x")


def test_require_regular_names_fifo_and_missing(tmp_path):
    import os

    from gpueval.io.arrays import require_regular

    os.mkfifo(tmp_path / "sub.zip")
    with pytest.raises(Rejected, match=r"^sub\.zip: not a regular file"):
        require_regular(tmp_path / "sub.zip")
    with pytest.raises(Rejected, match=r"^gone: not found$"):
        require_regular(tmp_path / "gone")
    require_regular(tmp_path)  # a folder is fine


@settings(max_examples=40, deadline=None)
@given(key=st.tuples(
    st.one_of(st.integers(-9, 8), st.slices(9)),
    st.one_of(st.integers(-7, 6), st.slices(7))))
def test_hdf5_bounded_path_any_key_equals_numpy(tmp_path_factory, key):
    """Keys dask never sends (ints, steps, negative steps) still come from the bounded path
    and equal NumPy's indexing of the same array."""
    from gpueval.io.arrays import _Hdf5Reader

    p = tmp_path_factory.mktemp("k") / "k.h5"
    a = np.arange(9 * 7, dtype="<u4").reshape(9, 7)
    with h5py.File(p, "w") as f:
        f.create_dataset("x", data=a, chunks=(4, 3), compression="gzip")
    got = _Hdf5Reader(str(p), "x")[key]
    assert np.array_equal(got, a[key])


def test_library_messages_lose_their_folders():
    from gpueval.io.arrays import _why

    e = OSError("Unable to open file (name = '/srv/uploads/team7/tmpab12/x.h5', errno = 2)")
    assert _why(e) == "OSError: Unable to open file (name = 'x.h5', errno = 2)"
    e = ValueError('Error reading local file "/tmp/cellmap-q1/crop1/mito/0/0": bad')
    assert "/tmp" not in _why(e) and '"0": bad' in _why(e)
