"""The warnings collector: one list per call, deduplicated, reaching Dask's worker threads."""

from __future__ import annotations

import dask
import dask.array as da

from gpueval.notices import collecting, warn
from gpueval.result import Result


def test_collects_once_and_only_inside():
    warn("outside: nobody collects this")
    with collecting() as got:
        warn("a  label was   ignored")
        warn("a label was ignored")
        warn("second")
    assert got == ["a label was ignored", "second"]


def test_nested_calls_keep_their_own_lists():
    with collecting() as outer:
        warn("outer")
        with collecting() as inner:
            warn("inner")
        warn("outer again")
    assert outer == ["outer", "outer again"] and inner == ["inner"]


def test_warn_from_dask_threads_is_collected():
    def block(x):
        warn("seen in a worker thread")
        return x

    with collecting() as got, dask.config.set(scheduler="threads"):
        da.ones((8, 8), chunks=4).map_blocks(block).sum().compute()
    assert got == ["seen in a worker thread"]


def test_result_json_always_has_warnings():
    r = Result("urisc", "v")
    assert r.to_dict()["warnings"] == []
    r.warnings.append("w")
    assert Result.from_dict(r.to_dict()).warnings == ["w"]
