"""Independent audit of the CellMap scorer against ``shared/specs/cellmap.md`` (2026-06).

The reference is written from the spec only: §4 alignment (skimage ``rescale`` and the
snapped translation paste), §5.1 instance scoring (cc3d 26-connected relabel, max-id counts,
ratio cutoff, float32 IoU, integer min-cost matching solved with ``linear_sum_assignment``,
remap keeping unmatched cc3d ids, capped anisotropic Hausdorff with the ID-collision quirk,
``1.01^(-d/‖v‖)``), §5.2 semantic counts, §5.3 missing entries and §6 pooled aggregation.
Compared with ``gpueval.api.score`` end to end on zarr v2 folders in the official layout
(no manifest row: gpueval takes the GT array's own geometry), also with tiny chunks so the
chunked paths (cross-chunk relabelling) are exercised.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import cc3d
import numpy as np
import pytest
import zarr
from emulated.audit_device import DEVICE, _emulated_cupy  # noqa: F401  (autouse)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.ndimage import distance_transform_edt
from scipy.optimize import linear_sum_assignment
from skimage.transform import rescale

from gpueval.api import score

AUDIT = settings(max_examples=18, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])
INSTANCE = {"mito", "nuc"}
S = 1_000_000


# ----------------------------------------------------------------------------- reference
def ref_align(pred, src_vs, src_tr, tgt_vs, tgt_tr, tgt_shape, instance: bool):
    """§4.3-4.5: rescale when voxel sizes differ, then paste at the snapped offset."""
    src_vs, tgt_vs = np.asarray(src_vs, float), np.asarray(tgt_vs, float)
    img = pred
    resampled = not np.allclose(src_vs, tgt_vs)
    if resampled:
        s = tuple(src_vs / tgt_vs)
        if instance:
            # 'order=0 (nearest), cast back to the input dtype; no anti-aliasing' (skimage's
            # default would smooth a float id array when downsampling)
            img = rescale(pred, s, order=0, mode="constant", preserve_range=True,
                          anti_aliasing=False).astype(pred.dtype)
        else:
            img = rescale(pred.astype(np.float32), s, order=1, mode="constant",
                          preserve_range=True) > 0.5
    t = np.floor(np.asarray(src_tr, float) / tgt_vs) * tgt_vs  # snapped down
    d = t - np.asarray(tgt_tr, float)
    r = (np.sign(d) * np.floor(np.abs(d) / tgt_vs)).astype(int)
    out = np.zeros(tgt_shape, img.dtype)
    src_sl, dst_sl = [], []
    for ax in range(3):
        a = max(r[ax], 0)  # destination start
        b = max(-r[ax], 0)  # source start
        n = min(tgt_shape[ax] - a, img.shape[ax] - b)
        if n <= 0:
            return np.zeros(tgt_shape, img.dtype)
        dst_sl.append(slice(a, a + n))
        src_sl.append(slice(b, b + n))
    out[tuple(dst_sl)] = img[tuple(src_sl)]
    return out


def _matching(gt_ids, pr_ids, iou):
    """§5.1.5 min-cost flow as an assignment: GT rows; columns = preds + one 'unmatched'
    column per GT at cost S+1; non-overlapping pairs are not arcs. Returns (pairs, unique)."""
    ng, npr = len(gt_ids), len(pr_ids)
    big = 10 * S
    cost = np.full((ng, npr + ng), big, np.int64)
    cost[:, npr:] = S + 1
    for (i, j), v in iou.items():
        cost[i, j] = int((1 - float(v)) * S)  # v is float32: 'IoU cast to float32'

    def solve(c):
        rows, cols = linear_sum_assignment(c)
        return int(c[rows, cols].sum()), [(r, k) for r, k in zip(rows, cols, strict=True)
                                           if k < npr]

    best, pairs = solve(cost)
    unique = True
    for r, k in pairs:  # is another assignment just as cheap? (ties: implementation-defined)
        c2 = cost.copy()
        c2[r, k] = big
        if solve(c2)[0] == best:
            unique = False
            break
    return pairs, unique


def ref_instance(gt: np.ndarray, pred: np.ndarray, vs, max_edges: int = 5_000_000) -> dict:
    vs = np.asarray(vs, float)
    pcc = cc3d.connected_components(pred, connectivity=26)  # multi-label, raster order
    n_g, n_p = int(gt.max()), int(pcc.max())
    truth_ids = [int(t) for t in np.unique(gt) if t != 0]
    d_max = float(np.min(vs * np.asarray(gt.shape)) / 2)
    if n_g > 0 and n_p > 0 and n_p / n_g > 10 + 50 * math.exp(-n_g / 5):
        return dict(tp=0, fp=0, fn=0, hausdorff_norm_sum=0.0, n_hausdorff=0,
                    status="skipped_too_many_instances", unique=True)
    both = (gt > 0) & (pcc > 0)
    gsz = np.bincount(gt.ravel().astype(np.int64), minlength=n_g + 1)
    psz = np.bincount(pcc.ravel().astype(np.int64), minlength=n_p + 1)
    pairs, counts = np.unique(np.stack([gt[both].astype(np.int64), pcc[both].astype(np.int64)]),
                              axis=1, return_counts=True)
    if pairs.shape[1] > max_edges:  # 'More than MAX_OVERLAP_EDGES distinct pairs'
        return dict(tp=0, fp=0, fn=0, hausdorff_norm_sum=0.0, n_hausdorff=0,
                    status="skipped_too_many_instances", unique=True)
    gt_rows = sorted({int(g) for g in pairs[0]})
    pr_cols = sorted({int(p) for p in pairs[1]})
    iou = {}
    for (g, p), c in zip(pairs.T, counts, strict=True):
        v = np.float32(c / (gsz[g] + psz[p] - c))
        if v > 0:
            iou[(gt_rows.index(int(g)), pr_cols.index(int(p)))] = v
    matched, unique = _matching(gt_rows, pr_cols, iou) if iou else ([], True)
    mapping = {pr_cols[k]: gt_rows[r] for r, k in matched}
    rem = pcc.copy()
    for p, g in mapping.items():  # simultaneous: computed from the cc3d ids
        rem[pcc == p] = g
    tp = len(set(mapping.values()))
    fp = n_p - len(mapping)
    fn = len(truth_ids) - tp
    dists = []
    for t in truth_ids:
        a, b = gt == t, rem == t
        if not b.any():
            dists.append(d_max)
            continue
        d = max(distance_transform_edt(~b, sampling=vs)[a].max(),
                distance_transform_edt(~a, sampling=vs)[b].max())
        dists.append(min(d, d_max))
    dists += [d_max] * (n_p - len(mapping))
    d32 = np.asarray(dists, np.float32).astype(np.float64)
    h = float(np.sum(1.01 ** (-d32 / np.linalg.norm(vs)))) if len(d32) else 0.0
    return dict(tp=tp, fp=fp, fn=fn, hausdorff_norm_sum=h, n_hausdorff=len(dists),
                status="scored", unique=unique)


def ref_semantic(gt, pred) -> dict:
    p, g = pred > 0, gt > 0
    tp = int((p & g).sum())
    return dict(tp=tp, fp=int(p.sum()) - tp, fn=int(g.sum()) - tp, status="scored")


def ref_missing(gt, instance: bool) -> dict:
    if instance:
        n = int(np.unique(gt[gt != 0]).size)
        return dict(tp=0, fp=0, fn=n, hausdorff_norm_sum=0.0, n_hausdorff=n, status="missing")
    return dict(tp=0, fp=0, fn=int(gt.size), status="missing")


def ref_aggregate(entries: dict) -> dict:
    """§6 over {(crop, label): entry} (missing included)."""
    out, inst, sem = {}, [], []
    for label in sorted({lab for _, lab in entries}):
        es = [e for (_, lab), e in entries.items() if lab == label]
        tp, fp, fn = (sum(e[k] for e in es) for k in ("tp", "fp", "fn"))
        if label in INSTANCE:
            h = sum(e["hausdorff_norm_sum"] for e in es)
            n = sum(e["n_hausdorff"] for e in es)
            if 2 * tp + fp + fn == 0 and n == 0:
                f1 = hd = comb = 1.0
            else:
                f1 = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0
                hd = h / n if n else 0.0
                comb = math.sqrt(f1 * hd)
            out[f"{label}_f1"], out[f"{label}_normalized_hausdorff_distance"] = f1, hd
            out[f"{label}_combined_score"] = comb
            inst.append(comb)
        else:
            den = tp + fp + fn
            out[f"{label}_iou"] = tp / den if den else 1.0
            sem.append(out[f"{label}_iou"])
    oi = float(np.mean(inst)) if inst else 0.0
    osm = float(np.mean(sem)) if sem else 0.0
    out.update(overall_instance_score=oi, overall_semantic_score=osm,
               overall_score=math.sqrt(oi * osm))
    return out


# ----------------------------------------------------------------------------- generators
def _boxes(rng, shape, ids, n):
    v = np.zeros(shape, np.int64)
    for _ in range(n):
        lo = [int(rng.integers(0, s)) for s in shape]
        hi = [min(s, a + int(rng.integers(1, 4))) for a, s in zip(lo, shape, strict=True)]
        v[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = rng.choice(ids)
    return v


@st.composite
def cellmap_case(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    crops = {}
    for c in range(draw(st.integers(1, 3))):
        shape = tuple(int(rng.integers(3, 8)) for _ in range(3))
        vs = [(8.0, 8.0, 8.0), (4.0, 6.0, 6.0), (2.0, 2.0, 3.0)][int(rng.integers(0, 3))]
        tr = tuple(float(rng.integers(0, 50)) * v for v in vs)
        labels = {}
        for lab in ("mito", "nuc", "er", "cyto"):
            if rng.random() < 0.35:
                continue
            inst = lab in INSTANCE
            ids = [1, 2, 3, 7] if inst else [1]
            gt = _boxes(rng, shape, ids, int(rng.integers(0, 5)))
            kind = rng.random()
            if kind < 0.12:
                sub = None  # missing label
            elif kind < 0.35:
                sub = gt.copy()
                m = rng.random(shape) < 0.2
                sub[m] = rng.choice(ids + [0], m.sum())
            elif kind < 0.45 and inst:
                sub = (rng.random(shape) < 0.5).astype(np.int64) * rng.integers(1, 60, shape)
            else:
                sub = _boxes(rng, shape, ids + [9], int(rng.integers(0, 5)))
            sub_vs, sub_tr = vs, tr
            if sub is not None:
                if not inst and rng.random() < 0.3:  # probabilities, incl. negatives
                    sub = (sub > 0) * rng.uniform(0.01, 1.0, shape) - (rng.random(shape) < 0.1)
                    sub = sub.astype(np.float32)
                    if rng.random() < 0.3:  # §4.7 'NaN = background for semantic'
                        sub[rng.random(shape) < 0.1] = np.nan
                elif inst:  # 'Float ids work the same way'
                    sub = sub.astype(rng.choice([np.uint32, np.uint64, np.int32, np.float32]))
                else:
                    sub = sub.astype(np.uint8)
                geo = rng.random()
                if geo < 0.2:  # shifted by whole and fractional voxels
                    sub_tr = tuple(t + v * float(rng.integers(-2, 3)) + float(rng.choice(
                        [0.0, 0.5 * v, 0.9 * v])) for t, v in zip(tr, vs, strict=True))
                elif geo < 0.3:  # coarser grid: 2x voxel size
                    sub = sub[::2, ::2, ::2].copy()
                    sub_vs = tuple(2 * v for v in vs)
                elif geo < 0.35 and sub.dtype != np.float32:  # non-integer factor 1.5
                    sub = sub[::3, ::3, ::3].repeat(2, 0).repeat(2, 1).repeat(2, 2)
                    sub_vs = tuple(1.5 * v for v in vs)
                elif geo < 0.45:  # finer grid: half voxel size (anti-aliased for semantic)
                    sub = sub.repeat(2, 0).repeat(2, 1).repeat(2, 2)
                    if not inst and rng.random() < 0.5:
                        sub = sub.astype(np.float32) * rng.uniform(0.3, 1.0, sub.shape
                                                                   ).astype(np.float32)
                    sub_vs = tuple(v / 2 for v in vs)
            mask = None
            if sub is not None and rng.random() < 0.25:  # '<label>_mask' in the truth crop
                mask = (rng.random(shape) < 0.7).astype(np.uint8)
            labels[lab] = (gt.astype(np.uint32) if inst else gt.astype(np.uint8), sub,
                           sub_vs, sub_tr, mask)
        if labels:
            crops[f"crop{100 + c}"] = dict(shape=shape, vs=vs, tr=tr, labels=labels,
                                           present=rng.random() > 0.1)
    return crops


def _arr(root, crop, label, data, vs, tr, alias: int = 0):
    """``alias`` (submissions): §4.1 'voxel size from attrs voxel_size|resolution|scale,
    translation from translation|offset ... longer than 3, its last 3 entries are used'."""
    g = zarr.open_group(str(root), mode="a", zarr_format=2)
    a = g.require_group(crop).create_array(label, shape=data.shape, dtype=data.dtype,
                                           chunks=(4, 4, 4))
    a[:] = data
    vs_key, tr_key, extra = [("voxel_size", "translation", []), ("resolution", "offset", []),
                             ("scale", "translation", []), ("voxel_size", "offset", [1.0])
                             ][alias]
    a.attrs[vs_key] = extra + list(map(float, vs))
    a.attrs[tr_key] = list(map(float, tr))


