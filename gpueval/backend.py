"""CPU/GPU backend selection, and the array-module dispatch every kernel uses.

``resolve_device("auto")`` picks ``"gpu"`` when CuPy imports and sees a CUDA device, else
``"cpu"``; ``resolve_device("auto", workload=NAME)`` also asks whether that workload measured
faster on the GPU (:data:`GPU_MEASUREMENTS`) and picks the CPU where the GPU only added start-up
and copies. The returned device is a ``str`` (``"cpu"``/``"gpu"``) carrying ``.reason``.
Asking for ``"gpu"`` where there is none is a :class:`~gpueval.errors.UsageError` (exit 2),
never a silent fallback. Kernels dispatch on the *type of the chunk* (NumPy or CuPy
array, as dask-image does), so the same task graph runs on either device; CuPy is imported
only when a GPU is asked for.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpueval.errors import UsageError

DEVICES = ("auto", "cpu", "gpu")


@functools.cache
def gpu_available() -> bool:
    """True when CuPy imports and at least one CUDA device answers."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


class DeviceChoice(str):
    """``"cpu"`` or ``"gpu"`` (compares and serialises as the plain string), with ``.reason``:
    one line saying why this device runs (for ``runtime.device_reason``)."""

    reason: str

    def __new__(cls, device: str, reason: str) -> DeviceChoice:
        out = super().__new__(cls, device)
        out.reason = reason
        return out

    def __reduce__(self):  # pickles as the plain string: tasks sent to workers carry no reason
        return str, (str(self),)


@dataclass(frozen=True)
class Measurement:
    """Warm seconds of one ``gpueval bench`` workload on the GPU and on the same host's CPU."""

    gpu_seconds: float
    cpu_seconds: float

    @property
    def speedup(self) -> float:
        return self.cpu_seconds / self.gpu_seconds


#: Where the measurements come from (the record is ``benchmarks/results/<this>.json``).
MEASURED_ON = "2026-11-24-h100-all"
MEASURED_HOST = "an NVIDIA H100 host with 16 CPU cores, 2026-11-24"
#: A GPU must be this much faster to be chosen: runs on that host varied by ~10-20 %, and a
#: parity result should not pay CUDA start-up and kernel compilation.
WIN_MARGIN = 1.2
#: Per bench workload: the GPU's warm run vs the best CPU run on the same host (derived from
#: the record by :func:`measurements_from_record`; ``tests`` check the two agree).
GPU_MEASUREMENTS: dict[str, Measurement] = {
    "cc": Measurement(0.86, 1.51),
    "cellmap_600": Measurement(29.04, 26.97),
    "cellmap_instance": Measurement(4.28, 2.13),
    "confusion": Measurement(0.09, 0.31),
    "contingency": Measurement(2.58, 0.92),
    "medsegfm_instance": Measurement(0.85, 0.52),
    "medsegfm_nsd": Measurement(4.2, 2.03),
    "refuge": Measurement(2.37, 2.46),
    "urisc": Measurement(2.19, 1.17),
    "xpress": Measurement(2.41, 1.32),
}
#: A challenge runs on the GPU under ``auto`` only if every workload of it won.
CHALLENGE_WORKLOADS = {
    "cellmap": ("cellmap_instance", "cellmap_600"),
    "medsegfm": ("medsegfm_nsd", "medsegfm_instance"),
    "urisc": ("urisc",),
    "xpress": ("xpress",),
    "refuge": ("refuge",),
}


def measurements_from_record(record: dict) -> dict[str, Measurement]:
    """GPU-warm (else GPU-cold) vs best CPU seconds per workload of a bench record JSON
    (``{"results": [{"workload", "run", "seconds"}, ...]}``); workloads without both sides are
    left out."""
    runs: dict[str, dict[str, float]] = {}
    for r in record.get("results", []):
        runs.setdefault(r["workload"], {})[r["run"]] = float(r["seconds"])
    out = {}
    for name, by_run in sorted(runs.items()):
        gpu = by_run.get("gpu-warm", by_run.get("gpu-cold"))
        cpu = [v for k, v in by_run.items() if k.startswith("cpu")]
        if gpu is not None and cpu:
            out[name] = Measurement(round(gpu, 2), round(min(cpu), 2))
    return out


