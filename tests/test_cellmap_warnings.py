"""CellMap: no silently wrong result (issue #21 items 1 and 8, issue #24 part 3).

Every layout the scorer reads differently than the submitter likely meant gives a warning
naming the crop/label and the fix, in ``score``'s ``Result.warnings`` and in ``validate``'s
``.warnings``; the score itself stays what the official scorer gives. Absurd geometry is
rejected with one line before any graph is built. The official manifest is the default.

Small hand-built stores: truth ``crop1`` (no manifest row: its own attributes give the target
grid) at 8 nm, 8³ voxels.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from cellmap_cases import V8, counts, put
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval.api import score, validate
from gpueval.challenges import cellmap
from gpueval.cli import main as cli_main
from gpueval.errors import Rejected, TruthError

T0 = (0.0, 0.0, 0.0)


def blob_gt() -> np.ndarray:
    """Two separate instances (ids 1 and 2) in an 8³ crop."""
    g = np.zeros((8, 8, 8), np.uint16)
    g[1:3, 1:3, 1:3] = 1
    g[5:7, 5:7, 5:7] = 2
    return g


def semantic_gt() -> np.ndarray:
    g = np.zeros((8, 8, 8), np.uint8)
    g[2:6, 1:7, 3:5] = 1
    return g


def store(tmp: Path, sub_labels: dict, truth_tr=T0) -> tuple[Path, Path]:
    """Truth crop1 with ``mito`` (instance) and ``er`` (semantic); the submission holds
    ``sub_labels`` (name -> array, or name -> (array, attrs dict))."""
    truth, sub = tmp / "truth", tmp / "sub"
    put(truth, "crop1", "mito", blob_gt(), tr=truth_tr, chunks=(4, 4, 4))
    put(truth, "crop1", "er", semantic_gt(), tr=truth_tr, chunks=(4, 4, 4))
    for name, val in sub_labels.items():
        data, attrs = val if isinstance(val, tuple) else (val, {"vs": V8, "tr": truth_tr})
        put(sub, "crop1", name, data, vs=attrs.get("vs"), tr=attrs.get("tr"), chunks=(4, 4, 4))
    return truth, sub


def scored(truth, sub, *overrides):
    r = score("cellmap", truth, sub, device="cpu", overrides=list(overrides))
    assert r.status == "ok", r.error
    return r, {i["id"]: i for i in r.items}


def warned(warnings, *parts) -> str:
    """The one warning holding every part (fails listing all warnings otherwise)."""
    hits = [w for w in warnings if all(p in w for p in parts)]
    assert len(hits) == 1, (parts, warnings)
    return hits[0]


def both(truth, sub, *parts, overrides=()):
    """The warning is in score's and validate's lists, and ``validate --strict`` refuses the
    submission (exit 3); returns score's items."""
    r, items = scored(truth, sub, *overrides)
    warned(r.warnings, *parts)
    v = validate("cellmap", sub, truth=truth, overrides=list(overrides))
    warned(v.warnings, *parts)
    sets = [a for o in overrides for a in ("--set", o)]
    argv = ["validate", "cellmap", "--submission", str(sub), "--truth", str(truth), *sets]
    assert cli_main(argv) == 0  # valid without --strict
    assert cli_main([*argv, "--strict"]) == 3
    return r, items


# ------------------------------------------------------------------------- a clean submission
def test_clean_submission_has_no_warning(tmp_path):
    truth, sub = store(tmp_path, {"mito": blob_gt(), "er": semantic_gt()})
    r, items = scored(truth, sub)
    assert r.warnings == [] and r.score == 1.0
    assert validate("cellmap", sub, truth=truth).warnings == []


# ------------------------------------------------------------- labels not read (compat=official)
def _group(sub: Path, label: str, data: np.ndarray, ngff: bool) -> None:
    g = zarr.open_group(str(sub), mode="a", zarr_format=2).require_group("crop1")
    grp = g.require_group(label)
    a = grp.create_array("s0", shape=data.shape, dtype=data.dtype, chunks=(4, 4, 4))
    a[:] = data
    if ngff:
        grp.attrs["multiscales"] = [{"version": "0.4", "axes": [
            {"name": n, "type": "space"} for n in "zyx"], "datasets": [
            {"path": "s0", "coordinateTransformations": [
                {"type": "scale", "scale": list(V8)},
                {"type": "translation", "translation": list(T0)}]}]}]
    else:
        a.attrs["voxel_size"] = list(V8)
        a.attrs["translation"] = list(T0)


