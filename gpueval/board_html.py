"""Self-contained HTML pages for the leaderboard analyses: metric-change impact, rank stability.

Each page is one file: inline CSS, inline SVG, no script and nothing fetched at view time, so it
can be mailed or attached to a challenge report.

* :func:`impact_page` — a bump chart (old rank → new rank, one line per submission ranked under
  both versions, green up / red down / grey same) and the table of Δscore, Δrank and the items
  that contributed most, with Kendall's τ and Spearman's ρ in the heading.
* :func:`stability_page` — the blob plot of the bootstrap ranks as the challengeR paper
  describes it (one column per submission in observed order; a circle at each rank it took, its
  area proportional to how often; the median rank as a black dot; the 95 % interval as a black
  bar; the observed rank as a cross), the statistically tied groups as shaded bands, and a table.

:func:`impact_section` and :func:`stability_section` are the same content without the page, for
``gpueval leaderboard --html`` which appends them to the leaderboard page (with
:data:`SECTION_CSS`).

Names are untrusted (a team may call itself ``<script>``, and a file name may hold bytes that
are not UTF-8 — Python carries them as surrogate escapes): every name goes through
:func:`display_name` (undecodable bytes shown as ``\\xNN``) and :func:`html.escape`.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from gpueval.metrics.impact import ImpactReport
from gpueval.metrics.stability import StabilityReport

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;padding:0 1em;max-width:1200px;color:#222}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.15em;margin-top:1.6em} .muted{color:#666}
table{border-collapse:collapse;margin:1em 0;width:100%} td,th{padding:3px 8px;
border-bottom:1px solid #ddd;text-align:left;vertical-align:top} th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums} .up{color:#17813a} .down{color:#c0302b}
.chart{overflow-x:auto} svg text{font-size:11px;font-family:system-ui,sans-serif}
.note{background:#fff7d6;padding:.4em .8em;border-left:3px solid #e0b000}
"""

#: The rules the sections' classes need on a page with its own styles (the leaderboard's).
SECTION_CSS = """
.up{color:#17813a} .down{color:#c0302b} .chart{overflow-x:auto}
svg text{font-size:11px;font-family:system-ui,sans-serif}
.note{background:#fff7d6;padding:.4em .8em;border-left:3px solid #e0b000}
"""

_UP, _DOWN, _SAME = "#17813a", "#c0302b", "#9a9a9a"
_LABEL_CHARS = 28  # names are cut to this in charts (the full name is the SVG <title>)


def display_name(name: Any) -> str:
    """A name as text a page can hold: undecodable bytes (surrogate escapes) become ``\\xNN``.

    Parameters
    ----------
    name : a str (possibly from ``os.fsdecode`` of non-UTF-8 bytes), bytes, or anything else.

    Returns
    -------
    str that encodes to UTF-8 (not yet HTML-escaped).
    """
    if isinstance(name, bytes):
        raw = name
    else:
        text = str(name)
        try:  # bytes that os.fsdecode could not decode come back as they were
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # other lone surrogates: show their code point
            raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def _esc(x: Any) -> str:
    return html.escape(display_name(x), quote=True)


def _short(name: Any) -> str:
    s = display_name(name)
    return s if len(s) <= _LABEL_CHARS else s[:_LABEL_CHARS - 1] + "…"


def _num(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def _signed(x: float | int | None, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, int):
        return "=" if x == 0 else f"{x:+d}"
    return f"{x:+.{digits}f}"


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
            f"<body>{body}</body></html>")


def _write(text: str, out: str | Path) -> Path:
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


# --------------------------------------------------------------------------------------------
# metric-change impact


def impact_page(report: ImpactReport, *, challenge: str = "") -> str:
    """The impact report as one HTML page (bump chart + table).

    Parameters
    ----------
    report : from :func:`gpueval.metrics.impact.metric_change_impact`.
    challenge : shown in the title.

    Returns
    -------
    The HTML text.
    """
    title = (f"{challenge + ': ' if challenge else ''}what metric version "
             f"{display_name(report.new_version)} did to the ranking under "
             f"{display_name(report.old_version)}")
    return _page(title, f"<h1>{html.escape(title)}</h1>{impact_section(report)}")