def write_case(root: Path, crops: dict, intake: str = "folder") -> tuple[Path, Path]:
    """``intake``: folder | zip | nested (one ``*.zarr`` inside a folder) | noprefix
    (crop folders named ``<ID>``: §2 'the scorer retries with crop prepended')."""
    import shutil

    truth, sub = root / "truth.zarr", root / "sub.zarr"
    zarr.open_group(str(truth), mode="w", zarr_format=2)
    zarr.open_group(str(sub), mode="w", zarr_format=2)
    for crop, c in crops.items():
        sub_crop = crop.removeprefix("crop") if intake == "noprefix" else crop
        for lab, (gt, pr, pvs, ptr, mask) in c["labels"].items():
            _arr(truth, crop, lab, gt, c["vs"], c["tr"])
            if mask is not None:
                _arr(truth, crop, f"{lab}_mask", mask, c["vs"], c["tr"])
            if c["present"] and pr is not None:
                _arr(sub, sub_crop, lab, pr, pvs, ptr, alias=int(pr.size) % 4)
    if intake == "nested":
        outer = root / "upload"
        (outer / "deep").mkdir(parents=True)
        shutil.move(str(sub), str(outer / "deep" / "sub.zarr"))
        sub = outer
    elif intake == "zip":
        z = root / "submission.zip"
        shutil.make_archive(str(z.with_suffix("")), "zip", root_dir=sub)
        sub = z
    return truth, sub


