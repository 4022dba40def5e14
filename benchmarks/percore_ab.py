"""Interleaved before/after runs of ``percore_profile.py`` (issue #18, session 9, helper h9-a).

Runs ``benchmarks/percore_profile.py`` of each checkout given (``--before DIR`` and
``--after DIR``, each a source tree: ``PYTHONPATH`` is set to it) in alternation, ``--rounds``
times, one thread each, and prints per run the scoring CPU seconds, the whole process's user
and system CPU seconds (``getrusage`` of the child) and whether the ``--out`` result (tp/fp/fn
and every per-GT Hausdorff value) is byte-identical to the first run's. The machine is shared:
compare CPU seconds of interleaved runs, never wall times taken minutes apart.

    python benchmarks/percore_ab.py --before /tmp/base --after $PWD \\
        --data /tmp/dense512v2 --rounds 4 --json ab.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile


def _run(tree: str, data: str, out: str) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = dict(os.environ, PYTHONPATH=tree)
    text = subprocess.run([sys.executable, os.path.join(tree, "benchmarks/percore_profile.py"),
                           "--data", data, "--out", out], env=env, check=True,
                          capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "rb") as f:
        digest = hashlib.md5(f.read()).hexdigest()
    user, system = re.search(r"scoring: user ([0-9.]+) s system ([0-9.]+) s", text).groups()
    return {"scoring_cpu_s": float(re.search(r"cpu ([0-9.]+) s", text).group(1)),
            "scoring_user_s": float(user), "scoring_sys_s": float(system),
            "process_user_s": round(after.ru_utime - before.ru_utime, 3),
            "process_sys_s": round(after.ru_stime - before.ru_stime, 3),
            "load": os.getloadavg()[0], "md5": digest}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="source tree of the 'before' code")
    ap.add_argument("--after", required=True, help="source tree of the 'after' code")
    ap.add_argument("--data", required=True, help="percore_profile.py's --data folder")
    ap.add_argument("--rounds", type=int, default=3, help="before/after pairs to run")
    ap.add_argument("--json", help="write every run here")
    args = ap.parse_args()
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, tree in (("before", args.before), ("after", args.after)):
                rec = _run(tree, args.data, os.path.join(tmp, f"{name}{r}.json"))
                rec.update(name=name, round=r)
                rec["whole_cpu_s"] = round(rec["process_user_s"] + rec["process_sys_s"], 3)
                rec["same_result"] = rec["md5"] == (runs[0]["md5"] if runs else rec["md5"])
                runs.append(rec)
                print(json.dumps(rec), flush=True)
    for name in ("before", "after"):
        mine = [r for r in runs if r["name"] == name]
        print(name, "scoring CPU s", sorted(r["scoring_cpu_s"] for r in mine),
              "scoring user s", sorted(r["scoring_user_s"] for r in mine),
              "whole process CPU s", sorted(r["whole_cpu_s"] for r in mine))
    print("all results identical:", all(r["same_result"] for r in runs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
