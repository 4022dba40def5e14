"""``python -m gpueval.bench NAME --device cpu --scale 1``: one workload, JSON on stdout."""

import argparse
import json

from gpueval.bench import run_here
from gpueval.result import to_jsonable

p = argparse.ArgumentParser()
p.add_argument("name")
p.add_argument("--device", default="cpu")
p.add_argument("--scale", type=float, default=1.0)
a = p.parse_args()
print(json.dumps(to_jsonable(run_here(a.name, a.device, a.scale))))
