"""One-to-one instance matching on sparse overlap pairs (pure formulas, no voxel arrays).

Both functions take the *sparse* list of overlapping (GT id, prediction id) pairs with their
IoU — what a chunked contingency table yields — and return the matched pairs as two aligned
id arrays. Ids may be any integers (they need not be consecutive).

:func:`match_max_total_iou`
    CellMap (``shared/specs/cellmap.md`` §5.1.5): the official min-cost flow with integer
    costs ``int((1 − float32 IoU)·S)`` and an "unmatched" arc of cost ``S + 1`` per GT,
    solved exactly as an assignment problem per connected component of the overlap graph.
:func:`match_iou_threshold`
    MedSegFM text track (``shared/specs/medsegfm.md`` §6 step 4): Hungarian assignment
    minimising ``−[IoU ≥ t] − IoU/(2·min(N_gt, N_pred))``, keeping pairs with IoU ≥ t.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# scipy.optimize's function without the ~50 ms of its package __init__ (issue #19)
from gpueval.startup_imports import linear_sum_assignment

__all__ = ["match_max_total_iou", "match_iou_threshold", "mcf_costs"]


def mcf_costs(iou: np.ndarray, cost_scale: int = 1_000_000) -> np.ndarray:
    """Integer arc costs of the official min-cost flow: ``int((1 − float(float32 iou))·S)``.

    The IoU is rounded to float32 first, then the product is taken in float64 and truncated
    toward zero, as the official scorer does (§9).
    """
    q = np.asarray(iou, dtype=np.float32).astype(np.float64)
    return np.trunc((1.0 - q) * float(cost_scale)).astype(np.int64)


def match_max_total_iou(
    gt_ids: np.ndarray,
    pred_ids: np.ndarray,
    iou: np.ndarray,
    *,
    cost_scale: int = 1_000_000,
    dense_limit: int = 20_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-total-IoU one-to-one matching, equal in cost to CellMap's min-cost flow.

    The official flow network (source → GT cap 1; GT → sink "unmatched" cost ``S+1``;
    GT → pred cost ``int((1−iou)·S)``; pred → sink cost 0) sends one unit per GT. Its optimum
    is the assignment of each GT either to a distinct overlapping prediction or to
    "unmatched", minimising the summed integer costs. Because every overlap arc costs at most
    ``S`` < ``S+1``, the optimum never leaves a GT unmatched when an augmenting assignment
    exists, and components of the bipartite overlap graph are independent. Each component is
    solved with :func:`scipy.optimize.linear_sum_assignment` on a dense matrix of its GT rows ×
    (its predictions + one dummy "unmatched" column per GT, cost ``S+1``); non-overlapping
    pairs cost ``S+2`` and are never part of an optimum (a free dummy column is always
    cheaper).

    Parameters
    ----------
    gt_ids, pred_ids : integer arrays of equal length; one entry per overlapping pair.
    iou : IoU of each pair (cast to float32 before costing, as the official code). Pairs with
        IoU ≤ 0 are ignored (the official code keeps only IoU > 0).
    cost_scale : ``S`` (``MCMF_COST_SCALE``).
    dense_limit : components whose dense matrix would hold more entries are solved on a
        sparse graph instead (:func:`scipy.sparse.csgraph.min_weight_full_bipartite_matching`
        with one private "unmatched" column per GT: dummies are interchangeable, so this is
        the same problem; all costs are shifted by +1 because the sparse solver reads stored
        zeros as missing edges, which changes no optimum since every GT takes exactly one
        arc). Both solvers are exact.

    Returns
    -------
    matched_gt, matched_pred : int64 arrays of equal length, sorted by GT id.

    Notes
    -----
    The optimal *cost* equals the official one. When several assignments reach the same
    integer cost (exact ties, e.g. two predictions with identical quantised IoU to one GT), the
    official solver (OR-Tools, arc order GT-major then pred id ascending) may pick other
    pairs; the spec calls its tie-breaking implementation-defined, so exact ties are a known
    caveat of any reimplementation.

    Examples
    --------
    >>> g, p = match_max_total_iou(np.array([1, 1, 2]), np.array([7, 8, 8]),
    ...                            np.array([0.5, 0.4, 0.9]))
    >>> g.tolist(), p.tolist()
    ([1, 2], [7, 8])
    """
    gt_ids, pred_ids, iou = _as_pairs(gt_ids, pred_ids, iou)
    keep = iou.astype(np.float32) > 0
    gt_ids, pred_ids, iou = gt_ids[keep], pred_ids[keep], iou[keep]
    if len(gt_ids) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    costs = mcf_costs(iou, cost_scale)
    big_unmatched = int(cost_scale) + 1
    # a pair whose GT and prediction overlap nothing else is a component of its own, and
    # its one overlap arc (cost ≤ S) beats "unmatched" (S + 1): matched, with no solver.
    # Most components of a dense crop are such pairs (10⁴ per 1024³: ~0.1 s of serial
    # Python when each went through the solver)
    alone = _isolated_pairs(gt_ids, pred_ids)
    out_g: list[np.ndarray] = [gt_ids[alone]]
    out_p: list[np.ndarray] = [pred_ids[alone]]
    rest = ~alone
    for rows, cols, r_idx, c_idx, cost in _components(gt_ids[rest], pred_ids[rest],
                                                       costs[rest]):
        n_r, n_c = len(rows), len(cols)
        if n_r * (n_c + n_r) <= dense_limit:
            dense = np.full((n_r, n_c + n_r), big_unmatched + 1, dtype=np.int64)
            dense[:, n_c:] = big_unmatched
            dense[r_idx, c_idx] = cost
            ri, ci = linear_sum_assignment(dense)
        else:
            ri, ci = _sparse_assignment(r_idx, c_idx, cost, n_r, n_c, big_unmatched)
        real = ci < n_c
        out_g.append(rows[ri[real]])
        out_p.append(cols[ci[real]])
    g = np.concatenate(out_g)
    p = np.concatenate(out_p)
    order = np.argsort(g, kind="stable")
    return g[order], p[order]


