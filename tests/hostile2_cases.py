"""Hostile inputs of issue #24 (round two), built by code: reads outside the submission
(HDF5 links, virtual datasets, external storage), decompression bombs for every codec the
readers accept, and message leaks (server paths, FIFOs, ``slice(...)`` reprs).

Every builder takes a folder and returns ``(path, words)``: the hostile input written in that
folder and a regular expression the one-line rejection must match. :data:`CASES` lists them
with how to read them (``reader``: ``volume`` = :func:`gpueval.io.arrays.open_volume` and
compute, ``npz`` = :func:`~gpueval.io.arrays.load_npz_array`, ``archive`` =
:class:`~gpueval.io.archive.SafeArchive`), so that a batch test elsewhere (e.g. ``rescore``)
can reuse them; :func:`read` does the reading.

The bombs are small on disk and cheap to build (the deflate body is one full-flushed
1 MiB-of-zeros block repeated; zstd is hand-written RLE blocks; LZF is repeated 264-byte back
references) but each inflates to 2 GiB or declares more, so an unbounded decoder would take
gigabytes.
"""

from __future__ import annotations

import base64
import bz2
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

GiB = 2**30
BOMB_BYTES = 2 * GiB  # what the stream codecs' bombs inflate to

# --------------------------------------------------------------------------------------------
# Bomb streams (each inflates to ``size`` zero bytes or declares it)