@pytest.mark.parametrize("ngff", [False, True])
def test_group_label_warns_and_stays_missing(tmp_path, ngff):
    truth, sub = store(tmp_path, {"er": semantic_gt()})
    _group(sub, "mito", blob_gt(), ngff)
    _, items = both(truth, sub, "crop1/mito", "OME-NGFF" if ngff else "multiscale group",
                    "scores as missing", "--set compat=corrected would read its level 's0'")
    # official: the pinned code lists arrays only, so the group is missing (2 GT ids -> fn 2)
    assert items["crop1/mito"]["status"] == "missing" and counts(items["crop1/mito"]) == (0, 0, 2)
    r, items = scored(truth, sub, "compat=corrected")
    assert not any("group" in w for w in r.warnings)
    assert counts(items["crop1/mito"]) == (2, 0, 0)


def test_zarr_v3_label_warns_and_stays_missing(tmp_path):
    truth, sub = store(tmp_path, {"mito": blob_gt()})
    put(tmp_path / "v3", "crop1", "er", semantic_gt(), fmt=3)
    shutil.move(str(tmp_path / "v3" / "crop1" / "er"), str(sub / "crop1" / "er"))
    _, items = both(truth, sub, "crop1/er", "zarr v3", "scores as missing",
                    "compat=corrected")
    assert items["crop1/er"]["status"] == "missing" and items["crop1/er"]["fn"] == 8 ** 3
    r, items = scored(truth, sub, "compat=corrected")
    assert not any("v3" in w for w in r.warnings) and items["crop1/er"]["status"] == "scored"


def test_case_only_name_mismatch(tmp_path):
    truth, sub = store(tmp_path, {"Mito": blob_gt(), "er": semantic_gt()})
    _, items = both(truth, sub, "crop1/mito", "crop1/Mito", "case-sensitive",
                    "rename Mito to mito")
    assert items["crop1/mito"]["status"] == "missing"


def test_unknown_label_and_crop_are_named_and_ignored(tmp_path):
    truth, sub = store(tmp_path, {"mito": blob_gt(), "er": semantic_gt()})
    base, base_items = scored(truth, sub)
    put(sub, "crop1", "mitochondria", blob_gt())
    put(sub, "crop77", "mito", blob_gt())
    r, items = both(truth, sub, "crop1/mitochondria", "not a label", "ignored")
    warned(r.warnings, "crop77", "not a crop of the ground truth")
    assert items == base_items and r.score == base.score  # ignored, as officially


def test_missing_crop_and_label(tmp_path):
    truth, sub = store(tmp_path, {"mito": blob_gt()})
    put(truth, "crop2", "er", semantic_gt())
    r, items = both(truth, sub, "crop1/er", "not submitted", "scores as missing")
    warned(r.warnings, "crop2", "not submitted", "(er)")
    assert items["crop2/er"]["status"] == items["crop1/er"]["status"] == "missing"


# ------------------------------------------------------------------------------ geometry
def test_missing_translation_scores_as_origin_zero(tmp_path):
    # truth origin (80, 160, 240) nm = (10, 20, 30) voxels: a prediction at 0 misses the crop
    tr = (80.0, 160.0, 240.0)
    truth, sub = store(tmp_path, {"mito": (blob_gt(), {"vs": V8, "tr": None})}, truth_tr=tr)
    r, items = both(truth, sub, "crop1/mito", "no translation attribute",
                    "add translation=[80, 160, 240]", "does not overlap")
    # the official reader takes an absent translation as 0: same score as an explicit 0
    explicit = tmp_path / "explicit"
    truth2, sub2 = store(explicit, {"mito": (blob_gt(), {"vs": V8, "tr": T0})}, truth_tr=tr)
    assert items == scored(truth2, sub2)[1]
    assert counts(items["crop1/mito"]) == (0, 0, 2)


def test_missing_voxel_size(tmp_path):
    # same shape: read as on the crop's grid, nothing to say
    truth, sub = store(tmp_path, {"er": (semantic_gt(), {"vs": None, "tr": T0})})
    r, items = scored(truth, sub)
    assert not any("voxel_size" in w for w in r.warnings)
    assert counts(items["crop1/er"]) == (int(semantic_gt().sum()), 0, 0)
    # another shape: centre padded/cropped (official), said
    truth, sub = store(tmp_path / "b", {"er": (np.ones((10, 8, 8), np.uint8),
                                               {"vs": None, "tr": T0})})
    _, items = both(truth, sub, "crop1/er", "no voxel_size attribute", "[10, 8, 8]",
                    "add voxel_size=[8, 8, 8]")
    assert items["crop1/er"]["fn"] == 0  # the centre 8³ of all-ones covers the truth


