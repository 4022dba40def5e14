"""XPRESS's report pictures, for :func:`gpueval.report.write_report`.

The densest slab of skeleton nodes: the submission's labels (one slice, read alone) with nodes
coloured by outcome, green correct, orange split, magenta merged (the colours of
:mod:`gpueval.pictures`). Pictures are chosen by the node table, and only the pixels shown are
read: the volume is never loaded.

Choices (pictures are diagnostics, not scores): node labels are gathered with ``fresh_ids:
nodes`` (only chunks holding nodes are read); a node is split when an incident edge changes
segment or it lies on background, merged when its segment also holds another skeleton's node
(merged wins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gpueval.challenges.xpress.layout import open_submission
from gpueval.challenges.xpress.score import _settings, node_table
from gpueval.io.skeleton import load_skeleton
from gpueval.pictures import GREEN, MAGENTA, ORANGE, Images
from gpueval.pictures import label_colours as _label_colours
from gpueval.pictures import pool_factor as _step
from gpueval.pictures import run_config as _config
from gpueval.result import Result


def report_images(result: Result, truth: str | Path, submission: str | Path,
                  config: dict[str, Any] | None = None) -> Images:
    """The challenge protocol's pictures: :func:`xpress_images` with its default slab and size.

    Parameters
    ----------
    result : Result
        The scored result (its items are not needed: the slab is chosen from the nodes).
    truth, submission : path
        The skeleton file and the submission container that were scored.
    config : dict, optional
        The config the score ran with; the shipped ``xpress.yaml`` when ``None``.

    Returns
    -------
    list of (title, RGB uint8 array)
        One picture, or none when no skeleton node lies in the scored ROI.
    """
    return xpress_images(result, truth, submission, config)


def xpress_images(result: Result, truth: str | Path, submission: str | Path,
                  config: dict[str, Any] | None = None, *, slab: int = 2,
                  max_side: int = 768) -> Images:
    """One slice of the submission at the densest slab of skeleton nodes, nodes coloured by
    outcome. Node labels are gathered from the chunks holding nodes only (``fresh_ids:
    nodes``: background nodes are marked split, whatever their fresh id).

    Parameters
    ----------
    result : Result
        The scored result (not read: the slab is chosen from the nodes).
    truth, submission : path
        The skeleton file and the submission container that were scored.
    config : dict, optional
        The config the score ran with; the shipped ``xpress.yaml`` when ``None``.
    slab : int
        Nodes within ``±slab`` slices of the shown one are drawn.
    max_side : int
        The slice is strided to at most this many pixels per side.

    Returns
    -------
    list of (title, RGB uint8 array)
        One picture, or none when no skeleton node lies in the scored ROI.
    """
    settings = dict(_settings(_config("xpress", config)), fresh_ids="nodes")
    skel = load_skeleton(truth)
    sub = open_submission(submission, settings)
    table = node_table(skel, sub, settings)
    if not len(table.voxel):
        return []
    outcome = node_outcomes(table.skeleton_ids, table.segment_ids, table.edges, table.next_id)
    zyx = np.stack(np.unravel_index(table.voxel, sub.shape), axis=1)
    counts = np.bincount(zyx[:, 0], minlength=sub.shape[0])
    window = np.convolve(counts, np.ones(2 * slab + 1, np.int64), mode="same")
    z = int(np.argmax(window))
    s = _step(sub.shape[1:], max_side)
    labels = np.asarray(sub.data[z, ::s, ::s])
    rgb = _label_colours(labels)
    near = np.abs(zyx[:, 0] - z) <= slab
    order = np.argsort(outcome[near], kind="stable")  # draw errors last (on top)
    ys, xs, oc = zyx[near][order, 1] // s, zyx[near][order, 2] // s, outcome[near][order]
    colours = np.array([GREEN, ORANGE, MAGENTA], np.uint8)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy = np.clip(ys + dy, 0, rgb.shape[0] - 1)
            xx = np.clip(xs + dx, 0, rgb.shape[1] - 1)
            rgb[yy, xx] = colours[oc]
    n = np.bincount(oc, minlength=3)
    return [(f"submission z={z} with {int(near.sum())} skeleton nodes within ±{slab} slices: "
             f"{n[0]} correct (green), {n[1]} split (orange), {n[2]} merged (magenta)", rgb)]


def node_outcomes(skeleton_ids: np.ndarray, segment_ids: np.ndarray, edges: np.ndarray,
                  next_id: int) -> np.ndarray:
    """Per node: 0 correct, 1 split (an incident edge changes segment, or background),
    2 merged (its segment also covers another skeleton).

    Parameters
    ----------
    skeleton_ids, segment_ids : ndarray
        Per node: its skeleton (component) and segment (fresh ids ``≥ next_id`` for
        background).
    edges : ndarray
        ``(E, 2)`` node positions within the arrays.
    next_id : int
        The first fresh id (background nodes are split, never merged).

    Returns
    -------
    ndarray
        int64 outcome per node; merged wins over split.
    """
    seg = np.asarray(segment_ids, np.uint64)
    sk = np.asarray(skeleton_ids, np.int64)
    out = np.zeros(len(seg), np.int64)
    if len(edges):
        e = np.asarray(edges)
        cut = seg[e[:, 0]] != seg[e[:, 1]]
        out[e[cut].ravel()] = 1
    if next_id < 2**64:
        out[seg >= np.uint64(next_id)] = 1
    pairs = np.unique(np.stack([seg, sk.astype(np.uint64)], axis=1), axis=0)
    segs, n = np.unique(pairs[:, 0], return_counts=True)
    merged = np.isin(seg, segs[n > 1]) & (seg < np.uint64(min(next_id, 2**64 - 1)))
    out[merged] = 2
    return out