def deflate_bomb(size: int = BOMB_BYTES, wbits: int = 15) -> bytes:
    """A zlib (``wbits=15``) or gzip (``31``) stream of ``size`` zeros, built in milliseconds:
    after a full flush the compressor's state is reset, so every further 1 MiB block
    compresses to the same bytes. The trailer checksum is wrong (a decoder finds out only
    after inflating everything)."""
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(2**20)
    first = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    return first + again * (max(size // 2**20, 1) - 1) + c.flush()


def zstd_bomb(size: int = BOMB_BYTES, declared: int | None = None) -> bytes:
    """A zstd frame of RLE blocks (4 bytes per 128 KiB of zeros) whose header declares
    ``declared`` bytes (default ``size``; the frame content size field is 8 bytes)."""
    declared = size if declared is None else declared
    head = struct.pack("<I", 0xFD2FB528) + bytes([0xE0]) + struct.pack("<Q", declared)
    full, rest = divmod(size, 2**17)
    blocks = []
    sizes = [2**17] * full + ([rest] if rest else [])
    for i, n in enumerate(sizes):
        last = 1 if i == len(sizes) - 1 else 0
        blocks.append(struct.pack("<I", last | (1 << 1) | (n << 3))[:3] + b"\0")
    return head + b"".join(blocks)


def lzf_bomb(size: int = BOMB_BYTES) -> bytes:
    """LZF: one literal zero, then back references of 264 bytes at distance 1."""
    return b"\x00\x00" + b"\xe0\xff\x00" * (size // 264)


def lz4_declaring(declared: int) -> bytes:
    """numcodecs LZ4 framing (4-byte size prefix) declaring ``declared`` bytes."""
    import numcodecs

    good = numcodecs.LZ4().encode(bytes(64))
    return struct.pack("<I", min(declared, 2**32 - 1)) + good[4:]


def blosc_declaring(declared: int) -> bytes:
    """A blosc buffer whose header declares ``declared`` uncompressed bytes."""
    import numcodecs

    good = bytearray(numcodecs.Blosc().encode(bytes(64)))
    good[4:8] = struct.pack("<I", min(declared, 2**32 - 1))
    return bytes(good)


# bz2 and xz have no shortcut: these are bz2/xz of 1 GiB of zeros, made once with
# ``bz2.BZ2Compressor(9)`` / ``lzma.LZMACompressor(preset=0)`` over 64 blocks of 16 MiB
# (18 s and 6 s), stored at the end of this file bz2-compressed and base64-encoded.


def bz2_bomb() -> bytes:
    """bz2 of 1 GiB of zeros (785 bytes)."""
    return bz2.decompress(base64.b64decode(_BZ2_1GIB_B64))


def xz_bomb() -> bytes:
    """xz of 1 GiB of zeros."""
    return bz2.decompress(base64.b64decode(_XZ_1GIB_B64))


#: codec name (as :func:`gpueval.io.bounded.decode` spells it) -> bomb builder
BOMBS: dict[str, Callable[[], bytes]] = {
    "zlib": lambda: deflate_bomb(),
    "gzip": lambda: deflate_bomb(wbits=31),
    "zstd": lambda: zstd_bomb(),
    "lzf": lambda: lzf_bomb(),
    "lz4": lambda: lz4_declaring(2**32 - 1),
    "blosc": lambda: blosc_declaring(2**32 - 1),
    "bz2": bz2_bomb,
    "lzma": xz_bomb,
}

# --------------------------------------------------------------------------------------------
# 1. Reads outside the submission (HDF5)

DATA = (np.arange(4 * 5 * 6) % 7).astype(np.uint8).reshape(4, 5, 6)
SECRET = np.full((4, 5, 6), 9, np.uint8)  # what another file holds


def _other(d: Path) -> Path:
    import h5py

    p = d / "other.h5"
    with h5py.File(p, "w") as f:
        f["g/x"] = SECRET
    return p


def _h5_links(d: Path, name: str, links: dict[str, Any], *, other: bool = True) -> Path:
    """Write ``d/name`` holding ``links`` (``{path in the file: h5py link}``, set in order)
    and, with ``other``, the ``other.h5`` holding :data:`SECRET` that they reach into."""
    import h5py

    if other:
        _other(d)
    p = d / name
    with h5py.File(p, "w") as f:
        for key, link in links.items():
            f[key] = link
    return p


def h5_soft_to_external(d: Path) -> tuple[Path, str]:
    import h5py

    return _h5_links(d, "soft_ext.h5", {
        "ext": h5py.ExternalLink("other.h5", "/g"),
        "submission": h5py.SoftLink("/ext/x"),
    }), r"soft_ext\.h5:submission: 'ext' is an external link"


def h5_soft_chain_to_external(d: Path) -> tuple[Path, str]:
    import h5py

    return _h5_links(d, "chain.h5", {
        "ext": h5py.ExternalLink("other.h5", "/g/x"),
        "a": h5py.SoftLink("/b"),
        "b": h5py.SoftLink("/c"),
        "submission": h5py.SoftLink("/a"),
        "c": h5py.SoftLink("ext"),
    }), r"'ext' is an external link"


def h5_soft_group_then_external(d: Path) -> tuple[Path, str]:
    """A soft link to a group, then an external link inside that group."""
    import h5py

    return _h5_links(d, "grp.h5", {
        "real/x": h5py.ExternalLink("other.h5", "/g/x"),
        "alias": h5py.SoftLink("/real"),
    }), r"grp\.h5:alias/x: 'alias/x' is an external link"


def h5_external_component(d: Path) -> tuple[Path, str]:
    """The external link is an intermediate group of the dataset path."""
    import h5py

    return _h5_links(d, "mid.h5", {
        "outer/inner": h5py.ExternalLink("other.h5", "/g"),
    }), r"'outer/inner' is an external link"


def h5_soft_cycle(d: Path) -> tuple[Path, str]:
    import h5py

    return _h5_links(d, "cycle.h5", {
        "a": h5py.SoftLink("/b"),
        "b": h5py.SoftLink("/a"),
        "submission": h5py.SoftLink("/a"),
    }, other=False), r"nested soft links"


def h5_virtual(d: Path) -> tuple[Path, str]:
    import h5py

    _other(d)
    p = d / "vds.h5"
    layout = h5py.VirtualLayout(shape=SECRET.shape, dtype=SECRET.dtype)
    layout[...] = h5py.VirtualSource("other.h5", "g/x", shape=SECRET.shape)
    with h5py.File(p, "w") as f:
        f.create_virtual_dataset("submission", layout)
    return p, r"vds\.h5:submission: a virtual dataset"


def h5_external_storage(d: Path) -> tuple[Path, str]:
    import h5py

    (d / "raw.bin").write_bytes(SECRET.tobytes())
    p = d / "extstore.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("submission", shape=SECRET.shape, dtype=SECRET.dtype,
                         external=[("raw.bin", 0, SECRET.nbytes)])
    return p, r"extstore\.h5:submission: the dataset stores its data in external files"


# --------------------------------------------------------------------------------------------
# 2. Decompression bombs through the readers


def _h5_raw_chunk(d: Path, name: str, raw: bytes, **filters: Any) -> Path:
    import h5py

    p = d / name
    with h5py.File(p, "w") as f:
        ds = f.create_dataset("submission", shape=(16, 16, 16), dtype="u1", chunks=(8, 8, 8),
                              **filters)
        ds[...] = 1
        ds.id.write_direct_chunk((0, 0, 0), raw)
    return p


def h5_gzip_bomb(d: Path) -> tuple[Path, str]:
    return (_h5_raw_chunk(d, "gzip_bomb.h5", deflate_bomb(), compression="gzip"),
            r"gzip_bomb\.h5:submission chunk at \(0, 0, 0\): compressed data decodes to more "
            r"than the 512 bytes")


def h5_shuffle_gzip_bomb(d: Path) -> tuple[Path, str]:
    return (_h5_raw_chunk(d, "shuffle_bomb.h5", deflate_bomb(), compression="gzip",
                          shuffle=True, fletcher32=True),
            r"shuffle_bomb\.h5:submission chunk at \(0, 0, 0\): compressed data decodes to "
            r"more than the 512 bytes")


def h5_lzf_bomb(d: Path) -> tuple[Path, str]:
    return (_h5_raw_chunk(d, "lzf_bomb.h5", lzf_bomb(), compression="lzf"),
            r"lzf_bomb\.h5:submission chunk at \(0, 0, 0\): compressed data decodes to more")


def _zarr_with_chunk(d: Path, name: str, raw: bytes, *, v3: bool = False, **kw: Any) -> Path:
    import zarr

    p = d / name
    a = zarr.create_array(p, shape=(16, 16), chunks=(8, 8), dtype="u2",
                          zarr_format=3 if v3 else 2, **kw)
    a[...] = 1
    key = "c/0/0" if v3 else "0.0"
    (p / key).write_bytes(raw)
    return p


def _v2(codec: str, raw: bytes):
    import numcodecs

    comp = {"zlib": numcodecs.Zlib(), "gzip": numcodecs.GZip(), "zstd": numcodecs.Zstd(),
            "lz4": numcodecs.LZ4(), "blosc": numcodecs.Blosc(), "bz2": numcodecs.BZ2(),
            "lzma": numcodecs.LZMA()}[codec]

    def build(d: Path) -> tuple[Path, str]:
        return (_zarr_with_chunk(d, f"v2_{codec}.zarr", raw if raw else BOMBS[codec](),
                                 compressors=comp),
                rf"v2_{codec}\.zarr chunk '0\.0': compressed data decodes to more than the "
                r"128 bytes")

    build.__name__ = f"zarr_v2_{codec}_bomb"
    return build


def _v3(codec: str):
    import zarr

    def build(d: Path) -> tuple[Path, str]:
        comp = {"gzip": zarr.codecs.GzipCodec(), "zstd": zarr.codecs.ZstdCodec(),
                "blosc": zarr.codecs.BloscCodec()}[codec]
        return (_zarr_with_chunk(d, f"v3_{codec}.zarr", BOMBS[codec](), v3=True,
                                 compressors=[comp]),
                rf"v3_{codec}\.zarr chunk 'c/0/0': compressed data decodes to more than "
                r"the 128 bytes")

    build.__name__ = f"zarr_v3_{codec}_bomb"
    return build


def zarr_v3_sharded_bomb(d: Path) -> tuple[Path, str]:
    """A sharded v3 array whose first inner chunk is a zstd bomb (the index rewritten)."""
    import zarr

    p = d / "v3s.zarr"
    a = zarr.create_array(p, shape=(16, 16), chunks=(8, 8), shards=(16, 16), dtype="u2",
                          compressors=[zarr.codecs.ZstdCodec()],
                          )
    a[...] = 1
    shard = p / "c" / "0" / "0"
    old = shard.read_bytes()
    # default index: 4 (offset, nbytes) uint64 pairs + crc32c at the end
    idx = np.frombuffer(old[-(16 * 4 + 4):-4], "<u8").reshape(4, 2).copy()
    bomb = zstd_bomb(2**24)
    data = bytearray(bomb)
    starts = []
    for off, n in idx:
        starts.append(len(data))
        data += old[int(off):int(off + n)]
    idx[0] = (0, len(bomb))
    for i in range(1, 4):
        idx[i, 0] = starts[i]
    body = idx.tobytes()
    shard.write_bytes(bytes(data) + body + struct.pack("<I", _crc32c(body)))
    return p, r"v3s\.zarr chunk 'c/0/0': compressed data decodes to more than the 128 bytes"


def zarr_v3_sharded_decoy_metadata(d: Path) -> tuple[Path, str]:
    """The sharded bomb plus a decoy uncompressed ``zarr.json`` planted in the chunk folder,
    hoping the reader takes the decoy's codecs for the shard's."""
    import json

    p, words = zarr_v3_sharded_bomb(d)
    decoy = {"zarr_format": 3, "node_type": "array", "shape": [2**20], "data_type": "uint8",
             "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2**20]}},
             "chunk_key_encoding": {"name": "default"}, "fill_value": 0,
             "codecs": [{"name": "bytes"}]}
    (p / "c" / "0" / "zarr.json").write_text(json.dumps(decoy))
    return p, words


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bitwise: only for the 64-byte shard index above."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def zarr_v2_zstd_declares_2_40(d: Path) -> tuple[Path, str]:
    """A zstd frame declaring 2**40 content bytes (holding 1 KiB)."""
    return _v2("zstd", zstd_bomb(1024, declared=2**40))(d)


def npz_other_shape(d: Path) -> tuple[Path, str]:
    """An npz declaring (and holding) 4096³ zeros (64 GiB) where the truth is (4, 5, 6): read
    with ``expect_shape=(4, 5, 6)`` it is refused before anything is allocated."""
    p = d / "big.npz"
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False,
                                               "shape": (4096, 4096, 4096)})
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("segs.npy", buf.getvalue() + bytes(2**16))
    return p, r"big\.npz:segs: shape \(4096, 4096, 4096\) declared, expected \(4, 5, 6\)"


