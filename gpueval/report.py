"""Self-contained HTML reports: one file, no network at view time.

:func:`write_report` renders a :class:`~gpueval.result.Result`: the headline, its warnings at
the top (``shared/specs/cli.md``), aggregate metrics, a bar chart of per-class (or per-item)
scores, a per-class table where the result has per-class values, a sortable item table (a
missing item's scores read "missing", not 0), and pictures of
where the submission fails. Pictures come from the challenge module when it defines
``report_images(result, truth, submission, config) -> list[(title, rgb uint8 array)]``
(volumetric challenges pick the worst items by chunked reductions and crop a few slices; U-RISC
draws a downsampled agreement map); the demo supplies its own. Images are inlined as base64 PNG.

:func:`write_leaderboard` renders ranked submissions, score distributions per metric version
and a slope chart of rank changes between two versions.
"""

from __future__ import annotations

import base64
import html
import importlib
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gpueval.pictures import error_overlay  # noqa: F401  (public name, kept here too)
from gpueval.result import (
    Result,
    format_value,
    is_missing,
    item_cell,
    per_case_class_rows,
    per_class_rows,
)

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;padding:0 1em;max-width:1100px;color:#222}
h1{font-size:1.6em;margin-bottom:.2em} .muted{color:#777}
.score{font-size:2.4em;font-weight:600} .bad{color:#b00}
table{border-collapse:collapse;margin:1em 0;width:100%} td,th{padding:3px 8px;
border-bottom:1px solid #ddd;text-align:left} th{cursor:pointer;background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums} figure{display:inline-block;
margin:.5em} figure img{image-rendering:pixelated;border:1px solid #ccc;max-width:520px}
.bar{fill:#4a7bd0} .axis{stroke:#999} svg text{font-size:11px}
#warnings{background:#fff6d6;border:1px solid #e0c060;padding:.4em 1em;margin:1em 0}
#warnings li{margin:.2em 0} td.missing{color:#b00;font-style:italic}
"""

_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, col) {
  th.addEventListener('click', function() {
    var body = th.closest('table').tBodies[0];
    var rows = Array.from(body.rows), asc = th.dataset.asc !== '1';
    rows.sort(function(a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? String(x).localeCompare(String(y)) : nx - ny;
      return asc ? c : -c;
    });
    rows.forEach(function(r) { body.appendChild(r); });
    th.dataset.asc = asc ? '1' : '0';
  });
});
document.body.dataset.ready = '1';
"""


def write_report(result: Result, out: str | Path, *, truth: str | None = None,
                 submission: str | None = None, images: Sequence[tuple[str, np.ndarray]] = (),
                 url_prefix: str | None = None) -> Path:
    """Write ``out`` (HTML) for ``result``; ``truth``/``submission`` enable error pictures.

    ``url_prefix`` is where the folders holding ``truth`` and ``submission`` are published
    (http(s)/s3/gs): the neuroglancer link then opens those copies in the public viewer
    (:func:`gpueval.viewer.report_link`); without it the report shows the ``gpueval view``
    command, since the public viewer cannot read local files.
    """
    images = list(images) or _challenge_images(result, truth, submission)
    _attach_viewer_link(result, truth, submission, url_prefix)
    parts = [_header(result), _images_html(images), _viewer_html(result), _bar_chart(result),
             _metrics_table(result.metrics), _notes_html(result), _per_class_html(result),
             _items_table(result.items),
             "<details><summary>Result JSON</summary><pre>"
             + html.escape(result.to_json()) + "</pre></details>"]
    return _write(out, f"gpueval — {result.challenge}", "\n".join(p for p in parts if p))


def write_leaderboard(rows: Sequence[dict[str, Any]], out: str | Path, *,
                      title: str = "Leaderboard", previous: Sequence[dict] | None = None) -> Path:
    """Ranked table (``rows``: dicts with ``name``, ``score``, ``rank`` …), score histogram, and
    a slope chart of rank changes against ``previous`` (same keys, the older metric version)."""
    parts = [f"<h1>{html.escape(title)}</h1>", _items_table(list(rows), key="name"),
             _histogram([r.get("score") for r in rows], "score distribution")]
    if previous:
        parts.append(_histogram([r.get("score") for r in previous],
                                "score distribution, previous metric version"))
        parts.append(_slope_chart(previous, rows))
    return _write(out, title, "\n".join(parts))


# --------------------------------------------------------------------------------------------


def _write(out: str | Path, title: str, body: str) -> Path:
    out = Path(out)
    doc = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{_CSS}</style></head><body>{body}<script>{_SORT_JS}</script>"
           "</body></html>")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(doc)
    tmp.replace(out)
    return out


def _header(r: Result) -> str:
    status = "" if r.status == "ok" else f" <span class='bad'>{html.escape(r.status)}</span>"
    err = f"<p class='bad'>{html.escape(r.error)}</p>" if r.error else ""
    rt = r.runtime
    return (f"<h1>{html.escape(r.challenge)} <span class='muted'>"
            f"{html.escape(str(r.metric_version))}</span>{status}</h1>{err}"
            f"{_warnings_html(r.warnings)}"
            f"<div class='score' id='score'>{format_value(r.score)}</div>"
            f"<p class='muted'>{rt.get('voxels', 0):,} voxels in {rt.get('seconds', 0):.2f} s on "
            f"{html.escape(str(rt.get('device', '')))}</p>")


def _warnings_html(warnings: Sequence[str]) -> str:
    """The result's warnings, at the top: what was ignored, missing or read differently."""
    if not warnings:
        return ""
    lis = "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings)
    return (f"<div id='warnings'><strong>{len(warnings)} warning(s)</strong>: the score may "
            f"differ from what the submitter meant<ul>{lis}</ul></div>")


def _notes_html(r: Result) -> str:
    """The scorer's explanations (``extra.notes``), e.g. why a metric is NaN."""
    notes = [n for n in (r.extra or {}).get("notes") or [] if isinstance(n, str)]
    if not notes:
        return ""
    lis = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f"<h2>Notes ({len(notes)})</h2><ul id='notes'>{lis}</ul>"


def _per_class_html(r: Result) -> str:
    """Per-class means (and, in a fold, every case × class value) where the result has them."""
    rows = per_class_rows(r)
    if not rows:
        return ""
    out = _items_table(rows, key="class", title="Per class", table_id="per-class")
    detail = per_case_class_rows(r)
    if detail:
        out += ("<details><summary>every case and class</summary>"
                + _items_table(detail, key="case", title="Per case and class",
                               table_id="per-case-class") + "</details>")
    return out


def _metrics_table(metrics: dict) -> str:
    if not metrics:
        return ""
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td class='num'>{format_value(v)}</td></tr>"
                   for k, v in metrics.items())
    return f"<h2>Metrics</h2><table id='metrics'><tbody>{rows}</tbody></table>"


def _items_table(items: list[dict], key: str = "id", title: str = "Items",
                 table_id: str = "items") -> str:
    if not items:
        return ""
    cols = list(dict.fromkeys(k for it in items for k in it))
    cols = [key] + [c for c in cols if c != key] if key in cols else cols
    n_missing = sum(is_missing(it) for it in items)
    note = f", {n_missing} missing (scored as empty predictions)" if n_missing else ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(_cell(it.get(c), item_cell(it, c), is_missing(it)) for c in cols)
        + "</tr>" for it in items)
    return (f"<h2>{html.escape(title)} ({len(items)}{note})</h2><table class='sortable' "
            f"id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def _cell(v: Any, text: str | None = None, missing: bool = False) -> str:
    num = isinstance(v, int | float | np.number) and not isinstance(v, bool)
    sort = v if num and math.isfinite(float(v)) else ("" if v is None else v)
    text = format_value(v) if text is None else text
    cls = "missing" if missing and text == "missing" else ("num" if num else "")
    return (f"<td{f' class={cls}' if cls else ''} data-v='{html.escape(str(sort))}'>"
            f"{html.escape(text)}</td>")


def _bar_chart(r: Result) -> str:
    """Per-class scores (``<class>_<score>`` metrics) or, failing that, the items' first score."""
    pairs = [(k.rsplit("_", 1)[0], v) for k, v in r.metrics.items()
             if k.endswith(("_combined_score", "_iou")) and isinstance(v, int | float)]
    title = "per-class score"
    if not pairs and r.items:
        col = next((c for c in ("f1", "dsc", "f1_score", "best_iou", "cup_dice")
                    if c in r.items[0]), None)
        if col:
            pairs = [(str(it["id"]), it.get(col)) for it in r.items]
            title = f"per-item {col}"
    pairs = [(n, float(v)) for n, v in pairs if v is not None and math.isfinite(float(v))]
    if not pairs:
        return ""
    if title.startswith("per-item"):  # the worst first: that is where to look
        pairs = sorted(pairs, key=lambda p: p[1])
        title += f" (worst {min(len(pairs), 30)} of {len(pairs)})"
    pairs = pairs[:30 if title.startswith("per-item") else 80]
    w, bh = 520, 16
    hi = max(1.0, max(v for _, v in pairs))
    bars = "".join(
        f"<text x='0' y='{i * bh + 12}'>{html.escape(n[:28])}</text>"
        f"<rect class='bar' x='190' y='{i * bh + 2}' width='{max(v, 0) / hi * (w - 250):.1f}' "
        f"height='{bh - 4}'/><text x='{195 + max(v, 0) / hi * (w - 250):.1f}' "
        f"y='{i * bh + 12}'>{v:.3f}</text>" for i, (n, v) in enumerate(pairs))
    return (f"<h2>{title}</h2><svg id='bars' width='{w}' height='{len(pairs) * bh + 4}'>"
            f"{bars}</svg>")


def _histogram(values: Sequence[Any], title: str, bins: int = 20) -> str:
    vals = np.array([float(v) for v in values if v is not None and math.isfinite(float(v))])
    if not len(vals):
        return ""
    counts, edges = np.histogram(vals, bins=bins)
    w, h = 520, 120
    bw = w / bins
    top = max(counts.max(), 1)
    rects = "".join(f"<rect class='bar' x='{i * bw:.1f}' y='{h - c / top * h:.1f}' "
                    f"width='{bw - 1:.1f}' height='{c / top * h:.1f}'/>"
                    for i, c in enumerate(counts))
    return (f"<h2>{title}</h2><svg width='{w}' height='{h + 16}'>{rects}<text x='0' "
            f"y='{h + 14}'>{edges[0]:.3g}</text><text x='{w - 40}' y='{h + 14}'>"
            f"{edges[-1]:.3g}</text></svg>")


def _slope_chart(before: Sequence[dict], after: Sequence[dict]) -> str:
    rb = {r["name"]: r["rank"] for r in before if r.get("rank") is not None}
    ra = {r["name"]: r["rank"] for r in after if r.get("rank") is not None}
    names = [n for n in ra if n in rb]
    if not names:
        return ""
    n = max(max(rb.values()), max(ra.values()))
    h = 20 * n + 20

    def y(rank):
        return 10 + 20 * (rank - 1)

    lines = "".join(
        f"<line class='axis' x1='150' y1='{y(rb[k])}' x2='370' y2='{y(ra[k])}' "
        f"stroke='{'#2a2' if ra[k] < rb[k] else '#c33' if ra[k] > rb[k] else '#999'}'/>"
        f"<text x='0' y='{y(rb[k]) + 4}'>{rb[k]}. {html.escape(k[:20])}</text>"
        f"<text x='380' y='{y(ra[k]) + 4}'>{ra[k]}. {html.escape(k[:20])}</text>"
        for k in names)
    return f"<h2>Rank changes</h2><svg id='slope' width='560' height='{h}'>{lines}</svg>"


def _images_html(images: Sequence[tuple[str, np.ndarray]]) -> str:
    if not images:
        return ""
    figs = "".join(f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,"
                   f"{png_base64(img)}'><figcaption>{html.escape(t)}</figcaption></figure>"
                   for t, img in images)
    return f"<h2>Where it fails</h2><div id='pictures'>{figs}</div>"


def png_base64(img: np.ndarray, min_size: int = 256) -> str:
    """PNG of a uint8 grey or RGB image, upscaled (nearest) to at least ``min_size`` px."""
    from PIL import Image

    img = np.asarray(img)
    f = max(1, -(-min_size // max(img.shape[:2])))
    if f > 1:
        img = img.repeat(f, 0).repeat(f, 1)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img.astype(np.uint8))).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()




def _attach_viewer_link(result: Result, truth, submission, url_prefix=None) -> None:
    if truth is None or submission is None or "neuroglancer" in (result.extra or {}):
        return
    try:
        from gpueval.viewer import report_link

        entry = report_link(result, truth, submission, url_prefix)
    except Exception:  # a link must never cost the report
        return
    if entry is not None:
        result.extra["neuroglancer"] = entry


def _viewer_html(result: Result) -> str:
    """A link to neuroglancer for published data (a click, not a view-time fetch) and its
    state, or the ``gpueval view`` command that serves local files."""
    ng = (result.extra or {}).get("neuroglancer")
    if not ng:
        return ""
    if ng.get("url"):
        return ("<h2>Open in neuroglancer</h2><p><a id='neuroglancer' href='"
                + html.escape(ng["url"]) + "'>truth, submission and errors at the worst "
                "item</a></p><details><summary>viewer state</summary><pre>"
                + html.escape(json.dumps(ng.get("state", {}), indent=1)) + "</pre></details>")
    return ("<h2>Open in neuroglancer</h2><p>The files are local, which the public viewer "
            "cannot read: run <code id='neuroglancer'>" + html.escape(ng.get("command", ""))
            + "</code> (needs <code>pip install \"gpueval[viewer]\"</code>), or publish the "
            "folders and write the report with <code>--url-prefix URL</code>.</p>")


def _challenge_images(result: Result, truth, submission) -> list[tuple[str, np.ndarray]]:
    if truth is None or submission is None:
        return []
    try:
        module = importlib.import_module(f"gpueval.challenges.{result.challenge}")
    except ImportError:
        return []
    fn = getattr(module, "report_images", None)
    if fn is None:
        return []
    cfg = (result.extra or {}).get("config") or {}
    try:
        return list(fn(result, truth, submission, cfg))
    except Exception as e:  # a picture must never cost the report
        return [(f"pictures unavailable: {e}", np.full((8, 8), 255, np.uint8))]
