#!/usr/bin/env bash
# GPU verification on a lent device machine (the workplace's `device` tool; see benchmarks/README).
#   benchmarks/on_device.sh tests | bench cold|warm [GPU_SECONDS [ALL_SECONDS]] | all
# The machine has CuPy, NumPy, Numba, SciPy, scikit-image, tensorstore, h5py and pytest but none of
# dask, zarr, cc3d, fastremap or edt, and no network: the missing wheels travel in `.whl/`
# (gitignored; `pip download --python-version 3.12 ... -d .whl`, see benchmarks/README.md).
# Everything written lands in $OUT (default ./device-out).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-device-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    lscpu | grep -E '^(Model name|CPU\(s\))'
    python3 -c "import sys, cupy, numpy, numba, dask, zarr, cc3d, scipy
print(sys.version.split()[0], 'cupy', cupy.__version__, 'numpy', numpy.__version__,
      'numba', numba.__version__, 'dask', dask.__version__, 'zarr', zarr.__version__,
      'scipy', scipy.__version__, 'cuda runtime', cupy.cuda.runtime.runtimeGetVersion())"
} 2>&1 | tee "$OUT/env.txt"

run_tests() {
    timeout 240 python3 -m pytest -m gpu ${GPU_TESTS:-tests/gpu} -q -p no:cacheprovider 2>&1 \
        | tee "$OUT/gpu-tests.log"
    GPUEVAL_AUDIT_DEVICE=gpu timeout 200 python3 -m pytest tests/test_audit_*.py -q \
        -p no:cacheprovider 2>&1 | tee "$OUT/audit-gpu.log"
    timeout 60 python3 -m gpueval demo --device gpu --json "$OUT/demo-gpu.json" 2>&1 | tail -20
}

# One process per workload, one JSON line each, appended as they finish: a run cut short by the
# device's time limit still returns what it did (benchmarks/merge_device_results.py merges them).
# CuPy compiles each kernel on first use into ~/.cupy/kernel_cache, and a lent machine starts with
# that cache empty: `warm` first runs each workload at scale 0.02 (same dtypes, so same kernels),
# then times it at full size; `cold` times the first full-size run, compile included. Numba's
# cache starts empty too, so the CPU runs are warmed the same way. GPU_SET / CPU_SET / GPU_TESTS
# narrow a run to fit the device time left.
GPU_SET=${GPU_SET-"contingency confusion cc urisc urisc_r3 cellmap_instance cellmap_600 medsegfm_nsd \
medsegfm_instance xpress refuge"}
CPU_SET=${CPU_SET-"contingency confusion cc urisc cellmap_instance medsegfm_nsd medsegfm_instance xpress \
refuge cellmap_600"}
START=$SECONDS

bench_one() {  # bench_one DEVICE SCALE NAME FILE
    echo "== $3 on $1 at scale $2 (t=$((SECONDS - START)) s)"
    timeout 200 python3 -m gpueval.bench "$3" --device "$1" --scale "$2" | tail -1 >> "$OUT/$4"
}

run_bench() {  # run_bench cold|warm [SECONDS_FOR_GPU [SECONDS_FOR_ALL]]
    python3 -c "import json; from gpueval.bench import machine_info; print(json.dumps(machine_info()))" \
        > "$OUT/bench-machine.json"
    local mode=${1:-warm} gpu_budget=${2:-100000} all_budget=${3:-100000}
    for name in $GPU_SET; do
        (( SECONDS - START < gpu_budget )) || break
        [[ $mode == warm ]] && bench_one gpu 0.02 "$name" bench-gpu-warmup.jsonl
        bench_one gpu 1 "$name" "bench-gpu-$mode.jsonl"
    done
    for name in $CPU_SET; do  # the same machine's CPU, for a same-host ratio
        (( SECONDS - START < all_budget )) || break
        [[ $mode == warm ]] && bench_one cpu 0.02 "$name" bench-cpu-warmup.jsonl  # Numba JIT
        bench_one cpu 1 "$name" "bench-cpu-$mode.jsonl"
    done
}

case "${1:-all}" in
    tests) run_tests ;;
    bench) shift; run_bench "$@" ;;
    all) run_tests; run_bench ;;
esac
