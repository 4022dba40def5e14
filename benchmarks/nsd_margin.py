"""What 1.3x the decode floor leaves for MedSegFM NSD (issue #19), measured in fresh processes.

On ``medsegfm_nsd_floor``'s 300x512x512 case (two deflated npz files, built in DATA_DIR by
``floor_interleaved_nsd.py``'s generator when missing), each round times, interleaved:

* ``floor``: the workload's decode floor (both members inflated by libdeflate on two threads,
  interpreter start included);
* ``floor_imports``: a process that only imports what the floor imports (NumPy, imagecodecs);
* ``gpueval_imports``: a process that only imports what ``gpueval score medsegfm`` imports
  before it reads a byte (the command line, the challenge package, its resident-case path);
* ``touch``: inside one process, after both volumes are decoded, one read-only pass over each
  (``np.count_nonzero``, one thread per volume): what any scan of the decoded voxels costs
  at least, whatever language it is written in;
* ``gpueval``: the whole ``gpueval score medsegfm --device cpu`` process.

The goal (``gpueval <= 1.3 x floor``) leaves ``0.3 x floor`` for everything gpueval does beyond
decoding: its extra imports (``gpueval_imports - floor_imports``), the scans of both volumes
(at least ``touch``), the surface distances of every class, and writing the result. Minimum
over rounds of each.

Usage: ``python benchmarks/nsd_margin.py DATA_DIR ROUNDS OUT.json``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

GPUEVAL_IMPORTS = """
import gpueval.startup, gpueval.cli, gpueval.config
import gpueval.challenges.medsegfm.score, gpueval.challenges.medsegfm.resident
import gpueval.challenges.medsegfm.semantic, gpueval.io.arrays
"""

TOUCH = """
import sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
{floor}
with ThreadPoolExecutor(2) as ex:
    arrays = [np.frombuffer(b, np.uint8) for b in ex.map(load, {pairs})]
    t0 = time.perf_counter()
    list(ex.map(np.count_nonzero, arrays))
    print(time.perf_counter() - t0)
"""


def _wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=HERE.parent)
    return time.perf_counter() - t0


def main() -> None:
    from floor_interleaved_nsd import _build

    from gpueval.bench.medsegfm import MEDSEGFM_FLOOR, floor_scripts

    data, rounds, out_path = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    _build(data)
    truth, sub = data / "truth" / "case.npz", data / "sub" / "case.npz"
    floor, _ = floor_scripts(truth, sub)
    pairs = repr([(str(truth), "gts"), (str(sub), "segs")])
    load_only = MEDSEGFM_FLOOR.split("with ThreadPoolExecutor")[0]
    touch = TOUCH.format(floor=load_only, pairs=pairs)
    py = sys.executable
    res: dict[str, list[float]] = {k: [] for k in
                                   ("floor", "floor_imports", "gpueval_imports", "touch",
                                    "gpueval")}
    with tempfile.TemporaryDirectory() as tmp:
        score = [py, "-m", "gpueval", "score", "medsegfm", "--truth", str(truth.parent),
                 "--submission", str(sub.parent), "--device", "cpu", "--quiet",
                 "--json", str(Path(tmp) / "r.json")]
        for _ in range(rounds):
            res["floor"].append(_wall([py, "-c", floor]))
            res["floor_imports"].append(_wall([py, "-c", "import numpy, imagecodecs"]))
            res["gpueval_imports"].append(_wall([py, "-c", GPUEVAL_IMPORTS]))
            res["touch"].append(float(subprocess.run(
                [py, "-c", touch], check=True, capture_output=True, text=True).stdout))
            res["gpueval"].append(_wall(score))
    best = {k: min(v) for k, v in res.items()}
    margin = 0.3 * best["floor"]
    extra_imports = best["gpueval_imports"] - best["floor_imports"]
    summary = {"min_seconds": best, "all_seconds": res, "margin_0.3_floor": margin,
               "extra_imports": extra_imports,
               "left_for_scans_distances_and_output": margin - extra_imports - best["touch"],
               "gpueval_beyond_floor": best["gpueval"] - best["floor"],
               "ratio": best["gpueval"] / best["floor"], "load": os.getloadavg()[0]}
    for k, v in summary.items():
        if k != "all_seconds":
            print(k, v, flush=True)
    with open(out_path, "w") as fh:
        json.dump(summary, fh, indent=1)


if __name__ == "__main__":
    main()
