"""``gpueval`` command line (the contract is ``shared/specs/cli.md``; keep every name).

Exit status: 0 scored · 2 bad command line · 3 submission rejected · 4 truth or config unusable.

Choices the contract leaves open:

* Warnings go to stderr as ``warning: <line>`` after the table (``score``) or the notes
  (``validate``); ``--quiet`` prints errors only (no table, warnings, progress or "report
  written to").
* ``--json``/``--report`` into a folder that does not exist: the folder is created, before
  scoring; a path that cannot be created or written is exit 2 before anything is scored, and a
  write that fails after scoring is exit 2 too (never a traceback).
* ``validate`` ends with ``valid`` (exit 0), ``valid, with N warning(s)`` (exit 0), or with
  ``--strict`` and any warning ``rejected (--strict): N warning(s)`` (exit 3).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gpueval import __version__
from gpueval.challenges import Names as ChallengeNames
from gpueval.errors import GpuevalError, Rejected, UsageError
from gpueval.formats import FORMATS, check_format
from gpueval.formats import write as write_format
from gpueval.result import Result, format_table, to_jsonable

EPILOG = """\
examples:
  gpueval demo                                    score a built-in synthetic pair (CPU, no data)
  gpueval score urisc --truth gt/ --submission result.zip --json out.json
  gpueval score urisc --truth gt/ --submission s/ --set variant=bold --set radius=2
  gpueval score cellmap --truth gt.zarr --submission sub.zip --device gpu
  gpueval score xpress --truth skel.npz --submission seg.h5 --set roi=none
  gpueval score medsegfm --truth gt/ --submission preds/ --format grand-challenge \
                --json /output/metrics.json       the platform's own result layout
  gpueval validate medsegfm --submission preds/ --strict
  gpueval view cellmap --truth gt.zarr --submission sub.zarr    errors in a local neuroglancer
  gpueval bench                                   a quick benchmark set (under a minute)
  gpueval config urisc --set variant=bold         every config key, its value and its meaning
  gpueval rescore urisc --truth gt/ --submissions all/ --db sqlite:///scores.db
  gpueval bench contingency confusion --json bench.json

