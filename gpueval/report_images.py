"""Pictures of where a submission fails, for :func:`gpueval.report.write_report`.

Each challenge module's ``report_images(result, truth, submission, config)`` delegates to one
function here. Pictures are chosen and cropped by chunked reductions and only the pixels shown
are read: a whole volume is never loaded.

============  ===============================================================================
challenge     picture
============  ===============================================================================
U-RISC        the worst image (lowest F): membrane agreement map, read band by band and
              pooled to at most ``max_side`` px (colour of a block = mean colour of its
              membrane pixels, so a block with any membrane stays visible)
============  ===============================================================================

Colours: agreement grey, false positive red, false negative (missed) blue, as
:func:`gpueval.report.error_overlay`; for instances, split fragments orange and merged
objects magenta (XPRESS's pictures: :mod:`gpueval.challenges.xpress.images`).

:func:`neuroglancer_state` builds a Neuroglancer state (truth, submission and an error layer
at the worst item); :func:`attach_neuroglancer` stores it under ``result.extra["neuroglancer"]``
for zarr inputs.

Choices (pictures are diagnostics, not scores):

* U-RISC prediction membrane = value < 128; the ``bold`` variant's dilation is not drawn.
* Neuroglancer ``file://`` sources open only where the viewer can read local files (its
  Python server); pass ``url_prefix`` (an http server of the data folder) otherwise.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpueval.pictures import (
    Images,
    agreement_rgb,
    pool_colours,
)
from gpueval.pictures import pool_factor as _step
from gpueval.pictures import run_config as _config
from gpueval.pictures import worst as _worst
from gpueval.result import Result

#: public viewer the link opens (the report stays self-contained: the link is only followed)
NEUROGLANCER_URL = "https://neuroglancer-demo.appspot.com/#!"

# --------------------------------------------------------------------------------------------
# U-RISC


def urisc_images(result: Result, truth, submission, config=None, *, max_side: int = 1024
                 ) -> Images:
    """Membrane agreement map of the worst image (lowest F), pooled to ``max_side`` px.

    Membrane: GT ``≤ gt_threshold`` (any value < 255 when the variant has no threshold);
    prediction: value < 128 (weight ``255 - value`` above one half). Rows are read in bands
    (as the scorer reads them), so peak memory is one band, not the image.
    """
    from gpueval.challenges import urisc as U

    item = _worst(result.items, lambda it: it.get("f1"))
    if item is None:
        return []
    opts = U._Options.from_config(_config("urisc", config))
    stem = str(item["id"])
    gt_files = U._truth_files(truth)
    if stem not in gt_files:
        return []
    with U._Submission(submission, opts) as sub:
        if stem not in sub.stems:
            return []
        with sub.spooled([stem]) as paths:
            gt = U._GreyImage(gt_files[stem], truth=True)
            pred = U._GreyImage(paths[stem], name=sub.display_name(stem))
            rgb = _urisc_map(gt, pred, opts.gt_threshold, max_side, opts.band_bytes)
    f = _step(gt.shape, max_side)
    return [(f"{stem}: membrane agreement, F = {item['f1']:.3f} (worst image; grey both, "
             f"red predicted only, blue GT only; 1:{f})", rgb)]


def _urisc_map(gt, pred, threshold, max_side: int, band_bytes: int) -> np.ndarray:
    rows, cols = gt.shape
    f = _step(gt.shape, max_side)
    band = f * max(1, band_bytes // max(cols * f, 1))
    out = []
    for a in range(0, rows, band):
        b = min(rows, a + band)
        g = gt.rows(a, b)
        gm = g <= threshold if threshold is not None else g != 255
        pm = pred.rows(a, b) < 128
        rgb, fg = agreement_rgb(gm, pm)
        out.append(pool_colours(rgb, fg, f))
    return np.concatenate(out, axis=0)


# --------------------------------------------------------------------------------------------
# Neuroglancer


def neuroglancer_source(path: str | Path, url_prefix: str | None = None) -> str:
    """Neuroglancer data source of a zarr (v2/v3) or n5 array: ``zarr2://``, ``zarr3://``
    (``zarr://`` when the version is not recognisable), ``n5://``; ``url_prefix`` (an http
    server serving the files) replaces ``file://`` + the absolute path."""
    p = Path(path)
    if (p / "zarr.json").is_file():
        scheme = "zarr3"
    elif (p / ".zarray").is_file() or (p / ".zgroup").is_file():
        scheme = "zarr2"
    elif (p / "attributes.json").is_file():
        scheme = "n5"
    else:
        scheme = "zarr"
    where = url_prefix.rstrip("/") + "/" + p.name if url_prefix else "file://" + \
        str(p.resolve())
    return f"{scheme}://{where}"