def reference(crops: dict, compat: str = "official", max_edges: int = 5_000_000
              ) -> tuple[dict, dict]:
    entries = {}
    for crop, c in crops.items():
        for lab, (gt, pr, pvs, ptr, mask) in c["labels"].items():
            inst = lab in INSTANCE
            if not c["present"] or pr is None:
                e = ref_missing(gt, inst)
            else:
                al = ref_align(pr, pvs, ptr, c["vs"], c["tr"], gt.shape, inst)
                if mask is not None:  # §4.6 'both GT and prediction are multiplied by it'
                    gt, al = gt * mask, al * mask.astype(al.dtype)
                e = (ref_instance(gt, al, c["vs"], max_edges) if inst
                     else ref_semantic(gt, al))
            # 'num_voxels (GT voxel count)': the GT array's voxel count (fixture e2e:
            # 110592 = 48³ for every label), also when missing
            e["num_voxels"] = int(gt.size)
            entries[(crop, lab)] = e
            if mask is not None and compat == "official":
                # §2 correction box: 'a <label>_mask array present in a truth crop is itself
                # listed as a label to score' -> semantic, never submitted: missing
                entries[(crop, f"{lab}_mask")] = ref_missing(mask, False)
                entries[(crop, f"{lab}_mask")]["num_voxels"] = int(mask.size)
    return entries, ref_aggregate(entries)


