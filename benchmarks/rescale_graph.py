"""Graph build of a resampled CellMap label, and whole ``gpueval score cellmap`` processes of
such labels, in source trees interleaved (issue #18, session 9: ``io.align.rescale``).

``build DIR ROUNDS TREE [TREE ...]``: writes once into ``DIR/big`` the metadata of a 520³
uint32 truth crop at 8 nm and of two predictions of it (zarr v2, 64³ storage chunks, no chunk
written: a build reads nothing), at 4 nm (1040³, shrunk ×2) and 16 nm (260³, grown ×2): 125
rescale blocks each. Then, ROUNDS times, for every tree and case in turn, a fresh process
(``DASK_ARRAY__RECHUNK__METHOD=tasks``, as the command line sets it) opens the label with
gpueval's reader and prints the process CPU seconds of its first ``align_to_grid`` (cold:
lazy imports included), the median of 5 more (warm), the median of 5 builds of the whole
label graph (``align_to_grid`` + ``scoring_2026.instance_delayed``), the tasks of the aligned
array's graph, and whether ``distributed`` was imported.

``score DIR ROUNDS TREE [TREE ...]``: writes once into ``DIR/small`` a ``SIDE``³ crop (default
128, ``build_crop``'s objects, 32³ chunks; an instance label ``mito`` and a semantic label
``er``, its foreground) at 8 nm and its prediction at 4 nm (each voxel repeated 2×2×2) and at
16 nm (every second voxel), then runs ``python -m gpueval score cellmap --device cpu``
(through ``runpy``, so the child reports ``sys.modules`` afterwards) ROUNDS times per tree and
case, interleaved, after one untimed round, and prints the user + system CPU seconds of each
child, its peak RSS, whether it imported ``distributed``, and whether every tree gave the same
JSON result (every key but ``runtime``). ``SIDE=256`` (DIR apart): 8 blocks per
resampled label, where the 128³ crop has 1.

``blocks ROUNDS TREE [TREE ...]`` (session 10: the blocks' compute): in a fresh process per
tree and round, interleaved, builds ``build_crop(SIDE, SIDE // 4, seed=18)``'s prediction
(default ``SIDE=256``) at 4 nm (each voxel repeated 2×2×2: a 512³ source shrunk ×2) and at
16 nm (every second voxel: 128³ grown ×2), as the semantic foreground (``> 0``, bool) and as
uint32 instance ids, computes ``io.align.rescale`` once (default 128³ blocks) recording each
block's arguments, then prints the process CPU seconds of calling ``_rescale_block`` on all of
them (the minimum of 3 passes; the first call compiles or loads the Numba cache and is not
timed).

``threads DIR ROUNDS TREE [TREE ...]``: wall seconds of ``gpueval score cellmap`` of the
``score`` data's 4 nm prediction with ``DASK_NUM_WORKERS=1`` and ``2``, interleaved, with the
load average before each run.

``score`` compares every value of the JSON results but ``runtime`` between the trees.

Children run in DIR (``python -c`` puts the working folder first on ``sys.path``).
Compile the trees' bytecode first (``python -m compileall -q TREE/gpueval``).
Usage: ``python benchmarks/rescale_graph.py build /tmp/h9r 3 /tmp/base $PWD``,
``SIDE=256 python benchmarks/rescale_graph.py score /tmp/rescale256 3 /tmp/base $PWD``,
``python benchmarks/rescale_graph.py blocks 3 /tmp/base $PWD``.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

CASES = {"4nm": 4.0, "16nm": 16.0}

_BUILD = r"""
import json, statistics, sys, time
root, vs = sys.argv[1], float(sys.argv[2])
import dask.array
from gpueval.io.arrays import open_volume
from gpueval.io.align import Grid, align_to_grid
from gpueval.challenges.cellmap.scoring_2026 import instance_delayed
from gpueval.bench.cellmap import CONSTS
from gpueval.kernels import throughput_carry
src = open_volume(f"{root}/sub{vs:g}/crop1/mito").data
gt = open_volume(f"{root}/truth/crop1/mito").data
grid = Grid((8.0,) * 3, (0.0,) * 3, tuple(gt.shape))
def align():
    return align_to_grid(src, (vs,) * 3, (0.0,) * 3, grid, instance=True)
c = time.process_time(); y = align(); cold = time.process_time() - c
dist = "distributed" in sys.modules
warm = []
for _ in range(5):
    c = time.process_time(); align(); warm.append(time.process_time() - c)