def test_voxel_size_differs(tmp_path):
    fine = np.repeat(np.repeat(np.repeat(semantic_gt(), 2, 0), 2, 1), 2, 2)  # 16³ at 4 nm
    truth, sub = store(tmp_path, {"er": (fine, {"vs": (4.0, 4.0, 4.0), "tr": T0})})
    _, items = both(truth, sub, "crop1/er", "voxel_size [4, 4, 4] nm differs",
                    "write it at [8, 8, 8] nm")
    assert items["crop1/er"]["status"] == "scored"


def test_translation_in_reversed_axis_order(tmp_path):
    tr = (8.0, 16.0, 24.0)
    pred = semantic_gt()
    truth, sub = store(tmp_path, {"er": (pred, {"vs": V8, "tr": tr[::-1]})}, truth_tr=tr)
    _, items = both(truth, sub, "crop1/er", "only reversed", "z, y, x order",
                    "[24, 16, 8]")
    # read as z, y, x the origin is (+16, 0, -16) nm = (+2, 0, -2) voxels off (hand shift)
    shifted = np.zeros_like(pred)
    shifted[2:, :, :6] = pred[:6, :, 2:]
    g = semantic_gt() > 0
    want = (int((shifted & g).sum()), int((shifted & ~g).sum()), int((~shifted.astype(bool)
                                                                      & g).sum()))
    assert counts(items["crop1/er"]) == want


def test_voxel_size_in_reversed_axis_order(tmp_path):
    truth, sub = tmp_path / "t", tmp_path / "s"
    put(truth, "crop1", "er", semantic_gt(), vs=(8.0, 8.0, 4.0))
    put(sub, "crop1", "er", semantic_gt(), vs=(4.0, 8.0, 8.0))
    _, items = both(truth, sub, "crop1/er", "voxel_size [4, 8, 8] matches", "only reversed")
    assert items["crop1/er"]["status"] == "scored"


def test_offset_of_a_larger_prediction_is_not_a_warning(tmp_path):
    # a 10³ prediction starting one voxel before the crop covers it: cropping is meant
    big = np.zeros((10, 10, 10), np.uint8)
    big[1:9, 1:9, 1:9] = semantic_gt()
    truth, sub = store(tmp_path, {"er": (big, {"vs": V8, "tr": (0.0, 0.0, 0.0)}),
                                  "mito": blob_gt()}, truth_tr=(8.0, 8.0, 8.0))
    r, items = scored(truth, sub)
    assert r.warnings == [] and counts(items["crop1/er"]) == (int(semantic_gt().sum()), 0, 0)


# -------------------------------------------------------------------------- class type
def test_semantic_label_holding_instance_ids(tmp_path):
    ids = blob_gt() + (semantic_gt() * 3).astype(np.uint16)  # values 0..5
    truth, sub = store(tmp_path, {"er": ids})
    _, items = both(truth, sub, "crop1/er", "distinct values", "instance ids?")
    # semantic scoring takes > 0: the same counts as the binary mask
    _, binary = scored(*store(tmp_path / "b", {"er": (ids > 0).astype(np.uint8)}))
    assert items["crop1/er"] == binary["crop1/er"]


def test_semantic_probabilities_on_the_grid(tmp_path):
    prob = semantic_gt().astype(np.float32) * 0.3
    prob[0, 0, 0] = 0.9
    truth, sub = store(tmp_path, {"er": prob})
    _, items = both(truth, sub, "crop1/er", "probabilities?", "every value > 0")
    # official quirk: no threshold on the target grid, every value > 0 is foreground
    g = semantic_gt() > 0
    assert counts(items["crop1/er"]) == (int(g.sum()), 1, 0)


def test_instance_label_holding_probabilities(tmp_path):
    prob = (blob_gt() > 0).astype(np.float32) * 0.75
    truth, sub = store(tmp_path, {"mito": prob})
    _, items = both(truth, sub, "crop1/mito", "fractional values such as 0.75")
    assert items["crop1/mito"]["status"] == "scored"