def _close(a, b, rel=1e-6, abs_=1e-9) -> bool:
    if b is None:
        return a is None or math.isnan(a)
    return abs(a - b) <= max(abs_, rel * abs(a))


# ----------------------------------------------------------------------------- properties
@AUDIT
@given(crops=cellmap_case(), chunk=st.sampled_from([None, 3]),
       compat=st.sampled_from(["official", "corrected"]),
       intake=st.sampled_from(["folder", "folder", "zip", "nested", "noprefix"]),
       max_edges=st.sampled_from([None, None, 3]))
def test_cellmap_matches_reference(tmp_path, crops, chunk, compat, intake, max_edges):
    if not crops:
        return
    entries, agg = reference(crops, compat, max_edges or 5_000_000)
    truth, sub = write_case(Path(tempfile.mkdtemp(dir=tmp_path)), crops, intake)
    ov = [f"compat={compat}"] + ([f"chunk=[{chunk},{chunk},{chunk}]"] if chunk else [])
    ov += [f"max_overlap_edges={max_edges}"] if max_edges else []
    res = score("cellmap", truth, sub, overrides=ov, device=DEVICE)
    if not any(c["present"] and pr is not None
               for c in crops.values() for (_, pr, _, _, _) in c["labels"].values()):
        # §2: 'still nothing → ValueError("No volumes found…")'
        assert res.status == "rejected"
        return
    assert res.status == "ok", res.error
    items = {it["id"]: it for it in res.items}
    assert set(items) == {f"{c}/{lab}" for c, lab in entries}
    ties = False
    for (crop, lab), e in entries.items():
        it = items[f"{crop}/{lab}"]
        assert it["status"] == e["status"], (crop, lab, it, e)
        for k in ("tp", "fp", "fn", "num_voxels"):
            assert it[k] == e[k], (crop, lab, k, it, e)
        if lab in INSTANCE:
            assert it["n_hausdorff"] == e["n_hausdorff"], (crop, lab, it, e)
            if e.get("unique", True):
                assert _close(e["hausdorff_norm_sum"], it["hausdorff_norm_sum"]), (crop, lab,
                                                                                   it, e)
            else:
                ties = True
    if ties:  # exact matching ties: which pairs OR-Tools picks is implementation-defined
        return
    for k, v in agg.items():
        assert _close(v, res.metrics[k]), (k, v, res.metrics[k])
    assert _close(agg["overall_score"], res.score)