def zip_member_over_limit(d: Path) -> tuple[Path, str]:
    """A zip whose central directory says one member inflates to 3 GiB (over the default
    ``max_chunk_bytes`` of 2 GiB per member)."""
    p = d / "big_member.zip"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as z:
        z.writestr("crop1/mito/0.0.0", bytes(16))
    raw = bytearray(p.read_bytes())
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24:cd + 28] = struct.pack("<I", 3 * GiB)  # uncompressed size
    p.write_bytes(bytes(raw))
    return p, r"'crop1/mito/0\.0\.0' declares 3221225472 bytes, over the per-member limit"


def tiff_jpeg(d: Path) -> tuple[Path, str]:
    import tifffile

    p = d / "lossy.tif"
    tifffile.imwrite(p, np.zeros((64, 64), np.uint8), compression="jpeg", tile=(16, 16))
    return p, r"lossy\.tif: page 0 uses image compression JPEG"


# --------------------------------------------------------------------------------------------
# 3. Messages


def fifo_submission(d: Path) -> tuple[Path, str]:
    p = d / "pipe.zarr"
    os.mkfifo(p)
    return p, r"^pipe\.zarr: not a regular file"


def fifo_chunk_in_zarr(d: Path) -> tuple[Path, str]:
    import zarr

    p = d / "fifo.zarr"
    a = zarr.create_array(p, shape=(16, 16), chunks=(8, 8), dtype="u2", zarr_format=2)
    a[...] = 1
    (p / "0.0").unlink()
    os.mkfifo(p / "0.0")
    return p, r"fifo\.zarr: '0\.0' is not a regular file"