def test_instance_label_holding_a_mask(tmp_path):
    truth, sub = store(tmp_path, {"mito": (blob_gt() > 0).astype(np.uint8)})
    _, items = both(truth, sub, "crop1/mito", "single value 1", "2+ ids")
    # the two blobs are apart: connected components recover both instances
    assert counts(items["crop1/mito"]) == (2, 0, 0)


# ----------------------------------------------------------------- geometry sanity (#24)
@pytest.mark.parametrize("attrs, key", [
    ({"vs": (0.01, 0.01, 0.01)}, "min_voxel_size"),
    ({"vs": (1e-300, 8.0, 8.0)}, "min_voxel_size"),
    ({"vs": (0.0, 8.0, 8.0)}, "positive"),       # refused by the array reader already
    ({"vs": (-8.0, 8.0, 8.0)}, "positive"),
    ({"vs": (1e12, 8.0, 8.0)}, "max_voxel_size"),
    ({"vs": (8000.0, 8.0, 8.0)}, "max_voxel_size_ratio"),  # 1000x the crop's 8 nm
    ({"vs": (8.0, 8.0)}, "entries"),
    ({"vs": V8, "tr": (1e15, 0.0, 0.0)}, "max_abs_translation"),
    ({"vs": V8, "tr": (0.0, 0.0)}, "entries"),
])
def test_absurd_geometry_rejected_quickly(tmp_path, attrs, key):
    truth, sub = store(tmp_path, {"mito": (blob_gt(), {"tr": T0, **attrs})})
    t = time.monotonic()
    r = score("cellmap", truth, sub, device="cpu")
    assert r.status == "rejected" and "crop1/mito" in r.error and key in r.error, r.error
    assert "\n" not in r.error and time.monotonic() - t < 30
    with pytest.raises(Rejected, match=key):
        validate("cellmap", sub, truth=truth)


def test_nan_voxel_size_rejected(tmp_path):
    truth, sub = store(tmp_path, {"mito": blob_gt()})
    meta = sub / "crop1" / "mito" / ".zattrs"
    meta.write_text(json.dumps({"voxel_size": [float("nan"), 8.0, 8.0], "translation": [0] * 3}))
    r = score("cellmap", truth, sub, device="cpu")
    assert r.status == "rejected" and "crop1/mito" in r.error and "finite" in r.error


def test_alignment_graph_bound(tmp_path):
    """The alignment's graph is bounded by the engine's ``limits.max_graph_tasks`` (one rule for
    every graph), not by an estimate of CellMap's own: a bound of 3 tasks cannot hold even
    this 8³ crop's read and paste; the default lets it through."""
    small = np.zeros((4, 4, 4), np.uint8)
    truth, sub = store(tmp_path, {"mito": blob_gt()})
    put(sub, "crop1", "er", small, chunks=(4, 4, 4))
    r = score("cellmap", truth, sub, device="cpu", overrides=["limits.max_graph_tasks=3"])
    assert r.status == "rejected" and "max_graph_tasks" in r.error and "\n" not in r.error
    assert scored(truth, sub)[0].status == "ok"


def test_absurd_truth_geometry_is_a_truth_error(tmp_path):
    truth, sub = store(tmp_path, {"mito": blob_gt()})
    put(truth, "crop3", "er", semantic_gt(), vs=(1e-300, 8.0, 8.0))
    with pytest.raises(TruthError, match="truth crop3/er"):
        score("cellmap", truth, sub, device="cpu")


def test_geometry_config_is_checked():
    """CellMap's geometry bounds are ``limits:`` keys (io.align.check_geometry's): a bad
    value is a config error, and the former ``geometry:`` section is an unknown key."""
    from gpueval.config import load_config
    from gpueval.errors import UsageError

    with pytest.raises(TruthError, match="limits.max_voxel_size_ratio"):
        cellmap.Options.from_config({"limits": {"max_voxel_size_ratio": 0}})
    with pytest.raises(TruthError, match="limits.min_voxel_size"):
        cellmap.Options.from_config({"limits": {"min_voxel_size": "tiny"}})
    with pytest.raises(UsageError, match="geometry.max_align_blocks"):
        load_config("cellmap", overrides=["geometry.max_align_blocks=4"])
    lim = cellmap.Options.from_config(load_config("cellmap")).geometry
    # CellMap's shipped bounds (configs/cellmap.yaml), stricter than the generic defaults
    assert (lim.min_voxel_size, lim.max_voxel_size, lim.max_abs_translation,
            lim.max_voxel_size_ratio) == (0.1, 1e5, 1e9, 256)
    lim = cellmap.Options.from_config(load_config(
        "cellmap", overrides=["limits.min_voxel_size=0.01"])).geometry
    assert lim.min_voxel_size == 0.01