def test_reference_collision_quirk_by_hand():
    """§5.1.9: unmatched GT 2 vs an unmatched prediction whose cc3d id is 2."""
    gt = np.zeros((1, 1, 12), np.uint32)
    gt[0, 0, 0] = 1
    gt[0, 0, 11] = 2
    pred = np.zeros_like(gt)
    pred[0, 0, 0] = 5  # cc3d id 1, matches GT 1
    pred[0, 0, 5] = 6  # cc3d id 2: unmatched, collides with unmatched GT 2
    e = ref_instance(gt, pred, (8.0, 8.0, 8.0))
    d_max = 4.0  # min(8·1, 8·1, 8·12) / 2
    assert (e["tp"], e["fp"], e["fn"]) == (1, 1, 1)
    # GT 1: 0; GT 2 vs pred id 2: 48 nm capped at 4; one unmatched pred: d_max
    v = np.linalg.norm([8.0] * 3)
    assert e["hausdorff_norm_sum"] == pytest.approx(1 + 2 * 1.01 ** (-d_max / v))


def _single(tmp_path, label, gt, pred, vs=(8.0, 8.0, 8.0), overrides=()):
    crops = {"crop7": dict(shape=gt.shape, vs=vs, tr=(0.0, 0.0, 0.0), present=True,
                           labels={label: (gt, pred, vs, (0.0, 0.0, 0.0), None)})}
    truth, sub = write_case(Path(tempfile.mkdtemp(dir=tmp_path)), crops)
    res = score("cellmap", truth, sub, overrides=list(overrides), device=DEVICE)
    assert res.status == "ok", res.error
    return res.items[0], reference(crops)[0][("crop7", label)]