def impact_section(report: ImpactReport) -> str:
    """The body of :func:`impact_page` without the page around it (summary, notes, bump chart,
    table), for appending to another page such as the leaderboard's (its styles:
    :data:`SECTION_CSS`)."""
    moved = report.changed
    summary = (f"{len(moved)} of {report.n_compared} submissions ranked under both versions "
               f"changed rank; Kendall τ = {_num(report.kendall_tau, 3)}, Spearman ρ = "
               f"{_num(report.spearman_rho, 3)}.")
    notes = "".join(f"<p class='note'>{_esc(n)}</p>" for n in report.notes)
    return (f"<p class='muted'>{html.escape(summary)} "
            f"Δrank = old − new (positive: moved up). Item contributions: "
            f"{html.escape(report.contribution_rule)}"
            f"{'; item metric ' + _esc(report.item_metric) if report.item_metric else ''}.</p>"
            f"{notes}<h2>Rank changes</h2><div class='chart'>{bump_chart(report)}</div>"
            f"<h2>Submissions</h2>{_impact_table(report)}")


def write_impact_page(report: ImpactReport, out: str | Path, *, challenge: str = "") -> Path:
    """Write :func:`impact_page` to ``out`` (atomically) and return the path."""
    return _write(impact_page(report, challenge=challenge), out)


