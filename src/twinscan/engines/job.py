"""One ``twinscan scan`` from a validated request to its written outputs: the library function
behind the CLI command.

``plan_job`` checks the combination of outputs and modes before anything is scanned (nmap's
formats hold one TCP technique per file; ``--dask`` streams and so takes only appending
outputs); ``run_job`` then picks the path:

* **streamed** (native engine, and a large scan, a checkpoint or ``--dask``): verdicts go to the
  appending writers (CSV, JSON lines, Parquet, ``-oX``/``-oN``/``-oG``, the text report) block
  by block as they become final (``engines.streamed``, ``engines.dask_runner``);
* **whole result** (the nmap engine, small scans, ``--owners``, ``--open``, and nmap's formats
  for a scan of several techniques, whose ``<host>`` holds every protocol's ports):
  ``run_scan``, then every writer.

Either way it returns the text report and the scan's metadata; the caller prints and exits.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from twinscan.core import phases
from twinscan.core.errors import UsageError
from twinscan.core.vocab import Engine

if TYPE_CHECKING:
    import pandas as pd

    from twinscan.core.progress import Progress
    from twinscan.core.schema import ScanMeta, ScanResult
    from twinscan.engines.checkpoint import CheckpointLog
    from twinscan.formats.streaming import StreamWriters
    from twinscan.request.model import ScanRequest

#: the states nmap's ``--open`` keeps ("open or possibly open").
OPEN_STATES = ("open", "open|filtered", "unfiltered")


class Outputs(NamedTuple):
    """Where a scan's verdicts go (``-`` = stdout) and what the text report shows."""

    csv: Path | None = None
    json: Path | None = None
    xml: Path | None = None
    normal: Path | None = None
    grepable: Path | None = None
    parquet: Path | None = None
    show_closed: bool = False

    @property
    def files(self) -> list[Path]:
        return [
            p
            for p in (self.csv, self.json, self.xml, self.normal, self.grepable, self.parquet)
            if p is not None
        ]

    @property
    def report_to_stderr(self) -> bool:
        """The report goes to stderr when a file was asked for (stdout may carry one)."""
        return bool(self.files)

    @property
    def print_report(self) -> bool:
        """Print the report unless the only output went to stdout."""
        return not self.files or any(str(p) != "-" for p in self.files)


class Job(NamedTuple):
    request: ScanRequest
    engine: Engine
    outputs: Outputs
    checkpoint: CheckpointLog | None = None
    owners: bool = False
    only_open: bool = False
    dask: str | None = None


class JobOutcome(NamedTuple):
    meta: ScanMeta
    report: str


def plan_job(job: Job) -> None:
    """Refuse combinations that cannot be written, before any packet is sent (UsageError)."""
    out = job.outputs
    tcp = [t.value for t in job.request.techniques if t.proto.value == "tcp"]
    for option, path in (("-oX", out.xml), ("-oN", out.normal), ("-oG", out.grepable)):
        if path is not None and len(tcp) > 1:
            raise UsageError(
                f"{option} holds one TCP technique per file, as nmap's format does; got "
                f"{', '.join(tcp)} (scan them one at a time, or use --csv/--json)"
            )
    if job.dask is None:
        return
    if job.engine is not Engine.NATIVE:
        raise UsageError("--dask runs twinscan's native engine: drop --engine nmap")
    if _nmap_outputs(out) and len(job.request.techniques) > 1:
        raise UsageError(
            "--dask writes -oX/-oN/-oG host by host for a scan of one technique; got "
            f"{', '.join(t.value for t in job.request.techniques)} (scan them one at a time, "
            "or scan without --dask)"
        )
    if job.owners or job.only_open:
        raise UsageError("--dask does not take --owners or --open")
    from twinscan.engines.dask_runner import parse_address

    parse_address(job.dask)  # a bad address before any output is touched


def run_job(job: Job, progress: Progress | None = None) -> JobOutcome:
    """Scan and write every requested output; the text report and metadata come back."""
    plan_job(job)
    if job.dask is not None or _streams(job):
        return _run_streamed(job, progress)
    from twinscan.engines import run_scan
    from twinscan.formats.text_report import render_text

    result = run_scan(job.request, job.engine, progress=progress, checkpoint=job.checkpoint)
    phases.mark("scan done")
    if job.owners:
        from twinscan.local.owners import add_owners

        result.frame = add_owners(result.frame)
    if job.only_open:
        result = keep_open_result(result)
    write_outputs(result, job.outputs)
    phases.mark("files written")
    report = render_text(result, show_closed=job.outputs.show_closed)
    phases.mark("report rendered")
    return JobOutcome(result.meta, report)


