"""Before/after/floor whole-process timings, interleaved round by round (issue #19, session 6).

On a shared machine the load changes within a minute, so one ``gpueval bench`` run per tree
compares different loads. Here every round runs, back to back: ``gpueval score`` from the
"before" tree, from the "after" tree, and each decode floor, for ``urisc_lzw`` (10000² LZW
pair, one row per strip) and ``xpress_official`` (512³ uint64 HDF5-LZF in h5py's default
chunks + a pickled 102,400-node graph); then start-up to the first byte read
(:mod:`gpueval.bench.startup`) for U-RISC, XPRESS and REFUGE, both trees alternately.
Ratios are taken within a round (same load); the load average is recorded per round.

Usage: python benchmarks/floor_interleaved.py BEFORE_TREE AFTER_TREE DATA_DIR ROUNDS OUT.json

``*_TREE`` are checkouts holding ``gpueval/`` (compile their bytecode first,
``python -m compileall -q TREE/gpueval``, as an installed package has it); DATA_DIR is made
with the workloads' own writers when empty. Peak RSS is each process's own (``os.wait4``
through :mod:`gpueval.bench.floor`'s launcher).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gpueval.bench import floor, startup  # noqa: E402

PY = sys.executable


def _build(data: Path) -> None:
    from gpueval.bench import urisc, xpress

    if (data / "submission.h5").exists():
        return
    (data / "gt").mkdir(parents=True, exist_ok=True)
    (data / "sub").mkdir(exist_ok=True)
    urisc._write_lzw(data / "gt" / "img.tif", 10000, 10000, shift=0)
    urisc._write_lzw(data / "sub" / "img.tiff", 10000, 10000, shift=1)
    n, n_axons, per_axon, vox, labels = xpress._axons(1.0)
    xpress._save_graph_pickle(data / "XPRESS_test_skels.npz", vox, n_axons, per_axon)
    xpress._write_h5(data / "submission.h5", (n,) * 3, True,
                     xpress._dense_blocks(n, 64, vox, labels))


def _gpueval(tree: str, args: list[str]) -> list[str]:
    code = (f"import sys; sys.path.insert(0, {tree!r}); import runpy; "
            f"sys.argv = ['gpueval', *{args!r}]; "
            "runpy.run_module('gpueval', run_name='__main__', alter_sys=True)")
    return [PY, "-c", code]


def main(before: str, after: str, data: Path, rounds: int, out: Path) -> None:
    _build(data)
    trees = {"before": before, "after": after}
    urisc_args = ["score", "urisc", "--truth", str(data / "gt"), "--submission",
                  str(data / "sub"), "--device", "cpu", "--quiet", "--json",
                  str(data / "u.json")]
    xpress_args = ["score", "xpress", "--truth", str(data / "XPRESS_test_skels.npz"),
                   "--submission", str(data / "submission.h5"), "--set", "roi=none",
                   "--device", "cpu", "--quiet", "--json", str(data / "x.json")]
    images = [str(data / "gt" / "img.tif"), str(data / "sub" / "img.tiff")]
    floors = {
        "urisc floor tifffile": [PY, "-c", "import os, sys, tifffile\nfor p in sys.argv[1:]: "
                                 "tifffile.imread(p, maxworkers=os.cpu_count())", *images],
        "urisc floor strips": [PY, str(HERE / "decode_floor_urisc_strips.py"), *images],
        "xpress floor": [PY, str(HERE / "decode_floor_xpress.py"),
                         str(data / "XPRESS_test_skels.npz"), str(data / "submission.h5"),
                         "submission"],
    }
    runs: dict[str, list[tuple[float, int]]] = {}
    loads = []

    def run(name: str, argv: list[str]) -> None:
        seconds, rss, code = floor.run_process(argv)
        if code:
            raise RuntimeError(f"{name} exited with {code}")
        runs.setdefault(name, []).append((seconds, rss))

    for r in range(rounds):
        for tree in trees:
            run(f"urisc {tree}", _gpueval(trees[tree], urisc_args))
        run("urisc floor tifffile", floors["urisc floor tifffile"])
        run("urisc floor strips", floors["urisc floor strips"])
        for tree in trees:
            run(f"xpress {tree}", _gpueval(trees[tree], xpress_args))
        run("xpress floor", floors["xpress floor"])
        loads.append(os.getloadavg())
        print(f"round {r}: load {loads[-1][0]:.2f}", flush=True)
    first_read: dict[str, list[float]] = {}
    small = data / "startup"
    shutil.rmtree(small, ignore_errors=True)
    for name, build in startup.CHALLENGES.items():
        (small / name).mkdir(parents=True)
        argv, roots = build(small / name)
        argv += ["--device", "cpu", "--quiet", "--json", str(small / f"{name}.json")]
        for _ in range(5):
            for tree in trees:
                probe = f"import sys; sys.path.insert(0, {trees[tree]!r})\n" + startup.PROBE
                seconds, _ = startup._run([PY, "-c", probe, os.pathsep.join(map(str, roots)),
                                           *argv])
                first_read.setdefault(f"{name} {tree}", []).append(seconds)
    out.write_text(json.dumps({
        "trees": trees, "load_average_per_round": loads,
        "runs": {k: {"seconds": [s for s, _ in v], "peak_rss_bytes": [m for _, m in v]}
                 for k, v in runs.items()},
        "startup_first_read_seconds": first_read}, indent=1))


if __name__ == "__main__":
    b, a, d, n, o = sys.argv[1:6]
    main(b, a, Path(d), int(n), Path(o))
