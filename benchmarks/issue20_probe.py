"""Device questions of issue 20, one step per call: ``python benchmarks/issue20_probe.py STEP``.

Steps (each writes ``$OUT/STEP.json``; a step that fails records its error and traceback
instead, so one run of ``benchmarks/on_device.sh issue20`` always returns something):

* ``env``      GPU, driver, CUDA runtime, CuPy / nvCOMP / numcodecs / zarr versions.
* ``h2d``      256 MiB host→device: pageable ``cupy.asarray`` vs pinned + async copy on a
               non-blocking stream; null stream vs 4 threads with their own streams.
* ``decode``   64 blocky 128³ uint32 chunks (8 MiB each) encoded zstd-1/zstd-5/lz4/gzip/
               blosc-lz4 with numcodecs; decoded GB/s with numcodecs on 1 and 16 threads and
               with ``device_decode.NvcompDecoder`` in batches of 16/64 (bytes checked equal).
               Records the nvCOMP call that worked (the adapter's signature is unverified).
* ``ops``      per-kernel timings on a 256³ chunk: contingency (new twin, the previous
               three-sort twin, Numba on 1 core), region stats (new vs previous twin), the fused
               three statistics vs three separate calls, CC, and
               ``distance_transform_edt`` on 64³/128³ boxes.
* ``cold``     fresh CuPy kernel cache in a subprocess: first contingency + region stats
               (NVRTC compiles), and loading ``cc_union_find`` from source vs from a fatbin.
* ``e2e``      ``contingency_dense``: a 512³ uint32 zstd zarr v3 pair (128³ chunks, every chunk
               written): GPU via the compressed-chunk pipeline vs CPU (zarr + Numba) on all
               cores with threads and with processes, tables equal.

Sizes shrink with ``--scale`` (default 1). Nothing here has run on a device yet.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _blocky(seed: int, shape, ids: int = 4000, block: int = 8, dtype=np.uint32) -> np.ndarray:
    """Piecewise-constant labels (``block``³ cubes of random ids, ~30 % background)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, ids, tuple(-(-s // block) for s in shape), dtype=np.int64)
    coarse[rng.random(coarse.shape) < 0.3] = 0
    out = coarse.repeat(block, 0).repeat(block, 1).repeat(block, 2)
    return out[tuple(slice(0, s) for s in shape)].astype(dtype)


def _gbps(nbytes: int, seconds: float) -> float:
    return round(nbytes / seconds / 1e9, 3) if seconds > 0 else float("inf")


def _timeit(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls, device synchronised before and after."""
    import cupy

    best = float("inf")
    for _ in range(repeat):
        cupy.cuda.Device().synchronize()
        t0 = time.perf_counter()
        fn()
        cupy.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - t0)
    return round(best, 5)


# --------------------------------------------------------------------------------------------


def step_env(args) -> dict:
    import cupy

    out = {"python": sys.version.split()[0], "cupy": cupy.__version__,
           "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
           "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
           "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
           "compute_capability": cupy.cuda.Device().compute_capability,
           "cpu_count": os.cpu_count()}
    for mod in ("numpy", "numba", "numcodecs", "zarr", "dask", "cc3d"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001 - record what is missing
            out[mod] = f"missing: {e}"
    try:
        from nvidia import nvcomp

        out["nvcomp"] = nvcomp.__version__
        out["nvcomp_cuda"] = getattr(nvcomp, "__cuda_version__", None)
    except Exception as e:  # noqa: BLE001
        out["nvcomp"] = f"missing: {e}"
    from gpueval.kernels.device import find_nvcc

    out["nvcc"] = find_nvcc()
    return out


def step_h2d(args) -> dict:
    import cupy
    import cupyx

    n = int(256 * 2**20 * args.scale)
    host = np.random.default_rng(0).integers(0, 255, n, dtype=np.uint8)
    out = {"bytes": n}
    cupy.asarray(host[:1024])  # context + pool warm-up
    t = _timeit(lambda: cupy.asarray(host))
    out["pageable_null_stream_GBps"] = _gbps(n, t)
    pinned = cupyx.empty_pinned((n,), np.uint8)
    pinned[:] = host
    dev = cupy.empty(n, np.uint8)
    stream = cupy.cuda.Stream(non_blocking=True)

    def pinned_copy():
        dev.set(pinned, stream=stream)
        stream.synchronize()

    out["pinned_nonblocking_GBps"] = _gbps(n, _timeit(pinned_copy))
    parts = 4
    size = n // parts
    devs = [cupy.empty(size, np.uint8) for _ in range(parts)]
    streams = [cupy.cuda.Stream(non_blocking=True) for _ in range(parts)]

    def threaded(use_streams: bool):
        def one(i):
            if use_streams:
                with streams[i]:
                    devs[i].set(pinned[i * size:(i + 1) * size], stream=streams[i])
                    streams[i].synchronize()
            else:
                devs[i].set(pinned[i * size:(i + 1) * size])
                cupy.cuda.Stream.null.synchronize()

        with ThreadPoolExecutor(parts) as pool:
            list(pool.map(one, range(parts)))

    out["pinned_4_threads_null_stream_GBps"] = _gbps(n, _timeit(lambda: threaded(False)))
    out["pinned_4_threads_own_streams_GBps"] = _gbps(n, _timeit(lambda: threaded(True)))
    return out


def _codecs():
    import numcodecs

    return {"zstd-1": numcodecs.Zstd(level=1), "zstd-5": numcodecs.Zstd(level=5),
            "lz4": numcodecs.LZ4(), "gzip-6": numcodecs.GZip(level=6),
            "blosc-lz4": numcodecs.Blosc(cname="lz4", shuffle=numcodecs.Blosc.SHUFFLE)}


def _nvcomp_decode_variants(algorithm: str, payloads_dev, nbytes: int):
    """The adapter's call first, then other spellings of nvCOMP's API; returns (name, fn)."""
    from gpueval.io.device_decode import NvcompDecoder

    dec = NvcompDecoder()
    yield "NvcompDecoder.decode", lambda: dec.decode(algorithm, payloads_dev, nbytes)
    from nvidia import nvcomp

    codec = nvcomp.Codec(algorithm=algorithm, bitstream_kind=nvcomp.BitstreamKind.RAW)
    arrays = [nvcomp.as_array(p) for p in payloads_dev]
    yield "Codec(RAW).decode(list)", lambda: codec.decode(arrays)
    yield "Codec(RAW).decode(list, data_type='|u1')", lambda: codec.decode(arrays,
                                                                          data_type="|u1")


def step_decode(args) -> dict:
    import cupy

    from gpueval.io import device_decode as dd

    side = max(16, int(128 * args.scale ** (1 / 3)))
    chunks = [_blocky(i, (side,) * 3) for i in range(64)]
    nbytes = chunks[0].nbytes
    total = nbytes * len(chunks)
    out = {"chunk_shape": [side] * 3, "chunks": len(chunks), "decoded_bytes": total}
    for name, codec in _codecs().items():
        rec = {}
        with ThreadPoolExecutor(16) as pool:
            enc = list(pool.map(lambda c: bytes(codec.encode(c)), chunks))  # noqa: B023
        rec["ratio"] = round(total / sum(map(len, enc)), 1)
        t0 = time.perf_counter()
        for e in enc:
            codec.decode(e)
        rec["numcodecs_1_thread_GBps"] = _gbps(total, time.perf_counter() - t0)
        with ThreadPoolExecutor(16) as pool:
            t0 = time.perf_counter()
            list(pool.map(codec.decode, enc))
            rec["numcodecs_16_threads_GBps"] = _gbps(total, time.perf_counter() - t0)
        key = name.split("-")[0]
        if key in dd.NVCOMP_ALGORITHM:
            check = {"zstd": dd.validate_zstd, "lz4": dd.validate_lz4, "gzip": dd.validate_gzip}
            payloads = []
            for e in enc:
                p = check[key](e, nbytes, name)
                payloads.append(memoryview(e) if p is True else p)
            dev = [cupy.asarray(np.frombuffer(bytes(p), np.uint8)) for p in payloads]
            for batch in (16, 64):
                for label, fn in _nvcomp_decode_variants(dd.NVCOMP_ALGORITHM[key], dev[:batch],
                                                         nbytes):
                    try:
                        res = fn()
                        first = cupy.asarray(res[0]).view(cupy.uint8).get()
                        ok = first.tobytes() == chunks[0].tobytes()
                        t = _timeit(fn)
                        rec[f"nvcomp_batch{batch}"] = {"call": label, "equal": ok,
                                                       "GBps": _gbps(nbytes * batch, t)}
                        break
                    except Exception as e:  # noqa: BLE001 - record and try the next spelling
                        rec.setdefault("nvcomp_errors", []).append(f"{label}: {e!r}"[:300])
        out[name] = rec
    return out


def _old_contingency(a, b):
    """The previous GPU twin (three cupy.unique), for the before/after timing."""
    import cupy as cp

    a, b = a.ravel(), b.ravel()
    ua, ia = cp.unique(a, return_inverse=True)
    ub, ib = cp.unique(b, return_inverse=True)
    key = ia.ravel().astype(cp.int64) * len(ub) + ib.ravel()
    uk, counts = cp.unique(key, return_counts=True)
    return ua[uk // len(ub)].get(), ub[uk % len(ub)].get(), counts.get()


def _old_region_stats(block):
    """The previous GPU twin's voxel scatter (every voxel, id 0 included), for timing."""
    import cupy

    flat = block.reshape(-1)
    ids, inv = cupy.unique(flat, return_inverse=True)
    inv = inv.reshape(-1)
    m = len(ids)
    index = cupy.arange(flat.size, dtype=cupy.int64)
    first = cupy.full(m, flat.size, cupy.int64)
    cupy.minimum.at(first, inv, index)
    stride = 1
    for ax in range(block.ndim - 1, -1, -1):
        coord = (index // stride) % block.shape[ax]
        stride *= block.shape[ax]
        lo = cupy.full(m, 2**62, cupy.int64)
        cupy.minimum.at(lo, inv, coord)
        hi = cupy.full(m, -1, cupy.int64)
        cupy.maximum.at(hi, inv, coord)
    return ids.get()


def step_ops(args) -> dict:
    import cupy
    from cupyx.scipy import ndimage as cnd

    from gpueval.kernels import components, fused, regions, stats

    side = max(32, int(256 * args.scale ** (1 / 3)))
    a, b = _blocky(1, (side,) * 3), _blocky(2, (side,) * 3, dtype=np.uint64)
    da_, db_ = cupy.asarray(a), cupy.asarray(b)
    out = {"shape": [side] * 3}
    timings = {
        "contingency_new": lambda: stats._contingency_cupy(da_, db_),
        "contingency_old_3_sorts": lambda: _old_contingency(da_, db_),
        "region_stats_new": lambda: regions._chunk_stats_cupy(da_, (0, 0, 0), a.shape),
        "region_stats_old_voxel_atomics": lambda: _old_region_stats(da_),
        "cc_union_find": lambda: components._cc_cupy(da_, 26, False),
        "fused_3_statistics": lambda: fused.chunk_statistics(da_, db_),
        "separate_3_statistics": lambda: (stats._contingency_cupy(da_, db_),
                                          regions._chunk_stats_cupy(da_, (0, 0, 0), a.shape),
                                          regions._chunk_stats_cupy(db_, (0, 0, 0), a.shape)),
    }
    for name, fn in timings.items():
        try:
            fn()  # compile
            out[name] = _timeit(fn)
        except Exception as e:  # noqa: BLE001
            out[name] = f"error: {e!r}"[:300]
    new, old = stats._contingency_cupy(da_, db_), _old_contingency(da_, db_)
    out["contingency_new_equals_old"] = bool(
        np.array_equal(new.ids_a, old[0]) and np.array_equal(new.ids_b, old[1])
        and np.array_equal(new.counts, old[2]))
    host = stats.contingency(a, b)
    out["contingency_new_equals_cpu"] = bool(np.array_equal(new.counts, host.counts))
    t0 = time.perf_counter()
    stats.contingency(a, b)
    out["contingency_numba_1_core"] = round(time.perf_counter() - t0, 5)
    for s in (max(8, int(64 * args.scale ** (1 / 3))), max(8, int(128 * args.scale ** (1 / 3)))):
        mask = cupy.asarray(_blocky(3, (s,) * 3, ids=2) != 0)
        cnd.distance_transform_edt(mask)
        out[f"edt_{s}"] = _timeit(lambda m=mask: cnd.distance_transform_edt(m))
    return out


_COLD = r"""
import json, sys, time
t0 = time.perf_counter()
import cupy, numpy as np
cupy.cuda.Device().synchronize()
t1 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from gpueval.kernels import stats, regions
a = cupy.asarray(np.arange(64**3, dtype=np.uint32).reshape(64, 64, 64) // 4096)
stats._contingency_cupy(a, a); regions._chunk_stats_cupy(a, (0, 0, 0), a.shape)
cupy.cuda.Device().synchronize()
t2 = time.perf_counter()
from gpueval.resources import cuda_source, cuda_dir
cupy.RawModule(code=cuda_source("cc_union_find.cu")).get_function("cc_init")
t3 = time.perf_counter()
fb = cuda_dir() / "cc_union_find.fatbin"
t4 = None
if fb.is_file():
    cupy.RawModule(path=str(fb)).get_function("cc_init"); t4 = time.perf_counter() - t3
print(json.dumps({"import_and_context_s": t1 - t0, "first_stats_calls_s": t2 - t1,
                  "cc_module_from_source_s": t3 - t2, "cc_module_from_fatbin_s": t4}))
"""


def step_cold(args) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, CUPY_CACHE_DIR=cache)
        proc = subprocess.run([sys.executable, "-c", _COLD, str(ROOT)], env=env,
                              capture_output=True, text=True, timeout=240)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu_chunk(args_):
    path_a, path_b, sl = args_
    import zarr

    from gpueval.kernels.stats import contingency

    za, zb = zarr.open_array(path_a, mode="r"), zarr.open_array(path_b, mode="r")
    return contingency(za[sl], zb[sl])


def step_e2e(args) -> dict:
    import itertools
    import tempfile

    import cupy
    import zarr

    from gpueval.io import device_decode as dd
    from gpueval.kernels.stats import Contingency, contingency

    c = 128 if args.scale >= 1 / 64 else 32  # chunk side (smaller only for smoke tests)
    side = max(c, int(512 * args.scale ** (1 / 3)) // c * c)
    tmp = Path(tempfile.mkdtemp(prefix="issue20-", dir=args.work))
    paths = []
    t0 = time.perf_counter()
    for name, seed, dtype in (("truth", 1, np.uint32), ("pred", 2, np.uint32)):
        z = zarr.create_array(str(tmp / f"{name}.zarr"), shape=(side,) * 3,
                              chunks=(c,) * 3, dtype=dtype,
                              compressors=zarr.codecs.ZstdCodec(level=3))

        def write(idx, z=z, seed=seed, dtype=dtype):
            sl = tuple(slice(i * c, (i + 1) * c) for i in idx)
            z[sl] = _blocky(seed * 100003 + hash(idx) % 99991, (c,) * 3, dtype=dtype)

        grid = list(itertools.product(range(side // c), repeat=3))
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(write, grid))
        paths.append(str(tmp / f"{name}.zarr"))
    out = {"shape": [side] * 3, "build_s": round(time.perf_counter() - t0, 2)}
    slices = [tuple(slice(i * c, (i + 1) * c) for i in idx) for idx in grid]

    def gpu_run():
        la, lb = dd.layout_of(paths[0]), dd.layout_of(paths[1])
        parts = []
        for (_, ba), (_, bb) in zip(dd.regions(la, (4, 4, 4), xp=cupy, trusted=True, threads=16),
                                    dd.regions(lb, (4, 4, 4), xp=cupy, trusted=True, threads=16),
                                    strict=True):
            parts.append(contingency(ba, bb))
        return Contingency.combine(parts)

    def cpu_threads():
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            return Contingency.combine(list(pool.map(_cpu_chunk, [(*paths, s) for s in slices])))

    def cpu_processes():
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            return Contingency.combine(list(pool.map(_cpu_chunk, [(*paths, s) for s in slices])))

    results = {}
    for name, fn in (("gpu_pipeline", gpu_run), ("cpu_threads", cpu_threads),
                     ("cpu_processes", cpu_processes)):
        try:
            fn()  # warm: JIT, Numba cache, page cache
            t0 = time.perf_counter()
            results[name] = fn()
            out[f"{name}_s"] = round(time.perf_counter() - t0, 3)
        except Exception as e:  # noqa: BLE001
            out[f"{name}_s"] = f"error: {e!r}"[:300]
    ref = results.get("cpu_threads")
    for name, res in results.items():
        out[f"{name}_equal"] = ref is not None and all(
            np.array_equal(getattr(ref, f), getattr(res, f)) for f in ("ids_a", "ids_b", "counts"))
    return out


STEPS = {"env": step_env, "h2d": step_h2d, "decode": step_decode, "ops": step_ops,
         "cold": step_cold, "e2e": step_e2e}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("step", choices=sorted(STEPS))
    p.add_argument("--out", default=os.environ.get("OUT", "device-out"))
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--work", default=None, help="scratch folder for e2e stores")
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        rec = {"step": args.step, "ok": True, **STEPS[args.step](args)}
    except Exception as e:  # noqa: BLE001 - a step's failure is a result too
        rec = {"step": args.step, "ok": False, "error": repr(e)[:500],
               "traceback": traceback.format_exc()[-4000:]}
    rec["wall_s"] = round(time.perf_counter() - t0, 2)
    text = json.dumps(rec, indent=1, default=str)
    (Path(args.out) / f"issue20-{args.step}.json").write_text(text)
    print(text)
    return 0 if rec["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