exit status: 0 scored, 2 bad command line, 3 submission rejected, 4 truth or config unusable.
Each challenge's constants live in configs/<challenge>.yaml; --set KEY=VALUE overrides one
(dotted keys; an unknown key is exit 2), --config FILE replaces the file; `gpueval config
CHALLENGE` lists every key with its allowed values. Results are strict JSON (NaN -> null).
Warnings (inputs ignored, scored as missing, read differently) are printed on stderr as
"warning: ..." and kept in the JSON's "warnings" list; --quiet prints errors only.
"""

SCORE_EPILOG = """\
config keys: run `gpueval config CHALLENGE` (e.g. `gpueval config urisc`) to see every key
--set accepts, with its current value, a one-line description and its allowed values; add
`--set KEY=VALUE` there to preview a change. Common keys: urisc variant/radius, xpress roi/
dataset, cellmap version/manifest, medsegfm track, refuge sensitivity, and compat everywhere.
warnings: printed on stderr ("warning: ...") unless --quiet, and always in the JSON.
--json/--report into a folder that does not exist: the folder is created before scoring (a
path that cannot be created is a bad command line, exit 2, and nothing is scored).
"""

FORMAT_CHOICES = tuple(FORMATS)

BENCH_EPILOG = """\
Without names, `gpueval bench` runs a quick set (contingency, confusion, cc, medsegfm_nsd at
--scale 0.25, i.e. 128³-class volumes; under a minute on 2 cores). For the full sizes the
benchmark results were recorded at, name workloads (`gpueval bench urisc xpress`) or run
`gpueval bench all`; some need tens of GiB of disk and minutes each (see --list).
"""

LEADERBOARD_EPILOG = """\
impact (with --compare, or automatically against the version recorded before): per submission
the old and new rank and score, Δrank = old − new (positive: moved up) and Δscore; Kendall's τ
and Spearman's ρ between the two rankings (submissions ranked under both); for each rank change
the cases/items whose change contributed most to the score difference (REFUGE: ranks of its
final ranking, scores and items are mean cup Dice).
stability (--stability): the challenge's own aggregation and ranking over cases drawn with
replacement (--resamples, --seed): each submission's median rank, 95 % interval and tied
group. Challenges whose score has no per-case items (xpress, cellmap) print why instead.
exports: --export board.csv also writes board.impact.csv and board.stability.csv (or .parquet);
--json OUT writes {"board": [...], "impact": {...}|null, "stability": {...}|null}.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpueval", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score segmentation-challenge submissions exactly as the official scorers "
                    "do, out of core, on the GPU or the CPU.", epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"gpueval {__version__}")
    # the entry points are scanned only when a name is not built in or the names are listed
    # (help, an unknown name): each scan reads every installed distribution's metadata
    # (~10-30 ms, paid before the first byte of input is read); one scan for the whole parser
    challenges = ChallengeNames()
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="what to do; `gpueval COMMAND --help` explains each option")

    s = sub.add_parser("score", help="score one submission",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SCORE_EPILOG,
                       description="Score one submission against the truth; print a table, "
                                   "write --json.")
    _challenge(s, challenges)
    s.add_argument("--truth", required=True, metavar="PATH",
                   help="ground truth: file or folder in the challenge's layout (README, cli.md)")
    s.add_argument("--submission", required=True, metavar="PATH",
                   help="the submission file, folder or zip, as uploaded")
    s.add_argument("--json", metavar="OUT",
                   help="write the result here, in the layout --format names")
    s.add_argument("--format", default="gpueval", choices=FORMAT_CHOICES,
                   help="layout of the --json file: gpueval (the result JSON, default), "
                        "grand-challenge (metrics.json with case and aggregates), cellmap "
                        "(csc evaluate's result.json), medsegfm-csv (the official per-case CSV)")
    _common(s)
    s.add_argument("--quiet", action="store_true",
                   help="print nothing but errors (no table, warnings or progress)")
    s.add_argument("--report", metavar="HTML", help="also write an HTML report")
    s.add_argument("--workers", type=int, default=0, metavar="N",
                   help="run the graph on a local dask.distributed cluster of N processes "
                        "(same result; no GIL between them). 0: threads in this process")
    _url_prefix(s)

    r = sub.add_parser("rescore", help="score every stored submission (resumable, with a DB)")
    _challenge(r, challenges)
    r.add_argument("--truth", required=True, metavar="PATH",
                   help="ground truth shared by every submission (layout per challenge)")
    r.add_argument("--submissions", required=True, metavar="DIR",
                   help="folder whose entries (files or folders) are one submission each")
    r.add_argument("--db", metavar="URL", help="results database (default sqlite next to DIR)")
    r.add_argument("--export", metavar="CSV_OR_PARQUET",
                   help="write the leaderboard table (and, when an older metric version is "
                        "recorded, the impact table beside it as NAME.impact.EXT)")
    r.add_argument("--workers", type=int, default=0,
                   help="start a LocalCluster with this many workers (0: in-process)")
    r.add_argument("--force", action="store_true",
                   help="re-score submissions already in the database (keeps both rows)")
    r.add_argument("--timeout", type=float, default=None,
                   help="seconds allowed per submission (default 3600, 0: no limit; "
                        "exceeded: recorded as rejected)")
    r.add_argument("--memory-limit", metavar="BYTES", default=None,
                   help="resident-memory limit per submission's scoring process, e.g. 8GiB "
                        "(default half the machine's memory, 0: no limit; exceeded: recorded "
                        "as rejected)")
    _common(r)
    r.add_argument("--quiet", action="store_true",
                   help="print nothing but errors (no per-submission lines or progress)")
    r.add_argument("--report", metavar="HTML",
                   help="also write an HTML leaderboard (with the impact of the metric change "
                        "when an older metric version is recorded)")
    r.add_argument("--results-dir", metavar="DIR",
                   help="also write each scored submission's result into DIR, one file per "
                        "submission name, in --format's layout")
    r.add_argument("--format", choices=FORMAT_CHOICES, default="gpueval",
                   help="layout of the --results-dir files: gpueval (the result JSON), "
                        "grand-challenge (metrics.json), cellmap (result.json), medsegfm-csv")

    v = sub.add_parser("validate", help="format checks only, no scoring",
                       description="Check a submission's format (no scoring). Prints notes on "
                                   "stdout, warnings on stderr, then 'valid' (exit 0) or "
                                   "'rejected: ...' (exit 3).")
    _challenge(v, challenges)
    v.add_argument("--submission", required=True, metavar="PATH",
                   help="the submission file, folder or zip to check")
    v.add_argument("--truth", metavar="PATH",
                   help="also check the submission against this truth (names, shapes)")
    _config(v, set_help="override one config key (dotted); `gpueval config CHALLENGE` lists "
                        "them")
    v.add_argument("--strict", action="store_true",
                   help="exit 3 when there is any warning (an input that would be ignored, "
                        "scored as missing or read differently than meant)")

    c = sub.add_parser("config", help="print a challenge's resolved config and what each key "
                                      "means",
                       description="Print the resolved configuration (after --config and --set) "
                                   "as YAML usable with --config, with a one-line description "
                                   "and the allowed values of every key.")
    _challenge(c, challenges)
    _config(c)

    b = sub.add_parser("bench", help="throughput benchmarks (voxels/s, peak RSS)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Time gpueval on synthetic data, each workload in a fresh "
                                   "process, beside the reference implementation where one "
                                   "exists.", epilog=BENCH_EPILOG)
    b.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                   help="workloads to run (default: a quick set at a small size, under a "
                        "minute; `all` runs every workload; --list names them)")
    b.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"),
                   help="auto: the GPU when CuPy sees one, else the CPU")
    b.add_argument("--json", metavar="OUT",
                   help="write every record (seconds, voxels/s, peak RSS, machine) as JSON")
    b.add_argument("--scale", type=float, default=None, metavar="S",
                   help="size of the synthetic data along each edge, relative to the full "
                        "size --list shows: 1 = full size (e.g. 512³ voxels), 0.5 = half each "
                        "edge (1/8 of the voxels); default 1 for named workloads")
    b.add_argument("--list", action="store_true", help="list workloads and exit")

    d = sub.add_parser("demo", help="score a built-in synthetic instance pair on the CPU")
    d.add_argument("--json", metavar="OUT", help="write the result JSON here")
    d.add_argument("--size", type=int, default=96, help="edge of the synthetic cube")
    d.add_argument("--device", default="cpu", choices=("auto", "cpu", "gpu"),
                   help="where to compute (default cpu: the demo needs no GPU)")
    d.add_argument("--report", metavar="HTML", help="also write an HTML report")

    k = sub.add_parser("skeleton", help="convert an XPRESS skeleton (pickle -> safe .npz)")
    k.add_argument("source", metavar="SRC",
                   help="skeleton to read: the official pickled networkx graph or a .npz")
    k.add_argument("dest", metavar="DEST.npz", help="gpueval's safe .npz skeleton to write")

    lb = sub.add_parser("leaderboard", help="print the ranked table from a results database",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=LEADERBOARD_EPILOG,
                        description="Rank every current submission under one metric version; "
                                    "with --compare, what the change of metric version did to "
                                    "the ranking; with --stability, how stable the ranking is.")
    _challenge(lb, challenges)
    lb.add_argument("--db", required=True, metavar="URL",
                    help="results database written by `gpueval rescore` (sqlite:///... or "
                         "postgresql://...)")
    lb.add_argument("--metric-version", metavar="VERSION",
                    help="rank the results of this metric version (default: the newest in the "
                         "database)")
    lb.add_argument("--compare", metavar="VERSION",
                    help="show rank changes against VERSION (default: the version recorded "
                         "before) and the impact report: Δscore, Δrank, Kendall τ, Spearman ρ "
                         "and the items behind each rank change")
    lb.add_argument("--stability", action="store_true",
                    help="bootstrap the cases: each submission's rank interval and the groups "
                         "of statistically tied submissions")
    lb.add_argument("--resamples", type=int, default=1000, metavar="N",
                    help="bootstrap resamples for --stability (default 1000)")
    lb.add_argument("--seed", type=int, default=0, metavar="S",
                    help="seed of the --stability resamples (default 0: reproducible)")
    lb.add_argument("--top-items", type=int, default=3, metavar="K",
                    help="items named per rank change in the impact report (default 3)")
    lb.add_argument("--html", metavar="OUT", help="write an HTML leaderboard (one page, with the "
                                                  "bump chart and the blob plot)")
    lb.add_argument("--export", metavar="CSV_OR_PARQUET",
                    help="write the ranked table (.csv, or .parquet with pyarrow); the impact "
                         "and stability tables go beside it as NAME.impact.EXT and "
                         "NAME.stability.EXT")
    lb.add_argument("--json", metavar="OUT",
                    help="write the board, the impact report and the stability report as one "
                         "JSON file (keys board, impact, stability; null when not computed)")
    _config(lb, config_help="config whose 'ranking' section to use (REFUGE weights); default "
                            "configs/<challenge>.yaml",
            set_help="override a config key, e.g. --set ranking.final_weights=[0.5,0.5]")

    w = sub.add_parser("view", help="open truth, submission and their errors in a local "
                                    "neuroglancer (3-D challenges; needs the viewer extra)",
                       description="Serve the local files to a neuroglancer viewer in the "
                                   "browser (nothing is copied: chunks are read as the viewer "
                                   "asks for them), with segmentation layers truth, submission "
                                   "and errors (1 false object, 2 miss, 3 split, 4 merge; "
                                   "semantic labels: 3 wrong class). Install with "
                                   "pip install \"gpueval[viewer]\".")
    w.add_argument("challenge", choices=("cellmap", "medsegfm", "xpress"), metavar="CHALLENGE",
                   help="cellmap, medsegfm or xpress (U-RISC and REFUGE are 2-D: use "
                        "score --report)")
    w.add_argument("--truth", required=True, metavar="PATH", help="ground truth, as for score")
    w.add_argument("--submission", required=True, metavar="PATH",
                   help="the submission (an unzipped folder), as for score")
    w.add_argument("--item", metavar="ID",
                   help="which CellMap crop<ID>/<label> or MedSegFM case (default: the first)")
    w.add_argument("--bind", default="127.0.0.1", metavar="ADDRESS",
                   help="address the server listens on (default 127.0.0.1: this machine only)")
    w.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    w.add_argument("--no-browser", action="store_true",
                   help="print the viewer's URL without opening a browser")

    rep = sub.add_parser("report", help="HTML report of a result JSON")
    rep.add_argument("result", metavar="RESULT.json", help="a result written by score --json")
    rep.add_argument("--truth", metavar="PATH",
                     help="the truth it was scored on (adds pictures of where it fails)")
    rep.add_argument("--submission", metavar="PATH",
                     help="the submission it was scored on (adds pictures of where it fails)")
    rep.add_argument("-o", "--output", required=True, metavar="HTML",
                     help="the HTML file to write")
    _url_prefix(rep)
    return p


