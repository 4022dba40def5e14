"""The HTML leaderboard page of ``gpueval rescore --report`` / ``gpueval leaderboard --html``.

One self-contained, readable page: the title names the challenge and the metric version; the
table has a column per thing an organiser compares (rank, name, score or REFUGE's final
ranking with its weights, the headline metrics, a 12-character hash with the full one on
hover, when it was scored, how many warnings its result carries), ranked rows first and the
rejected ones at the bottom with their reason (an empty rank, never "null"). Columns sort on
click. Extra sections (the metric-change impact report, rank stability) are appended as given:
see ``sections`` of :func:`render`; when the board carries an impact report its bump chart
replaces the simple rank-change slope chart (one chart of the same changes per page).

The styling, the column sorter, the score histogram and the rank-change slope chart are the
per-submission report's (:mod:`gpueval.report`), so both pages look alike.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from gpueval.board_html import SECTION_CSS
from gpueval.report import _CSS, _SORT_JS, _histogram, _slope_chart
from gpueval.result import format_value

_EXTRA_CSS = """
table#leaderboard tr.unranked td{color:#777} table#leaderboard td.reason{color:#b00}
code{font-size:.9em} .warn{color:#a60;font-weight:600} td.when{white-space:nowrap}
"""

_HEADINGS = {"rank": "rank", "name": "submission", "score": "score",
             "final_score": "final score", "segmentation_rank": "segmentation rank",
             "classification_rank": "classification rank", "hash": "hash",
             "scored_at": "scored at (UTC)", "warnings": "warnings", "status": "status",
             "reason": "reason", "previous_rank": "previous rank",
             "rank_change": "rank change", "previous_score": "previous score"}


def render(board: Any, rows: Sequence[dict[str, Any]], columns: Sequence[str],
           sections: Sequence[tuple[str, str]] = ()) -> str:
    """The page's HTML text.

    Parameters
    ----------
    board : a :class:`gpueval.rescore.Board` (challenge, metric version, notes, REFUGE
        weights, ``previous`` rows for the rank-change chart).
    rows : one dict per row with a value per column, and ``_row``: the board's own row
        (full hash, warnings list).
    columns : the column keys, in order (:func:`gpueval.rescore.board_columns`).
    sections : ``(heading, html)`` parts appended after the table, in order; the HTML is
        trusted (built by gpueval's own helpers, which escape what they show).
    """
    title = f"{board.challenge} leaderboard — metric version {board.metric_version}"
    ranked = sum(1 for r in rows if r.get("rank") is not None)
    sub = f"{ranked} ranked, {len(rows) - ranked} not ranked"
    if board.compare:
        sub += f"; rank changes against metric version {board.compare}"
    parts = [f"<h1>{html.escape(board.challenge)} leaderboard <span class='muted'>metric "
             f"version {html.escape(str(board.metric_version))}</span></h1>",
             f"<p class='muted'>{html.escape(sub)}</p>"]
    parts += [f"<p class='muted'>{html.escape(n)}</p>" for n in board.notes]
    parts.append(_table(rows, columns))
    scores = [r.get("final_score" if board.challenge == "refuge" else "score") for r in rows]
    parts.append(_histogram(scores, "score distribution"))  # "" when nothing is scored
    if board.previous and getattr(board, "impact", None) is None:
        # with an impact report its bump chart (a section below) draws the same rank changes
        parts.append(_slope_chart(board.previous, [r["_row"] for r in rows]))
    for heading, body in sections:
        parts.append(f"<section><h2>{html.escape(heading)}</h2>{body}</section>")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}{_EXTRA_CSS}{SECTION_CSS}</style></head>"
            f"<body>{''.join(parts)}<script>{_SORT_JS}</script></body></html>")


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(_HEADINGS.get(c, c))}</th>" for c in columns)
    body = []
    for r in rows:
        cls = "" if r.get("rank") is not None else " class='unranked'"
        body.append(f"<tr{cls}>" + "".join(_td(c, r) for c in columns) + "</tr>")
    return (f"<table class='sortable' id='leaderboard'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _td(col: str, r: dict[str, Any]) -> str:
    v = r.get(col)
    if col == "hash" and v:
        full = html.escape(str(r["_row"].get("submission_hash") or v))
        short = html.escape(str(v))
        return f"<td data-v='{short}'><code title='{full}'>{short}</code></td>"
    if col == "warnings":
        said = r["_row"].get("_warnings") or []
        if not v:
            return "<td class='num' data-v='0'></td>"
        tip = html.escape("\n".join(said[:20]))
        return f"<td class='num warn' data-v='{int(v)}' title='{tip}'>{int(v)}</td>"
    if col == "reason":
        return f"<td class='reason'>{html.escape(v or '')}</td>"
    if col == "scored_at":
        text = "" if not v else str(v)[:16].replace("T", " ")
        return f"<td class='when' data-v='{html.escape(str(v or ''))}'>{html.escape(text)}</td>"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return f"<td>{html.escape('' if v is None else str(v))}</td>"
    sort = v if math.isfinite(v) else ""
    shown = str(v) if isinstance(v, int) else format_value(v)
    if col == "rank_change" and isinstance(v, int):
        shown = "=" if v == 0 else f"{v:+d}"
    return f"<td class='num' data-v='{sort}'>{html.escape(shown)}</td>"
