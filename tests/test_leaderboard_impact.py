"""``gpueval leaderboard --compare/--stability``: the impact report and rank stability wired to
the results database (console, JSON, CSV, one HTML page rendered in Chromium)."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from gpueval import cli
from gpueval.db import Record, connect, utc_now
from gpueval.metrics.stability import challenge_stability
from gpueval.rescore import board_impact, leaderboard

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# U-RISC, 4 images; v1 -> v2 changes image c3 for alpha (0.9 -> 0.7) and beta (0.88 -> 0.90),
# and c1 for alpha a little (0.9 -> 0.89). By hand:
#   v1: alpha .9, beta .88, gamma .7, delta .6          -> ranks 1 2 3 4
#   v2: alpha (.89+.9+.7+.9)/4 = .8475, beta (3·.88+.9)/4 = .885 -> beta 1, alpha 2
#   alpha: Δscore −.0525, c3 contributes (.7−.9)/4 = −.05, c1 (.89−.9)/4 = −.0025
#   beta:  Δscore +.005, all from c3: (.9−.88)/4 = +.005
#   ranks (alpha, beta, gamma, delta): old 1 2 3 4, new 2 1 3 4: τ = (5−1)/6, ρ = 1 − 6·2/60
CASES = ("c1", "c2", "c3", "c4")
V1 = {"alpha": [0.9] * 4, "beta": [0.88] * 4, "gamma": [0.7] * 4, "delta": [0.6] * 4}
V2 = {"alpha": [0.89, 0.9, 0.7, 0.9], "beta": [0.88, 0.88, 0.9, 0.88], "gamma": [0.7] * 4,
      "delta": [0.6] * 4}


def _rec(name, version, items, *, challenge="urisc", metrics=None, status="ok", score=None):
    if score is None and items and challenge != "refuge":
        score = float(np.mean([it["f1"] for it in items]))
    error = None if status == "ok" else "a.tiff: not a TIFF"
    result = {"challenge": challenge, "metric_version": version, "status": status,
              "error": error, "score": score, "metrics": metrics or {"f1": score},
              "items": items, "runtime": {"seconds": 0.1, "device": "cpu", "voxels": 1},
              "warnings": []}
    now = utc_now()
    return Record(challenge, version, name.ljust(64, "0"), "t" * 64, name, status, error,
                  score, json.dumps(result), 0.1, "cpu", "0.1.0", "c" * 64, now, now)


def _urisc_items(values):
    return [{"id": c, "f1": v, "precision": v, "recall": v}
            for c, v in zip(CASES, values, strict=True)]


@pytest.fixture
def swapped(tmp_path):
    """The U-RISC database above, plus a submission rejected under both versions."""
    db = tmp_path / "r.sqlite"
    with connect(f"sqlite:///{db}") as d:
        for version, table in (("v1", V1), ("v2", V2)):
            for name, values in table.items():
                d.insert(_rec(name, version, _urisc_items(values)))
            d.insert(_rec("zeta", version, [], status="rejected"))
    return str(db)


def _section(text, start):
    """The lines of the printed block that begins with ``start``."""
    lines = text.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith(start))
    block = []
    for ln in lines[i:]:
        if not ln.strip() and len(block) > 4:
            break
        block.append(ln)
    return block


def _line_of(block, name):
    return next(ln for ln in block if f" {name} " in f" {ln} ")


def test_compare_names_both_teams_their_rank_changes_and_the_case(swapped, capsys):
    assert cli.main(["leaderboard", "urisc", "--db", swapped, "--compare", "v1"]) == 0
    out = capsys.readouterr().out
    block = _section(out, "metric-change impact: v1 -> v2")
    assert "2 of 4 submissions ranked under both changed rank" in block[0]
    alpha, beta = _line_of(block, "alpha"), _line_of(block, "beta")
    # columns: rank, was, Δrank, name, old, new, Δscore, items
    assert alpha.split()[:3] == ["2", "1", "-1"] and beta.split()[:3] == ["1", "2", "+1"]
    assert "-0.0525" in alpha and "+0.0050" in beta
    # the case behind both moves, first for alpha (c3 −.05 before c1 −.0025)
    assert alpha.split("alpha", 1)[1].index("c3") < alpha.split("alpha", 1)[1].index("c1")
    assert "c3 (0.9000 -> 0.7000: -0.0500)" in alpha
    assert "c3 (0.8800 -> 0.9000: +0.0050)" in beta
    gamma = _line_of(block, "gamma")
    assert gamma.split()[2] == "=" and "c" not in gamma.split("gamma", 1)[1]
    assert _line_of(block, "zeta").split()[0] == "zeta"  # unranked under both: no ranks


def test_printed_tau_and_rho_equal_scipys(swapped, capsys):
    cli.main(["leaderboard", "urisc", "--db", swapped, "--compare", "v1"])
    out = capsys.readouterr().out
    old, new = [1, 2, 3, 4], [2, 1, 3, 4]  # alpha, beta, gamma, delta
    tau, tau_p = stats.kendalltau(old, new)
    rho, rho_p = stats.spearmanr(old, new)
    assert abs(tau - 4 / 6) < 1e-12 and abs(rho - 0.8) < 1e-12  # the hand values above
    assert (f"Kendall tau = {tau:.4f} (p = {tau_p:.4f}), Spearman rho = {rho:.4f} "
            f"(p = {rho_p:.4f}), over 4 submissions") in out


def test_impact_follows_the_boards_own_ranks(swapped):
    with connect(f"sqlite:///{swapped}") as d:
        board = leaderboard(d, "urisc", "v2", "v1")
    report = board_impact(board)
    ranks = {r["name"]: r["rank"] for r in board.rows}
    was = {r["name"]: r["previous_rank"] for r in board.rows}
    assert {r.name: r.new_rank for r in report.rows} == ranks
    assert {r.name: r.old_rank for r in report.rows} == was
    # the contributions of alpha's named items sum to at most its Δscore (both negative)
    alpha = next(r for r in report.rows if r.name == "alpha")
    assert [c.item for c in alpha.top_items] == ["c3", "c1"]
    assert sum(c.contribution for c in alpha.top_items) == pytest.approx(alpha.delta_score)


def test_json_and_csv_exports_carry_the_analyses(swapped, tmp_path, capsys):
    out_json, out_csv = tmp_path / "a" / "board.json", tmp_path / "board.csv"
    assert cli.main(["leaderboard", "urisc", "--db", swapped, "--compare", "v1", "--stability",
                     "--resamples", "50", "--seed", "3", "--json", str(out_json),
                     "--export", str(out_csv)]) == 0
    capsys.readouterr()
    doc = json.loads(out_json.read_text())
    assert [r["name"] for r in doc["board"]][:2] == ["beta", "alpha"]
    rows = {r["name"]: r for r in doc["impact"]["rows"]}
    assert rows["alpha"]["delta_rank"] == -1 and rows["alpha"]["top_items"][0]["item"] == "c3"
    assert doc["stability"]["n_resamples"] == 50 and doc["stability"]["seed"] == 3
    impact = {r["name"]: r for r in csv.DictReader((tmp_path / "board.impact.csv").open())}
    assert impact["beta"]["delta_rank"] == "1" and impact["zeta"]["delta_rank"] == ""
    assert impact["alpha"]["top_items"].startswith("c3 ")
    st = list(csv.DictReader((tmp_path / "board.stability.csv").open()))
    assert [r["name"] for r in st] == [s["name"] for s in doc["stability"]["submissions"]]
    for r in st:  # each row's rank frequencies are a distribution
        assert sum(float(v) for k, v in r.items() if k.startswith("p_rank_")) == \
            pytest.approx(1.0)


def test_stability_is_deterministic_under_a_seed_and_is_the_challenge_rule(swapped, tmp_path,
                                                                         capsys):
    args = ["leaderboard", "urisc", "--db", swapped, "--metric-version", "v2", "--stability",
            "--resamples", "200", "--seed", "11"]
    outs = []
    for k in range(2):
        assert cli.main([*args, "--json", str(tmp_path / f"s{k}.json")]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]
    block = _section(outs[0], "rank stability: 200 bootstrap resamples of 4 cases (seed 11)")
    want = challenge_stability("urisc", {n: _urisc_items(v) for n, v in V2.items()},
                               n_resamples=200, seed=11)
    got = json.loads((tmp_path / "s0.json").read_text())["stability"]
    assert got == json.loads(json.dumps(want.as_dict()))
    for i, name in enumerate(want.names):
        lo, hi = want.interval[i]
        line = _line_of(block, name).split()
        assert line[:5] == [str(want.observed_rank[i]), name, str(want.median_rank[i]),
                            f"{lo}-{hi}", line[4]]
    for g, group in enumerate(want.tied_groups):
        assert f"tied group {g + 1}: {', '.join(group)}" in outs[0]
    # gamma and delta never move (their cases are constant and apart): a certain rank
    assert "gamma" in want.names and want.interval[want.names.index("delta")] == (4, 4)


def test_a_challenge_without_items_says_so(tmp_path, capsys):
    db = tmp_path / "x.sqlite"
    with connect(f"sqlite:///{db}") as d:
        for name, s in (("a", 0.5), ("b", 0.6)):
            d.insert(_rec(name, "x1", [], challenge="xpress", score=s,
                          metrics={"xpress_erl_rand": s}))
        d.insert(_rec("c", "u1", [], score=0.4))  # U-RISC results stored without items
        d.insert(_rec("d", "u1", [], score=0.5))
    assert cli.main(["leaderboard", "xpress", "--db", str(db), "--stability"]) == 0
    out = capsys.readouterr().out
    assert "rank stability not available: XPRESS scores one volume" in out
    assert cli.main(["leaderboard", "urisc", "--db", str(db), "--stability"]) == 0
    assert "rank stability not available: no per-case items stored" in capsys.readouterr().out


def _refuge(name, version, cup2, vcdr2, auc):
    """Two images; image img2's cup Dice and vCDR error are what the versions change."""
    base = {"t1": (0.8, 0.91, 0.05), "t2": (0.78, 0.90, 0.06), "t3": (0.6, 0.8, 0.1)}[name]
    cup, disc, vcdr = base
    items = [{"id": "img1.bmp", "cup_dice": cup, "disc_dice": disc, "vcdr_error": vcdr},
             {"id": "img2.bmp", "cup_dice": cup2 if cup2 is not None else cup,
              "disc_dice": disc, "vcdr_error": vcdr2 if vcdr2 is not None else vcdr}]
    metrics = {"mean_cup_dice": float(np.mean([i["cup_dice"] for i in items])),
               "mean_disc_dice": disc,
               "vcdr_mae": float(np.mean([i["vcdr_error"] for i in items])), "auc": auc}
    return _rec(name, version, items, challenge="refuge", metrics=metrics)


