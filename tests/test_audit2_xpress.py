"""Second audit of the XPRESS scorer against ``shared/specs/xpress.md``: hand-checked edge cases.

Every expected value below is worked out by hand from the spec (or, for the component
numbering, by ``networkx.connected_components`` itself), never taken from gpueval's output.
Grids are tiny (a row of voxels along x) so each node's voxel can be read off the positions.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import h5py
import networkx as nx
import numpy as np
import pytest

from gpueval.api import score
from gpueval.challenges import xpress
from gpueval.config import load_config
from gpueval.io.skeleton import load_skeleton

VS10 = (10, 10, 10)


def _write(tmp: Path, seg, vs, off, ids, pos, edges, *, pickled=False,
           name="submission") -> tuple[Path, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    truth = tmp / "skel.npz"
    pos = np.asarray(pos, float).reshape(-1, 3)
    if pickled:  # the official form: a pickled networkx.Graph, insertion order = graph order
        g = nx.Graph()
        for n, p in zip(ids, pos, strict=True):
            g.add_node(int(n), position=tuple(float(v) for v in p))
        g.add_edges_from((int(u), int(v)) for u, v in edges)
        truth.write_bytes(pickle.dumps(g))
    else:
        np.savez(truth, node_ids=np.asarray(ids, np.int64), positions=pos,
                 edges=np.asarray(edges, np.int64).reshape(-1, 2))
    sub = tmp / f"{name}.h5"
    with h5py.File(sub, "w") as f:
        d = f.create_dataset("submission", data=np.asarray(seg), chunks=True)
        d.attrs["resolution"] = vs
        d.attrs["offset"] = off
    return truth, sub


def _score(truth, sub, **ov):
    r = score("xpress", truth, sub, overrides={"roi": "none", **ov}, device="cpu")
    return r


def _table(truth, sub, **ov):
    settings = xpress._settings(load_config("xpress", overrides={"roi": "none", **ov}))
    s = xpress.open_submission(sub, settings)
    return xpress.node_table(load_skeleton(truth), s, settings)


def _row(labels) -> np.ndarray:
    """A (1, 1, n) uint64 volume: voxel i along x holds labels[i]."""
    return np.asarray(labels, np.uint64).reshape(1, 1, -1)


def _x(*xs, y=5.0, z=5.0) -> list:
    return [[x, y, z] for x in xs]


# --------------------------------------------------------------------------------------------
# §2 node -> voxel: truncate toward zero, inside test on truncated values, floor


def test_negative_coordinates_and_roi_faces(tmp_path):
    """Offset -20 nm, voxel 10 nm, 4 voxels along x: the ROI is [-20, 20) nm.

    x = -20.5 truncates to -20 (inside, voxel 0); -21.0 is outside; -0.5 truncates to 0
    (voxel 2, not 1); 19.999 -> 19 (voxel 3); 20.0 lies on the end face (outside);
    -9.99 -> -9 (voxel 1)."""
    truth, sub = _write(tmp_path, _row([11, 12, 13, 14]), VS10, (-10, -10, -20),
                        range(6), _x(-20.5, -21.0, -0.5, 19.999, 20.0, -9.99, y=-5, z=-5),
                        [])
    t = _table(truth, sub)
    assert t.segment_ids.tolist() == [11, 13, 14, 12]
    assert _score(truth, sub).metrics["n_nodes_in_roi"] == 4


def test_y_z_faces_and_zero_crossing(tmp_path):
    """int() truncates toward zero, so -0.9 nm on y and z is still inside a grid starting at 0,
    while y = 10.0 (end face of a 1-voxel axis) is outside."""
    truth, sub = _write(tmp_path, _row([7, 8]), VS10, (0, 0, 0), [1, 2, 3],
                        [[5, -0.9, -0.9], [15, 10.0, 5], [15, 9.9, 9.99]], [])
    t = _table(truth, sub)
    assert t.segment_ids.tolist() == [7, 8]


def test_truncated_anisotropic_grid_attributes(tmp_path):
    """resolution (12.7, 10.2, 6.9) -> (12, 10, 6) nm z,y,x; offset (24.5, 0.7, -0.3) ->
    (24, 0, 0). Node (x, y, z) = (13.5, 9.99, 36.0): truncated (z, y, x) = (36, 9, 13),
    index ((36-24)//12, 9//10, 13//6) = (1, 0, 2). Untruncated 6.9 would give x index 1."""
    seg = np.arange(1, 17, dtype=np.uint64).reshape(2, 2, 4)
    truth, sub = _write(tmp_path, seg, (12.7, 10.2, 6.9), (24.5, 0.7, -0.3), [1],
                        [[13.5, 9.99, 36.0]], [])
    assert _table(truth, sub).segment_ids.tolist() == [int(seg[1, 0, 2])]


def test_offset_not_on_the_voxel_grid_is_rejected(tmp_path):
    """§2.1: all ROIs must be multiples of the voxel size (the official daisy asserts), the
    array's own ROI included: offset 5 nm with 10 nm voxels is never scored officially."""
    truth, sub = _write(tmp_path, _row([5, 5, 5, 5]), VS10, (0, 0, 5), [1, 2],
                        _x(6, 16), [[1, 2]])
    r = _score(truth, sub)
    assert r.status == "rejected" and "multiple of the voxel size" in r.error
    assert "\n" not in r.error
    # truncation first: offset 10.9 -> 10 is on the grid
    truth, sub = _write(tmp_path / "ok", _row([5, 5, 5, 5]), VS10, (0, 0, 10.9), [1, 2],
                        _x(16, 26), [[1, 2]])
    assert _score(truth, sub).status == "ok"


# --------------------------------------------------------------------------------------------
# §2 crop, downsampling, max label and fresh ids


def test_downsampling_floors_roi_begin_and_max_of_strided_crop(tmp_path):
    """Labels along x: [1, 2, 3, 4, 5, 0, 7, 8] at 10 nm. ROI x = [10, 70) nm (voxels 1..6:
    [2, 3, 4, 5, 0, 7]); downsampling 2 keeps [2, 4, 0] at 20 nm, and the ROI begin 10 is
    floored to 0 on the 20 nm grid, so the scored grid is x = [0, 60) nm.

    * x = 5 (outside the crop before downsampling) is now inside, voxel 0 -> label 2;
    * x = 25 -> voxel 1 -> 4; x = 45 and 59.9 -> voxel 2, background -> one fresh id;
    * x = 60 and 75 are outside.
    next_id = max of the strided crop + 1 = 5 (not 8 from the crop, 9 from the array)."""
    seg = _row([1, 2, 3, 4, 5, 0, 7, 8])
    truth, sub = _write(tmp_path, seg, VS10, (0, 0, 0), range(6),
                        _x(5, 25, 45, 59.9, 60, 75), [])
    roi = {"begin": [0, 0, 10], "shape": [10, 10, 60]}
    t = _table(truth, sub, roi=roi, downsampling=2)
    assert t.segment_ids.tolist() == [2, 4, 5, 5]
    assert t.next_id == 5


def test_fresh_ids_per_voxel_in_graph_order(tmp_path):
    """All background, max 0 -> next_id 1. Graph order visits voxels 2, 0, 2, 3, 0: fresh ids
    1, 2, 1, 3, 2 (a node in an already relabelled voxel reads that voxel's id)."""
    truth, sub = _write(tmp_path, _row([0, 0, 0, 0]), VS10, (0, 0, 0), [50, 3, 7, 1, 9],
                        _x(21, 1, 29, 31, 9), [])
    assert _table(truth, sub).segment_ids.tolist() == [1, 2, 1, 3, 2]
    # a label outside the ROI does not raise next_id; one inside it (no node there) does
    seg = _row([0, 0, 0, 0, 40])
    truth, sub = _write(tmp_path / "b", seg, VS10, (0, 0, 0), [50, 3], _x(21, 1), [])
    roi = {"begin": [0, 0, 0], "shape": [10, 10, 40]}
    assert _table(truth, sub, roi=roi).segment_ids.tolist() == [1, 2]
    assert _table(truth, sub).segment_ids.tolist() == [41, 42]


def test_fresh_ids_beyond_uint64_rejected(tmp_path):
    """max label 2⁶⁴−1: the official cannot write 2⁶⁴ into a uint64 voxel (OverflowError);
    without a background node nothing is written and the case is scored."""
    top = 2**64 - 1
    truth, sub = _write(tmp_path, _row([top, 5, 0]), VS10, (0, 0, 0), [1, 2], _x(11, 21),
                        [[1, 2]])
    r = _score(truth, sub)
    assert r.status == "rejected" and "\n" not in r.error
    truth, sub = _write(tmp_path / "b", _row([top, 5, 5]), VS10, (0, 0, 0), [1, 2],
                        _x(11, 21), [[1, 2]])
    r = _score(truth, sub)
    assert r.status == "ok" and r.metrics["erl"] == pytest.approx(10.0)


def test_fresh_ids_near_2_64_in_rand(tmp_path):
    """Fresh ids 2⁶⁴−3, 2⁶⁴−2, 2⁶⁴−1 (max 2⁶⁴−4): Rand/VOI count them as distinct labels.
    Components: A (x=1, voxel 0) = 0; B (x=11 -> 21) = 1; C (x=12) = 2. Voxel 1 holds B and
    C -> truth 2, voxel 2 -> truth 1, voxel 0 truth 0 (excluded): two counted voxels with
    distinct truth and test -> Rand 1, 1; H(a,b) = 1, VOI 0, NVI 0."""
    truth, sub = _write(tmp_path, _row([0, 0, 0, 2**64 - 4]), VS10, (0, 0, 0), [1, 2, 3, 4],
                        _x(1, 11, 12, 21), [[2, 4]])
    r = _score(truth, sub, compat="corrected")
    m = r.metrics
    assert (m["rand_split"], m["rand_merge"], m["nvi_split"], m["nvi_merge"]) == (1, 1, 0, 0)
    assert m["erl"] == 0.0 and m["n_neurons"] == 3


# --------------------------------------------------------------------------------------------
# §2.5 skeleton ids, §5 Rand/VOI on node voxels


def test_skeleton_ids_are_networkx_component_order(tmp_path):
    """Skeleton ids = index in networkx.connected_components order, with isolated nodes,
    a self-loop, a duplicate (reversed) edge and nodes dropped outside the ROI (which splits
    a chain into two skeletons). The expected numbering comes from networkx itself."""
    rng = np.random.default_rng(11)
    n = 40
    ids = rng.permutation(1000)[:n]
    xs = rng.uniform(0, 100, n)
    xs[[5, 17]] = 150.0  # outside the 10-voxel row
    edges = [(ids[i], ids[i + 1]) for i in range(0, n - 1) if rng.random() < 0.6]
    edges += [(ids[3], ids[3]), (ids[8], ids[7])]
    truth, sub = _write(tmp_path, _row(np.arange(1, 11)), VS10, (0, 0, 0), ids, _x(*xs),
                        edges, pickled=True)
    g = nx.Graph()
    g.add_nodes_from(int(i) for i in ids)
    g.add_edges_from((int(u), int(v)) for u, v in edges)
    g.remove_nodes_from([int(ids[5]), int(ids[17])])
    comp = {v: k for k, c in enumerate(nx.connected_components(g)) for v in c}
    want = [comp[int(i)] for i in ids if int(i) in comp]
    t = _table(truth, sub)
    assert t.skeleton_ids.tolist() == want
    assert t.n_skeletons == nx.number_connected_components(g)


def test_voxel_of_three_components_takes_the_largest_index(tmp_path):
    """Labels along x: [9, 5, 6, 6, 6] at 10 nm. Graph order and components:
    a0 x=1 (A=0), b0 x=11, b1 x=21 (B=1), c0 x=31, c1 x=41 (C=2), a1 x=42 (A), b2 x=43 (B);
    edges a0-a1, b0-b1, c0-c1, b1-b2. Voxel 4 holds A, C, B: truth = max(0, 2, 1) = 2 (not the
    component of its last node, 1). Counted (truth, test) voxels: (1,5) (1,6) (2,6) (2,6);
    voxel 0 (truth 0) is not counted.

    n = [[1, 1], [0, 2]]: Σn² = 6, Σa² = 8, Σb² = 10 -> Rand split 3/4, merge 3/5;
    H(a,b) = 1.5, H(a) = 1, H(b) = 2 - 0.75·log2(3) -> VOI split 0.5, merge 1.5 - H(b).
    ERL: segment 6 holds A, B, C (merging), so every edge is split or merged: ERL 0 with
    T = 41 + 10 + 10 + 22 = 83 > 0, erl_norm 0."""
    truth, sub = _write(tmp_path, _row([9, 5, 6, 6, 6]), VS10, (0, 0, 0),
                        [1, 2, 3, 4, 5, 6, 7], _x(1, 11, 21, 31, 41, 42, 43),
                        [[1, 6], [2, 3], [4, 5], [3, 7]])
    m = _score(truth, sub).metrics
    hb = 2 - 0.75 * math.log2(3)
    want = {"rand_split": 0.75, "rand_merge": 0.6, "voi_split": 0.5, "voi_merge": 1.5 - hb,
            "nvi_split": 0.5 / 1.5, "nvi_merge": (1.5 - hb) / 1.5, "erl": 0.0,
            "erl_norm": 0.0, "total_length": 83.0, "n_neurons": 3}
    for k, v in want.items():
        assert m[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k
    assert m["xpress_erl_rand"] == pytest.approx(0.5 * 0.5 * (0.75 + 0.6))
    xv = 1 - 0.5 * (0.5 / 1.5 + (1.5 - hb) / 1.5)
    assert m["xpress_erl_voi"] == pytest.approx(0.5 * xv)


def test_only_isolated_nodes(tmp_path):
    """Three isolated nodes in one segment (voxels 0, 1, 2): three skeletons, no edges.
    ERL = 0 (no skeleton enters), mean length over no skeleton = NaN -> erl_norm NaN.
    Rand: counted (1,5) (2,5): split 2/2 = 1, merge 2/4 = 0.5; VOI split 0, merge 1."""
    truth, sub = _write(tmp_path, _row([5, 5, 5]), VS10, (0, 0, 0), [1, 2, 3],
                        _x(1, 15, 25), [])
    r = _score(truth, sub)
    m = r.metrics
    assert m["erl"] == 0.0 and math.isnan(m["erl_norm"]) and math.isnan(m["mean_length"])
    assert (m["rand_split"], m["rand_merge"], m["voi_split"], m["voi_merge"]) == (1, .5, 0, 1)
    assert math.isnan(r.score) and m["n_neurons"] == 3


@pytest.mark.parametrize("where", ["outside", "none"])
def test_no_node_in_the_roi(tmp_path, where):
    """Every node outside (or no node at all): nothing to score, NaN, no crash."""
    ids, pos, edges = ([1, 2], _x(100, 120), [[1, 2]]) if where == "outside" else \
        ([], np.zeros((0, 3)), [])
    truth, sub = _write(tmp_path, _row([5, 5]), VS10, (0, 0, 0), ids, pos, edges)
    r = _score(truth, sub)
    assert r.status == "ok", r.error
    assert r.metrics["n_neurons"] == 0 and r.items == []
    assert math.isnan(r.score) and math.isnan(r.metrics["erl_norm"])


# --------------------------------------------------------------------------------------------
# §3 ERL: self-loops, zero-length skeletons, float32 lengths


@pytest.mark.parametrize("pickled", [False, True])
def test_self_loops(tmp_path, pickled):
    """A self-loop is a zero-length edge. On an isolated node alone in its segment it is a
    correct edge of a skeleton with L_k = 0: 0·0/0 = NaN, ERL NaN (§3). On a node of a
    normal skeleton it adds length 0 and changes nothing: ERL = 10²/10 = 10."""
    seg = _row([3, 5, 5])
    pos = _x(1, 15, 25)
    truth, sub = _write(tmp_path, seg, VS10, (0, 0, 0), [1, 2, 3], pos, [[1, 1], [2, 3]],
                        pickled=pickled)
    m = _score(truth, sub).metrics
    assert math.isnan(m["erl"]) and math.isnan(m["xpress_erl_rand"])
    assert m["split_count"] == 0
    truth, sub = _write(tmp_path / "b", seg, VS10, (0, 0, 0), [1, 2, 3], pos,
                        [[2, 2], [2, 3], [3, 2]], pickled=pickled)
    m = _score(truth, sub).metrics
    assert m["erl"] == pytest.approx(10.0) and m["erl_norm"] == pytest.approx(1.0)
    assert m["total_length"] == pytest.approx(10.0)


def test_zero_length_skeleton_without_credit_adds_nothing(tmp_path):
    """A: two coincident nodes (x=1, edge of length 0) in segment 5; B: an isolated node in
    the same voxel -> segment 5 is merging, A has no correct edge, so no 0/0; C: x=21 -> 31
    in segment 7, length 10, correct. ERL = 10²/10 = 10, mean length 10 -> erl_norm 1.
    Without B, A's zero-length edge is correct: ERL NaN."""
    seg = _row([5, 0, 7, 7])
    truth, sub = _write(tmp_path, seg, VS10, (0, 0, 0), [1, 2, 3, 4, 5],
                        _x(1, 1, 2, 21, 31), [[1, 2], [4, 5]])
    m = _score(truth, sub).metrics
    assert m["erl"] == pytest.approx(10.0) and m["erl_norm"] == pytest.approx(1.0)
    truth, sub = _write(tmp_path / "b", seg, VS10, (0, 0, 0), [1, 2, 4, 5],
                        _x(1, 1, 21, 31), [[1, 2], [4, 5]])
    assert math.isnan(_score(truth, sub).metrics["erl"])


def test_all_skeletons_zero_length(tmp_path):
    """T = 0 and no skeleton with L_k > 0: mean length NaN, erl_norm and score NaN."""
    truth, sub = _write(tmp_path, _row([5, 5, 6]), VS10, (0, 0, 0), [1, 2, 3],
                        _x(1, 1, 2), [[1, 2]])
    m = _score(truth, sub).metrics
    assert m["total_length"] == 0.0
    assert math.isnan(m["erl_norm"]) and math.isnan(m["xpress_erl_rand"])


def test_edge_lengths_in_float32_at_large_coordinates(tmp_path):
    """x = 2²⁴+1 and 2²⁴+3.5 nm: as float32 they are 2²⁴ and 2²⁴+4 (spacing 2), so the edge
    is 4 nm long (float64: 2.5). One perfect skeleton: ERL = L = 4, erl_norm 1. The voxel
    lookup uses the exact (truncated) coordinates: 2²⁴+1 and 2²⁴+3 in 1 nm voxels from
    offset 2²⁴, voxels 1 and 3."""
    o = 2**24
    seg = _row([0, 7, 9, 7, 0])
    truth, sub = _write(tmp_path, seg, (1, 1, 1), (0, 0, o), [1, 2],
                        [[o + 1, 0.5, 0.5], [o + 3.5, 0.5, 0.5]], [[1, 2]])
    assert _table(truth, sub).segment_ids.tolist() == [7, 7]
    m = _score(truth, sub).metrics
    assert m["erl"] == 4.0 and m["total_length"] == 4.0 and m["erl_norm"] == 1.0