label = []
for _ in range(5):
    c = time.process_time()
    with throughput_carry.scope():
        instance_delayed(gt, align(), grid.voxel_size, CONSTS, device="cpu")
    label.append(time.process_time() - c)
print(json.dumps({"cold": cold, "warm": statistics.median(warm),
                  "label": statistics.median(label), "tasks": len(y.__dask_graph__()),
                  "distributed": dist or "distributed" in sys.modules}))
"""

_SCORE = r"""
import json, os, runpy, sys
os.environ["GPUEVAL_FULL_EXIT"] = "1"
sys.argv = ["gpueval"] + json.loads(sys.argv[1])
try:
    runpy.run_module("gpueval", run_name="__main__")
except SystemExit:
    pass
# VmHWM, not ru_maxrss: the latter keeps the (forking) parent's high-water mark
hwm = next(int(line.split()[1]) for line in open("/proc/self/status")
           if line.startswith("VmHWM"))
print(json.dumps(["distributed" in sys.modules, hwm / 1024]))
"""


_BLOCKS = r"""
import json, sys, time
import dask.array as da
import numpy as np
from gpueval.bench.cellmap import build_crop
from gpueval.io import align
side = int(sys.argv[1])
_, pred = build_crop(side, max(4, side // 4), seed=18)
fine = np.repeat(np.repeat(np.repeat(pred, 2, 0), 2, 1), 2, 2)
coarse = pred[::2, ::2, ::2]
cases = {"4nm semantic": (fine > 0, 0.5, False), "16nm semantic": (coarse > 0, 2.0, False),
         "4nm instance": (fine, 0.5, True), "16nm instance": (coarse, 2.0, True)}
block = align._rescale_block
out = {}
for name, (img, scale, instance) in cases.items():
    calls = []
    align._rescale_block = lambda *a: calls.append(a) or block(*a)
    align.rescale(da.from_array(img, chunks=64), (scale,) * 3,
                  instance=instance).compute(scheduler="sync")
    align._rescale_block = block
    times = []
    for _ in range(3):
        c = time.process_time()
        for a in calls:
            block(*a)
        times.append(time.process_time() - c)
    out[name] = [len(calls), min(times)]
print(json.dumps(out))
"""


def blocks(rounds: int, trees: list[str]) -> None:
    side = os.environ.get("SIDE", "256")
    runs: dict[tuple[str, str], list[float]] = {}
    nblocks = {}
    for _ in range(rounds):
        for tree in trees:
            # cwd "/": ``python -c`` puts the working folder first on sys.path, before TREE
            out = subprocess.run([sys.executable, "-c", _BLOCKS, side], capture_output=True,
                                 text=True, env={**os.environ, "PYTHONPATH": tree}, cwd="/",
                                 check=True).stdout
            for case, (n, cpu) in json.loads(out.splitlines()[-1]).items():
                runs.setdefault((tree, case), []).append(cpu)
                nblocks[case] = n
    for (tree, case), cpus in runs.items():
        print(json.dumps({"tree": tree, "case": case, "blocks": nblocks[case],
                          "cpu": sorted(round(c, 3) for c in cpus)}))


def threads(root: Path, rounds: int, trees: list[str]) -> None:
    import time

    small = root / "small"
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in range(rounds + 1):  # round 0 warms the page cache and the Numba caches
        for tree in trees:
            for workers in ("1", "2"):
                argv = ["score", "cellmap", "--truth", str(small / "truth"), "--submission",
                        str(small / "sub4"), "--device", "cpu", "--quiet", "--json",
                        str(small / "out.json"), "--set", f"manifest={small / 'manifest.csv'}"]
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-c", _SCORE, json.dumps(argv)],
                               capture_output=True, text=True, cwd=small, check=True,
                               env={**os.environ, "PYTHONPATH": tree,
                                    "DASK_NUM_WORKERS": workers})
                if r:
                    runs.setdefault((tree, workers), []).append(
                        (time.perf_counter() - t0, load))
    for (tree, workers), recs in runs.items():
        print(json.dumps({"tree": tree, "threads": int(workers),
                          "wall": [round(w, 3) for w, _ in recs],
                          "load_before": [round(lo, 2) for _, lo in recs]}))


def _write_big(root: Path) -> None:
    import zarr

    for name, side, vs in (("truth", 520, 8.0), ("sub4", 1040, 4.0), ("sub16", 260, 16.0)):
        grp = zarr.open_group(str(root / name), mode="a", zarr_format=2)
        arr = grp.require_group("crop1").create_array("mito", shape=(side,) * 3,
                                                      dtype="uint32", chunks=(64,) * 3)
        arr.attrs.update(voxel_size=[vs] * 3, translation=[0.0] * 3)


def _write_small(root: Path, side: int) -> None:
    import numpy as np
    import zarr

    from gpueval.bench.cellmap import build_crop
    from gpueval.challenges.cellmap.manifest import write_manifest
    from gpueval.io.align import Grid

    gt, pred = build_crop(side, max(4, side // 4), seed=18)
    fine = np.repeat(np.repeat(np.repeat(pred, 2, 0), 2, 1), 2, 2)
    for name, data, vs in (("truth", gt, 8.0), ("sub4", fine, 4.0),
                           ("sub16", pred[::2, ::2, ::2], 16.0)):
        grp = zarr.open_group(str(root / name), mode="a", zarr_format=2)
        # the instance label, and a semantic one (linear resampling, anti-aliasing when
        # shrinking, the source-minimum clip): the foreground of the same ids
        for label, values in (("mito", data), ("er", data > 0)):
            arr = grp.require_group("crop1").create_array(label, shape=values.shape,
                                                          dtype=values.dtype,
                                                          chunks=(32,) * 3)
            arr[:] = values
            arr.attrs.update(voxel_size=[vs] * 3, translation=[0.0] * 3)
    write_manifest(root / "manifest.csv",
                   [(1, "synthetic", label, Grid((8.0,) * 3, (0.0,) * 3, gt.shape))
                    for label in ("mito", "er")])


def _env(tree: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": tree, "DASK_ARRAY__RECHUNK__METHOD": "tasks"}


def build(root: Path, rounds: int, trees: list[str]) -> None:
    if not (root / "big" / "truth").exists():
        _write_big(root / "big")
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(rounds):
        for tree in trees:
            for case, vs in CASES.items():
                out = subprocess.run([sys.executable, "-c", _BUILD, str(root / "big"),
                                      str(vs)], capture_output=True, text=True,
                                     env=_env(tree), cwd=root, check=True).stdout
                runs.setdefault((tree, case), []).append(json.loads(out.splitlines()[-1]))
    for (tree, case), recs in runs.items():
        print(json.dumps({"tree": tree, "case": case, **{
            k: sorted(round(r[k], 4) for r in recs) for k in ("cold", "warm", "label")},
            "tasks": recs[0]["tasks"], "distributed": [r["distributed"] for r in recs]}))


def score(root: Path, rounds: int, trees: list[str]) -> None:
    small = root / "small"
    if not (small / "manifest.csv").exists():
        small.mkdir(parents=True, exist_ok=True)
        _write_small(small, int(os.environ.get("SIDE", "128")))
    runs: dict[tuple[str, str], list[tuple[float, list]]] = {}
    items: dict[tuple[str, str], object] = {}
    for r in range(rounds + 1):  # round 0 warms the page cache and each tree's caches
        for tree in trees:
            for case in CASES:
                out = small / "out.json"
                argv = ["score", "cellmap", "--truth", str(small / "truth"), "--submission",
                        str(small / f"sub{CASES[case]:g}"), "--device", "cpu", "--quiet",
                        "--json", str(out), "--set", f"manifest={small / 'manifest.csv'}"]
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                p = subprocess.run([sys.executable, "-c", _SCORE, json.dumps(argv)],
                                   capture_output=True, text=True,
                                   env={**os.environ, "PYTHONPATH": tree}, cwd=small,
                                   check=True)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                if r:
                    runs.setdefault((tree, case), []).append(
                        (cpu, json.loads(p.stdout.splitlines()[-1])))
                result = json.loads(out.read_text())  # every value but the run's timings
                items[(tree, case)] = {k: v for k, v in result.items() if k != "runtime"}
    for (tree, case), recs in runs.items():
        same = items[(tree, case)] == items[(trees[0], case)]
        print(json.dumps({"tree": tree, "case": case,
                          "cpu": sorted(round(c, 3) for c, _ in recs),
                          "median": round(statistics.median(c for c, _ in recs), 3),
                          "distributed": [d for _, (d, _) in recs],
                          "peak_rss_mib": sorted(round(m) for _, (_, m) in recs),
                          "same_result": same,
                          "result": {k: items[(tree, case)].get(k) for k in
                                     ("status", "score", "metrics", "items", "warnings")}}))


def main() -> None:
    if sys.argv[1] == "blocks":
        blocks(int(sys.argv[2]), sys.argv[3:])
        return
    mode, root, rounds, trees = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    {"build": build, "score": score, "threads": threads}[mode](root, rounds, trees)


if __name__ == "__main__":
    main()
