"""Issue #24 round two, memory: random compressed chunks declaring up to 2**40 bytes, for
every codec the readers accept, never take more than a bounded amount of memory.

Each hypothesis example runs one child process that builds, for every codec, a stream whose
header declares ``2**k`` bytes (zstd frame content size, lz4 prefix and blosc ``nbytes``,
clamped to 32 bits where the field has 32) or that really inflates to ``min(2**k, 2 GiB)``
(zlib, gzip, LZF, zstd RLE blocks; bz2 and xz inflate to 1 GiB), with random trailing bytes,
and feeds it (a) to :func:`gpueval.io.bounded.decode` with a 64 KiB bound, (b) as chunk 0 of
a zarr v2 array read through :func:`~gpueval.io.arrays.open_volume` and (c) for gzip and LZF
as a raw HDF5 chunk. Every read must be a :class:`~gpueval.errors.Rejected` and the child's
peak RSS (``ru_maxrss``) must stay under :data:`BOUND` above its baseline, taken after the
imports and after building the streams. An unbounded decoder would take gigabytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
BOUND_MIB = 600
CODECS = ("zlib", "gzip", "zstd", "lzf", "lz4", "blosc", "bz2", "lzma")

CHILD = r"""
import json, resource, sys, tempfile
from pathlib import Path

import h5py, numcodecs, numpy as np, zarr
import hostile2_cases as hc
from gpueval.errors import Rejected
from gpueval.io import bounded
from gpueval.io.arrays import open_volume

draws = json.loads(sys.argv[1])
CAP = 2 * 2**30

def stream(codec, k, tail):
    size = 2 ** k
    if codec in ("zlib", "gzip"):
        s = hc.deflate_bomb(min(size, CAP), 15 if codec == "zlib" else 31)
    elif codec == "zstd":
        s = hc.zstd_bomb(min(size, CAP), declared=size)
    elif codec == "lzf":
        s = hc.lzf_bomb(min(size, CAP))
    elif codec == "lz4":
        s = hc.lz4_declaring(size)
    elif codec == "blosc":
        s = hc.blosc_declaring(size)
    else:
        s = hc.bz2_bomb() if codec == "bz2" else hc.xz_bomb()
    return s + bytes.fromhex(tail)

def rss_mib():  # this process's own peak (ru_maxrss may carry the parent's across exec)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024

streams = {c: stream(c, k, tail) for c, (k, tail) in draws.items()}
tmp = Path(tempfile.mkdtemp())
# warm up every reader once on a good file, so lazy imports count in the baseline
z = zarr.create_array(tmp / "warm.zarr", shape=(64, 64), chunks=(64, 64), dtype="u1",
                      zarr_format=2, compressors=numcodecs.Zlib())
z[...] = 1
open_volume(tmp / "warm.zarr").data.compute(scheduler="sync")
base = rss_mib()
refused = []
for codec, s in streams.items():
    try:
        bounded.decode(codec, s, 2**16, codec)
    except Rejected:
        refused.append(f"decode:{codec}")
    if codec == "lzf":
        continue  # zarr v2 has no LZF compressor; HDF5 reads it below
    comp = numcodecs.get_codec({"id": codec})
    p = tmp / f"{codec}.zarr"
    z = zarr.create_array(p, shape=(128, 128), chunks=(64, 64), dtype="u1", zarr_format=2,
                          compressors=comp)
    z[...] = 1
    (p / "0.0").write_bytes(s)
    try:
        open_volume(p).data.compute(scheduler="sync")
    except Rejected:
        refused.append(f"zarr:{codec}")
for codec, filt in (("gzip", "gzip"), ("lzf", "lzf")):
    p = tmp / f"{codec}.h5"
    with h5py.File(p, "w") as f:
        ds = f.create_dataset("x", shape=(128, 128), dtype="u1", chunks=(64, 64),
                              compression=filt)
        ds[...] = 1
        ds.id.write_direct_chunk((0, 0), streams[codec])
    try:
        open_volume(p, "x").data.compute(scheduler="sync")
    except Rejected:
        refused.append(f"hdf5:{codec}")
print(json.dumps({"base": base, "peak": rss_mib(), "refused": refused}))
"""


def _run_child(draws: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    # an address-space cap far above the bound: a regression fails instead of swapping
    cmd = [sys.executable, "-c",
           "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, "
           "(8 * 2**30, resource.RLIM_INFINITY)); exec(sys.argv.pop(1))", CHILD,
           json.dumps(draws)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
@given(draws=st.fixed_dictionaries({
    c: st.tuples(st.integers(20, 40), st.binary(max_size=8).map(bytes.hex)) for c in CODECS}))
def test_bombs_of_every_codec_stay_under_the_memory_bound(draws):
    res = _run_child(draws)
    expected = ({f"decode:{c}" for c in CODECS} | {f"zarr:{c}" for c in CODECS if c != "lzf"}
                | {"hdf5:gzip", "hdf5:lzf"})
    assert set(res["refused"]) == expected, res
    assert res["peak"] - res["base"] < BOUND_MIB, res
