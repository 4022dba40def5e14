"""Progress: named phases, the current item, work-weighted bars, silence when asked."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import dask
import dask.array as da
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gpueval import progress


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_phase_is_silent_off_a_terminal(capsys):
    with progress.phase("labelling", total=10) as ph:
        ph.update(10)
    assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal


def test_forced_phase_names_phase_item_and_weighted_total():
    out = Tty()
    with progress.enabled(True, stream=out), \
            progress.phase("labelling", total=2_000_000, unit="vx", item="crop1/mito") as ph:
        ph._bar.delay = 0  # draw now rather than after one second
        ph.update(500_000)
        ph._bar.refresh()
        text = out.getvalue()
    assert "labelling crop1/mito" in text
    assert "25%" in text  # weighted by voxels: 0.5M of 2M, not a task count
    assert ph.done == 500_000


def test_disabled_beats_a_terminal():
    out = Tty()
    with progress.enabled(False, stream=out), progress.phase("reading", total=4) as ph:
        assert not ph.shown
        ph.update(4)
    assert out.getvalue() == ""


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 1000), max_size=40))
def test_advance_from_worker_threads_sums(parts):
    with progress.phase("counting", total=sum(parts)) as ph, ThreadPoolExecutor(4) as pool:
        list(pool.map(progress.advance, parts))
        assert ph.done == sum(parts)
    assert progress.current() is None
    progress.advance(5)  # outside any phase: a no-op, never an error


def test_phases_nest_and_items_change():
    with progress.phase("scoring", item="cellmap") as outer:
        assert progress.current() is outer
        with progress.phase("matching") as inner:
            progress.set_item("crop2/nuc")
            assert progress.current() is inner and inner.label == "matching crop2/nuc"
        assert progress.current() is outer and outer.label == "scoring cellmap"


def test_dask_graph_bar_is_named_after_the_phase():
    seen = []

    class Recording(progress.TqdmCallback):
        def _posttask(self, key, result, dsk, state, worker_id):
            super()._posttask(key, result, dsk, state, worker_id)
            seen.append((self._bar.desc, self._bar.n, self._bar.total, self._bar.disable))

    x = da.ones((64, 64), chunks=8)
    with progress.enabled(True, stream=Tty()), progress.phase("distances", item="case7"), \
            Recording() as cb:
        total = dask.compute((x + 1).sum(), scheduler="sync")[0]
    assert total == 2 * 64 * 64
    assert {desc for desc, *_ in seen} == {"distances case7"}
    assert not seen[0][3]  # drawn: forced onto a terminal-like stream
    assert seen[-1][1] == seen[-1][2] == len(seen)  # one graph, every task counted once
    assert cb._bar is None  # closed at the end of the graph


def test_phase_with_a_total_is_not_driven_by_tasks():
    with progress.enabled(True, stream=Tty()), progress.phase("reading", total=100,
                                                               unit="B") as ph:
        with progress.TqdmCallback() as cb:
            dask.compute(da.ones(10, chunks=2).sum(), scheduler="sync")
            assert cb._bar is None
    assert ph.done == 0


def test_progress_iter_names_items():
    seen = list(progress.progress_iter(["a", "b"], "cases"))
    assert seen == ["a", "b"]
    assert list(progress.progress_iter(iter(range(3)), "images", enabled=False)) == [0, 1, 2]


def test_quiet_score_prints_nothing_but_errors(tmp_path, capsys):
    from gpueval.cli import main

    truth, sub = tmp_path / "t", tmp_path / "s"
    truth.mkdir()
    sub.mkdir()
    gts = np.zeros((4, 8, 8), np.uint8)
    gts[1:3, 2:6, 2:6] = 1
    np.savez(truth / "c.npz", gts=gts, spacing=np.ones(3))
    np.savez(sub / "c.npz", segs=gts)
    assert main(["score", "medsegfm", "--truth", str(truth), "--submission", str(sub),
                 "--device", "cpu", "--quiet"]) == 0
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_a_named_pass_counts_voxels_not_tasks(monkeypatch):
    """``map_reduce(..., progress=True, phase=...)``: the bar of that phase ends at the number
    of voxels of the volume, whatever the chunking (issue #23: weighted by work)."""
    import dask.array as da
    import numpy as np

    from gpueval import engine, progress

    x = da.ones((10, 12, 7), chunks=(3, 5, 4), dtype=np.uint8)
    seen = {}
    real = progress.Phase.update

    def update(self, n=1):
        seen[self.name] = seen.get(self.name, 0) + n
        real(self, n)

    monkeypatch.setattr(progress.Phase, "update", update)
    total = engine.map_reduce(lambda b: int(b.sum()), [x], sum, progress=True, phase="counting")
    assert total == 10 * 12 * 7 and seen == {"counting": 10 * 12 * 7}


def test_scorers_name_their_phase_and_current_item(tmp_path, monkeypatch):
    """MedSegFM counts cases and U-RISC images on a named bar that shows the current one;
    the engine's voxel reports do not leak into those counts."""
    import shutil

    import numpy as np
    from test_hostile_e2e import medsegfm_setup, urisc_setup

    from gpueval import api, progress

    log: list[tuple[str, str, float]] = []
    real_update, real_item = progress.Phase.update, progress.Phase.set_item
    monkeypatch.setattr(progress.Phase, "update",
                        lambda self, n=1: (log.append((self.name, "n", n)),
                                           real_update(self, n))[1])
    monkeypatch.setattr(progress.Phase, "set_item",
                        lambda self, item: (log.append((self.name, "item", item)),
                                            real_item(self, item))[1])

    (tmp_path / "m").mkdir()
    (tmp_path / "u").mkdir()
    truth, sub, _ = medsegfm_setup(tmp_path / "m")
    shutil.copy(truth / "case1.npz", truth / "case2.npz")
    np.savez(sub / "case2.npz", segs=np.load(sub / "case1.npz")["segs"])
    assert api.score("medsegfm", truth, sub, device="cpu").status == "ok"
    cases = [e for e in log if e[0] == "cases"]
    assert [e[2] for e in cases if e[1] == "item"] == ["case1", "case2"]
    assert sum(e[2] for e in cases if e[1] == "n") == 2

    log.clear()
    gt, pred, _ = urisc_setup(tmp_path / "u")
    assert api.score("urisc", gt, pred, device="cpu").status == "ok"
    images = [e for e in log if e[0] == "images"]
    assert [e[2] for e in images if e[1] == "item"] == ["img"]
    assert sum(e[2] for e in images if e[1] == "n") == 1
