"""Where the shipped configs and CUDA sources live, installed or in a source checkout.

A wheel carries ``configs/`` as ``gpueval/configs`` and ``kernels/`` as ``gpueval/kernels/cuda``
(see ``pyproject.toml``); a checkout (editable install, or tests run from the repository root)
keeps them at the top level.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def _first_existing(*candidates: Path) -> Path:
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(f"none of {', '.join(map(str, candidates))} exists")


def config_dir() -> Path:
    return _first_existing(_PKG / "configs", _PKG.parent / "configs")


def cuda_dir() -> Path:
    return _first_existing(_PKG / "kernels" / "cuda", _PKG.parent / "kernels")


def cuda_source(name: str) -> str:
    """Text of ``kernels/<name>`` (a ``.cu`` file), for ``cupy.RawModule``."""
    return (cuda_dir() / name).read_text()
