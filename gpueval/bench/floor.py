"""Whole-process timing against the *decode floor* (issue #19).

A workload in the official file formats is timed twice, side by side, as separate processes:
``python -m gpueval score ...`` (start-up, imports, reading, scoring) and a *floor* script that
only reads and decodes the same files with the fastest library on all cores (interpreter start
included). The ratio ``gpueval / floor`` says how much gpueval costs beyond reading its input;
the official times quoted from the specs were measured elsewhere under other load and are
reported apart ("spec anchor, other load"), never divided into a ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: repository (or site-packages) folder holding the ``gpueval`` package: the child processes
#: import the same code as this one
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


#: a minimal interpreter that starts each timed process. Linux charges a child the memory
#: high-water mark of the process it was (v)forked from (``ru_maxrss`` survives ``exec``), so
#: children of this benchmark process, which holds the test images, would all report its peak;
#: children of this launcher inherit only its few MiB, which any Python process has anyway.
_LAUNCHER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    argv, env = json.loads(line)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    print(json.dumps([seconds, usage.ru_maxrss * 1024, proc.returncode,
                      err.decode(errors="replace")[-2000:]]), flush=True)
"""
_launcher: subprocess.Popen | None = None


def run_process(argv: Sequence[str]) -> tuple[float, int, int]:
    """Run ``argv`` to completion; (wall seconds, peak RSS bytes, exit status).

    The process is started by a small launcher (see ``_LAUNCHER``), which times it and takes
    its own peak RSS from ``os.wait4``.
    """
    global _launcher
    if _launcher is None or _launcher.poll() is not None:
        _launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (_PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")) if p)}
    assert _launcher.stdin is not None and _launcher.stdout is not None
    _launcher.stdin.write(json.dumps([list(map(str, argv)), env]) + "\n")
    _launcher.stdin.flush()
    seconds, rss, code, err = json.loads(_launcher.stdout.readline())
    if code != 0:
        print(err, file=sys.stderr)
    return float(seconds), int(rss), int(code)


def best_of(argv: Sequence[str], repeat: int = 3) -> dict[str, Any]:
    """Minimum wall time (and the peak RSS of that run) over ``repeat`` runs of ``argv``.

    Raises
    ------
    RuntimeError
        If a run exits with a status other than 0 (a failed run is no timing).
    """
    runs = []
    for _ in range(repeat):
        seconds, rss, code = run_process(argv)
        if code != 0:
            raise RuntimeError(f"{' '.join(map(str, argv))} exited with status {code}")
        runs.append((seconds, rss))
    seconds, rss = min(runs)
    return {"seconds": seconds, "peak_rss_bytes": rss, "all_seconds": [s for s, _ in runs]}


def score_argv(challenge: str, truth: Path, submission: Path, out: Path,
               *extra: str) -> list[str]:
    """``python -m gpueval score CHALLENGE ...`` on the CPU, JSON to ``out``."""
    return [sys.executable, "-m", "gpueval", "score", challenge, "--truth", str(truth),
            "--submission", str(submission), "--device", "cpu", "--quiet", "--json", str(out),
            *extra]


def floor_argv(script: str) -> list[str]:
    """``python -c SCRIPT``: the floor reader, a fresh interpreter like ``gpueval``'s."""
    return [sys.executable, "-c", script]


def side_by_side(gpueval_argv: Sequence[str], floor_script: str, repeat: int = 3,
                 spec_anchor_seconds: float | None = None,
                 other_floors: dict[str, str] | None = None) -> dict[str, Any]:
    """Time gpueval and the floor alternately (same load for both), min of ``repeat`` each.

    Parameters
    ----------
    other_floors : name -> script of further readers timed in the same rounds (e.g. a
        slower, more common library), reported as ``floor_<name>_seconds`` and
        ``ratio_to_floor_<name>``; the ratio of record stays ``ratio_to_floor``.

    Returns ``seconds`` (gpueval, whole process), ``floor_seconds``, ``ratio_to_floor``, both
    peak RSS, the load average when it finished and ``spec_anchor_seconds`` (quoted, not a
    ratio).
    """
    other_floors = dict(other_floors or {})
    g_runs, f_runs = [], []
    o_runs: dict[str, list[dict[str, Any]]] = {name: [] for name in other_floors}
    for _ in range(repeat):  # interleaved: a burst of load hits both columns alike
        g_runs.append(best_of(gpueval_argv, 1))
        f_runs.append(best_of(floor_argv(floor_script), 1))
        for name, script in other_floors.items():
            o_runs[name].append(best_of(floor_argv(script), 1))
    g = min(g_runs, key=lambda r: r["seconds"])
    f = min(f_runs, key=lambda r: r["seconds"])
    others: dict[str, Any] = {}
    for name, runs in o_runs.items():
        best = min(r["seconds"] for r in runs)
        others.update({f"floor_{name}_seconds": best,
                       f"all_floor_{name}_seconds": [r["seconds"] for r in runs],
                       f"ratio_to_floor_{name}": g["seconds"] / best})
    return {**others,
        "seconds": g["seconds"], "peak_rss_bytes_process": g["peak_rss_bytes"],
        "floor_seconds": f["seconds"], "floor_peak_rss_bytes": f["peak_rss_bytes"],
        "ratio_to_floor": g["seconds"] / f["seconds"],
        "all_seconds": [r["seconds"] for r in g_runs],
        "all_floor_seconds": [r["seconds"] for r in f_runs],
        "load_average": os.getloadavg(),
        "spec_anchor_seconds": spec_anchor_seconds,
        "spec_anchor_note": "spec anchor, other load (quoted from the spec, not rerun)",
    }
