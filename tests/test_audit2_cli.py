"""Audit of the command-line / result-JSON contract (shared/specs/cli.md) for every challenge.

Each challenge gets a tiny on-disk truth/submission pair built from tests/fixtures/<challenge>/,
driven through ``gpueval.cli.main`` in-process (and ``python -m gpueval`` for exit codes).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image
from xpress_cases import write_case

from gpueval.cli import build_parser, main
from gpueval.config import load_config

FIX = Path(__file__).parent / "fixtures"
CHALLENGES = ("urisc", "xpress", "cellmap", "medsegfm", "refuge")
TOP_KEYS = {"challenge", "metric_version", "status", "error", "score", "metrics", "items",
            "runtime"}


# ------------------------------------------------------------------------------ tiny inputs


def _urisc(tmp: Path, name: str = "perfect") -> tuple[Path, Path, list[str]]:
    z = np.load(FIX / "urisc" / f"{name}.npz", allow_pickle=False)
    gt, sub = tmp / "gt", tmp / "sub"
    gt.mkdir()
    sub.mkdir()
    Image.fromarray(z["gt"]).save(gt / "img1.png")
    tifffile.imwrite(sub / "img1.tiff", z["pred"])
    return gt, sub, []


def _xpress(tmp: Path, name: str = "perfect") -> tuple[Path, Path, list[str]]:
    skel, sub, _ = write_case(tmp, name)
    return skel, sub, ["--set", "roi=none"]


def _cellmap(tmp: Path) -> tuple[Path, Path, list[str]]:
    truth, sub = tmp / "truth.zarr", tmp / "sub.zarr"
    for f in sorted((FIX / "cellmap" / "e2e").glob("*.npz")):
        crop, label, kind = f.stem.split("_")
        z = np.load(f, allow_pickle=False)
        g = zarr.open_group(str(truth if kind == "truth" else sub), mode="a", zarr_format=2)
        a = g.require_group(crop).create_array(label, shape=z["data"].shape,
                                               dtype=z["data"].dtype, chunks=(16, 16, 16))
        a[:] = z["data"]
        a.attrs["voxel_size"] = list(map(float, z["voxel_size"]))
        a.attrs["translation"] = list(map(float, z["translation"]))
    return truth, sub, []


def _medsegfm(tmp: Path) -> tuple[Path, Path, list[str]]:
    truth, sub = tmp / "truth", tmp / "sub"
    truth.mkdir()
    sub.mkdir()
    z = np.load(FIX / "medsegfm" / "perfect.npz", allow_pickle=False)
    np.savez(truth / "case1.npz", gts=z["gts"], spacing=z["spacing"])
    np.savez(sub / "case1.npz", segs=z["segs"])
    return truth, sub, []


def _refuge(tmp: Path) -> tuple[Path, Path, list[str]]:
    truth, sub = tmp / "truth", tmp / "sub"
    (truth / "Disc_Cup_Masks").mkdir(parents=True)
    (sub / "segmentation").mkdir(parents=True)
    for name in ("perfect", "shifted"):
        z = np.load(FIX / "refuge" / f"seg_{name}.npz", allow_pickle=False)
        Image.fromarray(z["gt"]).save(truth / "Disc_Cup_Masks" / f"{name}.bmp")
        Image.fromarray(z["pred"]).save(sub / "segmentation" / f"{name}.bmp")
    c = np.load(FIX / "refuge" / "cls_small_10.npz", allow_pickle=False)
    names = [f"T{i:04d}.jpg" for i in range(len(c["labels"]))]
    fz = np.load(FIX / "refuge" / "fovea.npz", allow_pickle=False)
    fnames = [f"F{i:03d}.jpg" for i in range(len(fz["gt_xy"]))]
    _csv(truth / "glaucoma_labels.csv", ["filename", "label"],
         [(n, int(v)) for n, v in zip(names, c["labels"], strict=True)])
    _csv(truth / "fovea_locations.csv", ["filename", "x", "y"],
         [(n, repr(float(x)), repr(float(y))) for n, (x, y) in zip(fnames, fz["gt_xy"],
                                                                    strict=True)])
    _csv(sub / "classification_results.csv", ["FileName", "Glaucoma Risk"],
         [(n, repr(float(v))) for n, v in zip(names, c["scores"], strict=True)])
    _csv(sub / "fovea_location_results.csv", ["ImageName", "Fovea_X", "Fovea_Y"],
         [(n, repr(float(x)), repr(float(y))) for n, (x, y) in zip(fnames, fz["pred_xy"],
                                                                    strict=True)])
    return truth, sub, []


def _csv(path: Path, header, rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


BUILD = {"urisc": _urisc, "xpress": _xpress, "cellmap": _cellmap, "medsegfm": _medsegfm,
         "refuge": _refuge}

REQUIRED = {
    "urisc": ({"f1"}, {"precision", "recall", "f1"}),
    "xpress": ({"erl", "erl_norm", "rand_split", "rand_merge", "voi_split", "voi_merge",
                "nvi_split", "nvi_merge", "xpress_erl_rand", "xpress_erl_voi"}, set()),
    "cellmap": ({"overall_score", "overall_instance_score", "overall_semantic_score"},
                {"tp", "fp", "fn", "status", "num_voxels"}),
    "medsegfm": (set(), {"dsc", "nsd"}),
    "refuge": ({"mean_disc_dice", "mean_cup_dice", "vcdr_mae", "auc",
                "sensitivity_at_085_specificity", "fovea_mean_distance"},
               set()),
}
HEADLINE = {"urisc": "f1", "xpress": "xpress_erl_rand", "cellmap": "overall_score"}


def _score(tmp: Path, challenge: str, truth: Path, sub: Path, extra: list[str]) -> tuple[int, dict]:
    out = tmp / "result.json"
    rc = main(["score", challenge, "--truth", str(truth), "--submission", str(sub),
               "--json", str(out), "--quiet", "--device", "cpu", *extra])
    text = out.read_text()
    # strict JSON: NaN/inf must have been written as null
    return rc, json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))


@pytest.mark.parametrize("challenge", CHALLENGES)
def test_score_writes_the_contract_json(tmp_path, challenge):
    truth, sub, extra = BUILD[challenge](tmp_path)
    rc, res = _score(tmp_path, challenge, truth, sub, extra)
    assert rc == 0
    assert set(res) >= TOP_KEYS  # adding keys is allowed, dropping is not
    assert res["challenge"] == challenge and res["status"] == "ok" and res["error"] is None
    assert res["metric_version"] == load_config(challenge)["metric_version"]
    assert set(res["runtime"]) >= {"seconds", "device", "voxels"}
    assert res["runtime"]["device"] == "cpu" and isinstance(res["runtime"]["voxels"], int)
    metric_names, item_names = REQUIRED[challenge]
    assert metric_names <= set(res["metrics"])
    assert res["items"] and all("id" in it and item_names <= set(it) for it in res["items"])
    if challenge in HEADLINE:
        assert res["score"] == pytest.approx(res["metrics"][HEADLINE[challenge]])
    if challenge == "refuge":
        assert res["score"] is None  # ranking needs several submissions (rescore)


@pytest.mark.parametrize("challenge", CHALLENGES)
def test_missing_submission_is_rejected_with_json_and_exit_3(tmp_path, challenge):
    truth, _, extra = BUILD[challenge](tmp_path)
    rc, res = _score(tmp_path, challenge, truth, tmp_path / "nowhere", extra)
    assert rc == 3
    assert set(res) >= TOP_KEYS  # adding keys is allowed, dropping is not
    assert res["status"] == "rejected" and res["score"] is None
    assert isinstance(res["error"], str) and "\n" not in res["error"].strip()


@pytest.mark.parametrize("challenge", CHALLENGES)
def test_unusable_truth_is_exit_4(tmp_path, challenge):
    _, sub, extra = BUILD[challenge](tmp_path)
    out = tmp_path / "r.json"
    rc = main(["score", challenge, "--truth", str(tmp_path / "no_truth"), "--submission",
               str(sub), "--json", str(out), "--quiet", "--device", "cpu", *extra])
    assert rc == 4


@pytest.mark.parametrize("challenge", CHALLENGES)
def test_validate_accepts_a_good_submission(tmp_path, challenge):
    truth, sub, extra = BUILD[challenge](tmp_path)
    assert main(["validate", challenge, "--submission", str(sub), "--truth", str(truth),
                 *extra]) == 0


def test_every_contract_option_is_accepted_by_the_parser():
    parser = build_parser()
    args = parser.parse_args(["score", "xpress", "--truth", "t", "--submission", "s", "--json",
                              "o", "--config", "c.yaml", "--set", "roi=none", "--set", "a=b",
                              "--device", "gpu", "--scheduler", "tcp://x:1", "--quiet"])
    assert args.device == "gpu"
    args = parser.parse_args(["rescore", "urisc", "--truth", "t", "--submissions", "d", "--db",
                              "sqlite:///x.db", "--export", "x.csv", "--device", "cpu"])
    assert args.submissions == "d" or str(args.submissions) == "d"
    for challenge in CHALLENGES:
        parser.parse_args(["validate", challenge, "--submission", "s"])
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["score", "nochallenge", "--truth", "t", "--submission", "s"])
    assert e.value.code == 2


def test_bad_set_value_exits_2_as_a_subprocess(tmp_path):
    truth, sub, extra = BUILD["urisc"](tmp_path)
    p = subprocess.run([sys.executable, "-m", "gpueval", "score", "urisc", "--truth", str(truth),
                        "--submission", str(sub), "--set", "no_equals_sign"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip()


def test_nan_metrics_are_written_as_null(tmp_path):
    # one neuron only: every Rand/VOI value is 0/0 (xpress.md), so the headline is NaN -> null
    truth, sub, extra = _xpress(tmp_path, "single_neuron")
    rc, res = _score(tmp_path, "xpress", truth, sub, extra)
    assert rc == 0 and res["status"] == "ok"
    assert res["score"] is None and res["metrics"]["rand_split"] is None
    assert all(v is None or math.isfinite(v) for v in res["metrics"].values())
