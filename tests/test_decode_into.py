"""Decoding a chunk into its destination (issue #18, session 8).

:func:`gpueval.io.bounded.decode` takes an ``out`` buffer of exactly the bound's size: the
bytes must be those of the plain decode, land in ``out`` itself (zstd, lzf, lz4, blosc decode
there; the others copy once), and every guard must answer as without ``out`` — the same
rejection, word for word, for a bomb or a short chunk. The direct zarr v2 reader decodes a
chunk that is one contiguous run of the block it returns straight into that block and any
other chunk into a per-thread scratch buffer that is reused.
"""

from __future__ import annotations

import bz2
import lzma
import subprocess
import sys
import textwrap
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.errors import Rejected
from gpueval.io import arrays, bounded


def _encode(codec: str, raw: bytes) -> bytes:
    import imagecodecs
    import numcodecs

    return {"zlib": lambda: zlib.compress(raw),
            "gzip": lambda: numcodecs.GZip().encode(raw),
            "bz2": lambda: bz2.compress(raw),
            "lzma": lambda: lzma.compress(raw),
            "zstd": lambda: imagecodecs.zstd_encode(raw),
            "lzf": lambda: imagecodecs.lzf_encode(raw),
            "lz4": lambda: bytes(numcodecs.LZ4().encode(raw)),
            "blosc": lambda: bytes(numcodecs.Blosc().encode(raw))}[codec]()


# the codecs whose library writes into the caller's buffer (no intermediate copy)
IN_PLACE = ("zstd", "lzf", "lz4", "blosc")


@settings(max_examples=60, deadline=None)
@given(codec=st.sampled_from(bounded.CODECS),
       raw=st.binary(min_size=1, max_size=3000) | st.builds(
           lambda n, b: bytes([b]) * n, st.integers(1, 5000), st.integers(0, 255)),
       slack=st.integers(0, 16))
def test_decode_into_out_gives_the_plain_decode_in_out(codec, raw, slack):
    # out may be larger than the stream (a bound, not exact): the first len bytes are the
    # plain decode's, and the view answered is out's own memory
    data = _encode(codec, raw)
    plain = bounded.decode(codec, data, len(raw) + slack, "x")
    out = np.full(len(raw) + slack, 0xAB, np.uint8)
    got = bounded.decode(codec, data, len(raw) + slack, "x", out=out)
    assert bytes(got) == plain == raw
    assert isinstance(got, memoryview) and np.shares_memory(np.asarray(got), out)
    assert bytes(out[:len(raw)]) == raw
    if slack:
        assert (out[len(raw):] == 0xAB).all()  # nothing written past the stream
    exact = np.empty(len(raw), np.uint8)
    assert bytes(bounded.decode(codec, data, len(raw), "x", exact=True, out=exact)) == raw


@pytest.mark.parametrize("codec", IN_PLACE)
def test_in_place_codecs_write_no_intermediate(codec, monkeypatch):
    # the answer *is* out (not a copy of a decode made elsewhere): writing to the view
    # changes out
    raw = np.arange(4096, dtype=np.uint32).tobytes()
    out = np.empty(len(raw), np.uint8)
    got = bounded.decode(codec, _encode(codec, raw), len(raw), "x", exact=True, out=out)
    got[0] = 7
    assert out[0] == 7


@pytest.mark.parametrize("codec", bounded.CODECS)
def test_a_short_chunk_is_refused_with_the_same_message(codec):
    raw = b"\x01\x02" * 500
    data = _encode(codec, raw)
    with pytest.raises(Rejected) as plain:
        bounded.decode(codec, data, len(raw) + 8, "c/0", exact=True)
    with pytest.raises(Rejected) as into:
        bounded.decode(codec, data, len(raw) + 8, "c/0", exact=True,
                       out=np.empty(len(raw) + 8, np.uint8))
    assert str(into.value) == str(plain.value)
    assert "decodes to 1000 bytes, expected 1008" in str(into.value)


