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


def _fatbin(*sms: int) -> bytes:
    body = b"".join(_entry(2, sm, b"\x7fELF" + b"\0" * 12) for sm in sms)
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body


@pytest.mark.parametrize("archs,device_sm,loaded", [((80, 90), "90", "path"),
                                                    ((80,), "90", "code"),
                                                    (None, "80", "code")])
def test_union_find_kernels_load_the_fatbin_that_fits(tmp_path, monkeypatch, archs, device_sm,
                                                      loaded):
    """The GPU labeller takes ``kernels/cc_union_find.fatbin`` when it holds machine code for
    the device (no NVRTC compile), else compiles the source (CuPy emulated)."""
    import types

    from emulated import fake_cupy

    from gpueval.kernels import components

    cp = fake_cupy.install(monkeypatch)
    (tmp_path / "cc_union_find.cu").write_text("// source")
    if archs is not None:
        (tmp_path / "cc_union_find.fatbin").write_bytes(_fatbin(*archs))
    monkeypatch.setattr(device, "cuda_dir", lambda: tmp_path)
    monkeypatch.setattr(device, "cuda_source", lambda name: (tmp_path / name).read_text())
    made = []

    class Module:
        def __init__(self, **kwargs):
            made.append(kwargs)

        def get_function(self, name):
            return name

    monkeypatch.setattr(cp, "RawModule", Module)
    monkeypatch.setattr(cp.cuda, "Device",
                        lambda *a: types.SimpleNamespace(compute_capability=device_sm))
    monkeypatch.setattr(components, "_KERNELS", {})
    assert components._cuda_kernels() == {n: n for n in ("cc_init", "cc_merge", "cc_compress")}
    assert len(made) == 1 and set(made[0]) == {loaded}
    if loaded == "path":
        assert made[0]["path"] == str(tmp_path / "cc_union_find.fatbin")
    else:
        assert made[0]["code"] == "// source"
