"""Terminal rendering of a ``Comparison`` with rich (summary table + the ports that matter)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinscan.core.wording import count

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from twinscan.compare.align import Comparison

#: At most this many per-port lines are printed (the CSV/HTML have them all).
MAX_LISTED = 40


def _num(value: object, fmt: str, suffix: str = "") -> str:
    if value is None:
        return "-"
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"
    if f != f:  # NaN
        return "-"
    return f"{f:{fmt}}{suffix}"


def summary_table(comparison: Comparison) -> object:
    """The per-technique table, narrow enough for an 80-column terminal (no header cut).

    Two-line headers and no side borders keep it under 80 columns with truth; the
    disagreements by state pair, which can be long, are listed below it (``pair_lines``).
    """
    from rich import box
    from rich.table import Table

    table = Table(
        title="twinscan vs nmap, per technique",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    gaps = bool(comparison.truth_gaps())
    table.add_column("technique", no_wrap=True)
    table.add_column("ports", justify="right", no_wrap=True)
    table.add_column("agree", justify="right", no_wrap=True)
    table.add_column("native\ns", justify="right", no_wrap=True)
    table.add_column("nmap\ns", justify="right", no_wrap=True)
    table.add_column("native/\nnmap", justify="right", no_wrap=True)
    if comparison.has_truth:
        table.add_column("native\nacc", justify="right", no_wrap=True)
        table.add_column("nmap\nacc", justify="right", no_wrap=True)
        if gaps:
            table.add_column("scored", justify="right", no_wrap=True)
    for rec in comparison.summary.to_dict("records"):
        cells = [
            str(rec["technique"]),
            str(rec["ports"]),
            _num(rec["agreement_pct"], ".1f", "%"),
            _num(rec["native_s"], ".2f"),
            _num(rec["nmap_s"], ".2f"),
            _num(rec["ratio"], ".2f", "×"),
        ]
        if comparison.has_truth:
            cells += [
                _num(rec["native_accuracy_pct"], ".1f", "%"),
                _num(rec["nmap_accuracy_pct"], ".1f", "%"),
            ]
            if gaps:
                cells.append(str(rec["truth_ports"]))
        style = None if rec["disagreements"] == 0 else "yellow"
        table.add_row(*cells, style=style)
    return table


def pair_lines(comparison: Comparison) -> list[str]:
    """``"udp: 27 differ (native→nmap): closed→open|filtered ×27"`` per technique that differs."""
    out = []
    for rec in comparison.summary.to_dict("records"):
        n = int(rec["disagreements"])
        if n:
            out.append(f"{rec['technique']}: {n} differ (native→nmap): {rec['pairs']}")
    return out


def notable_rows(comparison: Comparison) -> pd.DataFrame:
    """Ports where the engines disagree, or (with truth) where either engine is wrong."""
    rows = comparison.rows
    mask = ~rows["agree"]
    if comparison.has_truth:
        mask = mask | (rows["native_correct"] == False) | (rows["nmap_correct"] == False)  # noqa: E712
    return rows[mask.fillna(False).astype(bool)].reset_index(drop=True)


def ports_table(comparison: Comparison, limit: int = MAX_LISTED) -> object | None:
    from rich.table import Table

    notable = notable_rows(comparison)
    if notable.empty:
        return None
    title = "ports where the engines disagree" + (
        " or miss the truth" if comparison.has_truth else ""
    )
    if len(notable) > limit:
        title += f" (first {limit} of {len(notable)})"
    from rich import box

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, collapse_padding=True)  # fmt: skip
    heads = ["technique", "host", "port", "native", "nmap"]
    if comparison.has_truth:
        heads.append("truth")
    for col in heads:
        # A header is never cut: the column is at least as wide; long cells wrap instead.
        table.add_column(col, min_width=len(col), overflow="fold")
    for rec in notable.head(limit).to_dict("records"):
        native = f"{_text(rec['native_state'])} ({_text(rec['native_reason'])})"
        nmap = f"{_text(rec['nmap_state'])} ({_text(rec['nmap_reason'])})"
        cells = [
            str(rec["technique"]),
            str(rec["host"]),
            f"{rec['port']}/{rec['proto']}",
            native,
            nmap,
        ]
        if comparison.has_truth:
            cells.append(_text(rec["truth_state"], "unknown"))
        table.add_row(*cells)
    return table


def _text(value: object, missing: str = "missing") -> str:
    if value is None or str(value) in ("<NA>", "nan"):
        return missing
    return str(value)


def print_comparison(comparison: Comparison, console: Console) -> None:
    from twinscan.compare.align import describe_truth_gaps

    console.print(summary_table(comparison))
    for line in pair_lines(comparison):
        console.print(line, highlight=False)
    gaps = describe_truth_gaps(comparison.truth_gaps())
    if gaps is not None:
        console.print(gaps, style="yellow", highlight=False)
    ports = ports_table(comparison)
    if ports is not None:
        console.print(ports)
    n = int((~comparison.rows["agree"]).sum())
    total = len(comparison.rows)
    verdict = (
        "every verdict agrees"
        if n == 0
        else f"{n} of {count(total, 'verdict')} {'differs' if n == 1 else 'differ'} "
        "between the engines"
    )
    console.print(verdict, highlight=False)
