"""MedSegFM's report pictures: per class of the worst case, an FP/FN overlay of one slice.

The worst case is the item with the lowest DSC (F1 for a text-track instance case); for each
of its first ``n_classes`` scored classes (the foreground for an instance case) the picture is
the middle slice of the class's GT z range, pooled to at most ``max_side`` px, with the
prediction the scorer read (the final step's file on the interactive track; all-zero when the
case has none). Colours as :mod:`gpueval.pictures`: grey agreement, red false positive, blue
false negative. Pictures are diagnostics, not scores.

npz cases are loaded whole (npz cannot be read in part, the scorer loads them too); zarr cases
are read lazily: the z range is a chunked reduction and only the shown slices are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gpueval.challenges.medsegfm.layout import _find, load_prediction, load_truth_case, truth_cases
from gpueval.challenges.medsegfm.options import _settings
from gpueval.pictures import Images, error_overlay, finite, pool_factor, run_config, worst
from gpueval.result import Result


def report_images(result: Result, truth: str | Path, submission: str | Path,
                  config: dict[str, Any] | None = None) -> Images:
    """Pictures of where the submission fails, for the HTML report (the challenge protocol's
    ``report_images``; see :func:`medsegfm_images`)."""
    return medsegfm_images(result, truth, submission, config)


def medsegfm_images(result: Result, truth: str | Path, submission: str | Path,
                    config: dict[str, Any] | None = None, *, n_classes: int = 6,
                    max_side: int = 512) -> Images:
    """Per class of the worst case: the middle slice of the class's GT z range, FP/FN overlay.

    npz cases are loaded whole (npz cannot be read in part, the scorer loads them too); zarr
    cases are read lazily: the z range is a chunked reduction and only the shown slices are
    read.
    """
    settings = _settings(run_config("medsegfm", config))

    def headline(it):
        return it.get("dsc") if finite(it.get("dsc")) else it.get("f1")

    item = worst(result.items, headline)
    if item is None:
        return []
    name = str(item["id"])
    path = dict(truth_cases(truth)).get(name)
    if path is None:
        return []
    case = load_truth_case(path, settings["track"])
    gts = case["gts"]
    sub = Path(submission)
    if settings["track"] == "interactive":
        pred_path = _find(sub / name, f"step_{settings['final_step']}")
    else:
        pred_path = _find(sub, name)
    segs = load_prediction(pred_path, gts.shape) if pred_path.exists() else None
    ext = ((result.extra or {}).get("cases") or {}).get(name) or {}
    import dask.array as da  # only the pictures need it: ~0.4 s of every score's start-up
    g = gts if isinstance(gts, da.Array) else da.from_array(gts, chunks=(16, -1, -1))
    if ext.get("kind") == "instance":
        classes, binary = [1], True
    else:
        classes = ext.get("classes")
        if classes is None:
            ids = np.unique(np.asarray(da.unique(g).compute()))
            classes = ids[1:].tolist()
        binary = False
    per_class = ext.get("per_class") or (ext.get("steps") or {}).get(
        str(settings.get("final_step")), {}).get("per_class") or {}
    out: Images = []
    for c in list(classes)[:n_classes]:
        present = (g > 0) if binary else (g == c)
        zs = np.flatnonzero(np.asarray(present.any(axis=(1, 2)).compute()))
        if not len(zs):
            continue
        z = int((zs[0] + zs[-1]) // 2)
        s = pool_factor(gts.shape[1:], max_side)
        gz = np.asarray(gts[z, ::s, ::s])
        pz = (np.zeros_like(gz) if segs is None else np.asarray(segs[z, ::s, ::s]))
        if settings.get("uint8_cast"):
            gz, pz = gz.astype(np.uint8), pz.astype(np.uint8)
        if binary:
            rgb = error_overlay(gz > 0, pz > 0)
        else:
            rgb = error_overlay(gz == c, pz == c)
        dsc = (per_class.get(str(c)) or {}).get("dsc")
        score = f", DSC {dsc:.3f}" if finite(dsc) else ""
        label = "foreground" if binary else f"class {c}"
        out.append((f"{name} {label} z={z} (middle of its GT range{score}; FP red, FN blue)",
                    rgb))
    return out
