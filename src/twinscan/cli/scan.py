"""``twinscan scan``: nmap-style options over ``twinscan.engines.run_scan``.

The options are declared here for typer (``--help``, errors, the rare spellings); what the
command does with them is ``cli.scan_run.run_scan_command``, which ``cli.scan_fast`` also calls
for the common command lines without importing typer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from twinscan.cli.base import app, funnel
from twinscan.cli.options import ScanOptions, scan_options
from twinscan.cli.scan_run import run_scan_command
from twinscan.core.vocab import ScanEngine


@app.command()
@funnel
@scan_options
def scan(
    opts: ScanOptions,
    engine: Annotated[
        ScanEngine, typer.Option("--engine", help="native (twinscan) or nmap")
    ] = ScanEngine.NATIVE,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="write rows as CSV ('-' = stdout)")
    ] = None,
    json: Annotated[Path | None, typer.Option("--json", help="write rows as JSON lines")] = None,
    xml: Annotated[Path | None, typer.Option("-oX", help="write nmap-compatible XML")] = None,
    normal: Annotated[
        Path | None, typer.Option("-oN", help="write nmap's normal text format")
    ] = None,
    grepable: Annotated[
        Path | None, typer.Option("-oG", help="write nmap's grepable format")
    ] = None,
    all_formats: Annotated[
        str | None,
        typer.Option("-oA", help="write BASE.xml, BASE.nmap and BASE.gnmap, as nmap does"),
    ] = None,
    owners: Annotated[
        bool, typer.Option("--owners", help="add the owning process of local open ports")
    ] = False,
    only_open: Annotated[
        bool,
        typer.Option(
            "--open", help="keep only open, open|filtered and unfiltered ports (as nmap's --open)"
        ),
    ] = False,
    show_closed: Annotated[
        bool, typer.Option("--show-closed", help="list closed ports too")
    ] = False,
    parquet: Annotated[
        Path | None,
        typer.Option(
            "--parquet",
            help="write rows as Parquet files into DIR (one per technique and host block)",
        ),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask",
            help="scan on Dask: local[:N] starts N local worker processes, or a scheduler "
            "address (tcp://host:8786) whose workers scan their shards",
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint",
            help="save progress to FILE while scanning (every finished port, at least once a "
            "second); continue a stopped scan with --resume FILE",
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="continue the scan saved in FILE (--checkpoint) without rescanning finished "
            "ports; the outputs cover the whole scan",
        ),
    ] = None,
    debug_timing: Annotated[
        bool,
        typer.Option(
            "--debug-timing",
            help="print on stderr, at exit, where the time went (ms since the process started: "
            "start-up, planning, probing, writing)",
        ),
    ] = False,
) -> None:
    """Scan TARGETs like nmap does, with twinscan's native engine (or nmap with --engine nmap).

    Without -s it runs a TCP connect scan (-sT), which needs no privileges; without -p, the 1000 most common ports. Lab addresses are scanned through `twinscan lab exec -- twinscan scan ...`.

    With --checkpoint FILE every finished port is saved while scanning; `twinscan scan --resume FILE` continues a stopped (or killed) scan without rescanning them.

    Exit status: 0 done, 2 bad input, 3 missing root or nmap, 4 the scan failed, 130 interrupted (what finished is written, marked incomplete).
    """
    run_scan_command(
        opts,
        engine=engine,
        csv=csv,
        json=json,
        xml=xml,
        normal=normal,
        grepable=grepable,
        all_formats=all_formats,
        owners=owners,
        only_open=only_open,
        show_closed=show_closed,
        parquet=parquet,
        dask=dask,
        checkpoint=checkpoint,
        resume=resume,
        debug_timing=debug_timing,
    )
