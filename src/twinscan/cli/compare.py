"""``twinscan compare``: the same scan through twinscan and through nmap, verdicts diffed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from twinscan.cli.base import app, funnel
from twinscan.cli.options import ScanOptions, describe_request, scan_options


@app.command()
@funnel
@scan_options
def compare(
    opts: ScanOptions,
    truth: Annotated[
        bool, typer.Option("--truth", help="add the lab's ground truth (lab targets only)")
    ] = False,
    lab_spec: Annotated[
        str | None, typer.Option("--spec", help="lab spec for --truth (default: the default lab)")
    ] = None,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="write the per-port rows as CSV ('-' = stdout)")
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="write a self-contained HTML report")
    ] = None,
    xml_dir: Annotated[
        Path | None,
        typer.Option("--xml-dir", help="save nmap's and twinscan's XML per technique here"),
    ] = None,
) -> None:
    """Scan TARGETs with each technique through twinscan, then nmap; print where they differ.

    Without -s it compares TCP connect scans (-sT). Lab addresses are compared through `twinscan lab exec -- twinscan compare ...`.

    Exit status: 0 every verdict agrees, 1 some differ, 2 bad input, 3 missing root or nmap, 4 a scan failed, 130 interrupted.
    """
    from rich.console import Console

    from twinscan.compare.align import write_rows_csv
    from twinscan.compare.render_text import print_comparison
    from twinscan.compare.run import lab_truth, run_compare
    from twinscan.formats.outpaths import check_output_paths

    check_output_paths({"--csv": csv, "--html": html}, {"--xml-dir": xml_dir})
    request = opts.request(default_letters="T")
    if opts.verbose:
        for line in describe_request(request):
            typer.echo(line, err=True)
    truth_frame = lab_truth(request, lab_spec) if truth else None
    from twinscan.cli.progress_bar import progress_for_terminal

    with progress_for_terminal() as progress:
        result = run_compare(request, truth=truth_frame, xml_dir=xml_dir, progress=progress)
    to_stdout = csv is not None and str(csv) == "-"
    stream = sys.stderr if to_stdout else sys.stdout
    # Off a terminal (CI logs, `make demo` output piped), rich would wrap the table at 80 columns.
    console = Console(stderr=to_stdout, highlight=False, width=None if stream.isatty() else 160)
    print_comparison(result, console)
    if csv is not None:
        write_rows_csv(result.rows, sys.stdout if to_stdout else csv)
        if not to_stdout:
            console.print(f"per-port rows: {csv}")
    if html is not None:
        from twinscan.compare.render_html import write_html

        write_html(result, html, title=" ".join(request.argv) or "twinscan compare")
        console.print(f"HTML report: {html}")
    if xml_dir is not None:
        console.print(f"XML per engine and technique: {xml_dir}/")
    if result.interrupted:
        typer.echo(f"twinscan: {result.interruption_note}", err=True)
        raise typer.Exit(130)
    if not result.all_agree:
        raise typer.Exit(1)
