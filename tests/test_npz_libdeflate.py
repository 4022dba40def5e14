"""npz members decoded whole by libdeflate (issue #19, session 8): exactly the bytes zipfile
would give, and every malformed member refused with a one-line ``Rejected`` — a stream that
inflates past the size its npy header declares (a bomb) fails on the exactly-sized buffer,
one that ends short of it, corrupt data, a wrong CRC-32, compressed bytes past the end of the
file. Other zip methods (bzip2, lzma) keep zipfile's streaming reader."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.errors import Rejected
from gpueval.io.arrays import load_npz_array

RAW = -15  # wbits of a raw deflate stream, as zip stores it


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, RAW)
    return c.compress(data) + c.flush()


def _hand_zip(path: Path, name: str, data: bytes, size: int, crc: int, method: int = 8,
              compress_size: int | None = None) -> Path:
    """A one-member zip written by hand, so the member may lie: ``data`` stored as is, with
    the declared ``size``, ``crc`` and ``compress_size`` (default ``len(data)``)."""
    n = name.encode()
    csize = len(data) if compress_size is None else compress_size
    head = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, csize, size,
                       len(n), 0) + n
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc,
                          csize, size, len(n), 0, 0, 0, 0, 0, 0) + n
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(head) + len(data),
                      0)
    path.write_bytes(head + data + central + end)
    return path


def _member_zip(path: Path, arr: np.ndarray, method: int) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as z:
        z.writestr("v.npy", _npy(arr))
    return path


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(0, 6), min_size=0, max_size=3),
       dtype=st.sampled_from(["u1", "<i2", ">i4", "<u8", "?", "<f4"]),
       fortran=st.booleans(), method=st.sampled_from([zipfile.ZIP_STORED,
                                                      zipfile.ZIP_DEFLATED,
                                                      zipfile.ZIP_BZIP2]),
       seed=st.integers(0, 2**16))
def test_every_method_reads_the_array_np_load_reads(tmp_path_factory, shape, dtype, fortran,
                                                    method, seed):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 7, shape).astype(dtype)
    if fortran:
        arr = np.asfortranarray(arr)
    p = _member_zip(tmp_path_factory.mktemp("m") / "v.npz", arr, method)
    got = load_npz_array(p, "v")
    with np.load(p) as z:
        want = z["v"]
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want) and got.flags.writeable and got.flags.aligned
    assert got.flags.f_contiguous if fortran and arr.ndim > 1 else got.flags.c_contiguous


def test_member_bytes_are_those_zipfile_gives(tmp_path):
    arr = np.arange(1000, dtype=np.uint16).reshape(10, 10, 10)
    raw = _npy(arr)
    p = _hand_zip(tmp_path / "v.npz", "v.npy", _deflate(raw), len(raw), zlib.crc32(raw))
    assert np.array_equal(load_npz_array(p, "v"), arr)


def _lying(tmp_path: Path, **change) -> Path:
    arr = np.arange(1000, dtype=np.uint16).reshape(10, 10, 10)
    raw = _npy(arr)
    member = dict(data=_deflate(raw), size=len(raw), crc=zlib.crc32(raw))
    member.update(change)
    return _hand_zip(tmp_path / "v.npz", "v.npy", **member)


def test_stream_ending_short_is_refused(tmp_path):
    raw = _npy(np.arange(1000, dtype=np.uint16).reshape(10, 10, 10))
    short = raw[:-100]  # the header declares 2000 data bytes, the stream inflates to 1900
    p = _lying(tmp_path, data=_deflate(short), crc=zlib.crc32(short))
    with pytest.raises(Rejected, match=r"v\.npz:v: data size differs from its header "
                                       r"\(2028 of 2128 bytes"):
        load_npz_array(p, "v")


def test_stream_inflating_past_the_header_is_refused(tmp_path):
    raw = _npy(np.arange(1000, dtype=np.uint16).reshape(10, 10, 10))
    p = _lying(tmp_path, data=_deflate(raw + bytes(5000)))
    with pytest.raises(Rejected, match="inflates past its declared size"):
        load_npz_array(p, "v")


def test_corrupt_stream_is_refused(tmp_path):
    # incompressible data, damaged in its last quarter: the npy header (read by zipfile)
    # inflates, the rest (libdeflate) does not
    arr = np.random.default_rng(0).integers(0, 256, (40, 50, 50), dtype=np.uint8)
    raw = _npy(arr)
    data = bytearray(_deflate(raw))
    cut = 3 * len(data) // 4
    data[cut:] = b"\xff" * (len(data) - cut)
    p = _hand_zip(tmp_path / "v.npz", "v.npy", bytes(data), len(raw), zlib.crc32(raw))
    with pytest.raises(Rejected, match=r"v\.npz:v: .*corrupt deflate data"):
        load_npz_array(p, "v")


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_wrong_crc_is_refused(tmp_path, method):
    # large enough that zipfile's own read of the npy header stops before the member's end
    # (it would check the CRC there): the check is this reader's
    raw = _npy(np.random.default_rng(1).integers(0, 256, (40, 50, 50), dtype=np.uint8))
    data = _deflate(raw) if method == zipfile.ZIP_DEFLATED else raw
    p = _hand_zip(tmp_path / "v.npz", "v.npy", data, len(raw), zlib.crc32(raw) ^ 1, method)
    with pytest.raises(Rejected, match=r"v\.npz:v: bad CRC-32 of the member"):
        load_npz_array(p, "v")


def test_compressed_size_past_the_end_is_refused(tmp_path):
    raw = _npy(np.arange(1000, dtype=np.uint16).reshape(10, 10, 10))
    p = _lying(tmp_path, compress_size=len(_deflate(raw)) + 10_000)
    with pytest.raises(Rejected, match=r"v\.npz"):
        load_npz_array(p, "v")


def test_stored_member_of_the_wrong_size_is_refused(tmp_path):
    raw = _npy(np.arange(1000, dtype=np.uint16).reshape(10, 10, 10))
    p = _lying(tmp_path, data=raw[:-10], method=0, crc=zlib.crc32(raw[:-10]))
    with pytest.raises(Rejected, match=r"v\.npz:v"):
        load_npz_array(p, "v")


def test_misaligned_data_is_copied_aligned(tmp_path):
    arr = np.arange(60, dtype=np.float64).reshape(3, 4, 5)
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4, 5), }"
    header += " " * (3 - (10 + len(header) + 1) % 8) + "\n"  # data at an odd offset
    raw = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + arr.tobytes()
    assert (10 + len(header)) % 8
    p = _hand_zip(tmp_path / "v.npz", "v.npy", _deflate(raw), len(raw), zlib.crc32(raw))
    got = load_npz_array(p, "v")
    assert got.flags.aligned and np.array_equal(got, arr)


def test_on_slices_gets_a_whole_member_once(tmp_path):
    arr = np.arange(120, dtype=np.int16).reshape(4, 5, 6)
    np.savez_compressed(tmp_path / "v.npz", v=arr)
    calls = []
    got = load_npz_array(tmp_path / "v.npz", "v",
                         on_slices=lambda a, n: calls.append((a, n)))
    assert len(calls) == 1 and calls[0][0] is got and calls[0][1] == 4


BOMB_CHILD = """
import sys
from gpueval.errors import Rejected
from gpueval.io.arrays import load_npz_array
try:
    load_npz_array(sys.argv[1], "v")
