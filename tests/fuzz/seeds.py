"""Valid seed inputs for every reader, and :func:`consume`, which reads a (mutated) input fully.

Used by ``tests/test_fuzz_readers.py`` (hypothesis, run in CI) and ``tests/fuzz/fuzz_readers.py``
(atheris, run by hand). Single-file formats are seeded as bytes; zarr stores as a folder whose
metadata document or one chunk is replaced by the mutated bytes.
"""

from __future__ import annotations

import io
import pickle
import shutil
import zipfile
from functools import cache
from pathlib import Path

import numpy as np

FILE_KINDS = {  # kind -> (file name, reader of tests/hostile_corpus.read, dataset)
    "zip": ("sub.zip", "archive", None),
    "npz": ("s.npz", "npz", "segs"),
    "npz_compressed": ("s.npz", "npz", "segs"),
    "tiff_strips": ("a.tiff", "volume", None),
    "tiff_tiles": ("a.tiff", "volume", None),
    "tiff_image": ("a.tiff", "image", None),
    "hdf5": ("s.h5", "volume", "submission"),
    "png": ("a.png", "image", None),
    "bmp": ("a.bmp", "image", None),
    "pickle": ("s.pkl", "pickle", None),
}
ZARR_KINDS = {  # kind -> (zarr format, files that may be replaced)
    "zarr2": (2, (".zarray", ".zattrs", "0.0", "1.1")),
    "zarr3": (3, ("zarr.json", "c/0/0", "c/1/1")),
    "zarr3_sharded": (3, ("zarr.json", "c/0/0")),
    "n5": (0, ("attributes.json", "0/0", "1/1")),  # tensorstore's n5 driver
}
IMG = (np.arange(24 * 20) % 200).astype(np.uint8).reshape(24, 20)
VOL = (np.arange(6 * 8 * 8) % 9).astype(np.uint16).reshape(6, 8, 8)


@cache
def seed_bytes(kind: str) -> bytes:
    """The valid input of ``kind`` as bytes (single-file formats)."""
    buf = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("result/a.tiff", bytes(range(256)) * 4)
            z.writestr("result/b.tiff", b"membrane" * 50)
            z.writestr("result/", b"")
    elif kind == "npz":
        np.savez(buf, segs=VOL, spacing=np.ones(3))
    elif kind == "npz_compressed":
        np.savez_compressed(buf, segs=VOL)
    elif kind in ("tiff_strips", "tiff_image"):
        import tifffile

        tifffile.imwrite(buf, IMG, rowsperstrip=5)
    elif kind == "tiff_tiles":
        import tifffile

        tifffile.imwrite(buf, np.tile(IMG, (2, 2)), tile=(16, 16), compression="zlib")
    elif kind == "hdf5":
        import h5py

        with h5py.File(buf, "w") as f:
            ds = f.create_dataset("submission", data=VOL, chunks=(3, 4, 4), compression="gzip")
            ds.attrs["resolution"] = [4, 4, 4]
    elif kind in ("png", "bmp"):
        from PIL import Image

        Image.fromarray(IMG).save(buf, format=kind.upper())
    elif kind == "pickle":
        pickle.dump({"1": "liver", "2": [1.5, (3, None)], "arr": np.arange(4.0),
                     "s": {1, 2}}, buf, protocol=4)
    else:
        raise ValueError(kind)
    return buf.getvalue()


def zarr_template(kind: str, root: Path) -> Path:
    """Write the valid zarr store of ``kind`` under ``root`` (once) and return it."""
    import zarr

    path = root / (f"{kind}.zarr" if kind != "n5" else "store.n5")
    if path.exists():
        return path
    fmt, _ = ZARR_KINDS[kind]
    data = np.arange(8 * 8, dtype=np.uint16).reshape(8, 8)
    if kind == "n5":
        import tensorstore as ts

        ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(path)},
                 "metadata": {"dimensions": [8, 8], "blockSize": [4, 4], "dataType": "uint16",
                              "compression": {"type": "gzip"}}, "create": True}
                ).result()[...] = data
        return path
    kw = {"shards": (8, 8)} if kind == "zarr3_sharded" else {}
    z = zarr.create_array(path, shape=data.shape, chunks=(4, 4), dtype=data.dtype,
                          zarr_format=fmt, **kw)
    z[:] = data
    z.attrs["voxel_size"] = [2, 2]
    return path


def original_member(kind: str, root: Path, member: str) -> bytes:
    p = zarr_template(kind, root) / member
    return p.read_bytes() if p.exists() else b""


def write_input(kind: str, data: bytes, work: Path, member: str | None = None) -> Path:
    """Write a (mutated) input of ``kind`` into the empty-able folder ``work``."""
    if kind in FILE_KINDS:
        path = work / FILE_KINDS[kind][0]
        path.write_bytes(data)
        return path
    src = zarr_template(kind, work.parent)
    dst = work / src.name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    target = dst / (member or ZARR_KINDS[kind][1][0])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return dst


def consume(kind: str, path: Path):
    """Read ``path`` fully with the reader for ``kind`` (as tests/hostile_corpus.read)."""
    from hostile_corpus import read

    if kind in FILE_KINDS:
        _, reader, dataset = FILE_KINDS[kind]
        return read(reader, path, None, dataset)
    return read("volume", path, None, None)
