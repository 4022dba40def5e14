"""Time the bootstrap rank stability at the size issue #22 names: 100 teams × 1,000 cases ×
1,000 resamples, goal under 5 s on the 2-core VM. Also times the REFUGE path (its official
ranking, pure Python, applied per resample) and the impact report on 1,000 submissions.

    python3 benchmarks/bench_stability.py [--teams 100] [--cases 1000] [--resamples 1000]
                                          [--repeat 3] [--json OUT]

Prints one line per workload (best of ``--repeat`` wall times, and the peak RSS of the process)
and, with ``--json``, writes them with the machine's CPU model and core count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np

from gpueval.metrics.impact import metric_change_impact
from gpueval.metrics.stability import bootstrap_mean_ranking, bootstrap_refuge_ranking


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teams", type=int, default=100)
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    rng = np.random.default_rng(0)
    # per-case scores with a team effect, so the ranking is partly stable, partly tied
    x = np.clip(rng.normal(np.linspace(0.8, 0.6, a.teams)[:, None], 0.15,
                           (a.teams, a.cases)), 0, 1)
    table = {f"team{i:03d}": {f"case{j:04d}": float(x[i, j]) for j in range(a.cases)}
             for i in range(a.teams)}
    records = []

    secs, rep = _best(lambda: bootstrap_mean_ranking(table, n_resamples=a.resamples, seed=0),
                      a.repeat)
    records.append({"workload": "bootstrap_mean_ranking", "teams": a.teams, "cases": a.cases,
                    "resamples": a.resamples, "seconds": secs,
                    "tied_groups": len(rep.tied_groups)})

    # REFUGE: 12 teams × 400 images (its test set), final ranking with classification
    teams, n = 12, 400
    cases = [f"im{j:04d}.jpg" for j in range(n)]
    items = {f"T{i:02d}": [{"id": c, "cup_dice": float(rng.random()),
                            "disc_dice": float(rng.random()),
                            "vcdr_error": float(0.2 * rng.random())} for c in cases]
             for i in range(teams)}
    labels = {c: j % 10 == 0 for j, c in enumerate(cases)}
    probs = {t: {c: float(rng.random()) for c in cases} for t in items}
    secs, _ = _best(lambda: bootstrap_refuge_ranking(items, probs, labels,
                                                      n_resamples=a.resamples), a.repeat)
    records.append({"workload": "bootstrap_refuge_ranking", "teams": teams, "cases": n,
                    "resamples": a.resamples, "seconds": secs})

    # impact report: 1,000 submissions × 100 items, every score changed slightly
    subs = 1000
    old_items = {f"s{i:04d}": {f"img{j:03d}": float(v) for j, v in enumerate(rng.random(100))}
                 for i in range(subs)}
    new_items = {s: {k: v * 0.98 + 0.01 for k, v in it.items()} for s, it in old_items.items()}
    for s in list(new_items)[::7]:
        new_items[s]["img000"] = 0.0
    old = {s: float(np.mean(list(it.values()))) for s, it in old_items.items()}
    new = {s: float(np.mean(list(it.values()))) for s, it in new_items.items()}
    secs, imp = _best(lambda: metric_change_impact(old, new, old_items, new_items), a.repeat)
    records.append({"workload": "metric_change_impact", "submissions": subs, "items": 100,
                    "seconds": secs, "rank_changes": len(imp.changed)})

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    machine = {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
               "numpy": np.__version__, "peak_rss_mib": round(peak)}
    for r in records:
        size = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("workload", "seconds"))
        print(f"{r['workload']:<26} {r['seconds']:7.3f} s   ({size})")
    print(f"machine: {machine['cpu']}, {machine['cores']} cores; peak RSS "
          f"{machine['peak_rss_mib']} MiB")
    if a.json:
        a.json.write_text(json.dumps({"machine": machine, "results": records}, indent=2) + "\n")


if __name__ == "__main__":
    main()