@pytest.mark.parametrize(("gt_id", "n_pred", "skipped"),
                         [(1, 50, False), (1, 51, True), (5, 141, False), (5, 142, True)])
def test_ratio_cutoff_boundary_uses_max_gt_id(tmp_path, gt_id, n_pred, skipped):
    """§5.1.3: 'nP / nG > R(nG)', R(n) = 10 + 50·exp(−n/5), nG = max GT id (not a count)."""
    gt = np.zeros((1, 1, 2 * n_pred), np.uint32)
    gt[0, 0, 0] = gt_id
    pred = np.zeros_like(gt)
    pred[0, 0, ::2] = 4  # n_pred isolated voxels -> n_pred cc3d instances
    it, ref = _single(tmp_path, "mito", gt, pred)
    assert (ref["status"] == "skipped_too_many_instances") == skipped
    assert it["status"] == ref["status"]
    assert (it["tp"], it["fp"], it["fn"], it["n_hausdorff"]) == (
        ref["tp"], ref["fp"], ref["fn"], ref["n_hausdorff"])


@pytest.mark.parametrize("chunk", [None, 2])
def test_corner_touching_blobs_one_instance_and_raster_ids(tmp_path, chunk):
    """§5.1.1: 26-connectivity, multi-label; ids in raster order (observable through the
    ID-collision quirk), also when the blobs straddle chunk borders."""
    gt = np.zeros((4, 4, 4), np.uint32)
    gt[3, 3, 3] = 2  # unmatched GT 2
    gt[0, 0, 0] = 1
    pred = np.zeros_like(gt)
    pred[0, 0, 0] = 9
    pred[1, 1, 1] = 9  # corner-touching: same instance as (0,0,0)
    pred[2, 0, 3] = 3  # raster-second component -> cc3d id 2, collides with GT 2
    pred[3, 0, 0] = 9  # third component
    ov = [f"chunk=[{chunk},{chunk},{chunk}]"] if chunk else []
    it, ref = _single(tmp_path, "mito", gt, pred, overrides=ov)
    assert (ref["tp"], ref["fp"], ref["fn"]) == (1, 2, 1)
    assert (it["tp"], it["fp"], it["fn"]) == (1, 2, 1)
    assert it["hausdorff_norm_sum"] == pytest.approx(ref["hausdorff_norm_sum"], rel=1e-6)


def test_semantic_float_probabilities_use_gt_zero_without_resampling(tmp_path):
    """§4.5: 'When source and target voxel sizes match ... binarises with > 0, not > 0.5'."""
    gt = np.zeros((2, 2, 2), np.uint8)
    gt[0] = 1
    pred = np.full((2, 2, 2), 0.1, np.float32)
    pred[1, 0, 0] = -0.5
    it, ref = _single(tmp_path, "er", gt, pred)
    assert (ref["tp"], ref["fp"], ref["fn"]) == (4, 3, 0)
    assert (it["tp"], it["fp"], it["fn"]) == (4, 3, 0)


