"""MedSegFM scoring: every official fixture (tests/fixtures/medsegfm), all three tracks."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpueval import api
from gpueval.challenges import medsegfm as M
from gpueval.challenges.medsegfm.options import _Context, _settings
from gpueval.challenges.medsegfm.text import _binary_to_instances
from gpueval.config import load_config
from gpueval.errors import Rejected, TruthError
from gpueval.metrics.matching import match_iou_threshold

FIX = Path(__file__).parent / "fixtures" / "medsegfm"
SCORES = json.loads((FIX / "scores.json").read_text())
TOL = 1e-6


def _cfg(*overrides):
    return load_config("medsegfm", overrides=list(overrides))


def _close(got, expected):
    if expected is None:
        return got is None or not math.isfinite(got)
    return abs(got - expected) <= TOL


def _folders(tmp_path: Path, names, *, prompts_as="json"):
    truth, sub = tmp_path / "truth", tmp_path / "sub"
    truth.mkdir(exist_ok=True)
    sub.mkdir(exist_ok=True)
    for name in names:
        z = np.load(FIX / f"{name}.npz", allow_pickle=False)
        arrays = {"gts": z["gts"], "spacing": z["spacing"]}
        if "text_prompts_json" in z.files:
            if prompts_as == "json":
                arrays["text_prompts_json"] = z["text_prompts_json"]
            else:  # the official pickled dict (object array)
                arrays["text_prompts"] = np.array(json.loads(str(z["text_prompts_json"])))
        np.savez(truth / f"{name}.npz", **arrays)
        if "steps" in z.files:
            (sub / name).mkdir()
            for k, segs in enumerate(z["steps"], start=1):
                np.savez(sub / name / f"step_{k}.npz", segs=segs)
        else:
            np.savez(sub / f"{name}.npz", segs=z["segs"])
    return truth, sub


# --------------------------------------------------------------------------------------------
# Semantic fixtures (per class and per case)


@pytest.fixture(scope="module")
def semantic_result(tmp_path_factory):
    truth, sub = _folders(tmp_path_factory.mktemp("sem"), SCORES["semantic"])
    return M.score(truth, sub, _cfg())


@pytest.mark.parametrize("name", sorted(SCORES["semantic"]))
def test_semantic_fixture_per_class(semantic_result, name):
    exp = SCORES["semantic"][name]
    ext = semantic_result.extra["cases"][name]
    for c, values in exp["per_class"].items():
        if name == "no_background_label" and c == "1":
            assert 1 not in ext["classes"]  # the official quirk drops the smallest label
            continue
        got = ext["per_class"][c]
        for key, expected in values.items():
            assert _close(got[key], expected), (name, c, key, got[key], expected)


@pytest.mark.parametrize("name", sorted(SCORES["semantic"]))
def test_semantic_fixture_case(semantic_result, name):
    exp = SCORES["semantic"][name]
    item = next(it for it in semantic_result.items if it["id"] == name)
    ext = semantic_result.extra["cases"][name]
    assert _close(item["dsc"], exp["case_dsc"])
    assert _close(item["nsd"], exp["case_nsd_ungated"])
    assert _close(ext["nsd_gated_0.2"], exp["case_nsd_gated"])
    assert _close(item["nsd_gated"], exp["case_nsd_gated"])


def test_semantic_aggregates_and_json(semantic_result):
    dscs = [SCORES["semantic"][n]["case_dsc"] for n in SCORES["semantic"]]
    assert semantic_result.score == pytest.approx(np.mean(dscs), abs=TOL)
    assert semantic_result.metrics["dsc"] == pytest.approx(np.mean(dscs), abs=TOL)
    d = json.loads(semantic_result.to_json())
    assert {"dsc", "nsd", "id"} <= set(d["items"][0])
    assert d["runtime"]["voxels"] > 0


def test_gated_semantic_variant(tmp_path):
    truth, sub = _folders(tmp_path, ["tiny_and_low_dice"])
    r = M.score(truth, sub, _cfg("tracks.semantic.nsd_gate=0.2"))
    assert r.items[0]["nsd"] == SCORES["semantic"]["tiny_and_low_dice"]["case_nsd_gated"]


def test_no_background_corrected_keeps_smallest_label(tmp_path):
    truth, sub = _folders(tmp_path, ["no_background_label"])
    r = M.score(truth, sub, _cfg("compat=corrected"))
    per = SCORES["semantic"]["no_background_label"]["per_class"]
    assert _close(r.items[0]["dsc"], (per["1"]["dsc"] + per["2"]["dsc"]) / 2)
    assert _close(r.items[0]["nsd"], (per["1"]["nsd_2mm"] + per["2"]["nsd_2mm"]) / 2)


def test_chunking_does_not_change_scores(tmp_path):
    truth, sub = _folders(tmp_path, ["border_touching", "ct_aniso_3class"])
    a = M.score(truth, sub, _cfg())
    b = M.score(truth, sub, _cfg("chunk_size=13"))
    for x, y in zip(a.items, b.items, strict=True):
        assert x["dsc"] == y["dsc"]
        assert x["nsd"] == pytest.approx(y["nsd"], abs=1e-12)


def test_permuting_labels_changes_nothing(tmp_path):
    truth, sub = _folders(tmp_path, ["ct_aniso_3class"])
    z = np.load(FIX / "ct_aniso_3class.npz")
    perm = np.array([0, 7, 3, 9] + list(range(4, 256)), np.uint8)  # 1→7, 2→3, 3→9
    np.savez(truth / "ct_aniso_3class.npz", gts=perm[z["gts"]], spacing=z["spacing"])
    np.savez(sub / "ct_aniso_3class.npz", segs=perm[z["segs"]])
    r = M.score(truth, sub, _cfg())
    exp = SCORES["semantic"]["ct_aniso_3class"]
    assert _close(r.items[0]["dsc"], exp["case_dsc"])
    assert _close(r.items[0]["nsd"], exp["case_nsd_ungated"])


def test_missing_prediction_scores_zero(tmp_path):
    truth, sub = _folders(tmp_path, ["perfect", "ct_aniso_3class"])
    (sub / "perfect.npz").unlink()
    r = M.score(truth, sub, _cfg())
    item = next(it for it in r.items if it["id"] == "perfect")
    assert item["dsc"] == 0.0 and item["nsd"] == 0.0 and item["missing"]
    assert r.extra["missing_cases"] == ["perfect"]


# --------------------------------------------------------------------------------------------
# Text track


@pytest.mark.parametrize(("prompts_as", "compat"),
                         [("json", "official"), ("pickle", "official"), ("json", "corrected")])
def test_text_fixtures(tmp_path, prompts_as, compat):
    names = [n for n in SCORES["text"] if compat == "official" or "over255" not in n]
    truth, sub = _folders(tmp_path, names, prompts_as=prompts_as)
    r = M.score(truth, sub, _cfg("track=text", f"compat={compat}"))
    for item in r.items:
        exp = SCORES["text"][item["id"]]["official"]
        for key in ("dsc", "nsd", "f1", "dsc_tp"):
            assert _close(item[key], exp[key]), (item["id"], key, item[key], exp[key])
        if "tp" in exp:
            ext = r.extra["cases"][item["id"]]
            assert (ext["tp"], ext["fp"], ext["fn"]) == (exp["tp"], exp["fp"], exp["fn"])
    rows = list(csv.DictReader(io.StringIO(M.write_official_csv(r))))
    assert list(rows[0]) == ["CaseName", "RunningTime", "DSC", "NSD", "F1", "DSC_TP"]
    for row in rows:
        exp = SCORES["text"][row["CaseName"]]["official"]["csv"]
        for col in ("DSC", "NSD", "F1", "DSC_TP"):
            if exp[col] is None:
                assert row[col] == ""
            else:
                assert float(row[col]) == exp[col]


def test_text_over255_corrected_keeps_instances_apart(tmp_path):
    truth, sub = _folders(tmp_path, ["text_instance_over255"])
    z = np.load(FIX / "text_instance_over255.npz")
    n_gt = len(np.unique(z["gts"])) - 1
    n_pred = len(np.unique(z["segs"])) - 1
    assert (n_gt, n_pred) == (864, 844)  # the fixture's note: 864 cubes, 20 deleted
    r = M.score(truth, sub, _cfg("track=text", "compat=corrected"))
    ext = r.extra["cases"]["text_instance_over255"]
    assert (ext["tp"], ext["fp"], ext["fn"]) == (844, 0, 20)
    assert r.items[0]["f1"] == pytest.approx(2 * 844 / (864 + 844), abs=1e-12)


def test_text_pickled_prompts_refuse_code(tmp_path):
    truth, sub = _folders(tmp_path, ["text_instance_labels"])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    z = np.load(FIX / "text_instance_labels.npz")
    raw = io.BytesIO()
    np.lib.format.write_array(raw, np.array(Evil(), dtype=object), allow_pickle=True)
    path = truth / "text_instance_labels.npz"
    np.savez(path, gts=z["gts"], spacing=z["spacing"])
    import zipfile

    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("text_prompts.npy", raw.getvalue())
    with pytest.raises(TruthError, match="not allowed"):
        M.score(truth, sub, _cfg("track=text"))


# --------------------------------------------------------------------------------------------
# Interactive track


@pytest.mark.parametrize("name", sorted(SCORES["interactive"]))
def test_interactive_fixtures(tmp_path, name):
    truth, sub = _folders(tmp_path, [name])
    r = M.score(truth, sub, _cfg("variant=interactive"))
    assert r.metric_version.endswith("interactive")
    exp = SCORES["interactive"][name]
    item = r.items[0]
    for step in exp["steps"]:
        k = step["step"]
        assert _close(item[f"dsc_{k}"], step["dsc"])
        assert _close(item[f"nsd_{k}"], step["nsd"])
        got = r.extra["cases"][name]["steps"][str(k)]["per_class"]
        for c, values in step["per_class"].items():
            for key, expected in values.items():
                assert _close(got[c][key], expected), (k, c, key)
    for key, expected in exp["summary"].items():
        assert _close(item[key], expected), key
    assert item["num_class"] == 2 and item["runtime_upperbound"] == 180


def test_interactive_missing_steps_and_time_limit(tmp_path):
    name = "interactive_improving"
    truth, sub = _folders(tmp_path, [name])
    (sub / name / "step_1.npz").unlink()  # no box: step 1 counts as an empty prediction
    z = np.load(FIX / f"{name}.npz")
    np.savez(sub / name / "step_2.npz", segs=z["steps"][1], running_time=np.float64(200.0))
    r = M.score(truth, sub, _cfg("track=interactive"))
    item = r.items[0]
    steps = SCORES["interactive"][name]["steps"]
    assert item["dsc_1"] == 0.0 and item["nsd_1"] == 0.0
    assert _close(item["dsc_auc"], SCORES["interactive"][name]["summary"]["dsc_auc"])
    assert item["time_limit_exceeded"] and item["total_running_time"] == 200.0
    assert r.metrics["n_time_limit_exceeded"] == 1
    assert _close(item["dsc_2"], steps[1]["dsc"])  # flag only (what the script does)
    zeroed = M.score(truth, sub, _cfg("track=interactive",
                                      "interactive.time_limit_action=zero")).items[0]
    assert zeroed["dsc_auc"] == 0.0 and zeroed["nsd_final"] == 0.0
    rows = list(csv.reader(io.StringIO(M.write_official_csv(r))))
    assert rows[0][:3] == ["CaseName", "TotalRunningTime", "RunningTime_1"]
    assert rows[0][-2:] == ["num_class", "runtime_upperbound"] and len(rows[0]) == 26


def test_trapezoid_auc_by_hand():
    assert M.trapezoid_auc([0.2, 0.4, 0.6, 0.8, 1.0]) == pytest.approx(
        0.1 + 0.4 + 0.6 + 0.8 + 0.5)


# --------------------------------------------------------------------------------------------
# Validation and bad input


def test_validate_and_reject_bad_predictions(tmp_path):
    truth, sub = _folders(tmp_path, ["perfect", "tiny_and_low_dice"])
    notes = M.validate(sub, _cfg(), truth=truth)
    assert any("2 case(s) checked" in n for n in notes)
    np.savez(sub / "perfect.npz", segs=np.zeros((3, 3, 3), np.uint8))
    with pytest.raises(Rejected, match="shape"):
        M.validate(sub, _cfg(), truth=truth)
    r = api.score("medsegfm", truth, sub, device="cpu")
    assert r.status == "rejected" and "shape" in r.error
    z = np.load(FIX / "perfect.npz")
    np.savez(sub / "perfect.npz", segs=z["segs"].astype(np.float32))  # whole numbers: fine
    r = M.score(truth, sub, _cfg())
    assert r.items[0]["dsc"] == 1.0 and r.items[0]["nsd"] == 1.0
    np.savez(sub / "perfect.npz", segs=np.full((40, 96, 96), 0.5, np.float32))
    with pytest.raises(Rejected, match="integer"):
        M.score(truth, sub, _cfg())
    np.savez(sub / "perfect.npz", segs=np.array([{"a": 1}], dtype=object))
    with pytest.raises(Rejected):
        M.validate(sub, _cfg(), truth=truth)
    np.savez(sub / "perfect.npz", other=np.zeros(3))
    with pytest.raises(Rejected, match="segs"):
        M.validate(sub, _cfg())


def test_bad_truth_and_config(tmp_path):
    truth, sub = _folders(tmp_path, ["perfect"])
    with pytest.raises(TruthError):
        M.score(tmp_path / "nowhere", sub, _cfg())
    with pytest.raises(TruthError):
        M.score(truth, sub, _cfg("track=nonsense"))
    z = np.load(FIX / "perfect.npz")
    np.savez(truth / "perfect.npz", gts=z["gts"], spacing=np.array([1.0, -1.0, 1.0]))
    with pytest.raises(TruthError, match="spacing"):
        M.score(truth, sub, _cfg())


# --------------------------------------------------------------------------------------------
# Zarr volumes (read lazily)


def _write_zarr(path: Path, name: str, data: np.ndarray, attrs: dict):
    import zarr

    group = zarr.open_group(str(path), mode="w")
    arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=(16, 32, 32))
    arr[...] = data
    arr.attrs.update(attrs)


def test_zarr_truth_and_submission_equal_npz(tmp_path):
    name = "ct_aniso_3class"
    truth, sub = _folders(tmp_path, [name])
    z = np.load(FIX / f"{name}.npz")
    ztruth, zsub = tmp_path / "ztruth", tmp_path / "zsub"
    ztruth.mkdir()
    zsub.mkdir()
    _write_zarr(ztruth / f"{name}.zarr", "gts", z["gts"], {"spacing": z["spacing"].tolist()})
    _write_zarr(zsub / f"{name}.zarr", "segs", z["segs"], {})
    assert M.validate(zsub, _cfg(), truth=ztruth)
    r = M.score(ztruth, zsub, _cfg())
    exp = SCORES["semantic"][name]
    assert _close(r.items[0]["dsc"], exp["case_dsc"])
    assert _close(r.items[0]["nsd"], exp["case_nsd_ungated"])
    _write_zarr(zsub / f"{name}.zarr", "segs", z["segs"][:-1], {})
    with pytest.raises(Rejected, match="shape"):
        M.score(ztruth, zsub, _cfg())


@given(seed=st.integers(0, 2**16), n_gt=st.integers(1, 7), n_pred=st.integers(1, 7))
def test_shared_matching_equals_dense_official_assignment(seed, n_gt, n_pred):
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(seed)
    m = rng.choice([0.0, 0.0, 0.2, 0.5, 0.5, 0.7, 0.9], size=(n_gt, n_pred))
    cost = -(m >= 0.5).astype(float) - m / (2 * min(n_gt, n_pred))
    r, c = linear_sum_assignment(cost)
    gi, pj = np.nonzero(m)
    rows, cols = match_iou_threshold(gi, pj, m[gi, pj], n_gt, n_pred, threshold=0.5)
    ok = m[r, c] >= 0.5
    assert len(rows) == int(ok.sum())  # same number of true positives
    assert (m[rows, cols] >= 0.5).all()
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)


def test_wrong_layout_for_the_track_is_rejected(tmp_path):
    truth, sub = _folders(tmp_path, ["perfect"])
    with pytest.raises(Rejected, match="step_"):
        M.score(truth, sub, _cfg("track=interactive"))


@given(st.integers(0, 2**31 - 1), st.integers(2, 9), st.sampled_from([False, True]))
def test_binary_instance_split_is_chunk_independent(seed, chunk, wrap):
    """A two-valued text prediction is split into cc3d components chunk by chunk: any
    chunking gives the whole-volume result (ids included)."""
    import cc3d

    rng = np.random.default_rng(seed)
    segs = np.where(rng.random((7, 9, 8)) < 0.35, 3, 0).astype(np.int64)
    settings = _settings(_cfg("track=text", f"chunk_size={chunk}"))
    ctx = _Context(settings, "cpu", None, False)
    got = np.asarray(_binary_to_instances(ctx, segs, 3, 6, wrap=wrap).compute())
    cc = cc3d.connected_components(segs, connectivity=6).astype(np.int64)
    want = np.where(cc > 0, cc + 3, segs)
    np.testing.assert_array_equal(got, want.astype(np.uint8) if wrap else want)
