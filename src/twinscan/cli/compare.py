"""``twinscan compare``: the same scan through twinscan and through nmap, verdicts diffed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from twinscan.cli import app, funnel

#: ``-s all`` expands to these letters (FTP bounce joins when ``-b`` is given).
ALL_LETTERS = "TSFXNAWMU"


def parse_letters(text: str) -> list[str]:
    """``"SU"`` -> ``["S", "U"]``; ``"all"`` -> every technique but FTP bounce."""
    from twinscan.errors import UsageError

    if text.strip().lower() == "all":
        return list(ALL_LETTERS)
    letters = [c for c in text.strip() if c not in ", "]
    if not letters:
        raise UsageError("-s needs scan type letters, e.g. -sS, -sSU or -s all")
    return letters


@app.command()
@funnel
def compare(
    targets: Annotated[
        list[str] | None, typer.Argument(help="lab or loopback addresses (as for `scan`)")
    ] = None,
    scan_types: Annotated[
        str,
        typer.Option(
            "-s",
            help="scan types as nmap letters: T S F X N A W M U (e.g. -sSU), or 'all'",
        ),
    ] = "T",
    bounce: Annotated[
        str | None, typer.Option("-b", help="also FTP bounce through [user:pass@]relay[:port]")
    ] = None,
    ports: Annotated[
        str | None, typer.Option("-p", help="ports, nmap syntax (22,80,1-1024, T:/U:)")
    ] = None,
    top_ports: Annotated[int | None, typer.Option("--top-ports")] = None,
    timing: Annotated[int, typer.Option("-T", min=0, max=5, help="timing template 0-5")] = 3,
    max_retries: Annotated[int | None, typer.Option("--max-retries", min=0)] = None,
    min_rate: Annotated[float | None, typer.Option("--min-rate")] = None,
    max_rate: Annotated[float | None, typer.Option("--max-rate")] = None,
    scan_delay: Annotated[str | None, typer.Option("--scan-delay")] = None,
    no_randomize: Annotated[bool, typer.Option("-r", help="scan ports in order")] = False,
    defeat_icmp_ratelimit: Annotated[bool, typer.Option("--defeat-icmp-ratelimit")] = False,
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
    allow_external: Annotated[bool, typer.Option("--allow-external")] = False,
) -> None:
    """Scan TARGETs with each technique through twinscan, then nmap; print where they differ.

    Exit status: 0 every verdict agrees, 1 some differ, 2 bad input.
    """
    from rich.console import Console

    from twinscan.compare import write_rows_csv
    from twinscan.compare_text import print_comparison
    from twinscan.runcompare import lab_truth, run_compare
    from twinscan.scanspec import build_request, parse_duration_ms, parse_scan_types

    techniques = parse_scan_types(parse_letters(scan_types))
    request = build_request(
        targets=targets or [],
        techniques=techniques,
        ports=ports,
        top=top_ports,
        timing_level=timing,
        max_retries=max_retries,
        min_rate=min_rate,
        max_rate=max_rate,
        scan_delay_ms=parse_duration_ms(scan_delay) if scan_delay else None,
        randomize_ports=not no_randomize,
        bounce=bounce,
        allow_external=allow_external,
        defeat_icmp_ratelimit=defeat_icmp_ratelimit,
        argv=("twinscan", *sys.argv[1:]),
    )
    truth_frame = lab_truth(request, lab_spec) if truth else None
    from twinscan.cli.progress import progress_for_terminal

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
        from twinscan.html_report import write_html

        write_html(result, html, title=" ".join(request.argv) or "twinscan compare")
        console.print(f"HTML report: {html}")
    if xml_dir is not None:
        console.print(f"XML per engine and technique: {xml_dir}/")
    if not result.all_agree:
        raise typer.Exit(1)
