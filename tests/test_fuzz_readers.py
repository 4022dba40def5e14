"""Fuzzing every reader with mutated valid inputs: a result or a clean Rejected, nothing else.

Each example mutates a valid seed (bit flips, byte writes, extreme 32-bit integers written over
header fields, truncation, insertion, deletion; JSON edits of zarr metadata) and reads it fully
under

* a memory bound: ``RLIMIT_AS`` lowered to the current address space + 1 GiB for the example, and
  a ``MemoryError`` anywhere (even wrapped in a Rejected) fails the test;
* a time bound: ``SIGALRM`` after 20 s fails the example (a hang);
* the readers' own limits, set as a challenge would after comparing with the truth shape
  (``max_voxels`` 10⁷) so a mutated shape cannot ask for hours of fill values.

CI runs a fixed, derandomised set (``GPUEVAL_FUZZ_EXAMPLES`` per reader, default 25; the whole
file takes well under 2 minutes). For a longer random campaign::

    GPUEVAL_FUZZ_EXAMPLES=2000 GPUEVAL_FUZZ_RANDOM=1 python -m pytest tests/test_fuzz_readers.py
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
from pathlib import Path

import pytest
from fuzz.seeds import FILE_KINDS, ZARR_KINDS, consume, original_member, seed_bytes, write_input
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpueval.errors import Rejected
from gpueval.limits import Limits, use_limits

EXAMPLES = int(os.environ.get("GPUEVAL_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=not os.environ.get("GPUEVAL_FUZZ_RANDOM"),
                suppress_health_check=list(HealthCheck))
LIMITS = Limits(max_voxels=10**7, max_chunk_bytes=64 * 2**20, max_bytes=2**28,
                max_archive_bytes=2**28, max_files=10_000)
SECONDS = 20
EXTRA_ADDRESS_SPACE = 2**30
SPECIAL = [0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE,
           2**24, 10**6]

mutation = st.tuples(
    st.sampled_from(["flip", "byte", "int32", "truncate", "insert", "delete"]),
    st.integers(0, 2**31),  # position (modulo the length)
    st.integers(0, 255),
    st.sampled_from(SPECIAL),
    st.booleans(),  # aim at the first 512 bytes (headers) rather than anywhere
)


def mutate(data: bytes, muts) -> bytes:
    d = bytearray(data)
    for op, pos, byte, special, head in muts:
        if not d:
            d = bytearray(b"\0")
        n = min(len(d), 512) if head else len(d)
        i = pos % n
        if op == "flip":
            d[i] ^= 1 << (byte % 8)
        elif op == "byte":
            d[i] = byte
        elif op == "int32":
            d[i:i + 4] = special.to_bytes(4, "little" if byte % 2 else "big")
        elif op == "truncate":
            del d[i:]
        elif op == "insert":
            d[i:i] = bytes([byte]) * (1 + special % 64)
        elif op == "delete":
            del d[i:i + 1 + byte % 16]
    return bytes(d)


class _Hang(Exception):
    pass


def _address_space() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def bounded(seconds: float = SECONDS, extra: int = EXTRA_ADDRESS_SPACE):
    """Lower RLIMIT_AS and arm an alarm for the duration of one example."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + extra
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)

    def on_alarm(signum, frame):
        raise _Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _causes(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def check_reads_or_rejects(kind: str, path: Path) -> None:
    """Read fully; only a result or a one-line Rejected not caused by MemoryError may come."""
    try:
        with bounded(), use_limits(LIMITS):
            consume(kind, path)
    except Rejected as e:
        assert "\n" not in str(e)
        bad = [c for c in _causes(e) if isinstance(c, MemoryError | _Hang)]
        assert not bad, f"{kind}: rejection caused by {bad[0]!r}: {e}"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    (root / "w").mkdir()
    return root / "w"


@pytest.mark.parametrize("kind", sorted(FILE_KINDS))
def test_seed_reads(kind, work):
    consume(kind, write_input(kind, seed_bytes(kind), work))


@pytest.mark.parametrize("kind", sorted(ZARR_KINDS))
def test_zarr_seed_reads(kind, work):
    path = write_input(kind, original_member(kind, work.parent, ZARR_KINDS[kind][1][0]), work)
    out = consume(kind, path)
    assert out.shape == (8, 8) and int(out[7, 7]) == 63 and int(out[1, 2]) == 10


@pytest.mark.parametrize("kind", sorted(FILE_KINDS))
@FUZZ
@given(muts=st.lists(mutation, min_size=1, max_size=4))
def test_fuzz_file_reader(kind, muts, work):
    path = write_input(kind, mutate(seed_bytes(kind), muts), work)
    check_reads_or_rejects(kind, path)


@pytest.mark.parametrize("kind", sorted(ZARR_KINDS))
@FUZZ
@given(data=st.data(), muts=st.lists(mutation, min_size=1, max_size=4))
def test_fuzz_zarr_bytes(kind, data, muts, work):
    member = data.draw(st.sampled_from(ZARR_KINDS[kind][1]))
    original = original_member(kind, work.parent, member)
    path = write_input(kind, mutate(original, muts), work, member)
    check_reads_or_rejects(kind, path)


json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
              st.sampled_from([0, -1, 1, 2**31, 2**63, 10**18, 1.5, float("inf")]),
              st.sampled_from(["/", ".", "..", "/../", "c/../..", "<u8", "|O", "V8", "bogus",
                               "zstd", "blosc", "bytes", "sharding_indexed", "float64"]),
              st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(
                                   ["name", "configuration", "id", "separator", "chunk_shape",
                                    "codecs", "level"]), children, max_size=3)),
    max_leaves=8,
)
META_KEYS = ["shape", "chunks", "dtype", "data_type", "chunk_grid", "codecs", "compressor",
             "filters", "fill_value", "order", "dimension_separator", "chunk_key_encoding",
             "storage_transformers", "zarr_format", "node_type", "attributes",
             "dimension_names", "dimensions", "blockSize", "dataType", "compression"]


@pytest.mark.parametrize("kind", sorted(ZARR_KINDS))
@FUZZ
@given(edits=st.lists(st.tuples(st.sampled_from(META_KEYS), json_value), min_size=1,
                      max_size=3))
def test_fuzz_store_metadata_json(kind, edits, work):
    doc = ZARR_KINDS[kind][1][0]
    meta = json.loads(original_member(kind, work.parent, doc))
    for key, value in edits:
        meta[key] = value
    text = json.dumps(meta, allow_nan=True).encode()
    check_reads_or_rejects(kind, write_input(kind, text, work, doc))


def test_memory_bound_catches_a_huge_allocation():
    """The harness itself works: a 64 GiB allocation fails inside ``bounded``."""
    import numpy as np

    with pytest.raises(MemoryError), bounded():
        np.ones(2**36, dtype=np.uint8)


def test_time_bound_catches_a_hang():
    import time

    with pytest.raises(_Hang), bounded(seconds=0.2):
        time.sleep(5)
