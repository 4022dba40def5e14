"""Run gpueval's command line in a fresh interpreter (imports start from nothing) and report
which of some modules it imported: how the start-up tests pin what a command loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(argv: Sequence[str], watch: Sequence[str]) -> tuple[int, list[str], str]:
    """``(exit code, the modules of watch it imported, stderr)`` of ``gpueval.cli.main(argv)``
    in a new interpreter."""
    code = ("import json, sys\nfrom gpueval.cli import main\n"
            f"code = main({list(argv)!r})\n"
            f"print(json.dumps([code, [m for m in {list(watch)!r} if m in sys.modules]]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=120)
    if not p.stdout.strip():
        raise AssertionError(p.stderr[-2000:])
    status, loaded = json.loads(p.stdout.strip().splitlines()[-1])
    return status, loaded, p.stderr
