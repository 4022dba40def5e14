"""Throughput workloads behind ``gpueval bench``.

Every module in this package registers workloads with :func:`workload`. A workload is a
function ``f(device: str, scale: float) -> dict`` that builds its own synthetic data, runs the
gpueval path (and, where one exists, the reference implementation side by side) and returns at
least ``{"voxels": int, "seconds": float}``; optional keys: ``reference``, ``reference_seconds``,
``bytes_read``, ``check`` (a bool: gpueval's numbers equal the reference's), ``notes``.
``scale`` multiplies the default problem size (1.0 = the size the issue names; tests use
small scales).

``gpueval bench`` runs each workload in a fresh subprocess so that the peak RSS it reports
(``ru_maxrss``) belongs to that workload alone. Each record also carries ``stage_seconds``
(:class:`gpueval.engine.StageTimes`): how the engine's task time split between reading and
decoding chunks, host→device copies, the per-chunk kernels and the reductions.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpueval.backend import gpu_pool_bytes


@dataclass(frozen=True)
class Workload:
    name: str
    func: Callable[[str, float], dict[str, Any]]
    description: str


WORKLOADS: dict[str, Workload] = {}

#: what a bare ``gpueval bench`` runs: small, fast workloads covering the engine's statistics,
#: connected components and a challenge scorer, at ``QUICK_SCALE`` (128³ instead of 512³;
#: measured ~35 s together on 2 cores, each in its own process)
QUICK: tuple[str, ...] = ("contingency", "confusion", "cc", "medsegfm_nsd")
QUICK_SCALE = 0.25


def workload(name: str, description: str):
    """Register ``func(device, scale) -> dict`` as workload ``name``."""

    def deco(func):
        WORKLOADS[name] = Workload(name, func, description)
        return func

    return deco


def load_all() -> dict[str, Workload]:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    return WORKLOADS


def machine_info() -> dict[str, Any]:
    info = {
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(_mem_total() / 2**30, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        import cupy

        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        info["gpu"] = props["name"].decode()
        info["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
        info["cupy"] = cupy.__version__
    except Exception:
        info["gpu"] = None
    return info


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_here(name: str, device: str, scale: float) -> dict[str, Any]:
    """Run one workload in this process and describe the outcome."""
    from gpueval.engine import stage_times

    load_all()
    wl = WORKLOADS[name]
    t0 = time.perf_counter()
    with stage_times() as stages:
        rec = wl.func(device, scale)
    rec.setdefault("seconds", time.perf_counter() - t0)
    # where the engine's time went (read/decode vs host→device vs kernel vs reductions),
    # summed over threads and over everything the workload ran (warm-ups and checks too)
    rec["stage_seconds"] = stages.as_dict()
    rec["workload"] = name
    rec["device"] = device
    rec["scale"] = scale
    rec["peak_rss_bytes"] = peak_rss_bytes()
    if device == "gpu":  # CuPy's pool keeps freed blocks: what it holds now ≈ its peak
        rec["gpu_pool_bytes"] = gpu_pool_bytes()
    if rec.get("voxels") and rec["seconds"] > 0:
        rec["voxels_per_s"] = rec["voxels"] / rec["seconds"]
    if rec.get("reference_seconds"):
        rec["speedup_vs_reference"] = rec["reference_seconds"] / rec["seconds"]
    return rec


def run_isolated(name: str, device: str, scale: float, timeout: float | None = None) -> dict:
    """Run one workload in a fresh Python process (honest peak RSS)."""
    cmd = [sys.executable, "-m", "gpueval.bench", name, "--device", device, "--scale", str(scale)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"workload": name, "device": device, "scale": scale,
                "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _mem_total() -> int:
    try:
        import psutil

        return psutil.virtual_memory().total
    except Exception:
        return 0