def h5_corrupt_chunk(d: Path) -> tuple[Path, str]:
    """A gzip chunk of garbage: the message names the chunk, without ``slice(...)``."""
    return (_h5_raw_chunk(d, "garbage.h5", b"not deflate at all", compression="gzip"),
            r"garbage\.h5:submission chunk at \(0, 0, 0\): corrupt zlib data")


def h5_not_hdf5(d: Path) -> tuple[Path, str]:
    """Not an HDF5 file: h5py's error, in one line, without the folder."""
    p = d / "fake.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    return p, r"^fake\.h5: cannot be opened as an array \(OSError: "


def missing_dataset_under_tmp(d: Path) -> tuple[Path, str]:
    import h5py

    p = d / "named.h5"
    with h5py.File(p, "w") as f:
        f["other"] = DATA
    return p, r"^named\.h5:submission: no dataset 'submission'"


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One hostile input: ``build(folder) -> (path, words)``, read with ``reader``."""

    name: str
    cls: str  # "outside" | "decode" | "messages"
    build: Callable[[Path], tuple[Path, str]]
    reader: str = "volume"
    dataset: str | None = "submission"
    kwargs: dict[str, Any] = field(default_factory=dict)


CASES: list[Case] = [
    Case("h5_soft_to_external", "outside", h5_soft_to_external),
    Case("h5_soft_chain_to_external", "outside", h5_soft_chain_to_external),
    Case("h5_soft_group_then_external", "outside", h5_soft_group_then_external,
         dataset="alias/x"),
    Case("h5_external_component", "outside", h5_external_component, dataset="outer/inner/x"),
    Case("h5_soft_cycle", "outside", h5_soft_cycle),
    Case("h5_virtual", "outside", h5_virtual),
    Case("h5_external_storage", "outside", h5_external_storage),
    Case("h5_gzip_bomb", "decode", h5_gzip_bomb),
    Case("h5_shuffle_gzip_bomb", "decode", h5_shuffle_gzip_bomb),
    Case("h5_lzf_bomb", "decode", h5_lzf_bomb),
    *[Case(f"zarr_v2_{c}_bomb", "decode", _v2(c, b""), dataset=None)
      for c in ("zlib", "gzip", "zstd", "lz4", "blosc", "bz2", "lzma")],
    Case("zarr_v2_zstd_declares_2_40", "decode", zarr_v2_zstd_declares_2_40, dataset=None),
    *[Case(f"zarr_v3_{c}_bomb", "decode", _v3(c), dataset=None)
      for c in ("gzip", "zstd", "blosc")],
    Case("zarr_v3_sharded_bomb", "decode", zarr_v3_sharded_bomb, dataset=None),
    Case("zarr_v3_sharded_decoy_metadata", "decode", zarr_v3_sharded_decoy_metadata,
         dataset=None),
    Case("npz_other_shape", "decode", npz_other_shape, reader="npz", dataset="segs",
         kwargs={"expect_shape": (4, 5, 6)}),
    Case("zip_member_over_limit", "decode", zip_member_over_limit, reader="archive"),
    Case("tiff_jpeg", "decode", tiff_jpeg, dataset=None),
    Case("fifo_submission", "messages", fifo_submission, dataset=None),
    Case("fifo_chunk_in_zarr", "messages", fifo_chunk_in_zarr, dataset=None),
    Case("h5_corrupt_chunk", "messages", h5_corrupt_chunk),
    Case("missing_dataset", "messages", missing_dataset_under_tmp),
    Case("h5_not_hdf5", "messages", h5_not_hdf5),
]


def read(case: Case, path: Path) -> Any:
    """Read ``path`` the way ``case`` says (raises :class:`~gpueval.errors.Rejected`)."""
    if case.reader == "npz":
        from gpueval.io.arrays import load_npz_array

        return load_npz_array(path, case.dataset, **case.kwargs)
    if case.reader == "archive":
        from gpueval.io.archive import SafeArchive

        with SafeArchive(path, **case.kwargs) as z:
            return z.names()
    from gpueval.io.arrays import open_volume

    return open_volume(path, case.dataset, **case.kwargs).data.compute(scheduler="sync")


_BZ2_1GIB_B64 = (
    "QlpoOTFBWSZTWRskHfcAAML/9/ZxgIBTIGBgf0JYMKBAEARAcWCAQSBAZAAAlAABACAAkDAAAAADQaANANAIqkTEaYmj"
    "aI0ZNMQxNqaeJ5BSkBkAezEAwh5qlSpZgrkAcqpWqcFSeXyAYVKl4Bl7gHZUqfX9FU3APrxVNk9Eypk6qnGPABoVOYDJ"
    "N9qkOnWaidU6KltPvFUhZKqeCpGKpgAau3FaqVqllv+LuSKcKEgNkg77gA=="
)
_XZ_1GIB_B64 = (
    "QlpoOTFBWSZTWQTcBQQBKkz////v7/P/+eG/tes9/uc3/9X/Vv9Vi7/3126ra3P/JVrv0AVbz0KUAABQBIGho0AwgNBo"
    "GBAAaA0yA0BgEBk00AAA0wTTTBAZNGQaMIADIYQ0yEDQ0aAYQGg0DAgANAaZAaAwCAyaaAAAaYJppggMmjINGEABkMIa"
    "ZBWpqJkNAAyZAAAyaDI0NAAAAAMjEAaBoGQ0BoaAAAAABk0BoAG9VVQAAAAAAAAGgAAAAAAANAAAAAAAAAAAAAAAUqqo"
    "ANAGgAHqANAADQNAAGgMjQepoAyZDQNqaeoGmmnqaBoNDQaPSAaGgeJk1CRAnZoHMFRzZBuwGIX6WGKdNGwAAAAB9cwA"
    "AAAA+aKoYcYs8jsgA2zeQA+QAeVwQAduAGuyKqquF+vRdXmOsADufYzVVVXt1QMkAVgAbmSSSSf4A21EkkgM3hABt9VV"
    "Wj7XeOc6cAO92gA4YAaHwAA4EANn5OAAGY2fp4gAw8Cqqp8OtADHAGZ9qqqrO/8ANTyIAYoAYYBLcAUMkkkkl1AHeAFD"
    "6NJzQVXVYIAeuANWAOSADn8v1MXPdsAGvADyNjg6YAOl0FVVXQ0QA6O8AG+08kkkklB3dUAOBYZJAM55v3e1ttVVW14/"
    "4dUAG9AD7fz82qqtTuYAZkAP5ADEAGDoNyADC09VVXzfBjc6AH+aLdQA2AAa2qqrWdxjABhgBrtVj4YAcl9++1VVYIAx"
    "QA1eqADWaWqqr3qqqswAGN1fnZrEADU+KAMgAMTQ7IANdmNsqqrYZ+qqr79Z3oAxvWADtPLAHzfxwAAZGlqqq5v9QBl1"
    "VVdOAPJ3zHxLP6EAPwqqq1XM5VVVWr0QA01VVXs9AAHJ7fh732YA/zY4WzAH183VVVybGAGwqqqxgA2oAc4AP95+qqrB"
    "7vv6qqtyAG78D9IA1AA8EAaCqqrF8CAPuAHFqqrO4uf3jzgA+PpABpABo6qqtbVVV4IAdjx4AfjrQAzeSAGOAPyyQB/o"
    "AbQAOZ3nv6qqycoAPDzuOANPm9fngA+IAPZAGAAGyBJJ9AB8AB8vnJJJJJrsT8wBZ4AbUAM1pONywA+TtQA6IAZz6vXA"
    "D+6qqssAOk3UAMgAZH2ADoOFAHp6X3wA3wAOG7P5aqqsIAOV6rHz37afK8/vgA2IAaLScTmdH+4AZwAP264Ad8AMsAOC"
    "8cANeAMCqqrUdKAHhgDrczVVV4QAZVVVWVxAAZIAcwAGT0WmADCqqqy6qqsAANpsgBpQSSUrqY8A/oA0VD8ABRf9Qf8X"
    "ckU4UJAE3AUE"
)
