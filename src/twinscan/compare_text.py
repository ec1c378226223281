"""Terminal rendering of a ``Comparison`` with rich (summary table + the ports that matter)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from twinscan.compare import Comparison

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
    from rich.table import Table

    table = Table(title="twinscan vs nmap, per technique", title_justify="left")
    table.add_column("technique")
    table.add_column("ports", justify="right")
    table.add_column("agree", justify="right")
    table.add_column("disagreements (native→nmap)")
    table.add_column("native s", justify="right")
    table.add_column("nmap s", justify="right")
    table.add_column("native/nmap", justify="right")
    if comparison.has_truth:
        table.add_column("native acc", justify="right")
        table.add_column("nmap acc", justify="right")
    for rec in comparison.summary.to_dict("records"):
        cells = [
            str(rec["technique"]),
            str(rec["ports"]),
            _num(rec["agreement_pct"], ".1f", "%"),
            str(rec["pairs"]) or "-",
            _num(rec["native_s"], ".2f"),
            _num(rec["nmap_s"], ".2f"),
            _num(rec["ratio"], ".2f", "×"),
        ]
        if comparison.has_truth:
            cells += [
                _num(rec["native_accuracy_pct"], ".1f", "%"),
                _num(rec["nmap_accuracy_pct"], ".1f", "%"),
            ]
        style = None if rec["disagreements"] == 0 else "yellow"
        table.add_row(*cells, style=style)
    return table


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
    table = Table(title=title, title_justify="left")
    for col in ("technique", "host", "port", "native", "nmap"):
        table.add_column(col)
    if comparison.has_truth:
        table.add_column("truth")
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
    console.print(summary_table(comparison))
    ports = ports_table(comparison)
    if ports is not None:
        console.print(ports)
    n = int((~comparison.rows["agree"]).sum())
    verdict = (
        "every verdict agrees"
        if n == 0
        else f"{n} of {len(comparison.rows)} verdicts differ between the engines"
    )
    console.print(verdict)