# ----------------------------------------------------------------------------- 2025 variant
def ref_2025_instance(gt: np.ndarray, pred: np.ndarray, vs) -> dict:
    """§10 challenge era: skimage label (connectivity = ndim), dense IoU matrix maximised by
    linear_sum_assignment (no threshold), matched predictions painted with the GT id,
    unmatched dropped; voxel accuracy; KD-tree Hausdorff, unmatched GT -> inf; mean over GT
    ids; normalized = 1.01^(-h/‖v‖); combined = sqrt(accuracy · normalized)."""
    from scipy.spatial import cKDTree
    from skimage.measure import label

    vs = np.asarray(vs, float)
    pl = label(pred, connectivity=3)
    n_g, n_p = int(gt.max()), int(pl.max())
    iou = np.zeros((n_g, n_p))
    for g in range(1, n_g + 1):
        for p in range(1, n_p + 1):
            inter = np.sum((gt == g) & (pl == p))
            iou[g - 1, p - 1] = inter / np.sum((gt == g) | (pl == p))
    rows, cols = linear_sum_assignment(iou, maximize=True)
    matched = np.zeros_like(gt)
    for r, c in zip(rows, cols, strict=True):
        matched[pl == c + 1] = r + 1
    acc = float(np.mean(gt == matched))
    hs = []
    for g in range(1, n_g + 1):
        a, b = np.argwhere(gt == g) * vs, np.argwhere(matched == g) * vs
        if len(b) == 0:
            hs.append(math.inf)
            continue
        hs.append(max(cKDTree(b).query(a)[0].max(), cKDTree(a).query(b)[0].max()))
    h = float(np.mean(hs))
    norm = 1.01 ** (-h / np.linalg.norm(vs))
    return dict(accuracy=acc, hausdorff_distance=h, normalized_hausdorff_distance=norm,
                combined_score=math.sqrt(acc * norm))


