"""MedSegFM's text-track instance scoring (``instance_label = 1``; spec §6): TP/FP/FN, F1, DSC_TP.

Background 0 is dropped on both sides, the remaining ids relabelled sequentially (their rank),
and GT and predicted instances matched one-to-one at IoU ≥ ``iou_threshold``
(:func:`gpueval.metrics.matching.match_iou_threshold`); DSC_TP is the mean DSC of the matched
pairs.

Choice where the spec is silent: a **binary text prediction** with values ``{a, b}`` is split
into connected components by labelling the non-zero voxels of the prediction itself
(6-connectivity, cc3d's order), as in the official branch — chunk by chunk
(:func:`gpueval.kernels.components.label_chunked`), the prediction never held whole.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from gpueval.challenges.medsegfm.chunked import _lazy, pair_table
from gpueval.challenges.medsegfm.options import _Context
from gpueval.kernels.components import label_chunked
from gpueval.metrics.matching import match_iou_threshold
from gpueval.metrics.overlap import precision_recall_f


def instance_scores(ctx: _Context, gts: np.ndarray, segs: np.ndarray) -> dict[str, Any]:
    """TP/FP/FN, F1 and DSC_TP of one instance case (spec §6, steps 1–6)."""
    s = ctx.settings
    table = pair_table(ctx, gts, segs)
    pred_values = table.sizes_b()[0]
    if len(pred_values) == 2:  # exactly two distinct predicted values: binary
        segs = _binary_to_instances(ctx, segs, int(pred_values.max()), s["connectivity"],
                                    wrap=s["uint8_cast"])
        table = pair_table(ctx, gts, segs)
    gt_ids, gt_sizes = table.sizes_a()
    pr_ids, pr_sizes = table.sizes_b()
    gt_keep, pr_keep = gt_ids != 0, pr_ids != 0
    gt_ids, gt_sizes = gt_ids[gt_keep], gt_sizes[gt_keep]
    pr_ids, pr_sizes = pr_ids[pr_keep], pr_sizes[pr_keep]
    n_gt, n_pred = len(gt_ids), len(pr_ids)
    if n_pred == 0 or n_gt == 0:
        tp = 0
        fp = 0 if n_pred == 0 else n_pred
        fn = 0 if n_pred == 0 else n_gt
        dsc_tp = 0.0
    else:
        pairs = table.drop(a=0, b=0)
        gi = np.searchsorted(gt_ids, pairs.ids_a)  # sequential relabelling: rank of the id
        pj = np.searchsorted(pr_ids, pairs.ids_b)
        ov = pairs.counts.astype(np.float64)
        union = gt_sizes[gi] + pr_sizes[pj] - ov
        iou = ov / union
        mg, mp = match_iou_threshold(gi, pj, iou, n_gt, n_pred,
                                     threshold=s["iou_threshold"])
        tp = len(mg)
        fp, fn = n_pred - tp, n_gt - tp
        if tp:
            lookup = {(a, b): o for a, b, o in zip(gi.tolist(), pj.tolist(), ov.tolist(),
                                                   strict=True)}
            dices = [2 * lookup[(a, b)] / (gt_sizes[a] + pr_sizes[b])
                     for a, b in zip(mg.tolist(), mp.tolist(), strict=True)]
            dsc_tp = float(np.mean(dices))
        else:
            dsc_tp = 0.0
    precision, recall, f1 = precision_recall_f(tp, tp + fp, tp + fn)
    return {"tp": tp, "fp": fp, "fn": fn, "n_gt": n_gt, "n_pred": n_pred,
            "precision": precision, "recall": recall, "f1": f1, "dsc_tp": dsc_tp}


def _binary_to_instances(ctx: _Context, segs, seg_max: int, connectivity: int, *,
                         wrap: bool) -> da.Array:
    """Split the non-zero voxels of a two-valued prediction into connected components, ids
    offset by the prediction's maximum (uint8 wrap-around when ``wrap``, as officially).

    Chunk by chunk: :func:`gpueval.kernels.components.label_chunked` gives cc3d's labels
    (same ids, same order) without holding the prediction whole.
    """
    x = _lazy(segs, ctx.settings["chunk"])
    cc = label_chunked(x, connectivity, device=ctx.device, scheduler=ctx.scheduler).data
    out = da.where(cc > 0, cc.astype(np.int64) + seg_max, x.astype(np.int64))
    return out.astype(np.uint8) if wrap else out
