"""MedSegFM NSD: before/after/floor whole-process timings, interleaved (issue #19, sessions 7-8).

Every round runs, back to back: ``gpueval score medsegfm --device cpu`` from the "before"
tree, from the "after" tree, the decode floor of ``medsegfm_nsd_floor`` (both members
inflated by libdeflate on two threads, :data:`gpueval.bench.medsegfm.MEDSEGFM_FLOOR`) and the
looser ``np.load`` floor (:data:`~gpueval.bench.medsegfm.MEDSEGFM_FLOOR_NPLOAD`, the floor of
session 7: ``floor_npload``), on the 300×512×512 stray-voxel case written as compressed npz
by the workload's own generator.
Wall time, peak RSS and the child's CPU time (user + system, less sensitive to other jobs
on a shared machine) of each process; the load average per round. Ratios are taken within
a round.

Usage: python benchmarks/floor_interleaved_nsd.py BEFORE_TREE AFTER_TREE DATA_DIR ROUNDS OUT.json

``*_TREE`` are checkouts holding ``gpueval/`` (compile their bytecode first, ``python -m
compileall -q TREE/gpueval``, as an installed package has it); DATA_DIR is filled with
``truth/case.npz`` and ``sub/case.npz`` when empty.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PY = sys.executable


def _build(data: Path) -> None:
    import numpy as np

    from gpueval.bench.medsegfm import SPACING, _shape, organ_case

    if (data / "sub" / "case.npz").exists():
        return
    (data / "truth").mkdir(parents=True, exist_ok=True)
    (data / "sub").mkdir(parents=True, exist_ok=True)
    gts, segs = organ_case(_shape(1.0))
    np.savez_compressed(data / "truth" / "case.npz", gts=gts, spacing=np.array(SPACING))
    np.savez_compressed(data / "sub" / "case.npz", segs=segs)


def _run(argv: list[str], env: dict[str, str], cwd: str) -> dict[str, float]:
    # cwd: ``python -m`` puts the working directory first on sys.path, before PYTHONPATH
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[:4]} failed: {err.decode(errors='replace')[-500:]}")
    return {"seconds": seconds, "peak_rss_bytes": usage.ru_maxrss * 1024,
            "cpu_seconds": usage.ru_utime + usage.ru_stime}


def main(before: str, after: str, data_dir: str, rounds: int, out: str) -> dict:
    from gpueval.bench.medsegfm import floor_scripts

    data = Path(data_dir).resolve()
    _build(data)
    floor, floor_npload = floor_scripts(data / "truth" / "case.npz", data / "sub" / "case.npz")
    record: dict = {"rounds": [], "trees": {"before": before, "after": after}}
    for _ in range(rounds):
        row: dict = {"load_average": os.getloadavg()[0]}
        for name, tree in (("before", before), ("after", after)):
            env = {**os.environ, "PYTHONPATH": tree}
            row[name] = _run([PY, "-m", "gpueval", "score", "medsegfm", "--truth",
                              str(data / "truth"), "--submission", str(data / "sub"),
                              "--device", "cpu", "--quiet", "--json",
                              str(data / f"result-{name}.json")], env, tree)
        row["floor"] = _run([PY, "-c", floor], dict(os.environ), str(data))
        row["floor_npload"] = _run([PY, "-c", floor_npload], dict(os.environ), str(data))
        for name in ("before", "after"):
            row[f"{name}_ratio"] = row[name]["seconds"] / row["floor"]["seconds"]
            row[f"{name}_ratio_npload"] = row[name]["seconds"] / row["floor_npload"]["seconds"]
        record["rounds"].append(row)
        print(json.dumps(row), flush=True)
    for name in ("before", "after", "floor", "floor_npload"):
        runs = [r[name] for r in record["rounds"]]
        record[name] = {"min_seconds": min(r["seconds"] for r in runs),
                        "median_seconds": statistics.median(r["seconds"] for r in runs),
                        "min_cpu_seconds": min(r["cpu_seconds"] for r in runs),
                        "max_peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs)}
    for name in ("before", "after"):
        for ratio in (f"{name}_ratio", f"{name}_ratio_npload"):
            ratios = [r[ratio] for r in record["rounds"]]
            record[ratio] = {"median": statistics.median(ratios), "best": min(ratios)}
    results = [json.loads((data / f"result-{n}.json").read_text()) for n in ("before", "after")]
    for r in results:
        r.pop("runtime", None)
    record["same_json_except_runtime"] = results[0] == results[1]
    Path(out).write_text(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    rec = main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    print(json.dumps({k: v for k, v in rec.items() if k != "rounds"}, indent=1))