# ------------------------------------------------------------------- the official manifest
def test_default_manifest_is_the_official_one():
    opts = cellmap.Options.from_config({})
    rows = cellmap.read_manifest(opts.manifest)
    # shared/specs/cellmap.md §2: 413 rows, 16 crops, 48 labels; largest crop 1000³
    assert len(rows) == 413
    assert len({c for c, _ in rows}) == 16 and len({lab for _, lab in rows}) == 48
    assert max(math.prod(g.shape) for g in rows.values()) == 1000 ** 3
    licence = opts.manifest.with_name("cellmap_test_crops.LICENSE").read_text()
    assert "BSD 3-Clause" in licence and "CellMap" in licence
    assert not opts.restrict_to_manifest


def test_total_evals_counts_the_manifest(tmp_path):
    """The e2e fixture's official run used the official manifest plus its 8 synthetic rows:
    total_evals 421 = 413 + 8; with the shipped manifest alone it is 413."""
    from test_cellmap import E2E, _check_official, build_e2e

    truth, sub = build_e2e(tmp_path)
    r = score("cellmap", truth, sub, device="cpu")
    assert r.extra["public_scores"]["total_evals"] == 413
    rows = [(t["id"], t["dataset"], t["class_label"],
             cellmap.Grid(tuple(t["voxel_size"]), tuple(t["translation"]), tuple(t["shape"])))
            for t in E2E["test_crops"]]
    man = tmp_path / "m.csv"
    cellmap.write_manifest(man, rows)
    shipped = cellmap.Options.from_config({}).manifest.read_text()
    man.write_text(shipped + "".join(man.read_text().splitlines(True)[1:]))
    r = score("cellmap", truth, sub, device="cpu", overrides=[f"manifest={man}"])
    _check_official(r)
    assert r.extra["public_scores"]["total_evals"] == E2E["official_public_json"]["total_evals"]


def test_manifest_row_wins_over_truth_attributes(tmp_path):
    """crop982/perox_mem: manifest 16 nm, origin (6, 6, 6) nm, 140×400×400. The truth's
    attributes claim 8 nm at 0: the manifest is used (as officially), with a warning, so a
    prediction written on the manifest's grid matches voxel for voxel."""
    shape = (140, 400, 400)
    truth, sub = tmp_path / "t", tmp_path / "s"
    for root, vs, tr in ((truth, V8, T0), (sub, (16.0,) * 3, (6.0,) * 3)):
        g = zarr.open_group(str(root), mode="a", zarr_format=2).require_group("crop982")
        a = g.create_array("perox_mem", shape=shape, dtype=np.uint8, chunks=(70, 100, 100))
        a[70, 200, 300] = 1  # one stored chunk; the rest is never written
        a.attrs.update({"voxel_size": list(vs), "translation": list(tr)})
    r, items = scored(truth, sub)
    warned(r.warnings, "truth crop982/perox_mem", "manifest's geometry is used")
    assert counts(items["crop982/perox_mem"]) == (1, 0, 0)
    assert not any(w.startswith("crop982/perox_mem") for w in r.warnings)


def test_other_data_reusing_an_official_crop_id_falls_back(tmp_path):
    truth, sub = tmp_path / "t", tmp_path / "s"
    put(truth, "crop982", "mito", blob_gt())  # 8³, not the manifest's 140×400×400
    put(sub, "crop982", "mito", blob_gt())
    r, items = scored(truth, sub)
    warned(r.warnings, "truth crop982/mito", "differs from the shipped official manifest",
           "--set manifest=PATH")
    assert counts(items["crop982/mito"]) == (2, 0, 0)


def test_absurd_group_level_rejected_in_corrected_mode(tmp_path):
    truth, sub = store(tmp_path, {"er": semantic_gt()})
    _group(sub, "mito", blob_gt(), ngff=False)
    (sub / "crop1" / "mito" / "s0" / ".zattrs").write_text(
        json.dumps({"voxel_size": [1e-300, 8.0, 8.0], "translation": [0.0] * 3}))
    r = score("cellmap", truth, sub, device="cpu", overrides=["compat=corrected"])
    assert r.status == "rejected" and "crop1/mito" in r.error and "min_voxel_size" in r.error
    with pytest.raises(Rejected, match="min_voxel_size"):
        validate("cellmap", sub, truth=truth, overrides=["compat=corrected"])
    # official: the group is not read at all, so it is missing (with its warning), not rejected
    warned(scored(truth, sub)[0].warnings, "crop1/mito", "multiscale group")


