"""gpueval.heap: the command line keeps large freed buffers for reuse (glibc only)."""

import subprocess
import sys

import pytest

from gpueval import heap

CHILD = """
import resource, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from gpueval import heap
applied = heap.keep_freed_memory() if sys.argv[1] == "keep" else False

def chunk(_):  # a chunk's temporaries: allocated, written, freed
    return int(np.ones(24 << 20, np.uint8)[0]) + int(np.ones(40 << 20, np.uint8)[0])

threads = int(sys.argv[2])  # 0: the main thread alone
with ThreadPoolExecutor(max(threads, 1)) as pool:
    run = pool.map if threads else map
    list(run(chunk, range(4)))  # the first buffers fault in either way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    list(run(chunk, range(20)))
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, threads: int) -> tuple[bool, int]:
    # no huge pages: a fault is one 4 KiB page, whatever the machine's THP setting
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(threads)], capture_output=True,
                         text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "NUMPY_MADVISE_HUGEPAGE": "0"}
                         ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("threads", [0, 2])
def test_freed_buffers_are_reused_not_faulted_in_again(threads):
    """In the main thread and across a pool's threads (a buffer freed by one thread is
    reused by the other: one arena)."""
    applied, kept = _faults("keep", threads)
    if not applied:
        pytest.skip("not glibc")
    _, default = _faults("default", threads)
    # glibc's default maps every 64 MiB buffer afresh (each page faults in again); kept
    # buffers come back from the heap already mapped
    # (20×: with one arena per thread, the threads' pool kept ~1/7 of the faults only)
    assert kept * 20 < default, (kept, default)


def test_environment_opts_out(monkeypatch):
    monkeypatch.setenv("GPUEVAL_MALLOC", "system")
    assert heap.keep_freed_memory() is False
