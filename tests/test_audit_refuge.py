"""Independent audit of the REFUGE scorer against ``shared/specs/refuge.md``.

Reference written from the spec only (whole-array NumPy + sklearn), compared with
``gpueval.api.score`` end to end on folders in the layout of ``cli.md`` (CSV truth variant).
"""

from __future__ import annotations

import csv
import math
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from emulated.audit_device import DEVICE, _emulated_cupy  # noqa: F401  (autouse)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve

from gpueval.api import score

AUDIT = settings(max_examples=25, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


# ----------------------------------------------------------------------------- reference
def ref_dice(s: np.ndarray, g: np.ndarray) -> float:
    """'D = 2·|S ∧ G| / (|S| + |G|) ... no epsilon. Both masks empty → ZeroDivisionError'."""
    den = float(s.sum() + g.sum())
    if den == 0:
        return math.nan  # the crash case: NaN marker
    return 2.0 * float((s & g).sum()) / den


def ref_vdiam(mask: np.ndarray) -> int:
    """'max over columns of the number of mask pixels in that column'."""
    return int(np.sum(mask, axis=0).max())


def ref_vcdr(m: np.ndarray) -> float:
    return ref_vdiam(m == 0) / (ref_vdiam(m < 255) + 1e-7)


def ref_segmentation(pairs: dict[str, tuple[np.ndarray, np.ndarray]], compat: str):
    items = {}
    for name, (gt, pr) in pairs.items():
        d_disc = ref_dice(pr < 255, gt < 255)
        d_cup = ref_dice(pr == 0, gt == 0)
        if compat == "corrected":
            d_disc = 1.0 if math.isnan(d_disc) else d_disc
            d_cup = 1.0 if math.isnan(d_cup) else d_cup
        items[name] = (d_disc, d_cup, abs(ref_vcdr(pr) - ref_vcdr(gt)))
    arr = np.array(list(items.values()), float)
    if np.isnan(arr).any():  # "makes the whole segmentation entry of the submission NaN"
        means = (math.nan, math.nan, math.nan)
    else:
        means = tuple(float(v) for v in arr.mean(axis=0))
    return items, means


def ref_sensitivity(labels: np.ndarray, scores: np.ndarray, spec_at: float = 0.85) -> float:
    """§4 rule, literally: interp1d(1 - fpr, tpr)(0.85) with a stable sort on specificity;
    exact hits -> the last (highest) sensitivity among them; otherwise from the last point of
    the lower group to the first (lowest-sensitivity) point of the upper group."""
    fpr, tpr, _ = roc_curve(labels, scores)
    spec = 1.0 - fpr
    order = np.argsort(spec, kind="mergesort")
    x, y = spec[order], tpr[order]
    hit = np.flatnonzero(x == spec_at)
    if hit.size:
        return float(y[hit[-1]])
    lo = np.flatnonzero(x < spec_at)[-1]
    hi = np.flatnonzero(x > spec_at)[0]
    return float(y[lo] + (spec_at - x[lo]) * (y[hi] - y[lo]) / (x[hi] - x[lo]))


# ----------------------------------------------------------------------------- layout
def _mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    kind = rng.integers(0, 4)
    vals = np.array([0, 128, 255, 100], np.uint8)  # 100: off-label grey (disc, not cup)
    p = [[0.2, 0.3, 0.5, 0.0], [0.0, 0.3, 0.7, 0.0], [0.0, 0.0, 1.0, 0.0],
         [0.15, 0.2, 0.5, 0.15]][kind]
    return rng.choice(vals, size=(h, w), p=p)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@st.composite
def refuge_case(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(3, 12)), int(rng.integers(3, 12))
    n_img = draw(st.integers(2, 9))
    names = [f"T{i:04d}" for i in range(n_img)]
    gts = {n: _mask(rng, h, w) for n in names}
    # masks: a non-empty subset of the GT images is submitted ('a missing image is not scored')
    k = draw(st.integers(1, n_img))
    sub_names = list(rng.choice(names, k, replace=False))
    preds = {}
    for n in sub_names:
        pr = _mask(rng, h, w) if draw(st.booleans()) else gts[n].copy()
        if rng.random() < 0.3:  # perturb a near-perfect prediction
            pr.flat[rng.integers(0, pr.size)] = rng.choice([0, 128, 255])
        preds[n] = pr
    labels = rng.integers(0, 2, n_img)
    labels[0], labels[1] = 0, 1  # both classes present
    lab_vals = np.where(labels > 0, rng.choice([1, 2], n_img), 0)  # 'label > 0 = glaucoma'
    levels = draw(st.sampled_from([2, 3, 5, 1000]))  # few levels -> many ties
    scores = np.round(rng.random(n_img) * (levels - 1)) / (levels - 1)
    fov_gt = rng.uniform(0, 100, (n_img, 2)).round(2)
    n_fov = draw(st.integers(1, n_img))
    fov_names = list(rng.choice(names, n_fov, replace=False))
    fov_pred = {n: fov_gt[names.index(n)] + rng.normal(0, 5, 2).round(3) for n in fov_names}
    rgb = draw(st.booleans())
    return dict(names=names, gts=gts, preds=preds, labels=labels, lab_vals=lab_vals,
                scores=scores, fov_gt=fov_gt, fov_pred=fov_pred, rgb=rgb,
                seed=seed, as_zip=draw(st.booleans()), xlsx=draw(st.booleans()),
                no_mask=[n for n in names if n not in preds and rng.random() < 0.5])


def write_case(root: Path, c: dict) -> tuple[Path, Path]:
    truth = root / "truth"
    (truth / "Disc_Cup_Masks").mkdir(parents=True)
    for n, m in c["gts"].items():
        if n in c.get("no_mask", ()):
            continue  # 'Classification and fovea lists may name images that have no mask'
        Image.fromarray(m, mode="L").save(truth / "Disc_Cup_Masks" / f"{n}.bmp")
    if c.get("xlsx"):
        # official test layout: GT.xlsx (A name, B label; 'column 1 name with its last 3
        # characters replaced by jpg'), Fovea_locations.xlsx (ID, ImgName, label, X, Y)
        from openpyxl import Workbook

        wb = Workbook()
        ws = wb.active
        ws.append(["ImgName", "Label"])
        for n, v in zip(c["names"], c["lab_vals"], strict=True):
            ws.append([f"{n}.bmp", int(v)])
        wb.save(truth / "GT.xlsx")
        wb = Workbook()
        ws = wb.active
        ws.append(["ID", "ImgName", "Glaucoma Label", "Fovea_X", "Fovea_Y"])
        for i, (n, xy) in enumerate(zip(c["names"], c["fov_gt"], strict=True)):
            ws.append([i + 1, f"{n}.jpg", int(c["lab_vals"][i] > 0), *map(float, xy)])
        wb.save(truth / "Fovea_locations.xlsx")
    else:
        _write_csv(truth / "glaucoma_labels.csv", ["filename", "label"],
                   [[f"{n}.jpg", int(v)]
                    for n, v in zip(c["names"], c["lab_vals"], strict=True)])
        _write_csv(truth / "fovea_locations.csv", ["filename", "x", "y"],
                   [[f"{n}.jpg", *map(float, xy)]
                    for n, xy in zip(c["names"], c["fov_gt"], strict=True)])
    sub = root / "sub"
    (sub / "segmentation").mkdir(parents=True)
    rng = np.random.default_rng(c["seed"] + 1)
    for n, m in c["preds"].items():
        if c["rgb"]:  # 'a 3-D array keeps channel 0 only'
            other = rng.integers(0, 256, m.shape + (2,), dtype=np.uint8)
            Image.fromarray(np.dstack([m, other]), mode="RGB").save(sub / "segmentation" /
                                                                     f"{n}.bmp")
        else:
            Image.fromarray(m, mode="L").save(sub / "segmentation" / f"{n}.bmp")
    order = rng.permutation(len(c["names"]))  # 'rows may be in any order and any case'
    rows = []
    for i in order:
        name = f"{c['names'][i]}.jpg"
        name = name.lower() if rng.random() < 0.5 else name
        rows.append([name, float(c["scores"][i])])
    _write_csv(sub / "classification_results.csv", ["FileName", "Glaucoma Risk"], rows)
    # '(or fovea_localization_results.csv)'
    fov_name = ("fovea_localization_results.csv" if rng.random() < 0.3
                else "fovea_location_results.csv")
    _write_csv(sub / fov_name, ["ImageName", "Fovea_X", "Fovea_Y"],
               [[f"{n}.jpg", *map(float, xy)] for n, xy in c["fov_pred"].items()])
    if c["as_zip"]:
        # 'A single wrapping folder inside the zip and __MACOSX are tolerated.'
        wrap = "team_x/" if rng.random() < 0.5 else ""
        z = root / "sub.zip"
        with zipfile.ZipFile(z, "w") as zf:
            for f in sorted(sub.rglob("*")):
                if f.is_file():
                    zf.write(f, wrap + f.relative_to(sub).as_posix())
            if wrap and rng.random() < 0.5:
                zf.writestr("__MACOSX/team_x/._classification_results.csv", b"\x00\x05")
        return truth, z
    return truth, sub


def _close(a, b, tol=1e-9) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or math.isnan(b)
    return b is not None and not math.isnan(b) and abs(a - b) <= tol


def _item_map(res) -> dict:
    out = {}
    for it in res.items:
        out[Path(str(it["id"])).stem.upper()] = it
    return out


# ----------------------------------------------------------------------------- properties
@AUDIT
@given(c=refuge_case(), compat=st.sampled_from(["official", "corrected"]))
def test_refuge_matches_reference(tmp_path, c, compat):
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    truth, sub = write_case(root, c)
    res = score("refuge", truth, sub, overrides=[f"compat={compat}"], device=DEVICE)
    assert res.status == "ok", res.error
    assert res.score is None  # 'null for one submission'
    m = res.metrics

    pairs = {n: (c["gts"][n], p) for n, p in c["preds"].items()}
    items, (disc, cup, mae) = ref_segmentation(pairs, compat)
    assert _close(disc, m["mean_disc_dice"]), (disc, m["mean_disc_dice"])
    assert _close(cup, m["mean_cup_dice"]), (cup, m["mean_cup_dice"])
    assert _close(mae, m["vcdr_mae"]), (mae, m["vcdr_mae"])
    got = _item_map(res)
    assert set(got) == {n.upper() for n in items}  # items keyed by submitted image name
    for n, (d_disc, d_cup, ae) in items.items():
        it = got[n.upper()]
        assert _close(ae, it["vcdr_error"])
        if not math.isnan(d_disc):
            assert _close(d_disc, it["disc_dice"])
        if not math.isnan(d_cup):
            assert _close(d_cup, it["cup_dice"])

    labels = (c["lab_vals"] > 0).astype(int)
    assert _close(float(roc_auc_score(labels, c["scores"])), m["auc"])
    assert _close(ref_sensitivity(labels, c["scores"]), m["sensitivity_at_085_specificity"])

    d = [float(np.hypot(*(c["fov_pred"][n] - c["fov_gt"][c["names"].index(n)])))
         for n in c["fov_pred"]]
    assert _close(float(np.mean(d)), m["fovea_mean_distance"])


def test_sensitivity_reference_reproduces_spec_examples():
    """Sanity of the reference itself: 'a perfect classifier gets 0.15'."""
    labels = np.array([0] * 9 + [1] * 3)
    assert ref_sensitivity(labels, labels.astype(float)) == pytest.approx(0.15, abs=1e-12)


def test_extra_mask_without_truth_official_nan(tmp_path):
    """'an extra one without GT raises → NaN' (official)."""
    rng = np.random.default_rng(3)
    c = dict(names=["T0000", "T0001"], gts={"T0000": _mask(rng, 5, 5), "T0001": _mask(rng, 5, 5)},
             labels=np.array([0, 1]), lab_vals=np.array([0, 1]), scores=np.array([0.1, 0.9]),
             fov_gt=np.array([[1.0, 2.0], [3.0, 4.0]]), fov_pred={"T0000": np.array([1.0, 2.0])},
             rgb=False, seed=3, as_zip=False)
    c["preds"] = {"T0000": c["gts"]["T0000"].copy(), "X9999": c["gts"]["T0001"].copy()}
    truth, sub = write_case(tmp_path, c)
    res = score("refuge", truth, sub, device=DEVICE)
    assert res.status == "ok"
    assert res.metrics["mean_disc_dice"] is None or math.isnan(res.metrics["mean_disc_dice"])
    assert res.metrics["auc"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- ranking (§5)
def _positions(order: list[str]) -> dict[str, int]:
    return {t: i for i, t in enumerate(order)}


def ref_boards(results: dict) -> dict[str, list[str]]:
    """§5 without ties: ranks are 0-based positions in the sorted order; NaN in the leading
    metric drops a team from that board; final positions are 1-based, taken on each full
    board before dropping teams missing from the other one."""
    def ok(t, k):
        v = results[t].get(k)
        return v is not None and not math.isnan(v)

    seg = [t for t in results if ok(t, "mean_cup_dice")]
    r_cup = _positions(sorted(seg, key=lambda t: -results[t]["mean_cup_dice"]))
    r_disc = _positions(sorted(seg, key=lambda t: -results[t]["mean_disc_dice"]))
    r_mae = _positions(sorted(seg, key=lambda t: results[t]["vcdr_mae"]))
    score = {t: 0.35 * r_cup[t] + 0.25 * r_disc[t] + 0.4 * r_mae[t] for t in seg}
    seg_order = sorted(seg, key=lambda t: score[t])
    cls = [t for t in results if ok(t, "auc")]
    cls_order = sorted(cls, key=lambda t: -results[t]["auc"])
    fov = [t for t in results if ok(t, "fovea_mean_distance")]
    fov_order = sorted(fov, key=lambda t: results[t]["fovea_mean_distance"])
    sp, cp = _positions(seg_order), _positions(cls_order)
    both = [t for t in seg_order if t in cp]
    final = {t: 0.6 * (sp[t] + 1) + 0.4 * (cp[t] + 1) for t in both}
    return dict(segmentation=seg_order, classification=cls_order, fovea=fov_order,
                final=sorted(both, key=lambda t: final[t]), _scores=[score, final])


@AUDIT
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 9))
def test_refuge_leaderboards_match_reference(seed, n):
    from hypothesis import assume

    from gpueval.metrics.ranking import refuge_leaderboard

    rng = np.random.default_rng(seed)
    results = {}
    for i in range(n):
        seg_nan, cls_nan = rng.random() < 0.2, rng.random() < 0.2
        results[f"team{i}"] = {
            "mean_cup_dice": math.nan if seg_nan else float(rng.random()),
            "mean_disc_dice": math.nan if seg_nan else float(rng.random()),
            "vcdr_mae": math.nan if seg_nan else float(rng.random()),
            "auc": None if cls_nan else float(rng.random()),
            "fovea_mean_distance": math.nan if rng.random() < 0.2 else float(rng.random()),
        }
    ref = ref_boards(results)
    for scores in ref["_scores"]:  # ties in a board score: argsort order, not audited here
        vals = [round(v, 9) for v in scores.values()]
        assume(len(set(vals)) == len(vals))
    boards = refuge_leaderboard(results)
    for name in ("segmentation", "classification", "fovea", "final"):
        assert list(boards[name]["teams_in_order"]) == ref[name], name