def match_iou_threshold(
    gt_ids: np.ndarray,
    pred_ids: np.ndarray,
    iou: np.ndarray,
    n_gt: int,
    n_pred: int,
    *,
    threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Threshold matching of the MedSegFM text track (NeurIPS-CellSeg style).

    Minimises ``cost_ij = −[IoU_ij ≥ t] − IoU_ij / (2·min(N_gt, N_pred))`` with
    :func:`scipy.optimize.linear_sum_assignment` and keeps assigned pairs with IoU ≥ t.

    Only ids with at least one IoU > 0 enter the dense matrix. This is equivalent to the
    official ``N_gt × N_pred`` matrix: every other row/column is all-zero cost, and since all
    costs are ≤ 0 any matching of the sub-matrix extends to a full-size assignment of the
    same cost (and vice versa, dropping zero-cost pairs), so the optimal value — and the set
    of optimal pairs carrying IoU > 0 — is the same. ``n_gt`` and ``n_pred`` (the full
    instance counts) still set the weight ``1/(2·min(N_gt, N_pred))``.

    Parameters
    ----------
    gt_ids, pred_ids, iou : sparse overlap pairs (any order; pairs with IoU ≤ 0 ignored).
    n_gt, n_pred : numbers of GT and predicted instances.
    threshold : ``t`` (0.5).

    Returns
    -------
    matched_gt, matched_pred : int64 arrays, sorted by GT id.

    Notes
    -----
    As with any Hungarian solver, exact ties may be broken differently from the dense
    official call (row/column order differs when all-zero rows are dropped); the number of
    matches at the threshold and the total IoU are the same.

    Examples
    --------
    >>> g, p = match_iou_threshold(np.array([1, 1, 2]), np.array([5, 6, 6]),
    ...                            np.array([0.6, 0.55, 0.7]), 2, 2)
    >>> g.tolist(), p.tolist()
    ([1, 2], [5, 6])
    """
    gt_ids, pred_ids, iou = _as_pairs(gt_ids, pred_ids, iou)
    keep = iou > 0
    gt_ids, pred_ids, iou = gt_ids[keep], pred_ids[keep], iou[keep]
    if len(gt_ids) == 0 or min(n_gt, n_pred) <= 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rows, r_idx = np.unique(gt_ids, return_inverse=True)
    cols, c_idx = np.unique(pred_ids, return_inverse=True)
    m = np.zeros((len(rows), len(cols)), dtype=np.float64)
    m[r_idx, c_idx] = iou
    cost = -(m >= threshold).astype(np.float64) - m / (2.0 * min(int(n_gt), int(n_pred)))
    ri, ci = linear_sum_assignment(cost)
    ok = m[ri, ci] >= threshold
    g, p = rows[ri[ok]], cols[ci[ok]]
    order = np.argsort(g, kind="stable")
    return g[order].astype(np.int64), p[order].astype(np.int64)


def _sparse_assignment(r_idx, c_idx, cost, n_r: int, n_c: int, unmatched: int):
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    rows = np.concatenate([r_idx, np.arange(n_r)])
    cols = np.concatenate([c_idx, n_c + np.arange(n_r)])
    vals = np.concatenate([cost + 1, np.full(n_r, unmatched + 1)]).astype(np.float64)
    graph = csr_matrix((vals, (rows, cols)), shape=(n_r, n_c + n_r))
    ri, ci = min_weight_full_bipartite_matching(graph)
    return np.asarray(ri, np.int64), np.asarray(ci, np.int64)


def _as_pairs(gt_ids, pred_ids, iou) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = np.asarray(gt_ids).astype(np.int64, copy=False).ravel()
    p = np.asarray(pred_ids).astype(np.int64, copy=False).ravel()
    v = np.asarray(iou, dtype=np.float64).ravel()
    if not (len(g) == len(p) == len(v)):
        raise ValueError(f"pair arrays differ in length: {len(g)}, {len(p)}, {len(v)}")
    return g, p, v


def _isolated_pairs(g: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Which pairs are alone in their component: their GT id and their prediction id each
    occur in no other pair."""
    _, g_inv, g_count = np.unique(g, return_inverse=True, return_counts=True)
    _, p_inv, p_count = np.unique(p, return_inverse=True, return_counts=True)
    return (g_count[g_inv.reshape(-1)] == 1) & (p_count[p_inv.reshape(-1)] == 1)


def _components(g: np.ndarray, p: np.ndarray, costs: np.ndarray):
    """Yield (gt ids, pred ids, row index, col index, cost) per component of the pair graph."""
    rows, r_idx = np.unique(g, return_inverse=True)
    cols, c_idx = np.unique(p, return_inverse=True)
    n_r, n_c = len(rows), len(cols)
    graph = coo_matrix((np.ones(len(g), np.int8), (r_idx, n_r + c_idx)),
                       shape=(n_r + n_c, n_r + n_c))
    n_comp, lab = connected_components(graph, directed=False)
    row_lab, col_lab = lab[:n_r], lab[n_r:]
    pair_lab = row_lab[r_idx]
    order = np.argsort(pair_lab, kind="stable")
    bounds = np.searchsorted(pair_lab[order], np.arange(n_comp + 1))
    row_order = np.argsort(row_lab, kind="stable")
    row_bounds = np.searchsorted(row_lab[row_order], np.arange(n_comp + 1))
    col_order = np.argsort(col_lab, kind="stable")
    col_bounds = np.searchsorted(col_lab[col_order], np.arange(n_comp + 1))
    local_r = np.empty(n_r, np.int64)
    local_c = np.empty(n_c, np.int64)
    for k in range(n_comp):
        rk = row_order[row_bounds[k]:row_bounds[k + 1]]
        ck = col_order[col_bounds[k]:col_bounds[k + 1]]
        local_r[rk] = np.arange(len(rk))
        local_c[ck] = np.arange(len(ck))
        pk = order[bounds[k]:bounds[k + 1]]
        yield rows[rk], cols[ck], local_r[r_idx[pk]], local_c[c_idx[pk]], costs[pk]