@st.composite
def cellmap_2025_case(draw):
    from skimage.segmentation import relabel_sequential

    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    crops = {}
    for c in range(draw(st.integers(1, 3))):
        shape = tuple(int(rng.integers(3, 7)) for _ in range(3))
        vs = [(8.0, 8.0, 8.0), (4.0, 6.0, 6.0)][int(rng.integers(0, 2))]
        labels = {}
        gt = relabel_sequential(_boxes(rng, shape, [1, 2, 3, 4], int(rng.integers(1, 5))))[0]
        if gt.max() == 0:
            gt[0, 0, 0] = 1
        kind = rng.random()
        sub = None if kind < 0.15 else (gt.copy() if kind < 0.5 else
                                        _boxes(rng, shape, [1, 2, 5], int(rng.integers(0, 4))))
        if sub is not None and kind >= 0.3:
            m = rng.random(shape) < 0.1
            sub[m] = 0
        labels["mito"] = (gt.astype(np.uint32), None if sub is None else sub.astype(np.uint32))
        sgt = (_boxes(rng, shape, [1], 3) > 0).astype(np.uint8)
        if not sgt.any():
            sgt[0, 0, 0] = 1
        ssub = None if rng.random() < 0.15 else (
            np.roll(sgt, int(rng.integers(-1, 2)), axis=int(rng.integers(0, 3))))
        labels["er"] = (sgt, ssub)
        crops[f"crop{200 + c}"] = dict(shape=shape, vs=vs, labels=labels)
    return crops


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(crops=cellmap_2025_case())
def test_cellmap_2025_variant_matches_reference(tmp_path, crops):
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    truth, sub = root / "truth.zarr", root / "sub.zarr"
    zarr.open_group(str(truth), mode="w", zarr_format=2)
    zarr.open_group(str(sub), mode="w", zarr_format=2)
    per_class: dict = {"mito": [], "er": []}
    items_ref = {}
    for crop, c in crops.items():
        w = float(np.prod(c["vs"])) * int(np.prod(c["shape"]))  # crop physical volume
        for lab, (gt, pr) in c["labels"].items():
            _arr(truth, crop, lab, gt, c["vs"], (0.0, 0.0, 0.0))
            if pr is None:  # 'missing labels scored 0'
                v = 0.0
            else:
                _arr(sub, crop, lab, pr, c["vs"], (0.0, 0.0, 0.0))
                if lab == "mito":
                    items_ref[f"{crop}/{lab}"] = ref_2025_instance(gt, pr, c["vs"])
                    v = items_ref[f"{crop}/{lab}"]["combined_score"]
                else:
                    g, p = gt > 0, pr > 0
                    v = float((g & p).sum() / (g | p).sum())  # union > 0 here
                    items_ref[f"{crop}/{lab}"] = dict(iou=v)
            per_class[lab].append((w, v))
    res = score("cellmap", truth, sub, overrides=["version=2025"], device=DEVICE)
    if not items_ref:
        assert res.status == "rejected"
        return
    assert res.status == "ok", res.error
    got = {it["id"]: it for it in res.items}
    for key, ref in items_ref.items():
        for k, v in ref.items():
            assert _close(v, got[key][k]) or v == got[key][k], (key, k, v, got[key][k])
    cls = {lab: sum(w * v for w, v in vals) / sum(w for w, _ in vals)
           for lab, vals in per_class.items()}
    assert _close(cls["mito"], res.metrics["mito_combined_score"])
    assert _close(cls["er"], res.metrics["er_iou"])
    assert _close(math.sqrt(cls["mito"] * cls["er"]), res.metrics["overall_score"])


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(crops=cellmap_case(), drop_last=st.booleans())
def test_manifest_geometry_and_crop_selection(tmp_path, crops, drop_last):
    """§2: target geometry from the manifest row (not the GT attributes); cli.md: '--set
    manifest=PATH ... scores exactly the crops it lists that exist in the truth'."""
    if not crops:
        return
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    truth, sub = write_case(root, crops)
    listed = list(crops)[:-1] if drop_last and len(crops) > 1 else list(crops)
    rows = ["crop_name,dataset,class_label,voxel_size,translation,shape"]
    g = zarr.open_group(str(truth), mode="a", zarr_format=2)
    for crop, c in crops.items():
        for lab in c["labels"]:
            # misleading GT attributes: the manifest's geometry must win
            g[crop][lab].attrs["translation"] = [t + 1000.0 for t in c["tr"]]
            if crop in listed:
                vec = ";".join
                rows.append(f"{crop.removeprefix('crop')},synthetic,{lab},"
                            f"[{vec(map(str, c['vs']))}],[{vec(map(str, c['tr']))}],"
                            f"[{vec(map(str, c['shape']))}]")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    kept = {k: v for k, v in crops.items() if k in listed}
    entries, agg = reference(kept)
    res = score("cellmap", truth, sub, overrides=[f"manifest={root / 'manifest.csv'}"],
                device=DEVICE)
    if not any(c["present"] and pr is not None
               for c in kept.values() for (_, pr, _, _, _) in c["labels"].values()):
        # the manifest makes the listed crops the truth: no submitted folder names one
        # -> §2 'No volumes found' (an unlisted submitted crop does not count)
        assert res.status == "rejected"
        return
    assert res.status == "ok", res.error
    items = {it["id"]: it for it in res.items}
    assert set(items) == {f"{c}/{lab}" for c, lab in entries}
    if all(e.get("unique", True) for e in entries.values()):
        for k, v in agg.items():
            assert _close(v, res.metrics[k]), (k, v, res.metrics[k])
    for (crop, lab), e in entries.items():
        assert (items[f"{crop}/{lab}"]["tp"], items[f"{crop}/{lab}"]["fn"]) == (e["tp"],
                                                                               e["fn"])