def keep_open_result(result: ScanResult) -> ScanResult:
    """``--open``: only the rows in ``OPEN_STATES``, in the same order; from the columns when
    the result still holds them (no pandas: a -p- scan's --open cost 0.6 s and 90 MB more than
    the scan through a frame)."""
    from twinscan.core.schema import ScanResult, category_code

    columns = result.unbuilt_columns
    if columns is None:
        return ScanResult(frame=keep_open(result.frame), meta=result.meta)
    codes = {category_code("state", s) for s in OPEN_STATES}
    rows = [i for i, s in enumerate(columns.state) if s in codes]
    return ScanResult(columns=columns.take(rows), meta=result.meta)


def keep_open(frame: pd.DataFrame) -> pd.DataFrame:
    from twinscan.core.schema import conform

    return conform(frame[frame["state"].astype(str).isin(OPEN_STATES)])


def _nmap_outputs(out: Outputs) -> bool:
    return any(p is not None for p in (out.xml, out.normal, out.grepable))


def _streams(job: Job) -> bool:
    """Native engine, large or checkpointed, and only outputs that append (nmap's formats:
    for one technique)."""
    from twinscan.engines.streamed import streams

    whole = (
        job.owners
        or job.only_open
        or (_nmap_outputs(job.outputs) and len(job.request.techniques) > 1)
    )
    if job.engine is not Engine.NATIVE or whole:
        return False
    return job.checkpoint is not None or streams(job.request)


def _run_streamed(job: Job, progress: Progress | None) -> JobOutcome:
    from twinscan.engines.streamed import run_streamed, scan_meta, scan_start
    from twinscan.formats.streaming import StreamWriters

    out = job.outputs
    request = job.request
    start = scan_start(job.checkpoint)
    by_workers = job.dask is not None and out.parquet is not None
    writers = StreamWriters(
        csv=out.csv,
        json_path=out.json,
        parquet=None if by_workers else out.parquet,
        xml=out.xml,
        normal=out.normal,
        grepable=out.grepable,
        head=scan_meta(request, Engine.NATIVE, start),
        ports={t: request.ports_for(t) for t in request.techniques},
        show_closed=out.show_closed,
    )
    if job.dask is not None:
        meta = _run_dask(job, writers, progress, start)
    else:
        meta = run_streamed(
            request,
            Engine.NATIVE,
            writers,
            progress=progress,
            checkpoint=job.checkpoint,
            start=start,
        )
    writers.close(meta)
    phases.mark("scan done, files written")
    report = writers.report(meta)
    phases.mark("report rendered")
    return JobOutcome(meta, report)


def _run_dask(
    job: Job, writers: StreamWriters, progress: Progress | None, start: dt.datetime
) -> ScanMeta:
    """``--dask``: with ``--parquet`` the workers write the Parquet files; when nothing else
    needs the verdicts (no other file, no checkpoint, no ``--show-closed`` report), they send
    back only the report's summaries."""
    from twinscan.engines.dask_runner import run_dask

    assert job.dask is not None
    out = job.outputs
    parquet = None
    if out.parquet is not None:
        from twinscan.formats.parquet import ParquetWriter

        parquet = ParquetWriter(out.parquet)
    others = [out.csv, out.json, out.xml, out.normal, out.grepable]
    verdicts = (
        parquet is None
        or job.checkpoint is not None
        or out.show_closed
        or any(p is not None for p in others)
    )
    meta = run_dask(
        job.request,
        job.dask,
        writers,
        progress=progress,
        checkpoint=job.checkpoint,
        start=start,
        parquet=parquet,
        verdicts=verdicts,
    )
    if parquet is not None:
        parquet.close(meta)
    return meta


def write_outputs(result: ScanResult, outputs: Outputs) -> None:
    """Write every requested file of a whole result."""
    from twinscan.formats.csv import write_result_csv

    if outputs.csv is not None:
        write_result_csv(result, sys.stdout if str(outputs.csv) == "-" else outputs.csv)
    if outputs.json is not None:
        from twinscan.formats.jsonl import write_jsonl

        write_jsonl(result, sys.stdout if str(outputs.json) == "-" else outputs.json)
    if outputs.xml is not None:
        from twinscan.formats.nmap_xml_write import write_nmap_xml

        write_nmap_xml(result, sys.stdout if str(outputs.xml) == "-" else outputs.xml)
    for path, kind in ((outputs.normal, "normal"), (outputs.grepable, "grepable")):
        if path is not None:
            from twinscan.formats import nmap_text

            text = (
                nmap_text.normal_text(result)
                if kind == "normal"
                else nmap_text.grepable_text(result)
            )
            nmap_text.write_text(text, sys.stdout if str(path) == "-" else str(path))
    if outputs.parquet is not None:
        from twinscan.formats.parquet import write_parquet_frame

        write_parquet_frame(result.frame, outputs.parquet, result.meta)
