"""CellMap's config read into typed :class:`Options` (``configs/cellmap.yaml``).

``version`` (``--set version=2025``) is applied to the config by
:func:`gpueval.challenges.cellmap.score.resolve_config` before the options are read. The
geometry sanity bounds of :func:`gpueval.challenges.cellmap.checks.check_geometry` are the
config's ``limits:`` (:class:`~gpueval.limits.Limits`: ``min_voxel_size``,
``max_voxel_size``, ``max_abs_translation``, ``max_voxel_size_ratio``; CellMap's stricter
values are in ``configs/cellmap.yaml``), read into :attr:`Options.geometry`; a bound that is
not a positive number is a configuration error (:class:`~gpueval.errors.TruthError`, exit 4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpueval.challenges.cellmap import scoring_2026 as sc
from gpueval.errors import TruthError
from gpueval.limits import Limits
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
    #: the limits bounding geometry attributes (the config's ``limits:``; generic defaults
    #: for a key it leaves out)
    geometry: Limits = field(default_factory=Limits)

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
            geometry=Limits.from_config(cfg),
        )

