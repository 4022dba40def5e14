"""atheris fuzz target over every gpueval reader (coverage-guided; run by hand, not in CI).

::

    pip install atheris
    python tests/fuzz/fuzz_readers.py -max_total_time=600 -rss_limit_mb=3072 -timeout=20

The first input byte picks the reader (tests/fuzz/seeds.py), the rest is the file (zarr: the
replaced metadata document). Any exception but :class:`~gpueval.errors.Rejected` is a finding;
``-rss_limit_mb`` and ``-timeout`` turn unbounded allocations and hangs into findings too. The
hypothesis tests in ``tests/test_fuzz_readers.py`` are what CI runs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

if __name__ != "__main__":  # collected by pytest: only check that the target imports
    pytest.importorskip("atheris")

import atheris  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports():
    from fuzz.seeds import FILE_KINDS, ZARR_KINDS, consume, write_input  # noqa: E402
    from gpueval.errors import Rejected  # noqa: E402
    from gpueval.limits import Limits, use_limits  # noqa: E402

KINDS = sorted(FILE_KINDS) + sorted(ZARR_KINDS)
LIMITS = Limits(max_voxels=10**7, max_chunk_bytes=64 * 2**20, max_bytes=2**28,
                max_archive_bytes=2**28, max_files=10_000)
WORK = Path(tempfile.mkdtemp(prefix="gpueval-fuzz-"))
(WORK / "w").mkdir()


def one_input(data: bytes) -> None:
    if not data:
        return
    kind = KINDS[data[0] % len(KINDS)]
    path = write_input(kind, data[1:], WORK / "w")
    try:
        with use_limits(LIMITS):
            consume(kind, path)
    except Rejected as e:
        cause = e.__cause__
        if isinstance(cause, MemoryError):
            raise AssertionError(f"{kind}: rejection caused by MemoryError: {e}") from e


def main() -> None:
    from fuzz.seeds import seed_bytes

    corpus = WORK / "corpus"
    corpus.mkdir(exist_ok=True)
    for i, kind in enumerate(KINDS):  # seed the corpus with every valid input
        if kind in FILE_KINDS:
            (corpus / kind).write_bytes(bytes([i]) + seed_bytes(kind))
    atheris.Setup(sys.argv + [str(corpus)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