def _challenge(p: argparse.ArgumentParser, names: Sequence[str]) -> None:
    # "%(choices)s" is expanded only when the help is printed (no entry-point scan before)
    p.add_argument("challenge", choices=names, metavar="CHALLENGE", help="one of: %(choices)s")


def _url_prefix(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url-prefix", metavar="URL",
                   help="where the truth's and submission's folders are published (http(s)://, "
                        "s3://, gs://): the report's neuroglancer link opens <URL>/<folder "
                        "name>/... in the public viewer; without it the report shows the "
                        "`gpueval view` command that serves the local files")


def _config(p: argparse.ArgumentParser, *,
            config_help: str = "replace configs/<challenge>.yaml",
            set_help: str = "override one config key (dotted), e.g. --set variant=bold") -> None:
    """``--config YAML`` and ``--set KEY=VALUE`` (repeatable, into ``args.overrides``)."""
    p.add_argument("--config", metavar="YAML", help=config_help)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=set_help)


def _common(p: argparse.ArgumentParser) -> None:
    _config(p)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"),
                   help="auto: the GPU when CuPy sees one, else the CPU")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the graph on this dask.distributed scheduler")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except GpuevalError as e:
        print(f"gpueval: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `gpueval config x | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def cmd_score(args) -> int:
    from gpueval import api
    from gpueval.config import load_config

    cfg = load_config(args.challenge, args.config, args.overrides)  # unknown keys: exit 2 now
    if args.workers < 0:
        raise UsageError(f"--workers must be 0 (threads) or a number of processes, "
                         f"not {args.workers}")
    check_format(args.format, args.challenge)
    if args.format != "gpueval" and not args.json:
        raise UsageError(f"--format {args.format} writes a file: give --json OUT")
    # outputs are checked before scoring: an hour of scoring must not end in a traceback
    for option, out in (("--json", args.json), ("--report", args.report)):
        if out:
            prepare_output(out, option)
    result = api.score(args.challenge, args.truth, args.submission, config=cfg,
                       device=args.device, scheduler=args.scheduler,
                       progress=not args.quiet, workers=args.workers)
    if args.json and (args.format == "gpueval" or result.status == "ok"):
        # a platform layout has no rejected form: nothing is written and the exit is 3
        _write_output(lambda out: write_format(result, args.format, out), args.json, "--json")
    if args.report:
        _write_report(result, args.report, truth=args.truth, submission=args.submission,
                      quiet=args.quiet, url_prefix=args.url_prefix)
    if not args.quiet:
        print(format_table(result))
        print_warnings(result.warnings)
    elif result.error:
        print(f"gpueval: rejected: {result.error}", file=sys.stderr)
    return 0 if result.status == "ok" else Rejected.exit_code


def cmd_validate(args) -> int:
    from gpueval import api

    try:
        notes = api.validate(args.challenge, args.submission, truth=args.truth,
                             config=args.config, overrides=args.overrides)
    except Rejected as e:
        print(f"rejected: {e}")
        return Rejected.exit_code
    for n in notes or []:
        print(n)
    warnings = list(getattr(notes, "warnings", []))
    print_warnings(warnings)
    if args.strict and warnings:
        print(f"rejected (--strict): {len(warnings)} warning(s)")
        return Rejected.exit_code
    print("valid" if not warnings else f"valid, with {len(warnings)} warning(s)")
    return 0


def cmd_config(args) -> int:
    from gpueval.challenges import get_challenge
    from gpueval.config import format_config, load_config

    cfg = load_config(args.challenge, args.config, args.overrides)
    # as scoring resolves it (CellMap's ``version`` selects a variant)
    cfg = getattr(get_challenge(args.challenge), "resolve_config", dict)(cfg)
    print(format_config(args.challenge, cfg))
    return 0


def print_warnings(warnings: Sequence[str]) -> None:
    """Print each warning on stderr as ``warning: <line>``."""
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def prepare_output(out: str | Path, option: str = "--json") -> Path:
    """Make sure a result can be written to ``out``, creating its folder if missing.

    Called before scoring so a bad output path costs nothing.

    Raises
    ------
    UsageError
        The folder cannot be created, or ``out`` is an existing folder or not writable (exit 2).
    """
    path = Path(out)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{option} {out}: cannot create the folder {parent} "
                         f"({e.strerror or e})") from e
    if path.is_dir():
        raise UsageError(f"{option} {out} is a folder; give a file name")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {out}: the folder {parent} is not writable")
    return path


