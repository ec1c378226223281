"""``twinscan scan``: nmap-style options over ``twinscan.engines.run_scan``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from twinscan.cli.base import app, funnel
from twinscan.cli.options import ScanOptions, describe_request, scan_options
from twinscan.core import phases
from twinscan.core.errors import UsageError
from twinscan.core.vocab import ScanEngine
from twinscan.engines.job import plan_job

if TYPE_CHECKING:
    from twinscan.engines.checkpoint import CheckpointLog


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
    if debug_timing:
        phases.show()
    phases.mark("options parsed")
    from twinscan.cli.progress_bar import progress_for_terminal
    from twinscan.engines.job import Job, Outputs, run_job
    from twinscan.formats.outpaths import check_output_paths

    if all_formats is not None:
        if any(p is not None for p in (xml, normal, grepable)):
            raise UsageError("-oA writes the -oX, -oN and -oG files: give either -oA or those")
        if all_formats in ("", "-"):
            raise UsageError("-oA needs a base file name (it writes three files)")
        xml, normal, grepable = (Path(f"{all_formats}.{ext}") for ext in ("xml", "nmap", "gnmap"))
    check_output_paths(
        {"--csv": csv, "--json": json, "-oX": xml, "-oN": normal, "-oG": grepable},
        {"--parquet": parquet},
    )
    log: CheckpointLog | None = None
    if resume is not None:
        from twinscan.engines.checkpoint import CheckpointLog
        from twinscan.request.safety import check_targets

        if opts.targets or opts.input_list or checkpoint is not None:
            raise UsageError(
                f"--resume {resume} continues the scan saved there (its targets, ports and "
                "options, appending to it): give no targets, -iL or --checkpoint"
            )
        log = CheckpointLog.resume(resume)
        request = log.request
        relay = (request.bounce.host,) if request.bounce else ()
        check_targets((*request.targets, *relay), allow_external=opts.allow_external)
    else:
        request = opts.request(owners=owners)
    job = Job(
        request=request,
        engine=log.engine if log else engine.engine,
        outputs=Outputs(csv, json, xml, normal, grepable, parquet, show_closed),
        checkpoint=log,
        owners=owners,
        only_open=only_open,
        dask=dask,
    )
    plan_job(job)
    if resume is None and checkpoint is not None:
        from twinscan.engines.checkpoint import CheckpointLog

        job = dataclasses.replace(
            job, checkpoint=CheckpointLog.create(checkpoint, request, job.engine)
        )
    phases.mark("targets, ports and plan checked")
    if opts.verbose:
        for line in describe_request(request):
            typer.echo(line, err=True)
    with progress_for_terminal() as progress:
        outcome = run_job(job, progress)
    if job.outputs.print_report:
        typer.echo(outcome.report, err=job.outputs.report_to_stderr)
        phases.mark("report printed")
    if opts.verbose:
        typer.echo(
            f"{len(request.techniques)} technique(s) in {outcome.meta.elapsed_s:.2f} s", err=True
        )
    if outcome.meta.incomplete:
        raise typer.Exit(130)
