"""Workload ``refuge``: a REFUGE test-set-sized submission (400 masks of 1634 × 1634 BMP).

The truth and submission folders are synthetic: ellipse discs and cups with random centres and
radii (GT) and perturbed copies (prediction). To keep the shared disk small, ``n_distinct``
different mask pairs are written; the other truth names are hard links to them and the other
submission masks are byte copies (the scorer refuses hard links in an untrusted submission). The
scorer still opens and decodes all 800 files (the page cache serves them, as in a rescore).
Classification (400 scores) and fovea (400 points) files are included, so the timing covers a
whole ``gpueval score refuge`` call.

The reference is a plain per-image implementation of the spec's formulas (``np.sum`` over
boolean masks, one image after another, one thread) on the same decoded masks, timed
*without* decoding; ``check`` says both give the same three segmentation means.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from gpueval.api import score
from gpueval.bench import workload
from gpueval.challenges.refuge import read_mask

SIZE = 1634  # Canon CR-2 images of the REFUGE validation/test sets


def _ellipse_mask(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.ogrid[:size, :size]
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    rd = rng.uniform(0.07, 0.1) * size
    rc = rd * rng.uniform(0.3, 0.7)

    def draw(cy, cx, rd, rc):
        mask = np.full((size, size), 255, np.uint8)
        mask[((yy - cy) / (rd * 1.1)) ** 2 + ((xx - cx) / rd) ** 2 <= 1] = 128
        mask[((yy - cy) / (rc * 1.1)) ** 2 + ((xx - cx) / rc) ** 2 <= 1] = 0
        return mask

    dy, dx = rng.integers(-12, 13, 2)
    return draw(cy, cx, rd, rc), draw(cy + dy, cx + dx, rd * rng.uniform(0.9, 1.1),
                                      rc * rng.uniform(0.8, 1.2))


def build_dataset(root: Path, n_images: int, *, size: int = SIZE, n_distinct: int = 8,
                  seed: int = 0) -> tuple[Path, Path]:
    """Write a truth folder and a submission folder; return their paths."""
    rng = np.random.default_rng(seed)
    truth, sub = root / "truth", root / "submission"
    (truth / "Disc_Cup_Masks").mkdir(parents=True)
    (sub / "segmentation").mkdir(parents=True)
    names = [f"T{i + 1:04d}" for i in range(n_images)]
    for i, name in enumerate(names):
        gt_path = truth / "Disc_Cup_Masks" / f"{name}.bmp"
        pred_path = sub / "segmentation" / f"{name}.bmp"
        if i < n_distinct:
            gt, pred = _ellipse_mask(rng, size)
            Image.fromarray(gt).save(gt_path)
            Image.fromarray(pred).save(pred_path)
        else:
            os.link(truth / "Disc_Cup_Masks" / f"{names[i % n_distinct]}.bmp", gt_path)
            shutil.copyfile(sub / "segmentation" / f"{names[i % n_distinct]}.bmp", pred_path)
    labels = np.zeros(n_images, int)
    labels[: max(1, n_images // 10)] = 1
    scores = rng.normal(size=n_images) + labels
    _write_csv(truth / "glaucoma_labels.csv", ["filename", "label"],
               [(f"{n}.jpg", int(lab)) for n, lab in zip(names, labels, strict=True)])
    _write_csv(sub / "classification_results.csv", ["FileName", "Glaucoma Risk"],
               [(f"{n}.jpg", repr(float(s))) for n, s in zip(names, scores, strict=True)])
    xy = rng.uniform(0, size, (n_images, 2))
    _write_csv(truth / "fovea_locations.csv", ["filename", "x", "y"],
               [(f"{n}.jpg", *map(float, p)) for n, p in zip(names, xy, strict=True)])
    _write_csv(sub / "fovea_location_results.csv", ["ImageName", "Fovea_X", "Fovea_Y"],
               [(f"{n}.jpg", *map(float, p + 5)) for n, p in zip(names, xy, strict=True)])
    return truth, sub


def _write_csv(path: Path, header: list[str], rows: list) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _reference_means(truth: Path, sub: Path, names: list[str]) -> tuple[list[float], float]:
    """Plain per-image formulas of the spec, timed without image decoding."""
    def dice(a, b):
        return 2 * float(np.sum(a & b)) / (float(np.sum(a)) + float(np.sum(b)))

    def vcdr(m):
        return float(np.max(np.sum(m == 0, axis=0))) / (
            float(np.max(np.sum(m < 255, axis=0))) + 1e-7)

    cup, disc, err, seconds = [], [], [], 0.0
    for name in names:
        g = read_mask(truth / "Disc_Cup_Masks" / name)
        p = read_mask(sub / "segmentation" / name)
        t0 = time.perf_counter()
        cup.append(dice(p == 0, g == 0))
        disc.append(dice(p < 255, g < 255))
        err.append(abs(vcdr(p) - vcdr(g)))
        seconds += time.perf_counter() - t0
    return [float(np.mean(disc)), float(np.mean(cup)), float(np.mean(err))], seconds


@workload("refuge", "REFUGE submission: 400 BMP masks of 1634x1634 (+ CSVs), scored whole")
def bench_refuge(device: str, scale: float) -> dict:
    n = max(4, int(round(400 * scale)))
    with tempfile.TemporaryDirectory() as tmp:
        truth, sub = build_dataset(Path(tmp), n)
        t0 = time.perf_counter()
        res = score("refuge", truth, sub, device=device)
        seconds = time.perf_counter() - t0
        names = sorted(p.name for p in (sub / "segmentation").iterdir())
        ref, ref_seconds = _reference_means(truth, sub, names)
    if res.status != "ok":  # report the scorer's own reason instead of a KeyError below
        return {"seconds": seconds, "images": n, "check": False, "status": res.status,
                "error": res.error, "notes": res.extra.get("notes")}
    got = [res.metrics[k] for k in ("mean_disc_dice", "mean_cup_dice", "vcdr_mae")]
    return {"voxels": int(res.runtime["voxels"]), "seconds": seconds,
            "images": n, "metrics": res.metrics,
            "reference": "per-image np.sum formulas, one thread, decoding not timed",
            "reference_seconds": ref_seconds,
            "check": bool(np.allclose(got, ref, rtol=0, atol=1e-12)),
            "notes": "seconds = whole score() call incl. BMP decoding of 2n masks, CSVs, "
                     f"{res.extra['config']['limits']['workers']} worker threads; "
                     "masks repeat 8 distinct pairs (truth: hard links; submission: copies)"}
