"""gpueval.heap: the command line keeps large freed buffers for reuse (glibc only)."""

import subprocess
import sys

import pytest

from gpueval import heap

CHILD = """
import resource, sys
import numpy as np
from gpueval import heap
applied = heap.keep_freed_memory() if sys.argv[1] == "keep" else False
np.ones(64 << 20, np.uint8)  # the first buffer faults in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    np.ones(64 << 20, np.uint8)  # allocated, written, freed: a chunk's temporary
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"}).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_buffers_are_reused_not_faulted_in_again():
    applied, kept = _faults("keep")
    if not applied:
        pytest.skip("not glibc")
    _, default = _faults("default")
    # glibc's default maps every 64 MiB buffer afresh (each page faults in again); kept
    # buffers come back from the heap already mapped
    assert kept * 4 < default, (kept, default)


def test_environment_opts_out(monkeypatch):
    monkeypatch.setenv("GPUEVAL_MALLOC", "system")
    assert heap.keep_freed_memory() is False
