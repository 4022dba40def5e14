"""CellMap's test-crop manifest and the target grid of each (crop, label).

The target geometry of a (crop, label) (:func:`target_grid`) is its manifest row
(``configs/cellmap_test_crops.csv``, the official 413-row test manifest shipped byte-identical
under its BSD-3 licence ``configs/cellmap_test_crops.LICENSE``, or ``--set manifest=PATH``);
when a (crop, label) has no row, the GT array's own ``voxel_size``/``translation`` attributes
and shape (gpueval's fallback; the official code would fail). With the shipped manifest every
truth crop is scored, and a truth array whose shape differs from its row (other data reusing
an official crop id) also falls back to its attributes, with a warning; an explicit
``manifest`` always wins and scores exactly the crops it lists that exist in the truth.
``total_evals`` is the manifest's row count (413 for the shipped one).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from gpueval.challenges.cellmap.checks import _as_vec, check_geometry
from gpueval.challenges.cellmap.layout import TruthCrop, _attrs, _geometry, _open_truth
from gpueval.challenges.cellmap.options import Options
from gpueval.errors import TruthError
from gpueval.io.align import Grid
from gpueval.notices import warn


def read_manifest(path: str | Path) -> dict[tuple[int, str], Grid]:
    """``{(crop id, label): Grid}`` from a test-crop manifest CSV (vectors ``[z;y;x]``)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise TruthError(f"manifest {p}: cannot be read ({e.strerror})") from e
    rows = list(csv.DictReader(text.splitlines()))
    need = {"crop_name", "class_label", "voxel_size", "translation", "shape"}
    if rows and not need <= set(rows[0]):
        raise TruthError(f"manifest {p}: header must hold {', '.join(sorted(need))}")
    out: dict[tuple[int, str], Grid] = {}
    for i, r in enumerate(rows, start=2):
        try:
            crop = int(str(r["crop_name"]).strip().removeprefix("crop"))
            out[(crop, r["class_label"].strip())] = Grid(
                _vec(r["voxel_size"]), _vec(r["translation"]),
                tuple(int(round(v)) for v in _vec(r["shape"])))
        except (ValueError, KeyError, AttributeError) as e:
            raise TruthError(f"manifest {p} line {i}: {e}") from e
    return out


def _vec(s: str) -> tuple[float, ...]:
    return tuple(float(x) for x in str(s).strip().strip("[]").replace(",", ";").split(";"))


def write_manifest(path: str | Path, rows: list[tuple[int, str, str, Grid]]) -> None:
    """Write ``(crop id, dataset, label, Grid)`` rows in the official CSV format."""
    def fmt(v):
        return "[" + ";".join(repr(float(x)) if not float(x).is_integer() else f"{float(x):.1f}"
                              for x in v) + "]"

    lines = ["crop_name,dataset,class_label,voxel_size,translation,shape"]
    for crop, ds, label, g in rows:
        lines.append(f"{crop},{ds},{label},{fmt(g.voxel_size)},{fmt(g.translation)},"
                     f"[{';'.join(str(int(s)) for s in g.shape)}]")
    Path(path).write_text("\n".join(lines) + "\n")


def target_grid(crop: TruthCrop, label: str, manifest, opts: Options):
    """``(truth volume, target Grid)`` of one label: the manifest row, else the truth
    array's own attributes (see the module docstring)."""
    where = f"{crop.name}/{label}"
    gvol = _open_truth(crop.path / label)
    grid = manifest.get((crop.crop_id, label))
    vs, tr = _geometry(_attrs(crop.path / label))
    if grid is not None and not opts.restrict_to_manifest and \
            tuple(grid.shape) != tuple(gvol.shape):
        # other data reusing an official crop id: the shipped manifest cannot describe it
        warn(f"truth {where}: shape {list(gvol.shape)} differs from the shipped official "
             f"manifest's {list(grid.shape)}; the truth array's own voxel_size/translation "
             "are used (pass --set manifest=PATH to give this data's geometry)")
        grid = None
    if grid is None:
        nd = gvol.data.ndim
        tvs, ttr = _as_vec(vs, f"truth {where}"), _as_vec(tr, f"truth {where}")
        grid = Grid(tuple(tvs or (1.0,) * nd)[-nd:], tuple(ttr or (0.0,) * nd)[-nd:],
                    tuple(gvol.shape))
        check_geometry(tvs, ttr, grid.shape, grid.shape, grid, opts.geometry,
                       f"truth {where}", TruthError)
    elif vs is not None and _disagrees(vs, grid.voxel_size):
        warn(f"truth {where}: voxel_size attribute {vs} differs from the manifest's "
             f"{list(grid.voxel_size)}; the manifest's geometry is used, as the official "
             "scorer does")
    if tuple(grid.shape) != tuple(gvol.shape):
        raise TruthError(f"truth {where}: shape {gvol.shape} differs from the manifest "
                         f"shape {grid.shape}")
    return gvol, grid


def _disagrees(vec: Any, target: tuple[float, ...]) -> bool:
    """True when an attribute vector is not (numerically) ``target`` (last entries)."""
    try:
        v = np.asarray([float(x) for x in vec], float)[-len(target):]
    except (TypeError, ValueError):
        return True
    return v.shape != (len(target),) or not np.allclose(v, target)