def bump_chart(report: ImpactReport) -> str:
    """Inline SVG: old rank (left) → new rank (right) for submissions ranked under both.

    Submissions are placed in rank order on each side (tied ranks on consecutive rows, so labels
    never overlap); the label shows the rank. Empty string when nobody is ranked under both.
    """
    both = [r for r in report.rows if r.old_rank is not None and r.new_rank is not None]
    if not both:
        return "<p class='muted'>No submission is ranked under both versions.</p>"
    left = sorted(both, key=lambda r: (r.old_rank, display_name(r.name)))
    right = sorted(both, key=lambda r: (r.new_rank, display_name(r.name)))
    y_left = {id(r): i for i, r in enumerate(left)}
    y_right = {id(r): i for i, r in enumerate(right)}
    row_h, top, label_w, gap = 20, 34, 250, 220
    x1, x2 = label_w, label_w + gap
    width, height = x2 + label_w, top + row_h * len(both) + 10

    def y(i: int) -> int:
        return top + row_h * i + row_h // 2

    parts = [f"<svg id='bump' xmlns='http://www.w3.org/2000/svg' width='{width}' "
             f"height='{height}' role='img' aria-label='bump chart of rank changes'>",
             f"<text x='{x1 - 8}' y='16' text-anchor='end' font-weight='bold'>"
             f"{_esc(report.old_version)}</text>",
             f"<text x='{x2 + 8}' y='16' font-weight='bold'>{_esc(report.new_version)}</text>"]
    for r in sorted(both, key=lambda r: abs(r.delta_rank or 0)):  # movers drawn on top
        colour = _UP if r.delta_rank > 0 else _DOWN if r.delta_rank < 0 else _SAME
        ya, yb = y(y_left[id(r)]), y(y_right[id(r)])
        stroke = 1.2 if r.delta_rank == 0 else 2.4
        parts.append(f"<g><title>{_esc(r.name)}: {r.old_rank} → {r.new_rank}</title>"
                     f"<path d='M{x1} {ya} C{x1 + gap / 2} {ya} {x2 - gap / 2} {yb} {x2} {yb}' "
                     f"fill='none' stroke='{colour}' stroke-width='{stroke}'/>"
                     f"<circle cx='{x1}' cy='{ya}' r='3.5' fill='{colour}'/>"
                     f"<circle cx='{x2}' cy='{yb}' r='3.5' fill='{colour}'/></g>")
    for side, rows, pos in (("old", left, y_left), ("new", right, y_right)):
        for r in rows:
            rank = r.old_rank if side == "old" else r.new_rank
            label = html.escape(f"{rank}. {_short(r.name)}")
            if side == "old":
                parts.append(f"<text x='{x1 - 8}' y='{y(pos[id(r)]) + 4}' text-anchor='end'>"
                             f"<title>{_esc(r.name)}</title>{label}</text>")
            else:
                parts.append(f"<text x='{x2 + 8}' y='{y(pos[id(r)]) + 4}'>"
                             f"<title>{_esc(r.name)}</title>{label}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _impact_table(report: ImpactReport) -> str:
    head = ("<tr><th>new rank</th><th>old rank</th><th>Δrank</th><th>submission</th>"
            "<th>old score</th><th>new score</th><th>Δscore</th>"
            "<th>items that contributed most (old → new: contribution)</th></tr>")
    rows = []
    for r in report.rows:
        cls = "" if not r.delta_rank else (" class='up'" if r.delta_rank > 0 else
                                           " class='down'")
        items = "; ".join(f"{_esc(c.item)} ({_num(c.old)} → {_num(c.new)}: "
                          f"{_signed(c.contribution)})" for c in r.top_items)
        rows.append(f"<tr><td class='num'>{_num(r.new_rank)}</td>"
                    f"<td class='num'>{_num(r.old_rank)}</td>"
                    f"<td class='num'><span{cls}>{_signed(r.delta_rank)}</span></td>"
                    f"<td>{_esc(r.name)}</td><td class='num'>{_num(r.old_score)}</td>"
                    f"<td class='num'>{_num(r.new_score)}</td>"
                    f"<td class='num'>{_signed(r.delta_score)}</td><td>{items}</td></tr>")
    return f"<table id='impact'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


# --------------------------------------------------------------------------------------------
# rank stability


def stability_page(report: StabilityReport, *, challenge: str = "") -> str:
    """The bootstrap rank stability as one HTML page (blob plot + table).

    Parameters
    ----------
    report : from :mod:`gpueval.metrics.stability`; an unsupported one gives a page that says
        why.
    challenge : shown in the title.

    Returns
    -------
    The HTML text.
    """
    title = f"{challenge + ': ' if challenge else ''}rank stability of the leaderboard"
    return _page(title, f"<h1>{html.escape(title)}</h1>{stability_section(report)}")


def stability_section(report: StabilityReport) -> str:
    """The body of :func:`stability_page` without the page around it (intro, notes, blob plot,
    table; for an unsupported report, why), for appending to another page (its styles:
    :data:`SECTION_CSS`)."""
    if not report.supported:
        return f"<p class='note'>{_esc(report.message)}</p>"
    cover = round(100 * (1 - report.alpha))
    seed = "explicit resamples" if report.seed is None else f"seed {report.seed}"
    notes = "".join(f"<p class='note'>{_esc(n)}</p>" for n in report.notes)
    intro = (f"{report.n_resamples} bootstrap resamples of {report.n_cases} cases ({seed}); "
             f"rule: {display_name(report.rule)}. {len(report.tied_groups)} group(s) of "
             f"statistically tied submissions (one-sided bootstrap test at "
             f"{report.alpha:g}: a submission joins the group of the best one not "
             f"significantly better than it).")
    legend = (f"Circle area: how often the submission took that rank. Black dot: median "
              f"rank; black bar: {cover} % interval; ×: observed rank. Shaded bands: tied "
              f"groups.")
    return (f"<p class='muted'>{html.escape(intro)}</p>{notes}"
            f"<h2>Bootstrap ranks</h2><p class='muted'>{html.escape(legend)}</p>"
            f"<div class='chart'>{blob_plot(report)}</div>"
            f"<h2>Submissions</h2>{_stability_table(report)}")


def write_stability_page(report: StabilityReport, out: str | Path, *,
                         challenge: str = "") -> Path:
    """Write :func:`stability_page` to ``out`` (atomically) and return the path."""
    return _write(stability_page(report, challenge=challenge), out)


def blob_plot(report: StabilityReport) -> str:
    """Inline SVG blob plot: x = submissions in observed order, y = rank (1 at the top)."""
    t = len(report.names)
    if t == 0:
        return ""
    col_w = max(14, min(40, 900 // t))
    row_h = max(10, min(28, 600 // t))
    longest = max(len(_short(n)) for n in report.names)
    # room for the labels slanted at 60°: ~6 px a character, cos 60° of it to the left
    left, top, bottom = max(44, int(3.2 * longest) + 4), 16, 24 + int(5.6 * longest)
    width = left + col_w * t + 20
    height = top + row_h * t + bottom
    r_max = 0.48 * min(col_w, row_h * 1.6)

    def cx(i: int) -> float:
        return left + col_w * i + col_w / 2

    def cy(rank: float) -> float:
        return top + row_h * (rank - 1) + row_h / 2

    parts = [f"<svg id='blob' xmlns='http://www.w3.org/2000/svg' width='{width}' "
             f"height='{height}' role='img' aria-label='blob plot of bootstrap ranks'>"]
    index = {n: i for i, n in enumerate(report.names)}
    for g, group in enumerate(report.tied_groups):
        if g % 2 == 0 and group:
            i0 = index[group[0]]
            parts.append(f"<rect x='{left + col_w * i0}' y='{top - 6}' "
                         f"width='{col_w * len(group)}' height='{row_h * t + 12}' "
                         f"fill='#eef3fb'/>")
    step = max(1, t // 10)
    for rank in range(1, t + 1):
        if rank == 1 or rank % step == 0:
            parts.append(f"<line x1='{left - 4}' x2='{width - 20}' y1='{cy(rank)}' "
                         f"y2='{cy(rank)}' stroke='#eee'/><text x='{left - 8}' "
                         f"y='{cy(rank) + 4}' text-anchor='end'>{rank}</text>")
    parts.append(f"<text x='12' y='{top + row_h * t / 2}' transform='rotate(-90 12 "
                 f"{top + row_h * t / 2})' text-anchor='middle'>rank</text>")
    b = max(report.n_resamples, 1)
    for i, name in enumerate(report.names):
        x = cx(i)
        freq = report.rank_counts[i] / b
        circles = "".join(
            f"<circle cx='{x:.1f}' cy='{cy(r + 1):.1f}' r='{r_max * math.sqrt(f):.2f}' "
            f"fill='#4a7bd0' fill-opacity='0.55'/>" for r, f in enumerate(freq) if f > 0)
        lo, hi = report.interval[i]
        med, obs = report.median_rank[i], report.observed_rank[i]
        d = 3.5
        parts.append(
            f"<g><title>{_esc(name)}: observed {obs}, median {med}, interval {lo}–{hi}"
            f"</title>{circles}"
            f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{cy(lo):.1f}' y2='{cy(hi):.1f}' "
            f"stroke='#000' stroke-width='1.6'/>"
            f"<circle cx='{x:.1f}' cy='{cy(med):.1f}' r='2.6' fill='#000'/>"
            f"<path d='M{x - d:.1f} {cy(obs) - d:.1f}L{x + d:.1f} {cy(obs) + d:.1f}"
            f"M{x - d:.1f} {cy(obs) + d:.1f}L{x + d:.1f} {cy(obs) - d:.1f}' stroke='#c0302b' "
            f"stroke-width='1.4'/></g>")
        ly = top + row_h * t + 10
        parts.append(f"<text x='{x:.1f}' y='{ly}' text-anchor='end' "
                     f"transform='rotate(-60 {x:.1f} {ly})'><title>{_esc(name)}</title>"
                     f"{html.escape(_short(name))}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _stability_table(report: StabilityReport) -> str:
    group_of = {n: g + 1 for g, group in enumerate(report.tied_groups) for n in group}
    b = max(report.n_resamples, 1)
    head = ("<tr><th>observed rank</th><th>submission</th><th>median rank</th>"
            f"<th>{round(100 * (1 - report.alpha))} % interval</th><th>tied group</th>"
            "<th>most frequent ranks</th></tr>")
    rows = []
    for i, name in enumerate(report.names):
        counts = report.rank_counts[i]
        top = sorted((int(c), r + 1) for r, c in enumerate(counts) if c)[::-1][:3]
        freq = ", ".join(f"{rank}: {100 * c / b:.1f} %" for c, rank in top)
        lo, hi = report.interval[i]
        rows.append(f"<tr><td class='num'>{report.observed_rank[i]}</td><td>{_esc(name)}</td>"
                    f"<td class='num'>{report.median_rank[i]}</td>"
                    f"<td class='num'>{lo}–{hi}</td><td class='num'>{group_of.get(name, '')}"
                    f"</td><td>{freq}</td></tr>")
    return f"<table id='stability'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