def _auto_choice(workload: str) -> DeviceChoice:
    names = CHALLENGE_WORKLOADS.get(workload, (workload,))
    found = {n: GPU_MEASUREMENTS[n] for n in names if n in GPU_MEASUREMENTS}
    if len(found) < len(names):
        return DeviceChoice("cpu", f"--device auto: {workload} has no GPU measurement yet, so "
                                   "the CPU runs it (use --device gpu to try the GPU)")
    figures = ", ".join(f"{n} {m.gpu_seconds:g} s vs {m.cpu_seconds:g} s"
                        for n, m in found.items())
    if all(m.speedup >= WIN_MARGIN for m in found.values()):
        return DeviceChoice("gpu", f"--device auto: {workload} measured faster on the GPU "
                                   f"({figures} GPU vs CPU on {MEASURED_HOST})")
    return DeviceChoice("cpu", f"--device auto: {workload} measured no faster on the GPU "
                               f"({figures} GPU vs CPU on {MEASURED_HOST}), so the CPU runs it "
                               "(use --device gpu to force the GPU)")


def resolve_device(device: str = "auto", workload: str | None = None) -> DeviceChoice:
    """Turn ``auto|cpu|gpu`` into the device that will run, with the reason.

    Parameters
    ----------
    device : ``"auto"``, ``"cpu"`` or ``"gpu"``.
    workload : a challenge (``"cellmap"``, ``"xpress"``, ...) or a ``gpueval bench`` workload
        (``"confusion"``, ``"cc"``, ...). With ``auto`` and a GPU present, the GPU runs it only
        if it measured at least :data:`WIN_MARGIN` times faster (:data:`GPU_MEASUREMENTS`);
        without a workload ``auto`` takes any GPU (the behaviour before workloads were known).

    Returns
    -------
    DeviceChoice : ``"cpu"`` or ``"gpu"`` (a ``str``), with ``.reason``.

    Raises
    ------
    UsageError : an unknown device, or ``"gpu"`` where CuPy sees no CUDA device.
    """
    if device not in DEVICES:
        raise UsageError(f"--device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "cpu":
        return DeviceChoice("cpu", "--device cpu was asked for")
    if not gpu_available():
        if device == "gpu":
            raise UsageError("--device gpu was asked for, but CuPy sees no CUDA device here "
                             "(install gpueval[gpu] on a machine with a GPU, or use --device cpu)")
        return DeviceChoice("cpu", "--device auto: CuPy sees no CUDA device here")
    if device == "gpu":
        return DeviceChoice("gpu", "--device gpu was asked for")
    if workload is None:
        return DeviceChoice("gpu", "--device auto: a CUDA device is visible")
    return _auto_choice(workload)


def is_cupy(x: Any) -> bool:
    return type(x).__module__.startswith("cupy")


def array_module(x: Any):
    """``numpy`` or ``cupy``, whichever owns ``x``."""
    if is_cupy(x):
        import cupy

        return cupy
    return np


def to_device(x: np.ndarray, device: str):
    """Move a host chunk to the device that will process it (no-op on the CPU)."""
    if device == "gpu":
        import cupy

        return cupy.asarray(x)
    return x


def to_host(x: Any) -> Any:
    """Bring a (small) result back to NumPy."""
    if is_cupy(x):
        return x.get()
    return x


def limit_gpu_memory(nbytes: int) -> None:
    """Cap CuPy's default memory pool at ``nbytes`` (0: no cap) for this process.

    Called once per scoring call with ``--device gpu`` (``limits.gpu_memory_bytes``), so one
    scorer never takes more of a shared card than configured.
    """
    import cupy

    cupy.get_default_memory_pool().set_limit(size=int(nbytes))


def gpu_pool_bytes() -> int | None:
    """Bytes CuPy's default pool holds now (≈ the peak: the pool keeps freed blocks)."""
    try:
        import cupy

        return int(cupy.get_default_memory_pool().total_bytes())
    except Exception:
        return None
