#!/usr/bin/env bash
# Run every workload at the size its issue names and record the result with the machine.
#   benchmarks/run_all.sh [cpu|gpu] [scale]
# Writes benchmarks/results/<date>-<device>-all.json. Each workload runs in its own process
# (honest peak RSS); give the machine to the benchmark alone, timings are noisy otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
device=${1:-cpu}
scale=${2:-1}
out="benchmarks/results/$(date +%F)-${device}-all.json"
python3 -m gpueval bench --device "$device" --scale "$scale" --json "$out"
echo "wrote $out"
