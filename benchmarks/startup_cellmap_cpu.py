"""Whole-process CPU seconds of ``python -m gpueval score cellmap`` on a small crop, two source
trees interleaved (issue #19: start-up of the CellMap CPU path; session 9).

Builds once, into DIR, a ``SIDE``³ ``mito`` crop in the CellMap layout (the ``cellmap_224``
workload's writer, :mod:`gpueval.bench.cellmap_process`, 64³ chunks) and a one-row manifest,
then runs ``python -m gpueval score cellmap --device cpu --quiet --json ...`` with
``PYTHONPATH`` set to each TREE in turn, ROUNDS times, and prints per tree the user+system
CPU seconds of each child process (``resource.getrusage(RUSAGE_CHILDREN)`` deltas) and its
wall time, sorted, with the score of the last run (equal for every tree, or the comparison is
void). Compile the trees' bytecode first (``python -m compileall -q TREE/gpueval``: this VM
sets ``PYTHONDONTWRITEBYTECODE``).

Usage: ``python benchmarks/startup_cellmap_cpu.py DIR ROUNDS TREE [TREE ...]``
(e.g. ``/tmp/c112 7 /work/main $PWD``); ``SIDE`` in the environment (default 112);
``SHIFT=1``: the submission starts one voxel later (translation 8 nm), so it is pasted onto
the truth grid and rechunked (the path where dask looked for a distributed client).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def _build(root: Path, side: int, tree: str, shift: bool) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from gpueval.bench.cellmap import build_crop\n"
        "from gpueval.bench.cellmap_process import _write\n"
        "from gpueval.challenges.cellmap.manifest import write_manifest\n"
        "from gpueval.io.align import Grid\n"
        f"root, side = Path({str(root)!r}), {side}\n"
        "gt, pred = build_crop(side, max(4, round(200 * (side / 224) ** 3)), seed=224)\n"
        "_write(root / 'truth', gt, 8.0)\n"
        f"shift = {int(shift)}\n"
        "_write(root / 'sub.zarr', pred[shift:, shift:, shift:], 8.0)\n"
        "if shift:\n"
        "    import zarr\n"
        "    zarr.open_array(str(root / 'sub.zarr' / 'crop1' / 'mito'), mode='a')"
        ".attrs['translation'] = [8.0 * shift] * 3\n"
        "write_manifest(root / 'manifest.csv', "
        "[(1, 'synthetic', 'mito', Grid((8.0,) * 3, (0.0,) * 3, gt.shape))])\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ,
                                                                 "PYTHONPATH": tree})


def _run(root: Path, tree: str) -> tuple[float, float, object]:
    out = root / "out.json"
    argv = [sys.executable, "-m", "gpueval", "score", "cellmap", "--truth", str(root / "truth"),
            "--submission", str(root / "sub.zarr"), "--device", "cpu", "--quiet", "--json",
            str(out), "--set", f"manifest={root / 'manifest.csv'}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, cwd=root, env={**os.environ, "PYTHONPATH": tree})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, json.loads(out.read_text()).get("items")


def main() -> None:
    root, rounds, trees = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    if not (root / "manifest.csv").exists():
        root.mkdir(parents=True, exist_ok=True)
        _build(root, int(os.environ.get("SIDE", "112")), trees[0],
               os.environ.get("SHIFT", "0") not in ("", "0"))
    runs: dict[str, list[tuple[float, float]]] = {t: [] for t in trees}
    items = {}
    for tree in trees:
        _run(root, tree)  # warm: page cache, Numba's cache index of this tree
    for _ in range(rounds):
        for tree in trees:
            cpu, wall, items[tree] = _run(root, tree)
            runs[tree].append((cpu, wall))
    for tree in trees:
        cpu = sorted(c for c, _ in runs[tree])
        wall = sorted(w for _, w in runs[tree])
        print(json.dumps({"tree": tree, "cpu_s": [round(c, 3) for c in cpu],
                          "cpu_median": round(cpu[len(cpu) // 2], 3),
                          "wall_s": [round(w, 3) for w in wall], "items": items[tree],
                          "load": os.getloadavg()}))


if __name__ == "__main__":
    main()
