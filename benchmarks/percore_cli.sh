#!/usr/bin/env bash
# Whole-process CPU of `gpueval score cellmap` on one dense uint32 instance label, pinned to one
# CPU (issue #18: "≥ 30 MVx/s per core end to end, whole process").
#
# Usage: benchmarks/percore_cli.sh DATA [ROUNDS]
#   DATA: a folder holding zarr v2 arrays `gt` and `pred` (e.g. the one
#   `benchmarks/percore_profile.py --data DATA` builds: the uint32 label of `cellmap_dense`).
# The arrays are copied once into the CellMap layout (crop1/mito, 8 nm, one-row manifest) under
# DATA/cli; each round prints wall, user and system seconds of the process
# (`taskset -c 0`, `DASK_NUM_WORKERS=1`) and then of a 2-thread run. MVx/s per CPU-s =
# voxels / (user + system).
set -euo pipefail
DATA=$(cd "$1" && pwd); ROUNDS=${2:-3}; CLI=$DATA/cli
if [ ! -f "$CLI/manifest.csv" ]; then
  for side in truth sub.zarr; do
    mkdir -p "$CLI/$side/crop1"
    echo '{"zarr_format": 2}' > "$CLI/$side/.zgroup"
    echo '{"zarr_format": 2}' > "$CLI/$side/crop1/.zgroup"
  done
  cp -r "$DATA/gt" "$CLI/truth/crop1/mito"       # plain copies: the reader refuses hard links
  cp -r "$DATA/pred" "$CLI/sub.zarr/crop1/mito"
  for side in truth sub.zarr; do
    echo '{"voxel_size": [8.0, 8.0, 8.0], "translation": [0.0, 0.0, 0.0]}' \
      > "$CLI/$side/crop1/mito/.zattrs"
  done
  python3 - "$CLI" <<'PY'
import json, sys
from gpueval.challenges.cellmap.manifest import write_manifest
from gpueval.io.align import Grid
cli = sys.argv[1]
shape = tuple(json.load(open(f"{cli}/truth/crop1/mito/.zarray"))["shape"])
write_manifest(f"{cli}/manifest.csv", [(1, "synthetic", "mito", Grid((8.0,) * 3, (0.0,) * 3, shape))])
PY
fi
score() {
  /usr/bin/time -f "%e s wall, %U s user, %S s system, %M KB peak RSS" "$@" python3 -m gpueval \
    score cellmap --truth "$CLI/truth" --submission "$CLI/sub.zarr" \
    --set "manifest=$CLI/manifest.csv" --device cpu --quiet --json "$CLI/out.json"
}
for _ in $(seq "$ROUNDS"); do
  echo -n "1 CPU:     "; DASK_NUM_WORKERS=1 score taskset -c 0 2>&1 | tail -1
  echo -n "2 threads: "; score env 2>&1 | tail -1
done
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['items'])" "$CLI/out.json"