def test_refuge_impact_uses_its_final_ranking(tmp_path, capsys):
    """t1 leads the final board under r1; r2 lowers t1's img2 cup Dice (.8 -> .6) and raises
    its vCDR error (.05 -> .13): segmentation t2 1st, t1 2nd, so final (0.6·seg + 0.4·cls,
    AUC t1 .9 > t2 .85): t1 .6·2+.4·1 = 1.6, t2 .6·1+.4·2 = 1.4 -> t2 first."""
    db = tmp_path / "f.sqlite"
    with connect(f"sqlite:///{db}") as d:
        for name, auc in (("t1", 0.9), ("t2", 0.85), ("t3", 0.8)):
            d.insert(_refuge(name, "r1", None, None, auc))
            d.insert(_refuge(name, "r2", 0.6 if name == "t1" else None,
                             0.13 if name == "t1" else None, auc))
    assert cli.main(["leaderboard", "refuge", "--db", str(db), "--compare", "r1",
                     "--stability", "--resamples", "20"]) == 0
    out = capsys.readouterr().out
    block = _section(out, "metric-change impact: r1 -> r2")
    t1, t2 = _line_of(block, "t1"), _line_of(block, "t2")
    assert t1.split()[:3] == ["2", "1", "-1"] and t2.split()[:3] == ["1", "2", "+1"]
    assert "img2.bmp (0.8000 -> 0.6000: -0.1000)" in t1  # mean cup Dice: (.6 − .8)/2
    assert "note: refuge: ranks are the final ranking" in out
    stab = _section(out, "rank stability: 20 bootstrap resamples of 2 cases")
    assert "REFUGE segmentation ranking" in stab[0]