def test_truth_mask_scored_as_a_label_is_explained(tmp_path):
    truth, sub = store(tmp_path, {"mito": blob_gt(), "er": semantic_gt()})
    put(truth, "crop1", "er_mask", np.ones((8, 8, 8), np.uint8))
    _, items = both(truth, sub, "crop1/er_mask", "the truth's mask for er",
                    "--set compat=corrected")
    assert items["crop1/er_mask"]["fn"] == 8 ** 3  # the official quirk, kept
    r, items = scored(truth, sub, "compat=corrected")
    assert r.warnings == [] and "crop1/er_mask" not in items


def test_zip_submission_names_case_mismatch_and_unknown_label(tmp_path):
    import zipfile

    truth, sub = store(tmp_path, {"Mito": blob_gt(), "er": semantic_gt(),
                                  "golgi": semantic_gt()})
    zpath = tmp_path / "upload.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        for f in sub.rglob("*"):
            if f.is_file():
                z.write(f, f.relative_to(sub).as_posix())
    _, items = both(truth, zpath, "crop1/mito", "rename Mito to mito")
    warned(validate("cellmap", zpath, truth=truth).warnings, "crop1/golgi", "not a label")
    assert items["crop1/mito"]["status"] == "missing"


def test_tiny_resampled_array_on_a_large_crop_scores_fast(tmp_path):
    """Issue #24: a 20³ label at 0.1 nm (in range, 80 times finer than the crop) on a 500³
    crop at 8 nm rescales to 1³ voxel; pasting it once took one Dask block per voxel
    (1.25·10⁸). The paste now follows the crop's chunks, so it is scored, quickly: the one
    foreground voxel lands at the crop's origin, where the truth is empty (a false positive
    for a semantic label, no true positive). At 0.01 nm it is refused (under
    limits.min_voxel_size and 800 times finer). Never-written chunks keep the stores tiny."""
    truth, sub = tmp_path / "t", tmp_path / "s"
    g = zarr.open_group(str(truth), mode="a", zarr_format=2).require_group("crop1")
    a = g.create_array("er", shape=(500, 500, 500), dtype=np.uint8, chunks=(100, 100, 100))
    a.attrs.update({"voxel_size": list(V8), "translation": list(T0)})
    put(sub, "crop1", "er", np.ones((20, 20, 20), np.uint8), vs=(0.1, 0.1, 0.1),
        chunks=(20, 20, 20))
    t = time.monotonic()
    r = score("cellmap", truth, sub, device="cpu")
    assert r.status == "ok", r.error
    assert time.monotonic() - t < 20
    shutil.rmtree(sub)
    put(sub, "crop1", "er", np.ones((20, 20, 20), np.uint8), vs=(0.01, 0.01, 0.01),
        chunks=(20, 20, 20))
    r = score("cellmap", truth, sub, device="cpu")
    assert r.status == "rejected" and "crop1/er" in r.error and "min_voxel_size" in r.error


def _cellmap_limits():
    from gpueval.config import load_config

    return cellmap.Options.from_config(load_config("cellmap")).geometry


@settings(max_examples=60, deadline=None)
@given(vs=st.floats(0.1, 1e5), ratio=st.floats(1 / 255, 255),
       shape=st.tuples(*[st.integers(1, 300)] * 3))
def test_check_geometry_accepts_every_sane_voxel_size(vs, ratio, shape):
    """In-range voxel sizes within the ratio bound always pass, whatever the shapes (the graph
    size is no longer estimated here); below the minimum always fails, naming the key, as a
    TruthError for a truth attribute."""
    target = cellmap.Grid((vs,) * 3, (0.0,) * 3, shape)
    limits = _cellmap_limits()
    src = vs * ratio
    if 0.1 <= src <= 1e5:
        cellmap.check_geometry((src,) * 3, (0.0,) * 3, shape, shape, target, limits, "x")
    with pytest.raises(Rejected, match="x: voxel_size.*min_voxel_size.*in nm"):
        cellmap.check_geometry((0.099,) * 3, None, shape, shape, target, limits, "x")
    with pytest.raises(TruthError, match="truth x: voxel_size.*min_voxel_size"):
        cellmap.check_geometry((0.099,) * 3, None, shape, shape, target, limits, "truth x",
                               TruthError)
