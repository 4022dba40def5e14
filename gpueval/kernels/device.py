"""The raw CUDA sources compiled ahead of time: find ``nvcc``, build fatbins, load them.

Why (``shared/research/gpu-design.md`` §4.5): a fresh GPU machine spent ~51 s compiling CuPy
kernels with NVRTC on first use (the cold U-RISC run of 2026-11-24). Sources in ``kernels/``
can instead be compiled once, offline, to a fatbin holding machine code for each target
architecture (sm_80 = A100, sm_90 = H100/H200); ``nvcc`` from the ``nvidia-cuda-nvcc`` wheel
does this on a machine without a GPU. A fatbin is loaded with ``cupy.RawModule(path=...)``
(no compilation); where none fits the device, :func:`load_module` falls back to compiling the
source with NVRTC as before.

``python -m gpueval.kernels.device build [OUT_DIR]`` writes ``<name>.fatbin`` for every
``kernels/*.cu`` (default: next to the sources). Fatbins are build outputs, not committed.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

from gpueval.resources import cuda_dir, cuda_source

__all__ = ["ARCHS", "compile_fatbin", "fatbin_archs", "find_nvcc", "load_module"]

#: target architectures: A100 (8.0) and H100/H200 (9.0)
ARCHS = (80, 90)
_FATBIN_MAGIC = 0xBA55ED50


def find_nvcc() -> str | None:
    """Path of an ``nvcc`` driver: ``$NVCC``, ``PATH``, ``$CUDA_HOME/bin``, or the
    ``nvidia-cuda-nvcc`` wheels' ``bin`` folders (``nvidia/cu13``, ``nvidia/cuda_nvcc``)."""
    candidates = [os.environ.get("NVCC"), shutil.which("nvcc")]
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "bin", "nvcc"))
    try:
        import nvidia

        for base in getattr(nvidia, "__path__", []):
            for sub in ("cu13", "cu12", "cuda_nvcc"):
                candidates.append(os.path.join(base, sub, "bin", "nvcc"))
    except ImportError:
        pass
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def compile_fatbin(source: str | Path, out: str | Path, *, archs=ARCHS,
                   nvcc: str | None = None, timeout: float = 300) -> Path:
    """Compile one ``.cu`` file to a fatbin with SASS for each of ``archs``.

    Warnings are errors (``-Werror all-warnings``): a source that warns here would warn on
    every NVRTC compile too. Raises ``FileNotFoundError`` without ``nvcc`` and
    ``RuntimeError`` (with nvcc's message) when compilation fails.
    """
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found (pip install nvidia-cuda-nvcc, or set NVCC)")
    out = Path(out)
    cmd = [nvcc, "--fatbin", "-O3", "-Werror", "all-warnings", "-o", str(out), str(source)]
    for a in archs:
        cmd += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"nvcc failed on {source}: {(proc.stderr or proc.stdout).strip()}")
    return out


def fatbin_archs(data: bytes) -> list[int]:
    """SM architectures of the machine-code (ELF) entries of a fatbin, in file order.

    Layout: a 16-byte header (magic ``0xBA55ED50``, version, header size, payload size), then
    entries, each with a header (kind 2 = ELF / 1 = PTX, header size, payload size, and the
    SM version as the eighth 32-bit word) followed by its payload."""
    if len(data) < 16:
        raise ValueError("not a fatbin: too short")
    magic, _version, hsize, fsize = struct.unpack_from("<IHHQ", data, 0)
    if magic != _FATBIN_MAGIC:
        raise ValueError("not a fatbin: bad magic")
    archs, pos, end = [], hsize, min(hsize + fsize, len(data))
    while pos + 32 <= end:
        kind, _, ehsize, psize = struct.unpack_from("<HHIQ", data, pos)
        if kind == 2:
            archs.append(struct.unpack_from("<I", data, pos + 28)[0])
        if ehsize == 0:
            break
        pos += ehsize + psize
    return archs


def load_module(name: str):
    """``cupy.RawModule`` of ``kernels/<name>``: the prebuilt ``<stem>.fatbin`` when it holds
    machine code for this device's architecture, else the source compiled by NVRTC."""
    import cupy

    fatbin = cuda_dir() / (Path(name).stem + ".fatbin")
    if fatbin.is_file():
        sm = int(cupy.cuda.Device().compute_capability)  # CuPy gives "90" for 9.0
        if sm in fatbin_archs(fatbin.read_bytes()):
            return cupy.RawModule(path=str(fatbin))
    return cupy.RawModule(code=cuda_source(name))


def _build(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [compile_fatbin(src, out_dir / (src.stem + ".fatbin"))
            for src in sorted(cuda_dir().glob("*.cu"))]


if __name__ == "__main__":  # pragma: no cover - a build step
    if len(sys.argv) < 2 or sys.argv[1] != "build":
        sys.exit("usage: python -m gpueval.kernels.device build [OUT_DIR]")
    for path in _build(Path(sys.argv[2]) if len(sys.argv) > 2 else cuda_dir()):
        print(path, fatbin_archs(path.read_bytes()))
