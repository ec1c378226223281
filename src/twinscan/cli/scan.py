"""``twinscan scan``: nmap-style options over ``twinscan.engines.run_scan``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from twinscan.cli import app, funnel
from twinscan.cli.options import ScanOptions, describe_request, scan_options
from twinscan.core.errors import UsageError
from twinscan.core.vocab import ScanEngine

if TYPE_CHECKING:
    import pandas as pd

    from twinscan.core.schema import ScanResult
    from twinscan.engines.checkpoint import CheckpointLog
    from twinscan.request.model import ScanRequest

#: the states nmap's ``--open`` keeps ("open or possibly open").
OPEN_STATES = ("open", "open|filtered", "unfiltered")


def keep_open(frame: pd.DataFrame) -> pd.DataFrame:
    from twinscan.core.schema import conform

    return conform(frame[frame["state"].astype(str).isin(OPEN_STATES)])


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
) -> None:
    """Scan TARGETs like nmap does, with twinscan's native engine (or nmap with --engine nmap).

    Without -s it runs a TCP connect scan (-sT), which needs no privileges; without -p, the 1000 most common ports. Lab addresses are scanned through `twinscan lab exec -- twinscan scan ...`.

    With --checkpoint FILE every finished port is saved while scanning; `twinscan scan --resume FILE` continues a stopped (or killed) scan without rescanning them.

    Exit status: 0 done, 2 bad input, 3 missing root or nmap, 4 the scan failed, 130 interrupted (what finished is written, marked incomplete).
    """
    from twinscan.engines import run_scan
    from twinscan.formats.outpaths import check_output_paths
    from twinscan.formats.text_report import render_text

    if all_formats is not None:
        if any(p is not None for p in (xml, normal, grepable)):
            raise UsageError("-oA writes the -oX, -oN and -oG files: give either -oA or those")
        if all_formats in ("", "-"):
            raise UsageError("-oA needs a base file name (it writes three files)")
        xml, normal, grepable = (Path(f"{all_formats}.{ext}") for ext in ("xml", "nmap", "gnmap"))
    outputs = {"--csv": csv, "--json": json, "-oX": xml, "-oN": normal, "-oG": grepable}
    check_output_paths(outputs, {"--parquet": parquet})
    log = None
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
        if checkpoint is not None:
            from twinscan.engines.checkpoint import CheckpointLog

            log = CheckpointLog.create(checkpoint, request, engine.engine)
    tcp_techniques = [t.value for t in request.techniques if t.proto.value == "tcp"]
    for option in ("-oX", "-oN", "-oG"):
        if outputs[option] is not None and len(tcp_techniques) > 1:
            raise UsageError(
                f"{option} holds one TCP technique per file, as nmap's format does; got "
                f"{', '.join(tcp_techniques)} (scan them one at a time, or use --csv/--json)"
            )
    if opts.verbose:
        for line in describe_request(request):
            typer.echo(line, err=True)
    from twinscan.cli.progress_bar import progress_for_terminal

    if dask is not None:
        if (log.engine.value if log else engine.value) != "native":
            raise UsageError("--dask runs twinscan's native engine: drop --engine nmap")
        for option, value in (("-oX", xml), ("-oN", normal), ("-oG", grepable)):
            if value is not None:
                raise UsageError(
                    f"--dask writes --csv, --json and --parquet as the scan runs, not {option}: "
                    "convert afterwards, or scan without --dask"
                )
        if owners or only_open:
            raise UsageError("--dask does not take --owners or --open")
        _scan_streamed(
            request, log, csv=csv, json=json, parquet=parquet, show_closed=show_closed,
            verbose=opts.verbose, dask=dask,
        )  # fmt: skip
        return
    if _streams(
        request,
        engine,
        log,
        owners=owners,
        only_open=only_open,
        xml=xml,
        normal=normal,
        grepable=grepable,
    ):
        _scan_streamed(
            request,
            log,
            csv=csv,
            json=json,
            parquet=parquet,
            show_closed=show_closed,
            verbose=opts.verbose,
        )
        return
    with progress_for_terminal() as progress:
        result = run_scan(
            request, log.engine if log else engine.engine, progress=progress, checkpoint=log
        )
    if owners:
        from twinscan.local.owners import add_owners

        result.frame = add_owners(result.frame)
    if only_open:
        result.frame = keep_open(result.frame)
    wrote = write_outputs(result, csv=csv, xml=xml, json=json, normal=normal, grepable=grepable)
    if parquet is not None:
        from twinscan.formats.parquet import write_parquet_frame

        write_parquet_frame(result.frame, parquet, result.meta)
        wrote = True
    if not wrote or any(str(p) != "-" for p in outputs.values() if p is not None):
        typer.echo(render_text(result, show_closed=show_closed), err=wrote)
    if opts.verbose:
        typer.echo(
            f"{len(request.techniques)} technique(s) in {result.meta.elapsed_s:.2f} s", err=True
        )
    if result.meta.incomplete:
        raise typer.Exit(130)


def _streams(
    request: ScanRequest,
    engine: ScanEngine,
    log: CheckpointLog | None,
    *,
    owners: bool,
    only_open: bool,
    xml: Path | None,
    normal: Path | None,
    grepable: Path | None,
) -> bool:
    """Whether the scan streams its verdicts to the outputs block by block (native engine,
    large or checkpointed, and only outputs that append: CSV, JSON lines, Parquet, report)."""
    from twinscan.engines.streamed import streams

    native = (log.engine if log else engine.engine).value == "native"
    whole_result = owners or only_open or any(p is not None for p in (xml, normal, grepable))
    return native and not whole_result and (log is not None or streams(request))


def _scan_streamed(
    request: ScanRequest,
    log: CheckpointLog | None,
    *,
    csv: Path | None,
    json: Path | None,
    parquet: Path | None,
    show_closed: bool,
    verbose: int,
    dask: str | None = None,
) -> None:
    from twinscan.cli.progress_bar import progress_for_terminal
    from twinscan.core.vocab import Engine
    from twinscan.engines.streamed import run_streamed
    from twinscan.formats.streaming import StreamWriters

    if dask is not None:
        from twinscan.engines.dask_runner import parse_address

        parse_address(dask)  # a bad address before any output is touched
    writers = StreamWriters(csv=csv, json_path=json, parquet=parquet, show_closed=show_closed)
    with progress_for_terminal() as progress:
        if dask is not None:
            from twinscan.engines.dask_runner import run_dask

            meta = run_dask(request, dask, writers, progress=progress, checkpoint=log)
        else:
            meta = run_streamed(request, Engine.NATIVE, writers, progress=progress, checkpoint=log)
    writers.close(meta)
    outputs = [p for p in (csv, json, parquet) if p is not None]
    if not outputs or any(str(p) != "-" for p in outputs):
        typer.echo(writers.report(meta), err=bool(outputs))
    if verbose:
        typer.echo(f"{len(request.techniques)} technique(s) in {meta.elapsed_s:.2f} s", err=True)
    if meta.incomplete:
        raise typer.Exit(130)


def write_outputs(
    result: ScanResult,
    *,
    csv: Path | None,
    xml: Path | None,
    json: Path | None,
    normal: Path | None = None,
    grepable: Path | None = None,
) -> bool:
    """Write the requested files; True when anything was written."""
    from twinscan.formats.csv import write_result_csv

    if csv is not None:
        write_result_csv(result, sys.stdout if str(csv) == "-" else csv)
    if json is not None:
        from twinscan.formats.jsonl import write_jsonl

        write_jsonl(result, sys.stdout if str(json) == "-" else json)
    if xml is not None:
        from twinscan.formats.nmap_xml_write import write_nmap_xml

        write_nmap_xml(result, sys.stdout if str(xml) == "-" else xml)
    for path, kind in ((normal, "normal"), (grepable, "grepable")):
        if path is not None:
            from twinscan.formats import nmap_text

            text = (
                nmap_text.normal_text(result)
                if kind == "normal"
                else nmap_text.grepable_text(result)
            )
            nmap_text.write_text(text, sys.stdout if str(path) == "-" else str(path))
    return any(p is not None for p in (csv, xml, json, normal, grepable))
