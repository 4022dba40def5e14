"""Independent audit of the MedSegFM scorer against ``shared/specs/medsegfm.md``.

The reference is written from the spec only: DSC by whole-array counts, NSD literally as §3
(crop, 2x2x2 neighbour code, surfel areas from the DeepMind normals table of the
``surface-distance`` package — the spec names it as the source of the table —, exact EDT on the
corner grid), instance F1 as §6 (cc3d, relabel_sequential, IoU, linear_sum_assignment). It is
compared with ``gpueval.api.score`` end to end on npz folders in the layout of ``cli.md``.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import cc3d
import numpy as np
import pytest
from emulated.audit_device import DEVICE, _emulated_cupy  # noqa: F401  (autouse)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.ndimage import distance_transform_edt
from scipy.optimize import linear_sum_assignment
from skimage.segmentation import relabel_sequential
from surface_distance.lookup_tables import _NEIGHBOUR_CODE_TO_NORMALS

from gpueval.api import score

AUDIT = settings(max_examples=25, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])
TAU = 2.0


# ----------------------------------------------------------------------------- reference
def ref_dsc(g: np.ndarray, p: np.ndarray) -> float:
    """§2: 2|G∧P| / (|G|+|P|), NaN when both are empty."""
    den = int(g.sum()) + int(p.sum())
    return math.nan if den == 0 else 2 * int((g & p).sum()) / den


def _areas(spacing) -> np.ndarray:
    """§3.4: area(code) = Σ_n ‖(n0·s1·s2, n1·s0·s2, n2·s0·s1)‖."""
    s0, s1, s2 = spacing
    out = np.zeros(256)
    for code, normals in enumerate(_NEIGHBOUR_CODE_TO_NORMALS):
        for n in normals:
            out[code] += np.linalg.norm([n[0] * s1 * s2, n[1] * s0 * s2, n[2] * s0 * s1])
    return out


def _codes(m: np.ndarray) -> np.ndarray:
    """§3.2: code(i,j,k) = Σ w(a,b,c)·M[i-1+a, j-1+b, k-1+c], outside = 0."""
    mp = np.pad(m.astype(np.int64), [(1, 0)] * 3)  # mp[i] = m[i-1]
    n0, n1, n2 = m.shape
    code = np.zeros(m.shape, np.int64)
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                w = 128 >> (4 * a + 2 * b + c)
                code += w * mp[a:a + n0, b:b + n1, c:c + n2]
    return code


def ref_nsd(g: np.ndarray, p: np.ndarray, spacing) -> float:
    """§3 literally."""
    union = g | p
    if not union.any():
        return math.nan
    idx = np.argwhere(union)
    lo, hi = idx.min(0), idx.max(0)
    size = hi - lo + 2  # '(max − min + 1) + 1 per axis, data at the low end'
    crop = tuple(slice(a, b + 1) for a, b in zip(lo, hi, strict=True))
    gc = np.zeros(size, bool)
    pc = np.zeros(size, bool)
    gc[tuple(slice(0, b - a + 1) for a, b in zip(lo, hi, strict=True))] = g[crop]
    pc[tuple(slice(0, b - a + 1) for a, b in zip(lo, hi, strict=True))] = p[crop]
    cg, cp = _codes(gc), _codes(pc)
    sg = (cg != 0) & (cg != 255)
    sp = (cp != 0) & (cp != 255)
    table = _areas(spacing)
    ag, ap = table[cg[sg]], table[cp[sp]]
    dg = (distance_transform_edt(~sp, sampling=spacing)[sg] if sp.any()
          else np.full(sg.sum(), np.inf))
    dp = (distance_transform_edt(~sg, sampling=spacing)[sp] if sg.any()
          else np.full(sp.sum(), np.inf))
    return float((ag[dg <= TAU].sum() + ap[dp <= TAU].sum()) / (ag.sum() + ap.sum()))


def ref_classes(gt: np.ndarray, *, official: bool, prompted=None) -> list[int]:
    """§4: sorted unique GT values minus the first (official); corrected drops only 0."""
    u = np.unique(gt)
    cls = list(u[1:]) if official else [int(v) for v in u if v != 0]
    if prompted is not None:
        cls = [c for c in cls if int(c) in prompted]
    return [int(c) for c in cls]


def ref_case(gt, seg, spacing, classes, *, nan_mean: bool):
    dsc = [ref_dsc(gt == c, seg == c) for c in classes]
    nsd = [ref_nsd(gt == c, seg == c, spacing) for c in classes]
    if not classes:
        return math.nan, math.nan
    f = np.nanmean if nan_mean else np.mean
    return float(f(dsc)), float(f(nsd))


def ref_instance(gt: np.ndarray, seg: np.ndarray) -> tuple[float, float]:
    """§6 instance branch (inputs already cast as the mode wants)."""
    if np.unique(seg).size == 2:
        cc = cc3d.connected_components(seg != 0, connectivity=6)
        seg = seg.copy()
        nz = seg != 0
        seg[nz] = (cc[nz] + seg.max()).astype(seg.dtype)  # 'component id + max(segs)'
    g, _, _ = relabel_sequential(gt)
    p, _, _ = relabel_sequential(seg)
    ng, npred = int(g.max()), int(p.max())
    if npred == 0:
        return 0.0, 0.0
    ov = np.zeros((ng + 1, npred + 1), np.int64)
    np.add.at(ov, (g.ravel().astype(np.int64), p.ravel().astype(np.int64)), 1)
    gs, ps = ov.sum(1)[1:], ov.sum(0)[1:]
    ov = ov[1:, 1:]
    iou = ov / (gs[:, None] + ps[None, :] - ov)
    tp, dices = 0, []
    if ng and npred:
        cost = -(iou >= 0.5).astype(float) - iou / (2 * min(ng, npred))
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols, strict=True):
            if iou[r, c] >= 0.5:
                tp += 1
                dices.append(2 * ov[r, c] / (gs[r] + ps[c]))
    fp, fn = npred - tp, ng - tp
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return float(f1), float(np.mean(dices)) if dices else 0.0


# ----------------------------------------------------------------------------- generators
SPACINGS = st.tuples(*[st.sampled_from([0.5, 0.8, 1.0, 1.5, 2.5])] * 3)


def _blobs(rng, shape, labels, n_boxes) -> np.ndarray:
    v = np.zeros(shape, np.int64)
    for _ in range(n_boxes):
        lo = [int(rng.integers(0, s)) for s in shape]
        hi = [int(rng.integers(a, s)) + 1 for a, s in zip(lo, shape, strict=True)]
        v[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = rng.choice(labels)
    if rng.random() < 0.3:  # speckle: stray voxels and ties at the 2 mm tolerance
        m = rng.random(shape) < 0.05
        v[m] = rng.choice(labels, m.sum())
    return v


def _perturb(rng, gt, labels) -> np.ndarray:
    kind = rng.integers(0, 4)
    if kind == 0:
        return gt.copy()
    if kind == 1:
        return np.zeros_like(gt)
    if kind == 2:
        return _blobs(rng, gt.shape, labels, int(rng.integers(0, 4)))
    seg = gt.copy()
    m = rng.random(gt.shape) < 0.15
    seg[m] = rng.choice(labels, m.sum())
    return np.roll(seg, int(rng.integers(-1, 2)), axis=int(rng.integers(0, 3)))


@st.composite
def semantic_cases(draw, labels=(0, 1, 2, 3, 300)):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    n = draw(st.integers(1, 3))
    cases = []
    for _ in range(n):
        shape = tuple(int(rng.integers(2, 8)) for _ in range(3))
        gt = _blobs(rng, shape, list(labels), int(rng.integers(0, 4)))
        if rng.random() < 0.15:  # GT without background voxel
            gt[gt == 0] = labels[-1]
        cases.append((gt, _perturb(rng, gt, list(labels)), draw(SPACINGS)))
    return cases


def _write(root: Path, cases, *, prompts=None, interactive=False):
    truth, sub = root / "gt", root / "sub"
    truth.mkdir(parents=True)
    sub.mkdir(parents=True)
    for i, case in enumerate(cases):
        gt, seg, spacing = case
        extra = {}
        if prompts is not None:
            if i % 2:
                # the official format: a pickled dict under 'text_prompts' (read by gpueval
                # only through its restricted unpickler)
                obj = np.empty((), dtype=object)
                obj[()] = dict(prompts[i])
                extra["text_prompts"] = obj
            else:
                extra["text_prompts_json"] = np.array(json.dumps(prompts[i]))
        np.savez(truth / f"case_{i}.npz", gts=gt, spacing=np.array(spacing, float), **extra)
        if interactive:
            (sub / f"case_{i}").mkdir()
            for k, s in enumerate(seg, start=1):
                if s is not None:
                    np.savez(sub / f"case_{i}" / f"step_{k}.npz", segs=s,
                             running_time=np.float64(37.0 * ((i + k) % 3)))
        else:
            np.savez(sub / f"case_{i}.npz", segs=seg)
    return truth, sub


def _close(a, b, tol=1e-9) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return b is not None and not math.isnan(b) and abs(a - b) <= tol


def _items(res) -> dict:
    return {str(it["id"]): it for it in res.items}


# ----------------------------------------------------------------------------- properties
@AUDIT
@given(cases=semantic_cases(), compat=st.sampled_from(["official", "corrected"]),
       chunk=st.sampled_from([None, 2, 3]))
def test_semantic_track_matches_reference(tmp_path, cases, compat, chunk):
    truth, sub = _write(Path(tempfile.mkdtemp(dir=tmp_path)), cases)
    ov = [f"compat={compat}"] + ([f"chunk_size={chunk}"] if chunk else [])  # chunked paths
    res = score("medsegfm", truth, sub, overrides=ov, device=DEVICE)
    assert res.status == "ok", res.error
    items = _items(res)
    dscs = []
    for i, (gt, seg, spacing) in enumerate(cases):
        cls = ref_classes(gt, official=compat == "official")
        d, n = ref_case(gt, seg, spacing, cls, nan_mean=False)
        it = items[f"case_{i}"]
        assert _close(d, it["dsc"]), (i, cls, d, it["dsc"])
        assert _close(n, it["nsd"], 1e-6), (i, cls, n, it["nsd"])  # '1e-6, not bit-exactly'
        dscs.append(d)
    finite = [d for d in dscs if not math.isnan(d)]
    # aggregation is unknown in the spec; gpueval documents nanmean over cases
    assert _close(float(np.mean(finite)) if finite else math.nan, res.score)


@st.composite
def text_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    cases, prompts = [], []
    for _ in range(draw(st.integers(1, 3))):
        shape = tuple(int(rng.integers(2, 8)) for _ in range(3))
        instance = draw(st.booleans())
        if instance:
            labels = list(range(0, int(rng.integers(2, 7))))
            gt = _blobs(rng, shape, labels, int(rng.integers(0, 6)))
            if rng.random() < 0.3:  # non-sequential GT ids incl. ones that wrap in uint8
                gt = np.where(gt > 0, gt * 7 + 250, 0)
            seg = _perturb(rng, gt, labels)
            if rng.random() < 0.4:  # binary prediction: split into 6-connected components
                seg = np.where(seg > 0, int(rng.choice([1, 5, 255])), 0)
            prompts.append({"1": "cells", "instance_label": 1})
        else:
            labels = [0, 1, 2, 3, 258]
            gt = _blobs(rng, shape, labels, int(rng.integers(0, 4)))
            seg = _perturb(rng, gt, labels)
            keys = rng.choice([1, 2, 3, 258, 9], int(rng.integers(0, 4)), replace=False)
            prompts.append({str(int(k)): f"organ {k}" for k in keys} | {"instance_label": 0})
        cases.append((gt, seg, draw(SPACINGS)))
    return cases, prompts


@AUDIT
@given(cp=text_cases(), compat=st.sampled_from(["official", "corrected"]))
def test_text_track_matches_reference(tmp_path, cp, compat):
    cases, prompts = cp
    truth, sub = _write(Path(tempfile.mkdtemp(dir=tmp_path)), cases, prompts=prompts)
    res = score("medsegfm", truth, sub, overrides=["track=text", f"compat={compat}"],
                device=DEVICE)
    assert res.status == "ok", res.error
    items = _items(res)
    for i, ((gt, seg, spacing), pr) in enumerate(zip(cases, prompts, strict=True)):
        if compat == "official":  # 'casts both gts and segs to uint8 before anything else'
            gt, seg = gt.astype(np.uint8), seg.astype(np.uint8)
        it = items[f"case_{i}"]
        if pr["instance_label"] == 1:
            f1, dsc_tp = ref_instance(gt, seg)
            assert _close(f1, it["f1"]), (i, f1, it["f1"])
            assert _close(dsc_tp, it["dsc_tp"]), (i, dsc_tp, it["dsc_tp"])
        else:
            keys = {int(k) for k in pr if k != "instance_label"}
            cls = ref_classes(gt, official=compat == "official", prompted=keys)
            d, n = ref_case(gt, seg, spacing, cls, nan_mean=True)
            assert _close(d, it["dsc"]), (i, cls, d, it["dsc"])
            assert _close(n, it["nsd"], 1e-6), (i, cls, n, it["nsd"])


@st.composite
def interactive_cases(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    cases = []
    for _ in range(draw(st.integers(1, 2))):
        shape = tuple(int(rng.integers(2, 7)) for _ in range(3))
        gt = _blobs(rng, shape, [0, 1, 2], int(rng.integers(1, 4)))
        steps = [None if rng.random() < 0.15 else _perturb(rng, gt, [0, 1, 2])
                 for _ in range(6)]
        cases.append((gt, steps, draw(SPACINGS)))
    return cases


@AUDIT
@given(cases=interactive_cases(), chunk=st.sampled_from([None, 2]))
def test_interactive_track_matches_reference(tmp_path, cases, chunk):
    truth, sub = _write(Path(tempfile.mkdtemp(dir=tmp_path)), cases, interactive=True)
    ov = ["track=interactive"] + ([f"chunk_size={chunk}"] if chunk else [])
    res = score("medsegfm", truth, sub, overrides=ov, device=DEVICE)
    assert res.status == "ok", res.error
    items = _items(res)
    for i, (gt, steps, spacing) in enumerate(cases):
        cls = ref_classes(gt, official=True)
        dsc, nsd = [], []
        for s in steps:
            s = np.zeros_like(gt) if s is None else s  # 'missing step -> all zeros'
            d, n = ref_case(gt, s, spacing, cls, nan_mean=False)
            dsc.append(d)
            nsd.append(n if d > 0.2 else 0.0)  # 'NSD_k = case NSD only if DSC_k > 0.2'
        it = items[f"case_{i}"]

        def auc(v):
            return 0.5 * v[1] + v[2] + v[3] + v[4] + 0.5 * v[5]

        assert _close(auc(dsc), it["dsc_auc"]), (auc(dsc), it["dsc_auc"])
        assert _close(auc(nsd), it["nsd_auc"], 1e-6), (auc(nsd), it["nsd_auc"])
        assert _close(dsc[5], it["dsc_final"])
        assert _close(nsd[5], it["nsd_final"], 1e-6)
        for k in range(6):  # per-step values (CSV columns DSC_1..6, NSD_1..6)
            assert _close(dsc[k], it[f"dsc_{k + 1}"]) and _close(nsd[k], it[f"nsd_{k + 1}"],
                                                                 1e-6)
        # 'Limit: 90 s × (number of GT classes) for the whole case (all steps)'; the script
        # only warns (time_limit_action: flag)
        total = sum(37.0 * ((i + k) % 3) for k, st_ in enumerate(steps, start=1)
                    if st_ is not None)
        assert bool(it["time_limit_exceeded"]) == (total > 90 * len(cls))


def test_reference_nsd_sanity():
    """The reference itself: perfect -> 1, empty prediction -> 0."""
    g = np.zeros((5, 5, 5), bool)
    g[1:4, 1:3, 2:5] = True
    assert ref_nsd(g, g, (1.0, 2.0, 0.5)) == pytest.approx(1.0)
    assert ref_nsd(g, np.zeros_like(g), (1.0, 1.0, 1.0)) == 0.0


def _text_one(tmp_path, gt, seg, prompt, compat="official"):
    truth, sub = _write(Path(tempfile.mkdtemp(dir=tmp_path)), [(gt, seg, (1.0, 1.0, 1.0))],
                        prompts=[prompt])
    res = score("medsegfm", truth, sub, overrides=["track=text", f"compat={compat}"],
                device=DEVICE)
    assert res.status == "ok", res.error
    return res.items[0]


def test_instance_iou_exactly_half_is_a_match(tmp_path):
    """'Matching threshold 0.5 (IoU ≥ 0.5)': a 2-voxel GT cell half covered is a TP."""
    gt = np.zeros((1, 4, 4), np.int64)
    gt[0, 0, 0:2] = 1
    seg = np.zeros_like(gt)
    seg[0, 0, 0] = 3
    seg[0, 3, 3] = 4  # a second predicted instance so the prediction is not binary
    it = _text_one(tmp_path, gt, seg, {"1": "cell", "instance_label": 1})
    assert ref_instance(gt.astype(np.uint8), seg.astype(np.uint8)) == (pytest.approx(2 / 3),
                                                                       pytest.approx(2 / 3))
    assert it["f1"] == pytest.approx(2 / 3, abs=1e-9)  # TP 1, FP 1, FN 0
    assert it["dsc_tp"] == pytest.approx(2 / 3, abs=1e-9)


def test_binary_prediction_255_wraps_first_component(tmp_path):
    """Binary {0, 255}: 'component id + max(segs) (in uint8: may wrap)' -> id 1 + 255 = 0."""
    gt = np.zeros((1, 3, 7), np.int64)
    gt[0, 0, 0] = 1
    gt[0, 0, 6] = 2
    seg = np.where(gt > 0, 255, 0)
    f1, dsc_tp = ref_instance(gt.astype(np.uint8), seg.astype(np.uint8))
    assert (f1, dsc_tp) == (pytest.approx(2 / 3), 1.0)  # one component lost to the wrap
    it = _text_one(tmp_path, gt, seg, {"1": "cell", "instance_label": 1})
    assert it["f1"] == pytest.approx(f1, abs=1e-9)
    it = _text_one(tmp_path, gt, seg, {"1": "cell", "instance_label": 1}, compat="corrected")
    assert it["f1"] == pytest.approx(1.0, abs=1e-9)


def test_no_background_drops_smallest_label(tmp_path):
    """'if a GT has no background voxel, the smallest foreground label is silently dropped'."""
    gt = np.ones((3, 3, 3), np.int64)
    gt[0] = 2
    seg = np.full_like(gt, 2)  # class 1 wrong, class 2 right
    truth, sub = _write(Path(tempfile.mkdtemp(dir=tmp_path)), [(gt, seg, (1.0, 1.0, 1.0))])
    res = score("medsegfm", truth, sub, device=DEVICE)
    assert res.items[0]["dsc"] == pytest.approx(ref_dsc(gt == 2, seg == 2), abs=1e-12)
    res = score("medsegfm", truth, sub, overrides=["compat=corrected"], device=DEVICE)
    assert res.items[0]["dsc"] == pytest.approx(ref_dsc(gt == 2, seg == 2) / 2, abs=1e-12)
