"""Independent audit of the U-RISC scorer against ``shared/specs/urisc.md``.

The reference below is written from the spec only (whole-array NumPy/skimage, as literal as
possible) and compared with ``gpueval.api.score`` end to end: GT PNG folder and TIFF submission
folder in the layout of ``cli.md``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
from emulated.audit_device import DEVICE, _emulated_cupy  # noqa: F401  (autouse)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage.morphology import dilation, disk

from gpueval.api import score

AUDIT = settings(max_examples=25, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


# ----------------------------------------------------------------------------- reference
def ref_format_ok(pred: np.ndarray) -> bool:
    """§2.3 on the inverted prediction: <= 2 values, black // white >= 5 (white = 0 crashes)."""
    inv = 255 - pred.astype(np.int64)
    if np.unique(inv).size > 2:
        return False
    black = int((inv == 0).sum())
    white = int((inv == 255).sum())
    if white == 0:  # ZeroDivisionError in the official check: never a valid submission
        return False
    return black // white >= 5


def ref_image(gt: np.ndarray, pred: np.ndarray, *, binarise: bool, radius: int
              ) -> tuple[float, float, float]:
    """§2 steps 1-6 (and §3 for radius > 0) for one image."""
    gt_i = 255 - gt.astype(np.int64)  # 1. invert: membrane -> 255
    pred_i = 255 - pred.astype(np.int64)
    if binarise:  # 2. "membrane <=> GT <= 122" on the stored GT
        gt_i = np.where(gt <= 122, 255, 0).astype(np.int64)
    if radius > 0:  # 4./3. dilation by disk(r); r = 0 is the identity
        gt_dil = dilation(gt_i, disk(radius)) != 0
        pred_dil = dilation(pred_i, disk(radius)) != 0
    else:
        gt_dil = gt_i != 0
        pred_dil = pred_i != 0
    n_pred = pred_i.sum()
    n_gt = gt_i.sum()
    # 6. special cases before the division
    if n_pred == 0 and n_gt > 0:
        p, r = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        p, r = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        p, r = 1.0, 1.0
    else:
        p = (pred_i * gt_dil).sum() / n_pred
        r = (gt_i * pred_dil).sum() / n_gt
    f = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    return float(p), float(r), float(f)


# ----------------------------------------------------------------------------- strategies
@st.composite
def image_pair(draw, *, valid_pred=True, grey_gt=True):
    h = draw(st.integers(4, 14))
    w = draw(st.integers(4, 14))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    gt_p = draw(st.sampled_from([0.0, 0.05, 0.15, 0.5]))
    gt_mem = rng.random((h, w)) < gt_p
    gt = np.where(gt_mem, 0, 255).astype(np.uint8)
    if grey_gt and draw(st.booleans()):
        # grey values around the threshold incl. 122/123 exactly
        grey = rng.choice(np.array([0, 60, 121, 122, 123, 200, 254, 255], np.uint8), (h, w))
        gt = np.where(rng.random((h, w)) < 0.3, grey, gt).astype(np.uint8)
    n = h * w
    k_max = n // 6 if valid_pred else n
    k = draw(st.integers(0, max(k_max, 0)))
    if draw(st.booleans()) and gt_mem.sum() and gt_mem.sum() <= k_max:
        pred_mem = gt_mem.copy()  # a perfect or near-perfect prediction
        if k and draw(st.booleans()):
            pred_mem.flat[rng.integers(0, n)] ^= True
    else:
        pred_mem = np.zeros(n, bool)
        pred_mem[rng.choice(n, k, replace=False)] = True
        pred_mem = pred_mem.reshape(h, w)
    pred = np.where(pred_mem, 0, 255).astype(np.uint8)
    return gt, pred