class _Strict(HTMLParser):
    """Fails on a closing tag that does not close the open one."""

    VOID = {"meta", "br", "circle", "line", "path", "rect", "input", "img"}

    def __init__(self):
        super().__init__()
        self.stack, self.ids = [], []

    def handle_starttag(self, tag, attrs):
        self.ids += [v for k, v in attrs if k == "id"]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def test_one_html_page_holds_the_board_the_bump_chart_and_the_blob_plot(swapped, tmp_path,
                                                                       capsys):
    page = tmp_path / "board.html"
    assert cli.main(["leaderboard", "urisc", "--db", swapped, "--compare", "v1", "--stability",
                     "--resamples", "100", "--html", str(page)]) == 0
    capsys.readouterr()
    text = page.read_text(encoding="utf-8")
    p = _Strict()
    p.feed(text)
    p.close()
    assert p.stack == [] and {"leaderboard", "bump", "impact", "blob", "stability"} <= set(
        p.ids)
    assert "slope" not in p.ids  # one chart of the rank changes: the bump chart
    assert "Kendall τ = 0.667" in text and "c3" in text
    if CHROMIUM is None:
        pytest.skip("neither chromium nor chromium-browser is on PATH: not rendered")
    from PIL import Image

    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "board.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[0] > 1000 and img.std() > 5
    green = (img[..., 1] > img[..., 0] + 40) & (img[..., 1] > img[..., 2] + 20)  # moved up
    blue = img[..., 2] > img[..., 0] + 40  # the blobs
    assert green.any() and blue.any()


