"""CPU time of ``gpueval score medsegfm --device cpu --quiet`` up to its first npz read
(issue #19, session 8 — NSD start-up), two trees alternating run by run.

Each run is a fresh ``python`` that replaces ``gpueval.io.arrays.load_npz_array`` by a probe
printing the process's CPU time (user + system, ``getrusage``: µs resolution, unlike
``os.times``) and leaving at once, then runs ``python -m gpueval score medsegfm …`` as runpy
does. CPU time, not wall time, because the shared two-core machine is never quiet.

Usage: python benchmarks/startup_first_byte_cpu.py BEFORE_TREE AFTER_TREE DATA_DIR RUNS OUT.json

(DATA_DIR holds ``truth/`` and ``sub/`` as for ``benchmarks/floor_interleaved_nsd.py``.)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

PROBE = """\
import os, resource, runpy, sys
import gpueval.io.arrays as arrays
def first_read(*args, **kwargs):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sys.stdout.write(f"{usage.ru_utime + usage.ru_stime:.6f}\\n")
    sys.stdout.flush()
    os._exit(0)
arrays.load_npz_array = first_read
sys.argv = ["gpueval", "score", "medsegfm", "--truth", sys.argv[1], "--submission",
            sys.argv[2], "--device", "cpu", "--quiet", "--json", sys.argv[3]]
runpy.run_module("gpueval", run_name="__main__")
"""


def main(before: str, after: str, data: str, runs: int, out: str) -> dict:
    trees = {"before": before, "after": after}
    seconds: dict[str, list[float]] = {name: [] for name in trees}
    loads = []
    for i in range(runs):
        loads.append(os.getloadavg()[0])
        for name in (("before", "after") if i % 2 else ("after", "before")):
            tree = trees[name]
            p = subprocess.run([sys.executable, "-c", PROBE, f"{data}/truth", f"{data}/sub",
                                f"{data}/first-byte.json"], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": tree}, cwd=tree, check=True)
            seconds[name].append(float(p.stdout.split()[-1]))
    record: dict = {"what": "CPU seconds up to the first load_npz_array call", "runs": seconds,
                    "load_average": {"min": min(loads), "max": max(loads)}}
    for name, values in seconds.items():
        ordered = sorted(values)
        record[name] = {"min": ordered[0], "q1": ordered[len(ordered) // 4],
                        "median": statistics.median(ordered)}
    with open(out, "w") as f:
        json.dump(record, f, indent=1)
    return record


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", help="checkout holding gpueval/ (bytecode compiled)")
    ap.add_argument("after", help="checkout holding gpueval/ (bytecode compiled)")
    ap.add_argument("data", help="folder with truth/ and sub/")
    ap.add_argument("runs", type=int, help="alternating runs per tree")
    ap.add_argument("out", help="JSON record to write")
    a = ap.parse_args()
    summary = main(a.before, a.after, a.data, a.runs, a.out)
    summary.pop("runs")
    print(json.dumps(summary, indent=1))