def write_case(root: Path, pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[Path, Path]:
    gt_dir = root / "gt"
    sub_dir = root / "sub"
    gt_dir.mkdir(parents=True, exist_ok=True)
    sub_dir.mkdir(parents=True, exist_ok=True)
    for i, (gt, pred) in enumerate(pairs):
        stem = f"img_{i:02d}_x"
        if i == 1:  # '.png (or .tif/.tiff)' GT
            tifffile.imwrite(gt_dir / f"{stem}.tif", gt, photometric="minisblack")
        else:
            Image.fromarray(gt, mode="L").save(gt_dir / f"{stem}.png")
        tifffile.imwrite(sub_dir / f"{stem}.tiff", pred, photometric="minisblack")
    return gt_dir, sub_dir


def _run(tmp_path, pairs, overrides=(), *, as_zip=False, rgb_gt=False):
    import tempfile
    import zipfile

    root = Path(tempfile.mkdtemp(dir=tmp_path))
    gt_dir, sub_dir = write_case(root, pairs)
    if rgb_gt:  # and an RGB prediction TIFF with equal channels (cv2 reads it as grey)
        tifffile.imwrite(sub_dir / "img_00_x.tiff", np.dstack([pairs[0][1]] * 3),
                         photometric="rgb")
    if rgb_gt:  # "Sample GT PNGs are 3-channel with equal channels"
        for i, (gt, _) in enumerate(pairs):
            if i != 1:  # image 1 has a .tif GT
                Image.fromarray(np.dstack([gt] * 3), mode="RGB").save(
                    gt_dir / f"img_{i:02d}_x.png")
    sub = sub_dir
    if as_zip:  # "all in result.zip"
        sub = root / "result.zip"
        with zipfile.ZipFile(sub, "w") as zf:
            for f in sorted(sub_dir.iterdir()):
                zf.write(f, f.name)
    return score("urisc", gt_dir, sub, overrides=list(overrides), device=DEVICE)


def _check(res, pairs, *, binarise, radius):
    assert res.status == "ok", res.error
    items = {it["id"]: it for it in res.items}
    assert sorted(items) == [f"img_{i:02d}_x" for i in range(len(pairs))]
    fs = []
    for i, (gt, pred) in enumerate(pairs):
        p, r, f = ref_image(gt, pred, binarise=binarise, radius=radius)
        it = items[f"img_{i:02d}_x"]
        assert it["precision"] == pytest.approx(p, abs=1e-9)
        assert it["recall"] == pytest.approx(r, abs=1e-9)
        assert it["f1"] == pytest.approx(f, abs=1e-9)
        fs.append(f)
    # "per-image F, then the arithmetic mean over images"
    assert res.score == pytest.approx(float(np.mean(fs)), abs=1e-9)
    assert res.metrics["f1"] == pytest.approx(float(np.mean(fs)), abs=1e-9)


# ----------------------------------------------------------------------------- properties
@AUDIT
@given(pairs=st.lists(image_pair(), min_size=1, max_size=3), as_zip=st.booleans(),
       rgb_gt=st.booleans())
def test_default_variant_matches_reference(tmp_path, pairs, as_zip, rgb_gt):
    """Final metric: GT binarised at <= 122, r = 0, per-image F, mean over images."""
    res = _run(tmp_path, pairs, as_zip=as_zip, rgb_gt=rgb_gt)
    if not all(ref_format_ok(p) for _, p in pairs):
        # an all-background prediction crashes the official format check
        assert res.status == "rejected"
        return
    _check(res, pairs, binarise=True, radius=0)


@AUDIT
@given(pairs=st.lists(image_pair(), min_size=1, max_size=2), radius=st.integers(0, 2))
def test_released_script_matches_reference(tmp_path, pairs, radius):
    """§4: eval.py verbatim, no GT binarisation (grey GT weights recall); bound_pix = r."""
    if not all(ref_format_ok(p) for _, p in pairs):
        return
    res = _run(tmp_path, pairs, ["variant=released-script", f"radius={radius}"])
    _check(res, pairs, binarise=False, radius=radius)


@AUDIT
@given(pairs=st.lists(image_pair(), min_size=1, max_size=2), radius=st.integers(1, 3),
       band_bytes=st.sampled_from([None, 16, 40]))
def test_bold_variant_matches_reference(tmp_path, pairs, radius, band_bytes):
    """§3: both maps dilated by disk(r); undilated map counted against the dilated other.
    Small ``band_bytes`` makes gpueval score a few rows per band (halo = radius rows)."""
    if not all(ref_format_ok(p) for _, p in pairs):
        return
    extra = [f"band_bytes={band_bytes}"] if band_bytes else []
    res = _run(tmp_path, pairs, ["variant=bold", f"radius={radius}", *extra])
    _check(res, pairs, binarise=True, radius=radius)


@AUDIT
@given(pair=image_pair(valid_pred=False, grey_gt=False), grey=st.booleans())
def test_format_check_matches_reference(tmp_path, pair, grey):
    """§2.3: > 2 values or membrane > 1/6 (black // white < 5) or no membrane -> rejected."""
    gt, pred = pair
    if grey:
        pred = pred.copy()
        pred.flat[0] = 128  # a third value (or a second non-0/255 one)
    res = _run(tmp_path, [(gt, pred)])
    if ref_format_ok(pred):
        _check(res, [(gt, pred)], binarise=True, radius=0)
    else:
        assert res.status == "rejected"
        assert res.error


def test_two_values_neither_membrane_is_rejected(tmp_path):
    """'two values neither of which is 255' (after inversion) -> ZeroDivisionError: rejected."""
    gt = np.full((6, 6), 255, np.uint8)
    gt[2, 2] = 0
    pred = np.full((6, 6), 255, np.uint8)
    pred[0, 0] = 100
    assert _run(tmp_path, [(gt, pred)]).status == "rejected"


def test_fixture_spec_cases_by_hand(tmp_path):
    """§6 table, hand-checkable: GT empty + prediction -> F = 0; 1 px shift r=0 vs r=1."""
    gt = np.full((12, 12), 255, np.uint8)
    pred = gt.copy()
    pred[5, 5] = 0
    res = _run(tmp_path, [(gt, pred)])
    assert res.status == "ok"
    assert (res.items[0]["precision"], res.items[0]["recall"], res.items[0]["f1"]) == (0, 1, 0)
    gt2 = gt.copy()
    gt2[3, 2:8] = 0
    pred2 = gt.copy()
    pred2[4, 2:8] = 0
    assert _run(tmp_path, [(gt2, pred2)]).score == 0.0
    res = _run(tmp_path, [(gt2, pred2)], ["variant=bold", "radius=1"])
    assert res.score == pytest.approx(1.0, abs=1e-12)
    assert math.isfinite(res.score)


def test_missing_prediction_is_rejected_by_default(tmp_path):
    gt = np.full((6, 6), 255, np.uint8)
    pred = gt.copy()
    pred[0, 0] = 0
    root = tmp_path / "m"
    gt_dir, sub_dir = write_case(root, [(gt, pred), (gt, pred)])
    (sub_dir / "img_01_x.tiff").unlink()
    assert score("urisc", gt_dir, sub_dir, device=DEVICE).status == "rejected"
