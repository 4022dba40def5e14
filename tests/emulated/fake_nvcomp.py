"""A stand-in for ``nvidia.nvcomp`` (nvCOMP's Python API), backed by numcodecs and zlib.

Only what :class:`gpueval.io.device_decode.NvcompDecoder` calls: ``Codec(algorithm=...,
bitstream_kind=BitstreamKind.RAW).decode(list_of_arrays)``, ``as_array(device_array)``. Inputs
and outputs are device arrays of :mod:`emulated.fake_cupy` (the outputs expose
``__cuda_array_interface__`` as nvCOMP arrays do, so ``cupy.asarray`` takes them without a
copy). One batched ``decode`` counts as one device launch in the fake CuPy's counters, and
:data:`calls` records ``(algorithm, batch size)`` so tests see what reached "the device".

Like nvCOMP's RAW bitstreams, payloads carry no framing: zstd frames as they are, LZ4 as a
bare block (decoded by :func:`lz4_block_decode`, a small reference decoder: numcodecs' LZ4
needs the size prefix that the pipeline strips), deflate without zlib/gzip wrapper.
"""

from __future__ import annotations

import enum
import sys
import types
import zlib

import numpy as np

calls: list[tuple[str, int]] = []


class BitstreamKind(enum.Enum):
    NVCOMP_NATIVE = 0
    RAW = 1
    WITH_UNCOMPRESSED_SIZE = 2


class Array:
    """A device buffer seen through nvCOMP (wraps a fake CuPy array)."""

    def __init__(self, data):
        self._data = data

    @property
    def __cuda_array_interface__(self):
        return {"shape": self._data.shape, "typestr": self._data.dtype.str, "version": 3,
                "data": (0, False), "strides": None}

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._data, dtype=dtype)


def as_array(x) -> Array:
    return Array(x)


def _extend(src: bytes, i: int, value: int) -> tuple[int, int]:
    """An LZ4 length of 15 goes on in the following bytes (each added; 255 means more
    follow): ``(the whole length, the index after it)``."""
    if value != 15:
        return value, i
    while True:
        b = src[i]
        i += 1
        value += b
        if b != 255:
            return value, i


def lz4_block_decode(src: bytes) -> bytes:
    """Decode one raw LZ4 block (sequences of literals + back-references), reference speed."""
    out = bytearray()
    i, n = 0, len(src)
    while i < n:
        token = src[i]
        i += 1
        lit, i = _extend(src, i, token >> 4)
        out += src[i:i + lit]
        i += lit
        if i >= n:  # the last sequence has literals only
            break
        offset = src[i] | (src[i + 1] << 8)
        i += 2
        if offset == 0 or offset > len(out):
            raise ValueError("LZ4 back-reference outside the output")
        length, i = _extend(src, i, token & 15)
        length += 4
        start = len(out) - offset
        for k in range(length):  # overlapping copies repeat the pattern
            out.append(out[start + k])
    return bytes(out)


class Codec:
    def __init__(self, algorithm: str, bitstream_kind=BitstreamKind.RAW, **kwargs):
        if bitstream_kind is not BitstreamKind.RAW:
            raise ValueError("the fake decodes RAW bitstreams only")
        self.algorithm = algorithm

    def _one(self, raw: bytes) -> bytes:
        if self.algorithm == "Zstd":
            import numcodecs

            return bytes(numcodecs.Zstd().decode(raw))
        if self.algorithm == "LZ4":
            return lz4_block_decode(raw)
        if self.algorithm == "Deflate":
            return zlib.decompressobj(-15).decompress(raw)
        raise ValueError(f"fake nvCOMP has no {self.algorithm}")

    def decode(self, arrays: list[Array]) -> list[Array]:
        import cupy

        from emulated import fake_cupy

        calls.append((self.algorithm, len(arrays)))
        fake_cupy._count(ops=1)  # one batched launch
        with fake_cupy._inside():
            out = [np.frombuffer(self._one(np.asarray(a).tobytes()), np.uint8) for a in arrays]
            return [Array(cupy.asarray(np.ascontiguousarray(o))) for o in out]


def install(monkeypatch) -> types.ModuleType:
    """Put ``nvidia`` and ``nvidia.nvcomp`` into ``sys.modules`` (undone by ``monkeypatch``)."""
    nvcomp = sys.modules[__name__]
    nvidia = types.ModuleType("nvidia")
    nvidia.nvcomp = nvcomp
    monkeypatch.setitem(sys.modules, "nvidia", nvidia)
    monkeypatch.setitem(sys.modules, "nvidia.nvcomp", nvcomp)
    calls.clear()
    return nvcomp