def neuroglancer_state(truth_path: str | Path, submission_path: str | Path,
                       error_layer: str | Path | None = None,
                       position: Sequence[float] | None = None, *,
                       voxel_size: Sequence[float] | None = None, units: str = "nm",
                       url_prefix: str | None = None, note: str = "worst item"
                       ) -> dict[str, Any]:
    """A Neuroglancer viewer state: ``truth`` and ``submission`` segmentation layers and an
    ``errors`` layer (a volume when ``error_layer`` is a path, otherwise a point annotation at
    ``position``), centred at ``position`` (voxel coordinates, array axis order)."""
    layers: list[dict[str, Any]] = [
        {"type": "segmentation", "name": "truth",
         "source": neuroglancer_source(truth_path, url_prefix)},
        {"type": "segmentation", "name": "submission",
         "source": neuroglancer_source(submission_path, url_prefix)},
    ]
    if error_layer is not None:
        layers.append({"type": "image", "name": "errors",
                       "source": neuroglancer_source(error_layer, url_prefix)})
    else:
        layers.append({"type": "annotation", "name": "errors", "annotations": (
            [{"type": "point", "id": "worst", "point": [float(v) for v in position],
              "description": note}] if position is not None else [])})
    state: dict[str, Any] = {"layers": layers, "layout": "xy",
                             "selectedLayer": {"layer": "submission", "visible": True}}
    if position is not None:
        state["position"] = [float(v) for v in position]
    if voxel_size is not None:
        names = ["z", "y", "x"][-len(voxel_size):] if len(voxel_size) <= 3 else \
            [f"d{i}" for i in range(len(voxel_size))]
        state["dimensions"] = {n: [float(v) * 1e-9 if units == "nm" else float(v), "m"]
                               for n, v in zip(names, voxel_size, strict=True)}
    return state


def neuroglancer_url(state: Mapping[str, Any]) -> str:
    """The public viewer's link for ``state`` (the state travels in the URL fragment)."""
    return NEUROGLANCER_URL + urllib.parse.quote(json.dumps(state, separators=(",", ":")),
                                                 safe="")


def attach_neuroglancer(result: Result, truth, submission, config=None
                        ) -> dict[str, Any] | None:
    """Write ``result.extra["neuroglancer"] = {"state", "url"}`` when truth and submission of
    the worst item are zarr arrays on disk (CellMap crops, MedSegFM ``.zarr`` cases, or two
    zarr arrays given directly); returns the entry, or ``None`` when there is nothing to open."""
    pair = _zarr_pair(result, Path(truth), Path(submission))
    if pair is None:
        return None
    t, s, position, vs, note = pair
    state = neuroglancer_state(t, s, position=position, voxel_size=vs, note=note)
    entry = {"state": state, "url": neuroglancer_url(state)}
    result.extra["neuroglancer"] = entry
    return entry


def _is_zarr(p: Path) -> bool:
    return p.is_dir() and any((p / f).is_file() for f in ("zarr.json", ".zarray", ".zgroup"))


def _zarr_pair(result: Result, truth: Path, submission: Path):
    if result.challenge == "cellmap":
        def bad(it):
            n = (it.get("tp") or 0) + (it.get("fp") or 0) + (it.get("fn") or 0)
            return -((it.get("fp") or 0) + (it.get("fn") or 0)) / n if n else None

        item = _worst([it for it in result.items if it.get("status") != "missing"], bad)
        if item is None:
            return None
        crop, label = str(item["id"]).split("/", 1)
        t, s = truth / crop / label, submission / crop / label
        if not (_is_zarr(t) and _is_zarr(s)):
            return None
        return t, s, _centre(t), _attr_voxel_size(t), f"{item['id']} (worst)"
    if result.challenge == "medsegfm":
        item = _worst(result.items, lambda it: it.get("dsc"))
        if item is None:
            return None
        t, s = truth / f"{item['id']}.zarr", submission / f"{item['id']}.zarr"
        t = t / "gts" if _is_zarr(t / "gts") else t
        s = s / "segs" if _is_zarr(s / "segs") else s
        if not (_is_zarr(t) and _is_zarr(s)):
            return None
        return t, s, _centre(t), None, f"case {item['id']} (worst)"
    if _is_zarr(truth) and _is_zarr(submission):
        return truth, submission, _centre(truth), None, "volume centre"
    return None


def _centre(p: Path) -> list[float] | None:
    from gpueval.io.arrays import open_volume

    try:
        return [s / 2 for s in open_volume(p).data.shape]
    except Exception:  # a link without a position still opens the layers
        return None


def _attr_voxel_size(p: Path) -> list[float] | None:
    from gpueval.io.arrays import open_volume

    try:
        return [float(v) for v in open_volume(p).voxel_size]
    except Exception:
        return None
