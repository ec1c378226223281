"""The body of ``twinscan scan``: what it does once its options are parsed, without typer.

``cli.scan`` (typer) and ``cli.scan_fast`` (the common command lines, parsed without importing
typer) both end here, with the same values.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from twinscan.core import phases
from twinscan.core.errors import UsageError
from twinscan.core.vocab import ScanEngine

if TYPE_CHECKING:
    from twinscan.cli.scan_request import ScanOptions
    from twinscan.engines.checkpoint import CheckpointLog

EXIT_INCOMPLETE = 130


def _echo(text: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + "\n")
    stream.flush()


def run_scan_command(
    opts: ScanOptions,
    *,
    engine: ScanEngine = ScanEngine.NATIVE,
    csv: Path | None = None,
    json: Path | None = None,
    xml: Path | None = None,
    normal: Path | None = None,
    grepable: Path | None = None,
    all_formats: str | None = None,
    owners: bool = False,
    only_open: bool = False,
    show_closed: bool = False,
    parquet: Path | None = None,
    dask: str | None = None,
    checkpoint: Path | None = None,
    resume: Path | None = None,
    debug_timing: bool = False,
) -> None:
    """Scan as asked, write the outputs, print the report; ``SystemExit(130)`` when the scan
    was interrupted (what finished is written, marked incomplete)."""
    if debug_timing:
        phases.show()
    phases.mark("options parsed")
    from twinscan.cli.progress_bar import progress_for_terminal
    from twinscan.cli.scan_request import describe_request
    from twinscan.engines.job import Job, Outputs, plan_job, run_job
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

        job = job._replace(checkpoint=CheckpointLog.create(checkpoint, request, job.engine))
    phases.mark("targets, ports and plan checked")
    if opts.verbose:
        for line in describe_request(request):
            _echo(line, err=True)
    with progress_for_terminal() as progress:
        outcome = run_job(job, progress)
    if job.outputs.print_report:
        _echo(outcome.report, err=job.outputs.report_to_stderr)
        phases.mark("report printed")
    if opts.verbose:
        _echo(f"{len(request.techniques)} technique(s) in {outcome.meta.elapsed_s:.2f} s", err=True)
    if outcome.meta.incomplete:
        raise SystemExit(EXIT_INCOMPLETE)