def _write_output(write, out: str, option: str) -> None:
    try:
        write(out)
    except OSError as e:  # vanished or filled up during scoring: still a contract exit code
        raise UsageError(f"{option} {out}: cannot write ({e.strerror or e})") from e


def cmd_rescore(args) -> int:
    try:
        from gpueval import rescore
    except ImportError as e:  # pragma: no cover - present in a complete install
        raise UsageError(f"rescore is not available: {e}") from e
    return rescore.run_cli(args)


def cmd_leaderboard(args) -> int:
    from gpueval import rescore

    return rescore.leaderboard_cli(args)


def cmd_bench(args) -> int:
    from gpueval import bench
    from gpueval.backend import resolve_device

    workloads = bench.load_all()
    if args.list:
        for name, wl in sorted(workloads.items()):
            print(f"{name:<22} {wl.description}")
        return 0
    names = list(args.workloads)
    quick = not names
    if quick:
        names = list(bench.QUICK)
    elif names == ["all"]:
        names = sorted(workloads)
    unknown = [w for w in names if w not in workloads]
    if unknown:
        raise UsageError(f"unknown workload(s) {', '.join(unknown)}; see gpueval bench --list")
    scale = args.scale if args.scale is not None else (bench.QUICK_SCALE if quick else 1.0)
    device = resolve_device(args.device)
    if quick:
        print(f"quick set at --scale {scale:g} ({', '.join(names)}); `gpueval bench all` or "
              "`gpueval bench NAME ...` runs full sizes, `gpueval bench --list` names them",
              file=sys.stderr, flush=True)
    records = []
    for name in names:
        rec = bench.run_isolated(name, device, scale)
        records.append(rec)
        print(_bench_line(rec), flush=True)
    out = {"machine": bench.machine_info(), "results": records}
    if args.json:
        Path(args.json).write_text(json.dumps(to_jsonable(out), indent=2) + "\n")
    return 0 if not any(r.get("error") for r in records) else 1


