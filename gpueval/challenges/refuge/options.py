"""The REFUGE config (``configs/refuge.yaml``) read into typed, checked options.

Every module of the package works from one :class:`_Options`; a bad value is a
:class:`~gpueval.errors.TruthError` (exit 4: the config, not the submission, is unusable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpueval.errors import TruthError


@dataclass(frozen=True)
class _Options:
    compat: str
    sensitivity: str
    specificity: float
    cup_value: int
    background_value: int
    vcdr_eps: float
    dice_eps: float
    extension: str
    max_image_bytes: int
    max_csv_bytes: int
    max_image_pixels: int
    max_archive_bytes: int
    workers: int

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> _Options:
        seg = cfg.get("segmentation") or {}
        lim = cfg.get("limits") or {}
        try:
            opts = cls(
                compat=str(cfg.get("compat", "official")),
                sensitivity=str(cfg.get("sensitivity", "official")),
                specificity=float(cfg.get("specificity", 0.85)),
                cup_value=int(seg.get("cup_value", 0)),
                background_value=int(seg.get("background_value", 255)),
                vcdr_eps=float(seg.get("vcdr_eps", 1e-7)),
                dice_eps=float(seg.get("dice_eps", 0.0)),
                extension=str(seg.get("extension", ".bmp")),
                max_image_bytes=int(float(lim.get("max_image_bytes", 64 * 2**20))),
                max_csv_bytes=int(float(lim.get("max_csv_bytes", 16 * 2**20))),
                max_image_pixels=int(float(lim.get("max_image_pixels", 5e7))),
                max_archive_bytes=int(float(lim.get("max_archive_bytes", 16 * 2**30))),
                workers=max(1, int(lim.get("workers", 2))),
            )
        except (TypeError, ValueError) as e:
            raise TruthError(f"refuge config: bad value ({e})") from e
        if opts.compat not in ("official", "corrected"):
            raise TruthError(f"refuge config: compat must be official or corrected, "
                             f"not {opts.compat!r}")
        if not 0.0 <= opts.specificity <= 1.0:
            raise TruthError(f"refuge config: specificity must lie in [0, 1], "
                             f"not {opts.specificity}")
        if opts.sensitivity not in ("official", "tie-robust"):
            raise TruthError(f"refuge config: sensitivity must be official or tie-robust, "
                             f"not {opts.sensitivity!r}")
        return opts
