#!/usr/bin/env bash
# GPU verification on a lent device machine (the workplace's `device` tool; see benchmarks/README).
#   benchmarks/on_device.sh tests | bench cold|warm [GPU_SECONDS [ALL_SECONDS]] | issue20 | issue18 | all
#
# `issue18` answers issue 18's last open goal, CPU scaling on the device host's 16 cores (<= 8
# minutes, no GPU used): `cellmap_dense` 1024³ at 1 thread / all threads / one process per core
# in one record (`efficiency` of threads and processes), then `cellmap_600` at 1 thread and at
# all threads (`DASK_NUM_WORKERS`), three alternating rounds, one JSON line per run, and
# `benchmarks/scaling_bound.py cellmap_600` (the bound its task graph allows on P cores).
#
# `issue20` answers issue 20's device questions in <= 8 minutes (steps of
# benchmarks/issue20_probe.py, each under its own timeout, each writing $OUT/issue20-STEP.json and
# $OUT/issue20-STEP.log; a step starts only if the 8-minute budget still covers its timeout):
#   env (versions) · h2d (pinned vs pageable, streams) · decode (nvCOMP batched vs numcodecs 1/16
#   threads: the GB/s the design hinges on, and which nvCOMP call works) · ops (new vs previous
#   contingency / region-stats twins, CC, EDT) · cold (fresh kernel cache; fatbin vs NVRTC) ·
#   e2e (512³ zstd pair: GPU pipeline vs 16 CPU threads vs 16 processes, tables equal) ·
#   cellmap_dense (only if `gpueval bench --list` has it: GPU vs --device cpu).
# Carry to the device: `.whl/` with the wheels it lacks, for Python 3.12 / CUDA 13:
#   pip download --python-version 3.12 --only-binary=:all: --no-deps -d .whl \
#       nvidia-nvcomp-cu13 nvidia-libnvcomp-cu13 numcodecs zarr donfig crc32c dask cc3d fastremap edt
# and the fatbin built here (gitignored): `python -m gpueval.kernels.device build` →
# kernels/cc_union_find.fatbin.
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

ISSUE20_BUDGET=${ISSUE20_BUDGET:-480}  # seconds for the whole issue-20 run

probe_step() {  # probe_step STEP TIMEOUT [ARGS...]: run one probe step if the budget allows
    local step=$1 limit=$2; shift 2
    local left=$((ISSUE20_BUDGET - (SECONDS - START)))
    if (( left < limit )); then
        echo "== issue20 $step skipped: ${left} s left, needs ${limit} s" | tee "$OUT/issue20-$step.log"
        return 0
    fi
    echo "== issue20 $step (t=$((SECONDS - START)) s, timeout ${limit} s)"
    timeout -k 5 "$limit" python3 benchmarks/issue20_probe.py "$step" --out "$OUT" "$@" \
        > "$OUT/issue20-$step.log" 2>&1
    local rc=$?
    echo "   rc=$rc"; tail -c 1500 "$OUT/issue20-$step.log"
}

run_issue20() {
    mkdir -p "$OUT" /tmp/issue20-work
    probe_step env 30
    probe_step h2d 45
    probe_step decode 100
    probe_step ops 80
    probe_step cold 60
    probe_step e2e 150 --work /tmp/issue20-work
    if python3 -m gpueval bench --list 2>/dev/null | grep -q '^cellmap_dense'; then
        local left=$((ISSUE20_BUDGET - (SECONDS - START)))
        if (( left > 60 )); then
            local half=$(( (left - 10) / 2 ))
            timeout "$half" python3 -m gpueval.bench cellmap_dense --device gpu --scale 1 2>&1 \
                | tail -1 >> "$OUT/issue20-cellmap_dense.jsonl"
            timeout "$half" python3 -m gpueval.bench cellmap_dense --device cpu --scale 1 2>&1 \
                | tail -1 >> "$OUT/issue20-cellmap_dense.jsonl"
        fi
    else
        echo "cellmap_dense is not a bench workload in this checkout" > "$OUT/issue20-cellmap_dense.log"
    fi
    echo "== issue20 done in $((SECONDS - START)) s"
}

run_issue18() {
    local t
    nproc > "$OUT/issue18-nproc.txt"
    for r in 1 2 3; do
        for t in 1 "$(nproc)"; do
            echo "== issue18 cellmap_600 round $r, $t threads (t=$((SECONDS - START)) s)"
            DASK_NUM_WORKERS=$t timeout 90 python3 -m gpueval.bench cellmap_600 --device cpu \
                --scale 1 | tail -1 >> "$OUT/issue18-c600-threads$t.jsonl"
        done
    done
    # the efficiency cellmap_600's task graph allows on this host's cores (one-thread task
    # times replayed on P simulated workers): what the measured rounds above are held to
    echo "== issue18 cellmap_600 graph bound (t=$((SECONDS - START)) s)"
    PYTHONPATH=${PYTHONPATH:-$PWD} timeout 120 python3 benchmarks/scaling_bound.py cellmap_600 \
        --data /tmp/c600 \
        --out "$OUT/issue18-bound-c600.json" > "$OUT/issue18-bound-c600.txt" 2>&1
    echo "== issue18 cellmap_dense 1024³ (t=$((SECONDS - START)) s)"
    timeout 360 python3 -m gpueval.bench cellmap_dense --device cpu --scale 1 2>&1 \
        | tail -1 >> "$OUT/issue18-cellmap_dense.jsonl"
    echo "== issue18 done in $((SECONDS - START)) s"
}

case "${1:-all}" in
    tests) run_tests ;;
    bench) shift; run_bench "$@" ;;
    issue20) run_issue20 ;;
    issue18) run_issue18 ;;
    all) run_tests; run_bench ;;
esac
