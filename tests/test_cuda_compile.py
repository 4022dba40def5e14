"""Ahead-of-time compilation of ``kernels/*.cu`` (issue 20 item 5), where ``nvcc`` exists.

``nvcc`` (the ``nvidia-cuda-nvcc`` wheel, or a CUDA toolkit) compiles sm_80/sm_90 machine code
on a machine without a GPU; it is not a CI dependency, so without it the compile test skips
with its reason. The fatbin parser is checked on a synthetic fatbin everywhere.
"""

from __future__ import annotations

import struct

import pytest

from gpueval.kernels import device
from gpueval.resources import cuda_dir


def _entry(kind: int, sm: int, payload: bytes) -> bytes:
    words = [0] * 16
    words[6], words[7] = 0x10008, sm
    head = struct.pack("<HHIQ", kind, 0x101, 64, len(payload)) + struct.pack("<12I",
                                                                            *words[4:16])
    return head + payload


def test_fatbin_archs_reads_elf_entries_only():
    body = _entry(2, 80, b"\x7fELF" + b"\0" * 60) + _entry(1, 90, b"ptx\0") + \
        _entry(2, 90, b"\x7fELF" + b"\0" * 12)
    data = struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body
    assert device.fatbin_archs(data) == [80, 90]
    with pytest.raises(ValueError, match="bad magic"):
        device.fatbin_archs(b"\0" * 32)


@pytest.mark.slow
@pytest.mark.parametrize("source", sorted(p.name for p in cuda_dir().glob("*.cu")))
def test_cuda_sources_compile_to_an_sm80_sm90_fatbin(tmp_path, source):
    if device.find_nvcc() is None:
        pytest.skip("nvcc not found (pip install nvidia-cuda-nvcc to run this check)")
    out = device.compile_fatbin(cuda_dir() / source, tmp_path / "k.fatbin")
    assert device.fatbin_archs(out.read_bytes()) == [80, 90]
