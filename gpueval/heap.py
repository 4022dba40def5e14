"""Keep large freed buffers inside the process (glibc's allocator), for the command line.

Scoring a chunked volume allocates and frees the same few large buffers over and over: a
decoded chunk, its component labels, a distance map (tens of MiB each). glibc serves every
request above its mmap threshold (at most 32 MiB, the dynamic threshold's ceiling) with a
fresh ``mmap`` and gives it back with ``munmap`` on ``free``, so the kernel zeroes and maps
those pages again for the next chunk. On the 2-core VM of ``benchmarks/README.md`` that is
0.5–1.5 s of system time in a 5–6 s one-thread score of a dense 512³ label (§ "Where issues
#18 and #19 stand — session 8", "One heap"). With ``M_MMAP_MAX = 0`` every block comes from
the heap instead, and with a high ``M_TRIM_THRESHOLD`` freed blocks stay there for the next
chunk: the process keeps its peak heap (which the chunk size bounds, as before) instead of
returning it between chunks.

That alone only helps the thread that frees: glibc gives each thread its own arena (up to
8 per core), and a buffer freed in one thread's arena is not reused by another thread,
whose next chunk faults its pages in afresh (a two-thread pool allocating 24 + 40 MiB per
task: 409,652 minor faults per 40 tasks with or without the two settings above, 12 with one
arena). So the command line also asks for one arena (``M_ARENA_MAX = 1``): dask's worker
threads then share the kept buffers. Small requests stay in each thread's cache (glibc's
tcache), so the shared arena's lock is taken for large blocks only. Dense 512³ label,
``gpueval score cellmap`` at 2 threads: 390–430 huge-page faults instead of ~1,580, system time
0.22–0.23 s instead of 0.39–0.53 s (session 9, ``benchmarks/README.md``).

Only the ``gpueval`` command line calls :func:`keep_freed_memory` (a library must not change
its host process's allocator); ``GPUEVAL_MALLOC=system`` leaves glibc's defaults. Other C
libraries (musl, macOS, Windows) are left alone.
"""

from __future__ import annotations

import os
import sys

#: mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8

#: free memory at the top of the heap kept for reuse rather than returned to the system
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap, keep freed ones for reuse, one arena for all
    threads (glibc ``mallopt``; call it before any thread allocates).

    Returns
    -------
    bool
        Whether the settings were applied: False off Linux, without glibc, or when the
        environment says ``GPUEVAL_MALLOC=system``.
    """
    if os.environ.get("GPUEVAL_MALLOC", "").strip().lower() == "system":
        return False
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl has no such symbol
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) for param, value in
               ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_ARENA_MAX, 1)))
