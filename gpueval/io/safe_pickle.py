"""A restricted unpickler: the only way gpueval ever reads a pickle.

Pickles execute code on load. Submissions are never unpickled at all; the only pickles gpueval
accepts are official ground-truth formats (XPRESS skeleton graphs, MedSegFM text prompts), and
those go through :func:`restricted_load`, which resolves only the ``(module, name)`` globals on
an explicit allow-list and refuses everything else (``os.system``, ``builtins.eval``, …).

Allowed constructors that could allocate from a declared size (``bytearray(10**12)``, NumPy's
``_reconstruct`` with a huge shape, ``copyreg._reconstructor`` over ``bytearray``) are replaced by
checked wrappers, so a hostile truth file cannot exhaust memory with a few bytes of pickle.

>>> import pickle
>>> restricted_load(pickle.dumps({"1": "liver", "instance_label": 0}), allowed=set())
{'1': 'liver', 'instance_label': 0}
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np

from gpueval.errors import Rejected

#: Globals a pickle of plain containers of numbers and strings may name (protocol 2+ uses
#: ``copyreg``/``builtins`` helpers for sets, frozensets and bytearrays).
PLAIN: frozenset[tuple[str, str]] = frozenset({
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "list"),
    ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "bytearray"),
    ("builtins", "complex"), ("copyreg", "_reconstructor"), ("builtins", "object"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # protocol-2 bytes/arrays travel as latin-1 text (checked wrapper)
})

#: NumPy scalars and arrays (their reconstruction helpers), for pickles holding positions.
NUMPY: frozenset[tuple[str, str]] = frozenset({
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("numpy", "float64"), ("numpy", "float32"),
    ("numpy", "int64"), ("numpy", "uint64"), ("numpy", "int32"), ("numpy", "uint32"),
    # protocol 5: the array is a view of bytes already in the pickle (sizes checked by NumPy)
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
})

MAX_PICKLE_BYTES = 2**31


class _Forbidden(pickle.UnpicklingError):
    pass


def _checked_bytearray(*args):
    if args and isinstance(args[0], int):
        raise _Forbidden("bytearray(size) is not allowed (allocation from a declared size)")
    return bytearray(*args)


def _checked_reconstructor(cls, base, state):
    import copyreg

    if base is bytearray and isinstance(state, int):
        raise _Forbidden("bytearray(size) is not allowed (allocation from a declared size)")
    return copyreg._reconstructor(cls, base, state)


def _checked_np_reconstruct(subtype, shape, dtype):

    n = 1
    for s in (shape if isinstance(shape, tuple | list) else (shape,)):
        n *= int(s)
    if n * np.dtype(dtype).itemsize > MAX_PICKLE_BYTES:
        raise _Forbidden(f"ndarray of shape {shape} is larger than a pickle may declare")
    return np.ndarray.__new__(subtype, shape, dtype)


def _checked_codecs_encode(obj, encoding="utf-8", errors="strict"):
    import codecs

    if str(encoding).lower().replace("-", "").replace("_", "") != "latin1":
        raise _Forbidden(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return codecs.encode(obj, "latin1", errors)


_CHECKED = {
    ("builtins", "bytearray"): _checked_bytearray,
    ("copyreg", "_reconstructor"): _checked_reconstructor,
    ("numpy.core.multiarray", "_reconstruct"): _checked_np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _checked_np_reconstruct,
    ("_codecs", "encode"): _checked_codecs_encode,
}


class _Restricted(pickle._Unpickler):  # noqa: SLF001
    """The pure-Python unpickler: its memo is a dict and it reads what a length declares.

    CPython's C unpickler preallocates from declared sizes: a ``LONG_BINPUT 0xFFFFFFFF`` of 5
    bytes grows (and zero-fills) a 64 GiB memo table, ``BINBYTES8`` allocates its declared
    length before reading. The Python one is ~5x slower (20 MB skeleton pickle: ~6 s instead
    of ~1.2 s, measured on a shared machine), a price paid only for official ground-truth
    pickles, which ``gpueval skeleton`` converts once to the fast ``.npz`` format.
    """

    def __init__(self, file: IO[bytes], allowed: frozenset[tuple[str, str]], size: int):
        super().__init__(file)
        self._allowed = allowed
        self._size = size

    def _load_bytearray8(self):
        # the one Python opcode that allocates (and zero-fills) its declared length first
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self._size:
            raise _Forbidden(f"BYTEARRAY8 declares {n} bytes in a {self._size}-byte pickle")
        b = bytearray(n)
        self.readinto(b)
        self.append(b)

    dispatch = pickle._Unpickler.dispatch.copy()  # noqa: SLF001
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8

    def find_class(self, module: str, name: str) -> Any:
        # protocol 0-2 pickles name Python 2 modules (__builtin__.set): map them first, as
        # pickle's own find_class does, so the allow-list sees the Python 3 names
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in self._allowed:
            return _CHECKED.get((module, name)) or super().find_class(module, name)
        raise _Forbidden(f"global {module}.{name} is not allowed")


def restricted_load(
    source: bytes | str | Path | IO[bytes],
    allowed: Iterable[tuple[str, str]] = (),
    *,
    max_bytes: int = MAX_PICKLE_BYTES,
) -> Any:
    """Unpickle ``source`` admitting only :data:`PLAIN` globals plus ``allowed``.

    Parameters
    ----------
    source : pickle bytes, a path, or a binary file object.
    allowed : extra ``(module, name)`` pairs, e.g. ``("networkx.classes.graph", "Graph")``.
    max_bytes : refuse larger inputs before reading them.

    Raises
    ------
    Rejected
        If the pickle names a global outside the allow-list, is truncated or corrupt.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        if path.stat().st_size > max_bytes:
            raise Rejected(f"{path.name}: pickle larger than {max_bytes} bytes")
        source = path.read_bytes()
    if not isinstance(source, bytes | bytearray):
        source = source.read(max_bytes + 1)
    if len(source) > max_bytes:
        raise Rejected(f"pickle larger than {max_bytes} bytes")
    try:
        return _Restricted(io.BytesIO(source), PLAIN | frozenset(allowed), len(source)).load()
    except _Forbidden as e:
        raise Rejected(f"refused to unpickle: {e}") from e
    except Exception as e:  # struct.error, EOFError, IndexError, TypeError from allowed calls…
        raise Rejected(f"corrupt or truncated pickle: {type(e).__name__}: {e}") from e
