"""``twinscan diff A B``: new, vanished and changed ports between two saved scans."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from twinscan.cli.base import app, funnel


@app.command()
@funnel
def diff(
    a: Annotated[
        Path,
        typer.Argument(
            help="first scan: nmap XML, twinscan CSV, JSON lines or Parquet (file or --parquet DIR)"
        ),
    ],
    b: Annotated[Path, typer.Argument(help="second scan, any of the same formats")],
    reasons: Annotated[
        bool, typer.Option("--reasons", help="a changed reason alone counts as a change")
    ] = False,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="write the differences as CSV ('-' = stdout)")
    ] = None,
) -> None:
    """Compare two saved scans like nmap's ndiff. Exit status: 0 same, 1 different, 2 bad input."""
    from twinscan.compare.diff import diff_files, render_diff
    from twinscan.formats.incomplete import IncompleteScanWarning
    from twinscan.formats.outpaths import check_output_paths

    check_output_paths({"--csv": csv})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IncompleteScanWarning)
        result = diff_files(a, b, reasons=reasons)
    for w in caught:  # an interrupted scan's file: one line each, the diff goes on
        if issubclass(w.category, IncompleteScanWarning):
            typer.echo(f"twinscan: warning: {w.message}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    to_stdout = csv is not None and str(csv) == "-"
    typer.echo(render_diff(result, str(a), str(b)), err=to_stdout)
    if csv is not None:
        result.rows.to_csv(sys.stdout if to_stdout else csv, index=False)
    if not result.same:
        raise typer.Exit(1)
