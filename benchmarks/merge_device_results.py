"""Merge the JSON lines that ``benchmarks/on_device.sh`` wrote into one results file.

    python3 benchmarks/merge_device_results.py OUT.json --conditions TEXT \\
        [--machine bench-machine.json] LABEL=FILE.jsonl [LABEL=FILE.jsonl ...]

Each record gets ``run`` = its LABEL (e.g. ``gpu-warm``, ``gpu-cold``, ``cpu-warm``); the file
has the layout of ``gpueval bench --json``: ``machine``, ``date``, ``conditions``, ``results``.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("runs", nargs="+", metavar="LABEL=FILE.jsonl")
    p.add_argument("--machine", type=Path, help="bench-machine.json from the device run")
    p.add_argument("--conditions", default="", help="how the runs were made")
    p.add_argument("--date", default=date.today().isoformat())
    a = p.parse_args()
    results = []
    for run in a.runs:
        label, _, path = run.partition("=")
        for line in Path(path).read_text().splitlines():
            if line.strip():
                results.append({"run": label, **json.loads(line)})
    machine = json.loads(a.machine.read_text()) if a.machine else {}
    doc = {"machine": machine, "date": a.date, "conditions": a.conditions, "results": results}
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {a.out}: {len(results)} records")


if __name__ == "__main__":
    main()
