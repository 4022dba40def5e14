"""CellMap's config read into typed :class:`Options` (``configs/cellmap.yaml``).

``version`` (``--set version=2025``) is applied to the config by
:func:`gpueval.challenges.cellmap.score.resolve_config` before the options are read. The
``geometry`` section holds the sanity bounds of
:func:`gpueval.challenges.cellmap.checks.check_geometry` (:data:`GEOMETRY_DEFAULTS` when
absent); an unknown key or a bound that is not a positive number is a configuration error
(:class:`~gpueval.errors.TruthError`, exit 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpueval.challenges.cellmap import scoring_2026 as sc
from gpueval.errors import TruthError
from gpueval.resources import config_dir


@dataclass(frozen=True)
class Options:
    version: str
    compat: str
    instance_classes: tuple[str, ...]
    consts: dict[str, Any]
    semantic_threshold: float
    max_volume_size_ratio: float
    chunk: tuple[int, ...] | None
    manifest: Path
    restrict_to_manifest: bool
    geometry: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Options:
        compat = str(cfg.get("compat", "official"))
        if compat not in ("official", "corrected"):
            raise TruthError(f"compat must be official or corrected, got {compat!r}")
        man = cfg.get("manifest")
        default = not man or str(man) in ("default", "shipped")
        path = config_dir() / "cellmap_test_crops.csv" if default else Path(str(man))
        chunk = cfg.get("chunk")
        return cls(
            version=str(cfg.get("version") or "2026-06"),
            compat=compat,
            instance_classes=tuple(cfg.get("instance_classes") or sc.INSTANCE_CLASSES),
            consts={k: cfg[k] for k in ("final_instance_ratio_cutoff",
                                        "initial_instance_ratio_cutoff",
                                        "instance_ratio_factor", "max_overlap_edges",
                                        "mcmf_cost_scale", "instance_ratio_cutoff_2025",
                                        "hausdorff_base")
                    if k in cfg},
            semantic_threshold=float(cfg.get("semantic_threshold", 0.5)),
            max_volume_size_ratio=float(cfg.get("max_volume_size_ratio", 4096)),
            chunk=tuple(int(c) for c in chunk) if chunk else None,
            manifest=path,
            restrict_to_manifest=not default,
            geometry=_geometry_limits(cfg.get("geometry")),
        )


#: Sanity bounds on submitted geometry (``geometry`` in ``configs/cellmap.yaml``); a value
#: outside them is rejected before any Dask graph is built (issue #24 part 3).
GEOMETRY_DEFAULTS: dict[str, float] = {
    "min_voxel_size": 0.1,          # nm; EM voxels are ~1-100 nm
    "max_voxel_size": 100000.0,     # nm (0.1 mm)
    "max_abs_translation": 1.0e9,   # nm (1 m)
    "max_scale_factor": 256.0,      # source / target voxel size per axis, either way
    "max_align_blocks": 100000.0,   # Dask blocks the alignment (resample + paste) may create
}


def _geometry_limits(section: Any) -> dict[str, float]:
    out = dict(GEOMETRY_DEFAULTS)
    if section is None:
        return out
    if not isinstance(section, Mapping):
        raise TruthError(f"cellmap config: geometry must be a mapping, got {section!r}")
    for k, v in section.items():
        if k not in GEOMETRY_DEFAULTS:
            raise TruthError(f"cellmap config: unknown key geometry.{k}; known: "
                             f"{', '.join(GEOMETRY_DEFAULTS)}")
        try:
            out[k] = float(v)
        except (TypeError, ValueError) as e:
            raise TruthError(f"cellmap config: geometry.{k} must be a number, got {v!r}") from e
        if not out[k] > 0:
            raise TruthError(f"cellmap config: geometry.{k} must be positive, got {v!r}")
    return out