def test_bad_resamples_is_a_command_line_error(swapped, capsys):
    assert cli.main(["leaderboard", "urisc", "--db", swapped, "--stability",
                     "--resamples", "0"]) == 2
    assert "--resamples 0" in capsys.readouterr().err
    assert cli.main(["leaderboard", "urisc", "--db", swapped, "--top-items", "-1"]) == 2
    assert "--top-items -1" in capsys.readouterr().err


_score = st.one_of(st.none(), st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_score, _score), min_size=1, max_size=6))
def test_impact_agrees_with_the_board_and_with_scipy(tmp_path_factory, pairs):
    """Whatever the scores (ties, unscored, new and gone): the report's ranks and Δranks are the
    board's own, and its τ and ρ are scipy's over the names ranked under both."""
    db = tmp_path_factory.mktemp("prop") / "p.sqlite"
    with connect(f"sqlite:///{db}") as d:
        for i, (old, new) in enumerate(pairs):
            for version, s in (("v1", old), ("v2", new)):
                if s is not None:  # one image whose F is the score
                    d.insert(_rec(f"t{i}", version, [{"id": "c1", "f1": s}]))
        if not d.metric_versions("urisc"):
            return
        versions = d.metric_versions("urisc")
        board = leaderboard(d, "urisc", versions[-1], versions[0] if len(versions) > 1
                            else None, auto_compare=False)
    report = board_impact(board)
    if len(versions) == 1:
        assert report is None
        return
    rows = {r.name: r for r in report.rows}
    for r in board.rows:
        assert rows[r["name"]].new_rank == r["rank"]
        assert rows[r["name"]].delta_rank == r["rank_change"]
        assert rows[r["name"]].old_rank == r["previous_rank"]
    both = [r for r in report.rows if r.old_rank is not None and r.new_rank is not None]
    assert report.n_compared == len(both)
    old_r, new_r = [r.old_rank for r in both], [r.new_rank for r in both]
    if len(both) >= 2 and len(set(old_r)) > 1 and len(set(new_r)) > 1:
        assert report.kendall_tau == pytest.approx(stats.kendalltau(old_r, new_r)[0])
        assert report.spearman_rho == pytest.approx(stats.spearmanr(old_r, new_r)[0])
    for r in report.changed:  # one item: it carries the whole score change
        if r.delta_score:
            assert [c.item for c in r.top_items] == ["c1"]
            assert r.top_items[0].contribution == pytest.approx(r.delta_score)


