"""One self-contained HTML report of a ``Comparison`` (pure: comparison in, HTML text out).

No external URL, script or font: the figures are inline SVG drawn here (a confusion matrix per
technique as a heat map, wall time per engine and technique as bars), styles are inline CSS.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from twinscan.compare.align import MISSING, confusion, describe_truth_gaps
from twinscan.core.vocab import Engine, Technique
from twinscan.core.wording import count

if TYPE_CHECKING:
    import pandas as pd

    from twinscan.compare.align import Comparison

ENGINE_COLORS = {Engine.NATIVE: "#2b6cb0", Engine.NMAP: "#dd6b20"}
#: At most this many disagreement rows in the report (the CSV has them all).
MAX_ROWS = 2000

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1a202c}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #cbd5e0;padding:3px 8px;text-align:left}
th{background:#edf2f7}td.num{text-align:right}
tr.bad td{background:#fffaf0}
.grid{display:flex;flex-wrap:wrap;gap:18px}
.card{border:1px solid #e2e8f0;border-radius:6px;padding:8px}
.muted{color:#718096;font-size:.85em}code{font-size:.9em}
"""


def _fmt(value: object, spec: str = "", suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "–"
    if spec:
        return f"{float(value):{spec}}{suffix}"  # type: ignore[arg-type]
    text = str(value)
    return "–" if text in ("<NA>", "nan", "") else text


def summary_html(comparison: Comparison) -> str:
    head = [
        "technique",
        "ports",
        "agreement",
        "disagreements (native→nmap)",
        "native s",
        "nmap s",
        "native/nmap",
    ]
    if comparison.has_truth:
        head += ["scored (truth known)", "native accuracy", "nmap accuracy"]
    out = ["<table id='summary'><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr>"]
    for rec in comparison.summary.to_dict("records"):
        cls = " class='bad'" if rec["disagreements"] else ""
        cells = [
            escape(str(rec["technique"])),
            str(rec["ports"]),
            _fmt(rec["agreement_pct"], ".1f", "%"),
            escape(str(rec["pairs"])) or "–",
            _fmt(rec["native_s"], ".2f"),
            _fmt(rec["nmap_s"], ".2f"),
            _fmt(rec["ratio"], ".2f", "×"),
        ]
        if comparison.has_truth:
            cells += [
                str(rec["truth_ports"]),
                _fmt(rec["native_accuracy_pct"], ".1f", "%"),
                _fmt(rec["nmap_accuracy_pct"], ".1f", "%"),
            ]
        tds = "".join(
            f"<td class='num'>{c}</td>" if i in (1, 2, 4, 5, 6) or i > 6 else f"<td>{c}</td>"
            for i, c in enumerate(cells)
        )
        out.append(f"<tr{cls}>{tds}</tr>")
    out.append("</table>")
    return "".join(out)


def _heat(count: int, peak: int, diagonal: bool) -> str:
    """Fill colour: blue shades on the diagonal (agreement), red off it; log-scaled."""
    if count == 0:
        return "#ffffff"
    level = 0.25 + 0.75 * math.log1p(count) / math.log1p(max(peak, 1))
    r, g, b = (43, 108, 176) if diagonal else (197, 48, 48)
    mix = [round(255 - (255 - c) * level) for c in (r, g, b)]
    return "#{:02x}{:02x}{:02x}".format(*mix)


def confusion_svg(matrix: pd.DataFrame, technique: Technique) -> str:
    """A heat map of native (rows) vs nmap (columns) states for one technique."""
    labels_r = [str(x) for x in matrix.index]
    labels_c = [str(x) for x in matrix.columns]
    cell, left, top = 46, 118, 104
    width = left + cell * len(labels_c) + 60
    height = top + cell * len(labels_r) + 28
    peak = int(matrix.to_numpy().max()) if matrix.size else 0
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='confusion' "
        f"data-technique='{escape(technique.value)}' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img' "
        f"aria-label='confusion matrix {escape(technique.value)}'>",
        f"<text x='4' y='16' font-size='13' font-weight='bold'>{escape(technique.value)}</text>",
        f"<text x='{left}' y='32' font-size='11' fill='#4a5568'>nmap →</text>",
        f"<text x='4' y='{top - 6}' font-size='11' fill='#4a5568'>native ↓</text>",
    ]
    for j, lab in enumerate(labels_c):
        x = left + cell * j + cell / 2
        parts.append(
            f"<text x='{x:.0f}' y='{top - 6}' font-size='10' text-anchor='start' "
            f"transform='rotate(-45 {x:.0f} {top - 6})'>{escape(lab)}</text>"
        )
    counts = matrix.to_numpy()
    for i, row_label in enumerate(labels_r):
        y = top + cell * i
        parts.append(
            f"<text x='{left - 6}' y='{y + cell / 2 + 4:.0f}' font-size='10' "
            f"text-anchor='end'>{escape(row_label)}</text>"
        )
        for j, col_label in enumerate(labels_c):
            n = int(counts[i, j])
            x = left + cell * j
            fill = _heat(n, peak, row_label == col_label)
            ink = "#ffffff" if n and math.log1p(n) / math.log1p(max(peak, 1)) > 0.6 else "#1a202c"
            parts.append(
                f"<rect class='cell' x='{x}' y='{y}' width='{cell}' height='{cell}' "
                f"fill='{fill}' stroke='#a0aec0'><title>native {escape(row_label)}, "
                f"nmap {escape(col_label)}: {n}</title></rect>"
            )
            if n:
                parts.append(
                    f"<text x='{x + cell / 2:.0f}' y='{y + cell / 2 + 4:.0f}' font-size='11' "
                    f"text-anchor='middle' fill='{ink}'>{n}</text>"
                )
    parts.append("</svg>")
    return "".join(parts)


