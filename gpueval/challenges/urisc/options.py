"""U-RISC configuration: ``configs/urisc.yaml`` (after ``--set``) checked into one frozen record.

Decisions where the spec is silent:

* **Radius** other than 0 is refused for the default variant ``2019-12-25`` (it would change the
  metric under the final leaderboard's ``metric_version``); it needs ``variant=bold`` or
  ``variant=released-script``.
* **Constants** (``radius``, ``gt_threshold``, ``min_background_ratio``) must be whole numbers:
  ``radius=1.5`` is refused rather than truncated (skimage's ``disk(1.5)`` is an off-centre 4×4
  footprint, not ``disk(1)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gpueval.errors import TruthError, UsageError


@dataclass(frozen=True)
class _Options:
    variant: str
    gt_threshold: int | None
    radius: int
    format_check: str
    missing: str
    min_background_ratio: int
    band_bytes: int
    group_pixels: int
    max_image_pixels: int
    max_member_bytes: int
    max_archive_bytes: int
    tolerance_px: float | None
    tolerance_max_pixels: int

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> _Options:
        def num(key, default):
            # whole numbers only: int(1.5) would silently score radius 1 (skimage's disk(1.5)
            # is a different, off-centre footprint), int(True) radius 1
            v = cfg.get(key, default)
            if v is None:
                return None
            try:
                f = float(v) if not isinstance(v, bool) else math.nan
            except (TypeError, ValueError) as e:
                raise TruthError(f"config {key}={v!r} is not a number") from e
            if not f.is_integer():
                raise TruthError(f"config {key}={v!r} must be a whole number")
            return int(f)

        variant = str(cfg.get("variant", "2019-12-25"))
        radius = num("radius", 0)
        if radius < 0 or radius > 64:
            raise UsageError(f"radius must be between 0 and 64 pixels, got {radius}")
        if variant == "2019-12-25" and radius != 0:
            raise UsageError("radius applies to the pre-2019-12-25 metric: add --set "
                             "variant=bold (or variant=released-script)")
        thr = num("gt_threshold", 122)
        if thr is not None and not 0 <= thr <= 255:
            raise TruthError(f"gt_threshold must be in 0..255 or null, got {thr}")
        fmt = str(cfg.get("format_check", "reject"))
        missing = str(cfg.get("missing", "reject"))
        if fmt not in ("reject", "skip"):
            raise UsageError(f"format_check must be reject or skip, not {fmt!r}")
        if missing not in ("reject", "zero"):
            raise UsageError(f"missing must be reject or zero, not {missing!r}")
        limits = cfg.get("limits") or {}
        tol = cfg.get("tolerance_px")
        return cls(
            variant=variant, gt_threshold=thr, radius=radius, format_check=fmt,
            missing=missing, min_background_ratio=num("min_background_ratio", 5),
            band_bytes=int(float(cfg.get("band_bytes", 8 * 2**20))),
            group_pixels=int(float(cfg.get("group_pixels", 2e8))),
            max_image_pixels=int(float(limits.get("max_image_pixels", 1e9))),
            max_member_bytes=int(float(limits.get("max_member_bytes", 4 * 2**30))),
            max_archive_bytes=int(float(limits.get("max_archive_bytes", 64 * 2**30))),
            tolerance_px=None if tol is None else float(tol),
            tolerance_max_pixels=int(float(cfg.get("tolerance_max_pixels", 4.2e6))),
        )
