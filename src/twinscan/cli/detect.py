"""``twinscan detect CAPTURE...``: find port scans in packet captures (or live traffic)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from twinscan.cli.base import app, funnel
from twinscan.core.errors import InputFileError, UsageError

if TYPE_CHECKING:
    from twinscan.detect.runner import Report, Row

_TABLE = (
    ("DETECTOR", "detector"),
    ("ALERT", "alert"),
    ("SCANNER", "scanner"),
    ("TARGETS", "targets"),
    ("TECHNIQUE", "technique"),
    ("TOOL", "tool"),
    ("PORTS", "ports"),
    ("FIRST", "first_seen"),
    ("ALERT AT", "alert_at"),
    ("PROBES", "probes_before_alert"),
)
_MAX_CELL = 40


@app.command()
@funnel
def detect(
    captures: Annotated[
        list[Path] | None,
        typer.Argument(help="pcap or pcapng files", metavar="CAPTURE...", show_default=False),
    ] = None,
    csv_out: Annotated[
        Path | None, typer.Option("--csv", help="write the rows as CSV", metavar="OUT")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the rows as JSON lines", metavar="OUT")
    ] = None,
    detector: Annotated[
        list[str] | None,
        typer.Option(
            "--detector",
            "-d",
            help="run only this detector (repeatable): sfportscan-low, sfportscan-medium, "
            "sfportscan-high, zeek-scan, trw, scanlogd. Default: all",
            metavar="NAME",
        ),
    ] = None,
    live: Annotated[
        str | None,
        typer.Option("--live", help="capture on this interface instead (root)", metavar="IFACE"),
    ] = None,
    seconds: Annotated[
        float, typer.Option("--seconds", help="with --live: how long to capture", min=0.1)
    ] = 10.0,
    write: Annotated[
        Path | None,
        typer.Option("--write", help="with --live: also save the capture as pcap", metavar="OUT"),
    ] = None,
) -> None:
    """Find port scans in packet captures: one row per (detector, scanner, alert).

    Each row names the scan technique (syn, connect, fin, xmas, null, ack, maimon, udp) and,
    where the probes carry a fingerprint, the tool (nmap, masscan, zmap, twinscan). Times
    in the table are seconds from the capture's first packet; CSV and JSON hold epoch
    seconds. A truncated capture is read up to the cut with a warning; a file that is not a
    capture exits 2.
    """
    from twinscan.detect.runner import DETECTORS, detect_bytes, detect_file

    names = detector or list(DETECTORS)
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise UsageError(f"unknown detector {unknown[0]!r}: choose from {', '.join(DETECTORS)}")
    if live is not None and captures:
        raise UsageError("give capture files or --live IFACE, not both")
    if live is None and not captures:
        raise UsageError("give at least one capture file, or --live IFACE")
    if live is None and write is not None:
        raise UsageError("--write goes with --live")

    reports: list[Report] = []
    if live is not None:
        from twinscan.detect.live import capture_live

        data = capture_live(live, seconds)
        if write is not None:
            _write_bytes(write, data)
        reports.append(detect_bytes(data, f"live:{live}", names))
    else:
        assert captures is not None
        reports.extend(detect_file(path, names) for path in captures)

    for rep in reports:
        for w in rep.warnings:
            typer.echo(f"twinscan: warning: {rep.capture}: {w}", err=True)
        _print_report(rep)
    rows = [r for rep in reports for r in rep.rows]
    if csv_out is not None:
        _write_csv(csv_out, rows)
    if json_out is not None:
        _write_json(json_out, rows)


def _print_report(rep: Report) -> None:
    typer.echo(
        f"{rep.capture}: {rep.packets} packets ({rep.fmt}), {rep.ipv4} IPv4, "
        f"{rep.contacts} contacts, {len(rep.rows)} alert(s)"
    )
    if not rep.rows:
        return
    start = rep.start or 0.0
    table = [tuple(h for h, _ in _TABLE)]
    for row in rep.rows:
        cells = []
        for _h, field in _TABLE:
            value = getattr(row, field)
            if field in ("first_seen", "alert_at"):
                text = f"+{value - start:.3f}s"
            else:
                text = str(value)
            if len(text) > _MAX_CELL:
                text = text[: _MAX_CELL - 3] + "..."
            cells.append(text)
        table.append(tuple(cells))
    widths = [max(len(r[i]) for r in table) for i in range(len(_TABLE))]
    for r in table:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _write_bytes(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise InputFileError(str(path), exc.strerror or "cannot write") from None


def _write_csv(path: Path, rows: list[Row]) -> None:
    import csv
    import io

    from twinscan.detect.runner import ROW_COLUMNS

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(ROW_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r.as_dict())
    _write_bytes(path, buf.getvalue().encode())


def _write_json(path: Path, rows: list[Row]) -> None:
    import json

    text = "".join(json.dumps(r.as_dict()) + "\n" for r in rows)
    _write_bytes(path, text.encode())