@pytest.mark.slow
def test_rescore_under_a_new_version_reports_the_impact(tmp_path, capsys):
    """`gpueval rescore --report/--export` after a metric change: the page has the bump chart,
    the impact table sits beside the export (two real scoring passes of 3 submissions)."""
    from gpueval.bench.rescore import make_batch

    gt, subs = make_batch(tmp_path, 3, 64)
    db = f"sqlite:///{tmp_path}/r.sqlite"
    base = ["rescore", "urisc", "--truth", str(gt), "--submissions", str(subs), "--db", db,
            "--device", "cpu", "--quiet"]
    assert cli.main([*base, "--set", "variant=bold", "--set", "radius=1"]) == 0
    page, table = tmp_path / "b.html", tmp_path / "b.csv"
    assert cli.main([*base, "--report", str(page), "--export", str(table)]) == 0
    text = page.read_text(encoding="utf-8")
    assert "id='bump'" in text and "urisc-bold-pre-2019-12-25" in text
    impact = list(csv.DictReader((tmp_path / "b.impact.csv").open()))
    assert sorted(r["name"] for r in impact) == ["team_000", "team_001", "team_002"]
    assert all(r["old_rank"] and r["new_rank"] for r in impact)


def test_medsegfm_text_track_items_are_read_by_the_recorded_track(tmp_path, capsys):
    """Text-track items hold F1 for instance cases and only DSC for semantic ones: the impact
    reads F1, falling back to DSC, and the JSON names that rule (not a Python function)."""
    db = tmp_path / "m.sqlite"

    def rec(name, version, f1_case1, dsc_case2):
        items = [{"id": "case1", "f1": f1_case1, "dsc": 0.1},
                 {"id": "case2", "f1": None, "dsc": dsc_case2}]
        score = (f1_case1 + dsc_case2) / 2
        r = _rec(name, version, items, challenge="medsegfm", score=score,
                 metrics={"dsc": score})
        result = json.loads(r.result_json) | {"extra": {"track": "text"}}
        return dataclasses.replace(r, result_json=json.dumps(result))

    with connect(f"sqlite:///{db}") as d:
        d.insert(rec("m1", "t1", 0.9, 0.5))  # .7
        d.insert(rec("m2", "t1", 0.6, 0.6))  # .6
        d.insert(rec("m1", "t2", 0.9, 0.2))  # .55: case2's DSC drops it below m2
        d.insert(rec("m2", "t2", 0.6, 0.6))
    out_json = tmp_path / "m.json"
    assert cli.main(["leaderboard", "medsegfm", "--db", str(db), "--json", str(out_json)]) == 0
    block = _section(capsys.readouterr().out, "metric-change impact: t1 -> t2")
    assert "case2 (0.5000 -> 0.2000: -0.1500)" in _line_of(block, "m1")  # (.2 − .5)/2
    doc = json.loads(out_json.read_text())
    assert doc["impact"]["item_metric"].startswith("f1 (dsc where f1 is undefined")
