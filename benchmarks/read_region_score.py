"""Chunk decodes and CPU seconds of whole ``gpueval score cellmap`` processes, source trees
interleaved (session 10: ``gpueval.io.arrays.read_region``, small reads ask the storage).

``python benchmarks/read_region_score.py DIR ROUNDS TREE [TREE ...]`` writes once into DIR a
512³ crop at 8 nm with a semantic label ``er`` (uint8, zarr v2, 64³ storage chunks, so
open_volume groups them into large dask chunks; the last half of the volume, one whole
dask chunk of 256×512×512, is all background and never written: missing chunks, the fill
path) and its prediction (the truth with every fourth 32³ cell flipped). Then ROUNDS times,
for every tree in turn, a fresh process runs
``gpueval score cellmap --device cpu`` in-process with PYTHONPATH=TREE, counting every chunk
file gpueval's zarr v2 reader decodes (``observe_chunk_reads``), and prints one JSON line:
tree, user+system CPU seconds of the process, decodes (total, per array, most decodes of one
chunk) and the result JSON (every key but ``runtime`` compared between trees).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import collections, json, os, sys, io, contextlib
from gpueval.io.arrays import observe_chunk_reads
from gpueval import cli
seen = collections.Counter()
lock = __import__("threading").Lock()
def note(path, key, _n):
    with lock:
        seen[(os.path.relpath(path, sys.argv[1]), key)] += 1
d = sys.argv[1]
with observe_chunk_reads(note):
    rc = cli.main(["score", "cellmap", "--truth", d + "/truth", "--submission", d + "/sub",
                   "--json", d + "/out-%d.json" % os.getpid(), "--device", "cpu", "--quiet",
                   "--set", "manifest=" + d + "/manifest.csv"])
t = os.times()
res = json.load(open(d + "/out-%d.json" % os.getpid()))
os.remove(d + "/out-%d.json" % os.getpid())
res.pop("runtime", None)
per = collections.Counter()
for (arr, _k), n in seen.items():
    per[arr] += n
print(json.dumps({"rc": rc, "cpu": round(t.user + t.system, 3), "decodes": sum(seen.values()),
                  "per_array": dict(per), "max_per_chunk": max(seen.values(), default=0),
                  "result": res}))
"""


def build(d: Path) -> None:
    import numpy as np
    import zarr

    if (d / "manifest.csv").exists():
        return
    rng = np.random.default_rng(10)
    cells = rng.random((16, 16, 16)) > 0.6
    gt = np.kron(cells, np.ones((32, 32, 32), bool)).astype(np.uint8)
    gt[256:] = 0  # the last half (a whole dask chunk): never written (missing chunks)
    flip = np.zeros((16, 16, 16), bool)
    flip.flat[::4] = True
    pred = gt ^ np.kron(flip, np.ones((32, 32, 32), bool)).astype(np.uint8)
    pred[256:] = 0
    for name, data in (("truth", gt), ("sub", pred)):
        zarr.open_group(str(d / name), mode="w", zarr_format=2)
        zarr.open_group(str(d / name / "crop1"), mode="w", zarr_format=2)
        a = zarr.create_array(str(d / name / "crop1" / "er"), shape=data.shape,
                              chunks=(64, 64, 64), dtype=data.dtype, zarr_format=2,
                              fill_value=0, config={"write_empty_chunks": False})
        a[:] = data
        a.attrs.update({"voxel_size": [8.0] * 3, "translation": [0.0] * 3})
    (d / "manifest.csv").write_text(
        "crop_name,dataset,class_label,voxel_size,translation,shape\n"
        "1,synthetic,er,[8.0;8.0;8.0],[0.0;0.0;0.0],[512;512;512]\n")


def main() -> None:
    d, rounds, trees = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    d.mkdir(parents=True, exist_ok=True)
    build(d)
    results = {}
    for r in range(rounds):
        for tree in trees:
            env = dict(os.environ, PYTHONPATH=tree)
            out = subprocess.run([sys.executable, "-c", CHILD, str(d)], env=env, cwd=tree,
                                 capture_output=True, text=True, check=True).stdout
            rec = json.loads(out.strip().splitlines()[-1])
            results.setdefault(tree, rec["result"])
            rec["same_result"] = rec.pop("result") == results[trees[0]] if trees[0] in \
                results else None
            print(json.dumps({"round": r, "tree": tree, **rec}), flush=True)


if __name__ == "__main__":
    main()