except Rejected as e:
    print(e)
"""


def test_bomb_fails_on_the_declared_buffer_under_a_memory_cap(tmp_path):
    """A member whose npy header declares 1 MiB but whose stream inflates to 2 GiB: refused
    without growing past the declared buffer (the child may not map 1.5 GB)."""
    from hostile2_cases import deflate_bomb

    raw = _npy(np.zeros(2**20, np.uint8))
    # the stream's first bytes are the npy header (a stored block, byte-aligned by the full
    # flush), then 2 GiB of zeros
    c = zlib.compressobj(0, zlib.DEFLATED, RAW)
    head = c.compress(raw[:128]) + c.flush(zlib.Z_FULL_FLUSH)
    body = deflate_bomb(2**31, wbits=RAW)
    p = _hand_zip(tmp_path / "v.npz", "v.npy", head + body, len(raw), 0)
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000,) * 2)\n"
            + BOMB_CHILD)
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).parent.parent,
                         env={"PYTHONPATH": str(Path(__file__).parent.parent)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "inflates past its declared size" in out.stdout


def test_without_libdeflate_zlib_streams_the_member(tmp_path, monkeypatch):
    from gpueval.io import arrays

    arr = np.arange(120, dtype=np.int16).reshape(4, 5, 6)
    np.savez_compressed(tmp_path / "v.npz", v=arr)
    monkeypatch.setattr(arrays, "_libdeflate", lambda: None)  # absent, or an older API
    calls = []
    got = load_npz_array(tmp_path / "v.npz", "v", on_slices=lambda a, n: calls.append(n))
    assert np.array_equal(got, arr) and calls[-1] == 4