def _bench_line(rec: dict) -> str:
    if rec.get("error"):
        return f"{rec['workload']:<22} FAILED: {rec['error']}"
    vps = rec.get("voxels_per_s")
    parts = [f"{rec['workload']:<22}", f"{rec['seconds']:8.3f} s"]
    if vps:
        parts.append(f"{vps / 1e6:9.1f} MVx/s")
    parts.append(f"peak RSS {rec['peak_rss_bytes'] / 2**20:7.0f} MiB")
    if rec.get("speedup_vs_reference"):
        parts.append(f"x{rec['speedup_vs_reference']:.1f} vs {rec.get('reference', 'reference')}")
    if "check" in rec:
        parts.append("equal" if rec["check"] else "MISMATCH")
    return "  ".join(parts)


def cmd_demo(args) -> int:
    from gpueval.demo import run_demo

    result = run_demo(size=args.size, device=args.device, report=args.report)
    if args.json:
        result.write_json(args.json)
    print(format_table(result, max_items=30))
    return 0


def cmd_skeleton(args) -> int:
    from gpueval.io.skeleton import convert_skeleton

    convert_skeleton(args.source, args.dest)
    print(f"wrote {args.dest}")
    return 0


def cmd_report(args) -> int:
    result = Result.from_dict(json.loads(Path(args.result).read_text()))
    _write_report(result, args.output, truth=args.truth, submission=args.submission,
                  url_prefix=args.url_prefix)
    return 0


def cmd_view(args) -> int:
    from gpueval.viewer import serve

    viewer = serve(args.challenge, args.truth, args.submission, item=args.item,
                   bind_address=args.bind, port=args.port)
    url = viewer.get_viewer_url()
    print(f"neuroglancer: {url}  (Ctrl-C stops the server)", flush=True)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        import threading

        threading.Event().wait()  # the server runs in neuroglancer's thread until Ctrl-C
    except KeyboardInterrupt:
        pass
    return 0


def _write_report(result: Result, out: str, quiet: bool = False, **inputs) -> None:
    try:
        from gpueval.report import write_report
    except ImportError as e:  # pragma: no cover
        raise UsageError(f"reports are not available: {e}") from e
    _write_output(lambda o: write_report(result, o, **inputs), out, "--report")
    if not quiet:
        print(f"report written to {out}", file=sys.stderr)


COMMANDS = {
    "score": cmd_score, "validate": cmd_validate, "rescore": cmd_rescore, "bench": cmd_bench,
    "demo": cmd_demo, "skeleton": cmd_skeleton, "leaderboard": cmd_leaderboard,
    "report": cmd_report, "config": cmd_config, "view": cmd_view,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