def timing_svg(comparison: Comparison) -> str:
    """Horizontal bars: wall seconds per technique, one bar per engine."""
    techniques = [Technique(t) for t in comparison.summary["technique"]]
    values = {
        (e, t): comparison.timings.get((e, t))
        for t in techniques
        for e in (Engine.NATIVE, Engine.NMAP)
    }
    known = [v for v in values.values() if v is not None]
    peak = max(known) if known else 0.0
    bar, gap, left, plot = 14, 10, 90, 420
    width = left + plot + 80
    height = 30 + len(techniques) * (2 * bar + gap) + 10
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' id='timing' width='{width}' "
        f"height='{height}' viewBox='0 0 {width} {height}' role='img' "
        "aria-label='wall time per engine and technique'>"
    ]
    for k, engine in enumerate((Engine.NATIVE, Engine.NMAP)):
        x = left + k * 110
        parts.append(
            f"<rect x='{x}' y='4' width='12' height='12' fill='{ENGINE_COLORS[engine]}'/>"
            f"<text x='{x + 16}' y='14' font-size='11'>{escape(engine.value)}</text>"
        )
    for i, tech in enumerate(techniques):
        y0 = 30 + i * (2 * bar + gap)
        parts.append(
            f"<text x='{left - 6}' y='{y0 + bar + 4}' font-size='11' "
            f"text-anchor='end'>{escape(tech.value)}</text>"
        )
        for k, engine in enumerate((Engine.NATIVE, Engine.NMAP)):
            v = values[(engine, tech)]
            y = y0 + k * bar
            w = 0.0 if v is None or peak <= 0 else max(1.0, plot * v / peak)
            label = "n/a" if v is None else f"{v:.2f} s"
            parts.append(
                f"<rect class='bar' data-engine='{engine.value}' x='{left}' y='{y}' "
                f"width='{w:.1f}' height='{bar - 2}' fill='{ENGINE_COLORS[engine]}'>"
                f"<title>{escape(engine.value)} {escape(tech.value)}: {label}</title></rect>"
                f"<text x='{left + w + 4:.1f}' y='{y + bar - 4}' font-size='10'>{label}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def disagreements_html(comparison: Comparison, limit: int = MAX_ROWS) -> str:
    from twinscan.compare.render_text import notable_rows

    rows = notable_rows(comparison)
    if rows.empty:
        return "<p id='disagreements'>Every verdict agrees" + (
            " and matches the truth.</p>" if comparison.has_truth else ".</p>"
        )
    head = ["technique", "host", "port", "native", "native reason", "nmap", "nmap reason"]
    if comparison.has_truth:
        head.append("truth")
    out = []
    if len(rows) > limit:
        out.append(f"<p class='muted'>first {limit} of {len(rows)} rows (the CSV has all)</p>")
    out += ["<table id='disagreements'><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr>"]
    for rec in rows.head(limit).to_dict("records"):
        cells = [
            rec["technique"],
            rec["host"],
            f"{rec['port']}/{rec['proto']}",
            _fmt(rec["native_state"]).replace("–", MISSING),
            _fmt(rec["native_reason"]),
            _fmt(rec["nmap_state"]).replace("–", MISSING),
            _fmt(rec["nmap_reason"]),
        ]
        if comparison.has_truth:
            cells.append(_fmt(rec["truth_state"]))
        cls = "" if rec["agree"] else " class='bad'"
        out.append(f"<tr{cls}>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def render_html(comparison: Comparison, *, title: str = "twinscan compare") -> str:
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    n_bad = int((~comparison.rows["agree"]).sum())
    verdict = (
        "Every verdict agrees."
        if n_bad == 0
        else f"{n_bad} of {count(len(comparison.rows), 'verdict')} "
        f"{'differs' if n_bad == 1 else 'differ'} between the engines."
    )
    gaps = describe_truth_gaps(comparison.truth_gaps())
    gaps_html = "" if gaps is None else f"<p id='truth-gaps'><strong>{escape(gaps)}</strong></p>"
    heatmaps = "".join(
        f"<div class='card'>{confusion_svg(confusion(comparison.rows, Technique(t)), Technique(t))}"
        "</div>"
        for t in comparison.summary["technique"]
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>twinscan vs nmap</h1><p class='muted'><code>{escape(title)}</code><br>"
        f"generated {escape(now)}</p><p><strong>{escape(verdict)}</strong></p>"
        f"<h2>Summary</h2>{summary_html(comparison)}"
        "<p class='muted'>native/nmap: wall-time ratio (below 1: twinscan was faster). "
        "Accuracy: share of the scored ports (truth ports: those whose ground truth the lab "
        f"knows) whose verdict equals the truth.</p>{gaps_html}"
        "<h2>Confusion matrices (rows: native, columns: nmap)</h2>"
        f"<div class='grid'>{heatmaps}</div>"
        f"<h2>Wall time per engine and technique</h2>{timing_svg(comparison)}"
        "<h2>Disagreements"
        + (" and errors against the truth" if comparison.has_truth else "")
        + f"</h2>{disagreements_html(comparison)}</body></html>\n"
    )


def write_html(
    comparison: Comparison, path: str | os.PathLike[str], *, title: str = "twinscan compare"
) -> None:
    Path(path).write_text(render_html(comparison, title=title), encoding="utf-8")