def test_bombs_are_refused_into_out_as_without(tmp_path):
    # every codec's bomb (GiBs declared or produced) against a 4 KiB out: the same one-line
    # rejection as without out; in a child capped at 1.5 GB of address space, so a broken
    # guard fails the test instead of the machine
    script = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
        sys.path[:0] = [%r, %r]
        import numpy as np
        from hostile2_cases import BOMBS
        from gpueval.errors import Rejected
        from gpueval.io import bounded
        for codec, make in BOMBS.items():
            data = make()
            msgs = []
            for out in (None, np.empty(4096, np.uint8)):
                try:
                    bounded.decode(codec, data, 4096, "b", exact=True, out=out)
                    msgs.append("accepted")
                except Rejected as e:
                    msgs.append(str(e))
            assert msgs[0] == msgs[1] and "more than the 4096 bytes" in msgs[0], (codec, msgs)
        print("ok")
    """) % (str(Path(__file__).parent), str(Path(__file__).parent.parent))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_out_must_be_a_writable_buffer_of_the_bound():
    data = _encode("zstd", b"abc" * 10)
    for bad in (np.empty(31, np.uint8), np.empty(29, np.uint8),
                np.empty((10, 6), np.uint8)[:, :3]):  # too big, too small, not contiguous
        with pytest.raises(ValueError, match="out must"):
            bounded.decode("zstd", data, 30, "x", out=bad)
    ro = np.empty(30, np.uint8)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        bounded.decode("zstd", data, 30, "x", out=ro)
    # any C-contiguous array of the right byte size will do (a chunk-shaped destination)
    box = np.empty((2, 15), np.uint8)
    bounded.decode("zstd", data, 30, "x", exact=True, out=box)
    assert box.tobytes() == b"abc" * 10


# --------------------------------------------------------------------------------------------
# the direct zarr v2 reader


def _v2(path: Path, data: np.ndarray, chunks) -> Path:
    import numcodecs

    arr = zarr.create_array(str(path), shape=data.shape, chunks=chunks, dtype=data.dtype,
                            zarr_format=2, fill_value=0, compressors=numcodecs.Zstd(level=1))
    arr[...] = data
    return path


def _reader(path: Path):
    from gpueval.limits import resolve

    reader = arrays._open_reader(str(path), None, resolve(None))[0]
    assert type(reader) is arrays._ZarrV2Reader
    return reader


def test_a_whole_chunk_block_decodes_in_place_others_through_one_reused_scratch(
        tmp_path, monkeypatch):
    data = np.random.default_rng(1).integers(0, 2**32, (24, 20, 16), dtype=np.uint32)
    reader = _reader(_v2(tmp_path / "a.zarr", data, (8, 10, 16)))
    scratch: list[np.ndarray] = []
    real = arrays._scratch

    def counted(nbytes):
        buf = real(nbytes)
        scratch.append(buf)
        return buf

    monkeypatch.setattr(arrays, "_scratch", counted)
    # exactly one chunk, and a run of whole chunks along the first axis (contiguous in the
    # block): decoded straight into the block
    np.testing.assert_array_equal(reader[8:16, 10:20, 0:16], data[8:16, 10:20, 0:16])
    np.testing.assert_array_equal(reader[0:24, 0:10, 0:16], data[0:24, 0:10, 0:16])
    assert scratch == []
    # a block two chunks wide on the second axis: neither chunk is one run of it; a box
    # cutting chunks: all partial
    np.testing.assert_array_equal(reader[0:8, 0:20, 0:16], data[0:8, 0:20, 0:16])
    np.testing.assert_array_equal(reader[3:21, 4:17, 5:9], data[3:21, 4:17, 5:9])
    assert len(scratch) >= 2 + 4
    # the same thread got the same buffer every time: one chunk's bytes, reused
    mine = [b for b in scratch if np.shares_memory(b, scratch[0])]
    assert len(mine) >= 2 and all(b.nbytes == 8 * 10 * 16 * 4 for b in scratch)


def test_edge_chunks_and_missing_chunks_are_right_in_either_path(tmp_path):
    # 20 = 2 chunks of 8 + an edge chunk of 4 (stored full size): never in place
    data = np.random.default_rng(2).integers(0, 9, (20, 20), dtype=np.uint16)
    data[0:8, 8:16] = 0  # an all-zero chunk: zarr does not write it
    path = _v2(tmp_path / "b.zarr", data, (8, 8))
    reader = _reader(path)
    for key in ((slice(0, 20), slice(0, 20)), (slice(16, 20), slice(0, 8)),
                (slice(0, 8), slice(8, 16)), (slice(8, 16), slice(0, 20))):
        np.testing.assert_array_equal(reader[key], data[key])


def test_observers_see_one_call_per_chunk_read_only_while_observing(tmp_path):
    data = np.arange(32 * 8, dtype=np.uint32).reshape(32, 8)
    data[24:32] = 0  # the last chunk is never written
    reader = _reader(_v2(tmp_path / "c.zarr", data, (8, 8)))
    seen: list[tuple[str, str, int]] = []
    lock = threading.Lock()

    def note(path, key, nbytes):
        with lock:
            seen.append((path, key, nbytes))

    with arrays.observe_chunk_reads(note):
        reader[0:32, 0:8]  # 4 chunks: the thread-pool path
        reader[9:10, 0:8]
    reader[0:8, 0:8]  # not observed
    assert sorted(k for _, k, _ in seen) == ["0.0", "1.0", "1.0", "2.0"]
    assert all(p == str(tmp_path / "c.zarr") and n > 0 for p, _, n in seen)
    assert arrays._CHUNK_OBSERVERS == []
