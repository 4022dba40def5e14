"""Decode floor of the ``xpress_official`` workload (run by gpueval/bench/xpress.py).

Unpickles the skeleton graph with CPython's C unpickler and reads every HDF5 chunk raw,
decoding LZF with imagecodecs on all cores (threads; imagecodecs releases the GIL) into one
preallocated array: no check, no scoring. It lives outside the gpueval package because it
loads a pickle without gpueval's restrictions (the file is one the benchmark just wrote);
nothing in gpueval may (tests/test_hostile_no_pickle.py).

Usage: python decode_floor_xpress.py GRAPH.pkl VOLUME.h5 DATASET
"""

import os
import pickle
import sys
from concurrent.futures import ThreadPoolExecutor

import h5py
import imagecodecs
import numpy as np

graph, h5, name = sys.argv[1:4]
with open(graph, "rb") as f:
    pickle.Unpickler(f).load()
with h5py.File(h5, "r") as f:
    d = f[name]
    out = np.empty(d.shape, d.dtype)
    index = []
    d.id.chunk_iter(lambda c: index.append((c.chunk_offset, c.byte_offset, c.size)))
    chunk, nbytes = d.chunks, int(np.prod(d.chunks)) * d.dtype.itemsize
fd = os.open(h5, os.O_RDONLY)


def one(entry):
    origin, offset, size = entry
    raw = imagecodecs.lzf_decode(os.pread(fd, size, offset), out=nbytes)
    block = np.frombuffer(raw, out.dtype).reshape(chunk)
    dst = tuple(slice(o, min(o + c, s)) for o, c, s in zip(origin, chunk, out.shape, strict=True))
    out[dst] = block[tuple(slice(0, t.stop - t.start) for t in dst)]


with ThreadPoolExecutor(os.cpu_count()) as ex:
    list(ex.map(one, index, chunksize=64))
