"""A stricter decode floor for ``urisc_lzw`` than ``tifffile.imread`` (issue #19, session 6).

Reads each TIFF's strips with one ``os.pread`` and decodes them with imagecodecs' LZW straight
into one preallocated array per image, the two images' strips split over all cores (threads;
imagecodecs releases the GIL): no check, no scoring. ``tifffile.imread`` (the workload's own
floor) dispatches every one-row strip through Python and decodes the two images one after the
other, which gpueval's band reader does not, so gpueval can finish under that floor; this is
the floor it is compared with in ``benchmarks/README.md`` as well.

Usage: python decode_floor_urisc_strips.py IMAGE.tif [IMAGE.tif ...]
"""

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import imagecodecs
import numpy as np
import tifffile

jobs = []
for path in sys.argv[1:]:
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        offsets, counts = list(page.dataoffsets), list(page.databytecounts)
        rows, cols = page.shape[:2]
        rps = min(page.rowsperstrip or rows, rows)
    with open(path, "rb") as f:
        data = memoryview(f.read())
    out = np.empty(rows * cols, np.uint8)
    jobs.append((data, offsets, counts, out, rps * cols))

n = os.cpu_count() or 1


def decode(part):
    for data, offsets, counts, out, strip in jobs:
        for s in range(part, len(offsets), n):
            imagecodecs.lzw_decode(data[offsets[s]:offsets[s] + counts[s]],
                                   out=out[s * strip:(s + 1) * strip])


with ThreadPoolExecutor(n) as ex:
    list(ex.map(decode, range(n)))
